//! Connections to upstream MCP servers: remote (Streamable HTTP), local (stdio child processes) and
//! the built-in demo. Each is connected on first use, its tool list cached, and dropped (to be
//! reconnected on the next use) when it fails. One broken upstream never fails the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use agora_core::toolkit::{self, OfferedTool, ToolSelection, VisibleTool};
use agora_store::{HttpProtocol, Store, UpstreamServer, UpstreamTransport};
use rmcp::model::{
    ClientCapabilities, ClientRequest, Prompt, ProtocolVersion, RequestMetaObject, Resource, ResourceTemplate,
    ServerCapabilities, ServerResult, Tool,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, Peer, PeerRequestOptions, RoleClient, RoleServer, RunningService,
    ServiceError,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ErrorData, ServiceExt};
use tokio::sync::{Mutex, OwnedSemaphorePermit, RwLock, Semaphore};

use crate::credentials::{Injection, Resolved};
use crate::demo::DemoServer;
use crate::legacy_sse;
use crate::relay::{LaneEvents, ListChange, Relay, cancel_upstream};

/// How long a listing is reused before it is asked for again.
const LISTING_TTL: Duration = Duration::from_secs(30);
/// How long the set of configured upstreams is used before it is read again from the database.
const SPECS_TTL: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff() {
        assert_eq!(backoff(1), Duration::ZERO, "the first failure restarts at once");
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(9), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out after {0} ms")]
    Timeout(u128),
    #[error("{0}")]
    Call(String),
    /// No room to start a local server: says nothing about the upstream's health.
    #[error("all {0} local server slots are in use; try again later")]
    Busy(usize),
    /// The downstream client cancelled; the upstream was told to stop.
    #[error("cancelled by the client")]
    Cancelled,
    /// The upstream answered with a JSON-RPC error: its answer, passed on as it is.
    #[error("{}", .0.message)]
    Rejected(ErrorData),
}

/// Where an upstream comes from: the database, or built in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Configured(UpstreamServer),
    Demo,
}

/// Who a request to an upstream is made for: the downstream request the hub is serving.
pub struct Caller {
    pub subject: String,
    /// The profile the request uses: upstream connections (and later credentials) are per profile.
    pub profile: String,
    /// The downstream MCP session, for revisions that have them.
    pub session: Option<String>,
    pub peer: Peer<RoleServer>,
    pub protocol_version: ProtocolVersion,
    pub capabilities: ClientCapabilities,
    /// The downstream request's `_meta`.
    pub meta: RequestMetaObject,
    /// Fires when the downstream client cancels the request.
    pub cancelled: tokio_util::sync::CancellationToken,
    /// The caller's third-party credential for this upstream, when it needs one.
    pub credential: Option<Resolved>,
}

impl Caller {
    /// 2026-07-28 and later: no server→client requests; input is gathered with `input_required` results.
    pub fn is_sessionless_revision(&self) -> bool {
        self.protocol_version.as_str() >= ProtocolVersion::V_2026_07_28.as_str()
    }

    fn lane_key(&self) -> LaneKey {
        LaneKey {
            subject: self.subject.clone(),
            profile: self.profile.clone(),
            session: self.session.clone(),
            credential: self.credential.as_ref().map(|c| (c.credential_id.clone(), c.version.clone())),
        }
    }

    /// What goes upstream in `_meta`: the caller's own, but for what the hub's connection sets itself.
    fn forwarded_meta(&self) -> RequestMetaObject {
        let mut meta = self.meta.clone();
        for key in ["progressToken", "io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientInfo"] {
            meta.0.remove(key);
        }
        meta
    }
}

/// One connection to an upstream per downstream session, user and profile: the upstream sees each
/// downstream client as a client of its own, and relayed traffic cannot cross between them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LaneKey {
    subject: String,
    profile: String,
    session: Option<String>,
    /// A refreshed credential is a new version, and so a new connection carrying it.
    credential: Option<(String, String)>,
}

