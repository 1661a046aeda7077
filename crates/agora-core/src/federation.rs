//! Federated identity providers: the settings that say whose tokens a client may exchange, the
//! presets for well-known issuers, and the rule that maps an external identity to an agora user.

use url::Url;

/// Signature algorithms a provider may be configured to accept. Only asymmetric ones: an HMAC
/// algorithm "keyed" with a public key is the classic algorithm-confusion attack.
pub const ACCEPTABLE_ALGORITHMS: &[&str] =
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

pub const MIN_TOKEN_LIFETIME: i64 = 60;
pub const MAX_TOKEN_LIFETIME: i64 = 86400;

/// Where a provider's verification keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    JwksUri(String),
    /// A PEM public key (SPKI), for issuers without a JWKS endpoint.
    Pem(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityProvider {
    pub id: String,
    pub client_id: String,
    pub name: String,
    /// Must equal the subject token's `iss` exactly.
    pub issuer: String,
    /// When set, must be among the subject token's `aud`.
    pub audience: Option<String>,
    pub keys: KeySource,
    pub algorithms: Vec<String>,
    /// Scopes an exchange grants when the request names none.
    pub default_scopes: String,
    /// Longest life of a token this provider's exchanges issue, in seconds.
    pub max_token_lifetime: i64,
    /// Whether a first exchange may attach to an existing user with the same *verified* email.
    pub link_by_email: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    #[error("issuer must be an absolute https URL (http only for loopback)")]
    Issuer,
    #[error("jwks_uri must be an absolute https URL (http only for loopback)")]
    JwksUri,
    #[error("algorithm `{0}` is not accepted (use RS*, PS*, ES256/ES384 or EdDSA)")]
    Algorithm(String),
    #[error("at least one algorithm is required")]
    NoAlgorithm,
    #[error("max token lifetime must be between {MIN_TOKEN_LIFETIME} and {MAX_TOKEN_LIFETIME} seconds")]
    Lifetime,
    #[error("preset `{0}` needs {1}")]
    PresetArgument(&'static str, &'static str),
    #[error("unknown preset `{0}` (google, auth0, entra, okta, custom)")]
    UnknownPreset(String),
}

fn https_or_loopback(raw: &str) -> bool {
    match Url::parse(raw) {
        Ok(url) => match url.scheme() {
            "https" => url.host().is_some(),
            "http" => matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")),
            _ => false,
        },
        Err(_) => false,
    }
}

impl IdentityProvider {
    /// Checks the settings an operator gave; every stored provider passed this.
    pub fn validate(&self) -> Result<(), ProviderError> {
        if !https_or_loopback(&self.issuer) {
            return Err(ProviderError::Issuer);
        }
        if let KeySource::JwksUri(uri) = &self.keys
            && !https_or_loopback(uri)
        {
            return Err(ProviderError::JwksUri);
        }
        if self.algorithms.is_empty() {
            return Err(ProviderError::NoAlgorithm);
        }
        if let Some(bad) = self.algorithms.iter().find(|a| !ACCEPTABLE_ALGORITHMS.contains(&a.as_str())) {
            return Err(ProviderError::Algorithm(bad.clone()));
        }
        if !(MIN_TOKEN_LIFETIME..=MAX_TOKEN_LIFETIME).contains(&self.max_token_lifetime) {
            return Err(ProviderError::Lifetime);
        }
        Ok(())
    }
}

/// Issuer and JWKS URL of a well-known provider.
#[derive(Debug, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub issuer: String,
    pub jwks_uri: String,
}

/// Fills issuer and JWKS URL for `preset`; `tenant` is the Auth0/Okta domain or the Entra tenant id.
pub fn preset(preset: &str, tenant: Option<&str>) -> Result<Preset, ProviderError> {
    let tenant = |name: &'static str, what: &'static str| {
        tenant
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.contains('/'))
            .ok_or(ProviderError::PresetArgument(name, what))
    };
    Ok(match preset {
        "google" => Preset {
            name: "Google",
            issuer: "https://accounts.google.com".into(),
            jwks_uri: "https://www.googleapis.com/oauth2/v3/certs".into(),
        },
        "auth0" => {
            let domain = tenant("auth0", "--tenant DOMAIN (e.g. example.us.auth0.com)")?;
            Preset {
                name: "Auth0",
                issuer: format!("https://{domain}/"),
                jwks_uri: format!("https://{domain}/.well-known/jwks.json"),
            }
        }
        "entra" => {
            let id = tenant("entra", "--tenant TENANT_ID")?;
            Preset {
                name: "Microsoft Entra ID",
                issuer: format!("https://login.microsoftonline.com/{id}/v2.0"),
                jwks_uri: format!("https://login.microsoftonline.com/{id}/discovery/v2.0/keys"),
            }
        }
        "okta" => {
            let domain = tenant("okta", "--tenant DOMAIN (e.g. example.okta.com)")?;
            Preset {
                name: "Okta",
                issuer: format!("https://{domain}/oauth2/default"),
                jwks_uri: format!("https://{domain}/oauth2/default/v1/keys"),
            }
        }
        other => return Err(ProviderError::UnknownPreset(other.to_owned())),
    })
}

