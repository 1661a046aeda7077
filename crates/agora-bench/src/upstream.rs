//! The benchmark upstream: an rmcp Streamable HTTP server with one tiny tool, as cheap as an MCP
//! server can be, so that what the hub adds stands out.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};

use crate::Error;

#[derive(Clone)]
struct Noop {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Noop {
    #[tool(description = "Does nothing, quickly.")]
    async fn noop(&self) -> String {
        "ok".to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Noop {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

pub async fn serve(listen: &str) -> Result<(), Error> {
    let service = StreamableHttpService::new(
        || Ok(Noop { tool_router: Noop::tool_router() }),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("upstream listening on http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, axum::Router::new().nest_service("/mcp", service)).await?;
    Ok(())
}
