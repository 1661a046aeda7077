//! Signing keys: generation, the published JWKS, signing with the active key, verifying by `kid`.
//!
//! Keys live in the database (private halves sealed). Each process caches parsed keys by `kid`; the
//! active `kid` is read per signature so that a rotation done by another process (`agora keys rotate`)
//! takes effect at once on every replica, and a verification of a known `kid` touches no database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use agora_store::{NewKey, Store, StoredKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Algorithms agora signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    Es256,
    EdDsa,
}

impl SigningAlg {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "RS256" => Some(SigningAlg::Rs256),
            "ES256" => Some(SigningAlg::Es256),
            "EdDSA" => Some(SigningAlg::EdDsa),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    fn jwt_algorithm(self) -> Algorithm {
        match self {
            SigningAlg::Rs256 => Algorithm::RS256,
            SigningAlg::Es256 => Algorithm::ES256,
            SigningAlg::EdDsa => Algorithm::EdDSA,
        }
    }
}

pub const ALL_ALGS: [SigningAlg; 3] = [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("stored key {kid} is unusable: {detail}")]
    Unusable { kid: String, detail: String },
    #[error("no active signing key: run `agora serve` once to create keys")]
    NoActiveKey,
    #[error(transparent)]
    Store(#[from] agora_store::StoreError),
}

/// Generates a key pair: PKCS#8 PEM private key and its public JWK (with an RFC 7638 thumbprint `kid`).
pub fn generate(alg: SigningAlg) -> Result<NewKey, KeyError> {
    let der: Vec<u8> = match alg {
        SigningAlg::Rs256 => aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
            .and_then(|k| k.as_der().map(|d| d.as_ref().to_vec()))
            .map_err(|_| KeyError::Generate)?,
        SigningAlg::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1().map(|d| d.as_ref().to_vec()))
            .map_err(|_| KeyError::Generate)?,
        SigningAlg::EdDsa => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1().map(|d| d.as_ref().to_vec()))
            .map_err(|_| KeyError::Generate)?,
    };
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der)).into_bytes();
    let encoding = encoding_key(alg, &pem).map_err(|_| KeyError::Generate)?;
    let mut jwk = Jwk::from_encoding_key(&encoding, alg.jwt_algorithm()).map_err(|_| KeyError::Generate)?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(|_| KeyError::Generate)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(key_algorithm(alg));
    let public_jwk = serde_json::to_string(&jwk).expect("a JWK serializes");
    Ok(NewKey { kid, alg: alg.as_str().to_owned(), private_key_pem: pem, public_jwk })
}

fn key_algorithm(alg: SigningAlg) -> KeyAlgorithm {
    match alg {
        SigningAlg::Rs256 => KeyAlgorithm::RS256,
        SigningAlg::Es256 => KeyAlgorithm::ES256,
        SigningAlg::EdDsa => KeyAlgorithm::EdDSA,
    }
}

fn encoding_key(alg: SigningAlg, pem: &[u8]) -> jsonwebtoken::errors::Result<EncodingKey> {
    match alg {
        SigningAlg::Rs256 => EncodingKey::from_rsa_pem(pem),
        SigningAlg::Es256 => EncodingKey::from_ec_pem(pem),
        SigningAlg::EdDsa => EncodingKey::from_ed_pem(pem),
    }
}

struct LoadedKey {
    alg: SigningAlg,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl LoadedKey {
    fn from_stored(stored: &StoredKey) -> Result<Self, KeyError> {
        let unusable = |detail: String| KeyError::Unusable { kid: stored.kid.clone(), detail };
        let alg = SigningAlg::parse(&stored.alg).ok_or_else(|| unusable(format!("algorithm {}", stored.alg)))?;
        let encoding = encoding_key(alg, &stored.private_key_pem).map_err(|e| unusable(e.to_string()))?;
        let jwk: Jwk = serde_json::from_str(&stored.public_jwk).map_err(|e| unusable(e.to_string()))?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| unusable(e.to_string()))?;
        Ok(Self { alg, encoding, decoding })
    }
}

/// How often an unknown `kid` may send us back to the database.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

pub struct KeyRing {
    store: Store,
    cache: RwLock<Cache>,
}

struct Cache {
    keys: HashMap<String, Arc<LoadedKey>>,
    loaded_at: Option<Instant>,
}

/// The signing key of one issuance (an access token and its ID token share it, and so `at_hash`'s hash).
pub struct ActiveKey {
    kid: String,
    key: Arc<LoadedKey>,
}

impl ActiveKey {
    pub fn alg(&self) -> SigningAlg {
        self.key.alg
    }

    /// Signs `claims`; `typ` is the JWT `typ` header (`at+jwt` for access tokens, RFC 9068).
    pub fn sign<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, KeyError> {
        let mut header = Header::new(self.key.alg.jwt_algorithm());
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key.encoding)
            .map_err(|e| KeyError::Unusable { kid: self.kid.clone(), detail: e.to_string() })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

impl KeyRing {
    pub fn new(store: Store) -> Self {
        Self { store, cache: RwLock::new(Cache { keys: HashMap::new(), loaded_at: None }) }
    }

