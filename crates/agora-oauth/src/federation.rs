//! Verifying subject tokens from federated identity providers: keys from the provider's JWKS
//! (cached, refetched at most once per interval on an unknown `kid`) or a static PEM key; the
//! algorithm must be one the provider accepts; `iss` exact, `aud`, `exp`, `nbf`, `iat` enforced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_core::federation::{IdentityProvider, KeySource};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use url::Url;

use crate::fetch::Fetcher;

/// Leeway for `exp`, `nbf` and `iat` against clock skew between issuers and agora.
const LEEWAY_SECS: i64 = 60;
/// Oldest `iat` accepted: a subject token is a fresh proof of sign-in, not a long-lived credential.
const MAX_SUBJECT_TOKEN_AGE: i64 = 86400;
const JWKS_MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("the subject token is not a well-formed JWT")]
    Malformed,
    #[error("the subject token's algorithm is not accepted for this provider")]
    Algorithm,
    #[error("no key of the provider matches the subject token (kid {0})")]
    UnknownKey(String),
    #[error("the provider's keys cannot be fetched: {0}")]
    KeysUnavailable(String),
    #[error("the provider's configured public key is unusable")]
    BadStaticKey,
    #[error("the subject token's signature is invalid")]
    Signature,
    #[error("the subject token has expired")]
    Expired,
    #[error("the subject token is not valid yet")]
    NotYetValid,
    #[error("the subject token's audience is not accepted")]
    Audience,
    #[error("the subject token's issuer does not match")]
    Issuer,
    #[error("the subject token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the subject token is too old (issued over a day ago) or issued in the future")]
    Age,
}

/// Verified claims of a subject token.
pub struct SubjectClaims(pub serde_json::Map<String, Value>);

impl SubjectClaims {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(Value::as_i64)
    }

    /// `email_verified` as a boolean; some issuers (Cognito) send the string "true".
    pub fn email_verified(&self) -> bool {
        match self.0.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        }
    }
}

#[derive(Default)]
struct JwksEntry {
    keys: Vec<Jwk>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    last_error: Option<String>,
}

/// Per-JWKS-URL key cache shared by all requests of this process.
pub struct ProviderKeys {
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<JwksEntry>>>>,
    ttl: Duration,
    refetch_interval: Duration,
}

fn parse_jwks(document: Value) -> Vec<Jwk> {
    // Keys agora cannot use (other key types, encryption keys) are skipped, not fatal.
    document
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok()).collect())
        .unwrap_or_default()
}

fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let family_fits = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, Algorithm::ES256 | Algorithm::ES384),
        AlgorithmParameters::OctetKeyPair(_) => alg == Algorithm::EdDSA,
        _ => false,
    };
    let use_fits = jwk.common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature);
    let alg_fits = jwk.common.key_algorithm.is_none_or(|a| a.to_string() == format!("{alg:?}"));
    family_fits && use_fits && alg_fits
}

fn pick(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    let mut fitting = keys.iter().filter(|k| key_fits(k, alg));
    match kid {
        Some(kid) => fitting.find(|k| k.common.key_id.as_deref() == Some(kid)).cloned(),
        // Without a kid only an unambiguous key will do.
        None => {
            let candidates: Vec<&Jwk> = fitting.collect();
            (candidates.len() == 1).then(|| candidates[0].clone())
        }
    }
}