type Client = Arc<RunningService<RoleClient, LaneEvents>>;
pub type ListingSlot = RwLock<Option<(Arc<Listing>, Instant)>>;

struct Connection {
    client: Client,
    /// Held while a local server runs: the cap on running local servers.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Stops the service; a stdio child is killed when its transport drops.
        self.client.cancellation_token().cancel();
    }
}

pub struct Lane {
    events: LaneEvents,
    credential: Option<Resolved>,
    lifecycle: ClientLifecycleMode,
    connection: Mutex<Option<Connection>>,
    usage: std::sync::Mutex<Usage>,
}

struct Usage {
    last_used: Instant,
    in_flight: usize,
}

struct Busy<'a>(&'a Lane);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut usage = self.0.usage();
        usage.in_flight = usage.in_flight.saturating_sub(1);
        usage.last_used = Instant::now();
    }
}

impl Lane {
    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the lane in use until the guard drops (even if the request is abandoned).
    fn begin(&self) -> Busy<'_> {
        let mut usage = self.usage();
        usage.in_flight += 1;
        usage.last_used = Instant::now();
        Busy(self)
    }

    fn idle_for(&self) -> Option<Duration> {
        let usage = self.usage();
        (usage.in_flight == 0).then(|| usage.last_used.elapsed())
    }

    /// Closes the connection unless it is being set up or used right now.
    fn try_disconnect(&self) -> bool {
        match self.connection.try_lock() {
            Ok(mut slot) => slot.take().is_some(),
            Err(_) => false,
        }
    }
}

/// The cap on local (stdio) servers running at once, across every upstream and lane.
pub struct LocalServers {
    cap: usize,
    permits: Arc<Semaphore>,
    lanes: std::sync::Mutex<Vec<Weak<Lane>>>,
}

impl LocalServers {
    pub fn new(cap: usize) -> Self {
        Self { cap, permits: Arc::new(Semaphore::new(cap)), lanes: Default::default() }
    }

    /// A place for one more local server; when all are taken, the least recently used idle one is
    /// stopped to make room. Lanes being connected or used are never touched.
    fn acquire(&self) -> Result<OwnedSemaphorePermit, UpstreamError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let mut idle: Vec<(Duration, Arc<Lane>)> = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            lanes.retain(|lane| lane.strong_count() > 0);
            lanes.iter().filter_map(Weak::upgrade).filter_map(|lane| Some((lane.idle_for()?, lane))).collect()
        };
        idle.sort_by_key(|(idle_for, _)| std::cmp::Reverse(*idle_for));
        for (_, lane) in idle {
            if lane.try_disconnect() {
                tracing::info!("stopped the least recently used local server to make room");
                if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                    return Ok(permit);
                }
            }
        }
        Err(UpstreamError::Busy(self.cap))
    }

    fn track(&self, lane: &Arc<Lane>) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if !lanes.iter().any(|l| l.as_ptr() == Arc::as_ptr(lane)) {
            lanes.push(Arc::downgrade(lane));
        }
    }
}

pub struct Upstream {
    pub name: String,
    pub prefix: Option<String>,
    source: Source,
    timeout: Duration,
    lanes: std::sync::Mutex<HashMap<LaneKey, Arc<Lane>>>,
    listing: Arc<ListingSlot>,
    health: std::sync::Mutex<Health>,
    local: Arc<LocalServers>,
    changes: tokio::sync::broadcast::Sender<ListChange>,
    http: reqwest::Client,
}

/// Failure streak, for restart backoff.
#[derive(Default)]
struct Health {
    consecutive_failures: u32,
    retry_after: Option<Instant>,
}

/// Wait before reconnecting after `failures` consecutive failures: none after the first (a crashed
/// child restarts on the next call), then doubling from 0.5 s up to 30 s.
fn backoff(failures: u32) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(250u64.saturating_mul(1 << (n - 1).min(7))).min(Duration::from_secs(30)),
    }
}

