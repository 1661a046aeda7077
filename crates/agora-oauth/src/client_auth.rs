//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, or `none` for public clients.

use agora_core::client::Client;
use axum::http::{HeaderMap, header};
use base64::Engine;

use crate::AuthServer;
use crate::error::{OAuthError, OAuthResult};

/// Credentials as presented, before they are checked.
pub struct Presented {
    pub client_id: String,
    pub secret: Option<String>,
    pub via_basic: bool,
}

/// Reads credentials from the `Authorization: Basic` header or the form, refusing requests that use both.
pub fn presented(headers: &HeaderMap, form_id: Option<&str>, form_secret: Option<&str>) -> OAuthResult<Presented> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, creds)| creds.trim());
    if let Some(encoded) = basic {
        if form_secret.is_some() {
            return Err(OAuthError::invalid_request("use one client authentication method, not two"));
        }
        let malformed = || OAuthError::invalid_client("malformed Basic credentials", true);
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded before Base64.
        let id = form_urlencoded_decode(id).ok_or_else(malformed)?;
        let secret = form_urlencoded_decode(secret).ok_or_else(malformed)?;
        if form_id.is_some_and(|f| f != id) {
            return Err(OAuthError::invalid_request("client_id in the form differs from the Basic credentials"));
        }
        return Ok(Presented { client_id: id, secret: Some(secret), via_basic: true });
    }
    match form_id {
        Some(id) if !id.is_empty() => {
            Ok(Presented { client_id: id.to_owned(), secret: form_secret.map(str::to_owned), via_basic: false })
        }
        _ => Err(OAuthError::invalid_client("client authentication is required", false)),
    }
}

fn form_urlencoded_decode(raw: &str) -> Option<String> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(format!("v={raw}").as_bytes()).into_owned().collect();
    pairs.into_iter().next().map(|(_, v)| v)
}

impl AuthServer {
    /// Checks presented credentials: a confidential client must present its secret, a public client none.
    pub(crate) async fn authenticate_client(&self, presented: &Presented) -> OAuthResult<Client> {
        let failed = || OAuthError::invalid_client("client authentication failed", presented.via_basic);
        let (client, stored) = self.client_and_secret_digest(&presented.client_id).await?.ok_or_else(failed)?;
        if client.is_public() {
            return match presented.secret.as_deref() {
                None | Some("") => Ok(client),
                Some(_) => Err(failed()),
            };
        }
        let stored = stored.ok_or_else(failed)?;
        let secret = presented.secret.as_deref().ok_or_else(failed)?;
        let given = agora_store::secret::token_digest(secret);
        if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), stored.as_bytes()).is_err() {
            return Err(failed());
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        headers.insert(header::AUTHORIZATION, format!("Basic {encoded}").parse().unwrap());
        headers
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let p = presented(&basic("my%20client:s%3Acret"), None, None).unwrap();
        assert_eq!((p.client_id.as_str(), p.secret.as_deref(), p.via_basic), ("my client", Some("s:cret"), true));
    }

    #[test]
    fn two_methods_or_none_are_refused() {
        assert!(presented(&basic("a:b"), Some("a"), Some("b")).is_err());
        assert!(presented(&basic("a:b"), Some("other"), None).is_err());
        assert!(presented(&basic("no-colon"), None, None).is_err());
        assert!(presented(&HeaderMap::new(), None, None).is_err());
        let public = presented(&HeaderMap::new(), Some("pub"), None).unwrap();
        assert_eq!((public.client_id.as_str(), public.secret), ("pub", None));
    }
}
