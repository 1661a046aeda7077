//! A test-only MCP server offering the primitives the MCP conformance suite
//! (`@modelcontextprotocol/conformance`) asks for by name. CI puts the hub in front of it, once as
//! a stdio child and once over Streamable HTTP, and runs the suite against the hub.
//!
//! Usage: `agora-fixture-upstream` (stdio) or `agora-fixture-upstream --http 127.0.0.1:PORT`
//! (serves `/mcp`). Adapted from the fixture in the rmcp repository's `conformance/` folder.

#![allow(deprecated)] // sampling, roots and logging are deprecated by SEP-2577 but still tested

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::model::*;
use rmcp::service::{RequestContext, SubscriptionContext, SubscriptionSink};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// A 1×1 red PNG.
const IMAGE: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==";
/// A silent WAV.
const AUDIO: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEARKwAAIhYAQACABAAZGF0YQAAAAA=";
const CACHE_TTL_MS: u64 = 60_000;
const REQUEST_STATE_KEY: &[u8] = b"agora-fixture-upstream-request-state-key";

/// Tools that take no arguments, with their descriptions.
const PLAIN_TOOLS: &[(&str, &str)] = &[
    ("test_simple_text", "Returns simple text content"),
    ("test_image_content", "Returns image content"),
    ("test_audio_content", "Returns audio content"),
    ("test_embedded_resource", "Returns embedded resource content"),
    ("test_multiple_content_types", "Returns multiple content types"),
    ("test_tool_with_logging", "Sends logging notifications during execution"),
    ("test_error_handling", "Always returns an error"),
    ("test_tool_with_progress", "Reports progress notifications"),
    ("test_elicitation_sep1034_defaults", "Elicitation with default values (SEP-1034)"),
    ("test_elicitation_sep1330_enums", "Elicitation with enum schemas (SEP-1330)"),
    ("test_trigger_tool_change", "Triggers a tools/list_changed notification"),
    ("test_trigger_prompt_change", "Triggers a prompts/list_changed notification"),
    ("test_missing_capability", "Requires the sampling client capability"),
    ("test_streaming_elicitation", "Returns an input_required result with an elicitation request"),
    ("test_logging_tool", "Emits notifications/message only when a logLevel is requested"),
    ("test_input_required_result_elicitation", "Requires an elicitation input (SEP-2322)"),
    ("test_input_required_result_sampling", "Requires a sampling input (SEP-2322)"),
    ("test_input_required_result_list_roots", "Requires a roots/list input (SEP-2322)"),
    ("test_input_required_result_request_state", "Round-trips integrity-protected requestState (SEP-2322)"),
    ("test_input_required_result_multiple_inputs", "Requires elicitation, sampling and roots in one round"),
    ("test_input_required_result_multi_round", "Several input_required rounds with evolving requestState"),
    ("test_input_required_result_tampered_state", "Rejects tampered requestState"),
    ("test_input_required_result_capabilities", "Only requests inputs the client declared"),
];

#[derive(Clone)]
struct Fixture {
    resource_subscriptions: Arc<Mutex<HashSet<String>>>,
    listeners: Arc<Mutex<HashMap<u64, SubscriptionSink>>>,
    next_listener: Arc<AtomicU64>,
    request_state: RequestStateCodec,
}

fn object(value: Value) -> JsonObject {
    value.as_object().cloned().unwrap_or_default()
}

fn text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn elicitation(message: &str, properties: Value, required: Value) -> InputRequest {
    InputRequest::Elicitation(ElicitRequest::new(form(
        message,
        json!({"type": "object", "properties": properties, "required": required}),
    )))
}

fn form(message: &str, schema: Value) -> ElicitRequestParams {
    ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.into(),
        requested_schema: serde_json::from_value(schema).expect("fixture schemas are valid"),
    }
}

