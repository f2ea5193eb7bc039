//! The reservation fence: a buy carrying a reservation and a resolve of that reservation, in
//! any order and at the same moment, agree on one outcome, through the handlers against a real
//! PostgreSQL and over the resolve queue.

mod support;

use std::time::Duration;

use common::{
    amqp::{CallOptions, Incoming, Outcome, ReplyMode, RpcClient},
    ids::{ProductId, ReservationId, UserId},
    messages::{
        CreateOrderReplyV1, CreateOrderV1, Event, OrderCreatedV1, RESERVATION_EXPIRED,
        RESERVATION_IN_USE, ResolveReservationReplyV1, ResolveReservationV1,
    },
};
use orders::{
    consumer::OrderHandler,
    entity::{order, outbox},
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use support::{TestApp, handler, migrated_database, request};

/// The product every buy here is for: a replay must buy the same lines.
const PRODUCT: uuid::Uuid = uuid::Uuid::from_u128(0x5eed);

fn buy(user: UserId, key: Option<&str>, reservation: ReservationId) -> CreateOrderV1 {
    let mut buy = request(user, &[(ProductId::from(PRODUCT), 500, 1)], key);
    buy.reservation_id = Some(reservation);
    buy
}

async fn create(orders: &OrderHandler, request: CreateOrderV1) -> CreateOrderReplyV1 {
    let incoming = Incoming {
        request,
        message_id: Some(uuid::Uuid::new_v4().to_string()),
        request_id: None,
        redelivered: false,
    };
    match orders.create_order(incoming).await {
        Outcome::Reply(reply) => reply,
        Outcome::Retry(e) => panic!("expected a reply, got a retry: {e:#}"),
    }
}

async fn resolve(orders: &OrderHandler, reservation: ReservationId) -> ResolveReservationReplyV1 {
    let incoming = Incoming {
        request: ResolveReservationV1 {
            reservation_id: reservation,
        },
        message_id: None,
        request_id: None,
        redelivered: false,
    };
    match orders.resolve_reservation(incoming).await {
        Outcome::Reply(reply) => reply,
        Outcome::Retry(e) => panic!("expected a reply, got a retry: {e:#}"),
    }
}

async fn orders_with(db: &DatabaseConnection, reservation: ReservationId) -> u64 {
    order::Entity::find()
        .filter(order::Column::ReservationId.eq(reservation))
        .count(db)
        .await
        .expect("count orders")
}

async fn created_events(db: &DatabaseConnection) -> u64 {
    outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq(OrderCreatedV1::ROUTING_KEY))
        .count(db)
        .await
        .expect("count events")
}

#[tokio::test]
async fn a_reservation_resolved_before_its_buy_arrives_is_refused_for_good() {
    let (_database, db) = migrated_database().await;
    let orders = handler(&db);
    let reservation = ReservationId::new();

    let answer = resolve(&orders, reservation).await;
    let late = create(&orders, buy(UserId::new(), None, reservation)).await;
    let asked_again = resolve(&orders, reservation).await;

    assert_eq!(answer, ResolveReservationReplyV1::Refused);
    match late {
        CreateOrderReplyV1::Problem(p) => {
            assert_eq!(p.status, 409);
            assert!(p.is_of_type(RESERVATION_EXPIRED), "{}", p.kind);
            assert!(p.kind.ends_with("/reservation-expired"));
        }
        CreateOrderReplyV1::Order(o) => panic!("order {} was stored after the refusal", o.id),
    }
    assert_eq!(asked_again, ResolveReservationReplyV1::Refused);
    assert_eq!(orders_with(&db, reservation).await, 0);
    assert_eq!(
        created_events(&db).await,
        0,
        "no event for an order never stored"
    );
}