    /// Creates the first active key and its successor when the database has none.
    pub async fn ensure_keys(&self, alg: SigningAlg, now: i64) -> Result<bool, KeyError> {
        if self.store.active_kid().await?.is_some() {
            return Ok(false);
        }
        let (active, next) = (generate(alg)?, generate(alg)?);
        Ok(self.store.install_initial_keys(&active, &next, now).await?)
    }

    /// Rotates: the published successor starts signing, a new successor (of `alg`) is published,
    /// and retired keys older than `retain_secs` (the longest token lifetime) are dropped.
    pub async fn rotate(&self, alg: SigningAlg, now: i64, retain_secs: i64) -> Result<String, KeyError> {
        let new_next = generate(alg)?;
        let kid = self.store.rotate_keys(&new_next, now).await?;
        self.store.purge_retired_keys(now - retain_secs).await?;
        Ok(kid)
    }

    async fn reload(&self) -> Result<(), KeyError> {
        let stored = self.store.published_keys().await?;
        let mut keys = HashMap::with_capacity(stored.len());
        for key in &stored {
            keys.insert(key.kid.clone(), Arc::new(LoadedKey::from_stored(key)?));
        }
        let mut cache = self.cache.write().expect("key cache lock");
        cache.keys = keys;
        cache.loaded_at = Some(Instant::now());
        Ok(())
    }

    fn cached(&self, kid: &str) -> Option<Arc<LoadedKey>> {
        self.cache.read().expect("key cache lock").keys.get(kid).cloned()
    }

    fn may_reload(&self) -> bool {
        self.cache.read().expect("key cache lock").loaded_at.is_none_or(|at| at.elapsed() >= RELOAD_INTERVAL)
    }

    async fn key(&self, kid: &str, force: bool) -> Result<Option<Arc<LoadedKey>>, KeyError> {
        if let Some(key) = self.cached(kid) {
            return Ok(Some(key));
        }
        if force || self.may_reload() {
            self.reload().await?;
        }
        Ok(self.cached(kid))
    }

    /// The key currently signing. One call per issuance: a rotation by any process applies at once.
    pub async fn active(&self) -> Result<ActiveKey, KeyError> {
        let kid = self.store.active_kid().await?.ok_or(KeyError::NoActiveKey)?;
        let key = self.key(&kid, true).await?.ok_or(KeyError::NoActiveKey)?;
        Ok(ActiveKey { kid, key })
    }

    /// Verifies a token agora signed. `validation`'s algorithms are replaced by the key's own, so a
    /// token cannot choose how it is checked. Returns the claims and the header's `typ`.
    pub async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        mut validation: Validation,
    ) -> Result<(T, Option<String>), VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = self.key(&kid, false).await?.ok_or(VerifyError::UnknownKey)?;
        validation.algorithms = vec![key.alg.jwt_algorithm()];
        let data = jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        Ok((data.claims, data.header.typ))
    }

    /// The JWKS document: every published key (successor, active, retired-but-still-valid).
    pub async fn jwks(&self) -> Result<JwkSet, KeyError> {
        let keys = self
            .store
            .published_keys()
            .await?
            .iter()
            .map(|k| {
                serde_json::from_str(&k.public_jwk)
                    .map_err(|e| KeyError::Unusable { kid: k.kid.clone(), detail: e.to_string() })
            })
            .collect::<Result<Vec<Jwk>, _>>()?;
        Ok(JwkSet { keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_and_verifies_through_its_jwk() {
        for alg in ALL_ALGS {
            let key = generate(alg).unwrap();
            let stored = StoredKey {
                kid: key.kid.clone(),
                alg: key.alg.clone(),
                state: "active".into(),
                private_key_pem: key.private_key_pem.clone(),
                public_jwk: key.public_jwk.clone(),
                created_at: 0,
                retired_at: None,
            };
            let loaded = LoadedKey::from_stored(&stored).unwrap();
            let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
            let token = jsonwebtoken::encode(&Header::new(alg.jwt_algorithm()), &claims, &loaded.encoding).unwrap();
            let mut validation = Validation::new(alg.jwt_algorithm());
            validation.required_spec_claims.clear();
            let decoded = jsonwebtoken::decode::<serde_json::Value>(&token, &loaded.decoding, &validation).unwrap();
            assert_eq!(decoded.claims["sub"], "x", "{alg:?}");
            let jwk: serde_json::Value = serde_json::from_str(&key.public_jwk).unwrap();
            assert_eq!(jwk["kid"], key.kid.as_str());
            assert!(jwk.get("d").is_none(), "private part leaked into the JWK");
        }
    }
}
