//! Buying over HTTP: products prices the lines and asks a stand-in orders side, consuming the
//! app's queue on the real broker, to store the order.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    amqp::ReplyMode,
    messages::{CreateOrderReplyV1, Order},
    problem::Problem,
};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use support::{
    Amqp, Options, TestApp, assert_problem, order_for, spawn_app, spawn_app_with,
    start_fake_orders, start_honest_orders,
};
use tokio::sync::Semaphore;

async fn a_buy_becomes_an_order_priced_from_the_catalog(app: TestApp) {
    let mut orders = start_honest_orders(&app).await;
    let teapot = app.create_product("Teapot", 2599).await;
    let cup = app.create_product("Cup", 450).await;

    let response = app
        .buy(&json!({"items": [
            {"product_id": teapot.id, "quantity": 1},
            {"product_id": cup.id, "quantity": 4},
        ]}))
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let order: Order = response.json().await.unwrap();
    assert_eq!(location, format!("/orders/{}", order.id));
    assert_eq!(order.user_id, app.customer.sub);
    assert_eq!(order.total_cents, 2599 + 4 * 450);
    let lines: Vec<_> = order
        .items
        .iter()
        .map(|i| {
            (
                i.product_id,
                i.name.as_str(),
                i.unit_price_cents,
                i.quantity,
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![(teapot.id, "Teapot", 2599, 1), (cup.id, "Cup", 450, 4)]
    );

    let sent = orders.received.recv().await.expect("orders got the buy");
    assert_eq!(sent.request.email, app.customer.email);
    assert_eq!(sent.request.idempotency_key, None);
    assert!(sent.request_id.is_some(), "the request id travels along");
}

#[tokio::test]
async fn a_buy_becomes_an_order_priced_from_the_catalog_with_per_request_reply_queues() {
    let app = spawn_app_with(Options {
        reply_mode: ReplyMode::PerRequest,
        ..Options::default()
    })
    .await;
    a_buy_becomes_an_order_priced_from_the_catalog(app).await;
}

#[tokio::test]
async fn a_buy_becomes_an_order_priced_from_the_catalog_with_direct_reply_to() {
    let app = spawn_app_with(Options {
        reply_mode: ReplyMode::Direct,
        ..Options::default()
    })
    .await;
    a_buy_becomes_an_order_priced_from_the_catalog(app).await;
}

#[tokio::test]
async fn the_older_ids_form_buys_one_of_each_and_adds_up_repeats() {
    let app = spawn_app().await;
    let _orders = start_honest_orders(&app).await;
    let teapot = app.create_product("Teapot", 2599).await;
    let cup = app.create_product("Cup", 450).await;

    let response = app.buy(&json!({"ids": [teapot.id, cup.id, cup.id]})).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Order = response.json().await.unwrap();
    assert_eq!(order.total_cents, 2599 + 2 * 450);
    let quantities: Vec<_> = order
        .items
        .iter()
        .map(|i| (i.product_id, i.quantity))
        .collect();
    assert_eq!(quantities, vec![(teapot.id, 1), (cup.id, 2)]);
}

#[tokio::test]
async fn a_buy_naming_an_unknown_product_is_404_and_nothing_is_sent_to_orders() {
    let app = spawn_app().await;
    let amqp = Amqp::connect().await;
    amqp.declare(&app.queue).await;
    let cup = app.create_product("Cup", 450).await;
    let missing = uuid::Uuid::new_v4();

    let response = app
        .buy(&json!({"items": [
            {"product_id": cup.id, "quantity": 1},
            {"product_id": missing, "quantity": 1},
        ]}))
        .await;

    let body = assert_problem(response, StatusCode::NOT_FOUND).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(&missing.to_string()), "{detail}");
    assert!(!detail.contains(&cup.id.to_string()), "{detail}");
    assert_eq!(amqp.counts(&app.queue).await, (0, 0), "nothing was queued");
}

#[tokio::test]
async fn invalid_buys_are_refused_with_400() {
    let app = spawn_app().await;
    let amqp = Amqp::connect().await;
    amqp.declare(&app.queue).await;
    let cup = app.create_product("Cup", 450).await;
    let id = cup.id;
    let hundred_and_one: Vec<Value> = (0..101)
        .map(|_| json!({"product_id": uuid::Uuid::new_v4(), "quantity": 1}))
        .collect();

    let cases = [
        ("no items", json!({"items": []})),
        ("no ids", json!({"ids": []})),
        (
            "quantity 0",
            json!({"items": [{"product_id": id, "quantity": 0}]}),
        ),
        (
            "a negative quantity",
            json!({"items": [{"product_id": id, "quantity": -1}]}),
        ),
        (
            "quantity 1001",
            json!({"items": [{"product_id": id, "quantity": 1001}]}),
        ),
        (
            "repeats adding up past 1000",
            json!({"items": [{"product_id": id, "quantity": 600}, {"product_id": id, "quantity": 401}]}),
        ),
        ("101 products", json!({ "items": hundred_and_one })),
        (
            "a price sent by the client",
            json!({"items": [{"product_id": id, "quantity": 1, "unit_price_cents": 1}]}),
        ),
        ("an unknown field", json!({"ids": [id], "coupon": "FREE"})),
        (
            "both forms at once",
            json!({"ids": [id], "items": [{"product_id": id, "quantity": 1}]}),
        ),
        ("neither form", json!({})),
        (
            "a malformed product id",
            json!({"items": [{"product_id": "cup", "quantity": 1}]}),
        ),
    ];
    for (what, body) in cases {
        let response = app.buy(&body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }

    let bad_json = app
        .post_raw_json("/products/buy", &app.customer_token(), "{\"ids\": [")
        .await;
    assert_problem(bad_json, StatusCode::BAD_REQUEST).await;

    let good = json!({"ids": [id]});
    for key in ["", "has space", &"k".repeat(201)] {
        let response = app
            .buy_request(&good)
            .header("Idempotency-Key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "key {key:?}");
    }

    assert_eq!(amqp.counts(&app.queue).await, (0, 0), "nothing was queued");
}

#[tokio::test]
async fn a_buy_without_a_token_is_401() {
    let app = spawn_app().await;
    let cup = app.create_product("Cup", 450).await;

    let response = app
        .http
        .post(app.url("/products/buy"))
        .json(&json!({"ids": [cup.id]}))
        .send()
        .await
        .unwrap();

    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_problem_from_orders_reaches_the_client_unchanged() {
    let app = spawn_app().await;
    let refusal = Problem::new(
        actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        "This Idempotency-Key was used for another buy.",
    );
    let reply = refusal.clone();
    let _orders = start_fake_orders(&app, move |_| {
        let reply = reply.clone();
        async move { CreateOrderReplyV1::Problem(reply) }
    })
    .await;
    let cup = app.create_product("Cup", 450).await;

    let response = app
        .buy_request(&json!({"ids": [cup.id]}))
        .header("Idempotency-Key", "reused-key")
        .send()
        .await
        .unwrap();

    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["detail"], refusal.detail);
}

#[tokio::test]
async fn a_buy_nobody_answers_is_504_soon_after_the_rpc_timeout() {
    let timeout = Duration::from_millis(800);
    let app = spawn_app_with(Options {
        rpc_timeout: timeout,
        ..Options::default()
    })
    .await;
    let amqp = Amqp::connect().await;
    amqp.declare(&app.queue).await;
    let cup = app.create_product("Cup", 450).await;

    let started = Instant::now();
    let response = app.buy(&json!({"ids": [cup.id]})).await;
    let waited = started.elapsed();

    let body = assert_problem(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(1),
        "answered after {waited:?}"
    );
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("Idempotency-Key"), "{detail}");
}

#[tokio::test]
async fn a_buy_to_a_queue_that_does_not_exist_is_503() {
    let app = spawn_app().await;
    let amqp = Amqp::connect().await;
    amqp.delete(&app.queue).await;
    let cup = app.create_product("Cup", 450).await;

    let response = app.buy(&json!({"ids": [cup.id]})).await;

    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn a_buy_while_the_broker_is_unreachable_is_503_and_the_service_is_not_ready() {
    let app = spawn_app_with(Options {
        // Nothing listens on the discard port of the loopback interface.
        amqp_url: "amqp://guest:guest@127.0.0.1:9/%2f".to_owned(),
        wait_ready: false,
        ..Options::default()
    })
    .await;
    let cup = app.create_product("Cup", 450).await;

    let ready = app.get("/readyz").await;
    let body = assert_problem(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(body["detail"].as_str().unwrap().contains("broker"));

    let response = app.buy(&json!({"ids": [cup.id]})).await;
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn a_second_buy_with_the_same_key_while_the_first_is_in_flight_is_409() {
    let app = spawn_app().await;
    let release = Arc::new(Semaphore::new(0));
    let gate = release.clone();
    let mut orders = start_fake_orders(&app, move |request| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.expect("gate open").forget();
            CreateOrderReplyV1::Order(order_for(&request))
        }
    })
    .await;
    let cup = app.create_product("Cup", 450).await;
    let body = json!({"ids": [cup.id]});

    let first = tokio::spawn(
        app.buy_request(&body)
            .header("Idempotency-Key", "buy-1")
            .send(),
    );
    let seen = orders.received.recv().await.expect("orders got the first");
    assert_eq!(seen.request.idempotency_key.as_deref(), Some("buy-1"));

    let second = app
        .buy_request(&body)
        .header("Idempotency-Key", "buy-1")
        .send()
        .await
        .unwrap();
    assert_problem(second, StatusCode::CONFLICT).await;

    // Open the gate for good: the first gets its answer, and so does everything after it.
    release.add_permits(Semaphore::MAX_PERMITS / 2);
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);

    // Once the first has its answer the key is free again.
    let again = app
        .buy_request(&body)
        .header("Idempotency-Key", "buy-1")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
}
