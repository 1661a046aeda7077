//! The tokens agora issues: JWT access and ID tokens (claims per the wire contract), opaque refresh
//! tokens, and their verification.

use agora_core::client::Client;
use agora_core::scope::Scopes;
use agora_core::user::{ProfileClaims, User};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};

use crate::error::{OAuthError, OAuthResult};
use crate::keys::{SigningAlg, VerifyError};
use crate::{AuthServer, now};

/// JWT `typ` of access tokens (RFC 9068), so an ID token can never pass as one.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
pub const REFRESH_TOKEN_PREFIX: &str = "agora_rt_";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub client_id: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The grant (sign-in of this user to this client) the token descends from; revoking it revokes the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Profile the token is locked to (set by token exchange).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub civic_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub civic_account: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(flatten)]
    pub profile: ProfileClaims,
}

/// The successful token response (RFC 6749 §5.1).
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// RFC 8693 §2.2.1: present on token-exchange responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// What an issuance is for.
pub struct Issue<'a> {
    pub client: &'a Client,
    /// The user, or `None` for a client acting on its own behalf (client_credentials).
    pub user: Option<&'a User>,
    pub grant_id: Option<&'a str>,
    pub scope: &'a Scopes,
    pub nonce: Option<&'a str>,
    pub auth_time: i64,
    pub resource: Option<&'a str>,
    /// Seconds the access token lives; `None` means the configured default.
    pub lifetime: Option<i64>,
    pub civic_profile: Option<&'a str>,
    pub civic_account: Option<&'a str>,
    /// Whether an ID token accompanies the access token (sign-in flows; not exchange or client credentials).
    pub with_id_token: bool,
}

