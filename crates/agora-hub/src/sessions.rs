//! MCP sessions across replicas (revisions before 2026-07-28; later ones are sessionless).
//!
//! rmcp keeps each live session in the memory of the replica serving it and consults
//! [`DatabaseSessionStore`] only for a session it does not know, to restore it from the client's
//! saved `initialize` parameters; [`DormantSessions`] lets idle sessions leave memory for it. Each session is bound to the subject that created it; the owner is
//! remembered per replica, so a known session costs no database query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_store::Store;
use futures_util::{Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, LocalSessionManagerError};
use rmcp::transport::streamable_http_server::session::store::{SessionState, SessionStore, SessionStoreError};
use rmcp::transport::streamable_http_server::session::{RestoreOutcome, ServerSseMessage, SessionId, SessionManager};
use tokio_util::sync::CancellationToken;

pub struct DatabaseSessionStore {
    pub store: Store,
}

#[async_trait::async_trait]
impl SessionStore for DatabaseSessionStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        match self.store.mcp_session(session_id).await? {
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let json = serde_json::to_string(state)?;
        Ok(self.store.put_mcp_session(session_id, &json, agora_oauth::now()).await?)
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        Ok(self.store.delete_mcp_session(session_id).await?)
    }
}

/// Which subject owns which session, cached in front of the database.
///
/// Compact on purpose: an entry lives as long as its session, dormant ones included, so it holds no
/// allocation of its own (the id as 16 bytes, the subject shared by all of its sessions); small
/// long-lived allocations among a session's short-lived ones would keep its freed memory resident.
pub struct SessionOwners {
    store: Store,
    known: Mutex<KnownOwners>,
}

#[derive(Default)]
struct KnownOwners {
    by_session: HashMap<uuid::Uuid, Arc<str>>,
    subjects: std::collections::HashSet<Arc<str>>,
}

const OWNER_CACHE_CAPACITY: usize = 100_000;

/// The key of a session id as rmcp makes them (a lowercase hyphenated UUID); any other string was
/// never issued.
fn session_key(session_id: &str) -> Option<uuid::Uuid> {
    let key = uuid::Uuid::try_parse(session_id).ok()?;
    let mut canonical = uuid::Uuid::encode_buffer();
    (key.hyphenated().encode_lower(&mut canonical) == session_id).then_some(key)
}

impl SessionOwners {
    pub fn new(store: Store) -> Self {
        Self { store, known: Mutex::default() }
    }

    fn remember(&self, key: uuid::Uuid, owner: &str) {
        let mut known = lock(&self.known);
        if known.by_session.len() >= OWNER_CACHE_CAPACITY {
            *known = KnownOwners::default();
        }
        let subject = match known.subjects.get(owner) {
            Some(subject) => subject.clone(),
            None => {
                let subject: Arc<str> = owner.into();
                known.subjects.insert(subject.clone());
                subject
            }
        };
        known.by_session.insert(key, subject);
    }

    /// The subject that created `session_id`, if it is known at all.
    pub async fn owner(&self, session_id: &str) -> Result<Option<Arc<str>>, agora_store::StoreError> {
        let Some(key) = session_key(session_id) else { return Ok(None) };
        if let Some(owner) = lock(&self.known).by_session.get(&key) {
            return Ok(Some(owner.clone()));
        }
        let owner = self.store.mcp_session_owner(session_id).await?;
        if let Some(owner) = &owner {
            self.remember(key, owner);
        }
        Ok(owner.map(Arc::from))
    }

    pub async fn bind(&self, session_id: &str, owner: &str) -> Result<(), agora_store::StoreError> {
        self.store.set_mcp_session_owner(session_id, owner, agora_oauth::now()).await?;
        if let Some(key) = session_key(session_id) {
            self.remember(key, owner);
        }
        Ok(())
    }
}

/// rmcp's in-memory sessions, less the idle ones. A live session costs a worker task and its
/// channels (about 60 KB); one with no open stream and no request for `idle` is dropped from memory
/// and kept only as its database row, from which rmcp restores it on its next request, on this
/// replica or any other. A session whose client listens (an open GET stream) or waits on an answer
/// is never idle.
pub struct DormantSessions {
    live: LocalSessionManager,
    activity: Arc<Mutex<HashMap<SessionId, Activity>>>,
    /// Sessions the sweep closed whose worker has not yet reported its end. That report comes as a
    /// `close_session` of the same id, and must not close the session again if a request restored
    /// it meanwhile.
    closing: Mutex<std::collections::HashSet<SessionId>>,
    /// Held shared by every lookup and exclusively while idle sessions are closed, so a request
    /// never finds a session that is being closed: it waits, then restores it.
    reaping: tokio::sync::RwLock<()>,
    idle: Duration,
}

