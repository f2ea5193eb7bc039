//! Stock: products created with it, restocked by admins, taken by buys and given back when
//! orders stores nothing. Against a stand-in orders side on the real broker.

mod support;

use std::time::Duration;

use common::{
    amqp::ReplyMode,
    ids::OrderId,
    messages::{CreateOrderReplyV1, ResolveReservationReplyV1},
    problem::Problem,
    testing::wait_until,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    Options, TestApp, assert_problem, spawn_app, spawn_app_with, start_fake_orders,
    start_fake_resolver, start_honest_orders,
};

fn one_of(id: impl serde::Serialize, quantity: i64) -> Value {
    json!({"items": [{"product_id": id, "quantity": quantity}]})
}

#[tokio::test]
async fn a_product_shows_its_stock_and_one_created_without_it_is_untracked() {
    let app = spawn_app().await;
    let kettle = app.create_stocked_product("Kettle", 3000, 12).await;
    let spoon = app.create_product("Spoon", 150).await;

    assert_eq!(kettle.stock, Some(12));
    assert_eq!(spoon.stock, None);
    let listed: Vec<Value> = app.get_json("/products").await;
    let stocks: Vec<&Value> = listed.iter().map(|p| &p["stock"]).collect();
    assert_eq!(stocks, vec![&json!(12), &Value::Null]);
}

#[tokio::test]
async fn a_negative_or_huge_stock_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    for stock in [json!(-1), json!(1_000_000_001_i64), json!("5"), json!(1.5)] {
        let body = json!({"name": "Odd", "description": "", "price_cents": 1, "stock": stock});
        let response = app.post_product(&app.admin_token(), &body).await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let listed: Vec<Value> = app.get_json("/products").await;
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test]
async fn an_admin_sets_and_adds_to_the_stock_and_changes_the_price() {
    let app = spawn_app().await;
    let lamp = app.create_product("Lamp", 2500).await;
    let admin = app.admin_token();

    let set = app
        .patch_product(&admin, lamp.id, &json!({"stock": 4}))
        .await;
    assert_eq!(set.status(), StatusCode::OK);
    let added = app
        .patch_product(
            &admin,
            lamp.id,
            &json!({"add_stock": 6, "price_cents": 2400}),
        )
        .await;
    assert_eq!(added.status(), StatusCode::OK);
    let body: Value = added.json().await.unwrap();

    assert_eq!(body["stock"], 10);
    assert_eq!(body["price_cents"], 2400);
    assert_eq!(body["name"], "Lamp");
    assert_eq!(app.stock_of(lamp.id).await, Some(10));
    let shown: Value = app.get_json(&format!("/products/{}", lamp.id)).await;
    assert_eq!(shown["stock"], 10, "this replica shows the change at once");
}

