//! Server→client traffic of an upstream connection, relayed to the downstream client it belongs to:
//! progress (matched exactly by progress token), log messages, sampling, elicitation and roots
//! requests, resource updates and list changes.
//!
//! Upstreams speaking a revision before 2026-07-28 do not say which request such traffic is for.
//! A lane (one upstream connection) therefore serves one downstream session of one user, and
//! traffic goes to the oldest call in flight on the lane, or else to the session itself. It can
//! never reach another user or another session.

#![allow(deprecated)] // sampling, roots and logging are deprecated by SEP-2577, yet upstreams use them

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rmcp::model::{
    CancelledNotificationParam, ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, Implementation, ListRootsResult, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProgressToken, ProtocolVersion, RequestId, ResourceUpdatedNotificationParam,
    ServerCapabilities, ServerNotification, SubscriptionFilter,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, RoleClient, RoleServer, ServiceError};
use rmcp::{ClientHandler, ErrorData};

use crate::upstream::ListingSlot;

/// How many 10 ms rounds a progress report for a not yet noted token waits.
const PROGRESS_WAIT_ROUNDS: usize = 50;

/// The downstream side a lane relays to.
#[derive(Default)]
pub struct Relay {
    state: Mutex<RelayState>,
}

#[derive(Default)]
struct RelayState {
    /// Calls in flight on the lane, oldest first.
    calls: Vec<(u64, Peer<RoleServer>)>,
    next_call: u64,
    /// The hub's progress token on the upstream request → the downstream peer and its own token.
    progress: HashMap<ProgressToken, (Peer<RoleServer>, ProgressToken)>,
    /// The downstream session the lane serves, for traffic outside any call.
    session: Option<Peer<RoleServer>>,
}

/// A call in flight on a lane; dropping it ends the call's share of relayed traffic.
pub struct InFlightCall {
    relay: Arc<Relay>,
    id: u64,
    upstream_progress: Option<ProgressToken>,
}

impl Drop for InFlightCall {
    fn drop(&mut self) {
        let mut state = self.relay.state();
        state.calls.retain(|(id, _)| *id != self.id);
        if let Some(token) = &self.upstream_progress {
            state.progress.remove(token);
        }
    }
}

impl InFlightCall {
    /// Progress the upstream reports under `upstream` goes to the caller under `downstream`.
    pub fn relay_progress(&mut self, upstream: ProgressToken, peer: Peer<RoleServer>, downstream: ProgressToken) {
        self.relay.state().progress.insert(upstream.clone(), (peer, downstream));
        self.upstream_progress = Some(upstream);
    }
}

impl Relay {
    fn state(&self) -> MutexGuard<'_, RelayState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn enter(self: &Arc<Self>, peer: Peer<RoleServer>, session: bool) -> InFlightCall {
        let mut state = self.state();
        state.next_call += 1;
        let id = state.next_call;
        state.calls.push((id, peer.clone()));
        if session {
            state.session = Some(peer);
        }
        InFlightCall { relay: self.clone(), id, upstream_progress: None }
    }

    fn target(&self) -> Option<Peer<RoleServer>> {
        let state = self.state();
        state.calls.first().map(|(_, peer)| peer.clone()).or_else(|| state.session.clone())
    }

    fn session(&self) -> Option<Peer<RoleServer>> {
        self.state().session.clone()
    }
}

/// Which list an upstream changed; sent to every `subscriptions/listen` stream of the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListChange {
    Tools,
    Prompts,
    Resources,
}

/// The hub as the client of one upstream connection (a lane).
#[derive(Clone)]
pub struct LaneEvents {
    pub relay: Arc<Relay>,
    pub listing: Arc<ListingSlot>,
    pub changes: tokio::sync::broadcast::Sender<ListChange>,
    /// What the lane tells the upstream about its client: the downstream client's own
    /// capabilities, so that the upstream asks only for what can be answered.
    pub capabilities: ClientCapabilities,
    pub protocol_version: ProtocolVersion,
}

