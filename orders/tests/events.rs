//! Order events through the outbox, as a consumer of the events exchange sees them, and
//! cancelling an order over HTTP.

mod support;

use common::{
    ids::{OrderId, ProductId, ReservationId, UserId},
    messages::{CreateOrderReplyV1, Event, Order, OrderCancelledV1, OrderCreatedV1},
    testing::{assert_not_stored, metrics},
};
use orders::entity::outbox;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use support::{EventWatcher, Requester, TestApp, request};

/// Buys `lines` for `user` through the order queue, with `reservation`, and returns the order.
async fn buy(requester: &mut Requester, user: UserId, reservation: Option<ReservationId>) -> Order {
    let mut buy = request(
        user,
        &[(ProductId::new(), 450, 2), (ProductId::new(), 99, 1)],
        None,
    );
    buy.reservation_id = reservation;
    let message_id = uuid::Uuid::new_v4().to_string();
    requester.publish(&buy, &message_id, &message_id).await;
    match requester.next_reply().await.1 {
        CreateOrderReplyV1::Order(order) => order,
        CreateOrderReplyV1::Problem(p) => panic!("expected an order, got {p}"),
    }
}

async fn outbox_rows(app: &TestApp, routing_key: &str) -> u64 {
    outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq(routing_key))
        .count(&app.db)
        .await
        .expect("count outbox rows")
}

#[tokio::test]
async fn an_order_stored_with_a_reservation_is_announced_once_with_the_message_id_of_its_row() {
    let app = TestApp::spawn().await;
    let mut watcher = EventWatcher::bind(&app.amqp.events_exchange).await;
    let mut requester = Requester::connect(&app.queue).await;
    let (user, reservation) = (UserId::new(), ReservationId::new());

    let order = buy(&mut requester, user, Some(reservation)).await;
    let event = watcher
        .next_about(OrderCreatedV1::ROUTING_KEY, order.id)
        .await;

    let created: OrderCreatedV1 = serde_json::from_value(event.body.clone()).unwrap();
    assert_eq!(created.order_id, order.id);
    assert_eq!(created.user_id, user);
    assert_eq!(created.reservation_id, Some(reservation));
    assert_eq!(created.total_cents, order.total_cents);
    assert_eq!(created.created_at, order.created_at);
    let lines: Vec<_> = created
        .items
        .iter()
        .map(|l| (l.product_id, l.quantity))
        .collect();
    let bought: Vec<_> = order
        .items
        .iter()
        .map(|i| (i.product_id, i.quantity))
        .collect();
    assert_eq!(lines, bought);
    let row = outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq(OrderCreatedV1::ROUTING_KEY))
        .one(&app.db)
        .await
        .unwrap()
        .expect("the event's outbox row");
    assert_eq!(event.message_id, row.message_id.to_string());
    let properties = &event.properties;
    assert_eq!(properties.delivery_mode(), &Some(2));
    assert_eq!(
        properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    assert_eq!(
        properties.kind().as_ref().map(|k| k.as_str()),
        Some(OrderCreatedV1::ROUTING_KEY)
    );
    assert!(properties.timestamp().is_some());
    // A later event, published after it by the same relay: had the first gone out twice, the
    // copy would have come before this one.
    let later = buy(&mut requester, user, None).await;
    let next = watcher
        .next_about(OrderCreatedV1::ROUTING_KEY, later.id)
        .await;
    assert_eq!(next.body.get("reservation_id"), None);
    assert_eq!(watcher.deliveries_seen, 2, "no event was delivered twice");
    assert_eq!(outbox_rows(&app, OrderCreatedV1::ROUTING_KEY).await, 2);
    common::testing::wait_until(support::PATIENCE, "both events marked sent", || async {
        let text = app.metrics().await;
        let published = metrics::value(&text, "shop_outbox_published_total", &[]);
        let pending = metrics::value(&text, "shop_outbox_pending", &[]);
        (published == Some(2.0) && pending == Some(0.0)).then_some(())
    })
    .await;
    watcher.close().await;
    requester.close().await;
}

#[tokio::test]
async fn an_owner_cancels_an_order_once_and_a_repeated_cancel_answers_the_same_order() {
    let app = TestApp::spawn().await;
    let mut watcher = EventWatcher::bind(&app.amqp.events_exchange).await;
    let mut requester = Requester::connect(&app.queue).await;
    let (user, reservation) = (UserId::new(), ReservationId::new());
    let order = buy(&mut requester, user, Some(reservation)).await;
    let path = format!("/orders/{}/cancel", order.id);

    let first = app.post_as(&path, Some(user)).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_not_stored(&first);
    let cancelled: Order = first.json().await.unwrap();
    let event = watcher
        .next_about(OrderCancelledV1::ROUTING_KEY, order.id)
        .await;
    let again = app.post_as(&path, Some(user)).await;

    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(
        (cancelled.id, &cancelled.items, cancelled.total_cents),
        (order.id, &order.items, order.total_cents)
    );
    let announced: OrderCancelledV1 = serde_json::from_value(event.body).unwrap();
    assert_eq!(announced.reservation_id, Some(reservation));
    assert_eq!(announced.user_id, user);
    assert_eq!(announced.items.len(), 2);
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Order>().await.unwrap(), cancelled);
    let shown: Order = app
        .get_as(&format!("/orders/{}", order.id), Some(user))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown, cancelled);
    // Published after the repeated cancel: a second cancellation event would come before it.
    let later = buy(&mut requester, user, None).await;
    watcher
        .next_about(OrderCreatedV1::ROUTING_KEY, later.id)
        .await;
    assert_eq!(watcher.deliveries_seen, 3, "created, cancelled, created");
    assert_eq!(outbox_rows(&app, OrderCancelledV1::ROUTING_KEY).await, 1);
    watcher.close().await;
    requester.close().await;
}

#[tokio::test]
async fn cancelling_someone_elses_order_is_not_found_like_a_missing_one_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let bobs = buy(&mut requester, bob, None).await;

    let theirs = app
        .post_as(&format!("/orders/{}/cancel", bobs.id), Some(alice))
        .await;
    let missing = app
        .post_as(&format!("/orders/{}/cancel", OrderId::new()), Some(alice))
        .await;
    let anonymous = app
        .post_as(&format!("/orders/{}/cancel", bobs.id), None)
        .await;

    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let theirs: serde_json::Value = theirs.json().await.unwrap();
    let missing: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(theirs, missing);
    let still: Order = app
        .get_as(&format!("/orders/{}", bobs.id), Some(bob))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still.status, "created");
    assert_eq!(outbox_rows(&app, OrderCancelledV1::ROUTING_KEY).await, 0);
    requester.close().await;
}

#[tokio::test]
async fn orders_declares_the_events_exchange_before_it_has_anything_to_publish() {
    let app = TestApp::spawn().await;
    let connection = common::testing::broker_connection().await;

    common::testing::wait_until(support::PATIENCE, "the events exchange", || async {
        // A failed passive declare closes its channel, so each look takes a new one.
        let channel = connection.create_channel().await.ok()?;
        channel
            .exchange_declare(
                app.amqp.events_exchange.as_str().into(),
                lapin::ExchangeKind::Topic,
                lapin::options::ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .ok()
    })
    .await;
    let _ = connection.close(200, "done".into()).await;
}
