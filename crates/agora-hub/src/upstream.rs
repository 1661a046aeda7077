//! Connections to upstream MCP servers: remote (Streamable HTTP), local (stdio child processes) and
//! the built-in demo. Each is connected on first use, its tool list cached, and dropped (to be
//! reconnected on the next use) when it fails. One broken upstream never fails the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_store::{Store, UpstreamServer, UpstreamTransport};
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::{RoleClient, RunningService};
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
    client: Mutex<Option<Arc<RunningService<RoleClient, ()>>>>,
    tools: RwLock<Option<(Arc<Vec<Tool>>, Instant)>>,
}

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
            tools: RwLock::new(None),
        }
    }

    async fn connect(&self) -> Result<Arc<RunningService<RoleClient, ()>>, UpstreamError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let connecting = async {
            match &self.source {
                Source::Demo => {
                    let (server_end, client_end) = tokio::io::duplex(256 * 1024);
                    tokio::spawn(async move {
                        if let Ok(running) = DemoServer::new().serve(server_end).await {
                            let _ = running.waiting().await;
                        }
                    });
                    ().serve(client_end).await.map_err(|e| UpstreamError::Connect(e.to_string()))
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
                        ().serve(StreamableHttpClientTransport::from_config(config))
                            .await
                            .map_err(|e| UpstreamError::Connect(e.to_string()))
                    }
                    UpstreamTransport::Stdio { command, args, env } => {
                        let mut cmd = tokio::process::Command::new(command);
                        // Only what is configured reaches the child: no agora secrets through inheritance.
                        cmd.args(args).env_clear().envs(env).kill_on_drop(true);
                        if let Some(path) = std::env::var_os("PATH") {
                            if !env.contains_key("PATH") {
                                cmd.env("PATH", path);
                            }
                        }
                        let transport = TokioChildProcess::builder(cmd)
                            .stderr(std::process::Stdio::null())
                            .spawn()
                            .map(|(transport, _)| transport)
                            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
                        ().serve(transport).await.map_err(|e| UpstreamError::Connect(e.to_string()))
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
        *self.tools.write().await = None;
    }

    /// The upstream's tools, from cache when fresh.
    pub async fn tools(&self) -> Result<Arc<Vec<Tool>>, UpstreamError> {
        if let Some((tools, at)) = self.tools.read().await.as_ref() {
            if at.elapsed() < TOOL_LIST_TTL {
                return Ok(tools.clone());
            }
        }
        let listed = async {
            let client = self.connect().await?;
            client.list_all_tools().await.map_err(|e| UpstreamError::Call(e.to_string()))
        };
        match tokio::time::timeout(self.timeout, listed).await {
            Ok(Ok(tools)) => {
                let tools = Arc::new(tools);
                *self.tools.write().await = Some((tools.clone(), Instant::now()));
                Ok(tools)
            }
            Ok(Err(e)) => {
                self.forget_connection().await;
                Err(e)
            }
            Err(_) => {
                self.forget_connection().await;
                Err(UpstreamError::Timeout(self.timeout.as_millis()))
            }
        }
    }

    pub async fn call(
        &self,
        tool: &str,
        arguments: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<CallToolResult, UpstreamError> {
        let call = async {
            let client = self.connect().await?;
            let mut params = CallToolRequestParams::new(tool.to_owned());
            params.arguments = arguments;
            client.call_tool(params).await.map_err(|e| UpstreamError::Call(e.to_string()))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => {
                self.forget_connection().await;
                Err(e)
            }
            Err(_) => {
                self.forget_connection().await;
                Err(UpstreamError::Timeout(self.timeout.as_millis()))
            }
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

    /// Closes every connection (stdio children are killed).
    pub async fn shutdown(&self) {
        for upstream in self.state.read().await.0.iter() {
            upstream.forget_connection().await;
        }
    }

    /// All tools under their exposed names, mapped to (upstream, original name). Upstreams that fail
    /// are skipped and logged; a name already taken is not exposed twice.
    pub async fn catalog(&self) -> BTreeMap<String, (Arc<Upstream>, Tool)> {
        let upstreams = self.upstreams().await;
        let listings = futures_util::future::join_all(upstreams.iter().map(|u| u.tools())).await;
        let mut catalog = BTreeMap::new();
        for (upstream, listing) in upstreams.iter().zip(listings) {
            match listing {
                Ok(tools) => {
                    for tool in tools.iter() {
                        let exposed = upstream.exposed_name(&tool.name);
                        if catalog.contains_key(&exposed) {
                            tracing::warn!(tool = %exposed, upstream = %upstream.name, "tool name collision; keeping the first");
                            continue;
                        }
                        catalog.insert(exposed, (upstream.clone(), tool.clone()));
                    }
                }
                Err(e) => tracing::warn!(upstream = %upstream.name, error = %e, "upstream unavailable for tools/list"),
            }
        }
        catalog
    }
}