fn no_client() -> ErrorData {
    ErrorData::internal_error("no downstream client is waiting on this upstream", None)
}

pub fn to_error_data(error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(error) => error,
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

impl ClientHandler for LaneEvents {
    fn get_info(&self) -> ClientConfig {
        let mut info =
            ClientConfig::new(self.capabilities.clone(), Implementation::new("agora", env!("CARGO_PKG_VERSION")));
        info.protocol_version = self.protocol_version.clone();
        info
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let peer = self.relay.target().ok_or_else(no_client)?;
        peer.create_message(params).await.map_err(to_error_data)
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let peer = self.relay.target().ok_or_else(no_client)?;
        peer.create_elicitation(params).await.map_err(to_error_data)
    }

    async fn list_roots(&self, _context: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        let peer = self.relay.target().ok_or_else(no_client)?;
        peer.list_roots().await.map_err(to_error_data)
    }

    async fn on_progress(&self, mut params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        // rmcp picks a request's progress token as it sends it, so the hub can only note where
        // that token's progress goes once the request is out: an upstream that reports at once
        // can be a moment ahead. Such a report waits for the note, briefly.
        for _ in 0..PROGRESS_WAIT_ROUNDS {
            let target = self.relay.state().progress.get(&params.progress_token).cloned();
            if let Some((peer, token)) = target {
                params.progress_token = token;
                let _ = peer.notify_progress(params).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(peer) = self.relay.target() {
            let _ = peer.notify_logging_message(params).await;
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(peer) = self.relay.session() {
            let _ = peer.notify_resource_updated(params).await;
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changed(ListChange::Tools).await;
        if let Some(peer) = self.relay.session() {
            let _ = peer.notify_tool_list_changed().await;
        }
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changed(ListChange::Prompts).await;
        if let Some(peer) = self.relay.session() {
            let _ = peer.notify_prompt_list_changed().await;
        }
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changed(ListChange::Resources).await;
        if let Some(peer) = self.relay.session() {
            let _ = peer.notify_resource_list_changed().await;
        }
    }
}

impl LaneEvents {
    /// Forgets the cached listing, so the next request lists again, and tells the hub's listeners.
    pub async fn list_changed(&self, change: ListChange) {
        *self.listing.write().await = None;
        // No receiver (nobody listening) is not an error.
        let _ = self.changes.send(change);
    }

    /// On a 2026-07-28 connection list changes arrive only on a `subscriptions/listen` stream:
    /// one is kept open for as long as the connection lives.
    pub fn follow_list_changes(&self, peer: Peer<RoleClient>, capabilities: &ServerCapabilities) {
        let filter = SubscriptionFilter::builder()
            .tools_list_changed()
            .prompts_list_changed()
            .resources_list_changed()
            .build()
            .supported_by(capabilities);
        if filter == SubscriptionFilter::default() {
            return;
        }
        let events = self.clone();
        tokio::spawn(async move {
            let Ok(mut subscription) = peer.listen(filter).await else { return };
            while let Ok(Some(notification)) = subscription.next().await {
                let change = match notification {
                    ServerNotification::ToolListChangedNotification(_) => ListChange::Tools,
                    ServerNotification::PromptListChangedNotification(_) => ListChange::Prompts,
                    ServerNotification::ResourceListChangedNotification(_) => ListChange::Resources,
                    _ => continue,
                };
                events.list_changed(change).await;
            }
        });
    }
}

/// Tells the upstream that the hub gave up on request `id` (the downstream cancelled, or it timed out).
pub fn cancel_upstream(peer: Peer<RoleClient>, id: RequestId, reason: &str) {
    tracing::debug!(%id, reason, "cancelling an upstream request");
    let params = CancelledNotificationParam::new(Some(id), Some(reason.to_owned()));
    tokio::spawn(async move {
        let _ = peer.notify_cancelled(params).await;
    });
}
