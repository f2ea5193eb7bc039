//! The consumers of orders' two queues: `order.create.v1` turns buy requests into stored
//! orders, `order.resolve-reservation.v1` tells products how the buy behind a reservation
//! ended.

use actix_web::http::StatusCode;
use common::{
    amqp::{Broker, ConsumerMetrics, Hooks, Incoming, Outcome, RpcRequest, ServeOptions},
    messages::{
        CreateOrderReplyV1, CreateOrderV1, RESERVATION_EXPIRED, RESERVATION_IN_USE,
        ResolveReservationReplyV1, ResolveReservationV1,
    },
    metrics::{Registry, register},
    problem::Problem,
};
use prometheus::IntCounter;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::NewOrder,
    failpoint,
    outbox::{Headers, Wake},
    store::{self, Inserted},
};

/// What both consumers share.
#[derive(Clone)]
pub struct Consuming {
    /// The process's connection.
    pub broker: Broker,
    /// Deliveries each consumer holds at once (`ORDER_PREFETCH`).
    pub prefetch: u16,
    /// Where deliveries are counted; not counted when `None`.
    pub metrics: Option<ConsumerMetrics>,
    /// Cancelled when the consumers are to stop.
    pub shutdown: CancellationToken,
}

/// Consumes the order queue `queue` until shutdown, storing each request with `orders` and
/// replying with its order.
pub async fn run(consuming: Consuming, queue: String, orders: OrderHandler) -> anyhow::Result<()> {
    let hooks = Hooks {
        after_reply: Some(|| failpoint::hit(failpoint::Point::AfterReply)),
    };
    serve(
        consuming,
        queue,
        hooks,
        orders,
        |orders, incoming| async move { orders.create_order(incoming).await },
    )
    .await
}

/// Consumes the resolve queue `queue` until shutdown, answering each question from the fence
/// `orders` keeps.
pub async fn run_resolver(
    consuming: Consuming,
    queue: String,
    orders: OrderHandler,
) -> anyhow::Result<()> {
    serve(
        consuming,
        queue,
        Hooks::default(),
        orders,
        |orders, incoming| async move { orders.resolve_reservation(incoming).await },
    )
    .await
}

/// [`common::amqp::serve_with`], running `handle` on a clone of `orders` for each request.
async fn serve<R, Fut>(
    consuming: Consuming,
    queue: String,
    hooks: Hooks,
    orders: OrderHandler,
    handle: fn(OrderHandler, Incoming<R>) -> Fut,
) -> anyhow::Result<()>
where
    R: RpcRequest,
    Fut: Future<Output = Outcome<R::Reply>> + Send + 'static,
{
    let Consuming {
        broker,
        prefetch,
        metrics,
        shutdown,
    } = consuming;
    let options = ServeOptions {
        prefetch,
        hooks,
        metrics,
    };
    let handler = move |incoming| handle(orders.clone(), incoming);
    common::amqp::serve_with(broker, queue, options, handler, shutdown).await
}

/// Stores buy requests as orders, counting the new ones in `shop_orders_created_total`, and
/// answers for reservations.
#[derive(Clone)]
pub struct OrderHandler {
    db: DatabaseConnection,
    created: IntCounter,
    wake: Wake,
}

impl OrderHandler {
    /// A handler storing orders in `db`, its counter registered in `registry`, waking the
    /// relay with `wake` after each new order.
    pub fn new(db: DatabaseConnection, registry: &Registry, wake: Wake) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            created: register(
                registry,
                IntCounter::new(
                    "shop_orders_created_total",
                    "Orders stored; a request replayed under the same key is not counted again.",
                )?,
            )?,
            wake,
        })
    }

    /// Handles one request: a reply with the order (new or replayed) or a problem for the
    /// client, or a retry when the database is unreachable, so a database outage never loses
    /// a buy.
    pub async fn create_order(
        &self,
        incoming: Incoming<CreateOrderV1>,
    ) -> Outcome<CreateOrderReplyV1> {
        let new = match NewOrder::parse(incoming.request, incoming.message_id) {
            Ok(new) => new,
            Err(reason) => {
                tracing::info!(%reason, "order request refused");
                return Outcome::Reply(CreateOrderReplyV1::Problem(reason.into()));
            }
        };
        let headers = Headers::current(incoming.request_id.as_deref());
        let inserted = store::insert_order(&self.db, &new, &headers).await;
        if inserted.is_ok() {
            failpoint::hit(failpoint::Point::AfterCommit);
        }
        let problem = match inserted {
            Ok(Inserted::Created(order)) => {
                self.created.inc();
                self.wake.notify();
                tracing::info!(order_id = %order.id, total_cents = order.total_cents, "order created");
                return Outcome::Reply(CreateOrderReplyV1::Order(order));
            }
            Ok(Inserted::Replayed(order)) => {
                tracing::info!(order_id = %order.id, "order request replayed");
                return Outcome::Reply(CreateOrderReplyV1::Order(order));
            }
            Ok(Inserted::KeyReused(existing)) => {
                tracing::info!(order_id = %existing, "idempotency key reused with other lines");
                key_reused()
            }
            Ok(Inserted::ReservationExpired) => {
                tracing::info!(
                    reservation_id = ?new.reservation_id(),
                    "order refused: its reservation was resolved without an order"
                );
                reservation_expired()
            }
            Ok(Inserted::ReservationTaken(other)) => {
                tracing::warn!(
                    reservation_id = ?new.reservation_id(),
                    order_id = %other,
                    "order refused: its reservation belongs to another order"
                );
                reservation_in_use()
            }
            // The server loop logs the retry with its cause.
            Err(e) if common::db::is_transient(&e) => {
                return Outcome::Retry(
                    anyhow::Error::new(e).context("database unavailable while storing an order"),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "storing an order failed");
                Problem::internal()
            }
        };
        Outcome::Reply(CreateOrderReplyV1::Problem(problem))
    }

    /// Answers how the buy behind a reservation ended, deciding it for good when no order has
    /// claimed it yet; a retry when the database is unreachable.
    pub async fn resolve_reservation(
        &self,
        incoming: Incoming<ResolveReservationV1>,
    ) -> Outcome<ResolveReservationReplyV1> {
        let reservation = incoming.request.reservation_id;
        match store::resolve_reservation(&self.db, reservation).await {
            Ok(Some(order_id)) => {
                tracing::info!(%reservation, %order_id, "reservation resolved: ordered");
                Outcome::Reply(ResolveReservationReplyV1::Ordered { order_id })
            }
            Ok(None) => {
                tracing::info!(%reservation, "reservation resolved: refused");
                Outcome::Reply(ResolveReservationReplyV1::Refused)
            }
            Err(e) if common::db::is_transient(&e) => Outcome::Retry(
                anyhow::Error::new(e).context("database unavailable while resolving a reservation"),
            ),
            Err(e) => {
                tracing::error!(error = %e, "resolving a reservation failed");
                Outcome::Reply(ResolveReservationReplyV1::Problem(Problem::internal()))
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

fn reservation_expired() -> Problem {
    Problem::of_type(
        StatusCode::CONFLICT,
        RESERVATION_EXPIRED,
        "The stock set aside for this buy was released before the order could be stored.",
    )
}

fn reservation_in_use() -> Problem {
    Problem::of_type(
        StatusCode::CONFLICT,
        RESERVATION_IN_USE,
        "The stock set aside for this buy belongs to another order.",
    )
}
