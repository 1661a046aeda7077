//! OAuth scopes: parsing, the set agora knows, and narrowing.

use std::collections::BTreeSet;
use std::fmt;

/// Scopes agora issues. Anything else in a request is `invalid_scope`.
pub const SUPPORTED: &[&str] = &["openid", "email", "profile", "offline_access", "mcp:tools"];

/// A set of scope tokens in canonical (sorted, de-duplicated) order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("unknown scope `{0}`")]
    Unknown(String),
    #[error("scope `{0}` was not granted")]
    NotGranted(String),
}

impl Scopes {
    /// Parses a space-separated scope string, accepting only supported scopes.
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        let mut set = BTreeSet::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            if !SUPPORTED.contains(&token) {
                return Err(ScopeError::Unknown(token.to_owned()));
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    /// Parses a scope string that agora itself stored, so it is known to be valid.
    pub fn from_stored(raw: &str) -> Self {
        Self(raw.split(' ').filter(|t| !t.is_empty()).map(str::to_owned).collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `requested` must be a subset of `self` (RFC 6749 §6: a refresh may only narrow).
    pub fn narrow(&self, requested: &Scopes) -> Result<Scopes, ScopeError> {
        match requested.0.iter().find(|s| !self.0.contains(*s)) {
            Some(extra) => Err(ScopeError::NotGranted(extra.clone())),
            None => Ok(requested.clone()),
        }
    }

    pub fn without(&self, scope: &str) -> Scopes {
        Scopes(self.0.iter().filter(|s| *s != scope).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_canonicalizes_and_rejects_unknown() {
        let s = Scopes::parse("  profile openid openid  email").unwrap();
        assert_eq!(s.to_string(), "email openid profile");
        assert_eq!(Scopes::parse("openid admin"), Err(ScopeError::Unknown("admin".into())));
    }

    #[test]
    fn narrow_only_to_subsets() {
        let granted = Scopes::parse("openid email offline_access").unwrap();
        let fewer = Scopes::parse("openid").unwrap();
        assert_eq!(granted.narrow(&fewer).unwrap(), fewer);
        let more = Scopes::parse("openid profile").unwrap();
        assert_eq!(granted.narrow(&more), Err(ScopeError::NotGranted("profile".into())));
    }
}
