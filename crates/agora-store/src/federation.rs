use agora_core::UnixTime;
use agora_core::client::GrantType;
use agora_core::federation::{IdentityDecision, IdentityProvider, KeySource, decide_identity};
use agora_core::user::User;
use sqlx::Row as _;

use crate::users::{user_columns, user_from_row};
use crate::{Result, Row, Store, StoreError, conflict_as, json_list, parse_json_list};

/// Claims copied from an external identity onto its agora user (and kept fresh on every exchange).
#[derive(Clone, Debug, Default)]
pub struct ExternalProfile {
    /// Lower-cased.
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
}

fn verified_email_of(profile: &ExternalProfile) -> Option<&str> {
    profile.email.as_deref().filter(|_| profile.email_verified)
}

/// Whether `profile` would change what `user` holds (claims absent from it change nothing).
fn profile_changes(user: &User, profile: &ExternalProfile) -> bool {
    let differs = |held: &Option<String>, claimed: &Option<String>| claimed.is_some() && claimed != held;
    differs(&user.name, &profile.name)
        || differs(&user.picture, &profile.picture)
        || verified_email_of(profile).is_some_and(|email| user.email.as_deref() != Some(email) || !user.email_verified)
}

macro_rules! provider_columns {
    () => {
        "id, client_id, name, issuer, audience, jwks_uri, public_key_pem, algorithms, default_scopes, \
         max_token_lifetime, link_by_email"
    };
}

fn provider_from_row(row: &Row) -> Result<IdentityProvider> {
    let jwks_uri: Option<String> = row.try_get("jwks_uri")?;
    let pem: Option<String> = row.try_get("public_key_pem")?;
    let keys = match (jwks_uri, pem) {
        (Some(uri), None) => KeySource::JwksUri(uri),
        (None, Some(pem)) => KeySource::Pem(pem),
        _ => {
            return Err(StoreError::Corrupt {
                table: "identity_providers",
                detail: "needs exactly one key source".into(),
            });
        }
    };
    Ok(IdentityProvider {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        issuer: row.try_get("issuer")?,
        audience: row.try_get("audience")?,
        keys,
        algorithms: parse_json_list("identity_providers", &row.try_get::<String, _>("algorithms")?)?,
        default_scopes: row.try_get("default_scopes")?,
        max_token_lifetime: row.try_get("max_token_lifetime")?,
        link_by_email: crate::flag(row, "link_by_email")?,
    })
}

