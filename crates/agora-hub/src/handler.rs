//! The MCP server the hub presents: the union of its upstreams' tools, prompts and resources under
//! collision-free names, each request routed to the upstream that owns what it names.

use std::sync::Arc;

use agora_oauth::AccessClaims;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult, ContentBlock,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    Reference, ResultType, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};

use crate::upstream::{UpstreamError, UpstreamPool};

#[derive(Clone)]
pub struct HubHandler {
    pub(crate) pool: Arc<UpstreamPool>,
}

/// The verified caller of this request, put there by the bearer-token layer.
fn caller(context: &RequestContext<RoleServer>) -> String {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<AccessClaims>())
        .map(|claims| claims.sub.clone())
        .unwrap_or_default()
}

fn upstream_failure(what: &str, upstream: &str, error: UpstreamError) -> ErrorData {
    tracing::warn!(what, upstream, %error, "upstream request failed");
    ErrorData::internal_error(format!("upstream `{upstream}` failed: {error}"), None)
}

impl ServerHandler for HubHandler {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_prompts()
            .enable_resources()
            .enable_completions()
            .build();
        let mut config = ServerConfig::new(capabilities);
        config.server_info = Implementation::new("agora", env!("CARGO_PKG_VERSION"));
        config.instructions = Some("agora hub: tools from every upstream MCP server you may use.".into());
        config
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.pool.catalog().await.tools.into_iter().map(|(exposed, (_, mut tool))| {
            tool.name = exposed.into();
            tool
        });
        Ok(ListToolsResult::with_all_items(tools.collect()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let catalog = self.pool.catalog().await;
        // A tool the caller may not see answers exactly like one that does not exist.
        let Some((upstream, tool)) = catalog.tools.get(request.name.as_ref()) else {
            return Err(ErrorData::invalid_params(format!("Unknown tool: {}", request.name), None));
        };
        let who = caller(&context);
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

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = self.pool.catalog().await.prompts.into_iter().map(|(exposed, (_, mut prompt))| {
            prompt.name = exposed;
            prompt
        });
        Ok(ListPromptsResult::with_all_items(prompts.collect()))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let catalog = self.pool.catalog().await;
        let Some((upstream, prompt)) = catalog.prompts.get(&request.name) else {
            return Err(ErrorData::invalid_params(format!("Unknown prompt: {}", request.name), None));
        };
        request.name = prompt.name.clone();
        let mut result =
            upstream.get_prompt(request).await.map_err(|e| upstream_failure("prompts/get", &upstream.name, e))?;
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = self.pool.catalog().await.resources.into_values().map(|(_, resource)| resource);
        Ok(ListResourcesResult::with_all_items(resources.collect()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let templates = self.pool.catalog().await.templates.into_iter().map(|(_, template)| template);
        Ok(ListResourceTemplatesResult::with_all_items(templates.collect()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(upstream) = self.pool.catalog().await.resource_owner(&request.uri) else {
            return Err(ErrorData::resource_not_found(format!("Unknown resource: {}", request.uri), None));
        };
        let mut result =
            upstream.read_resource(request).await.map_err(|e| upstream_failure("resources/read", &upstream.name, e))?;
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result.into())
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let catalog = self.pool.catalog().await;
        let upstream = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let Some((upstream, original)) = catalog.prompts.get(&prompt.name) else {
                    return Err(ErrorData::invalid_params(format!("Unknown prompt: {}", prompt.name), None));
                };
                prompt.name = original.name.clone();
                upstream.clone()
            }
            Reference::Resource(template) => catalog
                .templates
                .iter()
                .find(|(_, t)| t.uri_template == template.uri)
                .map(|(upstream, _)| upstream.clone())
                .ok_or_else(|| {
                    ErrorData::invalid_params(format!("Unknown resource template: {}", template.uri), None)
                })?,
            _ => return Err(ErrorData::invalid_params("unsupported completion reference", None)),
        };
        upstream.complete(request).await.map_err(|e| upstream_failure("completion/complete", &upstream.name, e))
    }
}
