//! The client side of MCP's older HTTP+SSE transport (revision 2024-11-05), which remote servers
//! built before Streamable HTTP still speak and rmcp has no client for: a GET opens an event
//! stream whose first `endpoint` event names the URL to POST messages to; the server's messages
//! arrive as `message` events on the stream.

use std::pin::Pin;

use futures_util::{Sink, Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use rmcp::service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage};
use sse_stream::SseStream;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum LegacySseError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {0} to the event-stream request")]
    Status(reqwest::StatusCode),
    #[error("the event stream ended before naming its message endpoint")]
    NoEndpoint,
    #[error("the message endpoint `{0}` is not on the server's own origin")]
    ForeignEndpoint(String),
    #[error("the server answered {0} to a posted message")]
    Rejected(reqwest::StatusCode),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

pub type MessageSink = Pin<Box<dyn Sink<TxJsonRpcMessage<RoleClient>, Error = LegacySseError> + Send>>;
pub type MessageStream = Pin<Box<dyn Stream<Item = RxJsonRpcMessage<RoleClient>> + Send>>;

/// The endpoint a server named, resolved against the stream's URL. Only the server's own origin
/// is accepted: the configured headers (often credentials) go with every post.
fn message_endpoint(stream_url: &Url, named: &str) -> Result<Url, LegacySseError> {
    let endpoint = stream_url.join(named.trim()).map_err(|_| LegacySseError::ForeignEndpoint(named.to_owned()))?;
    if endpoint.origin() != stream_url.origin() {
        return Err(LegacySseError::ForeignEndpoint(named.to_owned()));
    }
    Ok(endpoint)
}

/// Opens the event stream and waits for the endpoint; returns what rmcp takes as a transport.
pub async fn connect(url: Url, headers: HeaderMap) -> Result<(MessageSink, MessageStream), LegacySseError> {
    let http = reqwest::Client::builder().default_headers(headers).build()?;
    let response = http.get(url.clone()).header(ACCEPT, "text/event-stream").send().await?;
    if !response.status().is_success() {
        return Err(LegacySseError::Status(response.status()));
    }
    let mut events = SseStream::from_bytes_stream(response.bytes_stream());
    let endpoint = loop {
        match events.next().await {
            Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                break message_endpoint(&url, event.data.as_deref().unwrap_or_default())?;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(LegacySseError::NoEndpoint),
        }
    };
    let messages = events.filter_map(|event| async move {
        let event = event.ok()?;
        if !matches!(event.event.as_deref(), None | Some("message")) {
            return None;
        }
        match serde_json::from_str(event.data.as_deref()?) {
            Ok(message) => Some(message),
            Err(error) => {
                tracing::warn!(%error, "ignoring an unreadable message from a legacy SSE upstream");
                None
            }
        }
    });
    let sink = futures_util::sink::unfold((http, endpoint), |(http, endpoint), message| async move {
        let body = serde_json::to_vec(&message)?;
        let response = http
            .post(endpoint.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(LegacySseError::Rejected(response.status()));
        }
        Ok((http, endpoint))
    });
    Ok((Box::pin(sink), Box::pin(messages)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_stay_on_the_servers_origin() {
        let stream = Url::parse("http://127.0.0.1:9000/sse").unwrap();
        assert_eq!(
            message_endpoint(&stream, "/messages/?session_id=abc").unwrap().as_str(),
            "http://127.0.0.1:9000/messages/?session_id=abc"
        );
        assert_eq!(message_endpoint(&stream, "http://127.0.0.1:9000/m").unwrap().as_str(), "http://127.0.0.1:9000/m");
        for foreign in ["http://169.254.169.254/latest", "//evil.example/m", "https://127.0.0.1:9000/m"] {
            assert!(message_endpoint(&stream, foreign).is_err(), "{foreign}");
        }
    }
}
