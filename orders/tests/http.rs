//! The HTTP API of the running service: a user sees their own orders and nobody else's.

mod support;

use common::{
    amqp::Outcome,
    ids::{OrderId, ProductId, UserId},
    messages::{CreateOrderReplyV1, Order},
    testing::wait_until,
};
use reqwest::StatusCode;
use support::{PATIENCE, TestApp, handler, request};

/// Stores an order for `user` the way the consumer would.
async fn place(app: &TestApp, user: UserId, price: i64) -> Order {
    let incoming = common::amqp::Incoming {
        request: request(user, &[(ProductId::new(), price, 2)], None),
        message_id: Some(uuid::Uuid::new_v4().to_string()),
        request_id: None,
        redelivered: false,
    };
    match handler(&app.db).create_order(incoming).await {
        Outcome::Reply(CreateOrderReplyV1::Order(order)) => order,
        other => panic!("the order was not stored: {other:?}"),
    }
}

async fn list(app: &TestApp, user: UserId, query: &str) -> Vec<Order> {
    let response = app.get_as(&format!("/orders{query}"), Some(user)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("a list of orders")
}

fn ids(orders: &[Order]) -> Vec<OrderId> {
    orders.iter().map(|o| o.id).collect()
}

#[tokio::test]
async fn the_list_shows_only_the_callers_orders_newest_first() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let first = place(&app, alice, 100).await;
    let bobs = place(&app, bob, 200).await;
    let second = place(&app, alice, 300).await;

    let mine = list(&app, alice, "").await;

    assert_eq!(ids(&mine), vec![second.id, first.id]);
    assert_eq!(mine, vec![second, first]);
    assert_eq!(ids(&list(&app, bob, "").await), vec![bobs.id]);
    assert!(list(&app, UserId::new(), "").await.is_empty());
}

#[tokio::test]
async fn the_list_is_paged_with_limit_and_offset() {
    let app = TestApp::spawn().await;
    let user = UserId::new();
    let mut placed = Vec::new();
    for price in 1..=5 {
        placed.push(place(&app, user, price).await.id);
    }
    placed.reverse();

    assert_eq!(ids(&list(&app, user, "?limit=2").await), placed[0..2]);
    assert_eq!(
        ids(&list(&app, user, "?limit=2&offset=2").await),
        placed[2..4]
    );
    assert_eq!(
        ids(&list(&app, user, "?limit=2&offset=4").await),
        placed[4..]
    );
    assert!(list(&app, user, "?offset=5").await.is_empty());
    for bad in [
        "?limit=0",
        "?limit=201",
        "?offset=-1",
        "?offset=10001",
        "?limit=many",
        "?page=2",
    ] {
        let response = app.get_as(&format!("/orders{bad}"), Some(user)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn an_order_is_shown_to_its_owner_as_stored() {
    let app = TestApp::spawn().await;
    let user = UserId::new();
    let order = place(&app, user, 1999).await;

    let response = app
        .get_as(&format!("/orders/{}", order.id), Some(user))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    let created_at = body["created_at"].as_str().expect("created_at is a string");
    assert!(created_at.ends_with('Z'), "{created_at} is not UTC");
    assert_eq!(body["items"][0]["line_total_cents"], 2 * 1999);
    assert_eq!(serde_json::from_value::<Order>(body).unwrap(), order);
}

#[tokio::test]
async fn someone_elses_order_is_not_found_just_like_a_missing_one() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let bobs = place(&app, bob, 100).await;

    let theirs = app
        .get_as(&format!("/orders/{}", bobs.id), Some(alice))
        .await;
    let missing = app
        .get_as(&format!("/orders/{}", OrderId::new()), Some(alice))
        .await;
    let malformed = app.get_as("/orders/not-an-id", Some(alice)).await;

    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(malformed.status(), StatusCode::NOT_FOUND);
    let theirs: serde_json::Value = theirs.json().await.unwrap();
    let missing: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(theirs, missing);
}

#[tokio::test]
async fn orders_are_only_shown_with_a_valid_bearer_token() {
    let app = TestApp::spawn().await;
    let user = UserId::new();
    let order = place(&app, user, 100).await;

    for path in ["/orders".to_owned(), format!("/orders/{}", order.id)] {
        let anonymous = app.get_as(&path, None).await;
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            anonymous.headers()["content-type"],
            "application/problem+json"
        );
        let forged = app
            .http
            .get(format!("{}{path}", app.address))
            .bearer_auth(format!("{}x", app.issuer.token_for(user, &[])))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn the_service_is_healthy_and_ready_once_its_database_and_broker_answer() {
    let app = TestApp::spawn().await;

    assert_eq!(app.get_as("/healthz", None).await.status(), StatusCode::OK);
    wait_until(PATIENCE, "/readyz to answer 200", || async {
        (app.get_as("/readyz", None).await.status() == StatusCode::OK).then_some(())
    })
    .await;
    let unknown = app.get_as("/no/such/route", None).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_service_stops_cleanly_when_asked_to() {
    let app = TestApp::spawn().await;
    let address = app.address.clone();

    app.stop().await.expect("a clean stop");

    assert!(reqwest::get(format!("{address}/healthz")).await.is_err());
}
