use actix_web::{HttpResponse, http::StatusCode, web};
use common::{amqp::Broker, problem::Problem};
use sea_orm::DatabaseConnection;

use crate::order_queue::OrderQueueDeclared;

/// 200 while the process runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// 200 when the database answers, the broker is connected and the order queue exists;
/// 503 naming what is missing.
pub async fn readyz(
    db: web::Data<DatabaseConnection>,
    broker: web::Data<Broker>,
    queue: web::Data<OrderQueueDeclared>,
) -> HttpResponse {
    let mut down = Vec::new();
    if !common::db::ping(&db).await {
        down.push("the database is not answering");
    }
    if !broker.is_connected() {
        down.push("the broker is not connected");
    } else if !queue.get() {
        down.push("the order queue is not declared yet");
    }
    if down.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Not ready: {}.", down.join(" and ")),
        )
        .to_response()
    }
}
