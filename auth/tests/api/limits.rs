//! The abuse limits over HTTP: rate limits per address and per email, the trusted proxies, and
//! the bounded hashing queue under a flood.

use std::time::{Duration, Instant};

use auth::{
    config::Config,
    limits::{Rate, RateLimitConfig, parse_networks},
    password::HashQueueConfig,
};
use common::testing::{TestDatabase, metrics::value};
use futures::{StreamExt, stream};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, assert_problem, client_from, retry_after, spawn_app_with};

/// Limits generous enough that only the one a test tightens is met.
fn roomy() -> RateLimitConfig {
    RateLimitConfig {
        enabled: true,
        login_per_ip: Rate::new(1000, 1000),
        login_per_email: Rate::new(1000, 1000),
        register_per_ip: Rate::new(1000, 1000),
        register_per_email: Rate::new(1000, 1000),
        trusted_proxies: Vec::new(),
    }
}

async fn app_with_limits(db: &TestDatabase, limits: RateLimitConfig) -> TestApp {
    spawn_app_with(db, |config: &mut Config| config.rate_limits = limits).await
}

#[tokio::test]
async fn logins_from_one_address_past_its_burst_answer_429_with_retry_after() {
    let db = TestDatabase::create().await;
    let app = app_with_limits(
        &db,
        RateLimitConfig {
            login_per_ip: Rate::new(3, 1),
            ..roomy()
        },
    )
    .await;
    app.registered_user("ann@example.com", "correct horse")
        .await;

    for _ in 0..3 {
        let wrong = app.login("ann@example.com", "wrong horse").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = app.login("bob@example.com", "any password").await;

    let wait = retry_after(&limited);
    assert!(
        (1..=60).contains(&wait),
        "one attempt a minute comes back: {wait}"
    );
    let body = assert_problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(
        body["detail"].as_str().unwrap().contains("Retry-After"),
        "{body}"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        value(
            &metrics,
            "shop_rate_limited_total",
            &[("limit", "login_per_ip")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, "shop_logins_total", &[("outcome", "refused")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn another_address_logs_in_at_once_while_one_address_is_limited() {
    let db = TestDatabase::create().await;
    let app = app_with_limits(
        &db,
        RateLimitConfig {
            login_per_ip: Rate::new(2, 1),
            ..roomy()
        },
    )
    .await;
    app.registered_user("ann@example.com", "correct horse")
        .await;
    let flooder = client_from("127.0.0.1");
    for _ in 0..3 {
        app.login_with(&flooder, "ann@example.com", "wrong horse")
            .await;
    }
    let limited = app
        .login_with(&flooder, "ann@example.com", "correct horse")
        .await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);

    let elsewhere = client_from("127.0.0.2");
    let response = app
        .login_with(&elsewhere, "ann@example.com", "correct horse")
        .await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn repeated_failures_for_one_email_limit_that_email_and_no_other() {
    let db = TestDatabase::create().await;
    let app = app_with_limits(
        &db,
        RateLimitConfig {
            login_per_email: Rate::new(3, 1),
            ..roomy()
        },
    )
    .await;
    app.registered_user("ann@example.com", "correct horse")
        .await;
    app.registered_user("bob@example.com", "bob's own password")
        .await;

    // Guesses at ann's password, each from an address of its own, so only the email's limit
    // can stop them.
    for n in 0..3 {
        let guesser = client_from(&format!("127.0.1.{}", n + 1));
        let wrong = app
            .login_with(&guesser, "Ann@Example.com", &format!("guess number {n}"))
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let guesser = client_from("127.0.1.9");
    let limited = app
        .login_with(&guesser, "ann@example.com", "correct horse")
        .await;
    let bob = app
        .login_with(&guesser, "bob@example.com", "bob's own password")
        .await;

    assert!(retry_after(&limited) >= 1);
    assert_problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        bob.status(),
        StatusCode::OK,
        "another account is not slowed"
    );
}

#[tokio::test]
async fn registrations_are_limited_per_address_and_per_email() {
    let db = TestDatabase::create().await;
    let app = app_with_limits(
        &db,
        RateLimitConfig {
            register_per_ip: Rate::new(3, 1),
            register_per_email: Rate::new(2, 1),
            ..roomy()
        },
    )
    .await;
    let register = |client: reqwest::Client, email: &'static str| {
        let app = &app;
        async move {
            app.post_json_with(
                &client,
                "/auth/register",
                &json!({ "email": email, "password": "correct horse" }),
            )
            .await
        }
    };

    // One email asked about over and over, from fresh addresses: its 409 is not for bulk.
    let first = register(client_from("127.0.2.1"), "ann@example.com").await;
    let taken = register(client_from("127.0.2.2"), "ANN@example.com").await;
    let limited_email = register(client_from("127.0.2.3"), "ann@example.com").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert_eq!(limited_email.status(), StatusCode::TOO_MANY_REQUESTS);

    // One address registering many emails.
    let one = client_from("127.0.2.9");
    for email in ["b@example.com", "c@example.com", "d@example.com"] {
        assert_eq!(
            register(one.clone(), email).await.status(),
            StatusCode::CREATED
        );
    }
    let limited_address = register(one, "e@example.com").await;
    assert!(retry_after(&limited_address) >= 1);
    assert_problem(limited_address, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_when_the_peer_is_a_trusted_proxy() {
    let db = TestDatabase::create().await;
    let limits = RateLimitConfig {
        login_per_ip: Rate::new(1, 1),
        ..roomy()
    };
    let trusting = app_with_limits(
        &db,
        RateLimitConfig {
            trusted_proxies: parse_networks("127.0.3.1").unwrap(),
            ..limits.clone()
        },
    )
    .await;
    let login = |app: &TestApp, from: &str, forwarded_for: &str| {
        let request = client_from(from)
            .post(app.url("/auth/login"))
            .header("X-Forwarded-For", forwarded_for)
            .json(&json!({ "email": "nobody@example.com", "password": "any password" }))
            .send();
        async move { request.await.expect("the service answers").status() }
    };

    // Through the proxy, each client has its own allowance, whatever it wrote itself.
    assert_eq!(
        login(&trusting, "127.0.3.1", "203.0.113.1").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&trusting, "127.0.3.1", "1.1.1.1, 203.0.113.2").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&trusting, "127.0.3.1", "203.0.113.2").await,
        StatusCode::TOO_MANY_REQUESTS,
        "the client's own entry cannot buy it a fresh allowance"
    );
    // From a peer that is not a trusted proxy, the header counts for nothing.
    assert_eq!(
        login(&trusting, "127.0.3.2", "203.0.113.3").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&trusting, "127.0.3.2", "203.0.113.4").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_login_flood_past_the_hash_queue_answers_503_at_once_and_health_stays_fast() {
    let db = TestDatabase::create().await;
    let app = spawn_app_with(&db, |config| {
        config.hash_concurrency = 1;
        config.hash_queue = HashQueueConfig {
            capacity: 2,
            ..HashQueueConfig::for_concurrency(1)
        };
        config.rate_limits.enabled = false;
    })
    .await;
    app.registered_user("ann@example.com", "correct horse")
        .await;

    let flood = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/auth/login"));
        async move {
            stream::iter(0..48)
                .map(|n| {
                    let request = http
                        .post(&url)
                        .json(&json!({ "email": "ann@example.com", "password": format!("guess {n}") }))
                        .send();
                    async move {
                        let response = request.await.expect("the service answers");
                        let status = response.status();
                        let retry = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                        (status, retry)
                    }
                })
                .buffer_unordered(48)
                .collect::<Vec<_>>()
                .await
        }
    });
    let mut slowest = Duration::ZERO;
    for path in ["/healthz", "/readyz", "/auth/.well-known/jwks.json"] {
        let started = Instant::now();
        let response = app.get(path).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let answers = flood.await.unwrap();

    let busy: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let checked = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::UNAUTHORIZED)
        .count();
    assert!(!busy.is_empty(), "a full queue refuses: {answers:?}");
    assert!(
        busy.iter().all(|(_, retry)| *retry >= Some(1)),
        "{answers:?}"
    );
    assert!(checked >= 1, "what the queue held was checked: {answers:?}");
    assert_eq!(busy.len() + checked, answers.len(), "{answers:?}");
    // Generous for a loaded machine: what it guards against is waiting behind the hashes.
    assert!(
        slowest < Duration::from_secs(2),
        "other routes answered in {slowest:?}"
    );
}

#[tokio::test]
async fn a_real_user_logs_in_from_another_address_while_one_address_floods_login() {
    // The production defaults: what SECURITY.md's measured flood runs against, in small.
    let db = TestDatabase::create().await;
    let app = app_with_limits(&db, RateLimitConfig::default()).await;
    app.registered_user("real@example.com", "the real password")
        .await;
    app.registered_user("victim@example.com", "the victim's password")
        .await;

    let flood = tokio::spawn({
        let (flooder, url) = (client_from("127.0.0.1"), app.url("/auth/login"));
        async move {
            stream::iter(0..200)
                .map(|n| {
                    let request = flooder
                        .post(&url)
                        .json(&json!({ "email": "victim@example.com", "password": format!("guess {n}") }))
                        .send();
                    async move { request.await.expect("the service answers").status() }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await
        }
    });
    let real = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = app
            .login_with(&real, "real@example.com", "the real password")
            .await;
        statuses.push(response.status());
    }
    let flooded = flood.await.unwrap();

    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "the real user's logins: {statuses:?}"
    );
    let limited = flooded
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        limited >= 150,
        "most of the flood is refused unhashed: {flooded:?}"
    );
}
