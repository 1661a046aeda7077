//! The closed-loop load driver every scenario shares: N clients, each repeating one request as fast
//! as answers come, for a fixed time; throughput and latency percentiles over all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientCacheConfig, RoleClient, ServiceExt};
use serde::Serialize;

use crate::Error;

#[derive(Serialize, Clone, Default)]
pub struct Stats {
    pub calls: usize,
    pub errors: usize,
    pub throughput: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Stats {
    /// `self`'s throughput as a share of `baseline`'s.
    pub fn ratio_to(&self, baseline: f64) -> f64 {
        if baseline > 0.0 { self.throughput / baseline } else { 0.0 }
    }

    /// Prints the errors of a step, if it had any.
    pub fn print_errors(&self, what: &str) {
        if let Some(first) = &self.first_error {
            println!("        {what}: {} errors, the first: {first}", self.errors);
        }
    }
}

/// One client of a load step: `call` makes one request and checks its answer.
pub trait Client: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Result<(), Error>> + Send;

    /// Ends the client's connection before the next step starts.
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// Runs every client for `duration`, after one warm-up call each (whose failure fails the run).
pub async fn run<C: Client>(mut clients: Vec<C>, duration: Duration) -> Result<Stats, Error> {
    for client in &mut clients {
        client.call().await?;
    }
    let gate = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.wait().await;
                let deadline = Instant::now() + duration;
                let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0usize, None);
                while Instant::now() < deadline {
                    let started = Instant::now();
                    match client.call().await {
                        Ok(()) => latencies.push(started.elapsed()),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                client.close().await;
                (latencies, errors, first_error)
            })
        })
        .collect();
    let started = Instant::now();
    let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
    for task in tasks {
        let (l, e, first) = task.await?;
        latencies.extend(l);
        errors += e;
        first_error = first_error.or(first);
    }
    let elapsed = started.elapsed().as_secs_f64().max(duration.as_secs_f64());
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Ok(Stats {
        calls: latencies.len(),
        errors,
        throughput: latencies.len() as f64 / elapsed,
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        first_error,
    })
}

/// An MCP client (rmcp, Streamable HTTP) repeating one request.
pub struct Mcp {
    service: RunningService<RoleClient, ()>,
    request: McpRequest,
}

#[derive(Clone, Copy)]
pub enum McpRequest {
    /// `tools/call noop`.
    CallNoop,
    /// `tools/list`, which must list exactly this many tools.
    ListTools(usize),
}

impl Mcp {
    pub async fn connect(url: &str, token: Option<&str>, request: McpRequest) -> Result<Self, Error> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
        if let Some(token) = token {
            config = config.auth_header(token.to_owned());
        }
        // Each client keeps its own connection alive, as an MCP client does (rmcp's default HTTP
        // client opens one per request). Every server measured here sets TCP_NODELAY, so no reply
        // waits on a delayed ACK.
        let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
        let service = ().serve(StreamableHttpClientTransport::with_client(http, config)).await?;
        // Every request must reach the server, never rmcp's response cache.
        service.set_response_cache_config(ClientCacheConfig::disabled()).await;
        Ok(Self { service, request })
    }

    /// Connects `clients` clients.
    pub async fn connect_all(
        url: &str,
        token: Option<&str>,
        clients: usize,
        request: McpRequest,
    ) -> Result<Vec<Self>, Error> {
        let mut connected = Vec::with_capacity(clients);
        for _ in 0..clients {
            connected.push(Self::connect(url, token, request).await?);
        }
        Ok(connected)
    }

    /// Tools the server lists now.
    pub async fn tool_count(&self) -> Result<usize, Error> {
        Ok(self.service.list_tools(None).await?.tools.len())
    }
}

impl Client for Mcp {
    async fn call(&mut self) -> Result<(), Error> {
        match self.request {
            McpRequest::CallNoop => {
                let result = self.service.call_tool(CallToolRequestParams::new("noop")).await?;
                if result.is_error == Some(true) {
                    return Err("noop answered with an error".into());
                }
            }
            McpRequest::ListTools(expected) => {
                let listed = self.tool_count().await?;
                if listed != expected {
                    return Err(format!("listed {listed} tools, expected {expected}").into());
                }
            }
        }
        Ok(())
    }

    async fn close(self) {
        let _ = self.service.cancel().await;
    }
}
