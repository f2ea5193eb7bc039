//! `order.create.v1` over a real RabbitMQ: requests in, replies out, poison messages aside.

mod support;

use common::{
    ids::{ProductId, UserId},
    messages::{CreateOrderReplyV1, Order},
    testing::wait_until,
};
use lapin::types::{AMQPValue, FieldTable};
use orders::entity::order;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use support::{PATIENCE, Requester, TestApp, request};

/// `request` with one change made by `spoil`.
fn spoiled(
    user: UserId,
    spoil: impl FnOnce(&mut common::messages::CreateOrderV1),
) -> common::messages::CreateOrderV1 {
    let mut buy = request(user, &[(ProductId::new(), 100, 1)], None);
    spoil(&mut buy);
    buy
}

fn order_of(reply: CreateOrderReplyV1) -> Order {
    match reply {
        CreateOrderReplyV1::Order(order) => order,
        CreateOrderReplyV1::Problem(p) => panic!("expected an order, got {p}"),
    }
}

async fn orders_of(app: &TestApp, user: UserId) -> u64 {
    order::Entity::find()
        .filter(order::Column::UserId.eq(user))
        .count(&app.db)
        .await
        .expect("count orders")
}

async fn finish(app: TestApp, requester: Requester) {
    app.stop().await.expect("the service stops cleanly");
    requester.close().await;
}

#[tokio::test]
async fn a_buy_request_is_answered_with_the_stored_order() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let user = UserId::new();
    let product = ProductId::new();

    requester
        .publish(&request(user, &[(product, 450, 2)], None), "m-1", "c-1")
        .await;
    let (correlation_id, reply) = requester.next_reply().await;

    assert_eq!(correlation_id, "c-1");
    let order = order_of(reply);
    assert_eq!((order.user_id, order.total_cents), (user, 900));
    assert_eq!(order.items[0].product_id, product);
    let shown = app
        .get_as(&format!("/orders/{}", order.id), Some(user))
        .await
        .json::<Order>()
        .await
        .unwrap();
    assert_eq!(shown, order);
    finish(app, requester).await;
}

#[tokio::test]
async fn the_same_message_published_twice_makes_one_order_and_two_identical_replies() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let user = UserId::new();
    let buy = request(user, &[(ProductId::new(), 100, 1)], None);

    requester.publish(&buy, "same-message", "c-1").await;
    requester.publish(&buy, "same-message", "c-2").await;
    let mut replies = vec![requester.next_reply().await, requester.next_reply().await];
    replies.sort_by(|a, b| a.0.cmp(&b.0));

    let correlation_ids: Vec<_> = replies.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(correlation_ids, ["c-1", "c-2"]);
    let orders: Vec<_> = replies.into_iter().map(|(_, r)| order_of(r)).collect();
    assert_eq!(orders[0].id, orders[1].id);
    assert_eq!(orders_of(&app, user).await, 1);
    finish(app, requester).await;
}

#[tokio::test]
async fn a_reused_idempotency_key_with_other_items_is_answered_with_a_422_problem() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let user = UserId::new();
    let product = ProductId::new();

    requester
        .publish(
            &request(user, &[(product, 100, 1)], Some("key")),
            "m-1",
            "c-1",
        )
        .await;
    order_of(requester.next_reply().await.1);
    requester
        .publish(
            &request(user, &[(product, 100, 5)], Some("key")),
            "m-2",
            "c-2",
        )
        .await;
    let (correlation_id, reply) = requester.next_reply().await;

    assert_eq!(correlation_id, "c-2");
    match reply {
        CreateOrderReplyV1::Problem(p) => assert_eq!(p.status, 422),
        CreateOrderReplyV1::Order(o) => panic!("a second order {} was made", o.id),
    }
    assert_eq!(orders_of(&app, user).await, 1);
    finish(app, requester).await;
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_and_the_next_request_is_still_served() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let user = UserId::new();

    requester
        .publish_raw(
            b"this is not json",
            requester.properties("bad-1", "c-bad-1"),
        )
        .await;
    let wrong_shape = serde_json::json!({ "user_id": user, "lines": "many" });
    requester
        .publish_raw(
            wrong_shape.to_string().as_bytes(),
            requester.properties("bad-2", "c-bad-2"),
        )
        .await;
    requester
        .publish(
            &request(user, &[(ProductId::new(), 1, 1)], None),
            "good",
            "c-good",
        )
        .await;

    let (correlation_id, reply) = requester.next_reply().await;
    assert_eq!(correlation_id, "c-good");
    order_of(reply);
    let mut dead = Vec::new();
    while dead.len() < 2 {
        let letter = wait_until(PATIENCE, "a message in the dead-letter queue", || {
            requester.take_dead_letter()
        })
        .await;
        dead.push(letter);
    }
    assert!(dead.contains(&b"this is not json".to_vec()));
    assert!(dead.contains(&wrong_shape.to_string().into_bytes()));
    assert_eq!(orders_of(&app, user).await, 1);
    finish(app, requester).await;
}

