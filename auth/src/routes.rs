//! The HTTP API: registration, login and the JWKS.

use actix_web::{HttpResponse, web};
use anyhow::Context;
use chrono::{DateTime, Utc};
use common::{
    ids::UserId,
    metrics::{self, Registry},
};
use prometheus::{IntCounterVec, Opts};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};

use crate::{
    client_ip::ClientIp,
    domain::{Credentials, Email, Invalid, NewUser, Password, UserName},
    error::Error,
    limits::{Action, RateLimits},
    password::Hasher,
    store,
    token::{JWKS_MAX_AGE, TokenIssuer},
};

/// Mounts every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/auth")
            .route("/register", web::post().to(register))
            .route("/login", web::post().to(login))
            .route("/.well-known/jwks.json", web::get().to(jwks)),
    );
}

/// `shop_logins_total{outcome}`: `success`, `invalid_credentials` (unknown email, wrong or
/// impossible password), `refused` (a rate limit or the full hashing queue answered before
/// the password was checked) or `error`.
#[derive(Clone)]
pub struct Logins(IntCounterVec);

impl Logins {
    /// Registers the counter in `registry`.
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let opts = Opts::new("shop_logins_total", "Login attempts, by outcome.");
        let logins = metrics::register(registry, IntCounterVec::new(opts, &["outcome"])?)?;
        // Shown at 0 from the start: a series that first appears at 1 shows no increase.
        for outcome in ["success", "invalid_credentials", "refused", "error"] {
            logins.with_label_values(&[outcome]);
        }
        Ok(Self(logins))
    }

    fn count<T>(&self, result: &Result<T, Error>) {
        let outcome = match result {
            Ok(_) => "success",
            Err(Error::InvalidCredentials) => "invalid_credentials",
            Err(Error::RateLimited(_) | Error::Busy) => "refused",
            Err(_) => "error",
        };
        self.0.with_label_values(&[outcome]).inc();
    }
}

/// The body of `POST /auth/register`. No `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(description = "A new account.")]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The account's email; compared without regard to case.
    #[schema(max_length = 254, format = Email)]
    email: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
    /// A display name, 1 to 100 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
}

impl TryFrom<RegisterRequest> for NewUser {
    type Error = Invalid;

    fn try_from(body: RegisterRequest) -> Result<Self, Self::Error> {
        Ok(NewUser {
            email: Email::parse(&body.email)?,
            password: Password::parse(body.password)?,
            name: body.name.as_deref().map(UserName::parse).transpose()?,
        })
    }
}

/// The answer to a registration.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegisteredUser {
    id: UserId,
    email: String,
    created_at: DateTime<Utc>,
}

/// Registers an account.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    request_body(content = RegisterRequest, description = "JSON, at most 256 KiB."),
    responses(
        (status = 201, description = "The account was created.", body = RegisteredUser,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, response = common::openapi::BadRequest),
        (status = 408, response = common::openapi::RequestTimeout),
        (status = 409, description = "An account with this email already exists.",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 429, response = common::openapi::TooManyRequests),
        (status = 500, response = common::openapi::Internal),
        (status = 503, response = common::openapi::Unavailable),
    )
)]
pub(crate) async fn register(
    client: ClientIp,
    body: web::Json<RegisterRequest>,
    db: web::Data<DatabaseConnection>,
    hasher: web::Data<Hasher>,
    limits: web::Data<RateLimits>,
) -> Result<HttpResponse, Error> {
    limits.check_address(Action::Register, client.0)?;
    let new_user = NewUser::try_from(body.into_inner())?;
    limits.check_email(Action::Register, &new_user.email)?;
    let password_hash = hasher.hash(&new_user.password).await?;
    let user = store::insert_user(
        db.get_ref(),
        &new_user.email,
        new_user.name.as_ref(),
        password_hash,
    )
    .await?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok(HttpResponse::Created().json(RegisteredUser {
        id: user.id,
        email: user.email,
        created_at: user.created_at,
    }))
}

/// The body of `POST /auth/login`. No `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(description = "The credentials of an account.")]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

impl TryFrom<LoginRequest> for Credentials {
    type Error = Invalid;

    fn try_from(body: LoginRequest) -> Result<Self, Self::Error> {
        Ok(Credentials {
            email: Email::parse(&body.email)?,
            password: Password::parse(body.password)?,
        })
    }
}

/// A successful login.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The access token, a JWT to send as `Authorization: Bearer <token>`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String)]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
}

/// Exchanges an email and password for an access token.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body(content = LoginRequest, description = "JSON, at most 256 KiB."),
    responses(
        (status = 200, description = "The credentials are right.", body = TokenResponse,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, response = common::openapi::BadRequest),
        (status = 401, description = "The email or password is wrong (one answer for both).",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 408, response = common::openapi::RequestTimeout),
        (status = 429, response = common::openapi::TooManyRequests),
        (status = 500, response = common::openapi::Internal),
        (status = 503, response = common::openapi::Unavailable),
    )
)]
pub(crate) async fn login(
    client: ClientIp,
    body: web::Json<LoginRequest>,
    db: web::Data<DatabaseConnection>,
    hasher: web::Data<Hasher>,
    issuer: web::Data<TokenIssuer>,
    limits: web::Data<RateLimits>,
    logins: web::Data<Logins>,
) -> Result<HttpResponse, Error> {
    let answer = log_in(client, body.into_inner(), &db, &hasher, &issuer, &limits).await;
    logins.count(&answer);
    answer
}

async fn log_in(
    client: ClientIp,
    body: LoginRequest,
    db: &DatabaseConnection,
    hasher: &Hasher,
    issuer: &TokenIssuer,
    limits: &RateLimits,
) -> Result<HttpResponse, Error> {
    limits.check_address(Action::Login, client.0)?;
    // Credentials no account could have are refused like wrong ones; the answer does not
    // depend on whether the email exists, so it tells nothing even without hashing.
    let credentials = Credentials::try_from(body).map_err(|_| Error::InvalidCredentials)?;
    // Every attempt for the email counts, whether the account exists or not and whether the
    // password turns out right or wrong: the limit is on guesses, and a 429 must not say
    // which guess would have been right.
    limits.check_email(Action::Login, &credentials.email)?;
    let user = store::find_by_email(db, &credentials.email)
        .await
        .context("looking up the user logging in")?;
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = hasher.verify(&credentials.password, stored_hash).await?;
    let user = match user {
        Some(user) if verified => user,
        _ => return Err(Error::InvalidCredentials),
    };
    let token = issuer.issue(&user)?;
    tracing::info!(user_id = %user.id, "user logged in");
    // `Cache-Control: no-store`, as on every POST, comes from the shared HTTP setup.
    Ok(HttpResponse::Ok().json(TokenResponse {
        access_token: token.token,
        token_type: "Bearer",
        expires_in: token.expires_in,
    }))
}

/// The public keys that verify access tokens.
#[utoipa::path(
    get,
    path = "/auth/.well-known/jwks.json",
    tag = "auth",
    responses((status = 200, description = "A JWK Set (RFC 7517) of Ed25519 keys.",
        content_type = "application/json", body = Object))
)]
pub(crate) async fn jwks(issuer: web::Data<TokenIssuer>) -> HttpResponse {
    // How long verifiers may keep the set before they must fetch it again.
    let cache_control = format!("public, max-age={}", JWKS_MAX_AGE.as_secs());
    HttpResponse::Ok()
        .insert_header(("Cache-Control", cache_control))
        .json(issuer.jwks())
}
