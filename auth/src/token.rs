//! The Ed25519 key that signs access tokens, and the JWKS that publishes its public half.

use std::{path::Path, time::Duration};

use anyhow::Context;
use common::jwt::{AUDIENCE, Claims, ISSUER};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes},
};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};

use crate::entity::user;

/// Signs access tokens with one Ed25519 key and publishes that key as a JWKS.
pub struct TokenIssuer {
    key: EncodingKey,
    kid: String,
    jwks: JwkSet,
    ttl: Duration,
}

/// A freshly signed access token.
#[derive(Debug)]
pub struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl TokenIssuer {
    /// The issuer whose key is the PKCS#8 PEM in `path`, as `openssl genpkey -algorithm
    /// ed25519` writes it.
    pub fn from_pem_file(path: &Path, ttl: Duration) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading the JWT private key {}", path.display()))?;
        Self::from_pem(&pem, ttl)
            .with_context(|| format!("loading the JWT private key {}", path.display()))
    }

    /// The issuer whose key is the PKCS#8 PEM `pem`.
    pub fn from_pem(pem: &str, ttl: Duration) -> anyhow::Result<Self> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| anyhow::anyhow!("not a PKCS#8 Ed25519 private key: {e}"))?;
        Self::from_signing_key(&key, ttl)
    }

    /// An issuer with a key made up now. Its tokens stop verifying when the process ends.
    pub fn ephemeral(ttl: Duration) -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        Self::from_signing_key(&SigningKey::from_bytes(&seed), ttl)
    }

    fn from_signing_key(key: &SigningKey, ttl: Duration) -> anyhow::Result<Self> {
        // jsonwebtoken derives the public key only from the 48-byte PKCS#8 v1 form, so the key
        // is re-encoded without the optional public key some tools embed (v2).
        let der = KeypairBytes {
            secret_key: key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("encoding the Ed25519 key: {e}"))?;
        let key = EncodingKey::from_ed_der(der.as_bytes());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)
            .context("deriving the public JWK from the signing key")?;
        // The RFC 7638 thumbprint names the key by its content: the same key file gives the
        // same kid on every replica and after every restart.
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .context("computing the key thumbprint")?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
        Ok(Self {
            key,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
            ttl,
        })
    }

    /// The id of the signing key, carried in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public keys verifiers need.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Signs a token for `user`, valid from now for the configured time to live.
    pub fn issue(&self, user: &user::Model) -> anyhow::Result<AccessToken> {
        let iat = chrono::Utc::now().timestamp();
        let ttl = self.ttl.as_secs();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user.id,
            email: user.email.clone(),
            roles: user.roles.0.clone(),
            iat,
            exp: iat.saturating_add_unsigned(ttl),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.key).context("signing an access token")?;
        Ok(AccessToken {
            token,
            expires_in: ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated once with `openssl genpkey -algorithm ed25519`.
    const OPENSSL_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKLWfAva2yblOM1ZoNRazZF05K+itBkI/ow6XUzG+T2U
-----END PRIVATE KEY-----
";

    #[test]
    fn the_same_key_always_has_the_same_kid() {
        let ttl = Duration::from_secs(60);
        let a = TokenIssuer::from_pem(OPENSSL_PEM, ttl).unwrap();
        let b = TokenIssuer::from_pem(OPENSSL_PEM, ttl).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_ne!(a.kid(), TokenIssuer::ephemeral(ttl).unwrap().kid());
    }

    #[test]
    fn the_jwks_publishes_an_ed25519_signing_key_under_the_kid() {
        let issuer = TokenIssuer::ephemeral(Duration::from_secs(60)).unwrap();
        let jwks = serde_json::to_value(issuer.jwks()).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], issuer.kid());
        assert!(
            key.get("d").is_none(),
            "the private key must never be published"
        );
    }

    #[test]
    fn a_key_with_its_public_half_embedded_loads_the_same_as_without() {
        let v1 = TokenIssuer::from_pem(OPENSSL_PEM, Duration::from_secs(60)).unwrap();
        let signing = SigningKey::from_pkcs8_pem(OPENSSL_PEM).unwrap();
        let v2 = signing
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let v2 = TokenIssuer::from_pem(&v2, Duration::from_secs(60)).unwrap();
        assert_eq!(v1.kid(), v2.kid());
    }

    #[test]
    fn something_that_is_not_an_ed25519_key_is_refused() {
        assert!(TokenIssuer::from_pem("not a key", Duration::from_secs(60)).is_err());
    }
}
