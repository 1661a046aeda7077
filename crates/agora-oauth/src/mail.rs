//! Outgoing mail. Without SMTP configured (local trials, tests) messages go to the log and are
//! appended to a mailbox file in the data directory.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;

pub enum Mailer {
    /// Appends one JSON line per message to this file.
    DevMailbox(PathBuf),
}

impl Mailer {
    pub async fn send_login_code(&self, to: &str, code: &str) {
        match self {
            Mailer::DevMailbox(path) => {
                tracing::info!(%to, %code, mailbox = %path.display(), "sign-in code (no SMTP configured: dev mailbox)");
                let line = serde_json::json!({"to": to, "subject": "Your agora sign-in code", "code": code})
                    .to_string()
                    + "\n";
                let written = async {
                    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
                    file.write_all(line.as_bytes()).await?;
                    file.flush().await
                };
                if let Err(e) = written.await {
                    tracing::error!(error = %e, mailbox = %path.display(), "cannot write to the dev mailbox");
                }
            }
        }
    }
}
