//! The path a shopper and a shop admin walk: register, log in, fill the catalog, buy, look at
//! their orders; and the ways each step refuses what it must.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use chrono::DateTime;
use common::{amqp::ReplyMode, testing::broker_connection};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    Options, PASSWORD, System, assert_priced_from_catalog, id_of, items, lines_of, message_count,
    send, unique_email,
};
use uuid::Uuid;

/// Flips the first character of a token's signature, which always changes a signed byte.
fn tamper(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').expect("a JWT has three parts");
    let first = if signature.starts_with('A') { "B" } else { "A" };
    format!("{signed}.{first}{}", &signature[1..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registering_and_logging_in_answer_as_the_contract_says() {
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let alice = unique_email("alice");
    let bob = unique_email("bob");

    let registered = system
        .register(&alice, PASSWORD)
        .await
        .expect(StatusCode::CREATED, "register alice");
    let keys: BTreeSet<&str> = registered
        .body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["id", "email", "created_at"]),
        "a registration answers with the account and nothing else: {}",
        registered.body
    );
    assert_eq!(registered.body["email"], alice.as_str());
    Uuid::parse_str(&id_of(&registered.body)).expect("the id is a UUID");
    DateTime::parse_from_rfc3339(registered.body["created_at"].as_str().expect("a string"))
        .expect("created_at is RFC 3339");

    let bob_registered = system
        .register(&bob, PASSWORD)
        .await
        .expect(StatusCode::CREATED, "register bob");
    assert_ne!(id_of(&bob_registered.body), id_of(&registered.body));

    system
        .register(&alice, "another long password")
        .await
        .expect_problem(StatusCode::CONFLICT, "register a taken email");
    system
        .register(&unique_email("short"), "short")
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "register a short password");
    system
        .register("not an email", PASSWORD)
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "register a malformed email");

    let login = system
        .try_login(&alice, PASSWORD)
        .await
        .expect(StatusCode::OK, "log in");
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 15 * 60);
    let token = login.body["access_token"].as_str().expect("a token");

    let unknown = system
        .try_login(&unique_email("nobody"), PASSWORD)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "log in with an unknown email");
    let wrong = system
        .try_login(&alice, "not alice's password")
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "log in with a wrong password");
    assert_eq!(
        unknown.body, wrong.body,
        "a client cannot tell an unknown email from a wrong password"
    );

    let jwks = send(
        system
            .http
            .get(system.auth_url("/auth/.well-known/jwks.json")),
    )
    .await
    .expect(StatusCode::OK, "fetch the JWKS");
    assert!(
        !jwks.body["keys"].as_array().expect("keys").is_empty(),
        "auth publishes its key: {}",
        jwks.body
    );

    let orders_url = system.orders_url("/orders");
    send(system.http.get(&orders_url))
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "list orders without a token");
    send(system.http.get(&orders_url).bearer_auth(tamper(token)))
        .await
        .expect_problem(
            StatusCode::UNAUTHORIZED,
            "list orders with a tampered token",
        );
    send(system.http.get(&orders_url).bearer_auth("not.a.jwt"))
        .await
        .expect_problem(
            StatusCode::UNAUTHORIZED,
            "list orders with garbage for a token",
        );
    assert_eq!(system.orders(token).await, Vec::<Value>::new());

    let buy_url = system.products_url("/products/buy");
    let body = items(&[(&Uuid::new_v4().to_string(), 1)]);
    send(system.http.post(&buy_url).json(&body))
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "buy without a token");
    send(
        system
            .http
            .post(&buy_url)
            .bearer_auth(tamper(token))
            .json(&body),
    )
    .await
    .expect_problem(StatusCode::UNAUTHORIZED, "buy with a tampered token");

    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_an_admin_adds_products_and_the_catalog_pages_oldest_first() {
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let shopper = system.user("shopper").await;
    let admin = system.admin().await;

    system
        .create_product(&shopper.token, "Lamp", 1500)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "a shopper adds a product");
    send(
        system
            .http
            .post(system.products_url("/products"))
            .json(&json!({ "name": "Lamp", "description": "A lamp", "price_cents": 1500 })),
    )
    .await
    .expect_problem(StatusCode::UNAUTHORIZED, "add a product without a token");
    system
        .create_product(&admin.token, "Free lunch", -1)
        .await
        .expect_problem(
            StatusCode::BAD_REQUEST,
            "add a product with a negative price",
        );

    let mut created = Vec::new();
    for (name, price) in [("Lamp", 1500), ("Rug", 8900), ("Vase", 2250)] {
        let product = system.product(&admin, name, price).await;
        assert_eq!(product["name"], name);
        assert_eq!(product["price_cents"], price);
        Uuid::parse_str(&id_of(&product)).expect("the id is a UUID");
        created.push(product);
    }

    let one = send(
        system
            .http
            .get(system.products_url(&format!("/products/{}", id_of(&created[1])))),
    )
    .await
    .expect(StatusCode::OK, "get a product");
    assert_eq!(one.body, created[1]);
    send(
        system
            .http
            .get(system.products_url(&format!("/products/{}", Uuid::new_v4()))),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "get a product that does not exist");

    let page = |query: &'static [(&'static str, &'static str)]| {
        send(
            system
                .http
                .get(system.products_url("/products"))
                .query(query),
        )
    };
    let all = page(&[]).await.expect(StatusCode::OK, "list products");
    assert_eq!(
        all.body,
        json!(created),
        "the catalog lists oldest first, without the product the shopper was refused"
    );
    let first = page(&[("limit", "2")])
        .await
        .expect(StatusCode::OK, "page 1");
    assert_eq!(first.body, json!(created[..2]));
    let second = page(&[("limit", "2"), ("offset", "2")])
        .await
        .expect(StatusCode::OK, "page 2");
    assert_eq!(second.body, json!(created[2..]));
    let beyond = page(&[("offset", "3")])
        .await
        .expect(StatusCode::OK, "past the end");
    assert_eq!(beyond.body, json!([]));
    let largest = page(&[("limit", "200")])
        .await
        .expect(StatusCode::OK, "the largest page");
    assert_eq!(largest.body, json!(created));
    for bad in [
        &[("limit", "201")][..],
        &[("limit", "0")],
        &[("offset", "-1")],
        &[("limit", "many")],
    ] {
        page(bad)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, &format!("list with {bad:?}"));
    }

    system.stop().await;
}