/// `at_hash` (OIDC Core §3.1.3.6): left half of the access token's hash, with the hash of the ID token's algorithm.
pub fn at_hash(access_token: &str, alg: SigningAlg) -> String {
    let algorithm = match alg {
        SigningAlg::Rs256 | SigningAlg::Es256 => &digest::SHA256,
        SigningAlg::EdDsa => &digest::SHA512,
    };
    let hash = digest::digest(algorithm, access_token.as_bytes());
    let bytes = hash.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// PKCE S256 (RFC 7636 §4.6): `BASE64URL(SHA256(verifier)) == challenge`.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}

/// A code verifier or challenge: 43–128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
pub fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

impl AuthServer {
    pub(crate) async fn issue_tokens(
        &self,
        issue: Issue<'_>,
        refresh_token: Option<String>,
    ) -> OAuthResult<TokenResponse> {
        let now = now();
        let config = &self.config;
        let lifetime = issue.lifetime.unwrap_or(config.access_token_ttl);
        let mut aud = config.audiences.clone();
        if let Some(resource) = issue.resource.filter(|r| !aud.iter().any(|a| a == r)) {
            aud.push(resource.to_owned());
        }
        let claims = AccessClaims {
            iss: config.issuer(),
            sub: issue.user.map_or_else(|| issue.client.id.clone(), |u| u.id.clone()),
            aud,
            client_id: issue.client.id.clone(),
            scope: issue.scope.to_string(),
            iat: now,
            exp: now + lifetime,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: issue.grant_id.map(str::to_owned),
            civic_profile: issue.civic_profile.map(str::to_owned),
            civic_account: issue.civic_account.map(str::to_owned),
        };
        let key = self.keys.active().await.map_err(OAuthError::internal)?;
        let access_token = key.sign(&claims, ACCESS_TOKEN_TYP).map_err(OAuthError::internal)?;
        let id_token = match issue.user {
            Some(user) if issue.with_id_token && issue.scope.contains("openid") => {
                let id_claims = IdClaims {
                    iss: config.issuer(),
                    sub: user.id.clone(),
                    aud: issue.client.id.clone(),
                    iat: now,
                    exp: now + config.id_token_ttl,
                    auth_time: issue.auth_time,
                    nonce: issue.nonce.map(str::to_owned),
                    at_hash: Some(at_hash(&access_token, key.alg())),
                    sid: issue.grant_id.map(str::to_owned),
                    profile: user.claims_for(issue.scope),
                };
                Some(key.sign(&id_claims, "JWT").map_err(OAuthError::internal)?)
            }
            _ => None,
        };
        Ok(TokenResponse {
            access_token,
            issued_token_type: None,
            token_type: "Bearer",
            expires_in: lifetime,
            scope: issue.scope.to_string(),
            refresh_token,
            id_token,
        })
    }

    /// Mints and records a refresh token for `grant_id`.
    pub(crate) async fn new_refresh_token(&self, grant_id: &str, scope: &Scopes) -> OAuthResult<String> {
        let token = agora_store::secret::random_token(REFRESH_TOKEN_PREFIX);
        let now = now();
        self.store
            .insert_refresh_token(
                &agora_store::secret::token_digest(&token),
                grant_id,
                &scope.to_string(),
                now,
                now + self.config.refresh_token_ttl,
            )
            .await?;
        Ok(token)
    }

    /// Verifies an access token agora issued: signature, `typ`, `iss`, `aud`, expiry, and — asking
    /// the database — that neither it, its grant, its client nor its user has been revoked.
    pub async fn verify_access_token(&self, token: &str) -> Result<AccessClaims, String> {
        let claims = self.verify_signature(token).await?;
        match self.token_live(&claims).await {
            Ok(true) => Ok(claims),
            Ok(false) => Err(REVOKED.into()),
            Err(e) => {
                tracing::error!(error = %e, "revocation check failed");
                Err(UNCHECKABLE.into())
            }
        }
    }

    /// As [`Self::verify_access_token`], for hot paths (the hub): the liveness answer for a token is
    /// remembered until the revocation epoch moves, which [`Self::watch_revocations`] notices within
    /// a second. A known token then costs no database query.
    pub async fn verify_access_token_cached(&self, token: &str) -> Result<AccessClaims, String> {
        // A token seen before skips its signature check (an RSA verification per request otherwise):
        // its claims are remembered under a digest of the whole token, until it expires.
        let digest = digest::digest(&digest::SHA256, token.as_bytes());
        let claims = match self.liveness.verified(digest.as_ref(), now()) {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signature(token).await?;
                self.liveness.remember_verified(digest.as_ref(), &claims);
                claims
            }
        };
        if let Some(live) = self.liveness.get(&claims.jti) {
            return if live { Ok(claims) } else { Err(REVOKED.into()) };
        }
        let epoch = self.liveness.epoch();
        match self.token_live(&claims).await {
            Ok(live) => {
                self.liveness.put(epoch, &claims.jti, live, claims.exp);
                if live { Ok(claims) } else { Err(REVOKED.into()) }
            }
            Err(e) => {
                tracing::error!(error = %e, "revocation check failed");
                Err(UNCHECKABLE.into())
            }
        }
    }

    /// Polls the revocation epoch every second and forgets cached liveness answers when it moves.
    /// Runs until the process ends; one tiny query per second per replica.
    pub async fn watch_revocations(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            match self.store.revocation_epoch().await {
                Ok(epoch) => self.liveness.advance(epoch),
                Err(e) => {
                    // Unsure whether anything was revoked: stop trusting the cache.
                    tracing::warn!(error = %e, "cannot read the revocation epoch");
                    self.liveness.clear();
                }
            }
        }
    }

    async fn verify_signature(&self, token: &str) -> Result<AccessClaims, String> {
        let mut validation = Validation::default();
        validation.set_issuer(&[self.config.issuer()]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let (claims, typ) = self.keys.verify::<AccessClaims>(token, validation).await.map_err(|e| match e {
            VerifyError::Keys(e) => {
                tracing::error!(error = %e, "signing keys unavailable");
                UNCHECKABLE.to_owned()
            }
            other => other.to_string(),
        })?;
        if typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err("not an access token".into());
        }
        Ok(claims)
    }

    async fn token_live(&self, claims: &AccessClaims) -> Result<bool, agora_store::StoreError> {
        // Tokens a client holds for itself (client_credentials) have the client as subject and no user.
        let user = (claims.sub != claims.client_id).then_some(claims.sub.as_str());
        self.store.access_token_live(&claims.jti, claims.sid.as_deref(), &claims.client_id, user).await
    }
}

const REVOKED: &str = "token has been revoked";
const UNCHECKABLE: &str = "token cannot be checked now";

