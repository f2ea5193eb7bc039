//! The outbox relay through faults: a broker it cannot reach, and a relay that died between
//! claiming events and marking them sent.

mod support;

use std::time::Duration;

use common::{
    amqp::Broker,
    ids::{ProductId, UserId},
    messages::{CreateOrderReplyV1, Event, OrderCreatedV1},
    testing::{FaultRelay, RelayMode, amqp_url, delete_exchange_on_drop, unique_queue, wait_until},
};
use orders::{
    config::OutboxConfig,
    consumer::OrderHandler,
    entity::outbox as row,
    outbox::{self, Wake},
    relay::Relay,
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use support::{EventWatcher, PATIENCE, handler_waking, migrated_database, request};
use tokio_util::sync::CancellationToken;

const OUTBOX: OutboxConfig = OutboxConfig {
    poll: Duration::from_millis(200),
    lease: Duration::from_secs(2),
    retention: Duration::from_secs(3600),
};

/// Stores a new order for a fresh user and returns its id.
async fn place(orders: &OrderHandler) -> common::ids::OrderId {
    let incoming = common::amqp::Incoming {
        request: request(UserId::new(), &[(ProductId::new(), 100, 1)], None),
        message_id: Some(uuid::Uuid::new_v4().to_string()),
        request_id: Some("relay-test".to_owned()),
        redelivered: false,
    };
    match orders.create_order(incoming).await {
        common::amqp::Outcome::Reply(CreateOrderReplyV1::Order(order)) => order.id,
        other => panic!("the order was not stored: {other:?}"),
    }
}

async fn unsent(db: &DatabaseConnection) -> usize {
    row::Entity::find()
        .filter(row::Column::SentAt.is_null())
        .all(db)
        .await
        .expect("read the outbox")
        .len()
}

/// A relay on `db` publishing to `exchange` through `url`, until `shutdown`.
fn start_relay(
    db: &DatabaseConnection,
    url: String,
    exchange: &str,
    wake: &Wake,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let broker = Broker::start(url, shutdown.clone());
    let relay = Relay::new(
        db.clone(),
        broker,
        exchange.to_owned(),
        OUTBOX,
        wake.clone(),
        &common::metrics::registry(),
    )
    .expect("the relay's metrics register");
    tokio::spawn(relay.run(shutdown.clone()))
}

/// Waits until every event is marked sent, then stops the relay and checks it stopped cleanly.
async fn all_sent_then_stop(
    db: &DatabaseConnection,
    shutdown: CancellationToken,
    relay: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    wait_until(PATIENCE, "every event marked sent", || async {
        (unsent(db).await == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, relay)
        .await
        .expect("the relay stops")
        .unwrap()
        .expect("the relay stops cleanly");
}

#[tokio::test]
async fn events_written_while_the_broker_is_unreachable_are_published_once_it_is_back() {
    common::telemetry::init("orders-test");
    let (_database, db) = migrated_database().await;
    let exchange = unique_queue("orders-relay-outage");
    let mut watcher = EventWatcher::bind(&exchange).await;
    let proxy = FaultRelay::in_front_of(&amqp_url())
        .await
        .expect("start the proxy");
    let wake = Wake::default();
    let orders = handler_waking(&db, wake.clone());
    let shutdown = CancellationToken::new();
    let relay = start_relay(&db, proxy.url_for(&amqp_url()), &exchange, &wake, &shutdown);
    let before = place(&orders).await;
    watcher
        .next_about(OrderCreatedV1::ROUTING_KEY, before)
        .await;
    // Seen on the wire is not yet marked sent: the mark follows the confirm.
    wait_until(PATIENCE, "the first event marked sent", || async {
        (unsent(&db).await == 0).then_some(())
    })
    .await;

    proxy.set(RelayMode::Cut);
    let refused = proxy.refused();
    let mut during = Vec::new();
    for _ in 0..5 {
        during.push(place(&orders).await);
    }
    wait_until(PATIENCE, "the relay to try the broker again", || async {
        (proxy.refused() >= refused + 2).then_some(())
    })
    .await;
    assert_eq!(
        unsent(&db).await,
        5,
        "nothing is lost or marked while the broker is away"
    );
    proxy.set(RelayMode::Pass);

    for order in &during {
        watcher
            .next_about(OrderCreatedV1::ROUTING_KEY, *order)
            .await;
    }
    all_sent_then_stop(&db, shutdown, relay).await;
    watcher.close().await;
    delete_exchange_on_drop(&exchange);
}

#[tokio::test]
async fn an_event_claimed_by_a_relay_that_died_before_marking_it_is_published_after_the_lease() {
    let (_database, db) = migrated_database().await;
    let exchange = unique_queue("orders-relay-lease");
    let mut watcher = EventWatcher::bind(&exchange).await;
    let wake = Wake::default();
    let order = place(&handler_waking(&db, wake.clone())).await;
    // The dead relay: it claimed the event (and may have published it), then never marked it.
    let claimed = outbox::claim(&db, 10, OUTBOX.lease).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    let lease_end = claimed[0].claimed_until.expect("a claimed row has a lease");

    let shutdown = CancellationToken::new();
    let relay = start_relay(&db, amqp_url(), &exchange, &wake, &shutdown);
    wake.notify();
    let event = watcher.next_about(OrderCreatedV1::ROUTING_KEY, order).await;

    assert!(
        event.at >= lease_end,
        "published at {} before the lease ended at {lease_end}",
        event.at
    );
    assert_eq!(event.message_id, claimed[0].message_id.to_string());
    all_sent_then_stop(&db, shutdown, relay).await;
    watcher.close().await;
    delete_exchange_on_drop(&exchange);
}
