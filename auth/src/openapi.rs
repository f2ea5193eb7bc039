//! The OpenAPI description of auth's routes (`GET /openapi.json` serves it with the skeleton's).

use utoipa::OpenApi;

use crate::routes;

/// auth's routes and the bodies they take and answer.
#[derive(OpenApi)]
#[openapi(
    paths(routes::register, routes::login, routes::jwks),
    tags((name = "auth", description = "Accounts and access tokens."))
)]
pub struct Api;
