//! Audit entries of hub tool calls, written off the request path: calls hand entries to a
//! background writer that stores them in batches (one transaction each). Shutdown flushes it.

use agora_store::{AuditEntry, Store};
use tokio::sync::{mpsc, oneshot};

/// Entries waiting beyond this are dropped (and logged): a database that cannot keep up must not
/// take the hub's memory with it.
const BACKLOG: usize = 10_000;
const BATCH: usize = 256;

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
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(command) = inbox.recv().await {
                let mut flushed = Vec::new();
                let mut next = Some(command);
                while let Some(command) = next.take() {
                    match command {
                        Command::Record(entry) => batch.push(entry),
                        Command::Flush(done) => flushed.push(done),
                    }
                    if batch.len() < BATCH {
                        next = inbox.try_recv().ok();
                    }
                }
                if !batch.is_empty()
                    && let Err(e) = store.append_audit(&batch).await
                {
                    tracing::error!(error = %e, entries = batch.len(), "cannot write audit entries");
                }
                batch.clear();
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