/// What an upstream offers, as last listed.
#[derive(Default)]
pub struct Listing {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
}

/// Forgets a request's upstream id once answered; if dropped before (the downstream cancelled or
/// the call timed out), tells the upstream to stop working on it.
struct PendingRequest {
    peer: Peer<RoleClient>,
    id: Option<rmcp::model::RequestId>,
}

impl Drop for PendingRequest {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            cancel_upstream(self.peer.clone(), id, "the hub's caller gave up");
        }
    }
}

impl Upstream {
    fn new(
        source: Source,
        local: Arc<LocalServers>,
        changes: tokio::sync::broadcast::Sender<ListChange>,
        http: reqwest::Client,
    ) -> Self {
        let (name, prefix, timeout_ms) = match &source {
            Source::Configured(s) => (s.name.clone(), s.tool_prefix.clone(), s.timeout_ms),
            Source::Demo => ("demo".to_owned(), Some("demo".to_owned()), 10_000),
        };
        Self {
            name,
            prefix,
            source,
            timeout: Duration::from_millis(timeout_ms.max(1) as u64),
            lanes: Default::default(),
            listing: Default::default(),
            health: Default::default(),
            local,
            changes,
            http,
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, ok: bool) {
        let mut health = self.health();
        if ok {
            *health = Health::default();
        } else {
            health.consecutive_failures = health.consecutive_failures.saturating_add(1);
            health.retry_after = Some(Instant::now() + backoff(health.consecutive_failures));
        }
    }

    fn is_local(&self) -> bool {
        matches!(&self.source, Source::Configured(s) if matches!(s.transport, UpstreamTransport::Stdio { .. }))
    }

    fn lane(&self, caller: &Caller) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .entry(caller.lane_key())
            .or_insert_with(|| {
                // A session of an older revision gets a connection of that revision, so the upstream
                // can make requests of the client; sessionless callers prefer 2026-07-28.
                let (protocol_version, lifecycle) = if caller.session.is_some() && !caller.is_sessionless_revision() {
                    (caller.protocol_version.clone(), ClientLifecycleMode::Initialize)
                } else {
                    (
                        ProtocolVersion::V_2025_11_25,
                        ClientLifecycleMode::Auto {
                            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                            legacy_version: Some(ProtocolVersion::V_2025_11_25),
                        },
                    )
                };
                Arc::new(Lane {
                    credential: caller.credential.clone(),
                    events: LaneEvents {
                        relay: Arc::new(Relay::default()),
                        listing: self.listing.clone(),
                        changes: self.changes.clone(),
                        capabilities: caller.capabilities.clone(),
                        protocol_version,
                    },
                    lifecycle,
                    connection: Mutex::new(None),
                    usage: std::sync::Mutex::new(Usage { last_used: Instant::now(), in_flight: 0 }),
                })
            })
            .clone()
    }

