//! The OpenAPI 3.1 document each service serves at `GET /openapi.json`.
//!
//! A service describes its own routes with `#[utoipa::path]` above each handler and lists them
//! in a `#[derive(OpenApi)]` type ([`crate::service::Service::Api`]); the skeleton adds what
//! every service serves (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`), the
//! [`Problem`] schema, the responses below that every service answers with, and the `bearer`
//! security scheme (an EdDSA JWT from auth). The document is built once, at start.

use actix_web::{HttpResponse, http::header::ContentType, web};
use utoipa::{
    Modify, OpenApi, ToResponse,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::problem::Problem;

/// The name protected routes give in `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

/// 400: the request is not valid; `detail` says which rule it breaks, naming at most a field.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BadRequest(pub Problem);

/// 401: no bearer token, or one that is not valid (signature, issuer, audience, type, times).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Unauthorized(pub Problem);

/// 403: the token is valid but lacks the role the route needs.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Forbidden(pub Problem);

/// 404: nothing with this id (or not the caller's), or the id in the path is not valid.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotFound(pub Problem);

/// 408: the body did not arrive within the server's body read timeout; the connection closes.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct RequestTimeout(pub Problem);

/// 429: too many attempts from this address or for this account; retry after `Retry-After`.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before trying again."))
)]
pub struct TooManyRequests(pub Problem);

/// 500: the server failed; the body says nothing about why.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Internal(pub Problem);

/// 503: a dependency is unavailable (auth's keys for a protected route, the password hashing
/// queue, the broker); nothing was done. Retry after `Retry-After` when it is given.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before trying again."))
)]
pub struct Unavailable(pub Problem);

/// What every service serves and answers with.
#[derive(OpenApi)]
#[openapi(
    paths(
        crate::service::health::healthz,
        crate::service::health::readyz,
        crate::metrics::serve_metrics,
        serve_document
    ),
    components(
        schemas(Problem),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            RequestTimeout,
            TooManyRequests,
            Internal,
            Unavailable
        )
    ),
    modifiers(&BearerScheme),
    tags((name = "operations", description = "Probes, metrics and this document."))
)]
struct Skeleton;

/// Adds the `bearer` scheme: `Authorization: Bearer <JWT>` with a token from `POST /auth/login`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An EdDSA access token (`typ` at+jwt) from auth's POST /auth/login.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document of service `name`: its own routes in `api` and the skeleton's.
pub fn document(name: &str, api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = Skeleton::openapi();
    doc.merge(api);
    doc.info.title = name.to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(format!(
        "The {name} service of the shop. Every error body is RFC 9457 application/problem+json."
    ));
    doc
}

/// The document as served, serialized once.
#[derive(Clone)]
pub(crate) struct Document(pub(crate) web::Bytes);

/// The service's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this service.",
        content_type = "application/json", body = Object))
)]
pub(crate) async fn serve_document(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(document.0.clone())
}
