//! The crypto provider agora installs for jsonwebtoken: jsonwebtoken's own aws-lc-rs provider, but
//! for RSA signatures, whose private key is parsed once and kept. jsonwebtoken parses it again for
//! every signature: about a third of the cost of each RS256 token agora issues.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512, RsaEncoding, RsaKeyPair};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, aws_lc};
use jsonwebtoken::errors::{ErrorKind, new_error};
use jsonwebtoken::signature::{Error as SignatureError, Signer};
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};

/// Parsed RSA private keys by their DER: the signing key and the few it replaced, so never many.
static RSA_KEYS: LazyLock<Mutex<HashMap<Vec<u8>, Arc<RsaKeyPair>>>> = LazyLock::new(Default::default);

static PROVIDER: LazyLock<CryptoProvider> =
    LazyLock::new(|| CryptoProvider { signer_factory: signer, ..aws_lc::DEFAULT_PROVIDER.clone() });

/// Makes this provider the process's (a provider installed before stays).
pub fn install() {
    let _ = LazyLock::force(&PROVIDER).install_default();
}

struct RsaSigner {
    key: Arc<RsaKeyPair>,
    algorithm: Algorithm,
    encoding: &'static dyn RsaEncoding,
}

impl Signer<Vec<u8>> for RsaSigner {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let mut signature = vec![0; self.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key.sign(self.encoding, &rng, message, &mut signature).map_err(SignatureError::from_source)?;
        Ok(signature)
    }
}

impl JwtSigner for RsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    let encoding: &'static dyn RsaEncoding = match algorithm {
        Algorithm::RS256 if key.family() == AlgorithmFamily::Rsa => &RSA_PKCS1_SHA256,
        Algorithm::RS384 if key.family() == AlgorithmFamily::Rsa => &RSA_PKCS1_SHA384,
        Algorithm::RS512 if key.family() == AlgorithmFamily::Rsa => &RSA_PKCS1_SHA512,
        _ => return (aws_lc::DEFAULT_PROVIDER.signer_factory)(algorithm, key),
    };
    let mut keys = RSA_KEYS.lock().unwrap_or_else(|p| p.into_inner());
    let parsed = match keys.get(key.as_bytes()) {
        Some(parsed) => parsed.clone(),
        None => {
            let parsed = Arc::new(
                RsaKeyPair::from_der(key.as_bytes()).map_err(|e| new_error(ErrorKind::InvalidRsaKey(e.to_string())))?,
            );
            keys.insert(key.as_bytes().to_vec(), parsed.clone());
            parsed
        }
    };
    Ok(Box::new(RsaSigner { key: parsed, algorithm: *algorithm, encoding }))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Header, Validation};

    use super::*;
    use crate::keys::{SigningAlg, generate};

    #[test]
    fn signatures_with_a_kept_key_verify() {
        let key = generate(SigningAlg::Rs256).unwrap();
        let encoding = EncodingKey::from_rsa_pem(&key.private_key_pem).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&key.public_jwk).unwrap();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let claims = serde_json::json!({"sub": "s", "exp": 4_000_000_000u64});
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        for _ in 0..2 {
            // The second signature uses the key kept by the first.
            let header = Header::new(Algorithm::RS256);
            let signer = signer(&Algorithm::RS256, &encoding).unwrap();
            let message = format!("{}.{}", b64(&header), b64(&claims));
            let signature = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                signer.try_sign(message.as_bytes()).unwrap(),
            );
            let token = format!("{message}.{signature}");
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
        }
    }

    fn b64(value: &impl serde::Serialize) -> String {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, serde_json::to_vec(value).unwrap())
    }
}
