//! MCP sessions across replicas (revisions before 2026-07-28; later ones are sessionless).
//!
//! rmcp keeps each live session in the memory of the replica serving it and consults
//! [`DatabaseSessionStore`] only for a session it does not know, to restore it from the client's
//! saved `initialize` parameters. Each session is bound to the subject that created it; the owner is
//! remembered per replica, so a known session costs no database query.

use std::collections::HashMap;
use std::sync::Mutex;

use agora_store::Store;
use rmcp::transport::streamable_http_server::session::store::{SessionState, SessionStore, SessionStoreError};

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
pub struct SessionOwners {
    store: Store,
    known: Mutex<HashMap<String, String>>,
}

const OWNER_CACHE_CAPACITY: usize = 100_000;

impl SessionOwners {
    pub fn new(store: Store) -> Self {
        Self { store, known: Mutex::new(HashMap::new()) }
    }

    fn remember(&self, session_id: &str, owner: &str) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= OWNER_CACHE_CAPACITY {
            known.clear();
        }
        known.insert(session_id.to_owned(), owner.to_owned());
    }

    /// The subject that created `session_id`, if it is known at all.
    pub async fn owner(&self, session_id: &str) -> Result<Option<String>, agora_store::StoreError> {
        if let Some(owner) = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(session_id) {
            return Ok(Some(owner.clone()));
        }
        let owner = self.store.mcp_session_owner(session_id).await?;
        if let Some(owner) = &owner {
            self.remember(session_id, owner);
        }
        Ok(owner)
    }

    pub async fn bind(&self, session_id: &str, owner: &str) -> Result<(), agora_store::StoreError> {
        self.store.set_mcp_session_owner(session_id, owner, agora_oauth::now()).await?;
        self.remember(session_id, owner);
        Ok(())
    }
}
