//! OAuth clients and the rules about where agora may send a browser on their behalf.

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::UnixTime;

/// How a client proves itself at the token endpoint (RFC 7591 `token_endpoint_auth_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client (browser or native app): no secret, PKCE alone binds the code.
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "none" => Some(AuthMethod::None),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantType {
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "refresh_token")]
    RefreshToken,
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials, GrantType::TokenExchange]
            .into_iter()
            .find(|g| g.as_str() == raw)
    }
}

/// Where a client record came from; decides whether the user is asked for consent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOrigin {
    /// Created by an operator (`agora admin client create`): first party, trusted.
    Admin,
    /// Registered by anyone through RFC 7591 dynamic client registration.
    Registered,
    /// Described by a Client ID Metadata Document fetched from its URL `client_id`.
    MetadataDocument,
}

impl ClientOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientOrigin::Admin => "admin",
            ClientOrigin::Registered => "registered",
            ClientOrigin::MetadataDocument => "metadata_document",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "admin" => Some(ClientOrigin::Admin),
            "registered" => Some(ClientOrigin::Registered),
            "metadata_document" => Some(ClientOrigin::MetadataDocument),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub origin: ClientOrigin,
    pub revoked: bool,
    pub created_at: UnixTime,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }

    /// Third-party clients must ask the user before receiving long-lived (offline) access.
    pub fn is_first_party(&self) -> bool {
        self.origin == ClientOrigin::Admin
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The registered redirect URI that `requested` names, if any (see [`redirect_uri_matches`]).
    pub fn redirect_uri_allowed(&self, requested: &str) -> bool {
        self.redirect_uris.iter().any(|registered| redirect_uri_matches(registered, requested))
    }

    /// Post-logout redirects match exactly: there is no native-app port leniency at logout.
    pub fn post_logout_redirect_allowed(&self, requested: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|registered| registered == requested)
    }
}

/// Exact string match, except that a registered `http` loopback URI accepts any port
/// (RFC 8252 §7.3: native apps bind an ephemeral port at run time).
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    reg.scheme() == "http"
        && req.scheme() == "http"
        && is_loopback_ip_host(&reg)
        && reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && reg.username().is_empty()
        && req.username().is_empty()
        && req.password().is_none()
        && req.fragment().is_none()
}

/// RFC 8252 §7.3 leniency applies to IP literals; `localhost` is accepted for registration but matches exactly.
fn is_loopback_ip_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

fn is_loopback_host(url: &Url) -> bool {
    is_loopback_ip_host(url) || url.host() == Some(Host::Domain("localhost"))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectUriError {
    #[error("`{0}` is not an absolute URI")]
    NotAbsolute(String),
    #[error("`{0}` has a fragment")]
    Fragment(String),
    #[error("`{0}` must use https (http is allowed only for loopback hosts)")]
    Insecure(String),
    #[error("`{0}` uses a scheme that is not allowed")]
    BadScheme(String),
}

/// Checks a redirect URI offered at registration: absolute, no fragment, and either https, http on a
/// loopback host, or a private-use scheme in reverse-domain form for native apps (RFC 8252 §7.1).
pub fn validate_redirect_uri(raw: &str) -> Result<(), RedirectUriError> {
    let url = Url::parse(raw).map_err(|_| RedirectUriError::NotAbsolute(raw.to_owned()))?;
    if url.fragment().is_some() {
        return Err(RedirectUriError::Fragment(raw.to_owned()));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" | "https" => Err(RedirectUriError::Insecure(raw.to_owned())),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" => {
            Err(RedirectUriError::BadScheme(raw.to_owned()))
        }
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(RedirectUriError::BadScheme(raw.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_matching_table() {
        let cases = [
            ("https://app.example/cb", "https://app.example/cb", true),
            ("https://app.example/cb", "https://app.example/cb/", false),
            ("https://app.example/cb", "https://app.example/cb?x=1", false),
            ("https://app.example/cb", "https://evil.example/cb", false),
            ("https://app.example:443/cb", "https://app.example:8443/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:53122/cb", true),
            ("http://127.0.0.1:8000/cb", "http://127.0.0.1:9000/cb", true),
            ("http://[::1]/cb", "http://[::1]:4000/cb", true),
            ("http://127.0.0.1/cb", "http://127.0.0.1:4000/other", false),
            ("http://127.0.0.1/cb", "http://127.0.0.2:4000/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:4000/cb#frag", false),
            ("http://127.0.0.1/cb", "http://user@127.0.0.1:4000/cb", false),
            ("http://localhost:3000/cb", "http://localhost:3001/cb", false),
            ("http://localhost:3000/cb", "http://localhost:3000/cb", true),
            ("com.example.app:/cb", "com.example.app:/cb", true),
        ];
        for (registered, requested, expected) in cases {
            assert_eq!(redirect_uri_matches(registered, requested), expected, "{registered} vs {requested}");
        }
    }

    #[test]
    fn registration_rules() {
        for ok in ["https://a.example/cb", "http://127.0.0.1:9/cb", "http://localhost/cb", "com.example.app:/cb"] {
            assert_eq!(validate_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/relative",
            "https://a.example/cb#x",
            "http://a.example/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "myapp:/cb",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad} accepted");
        }
    }
}
