//! The MCP server the hub presents: the union of its upstreams' tools, prompts and resources under
//! collision-free names, each request routed to the upstream that owns what it names.

#![allow(deprecated)] // sampling, roots, logging and resource subscriptions are deprecated by SEP-2577, yet in use

use std::sync::Arc;

use agora_core::toolkit::{self, VisibleTool};
use agora_store::AuditEntry;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest, CompleteRequest,
    CompleteRequestParams, CompleteResult, ContentBlock, ElicitRequest, GetPromptRequest, GetPromptRequestParams,
    GetPromptResponse, Implementation, InputRequest, InputRequests, InputRequiredResult, InputResponses,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, Reference, ResultType, ServerCapabilities,
    ServerConfig, ServerResult, SetLevelRequest, SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams,
    SubscriptionFilter, UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData, ServerHandler};

use crate::audit::AuditLog;
use crate::credentials::{CredentialError, Credentials};
use crate::policy::{Principal, Scope};
use crate::relay::{ListChange, to_error_data};
use crate::upstream::{Caller, Catalog, Upstream, UpstreamError, UpstreamPool};

/// The key of the hub's own input request (the connect link) among an upstream's.
const CONNECT_INPUT: &str = "agora_connect";
/// How long the hub waits for a user to finish connecting a service over an elicitation.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// A URL elicitation sending the user to a connect page.
fn connect_elicitation(service: &str, url: &str) -> rmcp::model::ElicitRequestParams {
    rmcp::model::ElicitRequestParams::UrlElicitationParams {
        meta: None,
        message: format!("Connect your {service} account to continue."),
        url: url.to_owned(),
        elicitation_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// How many `input_required` rounds the hub drives for a client that cannot receive them.
const MAX_INPUT_ROUNDS: usize = 8;

#[derive(Clone)]
pub struct HubHandler {
    pub(crate) pool: Arc<UpstreamPool>,
    pub(crate) audit: AuditLog,
    pub(crate) credentials: Arc<Credentials>,
}

/// What the bearer layer decided for this request: who, and what they may use. Every request
/// passes that layer, so a missing scope is the hub's own bug and refuses everything.
fn scope(context: &RequestContext<RoleServer>) -> Result<Scope, ErrorData> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Scope>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("request not authorized", None))
}

/// The downstream request being served: who made it (the bearer-token layer put the principal
/// there), over which session and revision, with what capabilities.
fn caller(context: &RequestContext<RoleServer>) -> Caller {
    let parts = context.extensions.get::<axum::http::request::Parts>();
    Caller {
        subject: parts
            .and_then(|parts| parts.extensions.get::<Principal>())
            .map(|principal| principal.subject.clone())
            .unwrap_or_default(),
        profile: parts
            .and_then(|parts| parts.extensions.get::<Scope>())
            .map(|scope| scope.profile_id.clone())
            .unwrap_or_default(),
        session: parts
            .and_then(|parts| parts.headers.get(crate::SESSION_HEADER))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        peer: context.peer.clone(),
        protocol_version: context.protocol_version().unwrap_or_default(),
        capabilities: context.client_capabilities().unwrap_or_default(),
        meta: context.meta.clone(),
        cancelled: context.ct.clone(),
        credential: None,
    }
}

fn failure(what: &str, upstream: &str, error: UpstreamError) -> ErrorData {
    match error {
        UpstreamError::Rejected(error) => error,
        other => {
            tracing::warn!(what, upstream, error = %other, "upstream request failed");
            ErrorData::internal_error(format!("upstream `{upstream}` failed: {other}"), None)
        }
    }
}

fn unexpected(upstream: &str) -> UpstreamError {
    UpstreamError::Call(format!("upstream `{upstream}` answered with the wrong kind of result"))
}

