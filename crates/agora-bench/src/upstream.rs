//! The benchmark upstream: rmcp Streamable HTTP servers whose tools answer at once, as cheap as an
//! MCP server can be, so that what the hub adds stands out. Either one endpoint with a `noop` tool,
//! or (fan-out) several endpoints with many small, realistic-looking tools each.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;

use crate::Error;
use crate::process::{Child, spawn};

const READY: &str = "upstream listening on ";

/// Starts `agora-bench upstream ARGS` as a separate process; its `line` is the base URL (`…/mcp`).
pub async fn start(args: &[&str]) -> Result<Child, Error> {
    let args: Vec<&str> = std::iter::once("upstream").chain(args.iter().copied()).collect();
    spawn(&std::env::current_exe()?, &args, &[], READY).await
}

/// Tools whose calls all answer "ok" (handlers written out, as the list is generated).
#[derive(Clone)]
struct Tools(Arc<Vec<Tool>>);

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.0.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !self.0.iter().any(|tool| tool.name == request.name) {
            return Err(ErrorData::invalid_params(format!("Unknown tool: {}", request.name), None));
        }
        Ok(CallToolResult::success(vec![ContentBlock::text("ok")]).into())
    }
}

fn schema(value: serde_json::Value) -> JsonObject {
    value.as_object().cloned().unwrap_or_default()
}

fn noop() -> Tool {
    Tool::new("noop", "Does nothing, quickly.", schema(json!({"type": "object", "properties": {}})))
}

/// A tool shaped like a typical API wrapper's: two string arguments, one required, both described.
fn lookup(i: usize) -> Tool {
    Tool::new(
        format!("lookup_record_{i}"),
        format!("Looks up a record of collection {i} by its id and returns the requested fields."),
        schema(json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "The record's id."},
                "fields": {"type": "string", "description": "Comma-separated field names; all fields when omitted."}
            },
            "required": ["id"]
        })),
    )
}

/// Serves `/mcp` (a `noop` tool), or with `endpoints` N the endpoints `/mcp/0` … `/mcp/N-1` with
/// `tools` generated tools each. Prints `upstream listening on http://ADDRESS/mcp` once bound.
pub async fn serve(listen: &str, endpoints: Option<usize>, tools: usize) -> Result<(), Error> {
    let tools = Tools(Arc::new(match endpoints {
        None => vec![noop()],
        Some(_) => (0..tools).map(lookup).collect(),
    }));
    let service = || {
        let tools = tools.clone();
        StreamableHttpService::new(
            move || Ok(tools.clone()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        )
    };
    let router = match endpoints {
        None => axum::Router::new().nest_service("/mcp", service()),
        Some(n) => (0..n).fold(axum::Router::new(), |router, i| router.nest_service(&format!("/mcp/{i}"), service())),
    };
    crate::process::serve(listen, READY, router).await
}
