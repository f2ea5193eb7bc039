//! The Ed25519 keys that sign access tokens, the JWKS that publishes their public halves, and
//! the files `auth keys` makes and rotates.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::jwt::{AUDIENCE, Claims, ISSUER, TOKEN_TYPE};
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes},
};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};

use crate::{config::KeyConfig, entity::user};

/// How long verifiers may keep the key set (`Cache-Control: max-age`): a key withdrawn from
/// it stops being trusted within this time. A new key needs no wait: its unknown `kid` makes
/// verifiers fetch again.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// Signs access tokens with one Ed25519 key and publishes it, and the key it replaced if any,
/// as a JWKS.
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
    /// The issuer `keys` describe: the key file if there is one, an ephemeral key (with a
    /// warning) if none is required, and the previous key published beside it if its file
    /// exists.
    pub fn from_config(keys: &KeyConfig, ttl: Duration) -> anyhow::Result<Self> {
        let mut issuer = match &keys.private_key_file {
            Some(path) => Self::from_pem_file(path, ttl)?,
            None if keys.require => anyhow::bail!(
                "REQUIRE_JWT_KEY is true but JWT_PRIVATE_KEY_FILE is not set: refusing to sign \
                 with a key generated now, which no other replica would share"
            ),
            None => {
                let issuer = Self::ephemeral(ttl)?;
                tracing::warn!(
                    kid = issuer.kid(),
                    "JWT_PRIVATE_KEY_FILE is not set: signing with a key generated now; \
                     tokens will not survive a restart and replicas will not accept each \
                     other's tokens (REQUIRE_JWT_KEY=true refuses to start instead)"
                );
                issuer
            }
        };
        if let Some(path) = &keys.previous_key_file {
            match read_if_present(path)? {
                Some(pem) => {
                    let kid = issuer
                        .publish_previous(&pem)
                        .with_context(|| format!("loading the previous key {}", path.display()))?;
                    tracing::info!(%kid, "previous signing key published for its tokens' remaining life");
                }
                None => tracing::info!(path = %path.display(), "no previous signing key"),
            }
        }
        Ok(issuer)
    }

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
        Self::from_signing_key(&signing_key_from_pem(pem)?, ttl)
    }

    /// An issuer with a key made up now. Its tokens stop verifying when the process ends.
    pub fn ephemeral(ttl: Duration) -> anyhow::Result<Self> {
        Self::from_signing_key(&generate_key(), ttl)
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
        let jwk = public_jwk(&key.verifying_key())?;
        Ok(Self {
            key: EncodingKey::from_ed_der(der.as_bytes()),
            kid: jwk.common.key_id.clone().expect("public_jwk names the key"),
            jwks: JwkSet { keys: vec![jwk] },
            ttl,
        })
    }

    /// Publishes the key in `pem` (a PKCS#8 private or SPKI public Ed25519 PEM) beside the
    /// signing key, so the tokens it signed keep verifying; returns its `kid`. The same key as
    /// the signing key is published once.
    pub fn publish_previous(&mut self, pem: &str) -> anyhow::Result<String> {
        let public = match signing_key_from_pem(pem) {
            Ok(key) => key.verifying_key(),
            Err(_) => VerifyingKey::from_public_key_pem(pem).map_err(|e| {
                anyhow::anyhow!("neither a PKCS#8 Ed25519 private key nor a public key: {e}")
            })?,
        };
        let jwk = public_jwk(&public)?;
        let kid = jwk.common.key_id.clone().expect("public_jwk names the key");
        if self.jwks.find(&kid).is_none() {
            self.jwks.keys.push(jwk);
        }
        Ok(kid)
    }

    /// The id of the signing key, carried in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public keys verifiers need: the signing key first, then the previous one if any.
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
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.key).context("signing an access token")?;
        Ok(AccessToken {
            token,
            expires_in: ttl,
        })
    }
}

/// The public JWK of `key`, named by its RFC 7638 thumbprint: the same key gives the same kid
/// on every replica, after every restart, and when it is published as the previous key.
fn public_jwk(key: &VerifyingKey) -> anyhow::Result<Jwk> {
    let mut jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
    }))
    .context("building the public JWK")?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .context("computing the key thumbprint")?;
    jwk.common.key_id = Some(kid);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
    Ok(jwk)
}

fn signing_key_from_pem(pem: &str) -> anyhow::Result<SigningKey> {
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| anyhow::anyhow!("not a PKCS#8 Ed25519 private key: {e}"))
}

fn generate_key() -> SigningKey {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    SigningKey::from_bytes(&seed)
}

fn kid_of(key: &VerifyingKey) -> anyhow::Result<String> {
    Ok(public_jwk(key)?
        .common
        .key_id
        .expect("public_jwk names the key"))
}

fn read_if_present(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `contents` to `path` readable by its owner only, through a file beside it renamed
/// into place, so a reader never sees half a key.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("moving {} into place", path.display()))
}

fn private_pem(key: &SigningKey) -> anyhow::Result<String> {
    Ok(key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the new key: {e}"))?
        .to_string())
}

/// `auth keys init`: writes a new signing key to `path` unless a file is there already; returns
/// the kid of the key the file holds.
pub fn init_key_file(path: &Path) -> anyhow::Result<String> {
    if let Some(pem) = read_if_present(path)? {
        let key = signing_key_from_pem(&pem)
            .with_context(|| format!("{} exists but is not a usable key", path.display()))?;
        return kid_of(&key.verifying_key());
    }
    let key = generate_key();
    write_private(path, &private_pem(&key)?)?;
    kid_of(&key.verifying_key())
}

/// The kids before and after `auth keys rotate`.
#[derive(Debug)]
pub struct Rotation {
    /// The key that signed until now, published from now on as the previous key.
    pub previous: String,
    /// The new signing key.
    pub current: String,
}

/// `auth keys rotate`: the public half of the key in `current` goes to `previous` (replacing
/// any older previous key), and a new key to `current`. Auth loads both at its next start.
pub fn rotate_key_files(current: &Path, previous: &Path) -> anyhow::Result<Rotation> {
    let pem = std::fs::read_to_string(current)
        .with_context(|| format!("reading the current key {}", current.display()))?;
    let old = signing_key_from_pem(&pem)
        .with_context(|| format!("loading the current key {}", current.display()))?;
    let public = old
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the previous public key: {e}"))?;
    // The previous key first: stopped between the two writes, auth still signs with the old
    // key and publishes it once.
    write_private(previous, &public)?;
    let new = generate_key();
    write_private(current, &private_pem(&new)?)?;
    Ok(Rotation {
        previous: kid_of(&old.verifying_key())?,
        current: kid_of(&new.verifying_key())?,
    })
}

/// `auth keys drop-previous`: stops publishing the previous key at auth's next start. Run it
/// once every token the previous key signed has expired (`TOKEN_TTL_SECS` after the rotation),
/// or at once to withdraw a key that leaked.
pub fn drop_previous_key_file(previous: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(previous) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", previous.display())),
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
