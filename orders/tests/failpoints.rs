//! The real `orders` binary crashed at exact points of a buy, then started again: the request
//! is redelivered, one order exists, and the reply carries it. Needs `--features failpoints`.

#![cfg(feature = "failpoints")]

mod support;

use std::{os::unix::process::ExitStatusExt, process::Stdio};

use common::{
    ids::{OrderId, ProductId, UserId},
    messages::CreateOrderReplyV1,
    testing::{TestDatabase, amqp_url, delete_queue_on_drop, require_broker, unique_queue},
};
use orders::entity::order;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use support::{PATIENCE, Requester, migrated_database, request};
use tokio::process::{Child, Command};

const SIGABRT: i32 = 6;

/// Starts the `orders` binary on `database` and `queue`, armed with `failpoint` if any.
fn start_orders(database: &TestDatabase, queue: &str, failpoint: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orders"));
    command
        .env("DATABASE_URL", &database.url)
        .env("AMQP_URL", amqp_url())
        .env("ORDER_QUEUE", queue)
        .env("PORT", "0")
        // Nothing in these tests calls the HTTP API, so no token is ever checked.
        .env("AUTH_JWKS_URL", "http://127.0.0.1:9/jwks.json")
        .env_remove("ORDERS_FAILPOINT")
        .env_remove("ORDERS_FAILPOINT_AFTER")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(failpoint) = failpoint {
        command.env("ORDERS_FAILPOINT", failpoint);
    }
    command.spawn().expect("start the orders binary")
}

async fn orders_of(db: &DatabaseConnection, user: UserId) -> Vec<order::Model> {
    order::Entity::find()
        .filter(order::Column::UserId.eq(user))
        .all(db)
        .await
        .expect("list orders")
}

fn order_id_of(reply: CreateOrderReplyV1) -> OrderId {
    match reply {
        CreateOrderReplyV1::Order(order) => order.id,
        CreateOrderReplyV1::Problem(problem) => panic!("expected an order, got {problem}"),
    }
}

/// Crashes orders at `failpoint` during one buy, restarts it, and checks the outcome;
/// `stored_at_crash` is how many orders the crash left behind, `replied_at_crash` whether the
/// client already had its answer.
async fn a_crash_at(failpoint: &str, stored_at_crash: usize, replied_at_crash: bool) {
    require_broker().await;
    let (database, db) = migrated_database().await;
    let queue = unique_queue("orders-failpoint");
    let mut requester = Requester::connect(&queue).await;
    let user = UserId::new();
    let buy = request(user, &[(ProductId::new(), 250, 2)], Some("key-1"));

    let mut crashing = start_orders(&database, &queue, Some(failpoint));
    requester.publish(&buy, "message-1", "c-1").await;
    let status = tokio::time::timeout(PATIENCE, crashing.wait())
        .await
        .expect("orders crashes at the failpoint")
        .expect("wait for orders");
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "aborted, not exited: {status}"
    );
    assert_eq!(orders_of(&db, user).await.len(), stored_at_crash);
    let mut replied = Vec::new();
    if replied_at_crash {
        replied.push(requester.next_reply().await);
    }

    let mut restarted = start_orders(&database, &queue, None);
    replied.push(requester.next_reply().await);

    let stored = orders_of(&db, user).await;
    assert_eq!(stored.len(), 1, "exactly one order: {stored:?}");
    assert_eq!(stored[0].total_cents, 500);
    for (correlation_id, reply) in replied {
        assert_eq!(correlation_id, "c-1");
        assert_eq!(order_id_of(reply), stored[0].id);
    }
    restarted.kill().await.expect("stop orders");
    requester.close().await;
    delete_queue_on_drop(&queue);
}

#[tokio::test]
async fn a_crash_before_commit_stores_nothing_and_the_redelivered_buy_makes_one_order() {
    a_crash_at("before-commit", 0, false).await;
}

#[tokio::test]
async fn a_crash_after_commit_is_answered_with_the_order_already_stored() {
    a_crash_at("after-commit", 1, false).await;
}

#[tokio::test]
async fn a_crash_between_reply_and_ack_answers_the_redelivered_buy_with_the_same_order() {
    a_crash_at("after-reply", 1, true).await;
}
