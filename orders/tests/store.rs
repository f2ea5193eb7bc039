//! Storing order requests: idempotency, validation, totals and database outages, through the
//! consumer's handler against a real PostgreSQL (no broker involved).

mod support;

use std::time::Duration;

use common::{
    amqp::{Incoming, Outcome},
    ids::{ProductId, UserId},
    messages::{CreateOrderReplyV1, CreateOrderV1, Order},
    problem::Problem,
};
use orders::entity::order;
use sea_orm::{
    ColumnTrait, ConnectOptions, Database, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter,
};
use support::{handler, migrated_database, request};

fn incoming(request: CreateOrderV1, message_id: Option<&str>) -> Incoming<CreateOrderV1> {
    Incoming {
        request,
        message_id: message_id.map(str::to_owned),
        request_id: Some("test-request".to_owned()),
        redelivered: false,
    }
}

async fn reply(
    db: &DatabaseConnection,
    request: CreateOrderV1,
    message_id: Option<&str>,
) -> CreateOrderReplyV1 {
    match handler(db)
        .create_order(incoming(request, message_id))
        .await
    {
        Outcome::Reply(reply) => reply,
        Outcome::Retry(e) => panic!("expected a reply, got a retry: {e:#}"),
    }
}

fn order_of(reply: CreateOrderReplyV1) -> Order {
    match reply {
        CreateOrderReplyV1::Order(order) => order,
        CreateOrderReplyV1::Problem(p) => panic!("expected an order, got {p}"),
    }
}

fn problem_of(reply: CreateOrderReplyV1) -> Problem {
    match reply {
        CreateOrderReplyV1::Problem(p) => p,
        CreateOrderReplyV1::Order(o) => panic!("expected a problem, got order {}", o.id),
    }
}

async fn orders_of(db: &DatabaseConnection, user: UserId) -> u64 {
    order::Entity::find()
        .filter(order::Column::UserId.eq(user))
        .count(db)
        .await
        .expect("count orders")
}

#[tokio::test]
async fn the_same_idempotency_key_twice_makes_one_order_and_answers_both_with_it() {
    let (_database, db) = migrated_database().await;
    let user = UserId::new();
    let lines = [(ProductId::new(), 1250, 2)];

    let first = order_of(reply(&db, request(user, &lines, Some("k-1")), Some("m-1")).await);
    let second = order_of(reply(&db, request(user, &lines, Some("k-1")), Some("m-2")).await);

    assert_eq!(first, second);
    assert_eq!(orders_of(&db, user).await, 1);
}

#[tokio::test]
async fn a_redelivered_message_without_a_key_makes_one_order() {
    let (_database, db) = migrated_database().await;
    let user = UserId::new();
    let lines = [(ProductId::new(), 500, 1)];

    let first = order_of(reply(&db, request(user, &lines, None), Some("m-7")).await);
    let again = order_of(reply(&db, request(user, &lines, None), Some("m-7")).await);
    let other = order_of(reply(&db, request(user, &lines, None), Some("m-8")).await);

    assert_eq!(first.id, again.id);
    assert_ne!(first.id, other.id);
    assert_eq!(orders_of(&db, user).await, 2);
}

#[tokio::test]
async fn reusing_an_idempotency_key_with_different_items_is_refused_with_422() {
    let (_database, db) = migrated_database().await;
    let user = UserId::new();
    let product = ProductId::new();
    let first = order_of(
        reply(
            &db,
            request(user, &[(product, 100, 1)], Some("k")),
            Some("a"),
        )
        .await,
    );

    let problem = problem_of(
        reply(
            &db,
            request(user, &[(product, 100, 2)], Some("k")),
            Some("b"),
        )
        .await,
    );

    assert_eq!(problem.status, 422);
    assert_eq!(
        problem.detail,
        "Idempotency-Key reused with different items"
    );
    assert_eq!(orders_of(&db, user).await, 1);
    let still = order_of(
        reply(
            &db,
            request(user, &[(product, 100, 1)], Some("k")),
            Some("c"),
        )
        .await,
    );
    assert_eq!(still.id, first.id);
}

