//! The floor for hub-overhead: the least an MCP gateway built from agora's own crates can cost.
//! rmcp's Streamable HTTP server, set up as the hub's (JSON responses, sessions), forwards each
//! `tools/list` and `tools/call` to the upstream over rmcp's client: one upstream connection per
//! downstream session, on a kept-alive HTTP client. No authentication, policy, toolkits, audit,
//! credentials or relaying: what agora adds to a call is what it costs beyond this.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use tokio::sync::OnceCell;

use crate::Error;
use crate::process::{Child, spawn};

const READY: &str = "floor listening on ";

/// Starts `agora-bench floor --upstream URL` as a separate process; its `line` is its URL.
pub async fn start(upstream_url: &str) -> Result<Child, Error> {
    spawn(&std::env::current_exe()?, &["floor", "--upstream", upstream_url], &[], READY).await
}

#[derive(Clone)]
struct Passthrough {
    upstream_url: Arc<str>,
    http: reqwest::Client,
    /// This downstream session's upstream connection, opened on first use.
    upstream: Arc<OnceCell<RunningService<RoleClient, ()>>>,
}

impl Passthrough {
    async fn upstream(&self) -> Result<&RunningService<RoleClient, ()>, ErrorData> {
        self.upstream
            .get_or_try_init(|| async {
                let config = StreamableHttpClientTransportConfig::with_uri(self.upstream_url.clone());
                ().serve(StreamableHttpClientTransport::with_client(self.http.clone(), config)).await
            })
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }
}

impl ServerHandler for Passthrough {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let upstream = self.upstream().await?;
        upstream.list_tools(request).await.map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let upstream = self.upstream().await?;
        let result = upstream.call_tool(request).await.map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(result.into())
    }
}

/// Serves the passthrough to `upstream_url` on `listen` until killed.
pub async fn serve(listen: &str, upstream_url: &str) -> Result<(), Error> {
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let upstream_url: Arc<str> = upstream_url.into();
    let config = StreamableHttpServerConfig::default().with_legacy_session_mode(true).with_json_response(true);
    let service = StreamableHttpService::new(
        move || {
            Ok(Passthrough { upstream_url: upstream_url.clone(), http: http.clone(), upstream: Default::default() })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    crate::process::serve(listen, READY, axum::Router::new().nest_service("/mcp", service)).await
}
