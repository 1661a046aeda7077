//! Email addresses as agora keys them: trimmed and lower-cased, with a shape check that rejects
//! obvious garbage without pretending to implement RFC 5322.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a valid email address")]
pub struct InvalidEmail(pub String);

/// Returns the canonical (trimmed, lower-cased) form of `raw`, or an error when it cannot be an address.
pub fn normalize(raw: &str) -> Result<String, InvalidEmail> {
    let email = raw.trim().to_lowercase();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && email.len() <= 254
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if valid { Ok(email) } else { Err(InvalidEmail(raw.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_rejects() {
        assert_eq!(normalize("  Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in ["", "ada", "@x", "ada@", "a@b@c", "a b@c.d", "a@.c", "a@c."] {
            assert!(normalize(bad).is_err(), "{bad} accepted");
        }
    }
}
