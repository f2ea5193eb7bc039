//! What an attacker on the internet can send in place of a token, against the real services:
//! auth signing with a known key, products and orders verifying against its JWKS. Every forgery
//! answers 401 with a problem body on the protected routes of both, a key set that cannot be
//! fetched answers 503, and one user's idempotency key never shows another user's order.

mod support;

use common::{
    amqp::ReplyMode,
    ids::UserId,
    testing::{Forgery, SIGNING_KEY_PEM, TokenForge, claims_for},
};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;
use support::{Options, Reply, System, id_of, items, send};
use uuid::Uuid;

/// A key file auth signs with, deleted when dropped.
struct KeyFile(std::path::PathBuf);

impl KeyFile {
    fn new(pem: &str) -> Self {
        let path = std::env::temp_dir().join(format!("e2e-jwt-{}.pem", Uuid::new_v4()));
        std::fs::write(&path, pem).expect("write the key file");
        Self(path)
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts the system with auth signing with [`SIGNING_KEY_PEM`], and returns a forge holding
/// the same key under the kid auth publishes it with.
async fn system_with_known_key(key: &KeyFile) -> (System, TokenForge) {
    let keys = auth::config::KeyConfig {
        private_key_file: Some(key.0.clone()),
        ..Default::default()
    };
    let system = System::start_with_keys(Options::new(ReplyMode::PerRequest), keys).await;
    let jwks = send(
        system
            .http
            .get(system.auth_url("/auth/.well-known/jwks.json")),
    )
    .await
    .expect(StatusCode::OK, "fetch the JWKS");
    let kid = jwks.body["keys"][0]["kid"]
        .as_str()
        .expect("the key has a kid");
    (system, TokenForge::new(SIGNING_KEY_PEM, kid))
}

/// The protected routes tried with each token: a buy and a new product at products, the order
/// list at orders.
fn protected_requests(system: &System, token: &str, product_id: &str) -> Vec<RequestBuilder> {
    vec![
        system
            .http
            .post(system.products_url("/products/buy"))
            .bearer_auth(token)
            .json(&items(&[(product_id, 1)])),
        system
            .http
            .post(system.products_url("/products"))
            .bearer_auth(token)
            .json(&serde_json::json!({
                "name": "Forged",
                "description": "Added with a forged token",
                "price_cents": 1,
            })),
        system
            .http
            .get(system.orders_url("/orders"))
            .bearer_auth(token),
    ]
}

fn describe(reply: &Reply) -> String {
    format!("{} {}", reply.status, reply.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_forged_token_answers_401_with_a_problem_at_products_and_orders() {
    let key = KeyFile::new(SIGNING_KEY_PEM);
    let (system, forge) = system_with_known_key(&key).await;
    let admin = system.admin().await;
    let lamp = id_of(&system.product(&admin, "Lamp", 250).await);

    // The forge's own genuine token is accepted, so each refusal below is for what was forged.
    let genuine = forge.sign(&claims_for(UserId::new(), &[]));
    send(
        system
            .http
            .get(system.orders_url("/orders"))
            .bearer_auth(&genuine),
    )
    .await
    .expect(StatusCode::OK, "a token signed with auth's key");

    let mut accepted = Vec::new();
    for forgery in Forgery::ALL {
        let token = forge.forge(forgery, UserId::new());
        for request in protected_requests(&system, &token, &lamp) {
            let reply = send(request).await;
            // A head this large is refused by the HTTP layer with a bare 431 when it notices
            // (it does when the head arrives over several reads); one that gets through is
            // refused by the verifier for its length, before any parsing.
            let clean = (reply.status == StatusCode::UNAUTHORIZED && reply.is_problem())
                || (forgery == Forgery::Oversized
                    && reply.status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            if !clean {
                accepted.push(format!("{forgery:?}: {}", describe(&reply)));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "forged tokens not refused as they must be:\n{}",
        accepted.join("\n")
    );

    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_that_is_not_valid_for_another_hour_is_refused_by_both_services() {
    let key = KeyFile::new(SIGNING_KEY_PEM);
    let (system, forge) = system_with_known_key(&key).await;
    let token = forge.forge(Forgery::NotYetValid, UserId::new());

    let orders = send(
        system
            .http
            .get(system.orders_url("/orders"))
            .bearer_auth(&token),
    )
    .await;
    let products = send(
        system
            .http
            .post(system.products_url("/products/buy"))
            .bearer_auth(&token)
            .json(&items(&[(&Uuid::new_v4().to_string(), 1)])),
    )
    .await;

    orders.expect_problem(StatusCode::UNAUTHORIZED, "GET /orders with nbf in an hour");
    products.expect_problem(
        StatusCode::UNAUTHORIZED,
        "POST /products/buy with nbf in an hour",
    );
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_key_set_cannot_be_fetched_protected_routes_answer_503_with_retry_after() {
    let mut system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let alice = system.user("alice").await;
    // Nothing was verified yet, so neither service holds auth's keys when auth goes away.
    system.stop_auth().await;

    let replies = [
        send(
            system
                .http
                .get(system.orders_url("/orders"))
                .bearer_auth(&alice.token),
        )
        .await,
        send(
            system
                .http
                .post(system.products_url("/products/buy"))
                .bearer_auth(&alice.token)
                .json(&items(&[(&Uuid::new_v4().to_string(), 1)])),
        )
        .await,
    ];

    for reply in replies {
        let retry_after = reply
            .headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let reply = reply.expect_problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "a token that cannot be checked",
        );
        assert!(
            retry_after.is_some_and(|s| s >= 1),
            "Retry-After in seconds: {:?}",
            reply.headers
        );
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_users_idempotency_key_never_returns_the_first_users_order() {
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let (lamp, alice) = system.lamp_and_alice().await;
    let lamp = id_of(&lamp);
    let bob = system.user("bob").await;
    let key = Uuid::new_v4().to_string();
    let body = items(&[(&lamp, 2)]);
    let alices = system
        .buy(&alice.token, &body, Some(&key))
        .await
        .expect(StatusCode::CREATED, "alice buys with a key");

    // Bob replays alice's key, with her very body and with another one.
    let same_body = system
        .buy(&bob.token, &body, Some(&key))
        .await
        .expect(StatusCode::CREATED, "bob buys with alice's key and body");
    let other_body = system
        .buy(&bob.token, &items(&[(&lamp, 3)]), Some(&key))
        .await;

    for reply in [&same_body, &other_body] {
        assert_ne!(
            reply.body["id"], alices.body["id"],
            "bob got alice's order: {}",
            reply.body
        );
        assert_ne!(reply.body["user_id"], alice.id.as_str());
        let text = reply.body.to_string();
        assert!(!text.contains(&alice.id), "alice's id leaks: {text}");
    }
    assert_eq!(same_body.body["user_id"], bob.id.as_str());
    let bobs: Vec<Value> = system.orders(&bob.token).await;
    assert!(
        bobs.iter().all(|o| o["user_id"] == bob.id.as_str()),
        "bob lists only his orders: {bobs:?}"
    );
    let alices_list: Vec<String> = system
        .orders(&alice.token)
        .await
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(
        alices_list,
        [id_of(&alices.body)],
        "alice's orders are hers alone"
    );
    system.stop().await;
}