    async fn connect(&self, lane: &Arc<Lane>) -> Result<Client, UpstreamError> {
        let mut slot = lane.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(connection.client.clone());
        }
        if let Some(wait) = self.health().retry_after.and_then(|at| at.checked_duration_since(Instant::now())) {
            return Err(UpstreamError::Connect(format!(
                "restarting after repeated failures; retry in {} ms",
                wait.as_millis()
            )));
        }
        let permit = if self.is_local() { Some(self.local.acquire()?) } else { None };
        let events = lane.events.clone();
        let lifecycle = lane.lifecycle.clone();
        let failed = |e: rmcp::service::ClientInitializeError| UpstreamError::Connect(e.to_string());
        let connecting = async {
            match &self.source {
                Source::Demo => {
                    let (server_end, client_end) = tokio::io::duplex(256 * 1024);
                    tokio::spawn(async move {
                        if let Ok(running) = DemoServer::new().serve(server_end).await {
                            let _ = running.waiting().await;
                        }
                    });
                    events.serve_with_lifecycle(client_end, lifecycle).await.map_err(failed)
                }
                Source::Configured(spec) => match &spec.transport {
                    UpstreamTransport::Http { url, headers, protocol } => {
                        let mut header_map = axum::http::HeaderMap::new();
                        for (name, value) in headers {
                            let name = axum::http::HeaderName::from_bytes(name.as_bytes())
                                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
                            let value = axum::http::HeaderValue::from_str(value)
                                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
                            header_map.insert(name, value);
                        }
                        if let Some(Injection::Header { name, value }) = lane.credential.as_ref().map(|c| &c.header) {
                            let name = axum::http::HeaderName::from_bytes(name.as_bytes())
                                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
                            let value = axum::http::HeaderValue::from_str(value).map_err(|_| {
                                UpstreamError::Connect("the credential does not fit in a header".into())
                            })?;
                            header_map.insert(name, value);
                        }
                        match protocol {
                            HttpProtocol::Streamable => {
                                let config = StreamableHttpClientTransportConfig::with_uri(url.clone()).custom_headers(
                                    header_map.into_iter().filter_map(|(k, v)| Some((k?, v))).collect(),
                                );
                                let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
                                events.serve_with_lifecycle(transport, lifecycle).await.map_err(failed)
                            }
                            HttpProtocol::LegacySse => {
                                let url = url::Url::parse(url).map_err(|e| UpstreamError::Connect(e.to_string()))?;
                                let transport = legacy_sse::connect(url, header_map)
                                    .await
                                    .map_err(|e| UpstreamError::Connect(e.to_string()))?;
                                events.serve_with_lifecycle(transport, lifecycle).await.map_err(failed)
                            }
                        }
                    }
                    UpstreamTransport::Stdio { command, args, env } => {
                        let mut cmd = tokio::process::Command::new(command);
                        // Only what is configured reaches the child: no agora secrets through inheritance.
                        cmd.args(args).env_clear().envs(env).kill_on_drop(true);
                        if let Some(Injection::Env { name, value }) =
                            lane.credential.as_ref().and_then(|c| c.env.as_ref())
                        {
                            cmd.env(name, value);
                        }
                        if let Some(path) = std::env::var_os("PATH")
                            && !env.contains_key("PATH")
                        {
                            cmd.env("PATH", path);
                        }
                        let transport = TokioChildProcess::builder(cmd)
                            .stderr(std::process::Stdio::null())
                            .spawn()
                            .map(|(transport, _)| transport)
                            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
                        events.serve_with_lifecycle(transport, lifecycle).await.map_err(failed)
                    }
                },
            }
        };
        let client = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| UpstreamError::Timeout(CONNECT_TIMEOUT.as_millis()))??;
        let client = Arc::new(client);
        if let Some(info) = client.peer_info()
            && info.protocol_version.as_str() >= ProtocolVersion::V_2026_07_28.as_str()
        {
            lane.events.follow_list_changes(client.peer().clone(), &info.capabilities);
        }
        if permit.is_some() {
            self.local.track(lane);
        }
        *slot = Some(Connection { client: client.clone(), _permit: permit });
        Ok(client)
    }

    /// Closes every connection to this upstream.
    async fn disconnect_all(&self) {
        let lanes: Vec<Arc<Lane>> =
            self.lanes.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, l)| l).collect();
        for lane in lanes {
            lane.connection.lock().await.take();
        }
        *self.listing.write().await = None;
    }

    /// Closes connections nobody has used for `idle`; they open again on next use.
    fn reap_idle(&self, idle: Duration) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.retain(|_, lane| {
            let expired = lane.idle_for().is_some_and(|for_| for_ >= idle);
            if expired && lane.try_disconnect() {
                tracing::debug!(upstream = %self.name, "closed an idle upstream connection");
            }
            // A lane whose connection is busy being set up stays.
            !(expired && lane.connection.try_lock().is_ok_and(|slot| slot.is_none()))
        });
    }

    /// Runs `op` on the caller's connection, within the per-call timeout. A connection that fails
    /// or times out is closed, so that its next use reconnects (a crashed stdio child restarts);
    /// an upstream's JSON-RPC error answer is passed on and leaves the connection be.
    async fn on_lane<T, F, Fut>(&self, caller: &Caller, op: F) -> Result<T, UpstreamError>
    where
        F: FnOnce(Arc<Lane>, Client) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let lane = self.lane(caller);
        let _busy = lane.begin();
        let work = async {
            let client = self.connect(&lane).await?;
            op(lane.clone(), client).await.map_err(|e| match e {
                ServiceError::McpError(error) => UpstreamError::Rejected(error),
                other => UpstreamError::Call(other.to_string()),
            })
        };
        // Dropping `work` on timeout or cancellation tells the upstream to stop (`PendingRequest`).
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(self.timeout, work) => match outcome {
                Ok(outcome) => outcome,
                Err(_) => Err(UpstreamError::Timeout(self.timeout.as_millis())),
            },
            _ = caller.cancelled.cancelled() => Err(UpstreamError::Cancelled),
        };
        let healthy = matches!(
            outcome,
            Ok(_) | Err(UpstreamError::Rejected(_) | UpstreamError::Busy(_) | UpstreamError::Cancelled)
        );
        if !healthy {
            lane.connection.lock().await.take();
            *self.listing.write().await = None;
        }
        self.record(healthy);
        outcome
    }

    /// Sends one request for `caller`, relaying the upstream's progress, log messages and
    /// requests (sampling, elicitation, roots) for it back to the caller.
    pub async fn send(&self, caller: &Caller, request: ClientRequest) -> Result<ServerResult, UpstreamError> {
        self.on_lane(caller, |lane, client| async move {
            let mut call = lane.events.relay.enter(caller.peer.clone(), caller.session.is_some());
            let options = PeerRequestOptions::no_options().with_meta(caller.forwarded_meta());
            let handle = client.peer().send_request_with_option(request, options).await?;
            if let Some(token) = caller.meta.get_progress_token() {
                call.relay_progress(handle.progress_token.clone(), caller.peer.clone(), token);
            }
            let mut pending = PendingRequest { peer: client.peer().clone(), id: Some(handle.id.clone()) };
            let response = handle.await_response().await;
            pending.id = None;
            response
        })
        .await
    }

    /// Everything the upstream offers, from cache when fresh.
    pub async fn listing(&self, caller: &Caller) -> Result<Arc<Listing>, UpstreamError> {
        if let Some((listing, at)) = self.listing.read().await.as_ref()
            && at.elapsed() < LISTING_TTL
        {
            return Ok(listing.clone());
        }
        let listing = self
            .on_lane(caller, |_, client| async move {
                let capabilities = client.peer_info().map(|info| info.capabilities.clone()).unwrap_or_default();
                let mut listing = Listing::default();
                if capabilities.tools.is_some() {
                    listing.tools = client.list_all_tools().await?;
                }
                if capabilities.prompts.is_some() {
                    listing.prompts = client.list_all_prompts().await?;
                }
                if capabilities.resources.is_some() {
                    listing.resources = client.list_all_resources().await?;
                    listing.templates = client.list_all_resource_templates().await?;
                }
                Ok(listing)
            })
            .await?;
        let listing = Arc::new(listing);
        *self.listing.write().await = Some((listing.clone(), Instant::now()));
        Ok(listing)
    }

    /// What the upstream said it can do when the caller's connection was set up.
    pub async fn capabilities(&self, caller: &Caller) -> Option<ServerCapabilities> {
        self.on_lane(caller, |_, client| async move { Ok(client.peer_info().map(|info| info.capabilities.clone())) })
            .await
            .ok()
            .flatten()
    }

    /// The third-party service whose credential calls to this upstream carry.
    pub fn service(&self) -> Option<&str> {
        match &self.source {
            Source::Configured(spec) => spec.service.as_deref(),
            Source::Demo => None,
        }
    }

    /// The name clients see for `tool` of this upstream.
    pub fn exposed_name(&self, tool: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}_{tool}"),
            None => tool.to_owned(),
        }
    }
}