#[tokio::test]
async fn a_restock_that_breaks_a_rule_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let untracked = app.create_product("Spoon", 150).await;
    let nearly_full = app.create_stocked_product("Grain", 10, 999_999_999).await;
    let admin = app.admin_token();

    let cases = [
        (untracked.id, json!({"add_stock": 1}), StatusCode::CONFLICT),
        (
            nearly_full.id,
            json!({"add_stock": 2}),
            StatusCode::BAD_REQUEST,
        ),
        (
            nearly_full.id,
            json!({"add_stock": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            nearly_full.id,
            json!({"stock": 1, "add_stock": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (nearly_full.id, json!({}), StatusCode::BAD_REQUEST),
        (
            nearly_full.id,
            json!({"stock": 1, "colour": "red"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            common::ids::ProductId::new(),
            json!({"stock": 1}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (id, body, status) in cases {
        let response = app.patch_product(&admin, id, &body).await;
        assert_problem(response, status).await;
    }
    assert_eq!(app.stock_of(untracked.id).await, None);
    assert_eq!(app.stock_of(nearly_full.id).await, Some(999_999_999));
}

#[tokio::test]
async fn only_an_admin_changes_a_product() {
    let app = spawn_app().await;
    let lamp = app.create_stocked_product("Lamp", 2500, 3).await;

    let response = app
        .patch_product(&app.customer_token(), lamp.id, &json!({"add_stock": 100}))
        .await;

    assert_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(app.stock_of(lamp.id).await, Some(3));
}

#[tokio::test]
async fn a_buy_takes_its_stock_and_a_retry_with_the_same_key_takes_nothing_more() {
    let app = spawn_app().await;
    let mut orders = start_honest_orders(&app).await;
    let mug = app.create_stocked_product("Mug", 900, 5).await;

    for _ in 0..2 {
        let response = app
            .buy_request(&one_of(mug.id, 2))
            .header("Idempotency-Key", "mugs-1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    assert_eq!(app.stock_of(mug.id).await, Some(3));
    let first = orders.received.recv().await.expect("the first request");
    let second = orders.received.recv().await.expect("the retry");
    assert!(first.request.reservation_id.is_some());
    assert_eq!(
        first.request.reservation_id, second.request.reservation_id,
        "the retry carries the same reservation"
    );
    assert_eq!(app.reservation_states().await, vec!["committed"]);
}

#[tokio::test]
async fn a_buy_short_of_stock_is_refused_naming_the_short_products_and_moves_no_stock() {
    let app = spawn_app().await;
    let _orders = start_honest_orders(&app).await;
    let plenty = app.create_stocked_product("Plenty", 100, 10).await;
    let scarce = app.create_stocked_product("Scarce", 100, 1).await;
    let untracked = app.create_product("Endless", 100).await;

    let response = app
        .buy(&json!({"items": [
            {"product_id": plenty.id, "quantity": 3},
            {"product_id": scarce.id, "quantity": 2},
            {"product_id": untracked.id, "quantity": 1000},
        ]}))
        .await;

    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert!(
        problem["type"].as_str().unwrap().ends_with("/out-of-stock"),
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&scarce.id.to_string()), "{detail}");
    assert!(!detail.contains(&plenty.id.to_string()), "{detail}");
    assert_eq!(app.stock_of(plenty.id).await, Some(10));
    assert_eq!(app.stock_of(scarce.id).await, Some(1));
    assert!(app.reservation_states().await.is_empty());
}

#[tokio::test]
async fn a_product_whose_stock_is_not_tracked_is_never_short() {
    let app = spawn_app().await;
    let _orders = start_honest_orders(&app).await;
    let endless = app.create_product("Endless", 100).await;

    for _ in 0..3 {
        let response = app.buy(&one_of(endless.id, 1000)).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(app.stock_of(endless.id).await, None);
}

#[tokio::test]
async fn a_buy_orders_refuses_gives_its_stock_back() {
    let app = spawn_app().await;
    let _orders = start_fake_orders(&app, |_| async {
        CreateOrderReplyV1::Problem(Problem::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "refused by the stand-in",
        ))
    })
    .await;
    let mug = app.create_stocked_product("Mug", 900, 5).await;

    let response = app.buy(&one_of(mug.id, 4)).await;

    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.stock_of(mug.id).await, Some(5));
    assert_eq!(app.reservation_states().await, vec!["released"]);
}

#[tokio::test]
async fn a_key_reused_with_other_lines_is_refused_without_touching_the_first_buy() {
    let app = spawn_app().await;
    let _orders = start_honest_orders(&app).await;
    let mug = app.create_stocked_product("Mug", 900, 5).await;
    let send = |quantity| {
        app.buy_request(&one_of(mug.id, quantity))
            .header("Idempotency-Key", "mugs-2")
            .send()
    };

    assert_eq!(send(1).await.unwrap().status(), StatusCode::CREATED);
    let reused = send(3).await.unwrap();

    assert_problem(reused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.stock_of(mug.id).await, Some(4));
    assert_eq!(app.reservation_states().await, vec!["committed"]);
}

#[tokio::test]
async fn a_buy_whose_outcome_is_unknown_keeps_its_stock_taken() {
    let app = spawn_app_with(Options {
        rpc_timeout: Duration::from_millis(300),
        reply_mode: ReplyMode::PerRequest,
        ..Options::default()
    })
    .await;
    // Answers long after products has stopped waiting: the order may exist, so the stock
    // must not come back until that is known.
    let _orders = start_fake_orders(&app, |request| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        CreateOrderReplyV1::Order(support::order_for(&request))
    })
    .await;
    let mug = app.create_stocked_product("Mug", 900, 5).await;

    let response = app.buy(&one_of(mug.id, 2)).await;

    assert_problem(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert_eq!(app.stock_of(mug.id).await, Some(3));
    assert_eq!(app.reservation_states().await, vec!["pending"]);
}

/// An app whose buys time out (orders answers after a second, products waits 300 ms) and whose
/// reconciler asks about a reservation once it is 300 ms old.
async fn app_whose_buys_time_out() -> TestApp {
    let app = spawn_app_with(Options {
        rpc_timeout: Duration::from_millis(300),
        reconciler: products::reconciler::ReconcilerConfig {
            interval: Duration::from_millis(100),
            resolve_after: Duration::from_millis(300),
        },
        ..Options::default()
    })
    .await;
    start_fake_orders(&app, |request| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        CreateOrderReplyV1::Order(support::order_for(&request))
    })
    .await;
    app
}

async fn wait_for_states(app: &TestApp, expected: &'static str) {
    wait_until(Duration::from_secs(10), expected, || async move {
        (app.reservation_states().await == vec![expected]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_pending_reservation_without_an_order_is_released_once_orders_says_so() {
    let app = app_whose_buys_time_out().await;
    start_fake_resolver(&app, |_| ResolveReservationReplyV1::Refused).await;
    let mug = app.create_stocked_product("Mug", 900, 5).await;

    let response = app.buy(&one_of(mug.id, 2)).await;
    assert_problem(response, StatusCode::GATEWAY_TIMEOUT).await;

    wait_for_states(&app, "released").await;
    assert_eq!(app.stock_of(mug.id).await, Some(5));
}

#[tokio::test]
async fn a_pending_reservation_with_an_order_is_committed_and_keeps_its_stock() {
    let app = app_whose_buys_time_out().await;
    let order_id = OrderId::new();
    start_fake_resolver(&app, move |_| ResolveReservationReplyV1::Ordered {
        order_id,
    })
    .await;
    let mug = app.create_stocked_product("Mug", 900, 5).await;

    let response = app.buy(&one_of(mug.id, 2)).await;
    assert_problem(response, StatusCode::GATEWAY_TIMEOUT).await;

    wait_for_states(&app, "committed").await;
    assert_eq!(app.stock_of(mug.id).await, Some(3));
}
