//! Token claims and their verification against auth's JWKS, with the `AuthUser` extractor.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    str::FromStr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use actix_web::{
    FromRequest, HttpRequest, HttpResponse, ResponseError,
    dev::Payload,
    http::{
        StatusCode,
        header::{self, CacheDirective, HeaderValue},
    },
    web,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::{config::parse_or, ids::UserId, problem::Problem};

/// The `iss` of every token.
pub const ISSUER: &str = "auth";
/// The `aud` of every token.
pub const AUDIENCE: &str = "shop";
/// The role that may manage the catalog.
pub const ROLE_ADMIN: &str = "admin";
/// The header `typ` of an access token (RFC 9068), so no other JWT auth might sign one day (an
/// ID token, a reset link) passes for one.
pub const TOKEN_TYPE: &str = "at+jwt";
/// How far a verifier's clock may lag auth's: a token issued up to this far in the future
/// still verifies. Further than that, `iat` is a lie meant to stretch the token's life.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The longest token accepted before any header is parsed; auth's are under 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// `TOKEN_MAX_TTL_SECS` by default: auth's default `TOKEN_TTL_SECS` (900) plus a minute.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(900 + 60);
/// `JWKS_CACHE_TTL_SECS` by default: how long fetched keys are trusted.
pub const DEFAULT_JWKS_CACHE_TTL: Duration = Duration::from_secs(300);
/// The least time between two fetches of the key set.
pub const DEFAULT_MIN_REFETCH: Duration = Duration::from_secs(5);

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

/// Where the keys come from, how long they are trusted, and the longest token life accepted.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// `AUTH_JWKS_URL`: where auth publishes its public keys.
    pub url: String,
    /// `TOKEN_MAX_TTL_SECS`, default 960: tokens whose `exp - iat` is longer are refused. Keep
    /// it at auth's `TOKEN_TTL_SECS` plus a little.
    pub max_token_lifetime: Duration,
    /// `JWKS_CACHE_TTL_SECS`, default 300: how long fetched keys are trusted, shortened by the
    /// key set's own `Cache-Control: max-age`. A key auth stops publishing is refused after
    /// this.
    pub cache_ttl: Duration,
    /// The least time between two fetches, however many unknown key ids arrive: a flood of
    /// forged tokens cannot become a flood of requests to auth. Also the shortest cache life.
    pub min_refetch: Duration,
}

impl JwksConfig {
    /// Keys from `url`, with the default limits.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_token_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            cache_ttl: DEFAULT_JWKS_CACHE_TTL,
            min_refetch: DEFAULT_MIN_REFETCH,
        }
    }

    /// Reads `AUTH_JWKS_URL`, `TOKEN_MAX_TTL_SECS` and `JWKS_CACHE_TTL_SECS`.
    pub fn from_env() -> anyhow::Result<Self> {
        let max_lifetime: u64 =
            parse_or("TOKEN_MAX_TTL_SECS", DEFAULT_MAX_TOKEN_LIFETIME.as_secs())?;
        anyhow::ensure!(max_lifetime > 0, "TOKEN_MAX_TTL_SECS must be at least 1");
        let cache_ttl: u64 = parse_or("JWKS_CACHE_TTL_SECS", DEFAULT_JWKS_CACHE_TTL.as_secs())?;
        anyhow::ensure!(
            cache_ttl <= 24 * 3600,
            "JWKS_CACHE_TTL_SECS must be at most a day (86400)"
        );
        Ok(Self {
            max_token_lifetime: Duration::from_secs(max_lifetime),
            cache_ttl: Duration::from_secs(cache_ttl),
            ..Self::new(crate::config::jwks_url())
        })
    }
}