/// Every upstream the hub serves, kept in step with the database.
pub struct UpstreamPool {
    store: Store,
    demo: bool,
    local: Arc<LocalServers>,
    /// List changes reported by any upstream, for the hub's `subscriptions/listen` streams.
    pub changes: tokio::sync::broadcast::Sender<ListChange>,
    /// One HTTP client for every remote upstream, so connections are kept alive and reused (rmcp's
    /// default client opens a new connection per request) unless configured otherwise.
    http: reqwest::Client,
    state: RwLock<(Vec<Arc<Upstream>>, Option<Instant>)>,
    /// A background re-read of the upstream set is under way.
    reloading: AtomicBool,
    catalog: std::sync::Mutex<Option<CachedCatalog>>,
}

impl UpstreamPool {
    pub fn new(store: Store, config: &crate::HubConfig) -> Self {
        let mut http = reqwest::Client::builder()
            // Configured URLs are used as they are: a redirect would replay the session id and
            // credential headers to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true);
        if !config.upstream_keep_alive {
            http = http.pool_max_idle_per_host(0);
        }
        Self {
            store,
            demo: config.demo_upstream,
            local: Arc::new(LocalServers::new(config.max_local_servers.max(1))),
            changes: tokio::sync::broadcast::channel(64).0,
            http: http.build().unwrap_or_default(),
            state: RwLock::new((Vec::new(), None)),
            reloading: AtomicBool::new(false),
            catalog: Default::default(),
        }
    }

