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

async fn list_orders(
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

async fn get_order(
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