/// Remembered liveness answers by `jti`, valid for one revocation epoch.
#[derive(Default)]
pub(crate) struct LivenessCache {
    state: std::sync::Mutex<LivenessState>,
}

#[derive(Default)]
struct LivenessState {
    epoch: Option<i64>,
    answers: std::collections::HashMap<String, (bool, i64)>,
    /// Claims of tokens whose signature was checked, by SHA-256 of the token. Not tied to the epoch:
    /// a signature stays valid; revocation is the liveness answers' business.
    verified: std::collections::HashMap<Vec<u8>, AccessClaims>,
}

/// Bound on remembered answers; past it the cache starts over (it only saves queries).
const LIVENESS_CAPACITY: usize = 100_000;

impl LivenessCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, LivenessState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, jti: &str) -> Option<bool> {
        self.lock().answers.get(jti).map(|(live, _)| *live)
    }

    fn epoch(&self) -> Option<i64> {
        self.lock().epoch
    }

    /// Stores an answer computed during `epoch`, unless the epoch moved meanwhile.
    fn put(&self, epoch: Option<i64>, jti: &str, live: bool, exp: i64) {
        let mut state = self.lock();
        if state.epoch != epoch || epoch.is_none() {
            return;
        }
        if state.answers.len() >= LIVENESS_CAPACITY {
            let now = crate::now();
            state.answers.retain(|_, (_, exp)| *exp > now);
            if state.answers.len() >= LIVENESS_CAPACITY {
                state.answers.clear();
            }
        }
        state.answers.insert(jti.to_owned(), (live, exp));
    }

    fn verified(&self, digest: &[u8], now: i64) -> Option<AccessClaims> {
        self.lock().verified.get(digest).filter(|claims| claims.exp > now).cloned()
    }

    fn remember_verified(&self, digest: &[u8], claims: &AccessClaims) {
        let mut state = self.lock();
        if state.verified.len() >= LIVENESS_CAPACITY {
            let now = crate::now();
            state.verified.retain(|_, claims| claims.exp > now);
            if state.verified.len() >= LIVENESS_CAPACITY {
                state.verified.clear();
            }
        }
        state.verified.insert(digest.to_vec(), claims.clone());
    }

    fn advance(&self, epoch: i64) {
        let mut state = self.lock();
        if state.epoch != Some(epoch) {
            state.answers.clear();
            state.epoch = Some(epoch);
        }
    }

    fn clear(&self) {
        let mut state = self.lock();
        state.answers.clear();
        state.epoch = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_s256_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_s256_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(!pkce_s256_matches("plain", verifier));
    }

    #[test]
    fn pkce_value_shape() {
        assert!(is_pkce_value(&"a".repeat(43)));
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn liveness_answers_last_one_epoch() {
        let cache = LivenessCache::default();
        cache.put(None, "a", true, i64::MAX);
        assert_eq!(cache.get("a"), None, "nothing is cached before the epoch is known");
        cache.advance(1);
        cache.put(Some(1), "a", true, i64::MAX);
        assert_eq!(cache.get("a"), Some(true));
        cache.put(Some(0), "b", true, i64::MAX);
        assert_eq!(cache.get("b"), None, "an answer from an older epoch is dropped");
        cache.advance(2);
        assert_eq!(cache.get("a"), None, "a revocation anywhere forgets every answer");

        let claims = AccessClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: vec!["civic".into()],
            client_id: "c".into(),
            scope: String::new(),
            iat: 0,
            exp: 100,
            jti: "j".into(),
            sid: None,
            civic_profile: None,
            civic_account: None,
        };
        cache.remember_verified(b"digest", &claims);
        assert_eq!(cache.verified(b"digest", 99).map(|c| c.jti), Some("j".into()));
        assert!(cache.verified(b"digest", 100).is_none(), "an expired token is checked again (and fails)");
        assert!(cache.verified(b"other", 99).is_none());
    }

    #[test]
    fn at_hash_is_left_half() {
        // OIDC Core example shape: 16 bytes of SHA-256 → 22 base64url characters.
        assert_eq!(at_hash("token", SigningAlg::Rs256).len(), 22);
        assert_eq!(at_hash("token", SigningAlg::EdDsa).len(), 43);
    }
}
