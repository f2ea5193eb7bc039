//! The HTTP API: the caller's orders, and cancelling one.

use actix_web::{HttpResponse, web};
use anyhow::Context;
use common::{
    ids::OrderId,
    jwt::AuthUser,
    paging::{Paging, PagingQuery},
};
use sea_orm::DatabaseConnection;
use tracing_actix_web::RequestId;

use crate::{
    error::Error,
    outbox::{Headers, Wake},
    store::{self, Cancelled},
};

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/orders", web::get().to(list_orders))
        .route("/orders/{id}", web::get().to(get_order))
        .route("/orders/{id}/cancel", web::post().to(cancel_order));
}

/// The caller's orders, newest first.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    security(("bearer" = [])),
    params(PagingQuery),
    responses(
        (status = 200, description = "A page of the caller's orders, newest first.",
            body = Vec<common::messages::Order>,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, response = common::openapi::BadRequest),
        (status = 401, response = common::openapi::Unauthorized),
        (status = 500, response = common::openapi::Internal),
        (status = 503, response = common::openapi::Unavailable),
    )
)]
pub(crate) async fn list_orders(
    user: AuthUser,
    query: web::Query<PagingQuery>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, Error> {
    let paging = Paging::try_from(query.into_inner())?;
    let orders = store::list_for_user(db.get_ref(), user.id, paging)
        .await
        .context("listing a user's orders")?;
    Ok(HttpResponse::Ok().json(orders))
}

/// One of the caller's orders.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order.", body = common::messages::Order,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = common::openapi::Unauthorized),
        (status = 404, description = "No such order, or another user's.",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 500, response = common::openapi::Internal),
        (status = 503, response = common::openapi::Unavailable),
    )
)]
pub(crate) async fn get_order(
    user: AuthUser,
    id: web::Path<OrderId>,
    db: web::Data<DatabaseConnection>,
) -> Result<HttpResponse, Error> {
    let order = store::get_for_user(db.get_ref(), user.id, id.into_inner())
        .await
        .context("reading an order")?
        .ok_or(Error::OrderNotFound)?;
    Ok(HttpResponse::Ok().json(order))
}

/// Cancels one of the caller's orders; its stock goes back to the catalog once products has
/// read the `order.cancelled.v1` event. Cancelling a cancelled order answers it again.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order, now (or already) `cancelled`.",
            body = common::messages::Order,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = common::openapi::Unauthorized),
        (status = 404, description = "No such order, or another user's.",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 409, description = "The order is in a status that cannot be cancelled.",
            content_type = "application/problem+json", body = common::problem::Problem),
        (status = 500, response = common::openapi::Internal),
        (status = 503, response = common::openapi::Unavailable),
    )
)]
pub(crate) async fn cancel_order(
    user: AuthUser,
    id: web::Path<OrderId>,
    request_id: Option<RequestId>,
    db: web::Data<DatabaseConnection>,
    wake: web::Data<Wake>,
) -> Result<HttpResponse, Error> {
    let headers = Headers::current(request_id.map(|id| id.to_string()).as_deref());
    let cancelled = store::cancel_for_user(db.get_ref(), user.id, id.into_inner(), &headers)
        .await
        .context("cancelling an order")?;
    let order = match cancelled {
        Cancelled::Now(order) => {
            wake.notify();
            tracing::info!(order_id = %order.id, "order cancelled");
            order
        }
        Cancelled::Already(order) => order,
        Cancelled::NotCancellable(order) => {
            return Err(Error::NotCancellable(order.status));
        }
        Cancelled::NotFound => return Err(Error::OrderNotFound),
    };
    Ok(HttpResponse::Ok().json(order))
}
