//! The MCP server the hub presents: the union of its upstreams' tools under collision-free names,
//! each call routed to the upstream that owns the tool.

use std::sync::Arc;

use agora_oauth::AccessClaims;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ResultType, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};

use crate::upstream::UpstreamPool;

#[derive(Clone)]
pub struct HubHandler {
    pub(crate) pool: Arc<UpstreamPool>,
}

/// The verified caller of this request, put there by the bearer-token layer.
fn caller(context: &RequestContext<RoleServer>) -> Option<AccessClaims> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<AccessClaims>())
        .cloned()
}

impl ServerHandler for HubHandler {
    fn get_info(&self) -> ServerConfig {
        let mut config = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        config.server_info = Implementation::new("agora", env!("CARGO_PKG_VERSION"));
        config.instructions = Some("agora hub: tools from every upstream MCP server you may use.".into());
        config
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools: Vec<Tool> = self
            .pool
            .catalog()
            .await
            .into_iter()
            .map(|(exposed, (_, mut tool))| {
                tool.name = exposed.into();
                tool
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let catalog = self.pool.catalog().await;
        // A tool the caller may not see answers exactly like one that does not exist.
        let Some((upstream, tool)) = catalog.get(request.name.as_ref()) else {
            return Err(ErrorData::invalid_params(format!("Unknown tool: {}", request.name), None));
        };
        let who = caller(&context).map(|c| c.sub).unwrap_or_default();
        let started = std::time::Instant::now();
        let result = upstream.call(&tool.name, request.arguments).await;
        let elapsed_ms = started.elapsed().as_millis();
        match result {
            Ok(mut result) => {
                // Upstreams may speak an older revision (no `resultType`); rmcp strips it again
                // for clients that negotiated one.
                result.result_type = Some(ResultType::COMPLETE);
                tracing::info!(tool = %request.name, upstream = %upstream.name, user = %who, elapsed_ms, "tool call");
                Ok(result.into())
            }
            Err(e) => {
                tracing::warn!(tool = %request.name, upstream = %upstream.name, user = %who, elapsed_ms, error = %e, "tool call failed");
                Ok(CallToolResult::error(vec![ContentBlock::text(format!("upstream `{}` failed: {e}", upstream.name))])
                    .into())
            }
        }
    }
}
