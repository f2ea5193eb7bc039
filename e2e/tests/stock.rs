//! Stock through the whole system: auth's tokens, products reserving, orders storing.

mod support;

use std::collections::BTreeMap;

use common::amqp::ReplyMode;
use futures::future::join_all;
use reqwest::StatusCode;
use support::{Options, System, items};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_buys_of_fifty_units_make_exactly_fifty_orders() {
    let system = System::start(Options::new(ReplyMode::Direct)).await;
    let admin = system.admin().await;
    let product = system
        .stocked_product(&admin, "Limited print", 4000, 50)
        .await;
    let id = product["id"].as_str().expect("id").to_owned();
    let names: Vec<String> = (0..20).map(|n| format!("fan{n}")).collect();
    let users = join_all(names.iter().map(|name| system.user(name))).await;
    let body = items(&[(id.as_str(), 1)]);

    let replies =
        join_all((0..200).map(|n| system.buy(&users[n % users.len()].token, &body, None))).await;

    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for reply in &replies {
        *statuses.entry(reply.status.as_u16()).or_default() += 1;
        if reply.status == StatusCode::CONFLICT {
            assert!(reply.is_problem(), "{}", reply.body);
            let kind = reply.body["type"].as_str().unwrap_or_default();
            assert!(kind.ends_with("/out-of-stock"), "{}", reply.body);
        }
    }
    assert_eq!(
        statuses,
        BTreeMap::from([(201, 50), (409, 150)]),
        "every buy answered, 50 made an order"
    );
    let mut orders = 0;
    for user in &users {
        orders += system.orders(&user.token).await.len();
    }
    assert_eq!(orders, 50, "orders stored");
    let stored = products::store::get(system.products().db(), id.parse().expect("an id"))
        .await
        .expect("read the product")
        .expect("it exists");
    assert_eq!(stored.stock, Some(0));
}

/// The stock of the product `id` as products stores it.
async fn stock_of(system: &System, id: &str) -> Option<i32> {
    products::store::get(system.products().db(), id.parse().expect("an id"))
        .await
        .expect("read the product")
        .expect("it exists")
        .stock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_an_order_returns_its_stock_through_the_order_events() {
    let system = System::start(Options::new(ReplyMode::Direct)).await;
    let admin = system.admin().await;
    let product = system.stocked_product(&admin, "Teapot", 2500, 5).await;
    let id = product["id"].as_str().expect("id").to_owned();
    let alice = system.user("alice").await;

    let order = system
        .buy(&alice.token, &items(&[(id.as_str(), 2)]), None)
        .await
        .expect(StatusCode::CREATED, "buy two")
        .body;
    assert_eq!(stock_of(&system, &id).await, Some(3));
    let order_id = order["id"].as_str().expect("id");

    let cancelled = system
        .cancel(&alice.token, order_id)
        .await
        .expect(StatusCode::OK, "cancel")
        .body;
    assert_eq!(cancelled["status"], "cancelled");
    common::testing::wait_until(
        std::time::Duration::from_secs(60),
        "the stock back after the order.cancelled.v1 event",
        || async { (stock_of(&system, &id).await == Some(5)).then_some(()) },
    )
    .await;

    let again = system
        .cancel(&alice.token, order_id)
        .await
        .expect(StatusCode::OK, "cancel again")
        .body;
    assert_eq!(again, cancelled, "a repeated cancel answers the same order");
    let bob = system.user("bob").await;
    system
        .cancel(&bob.token, order_id)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "someone else's cancel");
    let listed = system.orders(&alice.token).await;
    assert_eq!(listed[0]["status"], "cancelled");
}
