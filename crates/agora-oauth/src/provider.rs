//! agora as a client of third-party OAuth providers, for the credentials users connect: the token
//! endpoint (code exchange, refresh) and revocation (RFC 7009). Provider answers are never echoed
//! or logged whole: they carry tokens.

use std::time::Duration;

use agora_store::{Service, ServiceKind};
use serde::Deserialize;

const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// A provider's token response (RFC 6749 §5.1).
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
}

pub struct ProviderClient {
    http: reqwest::Client,
}

impl Default for ProviderClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ProviderClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client builds");
        Self { http }
    }

    /// A form POST to one of the service's endpoints, authenticated as its client.
    async fn post(&self, service: &Service, url: &str, form: &[(&str, &str)]) -> Result<reqwest::Response, String> {
        let ServiceKind::OAuth2 { client_id, client_secret, .. } = &service.kind else {
            return Err("not an OAuth service".into());
        };
        let request = self.http.post(url).header(reqwest::header::ACCEPT, "application/json");
        let request = match client_secret {
            Some(secret) => request.basic_auth(client_id, Some(secret)).form(form),
            None => {
                let mut with_id = form.to_vec();
                with_id.push(("client_id", client_id));
                request.form(&with_id)
            }
        };
        let response = request.send().await.map_err(|e| format!("the provider cannot be reached: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("the provider answered {}", response.status()));
        }
        Ok(response)
    }

    pub async fn token_request(&self, service: &Service, form: &[(&str, &str)]) -> Result<TokenResponse, String> {
        let ServiceKind::OAuth2 { token_url, .. } = &service.kind else { return Err("not an OAuth service".into()) };
        let body = self
            .post(service, token_url, form)
            .await?
            .bytes()
            .await
            .map_err(|e| format!("the provider's answer broke off: {e}"))?;
        serde_json::from_slice(&body).map_err(|_| "the provider's answer is not a token response".to_owned())
    }

    /// Revokes a token at the provider, when it has a revocation endpoint. `Ok(false)`: it has none.
    pub async fn revoke(&self, service: &Service, token: &str, hint: &str) -> Result<bool, String> {
        let ServiceKind::OAuth2 { revocation_url: Some(url), .. } = &service.kind else { return Ok(false) };
        self.post(service, url, &[("token", token), ("token_type_hint", hint)]).await?;
        Ok(true)
    }
}