    /// The upstreams as last loaded. The first use loads them; later, a set older than
    /// `SPECS_TTL` is still served while it is re-read in the background, so requests never wait
    /// on the database for it.
    pub async fn upstreams(self: &Arc<Self>) -> Vec<Arc<Upstream>> {
        {
            let state = self.state.read().await;
            if let Some(loaded) = state.1 {
                if loaded.elapsed() >= SPECS_TTL && !self.reloading.swap(true, Ordering::AcqRel) {
                    let pool = self.clone();
                    tokio::spawn(async move {
                        pool.reload(true).await;
                        pool.reloading.store(false, Ordering::Release);
                    });
                }
                return state.0.clone();
            }
        }
        self.reload(false).await
    }

    async fn reload(&self, even_if_loaded: bool) -> Vec<Arc<Upstream>> {
        // Read before locking: requests keep using the current set meanwhile.
        let specs = self.store.upstreams().await;
        let mut state = self.state.write().await;
        if state.1.is_some() && !even_if_loaded {
            return state.0.clone();
        }
        let mut wanted: Vec<Source> = Vec::new();
        if self.demo {
            wanted.push(Source::Demo);
        }
        match specs {
            Ok(specs) => wanted.extend(specs.into_iter().map(Source::Configured)),
            Err(e) => {
                tracing::error!(error = %e, "cannot load upstream servers; keeping the previous set");
                state.1 = Some(Instant::now());
                return state.0.clone();
            }
        }
        // Keep live connections of unchanged upstreams; retire the rest.
        let mut next = Vec::with_capacity(wanted.len());
        for source in wanted {
            match state.0.iter().find(|u| u.source == source) {
                Some(existing) => next.push(existing.clone()),
                None => next.push(Arc::new(Upstream::new(
                    source,
                    self.local.clone(),
                    self.changes.clone(),
                    self.http.clone(),
                ))),
            }
        }
        for old in state.0.iter().filter(|old| !next.iter().any(|n| Arc::ptr_eq(n, old))) {
            old.disconnect_all().await;
        }
        state.0 = next;
        state.1 = Some(Instant::now());
        state.0.clone()
    }