struct Activity {
    last: Instant,
    open_streams: u32,
}

/// Counts an open stream of a session until dropped with it.
struct OpenStream {
    activity: Arc<Mutex<HashMap<SessionId, Activity>>>,
    id: SessionId,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if let Some(entry) = lock(&self.activity).get_mut(&self.id) {
            entry.open_streams = entry.open_streams.saturating_sub(1);
            entry.last = Instant::now();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl DormantSessions {
    pub fn new(idle: Duration) -> Self {
        let mut live = LocalSessionManager::default();
        // The idle sweep below replaces rmcp's keep-alive, which also ends sessions that listen.
        live.session_config.keep_alive = None;
        Self { live, activity: Arc::default(), closing: Mutex::default(), reaping: tokio::sync::RwLock::new(()), idle }
    }

    fn touch(&self, id: &SessionId) {
        if let Some(entry) = lock(&self.activity).get_mut(id) {
            entry.last = Instant::now();
        }
    }

    fn start(&self, id: &SessionId) {
        lock(&self.activity).insert(id.clone(), Activity { last: Instant::now(), open_streams: 0 });
    }

    /// `stream`, counted as open until it is dropped.
    fn tracked<S>(&self, id: &SessionId, stream: S) -> impl Stream<Item = ServerSseMessage> + Send + Sync + use<S>
    where
        S: Stream<Item = ServerSseMessage> + Send + Sync + 'static,
    {
        if let Some(entry) = lock(&self.activity).get_mut(id) {
            entry.open_streams += 1;
            entry.last = Instant::now();
        }
        let open = OpenStream { activity: self.activity.clone(), id: id.clone() };
        // The guard lives as long as the stream does.
        stream.map(move |message| {
            let _ = &open;
            message
        })
    }

    /// Closes the sessions idle for `idle`, every `idle / 2`, until `stop`.
    pub async fn sweep(self: Arc<Self>, stop: CancellationToken) {
        let period = (self.idle / 2).max(Duration::from_millis(100));
        let mut closed_before = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            if std::mem::take(&mut closed_before) {
                // The sessions closed last time have finished by now.
                release_free_memory();
            }
            let _sweeping = self.reaping.write().await;
            let idle: Vec<SessionId> = {
                let mut activity = lock(&self.activity);
                let idle: Vec<SessionId> = activity
                    .iter()
                    .filter(|(_, a)| a.open_streams == 0 && a.last.elapsed() >= self.idle)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &idle {
                    activity.remove(id);
                }
                idle
            };
            lock(&self.closing).extend(idle.iter().cloned());
            for id in &idle {
                match self.live.close_session(id).await {
                    Ok(()) => tracing::debug!(session = %id, "idle MCP session left memory"),
                    Err(error) => tracing::warn!(session = %id, %error, "idle MCP session did not close"),
                }
            }
            closed_before = !idle.is_empty();
        }
    }
}

/// Returns freed heap pages to the system. glibc keeps them otherwise: the thousands of small
/// blocks of closed sessions are spread among live ones, below its automatic trim threshold.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl SessionManager for DormantSessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.live.create_session().await?;
        self.start(&id);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.touch(id);
        self.live.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        let _open = self.reaping.read().await;
        self.touch(id);
        self.live.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        if lock(&self.closing).remove(id) {
            // The end of a worker the sweep closed; the session may be live again by now.
            return Ok(());
        }
        lock(&self.activity).remove(id);
        self.live.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.live.create_stream(id, message).await?;
        Ok(self.tracked(id, stream))
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.touch(id);
        self.live.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.live.create_standalone_stream(id).await?;
        Ok(self.tracked(id, stream))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.live.resume(id, last_event_id).await?;
        Ok(self.tracked(id, stream))
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        let _open = self.reaping.read().await;
        let outcome = self.live.restore_session(id.clone()).await?;
        if matches!(outcome, RestoreOutcome::Restored(_)) {
            self.start(&id);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_session_ids_as_issued_have_a_key() {
        let issued = rmcp::transport::common::server_side_http::session_id();
        assert!(super::session_key(&issued).is_some());
        for other in
            [issued.to_uppercase(), issued.replace('-', ""), format!("{{{issued}}}"), "x".into(), String::new()]
        {
            assert!(super::session_key(&other).is_none(), "{other}");
        }
    }
}
