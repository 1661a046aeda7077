//! A plain Streamable HTTP client: reqwest and serde_json, no MCP SDK. The sessions scenario opens
//! its thousands of sessions with it; fan-out reads lists with it beside rmcp's typed client, so a
//! list's cost to the servers shows apart from what one SDK spends decoding it.

use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde_json::{Value, json};

use crate::Error;
use crate::load::Client;

pub const REVISION: &str = "2025-11-25";
const SESSION_HEADER: &str = "mcp-session-id";

/// A Streamable HTTP POST of one JSON-RPC message, within `session` when given.
pub fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    message: &Value,
) -> reqwest::RequestBuilder {
    let mut request = http.post(url).header(ACCEPT, "application/json, text/event-stream").json(message);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    match session {
        // The revision header goes on every request after initialize.
        Some(id) => request.header(SESSION_HEADER, id).header("mcp-protocol-version", REVISION),
        None => request,
    }
}

/// The JSON-RPC message of an answer, sent as JSON or as an SSE event.
pub fn message(body: &[u8]) -> Value {
    let body = String::from_utf8_lossy(body);
    std::iter::once(body.as_ref())
        .chain(body.lines().filter_map(|line| line.strip_prefix("data:")))
        .find_map(|data| serde_json::from_str::<Value>(data).ok().filter(Value::is_object))
        .unwrap_or_default()
}

/// `initialize` then `notifications/initialized`; returns the session id.
pub async fn open_session(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<String, Error> {
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": REVISION,
        "capabilities": {},
        "clientInfo": {"name": "agora-bench", "version": env!("CARGO_PKG_VERSION")},
    }});
    let response = post(http, url, token, None, &initialize).send().await?;
    let status = response.status();
    let id = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await?;
    let (Some(id), Some(REVISION)) = (id, message(&body)["result"]["protocolVersion"].as_str()) else {
        return Err(format!("initialize answered {status}: {}", String::from_utf8_lossy(&body)).into());
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let status = post(http, url, token, Some(&id), &initialized).send().await?.status();
    if status != StatusCode::ACCEPTED {
        return Err(format!("notifications/initialized answered {status}").into());
    }
    Ok(id)
}

/// A client in its own session, on its own kept-alive connection, repeating `tools/list` and
/// reading each answer into a `serde_json::Value` (as a client in a dynamic language does).
pub struct Lister {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    session: String,
    expected: usize,
    list: Value,
}

impl Lister {
    pub async fn connect_all(
        url: &str,
        token: Option<&str>,
        clients: usize,
        expected: usize,
    ) -> Result<Vec<Self>, Error> {
        let mut connected = Vec::with_capacity(clients);
        for _ in 0..clients {
            let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
            let session = open_session(&http, url, token).await?;
            let (url, token) = (url.to_owned(), token.map(str::to_owned));
            let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
            connected.push(Self { http, url, token, session, expected, list });
        }
        Ok(connected)
    }
}

impl Client for Lister {
    async fn call(&mut self) -> Result<(), Error> {
        let response =
            post(&self.http, &self.url, self.token.as_deref(), Some(&self.session), &self.list).send().await?;
        let status = response.status();
        let answer = message(&response.bytes().await?);
        match answer["result"]["tools"].as_array().map(Vec::len) {
            Some(listed) if listed == self.expected => Ok(()),
            Some(listed) => Err(format!("listed {listed} tools, expected {}", self.expected).into()),
            None => Err(format!("tools/list answered {status}: {answer}").into()),
        }
    }
}
