//! Token claims and their verification against auth's JWKS, with the `AuthUser` extractor.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::{ids::UserId, problem::Problem};

/// The `iss` of every token.
pub const ISSUER: &str = "auth";
/// The `aud` of every token.
pub const AUDIENCE: &str = "shop";
/// The role that may manage the catalog.
pub const ROLE_ADMIN: &str = "admin";

/// The claims auth signs and every verifier requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// The user.
    pub sub: UserId,
    /// The user's email at the time of login.
    pub email: String,
    /// Roles such as [`ROLE_ADMIN`].
    pub roles: Vec<String>,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
}

/// Why a token was refused. Every variant becomes the same 401 for the client.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The token's `kid` names no key auth publishes.
    #[error("unknown key id")]
    UnknownKey,
    /// Signature, algorithm, issuer, audience, expiry or a claim is wrong.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The key set could not be fetched.
    #[error("fetching the key set failed: {0}")]
    Fetch(String),
}

/// Verifies tokens with the Ed25519 keys auth publishes, cached by `kid`. An unknown `kid`
/// triggers a refetch, at most once per `min_refetch`, so a flood of bad tokens cannot turn
/// into a flood of requests to auth.
#[derive(Clone)]
pub struct JwksVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
    min_refetch: Duration,
    validation: Validation,
}

impl JwksVerifier {
    /// A verifier that fetches keys from `url` when it first meets a `kid`.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_refetch_interval(url, Duration::from_secs(5))
    }

    /// As [`JwksVerifier::new`], with another bound on how often the key set is refetched.
    pub fn with_refetch_interval(url: impl Into<String>, min_refetch: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.leeway = 0;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            inner: Arc::new(Inner {
                url: url.into(),
                http,
                keys: RwLock::new(HashMap::new()),
                last_fetch: Mutex::new(None),
                min_refetch,
                validation,
            }),
        }
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Invalid(
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into(),
            ));
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = match self.cached(&kid) {
            Some(key) => key,
            None => {
                self.refetch().await?;
                self.cached(&kid).ok_or(VerifyError::UnknownKey)?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.inner.validation)?;
        Ok(data.claims)
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.inner
            .keys
            .read()
            .expect("key cache lock poisoned")
            .get(kid)
            .cloned()
    }

    async fn refetch(&self) -> Result<(), VerifyError> {
        let mut last = self.inner.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.inner.min_refetch) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let set: JwkSet = self
            .inner
            .http
            .get(&self.inner.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| VerifyError::Fetch(e.to_string()))?
            .json()
            .await
            .map_err(|e| VerifyError::Fetch(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, key);
                }
                Err(e) => tracing::warn!(%kid, error = %e, "skipping an unusable key in the JWKS"),
            }
        }
        *self.inner.keys.write().expect("key cache lock poisoned") = keys;
        Ok(())
    }
}

/// The caller, taken from a verified bearer token. Extracting it answers 401 for anything
/// but a valid token; the app must hold a `web::Data<JwksVerifier>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user's id.
    pub id: UserId,
    /// The user's email.
    pub email: String,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl AuthUser {
    /// Whether the user holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// `Ok` for an admin, 403 otherwise.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.has_role(ROLE_ADMIN) {
            Ok(())
        } else {
            Err(Problem::forbidden("This action needs the admin role."))
        }
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

impl FromRequest for AuthUser {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Problem>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<JwksVerifier>>().cloned();
        let token = bearer(req);
        Box::pin(async move {
            let verifier = verifier.ok_or_else(|| {
                tracing::error!("AuthUser used in an app without a JwksVerifier");
                Problem::internal()
            })?;
            let token = token.ok_or_else(unauthorized)?;
            match verifier.verify(&token).await {
                Ok(claims) => Ok(AuthUser {
                    id: claims.sub,
                    email: claims.email,
                    roles: claims.roles,
                }),
                Err(e) => {
                    tracing::info!(reason = %e, "token refused");
                    Err(unauthorized())
                }
            }
        })
    }
}

fn unauthorized() -> Problem {
    Problem::unauthorized("A valid bearer token is required.")
}
