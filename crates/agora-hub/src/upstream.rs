//! Connections to upstream MCP servers: remote (Streamable HTTP), local (stdio child processes) and
//! the built-in demo. Each is connected on first use, its tool list cached, and dropped (to be
//! reconnected on the next use) when it fails. One broken upstream never fails the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_store::{Store, UpstreamServer, UpstreamTransport};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, CompleteRequestParams, CompleteResult, GetPromptRequestParams,
    GetPromptResult, Prompt, ReadResourceRequestParams, ReadResourceResult, Resource, ResourceTemplate, Tool,
};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ServiceExt, serde_json};
use tokio::sync::{Mutex, RwLock};

use crate::demo::DemoServer;

/// How long a tool list is reused before it is asked for again.
const TOOL_LIST_TTL: Duration = Duration::from_secs(30);
/// How long the set of configured upstreams is reused before the database is read again.
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
}

/// Where an upstream comes from: the database, or built in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Configured(UpstreamServer),
    Demo,
}

pub struct Upstream {
    pub name: String,
    pub prefix: Option<String>,
    source: Source,
    timeout: Duration,
    client: Mutex<Option<Client>>,
    listing: Arc<ListingSlot>,
    health: std::sync::Mutex<Health>,
}

type ListingSlot = RwLock<Option<(Arc<Listing>, Instant)>>;

/// The hub's side of an upstream connection: a list-changed notification forgets the cached
/// listing, so the next request lists again instead of waiting out the cache.
#[derive(Clone)]
pub struct ListChanged(Arc<ListingSlot>);

impl ListChanged {
    async fn forget(&self) {
        *self.0.write().await = None;
    }
}

impl rmcp::ClientHandler for ListChanged {
    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.forget().await;
    }

    async fn on_prompt_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.forget().await;
    }

    async fn on_resource_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.forget().await;
    }
}

/// Failure streak and use, for restart backoff and idle reaping.
struct Health {
    consecutive_failures: u32,
    retry_after: Option<Instant>,
    last_used: Instant,
    in_flight: usize,
}

struct InFlight<'a>(&'a Upstream);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut health = self.0.health();
        health.in_flight = health.in_flight.saturating_sub(1);
        health.last_used = Instant::now();
    }
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

type Client = Arc<RunningService<RoleClient, ListChanged>>;

impl Upstream {
    fn new(source: Source) -> Self {
        let (name, prefix, timeout_ms) = match &source {
            Source::Configured(s) => (s.name.clone(), s.tool_prefix.clone(), s.timeout_ms),
            Source::Demo => ("demo".to_owned(), Some("demo".to_owned()), 10_000),
        };
        Self {
            name,
            prefix,
            source,
            timeout: Duration::from_millis(timeout_ms.max(1) as u64),
            client: Mutex::new(None),
            listing: Arc::new(RwLock::new(None)),
            health: std::sync::Mutex::new(Health {
                consecutive_failures: 0,
                retry_after: None,
                last_used: Instant::now(),
                in_flight: 0,
            }),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a request under way until the returned guard drops (even if the request is abandoned).
    fn begin(&self) -> InFlight<'_> {
        let mut health = self.health();
        health.in_flight += 1;
        health.last_used = Instant::now();
        InFlight(self)
    }

    fn record(&self, ok: bool) {
        let mut health = self.health();
        health.last_used = Instant::now();
        if ok {
            health.consecutive_failures = 0;
            health.retry_after = None;
        } else {
            health.consecutive_failures = health.consecutive_failures.saturating_add(1);
            health.retry_after = Some(Instant::now() + backoff(health.consecutive_failures));
        }
    }

    fn is_stdio(&self) -> bool {
        matches!(&self.source, Source::Configured(s) if matches!(s.transport, UpstreamTransport::Stdio { .. }))
    }

    /// Stops a local server nobody has used for `idle`; it starts again on next use.
    async fn reap_if_idle(&self, idle: Duration) {
        let idle_now = {
            let health = self.health();
            health.in_flight == 0 && health.last_used.elapsed() >= idle
        };
        if self.is_stdio() && idle_now && self.client.lock().await.is_some() {
            tracing::info!(upstream = %self.name, "stopping idle local server");
            self.forget_connection().await;
        }
    }

    async fn connect(&self) -> Result<Client, UpstreamError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        if let Some(wait) = self.health().retry_after.and_then(|at| at.checked_duration_since(Instant::now())) {
            return Err(UpstreamError::Connect(format!(
                "restarting after repeated failures; retry in {} ms",
                wait.as_millis()
            )));
        }
        let events = ListChanged(self.listing.clone());
        let connecting = async {
            match &self.source {
                Source::Demo => {
                    let (server_end, client_end) = tokio::io::duplex(256 * 1024);
                    tokio::spawn(async move {
                        if let Ok(running) = DemoServer::new().serve(server_end).await {
                            let _ = running.waiting().await;
                        }
                    });
                    events.serve(client_end).await.map_err(|e| UpstreamError::Connect(e.to_string()))
                }
                Source::Configured(spec) => match &spec.transport {
                    UpstreamTransport::Http { url, headers } => {
                        let mut config = StreamableHttpClientTransportConfig::with_uri(url.clone());
                        let mut header_map = std::collections::HashMap::new();
                        for (name, value) in headers {
                            let name = axum::http::HeaderName::from_bytes(name.as_bytes())
                                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
                            let value = axum::http::HeaderValue::from_str(value)
                                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
                            header_map.insert(name, value);
                        }
                        config = config.custom_headers(header_map);
                        events
                            .serve(StreamableHttpClientTransport::from_config(config))
                            .await
                            .map_err(|e| UpstreamError::Connect(e.to_string()))
                    }
                    UpstreamTransport::Stdio { command, args, env } => {
                        let mut cmd = tokio::process::Command::new(command);
                        // Only what is configured reaches the child: no agora secrets through inheritance.
                        cmd.args(args).env_clear().envs(env).kill_on_drop(true);
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
                        events.serve(transport).await.map_err(|e| UpstreamError::Connect(e.to_string()))
                    }
                },
            }
        };
        let client = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| UpstreamError::Timeout(CONNECT_TIMEOUT.as_millis()))??;
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn forget_connection(&self) {
        if let Some(client) = self.client.lock().await.take() {
            client.cancellation_token().cancel();
        }
        *self.listing.write().await = None;
    }