#[tokio::test]
async fn a_request_without_message_id_or_key_is_answered_with_a_400_problem() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let user = UserId::new();
    let buy = request(user, &[(ProductId::new(), 1, 1)], None);

    requester
        .publish_raw(
            &serde_json::to_vec(&buy).unwrap(),
            requester.properties_without_message_id("c-anonymous"),
        )
        .await;

    let (correlation_id, reply) = requester.next_reply().await;
    assert_eq!(correlation_id, "c-anonymous");
    match reply {
        CreateOrderReplyV1::Problem(p) => assert_eq!(p.status, 400),
        CreateOrderReplyV1::Order(o) => panic!("order {} was made without a dedup key", o.id),
    }
    assert_eq!(orders_of(&app, user).await, 0);
    finish(app, requester).await;
}

#[tokio::test]
async fn a_message_of_another_type_is_dead_lettered() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let user = UserId::new();
    let buy = request(user, &[(ProductId::new(), 1, 1)], None);
    let body = serde_json::to_vec(&buy).unwrap();

    requester
        .publish_raw(
            &body,
            requester
                .properties("typed-wrong", "c-1")
                .with_type("order.cancel.v1".into()),
        )
        .await;
    requester.publish(&buy, "typed-right", "c-2").await;

    let (correlation_id, _) = requester.next_reply().await;
    assert_eq!(correlation_id, "c-2");
    let letter = wait_until(
        PATIENCE,
        "the mistyped message in the dead-letter queue",
        || requester.take_dead_letter(),
    )
    .await;
    assert_eq!(letter, body);
    assert_eq!(orders_of(&app, user).await, 1);
    finish(app, requester).await;
}

#[tokio::test]
async fn a_request_whose_deadline_has_passed_is_not_stored() {
    // One delivery at a time, so the late request is settled before the next is handed out.
    let app = TestApp::spawn_with_prefetch(1).await;
    let mut requester = Requester::connect(&app.queue).await;
    let (late_user, user) = (UserId::new(), UserId::new());
    let late = request(late_user, &[(ProductId::new(), 1, 1)], None);

    requester
        .publish_raw(
            &serde_json::to_vec(&late).unwrap(),
            Requester::with_deadline_in(requester.properties("late", "c-late"), -1_000),
        )
        .await;
    requester
        .publish(
            &request(user, &[(ProductId::new(), 1, 1)], None),
            "on-time",
            "c-on-time",
        )
        .await;

    let (correlation_id, reply) = requester.next_reply().await;
    assert_eq!(correlation_id, "c-on-time");
    order_of(reply);
    assert_eq!(orders_of(&app, late_user).await, 0);
    finish(app, requester).await;
}

#[tokio::test]
async fn a_request_with_a_future_deadline_is_served() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let user = UserId::new();
    let buy = request(user, &[(ProductId::new(), 7, 3)], None);

    requester
        .publish_raw(
            &serde_json::to_vec(&buy).unwrap(),
            Requester::with_deadline_in(requester.properties("soon", "c-soon"), 60_000),
        )
        .await;

    let (correlation_id, reply) = requester.next_reply().await;
    assert_eq!(correlation_id, "c-soon");
    assert_eq!(order_of(reply).total_cents, 21);
    finish(app, requester).await;
}

