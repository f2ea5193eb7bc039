//! The OpenAPI description of orders' routes (`GET /openapi.json` serves it with the
//! skeleton's).

use utoipa::OpenApi;

use crate::routes;

/// orders' routes and the bodies they answer.
#[derive(OpenApi)]
#[openapi(
    paths(routes::list_orders, routes::get_order, routes::cancel_order),
    tags((name = "orders", description = "The caller's orders."))
)]
pub struct Api;