impl Store {
    /// Adds a provider to its client and enables the token-exchange grant on that client.
    pub async fn create_identity_provider(&self, provider: &IdentityProvider, now: UnixTime) -> Result<()> {
        let (jwks_uri, pem) = match &provider.keys {
            KeySource::JwksUri(uri) => (Some(uri.as_str()), None),
            KeySource::Pem(pem) => (None, Some(pem.as_str())),
        };
        let mut tx = self.pool().begin().await?;
        sqlx::query(concat!(
            "INSERT INTO identity_providers (",
            provider_columns!(),
            ", created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&provider.id)
        .bind(&provider.client_id)
        .bind(&provider.name)
        .bind(&provider.issuer)
        .bind(&provider.audience)
        .bind(jwks_uri)
        .bind(pem)
        .bind(json_list(&provider.algorithms))
        .bind(&provider.default_scopes)
        .bind(provider.max_token_lifetime)
        .bind(i64::from(provider.link_by_email))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("a provider with this issuer for this client"))?;
        let grants: String = sqlx::query_scalar("SELECT grant_types FROM clients WHERE id = $1")
            .bind(&provider.client_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut grants = parse_json_list("clients", &grants)?;
        let exchange = GrantType::TokenExchange.as_str().to_owned();
        if !grants.contains(&exchange) {
            grants.push(exchange);
            sqlx::query("UPDATE clients SET grant_types = $1 WHERE id = $2")
                .bind(json_list(&grants))
                .bind(&provider.client_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn identity_providers(&self, client_id: Option<&str>) -> Result<Vec<IdentityProvider>> {
        let rows = match client_id {
            Some(id) => {
                sqlx::query(concat!(
                    "SELECT ",
                    provider_columns!(),
                    " FROM identity_providers WHERE client_id = $1 ORDER BY created_at"
                ))
                .bind(id)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(concat!("SELECT ", provider_columns!(), " FROM identity_providers ORDER BY created_at"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(provider_from_row).collect()
    }

    /// The provider of `client_id` whose issuer is exactly `issuer`.
    pub async fn identity_provider_for(&self, client_id: &str, issuer: &str) -> Result<Option<IdentityProvider>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            provider_columns!(),
            " FROM identity_providers WHERE client_id = $1 AND issuer = $2"
        ))
        .bind(client_id)
        .bind(issuer)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(provider_from_row).transpose()
    }

    pub async fn delete_identity_provider(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM identity_providers WHERE id = $1").bind(id).execute(self.pool()).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a subject token's `jti`; false when it was exchanged before (a replay).
    pub async fn record_exchanged_token(&self, issuer: &str, jti: &str, expires_at: UnixTime) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO exchanged_subject_tokens (issuer, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer, jti) DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The agora user for external identity (issuer, subject): found, linked by verified email, or
    /// created; its profile claims refreshed from `profile` either way.
    pub async fn user_for_external_identity(
        &self,
        issuer: &str,
        subject: &str,
        profile: &ExternalProfile,
        link_by_email: bool,
        now: UnixTime,
    ) -> Result<User> {
        // Two first exchanges of the same identity may race: the loser retries and finds the link.
        for _ in 0..3 {
            match self.try_map_identity(issuer, subject, profile, link_by_email, now).await {
                Err(StoreError::Conflict(_)) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict("the external identity (concurrent first exchange)"))
    }

    async fn try_map_identity(
        &self,
        issuer: &str,
        subject: &str,
        profile: &ExternalProfile,
        link_by_email: bool,
        now: UnixTime,
    ) -> Result<User> {
        // The linked user comes with the link: an identity seen before costs one statement.
        let linked = self.linked_user(issuer, subject).await?;
        // Only a verified address is ever stored on a user or linked by: otherwise anyone could claim
        // someone else's address at their provider and later receive that person's sign-in.
        let verified_email = verified_email_of(profile);
        // Who holds the address matters only to an identity not linked yet.
        let holder = match verified_email.filter(|_| linked.is_none()) {
            Some(email) => sqlx::query("SELECT id, email_verified FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(self.pool())
                .await?
                .map(|row| Ok::<_, StoreError>((row.try_get::<String, _>("id")?, crate::flag(&row, "email_verified")?)))
                .transpose()?,
            None => None,
        };
        // Linking needs both sides verified; an address held unverified is still taken.
        let same_email = holder.as_ref().filter(|(_, verified)| *verified).map(|(id, _)| id.as_str());
        let taken = holder.is_some();
        let linked_id = linked.as_ref().map(|user| user.id.as_str());
        let user_id = match decide_identity(linked_id, same_email, verified_email.is_some(), link_by_email) {
            IdentityDecision::Linked(user_id) => user_id,
            IdentityDecision::LinkExisting(user_id) => {
                self.link_identity(issuer, subject, &user_id, now).await?;
                user_id
            }
            IdentityDecision::Create { with_email } => {
                let with_email = with_email && verified_email.is_some() && !taken;
                let user_id = uuid::Uuid::new_v4().to_string();
                let mut tx = self.pool().begin().await?;
                sqlx::query(
                    "INSERT INTO users (id, email, email_verified, name, picture, disabled, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
                )
                .bind(&user_id)
                .bind(if with_email { verified_email } else { None })
                .bind(i64::from(with_email))
                .bind(&profile.name)
                .bind(&profile.picture)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(conflict_as("a user with this email"))?;
                sqlx::query(
                    "INSERT INTO federated_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(issuer)
                .bind(subject)
                .bind(&user_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(conflict_as("the external identity"))?;
                tx.commit().await.map_err(conflict_as("the external identity"))?;
                user_id
            }
        };
        let user = match linked {
            Some(user) => user,
            None => self
                .user_by_id(&user_id)
                .await?
                .ok_or(StoreError::Corrupt { table: "users", detail: "mapped user vanished".into() })?,
        };
        // Most exchanges change nothing: only a changed claim costs a write.
        if !profile_changes(&user, profile) {
            return Ok(user);
        }
        self.refresh_external_profile(&user_id, profile, now).await?;
        self.user_by_id(&user_id)
            .await?
            .ok_or(StoreError::Corrupt { table: "users", detail: "mapped user vanished".into() })
    }

    /// The user linked to (issuer, subject), if any.
    async fn linked_user(&self, issuer: &str, subject: &str) -> Result<Option<User>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = (SELECT user_id FROM federated_identities WHERE issuer = $1 AND subject = $2)"
        ))
        .bind(issuer)
        .bind(subject)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn link_identity(&self, issuer: &str, subject: &str, user_id: &str, now: UnixTime) -> Result<()> {
        sqlx::query("INSERT INTO federated_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)")
            .bind(issuer)
            .bind(subject)
            .bind(user_id)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(conflict_as("the external identity"))?;
        Ok(())
    }

    /// Keeps name and picture fresh, and the email when the provider vouches for it (verified) and
    /// no other user holds it.
    async fn refresh_external_profile(&self, user_id: &str, profile: &ExternalProfile, now: UnixTime) -> Result<()> {
        sqlx::query(
            "UPDATE users SET name = COALESCE($1, name), picture = COALESCE($2, picture), updated_at = $3 WHERE id = $4",
        )
        .bind(&profile.name)
        .bind(&profile.picture)
        .bind(now)
        .bind(user_id)
        .execute(self.pool())
        .await?;
        if let Some(email) = verified_email_of(profile) {
            let moved = sqlx::query(
                "UPDATE users SET email = $1, email_verified = 1 WHERE id = $2 \
                 AND NOT EXISTS (SELECT 1 FROM users other WHERE other.email = $1 AND other.id <> $2)",
            )
            .bind(email)
            .bind(user_id)
            .execute(self.pool())
            .await;
            // A concurrent claim of the same address loses quietly: the user keeps the old one.
            if let Err(e) = moved
                && !matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation())
            {
                return Err(e.into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_claims_need_a_write() {
        let user = User {
            id: "u".into(),
            email: Some("a@example.com".into()),
            email_verified: true,
            name: Some("Ann".into()),
            given_name: None,
            family_name: None,
            picture: None,
            username: None,
            disabled: false,
            created_at: 0,
            updated_at: 0,
        };
        let claims = |email: Option<&str>, verified: bool, name: Option<&str>| ExternalProfile {
            email: email.map(str::to_owned),
            email_verified: verified,
            name: name.map(str::to_owned),
            picture: None,
        };
        assert!(!profile_changes(&user, &claims(Some("a@example.com"), true, Some("Ann"))), "the same claims");
        assert!(!profile_changes(&user, &claims(None, false, None)), "absent claims change nothing");
        assert!(
            !profile_changes(&user, &claims(Some("b@example.com"), false, None)),
            "an unverified address is not taken"
        );
        assert!(profile_changes(&user, &claims(Some("b@example.com"), true, None)), "a new verified address");
        assert!(profile_changes(&user, &claims(None, false, Some("Anne"))), "a new name");
    }
}