/// What to do with an external identity on exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum IdentityDecision {
    /// (issuer, sub) is already linked to this user.
    Linked(String),
    /// Attach (issuer, sub) to this existing user, who owns the same verified email.
    LinkExisting(String),
    /// Make a new user; `with_email` says whether the token's email may be stored on it (it is not
    /// when another user already holds that address).
    Create { with_email: bool },
}

/// The identity-mapping rule. `linked` is the user already linked to (issuer, sub); `same_email`
/// the user holding the token's email address, if any.
pub fn decide_identity(
    linked: Option<&str>,
    same_email: Option<&str>,
    email_verified: bool,
    link_by_email: bool,
) -> IdentityDecision {
    match (linked, same_email) {
        (Some(user), _) => IdentityDecision::Linked(user.to_owned()),
        (None, Some(user)) if link_by_email && email_verified => IdentityDecision::LinkExisting(user.to_owned()),
        (None, Some(_)) => IdentityDecision::Create { with_email: false },
        (None, None) => IdentityDecision::Create { with_email: true },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> IdentityProvider {
        IdentityProvider {
            id: "p".into(),
            client_id: "c".into(),
            name: "Test".into(),
            issuer: "https://issuer.example".into(),
            audience: None,
            keys: KeySource::JwksUri("https://issuer.example/jwks".into()),
            algorithms: vec!["RS256".into()],
            default_scopes: "openid".into(),
            max_token_lifetime: 3600,
            link_by_email: false,
        }
    }

    #[test]
    fn validation_table() {
        assert_eq!(provider().validate(), Ok(()));
        let cases: Vec<(IdentityProvider, ProviderError)> = vec![
            (IdentityProvider { issuer: "http://issuer.example".into(), ..provider() }, ProviderError::Issuer),
            (
                IdentityProvider { keys: KeySource::JwksUri("ftp://x/jwks".into()), ..provider() },
                ProviderError::JwksUri,
            ),
            (
                IdentityProvider { algorithms: vec!["HS256".into()], ..provider() },
                ProviderError::Algorithm("HS256".into()),
            ),
            (
                IdentityProvider { algorithms: vec!["none".into()], ..provider() },
                ProviderError::Algorithm("none".into()),
            ),
            (IdentityProvider { algorithms: vec![], ..provider() }, ProviderError::NoAlgorithm),
            (IdentityProvider { max_token_lifetime: 59, ..provider() }, ProviderError::Lifetime),
            (IdentityProvider { max_token_lifetime: 86401, ..provider() }, ProviderError::Lifetime),
        ];
        for (candidate, expected) in cases {
            assert_eq!(candidate.validate(), Err(expected));
        }
        let loopback = IdentityProvider { issuer: "http://127.0.0.1:9000".into(), ..provider() };
        assert_eq!(loopback.validate(), Ok(()));
    }

    #[test]
    fn presets() {
        assert_eq!(preset("google", None).unwrap().issuer, "https://accounts.google.com");
        assert_eq!(preset("auth0", Some("acme.us.auth0.com")).unwrap().issuer, "https://acme.us.auth0.com/");
        assert!(preset("okta", None).is_err());
        assert!(preset("entra", Some("a/b")).is_err());
        assert!(preset("facebook", None).is_err());
    }

    #[test]
    fn identity_mapping_table() {
        use IdentityDecision::*;
        let rows = [
            (Some("u1"), Some("u2"), true, true, Linked("u1".into())),
            (Some("u1"), None, false, false, Linked("u1".into())),
            (None, Some("u2"), true, true, LinkExisting("u2".into())),
            (None, Some("u2"), false, true, Create { with_email: false }),
            (None, Some("u2"), true, false, Create { with_email: false }),
            (None, None, true, true, Create { with_email: true }),
            (None, None, false, false, Create { with_email: true }),
        ];
        for (linked, same_email, verified, link, expected) in rows {
            assert_eq!(
                decide_identity(linked, same_email, verified, link),
                expected,
                "{linked:?} {same_email:?} {verified} {link}"
            );
        }
    }
}