    /// Closes connections idle for `idle`, checking a few times per `idle`, until `stop` fires.
    pub async fn reap_idle(&self, idle: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval((idle / 3).clamp(Duration::from_millis(200), Duration::from_secs(30)));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let upstreams = self.state.read().await.0.clone();
            for upstream in upstreams {
                upstream.reap_idle(idle);
            }
        }
    }

    /// Closes every connection (stdio children are killed).
    pub async fn shutdown(&self) {
        for upstream in self.state.read().await.0.iter() {
            upstream.disconnect_all().await;
        }
    }

    /// Everything the upstreams offer, under the names clients see. Upstreams that fail are left
    /// out and logged; a name (or resource URI) already taken is not exposed twice. The merged
    /// catalog is rebuilt only when the set of upstreams or one of their listings changed.
    pub async fn catalog(self: &Arc<Self>, caller: &Caller) -> Arc<Catalog> {
        let upstreams = self.upstreams().await;
        let listings = futures_util::future::join_all(upstreams.iter().map(|u| u.listing(caller))).await;
        let listings: Vec<Option<Arc<Listing>>> = upstreams
            .iter()
            .zip(listings)
            .map(|(upstream, listing)| {
                listing
                    .inspect_err(
                        |e| tracing::warn!(upstream = %upstream.name, error = %e, "upstream unavailable for listing"),
                    )
                    .ok()
            })
            .collect();
        let mut cached = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = cached.as_ref().filter(|c| c.built_from(&upstreams, &listings)) {
            return cached.catalog.clone();
        }
        let catalog = Arc::new(Catalog::merge(&upstreams, &listings));
        *cached = Some(CachedCatalog { upstreams, listings, catalog: catalog.clone() });
        catalog
    }
}

/// The last merged catalog and what it was merged from. Holding the `Arc`s keeps their addresses
/// from being reused, so pointer equality is a safe test of "unchanged".
struct CachedCatalog {
    upstreams: Vec<Arc<Upstream>>,
    listings: Vec<Option<Arc<Listing>>>,
    catalog: Arc<Catalog>,
}

impl CachedCatalog {
    fn built_from(&self, upstreams: &[Arc<Upstream>], listings: &[Option<Arc<Listing>>]) -> bool {
        let same_listing = |a: &Option<Arc<Listing>>, b: &Option<Arc<Listing>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.upstreams.len() == upstreams.len()
            && self.upstreams.iter().zip(upstreams).all(|(a, b)| Arc::ptr_eq(a, b))
            && self.listings.len() == listings.len()
            && self.listings.iter().zip(listings).all(|(a, b)| same_listing(a, b))
    }
}

/// The hub's merged view of its upstreams.
#[derive(Default)]
pub struct Catalog {
    pub tools: BTreeMap<String, (Arc<Upstream>, Tool)>,
    pub prompts: BTreeMap<String, (Arc<Upstream>, Prompt)>,
    pub resources: BTreeMap<String, (Arc<Upstream>, Resource)>,
    pub templates: Vec<(Arc<Upstream>, ResourceTemplate)>,
    /// Tool views by the address of the selections they were made for (kept alive beside them).
    views: std::sync::Mutex<HashMap<usize, ViewEntry>>,
}

type ViewEntry = (Arc<Vec<ToolSelection>>, Arc<ToolView>);

/// The tools one set of selections shows: worked out once per catalog, not per request.
pub struct ToolView {
    /// By the name the client sees.
    pub by_name: HashMap<String, VisibleTool>,
    /// What `tools/list` answers, in name order.
    pub listed: Vec<Tool>,
}

/// Selections seen per catalog before the view cache starts over (a policy change makes new ones).
const MAX_VIEWS: usize = 1024;