/// A request that an upstream may answer with `input_required` and that is then sent again with
/// the inputs it asked for (SEP-2322).
trait Resumable: Clone {
    fn into_request(self) -> ClientRequest;
    fn resume(&mut self, responses: Option<InputResponses>, state: Option<String>);
}

macro_rules! resumable {
    ($params:ty, $request:ty) => {
        impl Resumable for $params {
            fn into_request(self) -> ClientRequest {
                <$request>::new(self).into()
            }
            fn resume(&mut self, responses: Option<InputResponses>, state: Option<String>) {
                self.input_responses = responses;
                self.request_state = state;
            }
        }
    };
}

resumable!(CallToolRequestParams, CallToolRequest);
resumable!(GetPromptRequestParams, GetPromptRequest);
resumable!(ReadResourceRequestParams, ReadResourceRequest);

#[expect(clippy::large_enum_variant, reason = "lives on the stack for one request")]
enum Outcome {
    Done(ServerResult),
    InputRequired(InputRequiredResult),
}

/// Sends `params` upstream. A client of 2026-07-28 or later gets an `input_required` answer as it
/// is, and sends it back itself; for an older client the hub asks it over its session and sends
/// the answers upstream.
async fn drive<P: Resumable>(upstream: &Upstream, caller: &Caller, mut params: P) -> Result<Outcome, UpstreamError> {
    for _ in 0..MAX_INPUT_ROUNDS {
        match upstream.send(caller, params.clone().into_request()).await? {
            ServerResult::InputRequiredResult(asked) if !caller.is_sessionless_revision() => {
                let responses = gather(caller, asked.input_requests.unwrap_or_default()).await?;
                params.resume((!responses.is_empty()).then_some(responses), asked.request_state);
            }
            ServerResult::InputRequiredResult(asked) => return Ok(Outcome::InputRequired(asked)),
            other => return Ok(Outcome::Done(other)),
        }
    }
    Err(UpstreamError::Call(format!("no result after {MAX_INPUT_ROUNDS} rounds of input")))
}

/// Asks the downstream client for each input an upstream requires.
async fn gather(caller: &Caller, requests: InputRequests) -> Result<InputResponses, UpstreamError> {
    let peer = &caller.peer;
    let answers = futures_util::future::join_all(requests.into_iter().map(|(key, request)| async move {
        let answer = match request {
            InputRequest::CreateMessage(request) => {
                peer.create_message(request.params).await.map(|r| serde_json::to_value(r).unwrap_or_default())
            }
            InputRequest::Elicitation(request) => {
                peer.create_elicitation(request.params).await.map(|r| serde_json::to_value(r).unwrap_or_default())
            }
            InputRequest::ListRoots(_) => peer.list_roots().await.map(|r| serde_json::to_value(r).unwrap_or_default()),
            other => {
                let message =
                    format!("unsupported input request: {}", serde_json::to_value(&other).unwrap_or_default());
                return Err(UpstreamError::Rejected(ErrorData::invalid_params(message, None)));
            }
        };
        answer.map(|value| (key, value)).map_err(|e| UpstreamError::Rejected(to_error_data(e)))
    }))
    .await;
    answers.into_iter().collect()
}

impl HubHandler {
    /// Writes a tool call to the account's audit log (never its arguments).
    #[expect(clippy::too_many_arguments, reason = "one call's facts, gathered in one place")]
    fn record_call(
        &self,
        scope: &Scope,
        caller: &Caller,
        tool: &str,
        upstream: &Upstream,
        shown: &VisibleTool,
        started: std::time::Instant,
        outcome: &str,
    ) {
        self.audit.record(AuditEntry {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: Some(scope.account_id.clone()),
            at: agora_oauth::now(),
            actor: caller.subject.clone(),
            action: "tools/call".into(),
            detail: serde_json::json!({
                "tool": tool, "upstream": upstream.name, "upstream_tool": shown.tool, "profile": scope.profile_id,
                "client": scope.client_id, "duration_ms": started.elapsed().as_millis() as u64, "outcome": outcome,
            }),
        });
    }

