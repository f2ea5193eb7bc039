//! The `order.create.v1` consumer: turns buy requests from the order queue into stored orders.

use actix_web::http::StatusCode;
use common::{
    amqp::{Broker, ConsumerMetrics, Hooks, Incoming, Outcome, ServeOptions},
    messages::{CreateOrderReplyV1, CreateOrderV1},
    metrics::{Registry, register},
    problem::Problem,
};
use prometheus::IntCounter;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::NewOrder,
    failpoint,
    store::{self, Inserted},
};

/// Consumes `queue` until `shutdown`, storing each request with `orders` and replying with its
/// order; `metrics` counts the deliveries.
pub async fn run(
    broker: Broker,
    queue: String,
    prefetch: u16,
    orders: OrderHandler,
    metrics: Option<ConsumerMetrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let options = ServeOptions {
        prefetch,
        hooks: Hooks {
            after_reply: Some(|| failpoint::hit(failpoint::Point::AfterReply)),
        },
        metrics,
    };
    common::amqp::serve_with::<CreateOrderV1, _, _>(
        broker,
        queue,
        options,
        move |incoming| {
            let orders = orders.clone();
            async move { orders.create_order(incoming).await }
        },
        shutdown,
    )
    .await
}

/// Stores buy requests as orders, counting the new ones in `shop_orders_created_total`.
#[derive(Clone)]
pub struct OrderHandler {
    db: DatabaseConnection,
    created: IntCounter,
}

impl OrderHandler {
    /// A handler storing orders in `db`, its counter registered in `registry`.
    pub fn new(db: DatabaseConnection, registry: &Registry) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            created: register(
                registry,
                IntCounter::new(
                    "shop_orders_created_total",
                    "Orders stored; a request replayed under the same key is not counted again.",
                )?,
            )?,
        })
    }

    /// Handles one request: a reply with the order (new or replayed) or a problem for the
    /// client, or a retry when the database is unreachable, so a database outage never loses
    /// a buy.
    pub async fn create_order(
        &self,
        incoming: Incoming<CreateOrderV1>,
    ) -> Outcome<CreateOrderReplyV1> {
        let db = &self.db;
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
                self.created.inc();
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
}

fn key_reused() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Idempotency-Key reused with different items",
    )
}
