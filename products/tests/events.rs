//! Order events reaching products: `order.created.v1` commits a reservation, `order.cancelled.v1`
//! returns its stock, each once however often it arrives. Published by hand to the app's events
//! exchange on the real broker, as orders' relay would.

mod support;

use std::time::Duration;

use common::{
    amqp::{CONTENT_TYPE_JSON, declare_events_exchange},
    ids::{OrderId, ReservationId, UserId},
    messages::{CreateOrderReplyV1, Event, EventLineV1, OrderCancelledV1, OrderCreatedV1},
    testing::{broker_connection, queue_counts, wait_until},
};
use lapin::{BasicProperties, Channel, options::BasicPublishOptions};
use products::routes::ProductBody;
use reqwest::StatusCode;
use serde_json::json;
use support::{
    Options, TestApp, spawn_app, spawn_app_with, start_fake_orders, start_honest_orders,
};

/// A channel on which the app's events exchange exists, once the app consumes its events queue.
async fn events_channel(app: &TestApp) -> (lapin::Connection, Channel) {
    let connection = broker_connection().await;
    let channel = connection.create_channel().await.expect("a channel");
    declare_events_exchange(&channel, &app.events_exchange())
        .await
        .expect("declare the events exchange");
    wait_until(
        Duration::from_secs(15),
        "products consuming its events",
        || {
            let (connection, queue) = (&connection, app.events_queue());
            async move {
                // A channel per look: one that found no queue has been closed by the broker.
                let look = connection.create_channel().await.ok()?;
                let (_, consumers) = queue_counts(&look, &queue).await.ok()?;
                (consumers > 0).then_some(())
            }
        },
    )
    .await;
    (connection, channel)
}

async fn publish<E: Event>(app: &TestApp, channel: &Channel, event: &E, message_id: Option<&str>) {
    let mut properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE_JSON.into())
        .with_type(E::ROUTING_KEY.into())
        .with_delivery_mode(2);
    if let Some(id) = message_id {
        properties = properties.with_message_id(id.into());
    }
    channel
        .basic_publish(
            app.events_exchange().as_str().into(),
            E::ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(event).expect("an event serializes"),
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("sent");
}

fn cancelled(reservation: ReservationId, product: common::ids::ProductId) -> OrderCancelledV1 {
    OrderCancelledV1 {
        order_id: OrderId::new(),
        user_id: UserId::new(),
        reservation_id: Some(reservation),
        items: vec![EventLineV1 {
            product_id: product,
            quantity: 2,
        }],
        cancelled_at: chrono::Utc::now(),
    }
}

/// Two mugs of five bought with an honest stand-in for orders, and the reservation they took;
/// with the channel events are published on (and its connection, to keep open).
async fn two_mugs_bought(
    app: &TestApp,
) -> (lapin::Connection, Channel, ProductBody, ReservationId) {
    let mut orders = start_honest_orders(app).await;
    let (connection, channel) = events_channel(app).await;
    let mug = app.create_stocked_product("Mug", 900, 5).await;
    let response = app
        .buy(&json!({"items": [{"product_id": mug.id, "quantity": 2}]}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let reservation = orders
        .received
        .recv()
        .await
        .expect("the buy reached orders")
        .request
        .reservation_id
        .expect("a reservation");
    assert_eq!(app.stock_of(mug.id).await, Some(3));
    (connection, channel, mug, reservation)
}

/// How many event ids products has recorded as handled.
async fn processed_events(app: &TestApp) -> i64 {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let row = app
        .db()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM processed_events",
        ))
        .await
        .expect("count the handled events")
        .expect("a row");
    row.try_get("", "n").expect("a count")
}

async fn wait_for(
    app: &TestApp,
    what: &'static str,
    check: impl Fn(Vec<String>, Option<i32>) -> bool,
    product: common::ids::ProductId,
) {
    wait_until(Duration::from_secs(10), what, || {
        let check = &check;
        async move {
            check(app.reservation_states().await, app.stock_of(product).await).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn an_order_created_event_commits_the_reservation_a_timed_out_buy_left_pending() {
    let app = spawn_app_with(Options {
        rpc_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let mut orders = start_fake_orders(&app, |request| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        CreateOrderReplyV1::Order(support::order_for(&request))
    })
    .await;
    let (_connection, channel) = events_channel(&app).await;
    let mug = app.create_stocked_product("Mug", 900, 5).await;

    let response = app
        .buy(&json!({"items": [{"product_id": mug.id, "quantity": 2}]}))
        .await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let request = orders
        .received
        .recv()
        .await
        .expect("the buy reached orders")
        .request;
    let created = OrderCreatedV1 {
        order_id: OrderId::new(),
        user_id: request.user_id,
        reservation_id: request.reservation_id,
        items: vec![EventLineV1 {
            product_id: mug.id,
            quantity: 2,
        }],
        total_cents: 1800,
        created_at: chrono::Utc::now(),
    };
    publish(&app, &channel, &created, Some("created-1")).await;

    wait_for(
        &app,
        "the reservation committed",
        |states, _| states == ["committed"],
        mug.id,
    )
    .await;
    assert_eq!(app.stock_of(mug.id).await, Some(3));
}

#[tokio::test]
async fn a_cancelled_order_gives_its_stock_back_once_however_often_the_event_arrives() {
    let app = spawn_app().await;
    let (_connection, channel, mug, reservation) = two_mugs_bought(&app).await;
    let event = cancelled(reservation, mug.id);
    // The same event redelivered, and republished by a relay under another id.
    publish(&app, &channel, &event, Some("cancelled-1")).await;
    publish(&app, &channel, &event, Some("cancelled-1")).await;
    publish(&app, &channel, &event, Some("cancelled-1-again")).await;

    wait_for(
        &app,
        "the stock back",
        |states, stock| states == ["returned"] && stock == Some(5),
        mug.id,
    )
    .await;
    // Both ids recorded: the republished copy was handled too (the redelivered one can only
    // find its id recorded), and the stock did not move again.
    wait_until(
        Duration::from_secs(10),
        "both event ids handled",
        || async { (processed_events(&app).await == 2).then_some(()) },
    )
    .await;
    assert_eq!(app.stock_of(mug.id).await, Some(5));
}

#[tokio::test]
async fn an_event_without_a_message_id_is_dead_lettered_and_changes_nothing() {
    let app = spawn_app().await;
    let (_connection, channel, mug, reservation) = two_mugs_bought(&app).await;

    publish(&app, &channel, &cancelled(reservation, mug.id), None).await;

    let dlq = common::amqp::dead_letter_queue(&app.events_queue());
    wait_until(
        Duration::from_secs(10),
        "the event in the dead-letter queue",
        || {
            let (channel, dlq) = (&channel, &dlq);
            async move { (queue_counts(channel, dlq).await.ok()?.0 == 1).then_some(()) }
        },
    )
    .await;
    assert_eq!(app.stock_of(mug.id).await, Some(3));
    assert_eq!(app.reservation_states().await, vec!["committed"]);
}
