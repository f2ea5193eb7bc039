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
