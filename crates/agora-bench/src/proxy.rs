//! The proxy for hub-overhead: the least any MCP-aware gateway can cost on these cores. One more
//! HTTP server and kept-alive HTTP client on the path; each request's JSON-RPC message is read with
//! rmcp's model (as a gateway must, to route it) and the request is forwarded as it came; the answer
//! streams back untouched. No MCP session of its own: the client's session is the upstream's.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::ClientJsonRpcMessage;

use crate::Error;
use crate::process::{Child, spawn};

const READY: &str = "proxy listening on ";
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Starts `agora-bench proxy --upstream URL` as a separate process; its `line` is its URL.
pub async fn start(upstream_url: &str) -> Result<Child, Error> {
    spawn(&std::env::current_exe()?, &["proxy", "--upstream", upstream_url], &[], READY).await
}

struct Proxy {
    upstream_url: String,
    http: reqwest::Client,
}

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), and the length,
/// which the next hop sets itself.
fn end_to_end(name: &HeaderName) -> bool {
    ![header::CONNECTION, header::HOST, header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::UPGRADE]
        .contains(name)
        && name.as_str() != "keep-alive"
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    if !body.is_empty() && serde_json::from_slice::<ClientJsonRpcMessage>(&body).is_err() {
        return (StatusCode::BAD_REQUEST, "not a JSON-RPC message").into_response();
    }
    let mut upstream = proxy.http.request(parts.method, &proxy.upstream_url).body(body);
    for (name, value) in parts.headers.iter().filter(|(name, _)| end_to_end(name)) {
        upstream = upstream.header(name, value);
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers().iter().filter(|(name, _)| end_to_end(name)) {
        response = response.header(name, value);
    }
    response.body(Body::from_stream(answer.bytes_stream())).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// Serves the proxy to `upstream_url` on `listen` until killed.
pub async fn serve(listen: &str, upstream_url: &str) -> Result<(), Error> {
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let proxy = Arc::new(Proxy { upstream_url: upstream_url.to_owned(), http });
    let router = axum::Router::new().route("/mcp", axum::routing::any(forward)).with_state(proxy);
    crate::process::serve(listen, READY, router).await
}
