use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TOKEN_TTL, spawn_app};

#[tokio::test]
async fn logging_in_returns_a_bearer_token_that_verifies_against_the_jwks() {
    let (app, _db) = spawn_app().await;
    let id = app
        .registered_user("ann@example.com", "correct horse")
        .await;

    let response = app.login("ann@example.com", "correct horse").await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], TOKEN_TTL.as_secs());
    let token = body["access_token"].as_str().unwrap();
    let claims = app
        .verifier()
        .verify(token)
        .await
        .expect("the token verifies");
    assert_eq!(claims.sub.to_string(), id);
    assert_eq!(claims.email, "ann@example.com");
    assert!(claims.roles.is_empty());
    assert_eq!(claims.iss, "auth");
    assert_eq!(claims.aud, "shop");
    assert_eq!(claims.exp - claims.iat, TOKEN_TTL.as_secs() as i64);
}

#[tokio::test]
async fn logging_in_ignores_the_case_of_the_email() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;

    let response = app.login(" Ann@EXAMPLE.com", "correct horse").await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_get_the_same_401() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;

    let unknown = app.login("bob@example.com", "correct horse").await;
    let wrong = app.login("ann@example.com", "wrong horse").await;

    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let content_type = |r: &reqwest::Response| r.headers().get("content-type").cloned();
    assert_eq!(content_type(&unknown), content_type(&wrong));
    assert_eq!(unknown.bytes().await.unwrap(), wrong.bytes().await.unwrap());
}

#[tokio::test]
async fn a_password_too_short_to_be_anyones_is_refused_like_a_wrong_one() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;

    let short = app.login("ann@example.com", "short").await;
    let wrong = app.login("ann@example.com", "wrong horse").await;

    assert_eq!(short.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(short.bytes().await.unwrap(), wrong.bytes().await.unwrap());
}

#[tokio::test]
async fn a_login_body_with_an_unknown_field_answers_400() {
    let (app, _db) = spawn_app().await;

    let response = app
        .post_json(
            "/auth/login",
            &json!({ "email": "ann@example.com", "password": "correct horse", "remember": true }),
        )
        .await;

    crate::support::assert_problem(response, StatusCode::BAD_REQUEST).await;
}
