//! People who sign in to agora.

use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::scope::Scopes;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// Absent for users known only through a federated provider that shares no (unclaimed) address.
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
    pub username: Option<String>,
    pub disabled: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// The OpenID Connect standard claims a user's tokens and userinfo carry, filtered by scope.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<UnixTime>,
}

impl User {
    /// Claims released for `scopes`: `email` gives the address, `profile` the rest (OIDC Core §5.4).
    pub fn claims_for(&self, scopes: &Scopes) -> ProfileClaims {
        let mut claims = ProfileClaims::default();
        if scopes.contains("email") && self.email.is_some() {
            claims.email = self.email.clone();
            claims.email_verified = Some(self.email_verified);
        }
        if scopes.contains("profile") {
            claims.name = self.name.clone();
            claims.given_name = self.given_name.clone();
            claims.family_name = self.family_name.clone();
            claims.picture = self.picture.clone();
            claims.username = self.username.clone();
            claims.updated_at = Some(self.updated_at);
        }
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_scopes() {
        let user = User {
            id: "u1".into(),
            email: Some("a@b.c".into()),
            email_verified: true,
            name: Some("Ada".into()),
            given_name: None,
            family_name: None,
            picture: None,
            username: None,
            disabled: false,
            created_at: 1,
            updated_at: 2,
        };
        let none = user.claims_for(&Scopes::parse("openid").unwrap());
        assert_eq!(none, ProfileClaims::default());
        let email = user.claims_for(&Scopes::parse("openid email").unwrap());
        assert_eq!(email.email.as_deref(), Some("a@b.c"));
        assert_eq!(email.name, None);
        let profile = user.claims_for(&Scopes::parse("profile").unwrap());
        assert_eq!(profile.name.as_deref(), Some("Ada"));
        assert_eq!(profile.email, None);
    }
}