    /// The catalog as the request's profile sees it: prompts, resources and templates only of the
    /// upstreams whose tools it selects (tools are narrowed further by `visible`).
    async fn catalog(&self, caller: &Caller, scope: &Scope) -> Catalog {
        self.pool.catalog(caller).await.selected_by(&scope.selections)
    }

    async fn resource_owner(&self, caller: &Caller, scope: &Scope, uri: &str) -> Result<Arc<Upstream>, ErrorData> {
        self.catalog(caller, scope)
            .await
            .resource_owner(uri)
            .ok_or_else(|| ErrorData::resource_not_found(format!("Unknown resource: {uri}"), None))
    }

    /// Sends a resource (un)subscription to the upstream owning `uri`, or, for a URI nobody lists
    /// (resources may exist without being listed), to every upstream that takes subscriptions.
    async fn on_subscribers(
        &self,
        caller: &Caller,
        scope: &Scope,
        uri: &str,
        request: ClientRequest,
    ) -> Result<(), ErrorData> {
        let candidates = match self.resource_owner(caller, scope, uri).await {
            Ok(owner) => vec![owner],
            Err(_) => {
                let mut subscribable = Vec::new();
                let upstreams = self.pool.upstreams().await;
                for upstream in upstreams.into_iter().filter(|u| toolkit::server_selected(&scope.selections, &u.name)) {
                    let capabilities = upstream.capabilities(caller).await;
                    if capabilities.and_then(|c| c.resources).and_then(|r| r.subscribe).unwrap_or(false) {
                        subscribable.push(upstream);
                    }
                }
                subscribable
            }
        };
        let mut last_error = ErrorData::resource_not_found(format!("Unknown resource: {uri}"), None);
        let mut accepted = false;
        for upstream in candidates {
            match upstream.send(caller, request.clone()).await {
                Ok(_) => accepted = true,
                Err(e) => last_error = failure(request.method(), &upstream.name, e),
            }
        }
        if accepted { Ok(()) } else { Err(last_error) }
    }
}