/// The trace id in a `traceparent` header value (`00-<trace id>-<span id>-<flags>`).
fn trace_of(headers: &FieldTable) -> (String, String) {
    let value = match headers.inner().get("traceparent") {
        Some(AMQPValue::LongString(value)) => {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        }
        other => panic!("the reply carries a traceparent, not {other:?}"),
    };
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent: {value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn a_request_in_a_trace_is_answered_by_a_reply_in_the_same_trace() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let buy = request(UserId::new(), &[(ProductId::new(), 100, 1)], None);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(format!("00-{trace}-{caller}-01").into()),
    );

    requester
        .publish_raw(
            &serde_json::to_vec(&buy).unwrap(),
            requester
                .properties("traced", "c-traced")
                .with_headers(headers),
        )
        .await;

    let (correlation_id, reply, headers) = requester.next_reply_with_headers().await;
    assert_eq!(correlation_id, "c-traced");
    order_of(reply);
    let (replied_trace, replied_span) = trace_of(&headers);
    assert_eq!(
        replied_trace, trace,
        "the reply carries the request's trace back"
    );
    assert_ne!(replied_span, caller, "from orders' own span within it");
    finish(app, requester).await;
}

#[tokio::test]
async fn a_request_without_trace_headers_is_served_in_a_trace_of_its_own() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let buy = request(UserId::new(), &[(ProductId::new(), 100, 1)], None);

    requester.publish(&buy, "untraced", "c-untraced").await;

    let (_, reply, headers) = requester.next_reply_with_headers().await;
    order_of(reply);
    let (trace, _) = trace_of(&headers);
    assert_ne!(trace, "0".repeat(32), "a new, valid trace");
    finish(app, requester).await;
}

#[tokio::test]
async fn requests_products_would_never_send_are_answered_with_400_problems_and_store_nothing() {
    let app = TestApp::spawn().await;
    let mut requester = Requester::connect(&app.queue).await;
    let user = UserId::new();
    let many: Vec<_> = (0..101).map(|_| (ProductId::new(), 1, 1)).collect();
    let twice = ProductId::new();
    let untrusted = [
        ("101 lines", request(user, &many, None)),
        (
            "the same product on two lines",
            request(user, &[(twice, 1, 1), (twice, 1, 2)], None),
        ),
        (
            "a 201-character name",
            spoiled(user, |b| b.lines[0].name = "n".repeat(201)),
        ),
        (
            "a price over ten million",
            spoiled(user, |b| b.lines[0].unit_price_cents = 1_000_000_001),
        ),
        (
            "a negative price",
            spoiled(user, |b| b.lines[0].unit_price_cents = -1),
        ),
        (
            "a quantity over 1000",
            spoiled(user, |b| b.lines[0].quantity = 1001),
        ),
        (
            "a total that overflows",
            spoiled(user, |b| b.lines[0].unit_price_cents = i64::MAX),
        ),
        (
            "the nil user",
            spoiled(UserId::from(uuid::Uuid::nil()), |_| {}),
        ),
        (
            "an email without a domain",
            spoiled(user, |b| b.email = "buyer@".to_owned()),
        ),
        (
            "an email with a space",
            spoiled(user, |b| b.email = "a buyer@example.com".to_owned()),
        ),
    ];

    for (i, (what, buy)) in untrusted.iter().enumerate() {
        requester
            .publish(buy, &format!("m-{i}"), &format!("c-{i}"))
            .await;
        let (correlation_id, reply) = requester.next_reply().await;
        assert_eq!(correlation_id, format!("c-{i}"));
        match reply {
            CreateOrderReplyV1::Problem(p) => assert_eq!(p.status, 400, "{what}: {p}"),
            CreateOrderReplyV1::Order(o) => panic!("{what}: order {} was stored", o.id),
        }
    }

    assert_eq!(orders_of(&app, user).await, 0);
    assert_eq!(orders_of(&app, UserId::from(uuid::Uuid::nil())).await, 0);
    let most: Vec<_> = (0..100)
        .map(|_| (ProductId::new(), 1_000_000_000, 1000))
        .collect();
    requester
        .publish(&request(user, &most, None), "largest", "c-largest")
        .await;
    let order = order_of(requester.next_reply().await.1);
    assert_eq!(order.total_cents, 100_000_000_000_000);
    finish(app, requester).await;
}
