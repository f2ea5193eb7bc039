//! The HTTP API: the caller's orders, health and readiness.

use actix_web::{HttpResponse, http::StatusCode, web};
use anyhow::Context;
use common::{
    amqp::Broker,
    ids::OrderId,
    jwt::AuthUser,
    paging::{Paging, PagingQuery},
    problem::Problem,
};
use sea_orm::DatabaseConnection;

use crate::{error::Error, store};

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/orders", web::get().to(list_orders))
        .route("/orders/{id}", web::get().to(get_order));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(db: web::Data<DatabaseConnection>, broker: web::Data<Broker>) -> HttpResponse {
    let database = common::db::ping(&db).await;
    let broker = broker.is_connected();
    if database && broker {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        let down: Vec<&str> = [
            (!database).then_some("database"),
            (!broker).then_some("broker"),
        ]
        .into_iter()
        .flatten()
        .collect();
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Not ready: no answer from the {}.", down.join(" or the ")),
        )
        .to_response()
    }
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