/// Why a token was refused. Every variant but [`VerifyError::Unavailable`] becomes the same 401
/// for the client; that one is our outage, so 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token too long")]
    TooLong,
    /// The header has no `kid`.
    #[error("no key id")]
    MissingKeyId,
    /// The token's `kid` names no key auth publishes.
    #[error("unknown key id")]
    UnknownKey,
    /// The header's `typ` is not [`TOKEN_TYPE`].
    #[error("not an access token (typ {0:?})")]
    WrongType(Option<String>),
    /// `exp - iat` is longer than the configured maximum.
    #[error("lifetime of {0} s is longer than allowed")]
    LifetimeTooLong(i64),
    /// `iat` lies further in the future than [`CLOCK_SKEW`].
    #[error("issued in the future")]
    IssuedInFuture,
    /// Signature, algorithm, issuer, audience, expiry, not-before or a claim is wrong.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// No key set fetched within its cache life is at hand, and fetching one failed.
    #[error("no current key set: {reason}")]
    Unavailable {
        /// Why the last fetch failed.
        reason: String,
        /// When a fetch may be tried again.
        retry_after: Duration,
    },
}

impl ResponseError for VerifyError {
    fn status_code(&self) -> StatusCode {
        match self {
            VerifyError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            VerifyError::Unavailable { retry_after, .. } => {
                let mut response = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Tokens cannot be checked right now; try again shortly.",
                )
                .to_response();
                let seconds = retry_after.as_secs_f64().ceil().max(1.0).to_string();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&seconds).expect("digits are a header value"),
                );
                response
            }
            _ => unauthorized().to_response(),
        }
    }
}

/// Verifies tokens with the Ed25519 keys auth publishes, cached by `kid` for the key set's cache
/// life. An unknown `kid` or an expired set triggers a refetch, at most once per
/// [`JwksConfig::min_refetch`].
#[derive(Clone)]
pub struct JwksVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: JwksConfig,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// When a fetch was last tried, successful or not.
    last_fetch: Mutex<Option<Instant>>,
    validation: Validation,
}

/// The keys of the last successful fetch and until when they are trusted.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// `None` until the first successful fetch.
    expires: Option<Instant>,
}

impl KeySet {
    fn is_fresh(&self) -> bool {
        self.expires.is_some_and(|at| Instant::now() < at)
    }
}

