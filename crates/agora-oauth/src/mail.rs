//! Outgoing mail: through SMTP when configured; otherwise (local trials, tests) to the log and a
//! mailbox file in the data directory. Sending happens in the background, so a response takes the
//! same time whether or not the address has an account.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid SMTP URL: {0}")]
    SmtpUrl(String),
    #[error("invalid sender address `{0}`")]
    From(String),
}

#[derive(Clone)]
pub enum Mailer {
    /// Appends one JSON line per message to this file (and logs it).
    DevMailbox(PathBuf),
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl Mailer {
    /// An SMTP mailer from a URL such as `smtps://user:pass@mail.example.com` or
    /// `smtp://mail.example.com:587?tls=required` (see lettre's URL format).
    pub fn smtp(url: &str, from: &str) -> Result<Self, MailError> {
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| MailError::SmtpUrl(e.to_string()))?.build();
        let from = from.parse().map_err(|_| MailError::From(from.to_owned()))?;
        Ok(Mailer::Smtp { transport, from })
    }

    /// Queues the sign-in code mail; failures are logged, never shown (they would reveal the account).
    pub fn send_login_code(&self, to: &str, code: &str) {
        let mailer = self.clone();
        let (to, code) = (to.to_owned(), code.to_owned());
        tokio::spawn(async move { mailer.deliver_login_code(&to, &code).await });
    }

    async fn deliver_login_code(&self, to: &str, code: &str) {
        const SUBJECT: &str = "Your agora sign-in code";
        let body = format!(
            "Your sign-in code is {code}\n\nIt expires in 10 minutes. If you did not ask for it, ignore this message.\n"
        );
        match self {
            Mailer::DevMailbox(path) => {
                tracing::info!(%to, %code, mailbox = %path.display(), "sign-in code (no SMTP configured: dev mailbox)");
                let line = serde_json::json!({"to": to, "subject": SUBJECT, "code": code}).to_string() + "\n";
                let written = async {
                    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
                    file.write_all(line.as_bytes()).await?;
                    file.flush().await
                };
                if let Err(e) = written.await {
                    tracing::error!(error = %e, mailbox = %path.display(), "cannot write to the dev mailbox");
                }
            }
            Mailer::Smtp { transport, from } => {
                let Ok(recipient) = to.parse::<Mailbox>() else {
                    tracing::warn!("sign-in code not sent: the address is not deliverable");
                    return;
                };
                let message = Message::builder().from(from.clone()).to(recipient).subject(SUBJECT).body(body);
                let sent = match message {
                    Ok(message) => transport.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(error) = sent {
                    tracing::error!(%error, "cannot send sign-in code by SMTP");
                }
            }
        }
    }
}