impl ProviderKeys {
    pub fn new(ttl: Duration, refetch_interval: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl, refetch_interval }
    }

    async fn jwk(&self, fetcher: &Fetcher, uri: &str, kid: Option<&str>, alg: Algorithm) -> Result<Jwk, SubjectError> {
        let entry = self.entries.lock().expect("jwks cache lock").entry(uri.to_owned()).or_default().clone();
        // Requests for the same provider queue here while one of them fetches (bounded by the
        // fetch timeout); other providers and other grants are not held up.
        let mut entry = entry.lock().await;
        let fresh = entry.fetched_at.is_some_and(|at| at.elapsed() < self.ttl);
        if fresh && let Some(key) = pick(&entry.keys, kid, alg) {
            return Ok(key);
        }
        let may_fetch = entry.attempted_at.is_none_or(|at| at.elapsed() >= self.refetch_interval);
        if may_fetch || (!fresh && entry.keys.is_empty() && entry.attempted_at.is_none()) {
            entry.attempted_at = Some(Instant::now());
            let url = Url::parse(uri).map_err(|_| SubjectError::KeysUnavailable("invalid jwks_uri".into()))?;
            match fetcher.get_json(&url, JWKS_MAX_BYTES).await {
                Ok(document) => {
                    entry.keys = parse_jwks(document);
                    entry.fetched_at = Some(Instant::now());
                    entry.last_error = None;
                    tracing::info!(jwks = %uri, keys = entry.keys.len(), "fetched provider keys");
                }
                Err(e) => {
                    tracing::warn!(jwks = %uri, error = %e, "cannot fetch provider keys");
                    entry.last_error = Some(e.to_string());
                }
            }
        }
        // Stale keys still verify while the provider is unreachable.
        match pick(&entry.keys, kid, alg) {
            Some(key) => Ok(key),
            None if entry.keys.is_empty() => {
                Err(SubjectError::KeysUnavailable(entry.last_error.clone().unwrap_or_else(|| "no usable keys".into())))
            }
            None => Err(SubjectError::UnknownKey(kid.unwrap_or("none").to_owned())),
        }
    }

    /// Verifies `token` as issued by `provider`, returning its claims.
    pub async fn verify(
        &self,
        fetcher: &Fetcher,
        provider: &IdentityProvider,
        token: &str,
        now: i64,
    ) -> Result<SubjectClaims, SubjectError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| SubjectError::Malformed)?;
        let alg_name = format!("{:?}", header.alg);
        if !provider.algorithms.contains(&alg_name) {
            return Err(SubjectError::Algorithm);
        }
        let key = match &provider.keys {
            KeySource::JwksUri(uri) => {
                let jwk = self.jwk(fetcher, uri, header.kid.as_deref(), header.alg).await?;
                DecodingKey::from_jwk(&jwk).map_err(|_| SubjectError::UnknownKey(header.kid.unwrap_or_default()))?
            }
            KeySource::Pem(pem) => static_key(pem, header.alg)?,
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&provider.issuer]);
        match &provider.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        validation.leeway = LEEWAY_SECS as u64;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => SubjectError::Expired,
                    ErrorKind::ImmatureSignature => SubjectError::NotYetValid,
                    ErrorKind::InvalidAudience => SubjectError::Audience,
                    ErrorKind::InvalidIssuer => SubjectError::Issuer,
                    ErrorKind::MissingRequiredClaim(claim) => SubjectError::MissingClaim(claim.clone()),
                    ErrorKind::InvalidAlgorithm => SubjectError::Algorithm,
                    ErrorKind::InvalidSignature => SubjectError::Signature,
                    _ => SubjectError::Malformed,
                }
            })?;
        let claims = SubjectClaims(data.claims);
        if claims.str("sub").is_none_or(str::is_empty) {
            return Err(SubjectError::MissingClaim("sub".into()));
        }
        if let Some(iat) = claims.int("iat")
            && (iat > now + LEEWAY_SECS || iat < now - MAX_SUBJECT_TOKEN_AGE)
        {
            return Err(SubjectError::Age);
        }
        Ok(claims)
    }
}

/// A decoding key from a provider's configured PEM public key, for the token's algorithm family.
pub fn static_key(pem: &str, alg: Algorithm) -> Result<DecodingKey, SubjectError> {
    let pem = pem.as_bytes();
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem),
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => return Err(SubjectError::Algorithm),
    }
    .map_err(|_| SubjectError::BadStaticKey)
}

/// Checks an operator-supplied PEM key before it is stored: it must parse for at least one accepted algorithm.
pub fn check_static_key(pem: &str, algorithms: &[String]) -> bool {
    algorithms.iter().filter_map(|a| a.parse::<Algorithm>().ok()).any(|alg| static_key(pem, alg).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_jwk(kid: &str) -> Value {
        let key = crate::keys::generate(crate::keys::SigningAlg::Rs256).unwrap();
        let mut jwk: Value = serde_json::from_str(&key.public_jwk).unwrap();
        jwk["kid"] = Value::String(kid.into());
        jwk
    }

    #[test]
    fn unusable_keys_are_skipped_and_kidless_tokens_need_one_candidate() {
        let document = serde_json::json!({"keys": [
            rsa_jwk("a"), {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}, {"kty": "weird", "kid": "w"}, 7, rsa_jwk("b")]});
        let keys = parse_jwks(document);
        assert!(keys.len() >= 2, "usable keys survive their unusable neighbours");
        assert!(pick(&keys, Some("sym"), Algorithm::RS256).is_none(), "a symmetric key never verifies");
        assert!(pick(&keys, Some("w"), Algorithm::RS256).is_none());
        assert!(pick(&keys, Some("b"), Algorithm::RS256).is_some());
        assert!(pick(&keys, Some("c"), Algorithm::RS256).is_none());
        assert!(pick(&keys, Some("a"), Algorithm::ES256).is_none(), "an RSA key never verifies ES256");
        assert!(pick(&keys, None, Algorithm::RS256).is_none(), "two candidates without a kid is ambiguous");
        assert!(pick(&keys[..1], None, Algorithm::RS256).is_some());
        assert!(parse_jwks(serde_json::json!({"nokeys": 1})).is_empty());
    }
}