impl JwksVerifier {
    /// A verifier that fetches keys as `config` says when it first meets a `kid`.
    pub fn new(config: JwksConfig) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        // `iat` is not a spec claim to jsonwebtoken; `Claims` requires it by its type.
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        // Off by default in jsonwebtoken: a token that says it is not valid yet is refused.
        validation.validate_nbf = true;
        validation.leeway = 0;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            inner: Arc::new(Inner {
                config,
                http,
                keys: RwLock::new(KeySet::default()),
                last_fetch: Mutex::new(None),
                validation,
            }),
        }
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::TooLong);
        }
        let header = jsonwebtoken::decode_header(token)?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Invalid(
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into(),
            ));
        }
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err(VerifyError::WrongType(header.typ));
        }
        let kid = header.kid.ok_or(VerifyError::MissingKeyId)?;
        let key = self.key(&kid).await?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.inner.validation)?.claims;
        let lifetime = claims.exp.saturating_sub(claims.iat);
        let max_lifetime =
            i64::try_from(self.inner.config.max_token_lifetime.as_secs()).unwrap_or(i64::MAX);
        if lifetime > max_lifetime {
            return Err(VerifyError::LifetimeTooLong(lifetime));
        }
        let latest_iat = chrono::Utc::now()
            .timestamp()
            .saturating_add_unsigned(CLOCK_SKEW.as_secs());
        if claims.iat > latest_iat {
            return Err(VerifyError::IssuedInFuture);
        }
        Ok(claims)
    }

    /// The key named `kid` from a key set within its cache life, fetching one when needed.
    async fn key(&self, kid: &str) -> Result<DecodingKey, VerifyError> {
        if let Some(key) = self.fresh_key(kid) {
            return Ok(key);
        }
        // Fetched on a task of its own: a request abandoned mid-fetch (its client gone, or an
        // extractor beside this one failing) would otherwise leave the fetch counted, its keys
        // never stored, and every token refused until the next fetch is allowed.
        let this = self.clone();
        let owned_kid = kid.to_owned();
        match tokio::spawn(async move { this.fetch_key(&owned_kid).await }).await {
            Ok(key) => key,
            Err(e) => Err(self.missing(
                format!("the key fetch failed: {e}"),
                self.inner.config.min_refetch,
            )),
        }
    }

    /// [`JwksVerifier::key`] past the cache: one fetch at a time, at most one per
    /// `min_refetch`.
    async fn fetch_key(&self, kid: &str) -> Result<DecodingKey, VerifyError> {
        let mut last = self.inner.last_fetch.lock().await;
        // Another request may have fetched the set while this one waited for the lock.
        if let Some(key) = self.fresh_key(kid) {
            return Ok(key);
        }
        let min_refetch = self.inner.config.min_refetch;
        if let Some(at) = *last
            && at.elapsed() < min_refetch
        {
            return Err(self.missing(
                "the last fetch failed".to_owned(),
                min_refetch.saturating_sub(at.elapsed()),
            ));
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok((keys, ttl)) => {
                let key = keys.get(kid).cloned();
                *self.inner.keys.write().expect("key cache lock poisoned") = KeySet {
                    keys,
                    expires: Some(Instant::now() + ttl.max(min_refetch)),
                };
                key.ok_or(VerifyError::UnknownKey)
            }
            Err(reason) => {
                tracing::warn!(url = %self.inner.config.url, error = %reason, "fetching the JWKS failed");
                Err(self.missing(reason, min_refetch))
            }
        }
    }

    fn fresh_key(&self, kid: &str) -> Option<DecodingKey> {
        let set = self.inner.keys.read().expect("key cache lock poisoned");
        if set.is_fresh() {
            set.keys.get(kid).cloned()
        } else {
            None
        }
    }

    /// Why a key is missing when no fetch can be made now: a current set that lacks it knows
    /// the key id is unknown; without a current set, nothing can be said, so it is our outage.
    fn missing(&self, reason: String, retry_after: Duration) -> VerifyError {
        if self
            .inner
            .keys
            .read()
            .expect("key cache lock poisoned")
            .is_fresh()
        {
            VerifyError::UnknownKey
        } else {
            VerifyError::Unavailable {
                reason,
                retry_after,
            }
        }
    }

    /// Fetches the key set; returns its usable keys and how long to trust them.
    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Duration), String> {
        let response = self
            .inner
            .http
            .get(&self.inner.config.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?;
        let max_age = response
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(max_age)
            .min();
        let ttl = max_age.map_or(self.inner.config.cache_ttl, |age| {
            age.min(self.inner.config.cache_ttl)
        });
        let set: JwkSet = response.json().await.map_err(|e| e.to_string())?;
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
        Ok((keys, ttl))
    }
}

/// RFC 9068 names the type `at+jwt`, or in full `application/at+jwt`; media types compare
/// without regard to case.
fn is_access_token_type(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ == TOKEN_TYPE || typ.strip_prefix("application/") == Some(TOKEN_TYPE)
}

/// How long one `Cache-Control` header value lets the response be kept: its `max-age`, or
/// nothing for `no-store` and `no-cache`; `None` when it says neither.
fn max_age(value: &str) -> Option<Duration> {
    value
        .split(',')
        .filter_map(|directive| CacheDirective::from_str(directive.trim()).ok())
        .find_map(|directive| match directive {
            CacheDirective::MaxAge(secs) => Some(Duration::from_secs(secs.into())),
            CacheDirective::NoStore | CacheDirective::NoCache => Some(Duration::ZERO),
            _ => None,
        })
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
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<JwksVerifier>>().cloned();
        let token = bearer(req);
        Box::pin(async move {
            let verifier = verifier.ok_or_else(|| {
                tracing::error!("AuthUser used in an app without a JwksVerifier");
                Problem::internal()
            })?;
            let token = token.ok_or(VerifyError::Missing)?;
            match verifier.verify(&token).await {
                Ok(claims) => Ok(AuthUser {
                    id: claims.sub,
                    email: claims.email,
                    roles: claims.roles,
                }),
                Err(e @ VerifyError::Unavailable { .. }) => {
                    tracing::warn!(reason = %e, "token not checked: no key set");
                    Err(e.into())
                }
                Err(e) => {
                    tracing::info!(reason = %e, "token refused");
                    Err(e.into())
                }
            }
        })
    }
}

fn unauthorized() -> Problem {
    Problem::unauthorized("A valid bearer token is required.")
}
