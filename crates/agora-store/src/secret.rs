//! Secrets at rest: an AEAD envelope under the master key, and one-way digests for high-entropy tokens.
//!
//! Envelope layout: `version (1) || nonce (12) || AES-256-GCM ciphertext+tag`. The caller's `context`
//! (for example `signing_key:<kid>`) is bound as associated data, so a ciphertext copied into another row
//! does not decrypt.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

const ENVELOPE_V1: u8 = 1;
pub const MASTER_KEY_FILE: &str = "master.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the master key must be 32 bytes, base64-encoded")]
    BadMasterKey,
    #[error("cannot read or write the master key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("a stored secret does not decrypt under this master key (wrong AGORA_MASTER_KEY?)")]
    Undecryptable,
}

/// The 256-bit key every at-rest secret is sealed under.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn from_base64(encoded: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD.decode(encoded.trim()).map_err(|_| SecretError::BadMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadMasterKey)?;
        Ok(Self(key))
    }

    pub fn generate() -> Self {
        Self(random_bytes())
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// `data_dir/master.key`, created (mode 0600) with a fresh key when absent.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SecretError> {
        let path = data_dir.join(MASTER_KEY_FILE);
        let io_err = |source| SecretError::KeyFile { path: path.display().to_string(), source };
        match std::fs::read_to_string(&path) {
            Ok(encoded) => Self::from_base64(&encoded),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private_file(&path, key.to_base64().as_bytes()).map_err(io_err)?;
                Ok(key)
            }
            Err(e) => Err(io_err(e)),
        }
    }
}

/// Creates `path` readable by its owner only; fails rather than overwrite an existing file.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Seals and opens secrets under the master key.
pub struct SecretBox {
    key: RandomizedNonceKey,
}

impl SecretBox {
    pub fn new(master: &MasterKey) -> Self {
        let key = RandomizedNonceKey::new(&AES_256_GCM, &master.0).expect("AES-256 takes a 32-byte key");
        Self { key }
    }

    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut in_out)
            .expect("AES-GCM sealing cannot fail for in-memory buffers");
        let mut envelope = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        envelope.push(ENVELOPE_V1);
        envelope.extend_from_slice(nonce.as_ref());
        envelope.extend_from_slice(&in_out);
        envelope
    }

    pub fn open(&self, context: &str, envelope: &[u8]) -> Result<Vec<u8>, SecretError> {
        let (version, rest) = envelope.split_first().ok_or(SecretError::Undecryptable)?;
        if *version != ENVELOPE_V1 || rest.len() < NONCE_LEN {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Undecryptable)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| SecretError::Undecryptable)?;
        Ok(plaintext.to_vec())
    }
}

/// Fresh random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system CSPRNG is available");
    bytes
}

/// A random 256-bit token in URL-safe base64, behind a recognisable prefix (for secret scanners).
pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// Digest under which high-entropy tokens (codes, refresh tokens, client secrets, session ids) are
/// stored. Such values cannot be guessed, so a fast hash suffices; passwords use argon2id instead.
pub fn token_digest(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let sb = SecretBox::new(&MasterKey::generate());
        let sealed = sb.seal("ctx:a", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(sb.open("ctx:a", &sealed).unwrap(), b"hunter2");
        assert!(sb.open("ctx:b", &sealed).is_err());
        let other = SecretBox::new(&MasterKey::generate());
        assert!(other.open("ctx:a", &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sb.open("ctx:a", &tampered).is_err());
        assert!(sb.open("ctx:a", &[]).is_err());
    }

    #[test]
    fn master_key_file_is_private_and_stable() {
        let dir = std::env::temp_dir().join(format!("agora-mk-{}", token_digest(&random_token(""))));
        std::fs::create_dir_all(&dir).unwrap();
        let first = MasterKey::load_or_create(&dir).unwrap();
        let second = MasterKey::load_or_create(&dir).unwrap();
        assert_eq!(first.to_base64(), second.to_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(MASTER_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_master_keys_are_refused() {
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert!(MasterKey::from_base64(&STANDARD.encode([0u8; 16])).is_err());
    }
}
