//! Audit entries of hub tool calls, written off the request path: calls hand entries to a
//! background writer that stores them in batches (one transaction each, at most `LINGER` after the
//! first entry). Shutdown flushes it; a crash loses at most that last moment's entries.

use agora_store::{AuditEntry, Store};
use tokio::sync::{mpsc, oneshot};

/// Entries waiting beyond this are dropped (and logged): a database that cannot keep up must not
/// take the hub's memory with it.
const BACKLOG: usize = 10_000;
const BATCH: usize = 256;
/// How long the writer waits for more entries before committing a batch.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

enum Command {
    Record(AuditEntry),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditLog {
    commands: mpsc::Sender<Command>,
}

impl AuditLog {
    pub fn start(store: Store) -> Self {
        let (commands, mut inbox) = mpsc::channel(BACKLOG);
        tokio::spawn(async move {
            while let Some(first) = inbox.recv().await {
                // Group commit: entries arriving within the linger share one transaction (one sync
                // to disk) instead of paying one each; a flush ends the wait at once.
                let mut pending = vec![first];
                let deadline = tokio::time::Instant::now() + LINGER;
                while pending.len() < BATCH && !matches!(pending.last(), Some(Command::Flush(_))) {
                    match tokio::time::timeout_at(deadline, inbox.recv()).await {
                        Ok(Some(command)) => pending.push(command),
                        _ => break,
                    }
                }
                let mut batch = Vec::with_capacity(pending.len());
                let mut flushed = Vec::new();
                for command in pending {
                    match command {
                        Command::Record(entry) => batch.push(entry),
                        Command::Flush(done) => flushed.push(done),
                    }
                }
                if !batch.is_empty()
                    && let Err(e) = store.append_audit(&batch).await
                {
                    tracing::error!(error = %e, entries = batch.len(), "cannot write audit entries");
                }
                for done in flushed {
                    let _ = done.send(());
                }
            }
        });
        Self { commands }
    }

    pub fn record(&self, entry: AuditEntry) {
        if self.commands.try_send(Command::Record(entry)).is_err() {
            tracing::error!("audit backlog full; an entry was dropped");
        }
    }

    /// Waits until everything recorded so far is stored.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}