impl Catalog {
    fn merge(upstreams: &[Arc<Upstream>], listings: &[Option<Arc<Listing>>]) -> Self {
        let mut catalog = Catalog::default();
        for (upstream, listing) in upstreams.iter().zip(listings) {
            let Some(listing) = listing else { continue };
            for tool in &listing.tools {
                insert_once(&mut catalog.tools, upstream.exposed_name(&tool.name), upstream, tool.clone());
            }
            for prompt in &listing.prompts {
                insert_once(&mut catalog.prompts, upstream.exposed_name(&prompt.name), upstream, prompt.clone());
            }
            // Resource URIs are the upstream's own names for its data: exposed unchanged.
            for resource in &listing.resources {
                insert_once(&mut catalog.resources, resource.uri.clone(), upstream, resource.clone());
            }
            for template in &listing.templates {
                catalog.templates.push((upstream.clone(), template.clone()));
            }
        }
        catalog
    }

    /// Prompts, resources and templates of the upstreams whose tools `selections` select (tools
    /// are narrowed further, per tool, by [`Catalog::tool_view`]).
    pub fn selected_by(&self, selections: &[ToolSelection]) -> Catalog {
        let selected = |upstream: &Arc<Upstream>| toolkit::server_selected(selections, &upstream.name);
        fn keep<T: Clone>(
            items: &BTreeMap<String, (Arc<Upstream>, T)>,
            selected: impl Fn(&Arc<Upstream>) -> bool,
        ) -> BTreeMap<String, (Arc<Upstream>, T)> {
            items.iter().filter(|(_, (upstream, _))| selected(upstream)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        Catalog {
            prompts: keep(&self.prompts, selected),
            resources: keep(&self.resources, selected),
            templates: self.templates.iter().filter(|(upstream, _)| selected(upstream)).cloned().collect(),
            ..Catalog::default()
        }
    }

    /// The tools `selections` show, by the names they show them under.
    pub fn tool_view(&self, selections: &Arc<Vec<ToolSelection>>) -> Arc<ToolView> {
        let key = Arc::as_ptr(selections) as usize;
        if let Some((_, view)) = self.views.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return view.clone();
        }
        let offered: Vec<OfferedTool> = self
            .tools
            .iter()
            .map(|(name, (upstream, tool))| OfferedTool {
                server: &upstream.name,
                tool: &tool.name,
                default_name: name,
            })
            .collect();
        let visible = toolkit::visible_tools(selections, &offered);
        let listed = visible
            .values()
            .filter_map(|shown| {
                let (_, tool) = self.tools.get(&shown.default_name)?;
                let mut tool = tool.clone();
                tool.name = shown.name.clone().into();
                if let Some(description) = &shown.description {
                    tool.description = Some(description.clone().into());
                }
                tool.input_schema = Arc::new(toolkit::schema_without_fixed(&tool.input_schema, &shown.fixed_arguments));
                Some(tool)
            })
            .collect();
        let view = Arc::new(ToolView { by_name: visible.into_iter().collect(), listed });
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        if views.len() >= MAX_VIEWS {
            views.clear();
        }
        views.insert(key, (selections.clone(), view.clone()));
        view
    }

    /// The upstream serving `uri`: the one that listed it, else the first whose template's fixed
    /// prefix (the part before the first `{`) it starts with.
    pub fn resource_owner(&self, uri: &str) -> Option<Arc<Upstream>> {
        if let Some((upstream, _)) = self.resources.get(uri) {
            return Some(upstream.clone());
        }
        self.templates
            .iter()
            .find(|(_, t)| {
                let fixed = t.uri_template.split('{').next().unwrap_or_default();
                !fixed.is_empty() && uri.starts_with(fixed)
            })
            .map(|(upstream, _)| upstream.clone())
    }
}

fn insert_once<T>(map: &mut BTreeMap<String, (Arc<Upstream>, T)>, name: String, upstream: &Arc<Upstream>, item: T) {
    if map.contains_key(&name) {
        tracing::warn!(name = %name, upstream = %upstream.name, "name collision; keeping the first");
        return;
    }
    map.insert(name, (upstream.clone(), item));
}