impl ServerHandler for HubHandler {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_completions()
            .enable_logging()
            .build();
        let mut config = ServerConfig::new(capabilities);
        config.server_info = Implementation::new("agora", env!("CARGO_PKG_VERSION"));
        config.instructions = Some("agora hub: tools from every upstream MCP server you may use.".into());
        config
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        let mut accepted = requested.supported_by(&self.get_info().capabilities);
        // Resource updates reach legacy sessions only (`resources/subscribe`); not offered here.
        accepted.resource_subscriptions = None;
        Some(accepted)
    }

    /// A `subscriptions/listen` stream: every upstream list change, until the client cancels.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.pool.changes.subscribe();
        let sink = context.sink().clone();
        let wanted = sink.accepted().clone();
        loop {
            let change = tokio::select! {
                _ = context.cancelled() => return Ok(()),
                change = changes.recv() => change,
            };
            let sent = match change {
                Ok(ListChange::Tools) if wanted.tools_list_changed == Some(true) => {
                    sink.notify_tool_list_changed().await
                }
                Ok(ListChange::Prompts) if wanted.prompts_list_changed == Some(true) => {
                    sink.notify_prompt_list_changed().await
                }
                Ok(ListChange::Resources) if wanted.resources_list_changed == Some(true) => {
                    sink.notify_resource_list_changed().await
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Ok(()),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            };
            if sent.is_err() {
                return Ok(());
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let scope = scope(&context)?;
        let catalog = self.pool.catalog(&caller(&context)).await;
        Ok(ListToolsResult::with_all_items(catalog.tool_view(&scope.selections).listed.clone()))
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let scope = scope(&context)?;
        let mut caller = caller(&context);
        let catalog = self.pool.catalog(&caller).await;
        // A tool the caller may not see answers exactly like one that does not exist.
        let unknown = || ErrorData::invalid_params(format!("Unknown tool: {}", request.name), None);
        let view = catalog.tool_view(&scope.selections);
        let shown = view.by_name.get(request.name.as_ref()).ok_or_else(unknown)?;
        let (upstream, tool) = catalog.tools.get(&shown.default_name).ok_or_else(unknown)?;
        let exposed = std::mem::replace(&mut request.name, tool.name.clone());
        request.arguments = toolkit::arguments_with_fixed(request.arguments.take(), &shown.fixed_arguments);
        let started = std::time::Instant::now();
        if let Some(service) = upstream.service() {
            let mut resolved = self.credentials.resolve(&scope, &caller.subject, service).await;
            // Clients that take URL elicitations are sent to the connect page directly: a 2026-07-28
            // client through an `input_required` answer it retries, an older one over its session.
            if let Err(CredentialError::ConnectNeeded { service: name, url }) = &resolved
                && caller.capabilities.elicitation.as_ref().is_some_and(|e| e.url.is_some())
            {
                let answered = request.input_responses.as_mut().and_then(|r| r.remove(CONNECT_INPUT)).is_some();
                if request.input_responses.as_ref().is_some_and(|r| r.is_empty()) {
                    request.input_responses = None;
                }
                let asked = connect_elicitation(name, url);
                if caller.is_sessionless_revision() {
                    if !answered {
                        let mut inputs = InputRequests::new();
                        inputs.insert(CONNECT_INPUT.into(), InputRequest::Elicitation(ElicitRequest::new(asked)));
                        return Ok(CallToolResponse::InputRequired(InputRequiredResult::from_input_requests(inputs)));
                    }
                } else if let Err(e) = caller.peer.create_elicitation_with_timeout(asked, Some(CONNECT_WAIT)).await {
                    tracing::debug!(error = %e, "the client did not take the connect elicitation");
                }
                // The user may have connected meanwhile.
                resolved = self.credentials.resolve(&scope, &caller.subject, service).await;
            }
            match resolved {
                Ok(credential) => caller.credential = Some(credential),
                Err(CredentialError::Store(e)) => {
                    tracing::error!(error = %e, "cannot resolve a credential");
                    return Err(ErrorData::internal_error("credentials are unavailable right now", None));
                }
                // The user (or an administrator) has something to do: say what, in the result.
                Err(needed) => {
                    self.record_call(&scope, &caller, &exposed, upstream, shown, started, "connect_needed");
                    return Ok(CallToolResult::error(vec![ContentBlock::text(needed.to_string())]).into());
                }
            }
        }
        let outcome = drive(upstream, &caller, request).await;
        let elapsed_ms = started.elapsed().as_millis();
        let (tool, upstream_name, user) = (&*exposed, &upstream.name, &caller.subject);
        let (response, outcome_name) = match outcome {
            Ok(Outcome::Done(ServerResult::CallToolResult(mut result))) => {
                // Upstreams may speak an older revision (no `resultType`); rmcp strips it again
                // for clients that negotiated one.
                result.result_type = Some(ResultType::COMPLETE);
                tracing::info!(tool, upstream = %upstream_name, %user, elapsed_ms, "tool call");
                let outcome = if result.is_error == Some(true) { "tool_error" } else { "ok" };
                (Ok(result.into()), outcome)
            }
            Ok(Outcome::InputRequired(asked)) => (Ok(CallToolResponse::InputRequired(asked)), "input_required"),
            Ok(Outcome::Done(_)) => (Err(failure("tools/call", upstream_name, unexpected(upstream_name))), "error"),
            Err(UpstreamError::Rejected(error)) => (Err(error), "rejected"),
            Err(e) => {
                tracing::warn!(tool, upstream = %upstream_name, %user, elapsed_ms, error = %e, "tool call failed");
                let message = format!("upstream `{upstream_name}` failed: {e}");
                (Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into()), "upstream_failed")
            }
        };
        self.record_call(&scope, &caller, tool, upstream, shown, started, outcome_name);
        response
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let catalog = self.catalog(&caller(&context), &scope(&context)?).await;
        let prompts = catalog.prompts.into_iter().map(|(exposed, (_, mut prompt))| {
            prompt.name = exposed;
            prompt
        });
        Ok(ListPromptsResult::with_all_items(prompts.collect()))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let caller = caller(&context);
        let catalog = self.catalog(&caller, &scope(&context)?).await;
        let Some((upstream, prompt)) = catalog.prompts.get(&request.name) else {
            return Err(ErrorData::invalid_params(format!("Unknown prompt: {}", request.name), None));
        };
        request.name = prompt.name.clone();
        match drive(upstream, &caller, request).await.map_err(|e| failure("prompts/get", &upstream.name, e))? {
            Outcome::Done(ServerResult::GetPromptResult(mut result)) => {
                result.result_type = Some(ResultType::COMPLETE);
                Ok(result.into())
            }
            Outcome::InputRequired(asked) => Ok(GetPromptResponse::InputRequired(asked)),
            Outcome::Done(_) => Err(failure("prompts/get", &upstream.name, unexpected(&upstream.name))),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let catalog = self.catalog(&caller(&context), &scope(&context)?).await;
        let resources = catalog.resources.into_values().map(|(_, resource)| resource);
        Ok(ListResourcesResult::with_all_items(resources.collect()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let catalog = self.catalog(&caller(&context), &scope(&context)?).await;
        let templates = catalog.templates.into_iter().map(|(_, template)| template);
        Ok(ListResourceTemplatesResult::with_all_items(templates.collect()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = caller(&context);
        let upstream = self.resource_owner(&caller, &scope(&context)?, &request.uri).await?;
        match drive(&upstream, &caller, request).await.map_err(|e| failure("resources/read", &upstream.name, e))? {
            Outcome::Done(ServerResult::ReadResourceResult(mut result)) => {
                result.result_type = Some(ResultType::COMPLETE);
                Ok(result.into())
            }
            Outcome::InputRequired(asked) => Ok(ReadResourceResponse::InputRequired(asked)),
            Outcome::Done(_) => Err(failure("resources/read", &upstream.name, unexpected(&upstream.name))),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = caller(&context);
        let uri = request.uri.clone();
        self.on_subscribers(&caller, &scope(&context)?, &uri, SubscribeRequest::new(request).into()).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = caller(&context);
        let uri = request.uri.clone();
        self.on_subscribers(&caller, &scope(&context)?, &uri, UnsubscribeRequest::new(request).into()).await
    }

    /// Passed on to every upstream that takes it; one that fails does not fail the others.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = caller(&context);
        let scope = scope(&context)?;
        let mut upstreams = self.pool.upstreams().await;
        upstreams.retain(|u| toolkit::server_selected(&scope.selections, &u.name));
        futures_util::future::join_all(upstreams.iter().map(|upstream| {
            let (caller, request) = (&caller, request.clone());
            async move {
                let logging = upstream.capabilities(caller).await.is_some_and(|c| c.logging.is_some());
                if logging && let Err(e) = upstream.send(caller, SetLevelRequest::new(request).into()).await {
                    tracing::warn!(upstream = %upstream.name, error = %e, "logging/setLevel failed");
                }
            }
        }))
        .await;
        Ok(())
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let caller = caller(&context);
        let catalog = self.catalog(&caller, &scope(&context)?).await;
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
        let request = ClientRequest::from(CompleteRequest::new(request));
        match upstream.send(&caller, request).await.map_err(|e| failure("completion/complete", &upstream.name, e))? {
            ServerResult::CompleteResult(result) => Ok(result),
            _ => Err(failure("completion/complete", &upstream.name, unexpected(&upstream.name))),
        }
    }
}
