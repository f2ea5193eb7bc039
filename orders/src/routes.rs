//! The HTTP API: the caller's orders.

use actix_web::{HttpResponse, web};
use anyhow::Context;
use common::{
    ids::OrderId,
    jwt::AuthUser,
    paging::{Paging, PagingQuery},
};
use sea_orm::DatabaseConnection;

use crate::{error::Error, store};

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/orders", web::get().to(list_orders))
        .route("/orders/{id}", web::get().to(get_order));
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