#[tokio::test]
async fn a_reservation_with_an_order_resolves_to_that_order_and_its_buy_replays_it() {
    let (_database, db) = migrated_database().await;
    let orders = handler(&db);
    let (user, reservation) = (UserId::new(), ReservationId::new());

    let CreateOrderReplyV1::Order(order) = create(&orders, buy(user, Some("k"), reservation)).await
    else {
        panic!("the buy was refused");
    };
    let answer = resolve(&orders, reservation).await;
    let replayed = create(&orders, buy(user, Some("k"), reservation)).await;

    assert_eq!(
        answer,
        ResolveReservationReplyV1::Ordered { order_id: order.id }
    );
    assert_eq!(replayed, CreateOrderReplyV1::Order(order));
    assert_eq!(orders_with(&db, reservation).await, 1);
    assert_eq!(
        created_events(&db).await,
        1,
        "a replay writes no second event"
    );
}

#[tokio::test]
async fn a_reservation_another_order_holds_cannot_make_a_second_order() {
    let (_database, db) = migrated_database().await;
    let orders = handler(&db);
    let (user, reservation) = (UserId::new(), ReservationId::new());
    create(&orders, buy(user, Some("first"), reservation)).await;

    let other_key = create(&orders, buy(user, Some("second"), reservation)).await;
    let other_reservation = create(&orders, buy(user, Some("first"), ReservationId::new())).await;

    for reply in [other_key, other_reservation] {
        match reply {
            CreateOrderReplyV1::Problem(p) => {
                assert_eq!(p.status, 409);
                assert!(p.is_of_type(RESERVATION_IN_USE), "{}", p.kind);
            }
            CreateOrderReplyV1::Order(o) => panic!("answered with order {}", o.id),
        }
    }
    assert_eq!(orders_with(&db, reservation).await, 1);
    assert_eq!(created_events(&db).await, 1);
}

#[tokio::test]
async fn a_buy_and_a_resolve_racing_for_one_reservation_never_both_win() {
    let (_database, db) = migrated_database().await;
    let orders = handler(&db);
    let (mut ordered, mut refused) = (0, 0);

    for _ in 0..100 {
        let reservation = ReservationId::new();
        let (created, resolved) = tokio::join!(
            create(&orders, buy(UserId::new(), None, reservation)),
            resolve(&orders, reservation),
        );
        match (created, resolved) {
            (CreateOrderReplyV1::Order(order), ResolveReservationReplyV1::Ordered { order_id }) => {
                assert_eq!(order.id, order_id);
                ordered += 1;
            }
            (CreateOrderReplyV1::Problem(p), ResolveReservationReplyV1::Refused) => {
                assert!(p.is_of_type(RESERVATION_EXPIRED), "{}", p.kind);
                assert_eq!(orders_with(&db, reservation).await, 0);
                refused += 1;
            }
            (created, resolved) => {
                panic!("the buy and the resolve disagree: {created:?} against {resolved:?}")
            }
        }
    }
    assert_eq!(ordered + refused, 100);
    assert_eq!(created_events(&db).await, ordered);
}

#[tokio::test]
async fn the_resolve_queue_answers_products_question_over_rabbitmq() {
    let app = TestApp::spawn().await;
    let orders = handler(&app.db);
    let (user, reservation) = (UserId::new(), ReservationId::new());
    let CreateOrderReplyV1::Order(order) = create(&orders, buy(user, None, reservation)).await
    else {
        panic!("the buy was refused");
    };
    let broker = app.broker().expect("orders has a broker").clone();
    let client = RpcClient::<ResolveReservationV1>::new(
        broker,
        app.amqp.resolve_queue.clone(),
        ReplyMode::PerRequest,
        Duration::from_secs(10),
    );
    let ask = |reservation_id| {
        let client = client.clone();
        async move {
            common::testing::wait_until(support::PATIENCE, "an answer", || async {
                client
                    .call(
                        &ResolveReservationV1 { reservation_id },
                        CallOptions::default(),
                    )
                    .await
                    .ok()
            })
            .await
        }
    };

    assert_eq!(
        ask(reservation).await,
        ResolveReservationReplyV1::Ordered { order_id: order.id }
    );
    assert_eq!(
        ask(ReservationId::new()).await,
        ResolveReservationReplyV1::Refused
    );
}
