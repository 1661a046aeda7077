//! RFC 8693 token exchange: an app trades its user's token — from a federated identity provider
//! configured for the app's client, or an agora access token — for an agora access token, optionally
//! naming the profile (`civic_profile`, which locks the token to it) and account (`civic_account`).

use agora_core::client::Client;
use agora_core::scope::Scopes;
use agora_store::ExternalProfile;
use serde::Deserialize;

use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::federation::SubjectError;
use crate::tokens::{Issue, TokenResponse};
use crate::{AuthServer, now};

pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// The exchange's own parameters (beyond client authentication, scope and resource).
#[derive(Deserialize, Default)]
pub struct ExchangeParams {
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub actor_token: Option<String>,
    pub audience: Option<String>,
    pub expires_in: Option<String>,
    pub civic_profile: Option<String>,
    pub civic_account: Option<String>,
}

fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::invalid_request(description)
}

impl From<SubjectError> for OAuthError {
    fn from(error: SubjectError) -> Self {
        OAuthError::invalid_grant(error.to_string())
    }
}

pub async fn exchange(
    server: &AuthServer,
    client: &Client,
    params: &ExchangeParams,
    scope: Option<&str>,
    resource: Option<&str>,
) -> OAuthResult<TokenResponse> {
    if client.is_public() {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "token exchange needs a confidential client"));
    }
    let subject_token = params
        .subject_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid_request("subject_token is required"))?;
    let token_type = match params.subject_token_type.as_deref() {
        Some(t @ (ACCESS_TOKEN_TYPE | ID_TOKEN_TYPE)) => t,
        Some(other) => return Err(invalid_request(format!("subject_token_type `{other}` is not supported"))),
        None => return Err(invalid_request("subject_token_type is required")),
    };
    if params.requested_token_type.as_deref().is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(invalid_request("only access tokens can be requested"));
    }
    if params.actor_token.is_some() {
        return Err(invalid_request("actor tokens (delegation chains) are not supported"));
    }
    if let Some(audience) = params.audience.as_deref()
        && !server.config.audiences.iter().any(|a| a == audience)
    {
        return Err(OAuthError::new(ErrorCode::InvalidTarget, format!("audience `{audience}` is not served here")));
    }
    if let Some(resource) = resource {
        server.config.check_resource(resource)?;
    }
    let civic_profile = match params.civic_profile.as_deref().filter(|p| !p.is_empty()) {
        Some(raw) => Some(
            uuid::Uuid::parse_str(raw)
                .map_err(|_| invalid_request("civic_profile must be a profile UUID"))?
                .to_string(),
        ),
        None => None,
    };
    let civic_account = match params.civic_account.as_deref().filter(|a| !a.is_empty()) {
        Some(raw) if raw.len() <= 128 && raw.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) => {
            Some(raw)
        }
        Some(_) => return Err(invalid_request("civic_account must be an account id")),
        None => None,
    };
    // Profiles and account ids name things of the client's own account only; the same answer for
    // an unknown id and another account's, so nothing about other accounts leaks.
    // Checked before the subject token is looked at, so a refused request does not spend it.
    if civic_profile.is_some() || civic_account.is_some() {
        let account = server.store.account_for_client(&client.id).await?;
        let account_id = account.as_ref().map(|a| a.id.as_str());
        if let Some(asked) = civic_account
            && Some(asked) != account_id
        {
            return Err(invalid_request("civic_account is not this client's account"));
        }
        if let Some(profile) = civic_profile.as_deref() {
            let owner = server.store.profile(profile).await?.map(|p| p.account_id);
            if owner.is_none() || owner.as_deref() != account_id {
                return Err(invalid_request("civic_profile is not a profile of this client's account"));
            }
        }
    }
    let expires_in = match params.expires_in.as_deref() {
        Some(raw) => Some(
            raw.parse::<i64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| invalid_request("expires_in must be a positive integer"))?,
        ),
        None => None,
    };
    let requested_scope =
        scope.map(Scopes::parse).transpose().map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
    if requested_scope.as_ref().is_some_and(|s| s.contains("offline_access")) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "token exchange issues no refresh tokens (offline_access)",
        ));
    }

    // The issuer picks the verification path; it is read before the signature is checked, and only
    // used to choose which keys and rules the token must then satisfy.
    let issuer = unverified_issuer(subject_token)?;
    let now = now();
    let (user, scope, lifetime, grant_id, inherited_profile, inherited_account) = if issuer == server.config.issuer() {
        if token_type != ACCESS_TOKEN_TYPE {
            return Err(invalid_request("agora tokens are exchanged as access tokens"));
        }
        let subject = server.verify_access_token(subject_token).await.map_err(OAuthError::invalid_grant)?;
        // Another client's token would carry this client into that client's account and profiles.
        if subject.client_id != client.id {
            return Err(OAuthError::invalid_grant("the subject token was issued to another client"));
        }
        let user = server
            .store
            .active_user(&subject.sub)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the subject token does not belong to an active user"))?;
        // Never more scope or a longer life than the subject token has.
        let held = Scopes::from_stored(&subject.scope);
        let scope = match &requested_scope {
            Some(requested) => {
                held.narrow(requested).map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?
            }
            None => held.without("offline_access"),
        };
        let remaining = subject.exp - now;
        let lifetime = expires_in.unwrap_or(server.config.access_token_ttl).min(remaining);
        if lifetime <= 0 {
            return Err(OAuthError::invalid_grant("the subject token has expired"));
        }
        (user, scope, lifetime, subject.sid, subject.civic_profile, subject.civic_account)
    } else {
        let provider =
            server.store.identity_provider_for(&client.id, &issuer).await?.ok_or_else(|| {
                OAuthError::invalid_grant("the subject token's issuer is not configured for this client")
            })?;
        if let Some(requested) = expires_in
            && requested > provider.max_token_lifetime
        {
            return Err(invalid_request(format!(
                "expires_in exceeds this provider's maximum of {} seconds",
                provider.max_token_lifetime
            )));
        }
        let claims = server.provider_keys.verify(&server.fetcher, &provider, subject_token, now).await?;
        if let Some(jti) = claims.str("jti") {
            let expires_at = claims.int("exp").unwrap_or(now) + 60;
            if !server.store.record_exchanged_token(&provider.issuer, jti, expires_at).await? {
                return Err(OAuthError::invalid_grant("this subject token was already exchanged"));
            }
        }
        let profile = ExternalProfile {
            email: claims.str("email").and_then(|e| agora_core::email::normalize(e).ok()),
            email_verified: claims.email_verified(),
            name: claims.str("name").map(str::to_owned),
            picture: claims.str("picture").map(str::to_owned),
        };
        let subject = claims.str("sub").unwrap_or_default();
        let user = server
            .store
            .user_for_external_identity(&provider.issuer, subject, &profile, provider.link_by_email, now)
            .await?;
        if user.disabled {
            return Err(OAuthError::invalid_grant("the user is disabled"));
        }
        let scope = match requested_scope {
            Some(scope) => scope,
            None => Scopes::parse(&provider.default_scopes).unwrap_or_default(),
        };
        let lifetime = expires_in.unwrap_or(server.config.access_token_ttl.min(provider.max_token_lifetime));
        (user, scope, lifetime, None, None, None)
    };

    // A token locked to a profile (or bound to an account) stays so.
    if let (Some(held), Some(asked)) = (&inherited_profile, &civic_profile)
        && held != asked
    {
        return Err(invalid_request("the subject token is locked to another profile"));
    }
    if let (Some(held), Some(asked)) = (inherited_account.as_deref(), civic_account)
        && held != asked
    {
        return Err(invalid_request("the subject token is bound to another account"));
    }
    let civic_profile = civic_profile.or(inherited_profile);
    let civic_account = civic_account.map(str::to_owned).or(inherited_account);
    let issue = Issue {
        client,
        user: Some(&user),
        // An exchanged agora token keeps its grant: revoking the original revokes this one too.
        grant_id: grant_id.as_deref(),
        scope: &scope,
        nonce: None,
        auth_time: now,
        resource,
        lifetime: Some(lifetime),
        civic_profile: civic_profile.as_deref(),
        civic_account: civic_account.as_deref(),
        with_id_token: false,
    };
    let mut response = server.issue_tokens(issue, None).await?;
    response.issued_token_type = Some(ACCESS_TOKEN_TYPE);
    tracing::info!(client = %client.id, user = %user.id, "token exchanged");
    Ok(response)
}

/// The `iss` of a JWT, read without verification (only to choose how to verify it).
fn unverified_issuer(token: &str) -> OAuthResult<String> {
    let claims: serde_json::Map<String, serde_json::Value> = jsonwebtoken::dangerous::insecure_decode(token)
        .map(|d| d.claims)
        .map_err(|_| invalid_request("subject_token is not a JWT"))?;
    claims
        .get("iss")
        .and_then(|i| i.as_str())
        .map(str::to_owned)
        .ok_or_else(|| OAuthError::invalid_grant("the subject token has no issuer"))
}
