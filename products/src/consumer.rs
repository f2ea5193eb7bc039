//! The order events consumer: `order.created.v1` commits the reservation its order was stored
//! with, `order.cancelled.v1` returns its stock. Each event is applied once, by its
//! `message_id` ([`stock::apply`]).

use common::{
    amqp::{Handled, Received, Subscription},
    messages::{Event, OrderCancelledV1, OrderCreatedV1},
};
use sea_orm::DatabaseConnection;

use crate::stock::{self, OrderNews};

/// How many events are handled at once.
const PREFETCH: u16 = 16;

/// products' subscription: its own queue `queue` bound to `exchange` for both events.
pub fn subscription(exchange: String, queue: String) -> Subscription {
    Subscription {
        exchange,
        queue,
        routing_keys: vec![OrderCreatedV1::ROUTING_KEY, OrderCancelledV1::ROUTING_KEY],
        prefetch: PREFETCH,
    }
}

/// Handles one event: applied (or a duplicate) is done; a body that does not parse is rejected;
/// a database that does not answer is a retry, so an outage loses nothing.
pub async fn handle(db: &DatabaseConnection, event: Received) -> Handled {
    let news = match read(&event) {
        Ok(Some(news)) => news,
        // An order made without a reservation (by a products older than stock): nothing to do.
        Ok(None) => return Handled::Done,
        Err(why) => return Handled::Reject(why),
    };
    match stock::apply(db, &event.message_id, news).await {
        Ok(changed) => {
            tracing::info!(?news, changed, "order event applied");
            Handled::Done
        }
        Err(e) => Handled::Retry(anyhow::Error::new(e).context("applying an order event")),
    }
}

/// What `event` says about a reservation, if anything.
fn read(event: &Received) -> Result<Option<OrderNews>, String> {
    let unreadable = |e: serde_json::Error| format!("unreadable {}: {e}", event.routing_key);
    match event.routing_key.as_str() {
        OrderCreatedV1::ROUTING_KEY => {
            let created: OrderCreatedV1 =
                serde_json::from_slice(&event.body).map_err(unreadable)?;
            Ok(created
                .reservation_id
                .map(|reservation| OrderNews::Created(reservation, created.order_id)))
        }
        OrderCancelledV1::ROUTING_KEY => {
            let cancelled: OrderCancelledV1 =
                serde_json::from_slice(&event.body).map_err(unreadable)?;
            Ok(cancelled.reservation_id.map(OrderNews::Cancelled))
        }
        other => Err(format!("an event products does not subscribe to: {other}")),
    }
}
