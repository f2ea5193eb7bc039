//! The OpenAPI description of products' routes (`GET /openapi.json` serves it with the
//! skeleton's).

use utoipa::OpenApi;

use crate::routes::{buy, products};

/// products' routes and the bodies they take and answer.
#[derive(OpenApi)]
#[openapi(
    paths(products::list, products::get, products::create, buy::buy),
    tags((name = "products", description = "The catalog, and buys turned into orders."))
)]
pub struct Api;
