//! What every answer carries (nosniff, no-store on tokens, fixed problem texts), the OpenAPI
//! document against the routes, and the deadlines a slow client meets.

use std::time::Duration;

use common::testing::{assert_not_stored, openapi::assert_document_matches_routes};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use crate::support::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn the_openapi_document_names_every_route_auth_serves_and_no_other() {
    let (app, _db) = spawn_app().await;
    assert_document_matches_routes(&app, auth::routes::configure).await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_bearer_scheme_and_the_problem_body() {
    let (app, _db) = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();

    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for member in ["type", "title", "status", "detail"] {
        assert!(problem.get(member).is_some(), "Problem lacks {member}");
    }
    let login = &doc["paths"]["/auth/login"]["post"]["responses"];
    for status in ["200", "400", "401", "429", "503"] {
        assert!(
            login.get(status).is_some(),
            "login does not document {status}"
        );
    }
}

#[tokio::test]
async fn an_unknown_field_chosen_by_the_client_is_not_echoed_in_the_problem() {
    let (app, _db) = spawn_app().await;
    let field = format!("<script>{}</script>", "x".repeat(10_000));

    let response = app
        .post_json(
            "/auth/register",
            &json!({"email": "ann@example.com", "password": "correct horse", field.clone(): 1}),
        )
        .await;

    let body = assert_problem(response, StatusCode::BAD_REQUEST).await;
    let detail = body["detail"].as_str().unwrap();
    assert_eq!(detail, "The body has an unknown field.");
    assert!(!detail.contains("script"));
}

#[tokio::test]
async fn a_missing_field_is_named() {
    let (app, _db) = spawn_app().await;

    let response = app
        .post_json("/auth/register", &json!({"email": "ann@example.com"}))
        .await;

    let body = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["detail"], "The body lacks the field `password`.");
}

#[tokio::test]
async fn every_answer_forbids_content_sniffing_whether_success_missing_route_or_problem() {
    let (app, _db) = spawn_app().await;
    let ok = app.get("/healthz").await;
    let missing = app.get("/no/such/route").await;
    let problem = app.post_json("/auth/login", &json!({})).await;

    for (what, response) in [("200", ok), ("404", missing), ("400", problem)] {
        assert_eq!(
            response.headers().get(header::X_CONTENT_TYPE_OPTIONS),
            Some(&header::HeaderValue::from_static("nosniff")),
            "{what} {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn tokens_and_registrations_are_never_stored_by_a_cache_while_the_jwks_may_be() {
    let (app, _db) = spawn_app().await;
    let registered = app.register("ann@example.com", "correct horse").await;
    let login = app.login("ann@example.com", "correct horse").await;
    let jwks = app.get("/auth/.well-known/jwks.json").await;

    assert_eq!(registered.status(), StatusCode::CREATED);
    assert_eq!(login.status(), StatusCode::OK);
    for response in [registered, login] {
        assert_not_stored(&response);
    }
    assert_eq!(
        jwks.headers().get(header::CACHE_CONTROL),
        Some(&header::HeaderValue::from_static("public, max-age=300"))
    );
}

/// Writes `sent` to a fresh connection to `port`, then sends nothing more and returns what
/// the server answers before it closes the connection, and when it closed it.
async fn stall_after(port: u16, sent: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let mut answer = Vec::new();
    // Bounded: a server that never closes fails the test instead of hanging it.
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server closed the connection")
        .ok();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_client_that_stops_sending_its_headers_is_cut_off_at_the_head_timeout() {
    let db = common::testing::TestDatabase::create().await;
    let app = spawn_app_with(&db, |config| {
        config.server.timeouts.request_head = Duration::from_millis(500);
    })
    .await;

    let (answer, after) = stall_after(app.port, b"POST /auth/login HTTP/1.1\r\nHost: x\r\n").await;

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_is_answered_408_at_the_body_timeout() {
    let db = common::testing::TestDatabase::create().await;
    let app = spawn_app_with(&db, |config| {
        config.server.timeouts.request_body = Duration::from_millis(500);
    })
    .await;
    let head = "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{\"email\": \"ann@exa";

    let (answer, after) = stall_after(app.port, head.as_bytes()).await;

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("application/problem+json"), "{answer:?}");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
}
