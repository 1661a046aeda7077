//! The third-party credential a call carries to an upstream that needs one: resolved for the
//! caller's user and profile (agora-core's rule), refreshed at the provider shortly before it
//! expires, or, when there is none, a connect link for the user.

use std::collections::HashMap;

use agora_core::credential;
use agora_oauth::provider::ProviderClient;
use agora_store::secret::{random_token, token_digest};
use agora_store::{ConnectAttempt, CredentialSecret, Service, Store, StoreError};

use crate::policy::Scope;

/// Tokens expiring sooner than this are refreshed before use.
const REFRESH_MARGIN_SECS: i64 = 60;
/// How long a connect link works.
const CONNECT_TTL_SECS: i64 = 15 * 60;

/// How a credential reaches an upstream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Injection {
    Header { name: String, value: String },
    Env { name: String, value: String },
}

/// A credential ready to use: which (and which version, so a refreshed one opens a fresh
/// connection) and how it is handed over.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resolved {
    pub credential_id: String,
    pub version: String,
    pub header: Injection,
    pub env: Option<Injection>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("this account has not set up the service `{0}` this tool needs; ask an administrator")]
    NoService(String),
    #[error("connect your {service} account first: open {url} and then retry")]
    ConnectNeeded { service: String, url: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Credentials {
    store: Store,
    base: String,
    provider: ProviderClient,
    /// Resolutions by who asks for which service through which profile, each good while the policy
    /// epoch it was made under holds (every credential, assignment and service change moves it)
    /// and its token is not due for a refresh.
    resolved: std::sync::Mutex<HashMap<ResolutionKey, CachedResolution>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ResolutionKey {
    account_id: String,
    profile_id: String,
    locked: bool,
    user: String,
    service: String,
}

struct CachedResolution {
    epoch: i64,
    refresh_at: Option<i64>,
    resolved: Resolved,
}

/// Resolutions kept before the cache starts over.
const MAX_CACHED_RESOLUTIONS: usize = 100_000;

impl Credentials {
    pub fn new(store: Store, base: &str) -> Self {
        Self {
            store,
            base: base.trim_end_matches('/').to_owned(),
            provider: ProviderClient::new(),
            resolved: Default::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn provider(&self) -> &ProviderClient {
        &self.provider
    }

    /// The credential `user` uses for `service_name` in the request's account and profile.
    pub async fn resolve(&self, scope: &Scope, user: &str, service_name: &str) -> Result<Resolved, CredentialError> {
        let key = ResolutionKey {
            account_id: scope.account_id.clone(),
            profile_id: scope.profile_id.clone(),
            locked: scope.locked,
            user: user.to_owned(),
            service: service_name.to_owned(),
        };
        let now = agora_oauth::now();
        if let Some(epoch) = scope.epoch
            && let Some(cached) = self.cache().get(&key)
            && cached.epoch == epoch
            && cached.refresh_at.is_none_or(|at| now < at)
        {
            return Ok(cached.resolved.clone());
        }
        let (resolved, expires_at) = self.resolve_stored(scope, user, service_name).await?;
        if let Some(epoch) = scope.epoch {
            let mut cache = self.cache();
            if cache.len() >= MAX_CACHED_RESOLUTIONS {
                cache.clear();
            }
            let refresh_at = expires_at.map(|at| at - REFRESH_MARGIN_SECS);
            cache.insert(key, CachedResolution { epoch, refresh_at, resolved: resolved.clone() });
        }
        Ok(resolved)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<ResolutionKey, CachedResolution>> {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolution from the database, refreshing a token about to expire; also says when the
    /// token expires.
    async fn resolve_stored(
        &self,
        scope: &Scope,
        user: &str,
        service_name: &str,
    ) -> Result<(Resolved, Option<i64>), CredentialError> {
        let service = self
            .store
            .service_by_name(&scope.account_id, service_name)
            .await?
            .ok_or_else(|| CredentialError::NoService(service_name.to_owned()))?;
        let facts = self.store.credential_facts(&service.id).await?;
        let Some(chosen) = credential::resolve(&facts, user, &scope.profile_id, scope.locked) else {
            return Err(self.connect_needed(&service, scope, user).await?);
        };
        let Some((mut secret, mut expires_at)) = self.store.credential_secret(&chosen.id).await? else {
            return Err(self.connect_needed(&service, scope, user).await?);
        };
        let mut version = chosen.updated_at;
        let now = agora_oauth::now();
        if expires_at.is_some_and(|at| at - REFRESH_MARGIN_SECS <= now) {
            match self.refresh(&service, &secret).await {
                Some((fresh, fresh_expiry)) => {
                    self.store.update_credential(&chosen.id, &fresh, fresh_expiry, now).await?;
                    (secret, version, expires_at) = (fresh, now, fresh_expiry);
                }
                // Only a failed refresh asks the user to connect again.
                None => return Err(self.connect_needed(&service, scope, user).await?),
            }
        }
        let resolved = Resolved {
            credential_id: chosen.id.clone(),
            version: version.to_string(),
            header: Injection::Header {
                name: service.header_name.clone(),
                value: service.header_template.replace("{token}", &secret.token),
            },
            env: service.env_name.clone().map(|name| Injection::Env { name, value: secret.token.clone() }),
        };
        Ok((resolved, expires_at))
    }

    /// A connect link for the user: a one-time ticket naming the user, service and (when locked)
    /// profile, so the credential connected is assigned to it.
    async fn connect_needed(
        &self,
        service: &Service,
        scope: &Scope,
        user: &str,
    ) -> Result<CredentialError, StoreError> {
        let ticket = random_token("");
        let attempt = ConnectAttempt {
            ticket_digest: token_digest(&ticket),
            user_id: user.to_owned(),
            service_id: service.id.clone(),
            profile_id: scope.locked.then(|| scope.profile_id.clone()),
            browser_digest: None,
            verifier: None,
        };
        self.store.create_connect_attempt(&attempt, agora_oauth::now() + CONNECT_TTL_SECS).await?;
        Ok(CredentialError::ConnectNeeded {
            service: service.name.clone(),
            url: format!("{}{}/{ticket}", self.base, crate::connect::CONNECT_PATH),
        })
    }

    /// Swaps a refresh token for a fresh access token; `None` when there is none or the provider refuses.
    async fn refresh(&self, service: &Service, secret: &CredentialSecret) -> Option<(CredentialSecret, Option<i64>)> {
        let refresh_token = secret.refresh_token.as_deref()?;
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        match self.provider.token_request(service, &form).await {
            Ok(response) => Some((
                CredentialSecret {
                    token: response.access_token,
                    // Providers that do not rotate refresh tokens send none back: keep the old one.
                    refresh_token: response.refresh_token.or_else(|| secret.refresh_token.clone()),
                },
                response.expires_in.map(|secs| agora_oauth::now() + secs),
            )),
            Err(reason) => {
                tracing::warn!(service = %service.name, %reason, "refreshing a credential failed");
                None
            }
        }
    }
}
