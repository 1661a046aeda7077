//! Password hashing with argon2id (the argon2 crate's defaults follow OWASP's recommendation).

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let hashed: PasswordHash = Argon2::default().hash_password(password.as_bytes())?;
    Ok(hashed.to_string())
}

/// Verifies `password` against a stored PHC string; false for any malformed hash.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Spends the time of a real verification when there is no user, so that response timing does
/// not reveal which emails have accounts.
pub fn verify_against_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("agora-dummy-password").expect("hashing a constant succeeds"));
    let _ = verify(password, dummy);
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_and_verify() {
        let stored = super::hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(super::verify("correct horse", &stored));
        assert!(!super::verify("wrong", &stored));
        assert!(!super::verify("x", "not a phc string"));
    }
}
