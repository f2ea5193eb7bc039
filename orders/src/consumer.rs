//! The `order.create.v1` consumer: turns buy requests from the order queue into stored orders.

use actix_web::http::StatusCode;
use common::{
    amqp::{Broker, Hooks, Incoming, Outcome},
    messages::{CreateOrderReplyV1, CreateOrderV1},
    problem::Problem,
};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::NewOrder,
    failpoint,
    store::{self, Inserted},
};

/// Consumes `queue` until `shutdown`, storing each request and replying with its order.
pub async fn run(
    broker: Broker,
    queue: String,
    prefetch: u16,
    db: DatabaseConnection,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let hooks = Hooks {
        after_reply: Some(|| failpoint::hit(failpoint::Point::AfterReply)),
    };
    common::amqp::serve_with_hooks::<CreateOrderV1, _, _>(
        broker,
        queue,
        prefetch,
        move |incoming| {
            let db = db.clone();
            async move { create_order(&db, incoming).await }
        },
        hooks,
        shutdown,
    )
    .await
}

/// Handles one request: a reply with the order (new or replayed) or a problem for the client,
/// or a retry when the database is unreachable, so a database outage never loses a buy.
pub async fn create_order(
    db: &DatabaseConnection,
    incoming: Incoming<CreateOrderV1>,
) -> Outcome<CreateOrderReplyV1> {
    let new = match NewOrder::parse(incoming.request, incoming.message_id) {
        Ok(new) => new,
        Err(reason) => {
            tracing::info!(%reason, "order request refused");
            return Outcome::Reply(CreateOrderReplyV1::Problem(reason.into()));
        }
    };
    let inserted = store::insert_order(db, &new).await;
    if inserted.is_ok() {
        failpoint::hit(failpoint::Point::AfterCommit);
    }
    match inserted {
        Ok(Inserted::Created(order)) => {
            tracing::info!(order_id = %order.id, total_cents = order.total_cents, "order created");
            Outcome::Reply(CreateOrderReplyV1::Order(order))
        }
        Ok(Inserted::Replayed(order)) => {
            tracing::info!(order_id = %order.id, "order request replayed");
            Outcome::Reply(CreateOrderReplyV1::Order(order))
        }
        Ok(Inserted::KeyReused(existing)) => {
            tracing::info!(order_id = %existing, "idempotency key reused with other lines");
            Outcome::Reply(CreateOrderReplyV1::Problem(key_reused()))
        }
        // The server loop logs the retry with its cause.
        Err(e) if store::is_transient(&e) => Outcome::Retry(
            anyhow::Error::new(e).context("database unavailable while storing an order"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "storing an order failed");
            Outcome::Reply(CreateOrderReplyV1::Problem(Problem::internal()))
        }
    }
}

fn key_reused() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Idempotency-Key reused with different items",
    )
}
