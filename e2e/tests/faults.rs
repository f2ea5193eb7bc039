//! What a buyer and an operator see when orders is down, when garbage reaches the order queue,
//! and when the broker delivers a request twice.

mod support;

use std::time::{Duration, Instant};

use common::{
    amqp::{ReplyMode, RpcRequest, declare_reply_queue},
    messages::{CreateOrderReplyV1, CreateOrderV1, OrderLineV1},
    testing::{broker_connection, consume_without_acks, next_reply, publish, wait_until},
};
use lapin::{BasicProperties, Channel, options::ConfirmSelectOptions};
use reqwest::StatusCode;
use serde_json::Value;
use support::{Options, System, User, id_of, items, lines_of, message_count};
use uuid::Uuid;

/// A channel with publisher confirms, and a server-named queue on it for replies.
async fn channel_with_reply_queue(broker: &lapin::Connection) -> (Channel, String) {
    let channel = broker.create_channel().await.expect("open a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("enable publisher confirms");
    let queue = declare_reply_queue(&channel)
        .await
        .expect("declare a reply queue");
    (channel, queue.to_string())
}

/// Properties of a well-formed request but for what the caller changes.
fn request_properties(kind: &str, message_id: &str, reply_to: &str) -> BasicProperties {
    common::testing::request_properties(kind, &Uuid::new_v4().to_string(), reply_to)
        .with_message_id(message_id.into())
}

/// A request for `quantity` of `product` by `user`, priced as products would price it.
fn order_request(user: &User, product: &Value, quantity: i32) -> CreateOrderV1 {
    CreateOrderV1 {
        user_id: user.id.parse().expect("a user id"),
        email: user.email.clone(),
        lines: vec![OrderLineV1 {
            product_id: id_of(product).parse().expect("a product id"),
            name: product["name"].as_str().expect("a name").to_owned(),
            unit_price_cents: product["price_cents"].as_i64().expect("a price"),
            quantity,
        }],
        idempotency_key: None,
        reservation_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buy_that_gets_no_reply_in_time_answers_504_and_never_becomes_an_order() {
    let rpc_timeout = Duration::from_millis(1500);
    let mut system =
        System::start(Options::new(ReplyMode::PerRequest).with_rpc_timeout(rpc_timeout)).await;
    let (lamp, alice) = system.lamp_and_alice().await;
    let lamp = id_of(&lamp);

    system.stop_orders().await;
    let asked = Instant::now();
    system
        .buy(&alice.token, &items(&[(&lamp, 7)]), None)
        .await
        .expect_problem(StatusCode::GATEWAY_TIMEOUT, "buy while orders is down");
    let waited = asked.elapsed();
    assert!(
        waited < rpc_timeout + Duration::from_secs(1),
        "a buy nobody answers gives up after the RPC timeout, not {waited:?}"
    );

    system.start_orders().await;
    // The unanswered request is older than any buy sent now, so by the time a new buy has
    // been answered orders has been offered the old one (unless the broker dropped it first).
    let fresh = wait_until(
        Duration::from_secs(20),
        "a buy to succeed once orders is back",
        || async {
            let reply = system.buy(&alice.token, &items(&[(&lamp, 1)]), None).await;
            (reply.status == StatusCode::CREATED).then_some(reply.body)
        },
    )
    .await;

    let orders = system.orders(&alice.token).await;
    assert!(
        orders.iter().all(|o| lines_of(o) != [(lamp.clone(), 7)]),
        "the buy that answered 504 became an order: {orders:?}"
    );
    assert!(orders.iter().any(|o| id_of(o) == id_of(&fresh)));
    system
        .buy(&alice.token, &items(&[(&lamp, 2)]), None)
        .await
        .expect(StatusCode::CREATED, "buy again");

    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreadable_messages_on_the_order_queue_are_dead_lettered_and_buying_goes_on() {
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let (lamp, alice) = system.lamp_and_alice().await;
    let broker = broker_connection().await;
    let (channel, reply_to) = channel_with_reply_queue(&broker).await;

    let message_id = Uuid::new_v4().to_string();
    publish(
        &channel,
        &system.order_queue,
        b"this is not JSON",
        request_properties(CreateOrderV1::MESSAGE_TYPE, &message_id, &reply_to),
    )
    .await;
    // A body orders could read, under a type it does not serve: it must not be taken for a buy.
    let body = serde_json::to_vec(&order_request(&alice, &lamp, 4)).expect("serialize");
    let message_id = Uuid::new_v4().to_string();
    publish(
        &channel,
        &system.order_queue,
        &body,
        request_properties("order.cancel.v1", &message_id, &reply_to),
    )
    .await;

    let dlq = system.dlq();
    wait_until(
        Duration::from_secs(10),
        "both messages to reach the dead-letter queue",
        || async { (message_count(&broker, &dlq).await == Some(2)).then_some(()) },
    )
    .await;
    assert_eq!(
        system.orders(&alice.token).await,
        Vec::<Value>::new(),
        "neither message became an order"
    );
    system
        .buy(&alice.token, &items(&[(&id_of(&lamp), 1)]), None)
        .await
        .expect(StatusCode::CREATED, "buy after the bad messages");

    let _ = broker.close(200, "done".into()).await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_request_delivered_twice_makes_one_order() {
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let (lamp, alice) = system.lamp_and_alice().await;
    let broker = broker_connection().await;
    let (channel, reply_to) = channel_with_reply_queue(&broker).await;
    let mut replies = consume_without_acks(&channel, &reply_to).await;

    let body = serde_json::to_vec(&order_request(&alice, &lamp, 3)).expect("serialize");
    let message_id = Uuid::new_v4().to_string();
    let mut correlation_ids = Vec::new();
    for _ in 0..2 {
        let properties = request_properties(CreateOrderV1::MESSAGE_TYPE, &message_id, &reply_to);
        correlation_ids.push(
            properties
                .correlation_id()
                .as_ref()
                .expect("a correlation id")
                .to_string(),
        );
        publish(&channel, &system.order_queue, &body, properties).await;
    }

    let mut answered = Vec::new();
    for _ in 0..2 {
        let (correlation_id, reply): (String, CreateOrderReplyV1) =
            next_reply(&mut replies, Duration::from_secs(20)).await;
        let CreateOrderReplyV1::Order(order) = reply else {
            panic!("a valid request is answered with an order, not {reply:?}");
        };
        answered.push((correlation_id, order.id.to_string()));
    }
    answered.sort();
    correlation_ids.sort();
    let (answered_ids, order_ids): (Vec<String>, Vec<String>) = answered.into_iter().unzip();
    assert_eq!(
        answered_ids, correlation_ids,
        "each delivery is answered under its own correlation id"
    );
    assert_eq!(order_ids[0], order_ids[1], "both deliveries name one order");

    let listed: Vec<String> = system
        .orders(&alice.token)
        .await
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(listed, [order_ids[0].as_str()], "alice has one order");

    let _ = broker.close(200, "done".into()).await;
    system.stop().await;
}