fn sampling(prompt: &str) -> InputRequest {
    InputRequest::CreateMessage(CreateMessageRequest::new(CreateMessageRequestParams::new(
        vec![SamplingMessage::user_text(prompt)],
        100,
    )))
}

fn roots() -> InputRequest {
    InputRequest::ListRoots(ListRootsRequest::default())
}

/// A usable input response: a JSON object. Anything else counts as missing, so it is asked again.
fn response<'a>(responses: Option<&'a InputResponses>, key: &str) -> Option<&'a JsonObject> {
    responses.and_then(|r| r.get(key)).and_then(Value::as_object)
}

fn ask(requests: Vec<(&str, InputRequest)>, state: Option<String>) -> CallToolResponse {
    let mut inputs = InputRequests::new();
    for (key, request) in requests {
        inputs.insert(key.into(), request);
    }
    InputRequiredResult::new(Some(inputs), state).into()
}

fn action(action: &ElicitationAction) -> &'static str {
    match action {
        ElicitationAction::Accept => "accept",
        ElicitationAction::Decline => "decline",
        ElicitationAction::Cancel => "cancel",
        _ => "unknown",
    }
}

impl Fixture {
    fn new() -> Self {
        Self {
            resource_subscriptions: Default::default(),
            listeners: Default::default(),
            next_listener: Default::default(),
            request_state: RequestStateCodec::new_unchecked(REQUEST_STATE_KEY),
        }
    }