    /// Runs `op` on a connection, within the per-call timeout. A failed or timed-out upstream is
    /// disconnected, so that its next use reconnects (a crashed stdio child is restarted).
    async fn request<T, F, Fut>(&self, op: F) -> Result<T, UpstreamError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let _in_flight = self.begin();
        let call = async {
            let client = self.connect().await?;
            op(client).await.map_err(|e| UpstreamError::Call(e.to_string()))
        };
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(UpstreamError::Timeout(self.timeout.as_millis())),
        };
        if outcome.is_err() {
            self.forget_connection().await;
        }
        self.record(outcome.is_ok());
        outcome
    }

    /// Everything the upstream offers, from cache when fresh.
    pub async fn listing(&self) -> Result<Arc<Listing>, UpstreamError> {
        if let Some((listing, at)) = self.listing.read().await.as_ref()
            && at.elapsed() < TOOL_LIST_TTL
        {
            return Ok(listing.clone());
        }
        let listing = self
            .request(|client| async move {
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

    pub async fn call(
        &self,
        tool: &str,
        arguments: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<CallToolResult, UpstreamError> {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = arguments;
        self.request(|client| async move { client.call_tool(params).await }).await
    }

    pub async fn get_prompt(&self, params: GetPromptRequestParams) -> Result<GetPromptResult, UpstreamError> {
        self.request(|client| async move { client.get_prompt(params).await }).await
    }

    pub async fn read_resource(&self, params: ReadResourceRequestParams) -> Result<ReadResourceResult, UpstreamError> {
        self.request(|client| async move { client.read_resource(params).await }).await
    }

    pub async fn complete(&self, params: CompleteRequestParams) -> Result<CompleteResult, UpstreamError> {
        self.request(|client| async move { client.complete(params).await }).await
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
    state: RwLock<(Vec<Arc<Upstream>>, Option<Instant>)>,
}

impl UpstreamPool {
    pub fn new(store: Store, demo: bool) -> Self {
        Self { store, demo, state: RwLock::new((Vec::new(), None)) }
    }

    pub async fn upstreams(&self) -> Vec<Arc<Upstream>> {
        {
            let state = self.state.read().await;
            if state.1.is_some_and(|at| at.elapsed() < SPECS_TTL) {
                return state.0.clone();
            }
        }
        let mut state = self.state.write().await;
        if state.1.is_some_and(|at| at.elapsed() < SPECS_TTL) {
            return state.0.clone();
        }
        let mut wanted: Vec<Source> = Vec::new();
        if self.demo {
            wanted.push(Source::Demo);
        }
        match self.store.upstreams().await {
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
                None => next.push(Arc::new(Upstream::new(source))),
            }
        }
        for old in state.0.iter().filter(|old| !next.iter().any(|n| Arc::ptr_eq(n, old))) {
            old.forget_connection().await;
        }
        state.0 = next;
        state.1 = Some(Instant::now());
        state.0.clone()
    }

    /// Stops local servers idle for `idle`, checking a few times per `idle`, until `stop` fires.
    pub async fn reap_idle(&self, idle: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval((idle / 3).clamp(Duration::from_millis(200), Duration::from_secs(30)));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let upstreams = self.state.read().await.0.clone();
            for upstream in upstreams {
                upstream.reap_if_idle(idle).await;
            }
        }
    }

    /// Closes every connection (stdio children are killed).
    pub async fn shutdown(&self) {
        for upstream in self.state.read().await.0.iter() {
            upstream.forget_connection().await;
        }
    }

    /// Everything the upstreams offer, under the names clients see. Upstreams that fail are left
    /// out and logged; a name (or resource URI) already taken is not exposed twice.
    pub async fn catalog(&self) -> Catalog {
        let upstreams = self.upstreams().await;
        let listings = futures_util::future::join_all(upstreams.iter().map(|u| u.listing())).await;
        let mut catalog = Catalog::default();
        for (upstream, listing) in upstreams.iter().zip(listings) {
            let listing = match listing {
                Ok(listing) => listing,
                Err(e) => {
                    tracing::warn!(upstream = %upstream.name, error = %e, "upstream unavailable for listing");
                    continue;
                }
            };
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
}

/// The hub's merged view of its upstreams.
#[derive(Default)]
pub struct Catalog {
    pub tools: BTreeMap<String, (Arc<Upstream>, Tool)>,
    pub prompts: BTreeMap<String, (Arc<Upstream>, Prompt)>,
    pub resources: BTreeMap<String, (Arc<Upstream>, Resource)>,
    pub templates: Vec<(Arc<Upstream>, ResourceTemplate)>,
}

impl Catalog {
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