#[tokio::test]
async fn two_users_with_the_same_key_get_an_order_each() {
    let (_database, db) = migrated_database().await;
    let lines = [(ProductId::new(), 100, 1)];
    let (alice, bob) = (UserId::new(), UserId::new());

    let a = order_of(reply(&db, request(alice, &lines, Some("same")), Some("m-a")).await);
    let b = order_of(reply(&db, request(bob, &lines, Some("same")), Some("m-b")).await);

    assert_ne!(a.id, b.id);
    assert_eq!((a.user_id, b.user_id), (alice, bob));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_requests_with_one_key_make_exactly_one_order() {
    let (_database, db) = migrated_database().await;
    let user = UserId::new();
    let lines = [(ProductId::new(), 999, 3), (ProductId::new(), 1, 1)];

    let tasks = (0..20).map(|i| {
        let db = db.clone();
        let request = request(user, &lines, Some("race"));
        tokio::spawn(async move {
            let message_id = format!("m-{i}");
            order_of(reply(&db, request, Some(&message_id)).await)
        })
    });
    let replies: Vec<Order> = futures::future::try_join_all(tasks)
        .await
        .expect("no request panicked");

    assert!(replies.iter().all(|o| o.id == replies[0].id));
    assert_eq!(orders_of(&db, user).await, 1);
}

#[tokio::test]
async fn an_order_carries_its_lines_in_request_order_with_totals() {
    let (_database, db) = migrated_database().await;
    let user = UserId::new();
    let (cup, pot) = (ProductId::new(), ProductId::new());

    let order = order_of(
        reply(
            &db,
            request(user, &[(pot, 2599, 3), (cup, 0, 1000)], None),
            Some("m"),
        )
        .await,
    );

    assert_eq!(order.status, "created");
    assert_eq!(order.user_id, user);
    assert_eq!(order.total_cents, 3 * 2599);
    let items: Vec<_> = order
        .items
        .iter()
        .map(|i| {
            (
                i.product_id,
                i.unit_price_cents,
                i.quantity,
                i.line_total_cents,
            )
        })
        .collect();
    assert_eq!(items, vec![(pot, 2599, 3, 7797), (cup, 0, 1000, 0)]);
    assert_eq!(order.items[0].name, format!("Product {pot}"));
    let age = chrono::Utc::now() - order.created_at;
    assert!(
        age < chrono::Duration::minutes(1),
        "created_at is now, not {}",
        order.created_at
    );
}

#[tokio::test]
async fn an_invalid_request_is_answered_with_a_400_problem_and_nothing_is_stored() {
    let (_database, db) = migrated_database().await;
    let user = UserId::new();
    let p = ProductId::new();
    let invalid = [
        (request(user, &[], None), Some("m-1")),
        (request(user, &[(p, 100, 0)], None), Some("m-2")),
        (request(user, &[(p, 100, 1001)], None), Some("m-3")),
        (request(user, &[(p, -1, 1)], None), Some("m-4")),
        (request(user, &[(p, i64::MAX, 2)], None), Some("m-5")),
        (request(user, &[(p, 100, 1)], None), None),
    ];

    for (request, message_id) in invalid {
        let problem = problem_of(reply(&db, request.clone(), message_id).await);
        assert_eq!(
            problem.status, 400,
            "{request:?} was not refused as a bad request"
        );
    }
    assert_eq!(orders_of(&db, user).await, 0);
}

#[tokio::test]
async fn an_unreachable_database_asks_for_a_retry_rather_than_answering() {
    // Nothing listens on port 1, so every connection attempt is refused.
    let mut options = ConnectOptions::new("postgres://postgres@127.0.0.1:1/orders");
    options
        .connect_lazy(true)
        .acquire_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500));
    let db = Database::connect(options).await.expect("a lazy pool");

    let outcome = handler(&db)
        .create_order(incoming(
            request(UserId::new(), &[(ProductId::new(), 1, 1)], None),
            Some("m"),
        ))
        .await;

    assert!(matches!(outcome, Outcome::Retry(_)), "got {outcome:?}");
}