    fn seal(&self, state: Value) -> Result<String, ErrorData> {
        self.request_state.seal_json(&state).map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    fn open(&self, sealed: &str) -> Result<Value, ErrorData> {
        self.request_state
            .open_json(sealed)
            .map_err(|_| ErrorData::invalid_params("requestState failed integrity verification", None))
    }

    /// SEP-2322 tools: each answers `input_required` until retried with the inputs it asked for.
    fn input_required_tool(
        &self,
        request: &CallToolRequestParams,
        meta: &RequestMetaObject,
    ) -> Result<CallToolResponse, ErrorData> {
        let responses = request.input_responses.as_ref();
        let content = |key: &str, field: &str| {
            response(responses, key)
                .map(|r| r.get("content").and_then(|c| c.get(field)).and_then(Value::as_str).unwrap_or("").to_owned())
        };
        Ok(match request.name.as_ref() {
            "test_input_required_result_elicitation" => match content("user_name", "name") {
                Some(name) => text(format!("Hello, {name}!")).into(),
                None => ask(
                    vec![(
                        "user_name",
                        elicitation("What is your name?", json!({"name": {"type": "string"}}), json!(["name"])),
                    )],
                    None,
                ),
            },
            "test_input_required_result_sampling" => match content("capital_question", "text") {
                Some(answer) => text(format!("Sampling response: {answer}")).into(),
                None => ask(vec![("capital_question", sampling("What is the capital of France?"))], None),
            },
            "test_input_required_result_list_roots" => match response(responses, "client_roots") {
                Some(listed) => {
                    let uris: Vec<&str> = listed
                        .get("roots")
                        .and_then(Value::as_array)
                        .map(|roots| roots.iter().filter_map(|r| r.get("uri").and_then(Value::as_str)).collect())
                        .unwrap_or_default();
                    text(format!("Client roots: [{}]", uris.join(", "))).into()
                }
                None => ask(vec![("client_roots", roots())], None),
            },
            "test_input_required_result_request_state" | "test_input_required_result_tampered_state" => {
                match request.request_state.as_deref() {
                    None => ask(
                        vec![(
                            "confirm",
                            elicitation("Please confirm", json!({"ok": {"type": "boolean"}}), json!(["ok"])),
                        )],
                        Some(self.seal(json!({"stage": "confirm"}))?),
                    ),
                    Some(sealed) => {
                        // The echoed state is untrusted input: verified before it is acted on.
                        self.open(sealed)?;
                        text("Confirmed: state-ok").into()
                    }
                }
            }
            "test_input_required_result_multiple_inputs" => {
                if let Some(sealed) = request.request_state.as_deref() {
                    self.open(sealed)?;
                }
                let all = ["user_name", "greeting", "client_roots"].iter().all(|k| response(responses, k).is_some());
                if all && request.request_state.is_some() {
                    text("All inputs received").into()
                } else {
                    ask(
                        vec![
                            (
                                "user_name",
                                elicitation("What is your name?", json!({"name": {"type": "string"}}), json!(["name"])),
                            ),
                            ("greeting", sampling("Generate a greeting")),
                            ("client_roots", roots()),
                        ],
                        Some(self.seal(json!({"stage": "gather"}))?),
                    )
                }
            }
            "test_input_required_result_multi_round" => {
                let round = match request.request_state.as_deref() {
                    None => 0,
                    Some(sealed) => self.open(sealed)?.get("round").and_then(Value::as_i64).unwrap_or(0),
                };
                match round {
                    0 => ask(
                        vec![(
                            "step1",
                            elicitation(
                                "Step 1: What is your name?",
                                json!({"name": {"type": "string"}}),
                                json!(["name"]),
                            ),
                        )],
                        Some(self.seal(json!({"round": 1}))?),
                    ),
                    1 => ask(
                        vec![(
                            "step2",
                            elicitation(
                                "Step 2: What is your favorite color?",
                                json!({"color": {"type": "string"}}),
                                json!(["color"]),
                            ),
                        )],
                        Some(self.seal(json!({"round": 2}))?),
                    ),
                    _ => text("Multi-round flow complete").into(),
                }
            }
            "test_input_required_result_capabilities" => {
                if responses.is_some() {
                    return Ok(text("Capability-aware flow complete").into());
                }
                // Only ask for what the client declared (SEP-2322).
                let declared = meta.client_capabilities().unwrap_or_default();
                let mut wanted = Vec::new();
                if declared.elicitation.is_some() {
                    wanted.push((
                        "user_name",
                        elicitation("What is your name?", json!({"name": {"type": "string"}}), json!(["name"])),
                    ));
                }
                if declared.sampling.is_some() {
                    wanted.push(("greeting", sampling("Generate a greeting")));
                }
                if declared.roots.is_some() {
                    wanted.push(("client_roots", roots()));
                }
                if wanted.is_empty() {
                    text("Client declared no MRTR-capable capabilities").into()
                } else {
                    ask(wanted, None)
                }
            }
            other => return Err(ErrorData::invalid_params(format!("Unknown tool: {other}"), None)),
        })
    }

    async fn elicit(
        &self,
        context: &RequestContext<RoleServer>,
        params: ElicitRequestParams,
        label: &str,
    ) -> CallToolResult {
        match context.peer.create_elicitation(params).await {
            Ok(result) => text(format!("{label}: action={}, content={:?}", action(&result.action), result.content)),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(format!("Elicitation error: {e}"))]),
        }
    }

    async fn notify_listeners(&self, prompts: bool) {
        let listeners: Vec<SubscriptionSink> = self.listeners.lock().await.values().cloned().collect();
        for listener in listeners {
            let _ = if prompts {
                listener.notify_prompt_list_changed().await
            } else {
                listener.notify_tool_list_changed().await
            };
        }
    }
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerInfo {
        ServerInfo::new(
            ServerCapabilities::builder()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_logging()
                .enable_completions()
                .build(),
        )
        .with_server_info(Implementation::new("agora-fixture-upstream", env!("CARGO_PKG_VERSION")))
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let key = self.next_listener.fetch_add(1, Ordering::Relaxed);
        self.listeners.lock().await.insert(key, context.sink().clone());
        context.cancelled().await;
        self.listeners.lock().await.remove(&key);
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let empty = || object(json!({"type": "object", "properties": {}}));
        let mut tools: Vec<Tool> = PLAIN_TOOLS.iter().map(|(name, about)| Tool::new(*name, *about, empty())).collect();
        tools.push(Tool::new(
            "test_sampling",
            "Requests LLM sampling from the client",
            object(json!({"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]})),
        ));
        tools.push(Tool::new(
            "test_elicitation",
            "Requests user input from the client",
            object(json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]})),
        ));
        tools.push(Tool::new(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            object(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"$anchor": "address", "type": "object", "properties": {
                    "street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
                "allOf": [{"anyOf": [{"required": ["name"]}, {"required": ["address"]}]}],
                "if": {"required": ["address"]},
                "then": {"properties": {"address": {"required": ["street"]}}},
                "else": {"required": ["name"]},
                "additionalProperties": false
            })),
        ));
        Ok(ListToolsResult { tools, ..Default::default() }
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name.starts_with("test_input_required_result_") {
            return self.input_required_tool(&request, &context.meta);
        }
        let args = request.arguments.clone().unwrap_or_default();
        let arg =
            |name: &str, default: &'static str| args.get(name).and_then(Value::as_str).unwrap_or(default).to_owned();
        let result = match request.name.as_ref() {
            "test_simple_text" => text("This is a simple text response for testing."),
            "test_image_content" => CallToolResult::success(vec![ContentBlock::image(IMAGE, "image/png")]),
            "test_audio_content" => {
                CallToolResult::success(vec![ContentBlock::Audio(AudioContent::new(AUDIO, "audio/wav"))])
            }
            "test_embedded_resource" => {
                CallToolResult::success(vec![ContentBlock::resource(ResourceContents::TextResourceContents {
                    uri: "test://embedded-resource".into(),
                    mime_type: Some("text/plain".into()),
                    text: "This is an embedded resource content.".into(),
                    meta: None,
                })])
            }
            "test_multiple_content_types" => CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(IMAGE, "image/png"),
                ContentBlock::resource(ResourceContents::TextResourceContents {
                    uri: "test://mixed-content-resource".into(),
                    mime_type: Some("application/json".into()),
                    text: r#"{"test":"data","value":123}"#.into(),
                    meta: None,
                }),
            ]),
            "test_tool_with_logging" => {
                for message in ["Tool execution started", "Tool processing data", "Tool execution completed"] {
                    let log =
                        LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message)).with_logger("fixture");
                    let _ = context.peer.notify_logging_message(log).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                text("Logging test completed")
            }
            "test_error_handling" => {
                CallToolResult::error(vec![ContentBlock::text("This tool intentionally returns an error for testing")])
            }
            "test_tool_with_progress" => {
                for (progress, message) in [(0.0, "Starting"), (50.0, "Halfway"), (100.0, "Complete")] {
                    if let Some(token) = context.meta.get_progress_token() {
                        let update =
                            ProgressNotificationParam::new(token, progress).with_total(100.0).with_message(message);
                        let _ = context.peer.notify_progress(update).await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                text("Progress test completed")
            }
            "test_sampling" => {
                let params =
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text(arg("prompt", "Hello"))], 100);
                match context.peer.create_message(params).await {
                    Ok(result) => {
                        let reply = result.message.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone());
                        text(format!("LLM response: {}", reply.unwrap_or_else(|| "No text response".into())))
                    }
                    Err(e) => CallToolResult::error(vec![ContentBlock::text(format!("Sampling error: {e}"))]),
                }
            }
            "test_elicitation" => {
                let schema = json!({"type": "object", "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                }, "required": ["username", "email"]});
                let message = arg("message", "Please provide your information");
                self.elicit(&context, form(&message, schema), "User response").await
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({"type": "object", "properties": {
                    "name": {"type": "string", "description": "User's name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User's age", "default": 30},
                    "score": {"type": "number", "description": "User's score", "default": 95.5},
                    "status": {"type": "string", "description": "User's status", "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "description": "Whether user is verified", "default": true},
                }});
                self.elicit(
                    &context,
                    form("Please provide values (all have defaults)", schema),
                    "Elicitation completed",
                )
                .await
            }
            "test_elicitation_sep1330_enums" => {
                let titled = |label: &str| {
                    json!([
                        {"const": "value1", "title": format!("First {label}")},
                        {"const": "value2", "title": format!("Second {label}")},
                        {"const": "value3", "title": format!("Third {label}")},
                    ])
                };
                let schema = json!({"type": "object", "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "oneOf": titled("Option")},
                    "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "items": {"anyOf": titled("Choice")}},
                }});
                self.elicit(&context, form("Test enum schema improvements", schema), "Enum elicitation completed").await
            }
            "test_trigger_tool_change" => {
                self.notify_listeners(false).await;
                text("Tool list change triggered")
            }
            "test_trigger_prompt_change" => {
                self.notify_listeners(true).await;
                text("Prompt list change triggered")
            }
            "test_missing_capability" => {
                if context.meta.client_capabilities().unwrap_or_default().sampling.is_none() {
                    return Err(ErrorData::missing_required_client_capability(
                        ClientCapabilities::builder().enable_sampling().build(),
                    ));
                }
                text("Required capability declared")
            }
            "test_streaming_elicitation" => {
                let value = elicitation("Provide a value", json!({"value": {"type": "string"}}), json!(["value"]));
                return Ok(ask(vec![("streaming_elicitation", value)], None));
            }
            "json_schema_2020_12_tool" => text(format!("Hello, {}!", arg("name", "world"))),
            "test_logging_tool" => {
                if let Some(level) = context.meta.log_level() {
                    let log = LoggingMessageNotificationParam::new(level, json!("logLevel was requested"))
                        .with_logger("fixture");
                    let _ = context.peer.notify_logging_message(log).await;
                }
                text("Logging tool completed")
            }
            other => return Err(ErrorData::invalid_params(format!("Unknown tool: {other}"), None)),
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = vec![
            Resource::new("test://static-text", "Static Text Resource")
                .with_description("A static text resource for testing")
                .with_mime_type("text/plain"),
            Resource::new("test://static-binary", "Static Binary Resource")
                .with_description("A static binary/blob resource for testing")
                .with_mime_type("image/png"),
        ];
        Ok(ListResourcesResult { resources, ..Default::default() }
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let text_contents = |mime: &str, text: String| ResourceContents::TextResourceContents {
            uri: uri.into(),
            mime_type: Some(mime.into()),
            text,
            meta: None,
        };
        let contents = match uri {
            "test://static-text" => {
                text_contents("text/plain", "This is the content of the static text resource.".into())
            }
            "test://static-binary" => ResourceContents::BlobResourceContents {
                uri: uri.into(),
                mime_type: Some("image/png".into()),
                blob: IMAGE.into(),
                meta: None,
            },
            _ => match uri.strip_prefix("test://template/").and_then(|s| s.strip_suffix("/data")) {
                Some(id) => text_contents(
                    "application/json",
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string(),
                ),
                None => {
                    return Err(ErrorData::resource_not_found(
                        format!("Resource not found: {uri}"),
                        Some(json!({"uri": uri})),
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents])
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public)
            .into())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let resource_templates = vec![
            ResourceTemplate::new("test://template/{id}/data", "Dynamic Resource")
                .with_description("A dynamic resource with parameter substitution")
                .with_mime_type("application/json"),
        ];
        Ok(ListResourceTemplatesResult { resource_templates, ..Default::default() }
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.resource_subscriptions.lock().await.insert(request.uri.to_string());
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.resource_subscriptions.lock().await.remove(request.uri.as_str());
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let argument = |name: &str, about: &str, required: bool| {
            PromptArgument::new(name).with_description(about).with_required(required)
        };
        let prompts = vec![
            Prompt::new("test_simple_prompt", Some("A simple test prompt with no arguments"), None),
            Prompt::new(
                "test_prompt_with_arguments",
                Some("A test prompt that accepts arguments"),
                Some(vec![
                    argument("arg1", "First test argument", true),
                    argument("arg2", "Second test argument", false),
                ]),
            ),
            Prompt::new(
                "test_prompt_with_embedded_resource",
                Some("A test prompt that includes an embedded resource"),
                None,
            ),
            Prompt::new("test_prompt_with_image", Some("A test prompt that includes an image"), None),
            Prompt::new(
                "test_input_required_result_prompt",
                Some("A prompt that requires elicitation input (SEP-2322)"),
                None,
            ),
        ];
        Ok(ListPromptsResult { prompts, ..Default::default() }
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let result = match request.name.as_str() {
            "test_input_required_result_prompt" => match response(request.input_responses.as_ref(), "user_context") {
                Some(answer) => {
                    let context = answer.get("content").and_then(|c| c.get("context")).and_then(Value::as_str);
                    GetPromptResult::new(vec![PromptMessage::new_text(
                        Role::User,
                        format!("Prompt with elicited context: {}", context.unwrap_or("(no context)")),
                    )])
                    .with_description("A prompt built from elicited context")
                }
                None => {
                    let mut inputs = InputRequests::new();
                    let question = "What context should the prompt use?";
                    inputs.insert(
                        "user_context".into(),
                        elicitation(question, json!({"context": {"type": "string"}}), json!(["context"])),
                    );
                    return Ok(InputRequiredResult::from_input_requests(inputs).into());
                }
            },
            "test_simple_prompt" => {
                GetPromptResult::new(vec![PromptMessage::new_text(Role::User, "This is a simple test prompt.")])
                    .with_description("A simple test prompt")
            }
            "test_prompt_with_arguments" => {
                let args = request.arguments.unwrap_or_default();
                let arg = |name: &str| args.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
                GetPromptResult::new(vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2")),
                )])
                .with_description("A prompt with arguments")
            }
            "test_prompt_with_embedded_resource" => GetPromptResult::new(vec![
                PromptMessage::new_text(Role::User, "Here is a resource:"),
                PromptMessage::new_resource(
                    Role::User,
                    "test://static-text".into(),
                    Some("text/plain".into()),
                    Some("Resource content for prompt".into()),
                    None,
                    None,
                    None,
                ),
            ])
            .with_description("A prompt with an embedded resource"),
            "test_prompt_with_image" => GetPromptResult::new(vec![
                PromptMessage::new_text(Role::User, "Here is an image:"),
                PromptMessage::new(Role::User, ContentBlock::Image(ImageContent::new(IMAGE, "image/png"))),
            ])
            .with_description("A prompt with an image"),
            other => return Err(ErrorData::invalid_params(format!("Unknown prompt: {other}"), None)),
        };
        Ok(result.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let values: Vec<String> = match (&request.r#ref, request.argument.name.as_str()) {
            (Reference::Resource(_), "id") => vec!["1".into(), "2".into(), "3".into()],
            (Reference::Prompt(_), "name") => vec!["Alice".into(), "Bob".into(), "Charlie".into()],
            (Reference::Prompt(_), "style") => vec!["friendly".into(), "formal".into(), "casual".into()],
            (Reference::Prompt(prompt), _) => vec![prompt.name.clone()],
            _ => vec![],
        };
        Ok(CompleteResult::new(CompletionInfo::new(values).map_err(|e| ErrorData::internal_error(e, None))?))
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let running = Fixture::new().serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
        }
        [flag, address] if flag == "--http" => {
            let fixture = Fixture::new();
            let service = StreamableHttpService::new(
                move || Ok(fixture.clone()),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default(),
            );
            let listener = tokio::net::TcpListener::bind(address).await?;
            println!("listening on http://{}/mcp", listener.local_addr()?);
            axum::serve(listener, axum::Router::new().nest_service("/mcp", service)).await?;
        }
        _ => return Err("usage: agora-fixture-upstream [--http ADDRESS]".into()),
    }
    Ok(())
}
