//! A database outage while buys arrive: the consumer holds each buy and retries it in process,
//! so it is stored once the database is back, and never dead-lettered.

mod support;

use std::time::Duration;

use common::{
    amqp::Broker,
    ids::{ProductId, UserId},
    messages::CreateOrderReplyV1,
    testing::{
        FaultRelay, RelayMode, amqp_url, broker_connection, delete_queue_on_drop, queue_counts,
        require_broker, unique_queue, wait_until,
    },
};
use orders::entity::order;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use support::{PATIENCE, Requester, migrated_database, request};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_buy_sent_while_the_database_is_down_is_stored_once_it_returns_and_never_dead_lettered() {
    common::telemetry::init("orders-test");
    require_broker().await;
    let (database, direct) = migrated_database().await;
    let mut config = database.config();
    let relay = FaultRelay::in_front_of(&config.url)
        .await
        .expect("start the relay");
    config.url = relay.url_for(&config.url);
    // Each attempt during the outage fails after this long rather than the default.
    config.acquire_timeout = Duration::from_millis(500);
    let db = common::db::connect(&config)
        .await
        .expect("connect via the relay");
    let queue = unique_queue("orders-outage");
    delete_queue_on_drop(&queue);
    let mut requester = Requester::connect(&queue).await;
    let shutdown = CancellationToken::new();
    let broker = Broker::start(amqp_url(), shutdown.clone());
    let consuming = orders::consumer::Consuming {
        broker,
        prefetch: 4,
        metrics: None,
        shutdown: shutdown.clone(),
    };
    let consumer = tokio::spawn(orders::consumer::run(
        consuming,
        queue.clone(),
        support::handler(&db),
    ));
    let user = UserId::new();

    relay.set(RelayMode::Cut);
    requester
        .publish(
            &request(user, &[(ProductId::new(), 700, 3)], Some("key-1")),
            "m-1",
            "c-1",
        )
        .await;
    let inspector = broker_connection().await;
    let channel = inspector.create_channel().await.unwrap();
    wait_until(PATIENCE, "the consumer to take the buy", || async {
        let (ready, _) = queue_counts(&channel, &queue).await.unwrap();
        (ready == 0).then_some(())
    })
    .await;
    let before = relay.refused();
    wait_until(PATIENCE, "several attempts on the database", || async {
        (relay.refused() >= before + 3).then_some(())
    })
    .await;
    relay.set(RelayMode::Pass);

    let (correlation_id, reply) = requester.next_reply().await;
    assert_eq!(correlation_id, "c-1");
    let CreateOrderReplyV1::Order(replied) = reply else {
        panic!("expected an order, got {reply:?}");
    };
    let stored = order::Entity::find()
        .filter(order::Column::UserId.eq(user))
        .all(&direct)
        .await
        .expect("list orders");
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].id, stored[0].total_cents), (replied.id, 2100));
    assert!(requester.take_dead_letter().await.is_none());
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, consumer)
        .await
        .expect("the consumer stops")
        .unwrap()
        .expect("the consumer stops cleanly");
    let _ = inspector.close(200, "done".into()).await;
    requester.close().await;
}