async fn a_buy_is_priced_by_the_catalog_and_shown_to_its_buyer_only(mode: ReplyMode) {
    let system = System::start(Options::new(mode)).await;
    let admin = system.admin().await;
    let lamp = system.product(&admin, "Lamp", 250).await;
    let rug = system.product(&admin, "Rug", 1999).await;
    let (lamp_id, rug_id) = (id_of(&lamp), id_of(&rug));
    let catalog = BTreeMap::from([(lamp_id.clone(), lamp), (rug_id.clone(), rug)]);
    let alice = system.user("alice").await;
    let bob = system.user("bob").await;

    let first = system
        .buy(&alice.token, &items(&[(&lamp_id, 2), (&rug_id, 1)]), None)
        .await
        .expect(StatusCode::CREATED, "buy with items");
    let first_id = id_of(&first.body);
    assert_eq!(
        first.location(),
        Some(format!("/orders/{first_id}").as_str())
    );
    assert_eq!(first.body["user_id"], alice.id.as_str());
    assert_eq!(first.body["status"], "created");
    let mut asked = vec![(lamp_id.clone(), 2), (rug_id.clone(), 1)];
    asked.sort();
    assert_eq!(lines_of(&first.body), asked);
    assert_priced_from_catalog(&first.body, &catalog);
    assert_eq!(first.body["total_cents"], 2 * 250 + 1999);

    let second = system
        .buy(&alice.token, &json!({ "ids": [lamp_id, rug_id] }), None)
        .await
        .expect(StatusCode::CREATED, "buy with ids");
    let second_id = id_of(&second.body);
    let mut one_each = vec![(lamp_id.clone(), 1), (rug_id.clone(), 1)];
    one_each.sort();
    assert_eq!(lines_of(&second.body), one_each, "each id is one of it");
    assert_priced_from_catalog(&second.body, &catalog);
    assert_eq!(second.body["total_cents"], 250 + 1999);

    let key = Uuid::new_v4().to_string();
    let three_rugs = items(&[(&rug_id, 3)]);
    let keyed = system
        .buy(&alice.token, &three_rugs, Some(&key))
        .await
        .expect(StatusCode::CREATED, "buy with an idempotency key");
    let keyed_id = id_of(&keyed.body);
    let replayed = system
        .buy(&alice.token, &three_rugs, Some(&key))
        .await
        .expect(StatusCode::CREATED, "replay the same buy with the same key");
    assert_eq!(
        id_of(&replayed.body),
        keyed_id,
        "a replay returns the same order"
    );
    assert_eq!(replayed.location(), keyed.location());
    system
        .buy(&alice.token, &items(&[(&rug_id, 4)]), Some(&key))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reuse a key with other lines",
        );

    let bobs = system
        .buy(&bob.token, &items(&[(&lamp_id, 5)]), None)
        .await
        .expect(StatusCode::CREATED, "bob buys");
    let bobs_id = id_of(&bobs.body);
    assert_eq!(bobs.body["user_id"], bob.id.as_str());

    let alices_orders = system.orders(&alice.token).await;
    let listed: Vec<String> = alices_orders.iter().map(id_of).collect();
    assert_eq!(
        listed,
        [keyed_id.as_str(), &second_id, &first_id],
        "alice sees her three orders, newest first, and not bob's"
    );
    let times: Vec<_> = alices_orders
        .iter()
        .map(|o| DateTime::parse_from_rfc3339(o["created_at"].as_str().expect("a time")).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert_eq!(
        alices_orders[2], first.body,
        "the list shows the order as it was answered"
    );
    let bobs_listed: Vec<String> = system.orders(&bob.token).await.iter().map(id_of).collect();
    assert_eq!(bobs_listed, [bobs_id.as_str()], "bob sees only his order");

    let own = system
        .order(&alice.token, &first_id)
        .await
        .expect(StatusCode::OK, "get one's own order");
    assert_eq!(own.body, first.body);
    system
        .order(&bob.token, &first_id)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "get someone else's order");
    system
        .order(&alice.token, &bobs_id)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "get someone else's order");
    system
        .order(&alice.token, &Uuid::new_v4().to_string())
        .await
        .expect_problem(StatusCode::NOT_FOUND, "get an order that does not exist");

    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buy_with_per_request_replies_is_priced_by_the_catalog_and_shown_to_its_buyer_only() {
    a_buy_is_priced_by_the_catalog_and_shown_to_its_buyer_only(ReplyMode::PerRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buy_with_direct_replies_is_priced_by_the_catalog_and_shown_to_its_buyer_only() {
    a_buy_is_priced_by_the_catalog_and_shown_to_its_buyer_only(ReplyMode::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buy_of_an_unknown_product_is_refused_and_nothing_is_published() {
    let mut system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let (lamp, alice) = system.lamp_and_alice().await;
    let lamp = id_of(&lamp);
    let broker = broker_connection().await;

    // With orders stopped, anything products published would stay in the queue to be counted.
    system.stop_orders().await;
    let unknown = Uuid::new_v4().to_string();
    for body in [
        items(&[(&unknown, 1)]),
        items(&[(&lamp, 1), (&unknown, 2)]),
        json!({ "ids": [unknown] }),
    ] {
        system
            .buy(&alice.token, &body, None)
            .await
            .expect_problem(StatusCode::NOT_FOUND, &format!("buy {body}"));
    }
    assert_eq!(
        message_count(&broker, &system.order_queue).await,
        Some(0),
        "a refused buy publishes nothing"
    );
    system.start_orders().await;

    assert_eq!(system.orders(&alice.token).await, Vec::<Value>::new());
    system
        .buy(&alice.token, &items(&[(&lamp, 1)]), None)
        .await
        .expect(StatusCode::CREATED, "buy a product that exists");
    assert_eq!(system.orders(&alice.token).await.len(), 1);

    let _ = broker.close(200, "done".into()).await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_buy_is_refused_with_a_problem_and_makes_no_order() {
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let (lamp, alice) = system.lamp_and_alice().await;
    let lamp = id_of(&lamp);

    let bodies = [
        json!({ "items": [] }),
        json!({ "ids": [] }),
        json!({}),
        items(&[(&lamp, 0)]),
        items(&[(&lamp, -1)]),
        items(&[(&lamp, 1001)]),
        json!({ "items": [{ "product_id": "lamp", "quantity": 1 }] }),
        json!({ "items": [{ "product_id": lamp, "quantity": 1, "unit_price_cents": 1 }] }),
        json!({ "items": [{ "product_id": lamp, "quantity": 1 }], "total_cents": 1 }),
        json!({ "items": [{ "product_id": lamp, "quantity": 1 }], "coupon": "FREE" }),
        json!([lamp]),
    ];
    for body in &bodies {
        system
            .buy(&alice.token, body, None)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, &format!("buy {body}"));
    }
    let url = system.products_url("/products/buy");
    send(
        system
            .http
            .post(&url)
            .bearer_auth(&alice.token)
            .header("Content-Type", "application/json")
            .body(r#"{"items": [{"product_id": "#),
    )
    .await
    .expect_problem(StatusCode::BAD_REQUEST, "buy with broken JSON");

    assert_eq!(
        system.orders(&alice.token).await,
        Vec::<Value>::new(),
        "no refused buy became an order"
    );
    system.stop().await;
}
