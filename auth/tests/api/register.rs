use reqwest::StatusCode;
use serde_json::{Value, json};

use auth::limits::Rate;
use common::testing::TestDatabase;

use crate::support::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn registering_answers_201_with_the_id_normalised_email_and_creation_time() {
    let (app, _db) = spawn_app().await;

    let response = app
        .register("  Ann.Lee@Example.com ", "correct horse")
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["created_at", "email", "id"]);
    assert_eq!(body["email"], "ann.lee@example.com");
    uuid::Uuid::parse_str(body["id"].as_str().unwrap()).expect("the id is a UUID");
    let created_at = body["created_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(created_at).expect("created_at is RFC 3339");
    assert!(created_at.ends_with('Z'), "created_at is UTC: {created_at}");
}

#[tokio::test]
async fn registering_with_a_name_is_accepted() {
    let (app, _db) = spawn_app().await;

    let response = app
        .post_json(
            "/auth/register",
            &json!({ "email": "ann@example.com", "password": "correct horse", "name": "Ann" }),
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn registering_an_email_that_differs_only_in_case_answers_409() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;

    let response = app.register("ANN@Example.COM", "another password").await;

    assert_problem(response, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn of_simultaneous_registrations_for_one_email_exactly_one_succeeds() {
    let db = TestDatabase::create().await;
    // Room for all four under the limit on registering one email.
    let app = spawn_app_with(&db, |config| {
        config.rate_limits.register_per_email = Rate::new(4, 1);
    })
    .await;
    let emails = [
        "race@example.com",
        "RACE@example.com",
        "Race@Example.com",
        "race@EXAMPLE.com",
    ];

    let statuses = futures::future::join_all(
        emails
            .iter()
            .map(|email| app.register(email, "correct horse")),
    )
    .await
    .into_iter()
    .map(|r| r.status())
    .collect::<Vec<_>>();

    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, emails.len() - 1), "{statuses:?}");
}

#[tokio::test]
async fn registering_with_an_invalid_email_answers_400() {
    let (app, _db) = spawn_app().await;

    for email in ["", "not-an-email", "ann@localhost", "a@@example.com"] {
        let response = app.register(email, "correct horse").await;
        let body = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert!(body["detail"].as_str().unwrap().contains("email"), "{body}");
    }
}

#[tokio::test]
async fn registering_with_a_password_shorter_than_8_characters_answers_400() {
    let (app, _db) = spawn_app().await;

    let response = app.register("ann@example.com", "1234567").await;

    let body = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("password"),
        "{body}"
    );
}

#[tokio::test]
async fn a_register_body_with_an_unknown_field_answers_400() {
    let (app, _db) = spawn_app().await;

    let response = app
        .post_json(
            "/auth/register",
            &json!({ "email": "ann@example.com", "password": "correct horse", "roles": ["admin"] }),
        )
        .await;

    assert_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_answers_400_with_a_problem_body() {
    let (app, _db) = spawn_app().await;

    let response = app
        .http
        .post(app.url("/auth/register"))
        .header("Content-Type", "application/json")
        .body("{\"email\": \"ann@example.com\", ")
        .send()
        .await
        .unwrap();

    assert_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn registering_a_look_alike_spelling_of_a_taken_email_answers_409() {
    let (app, _db) = spawn_app().await;
    app.registered_user("ann@example.com", "correct horse")
        .await;

    // Fullwidth letters and at sign: NFKC folds them into the plain ones.
    let fullwidth = app
        .register(
            "\u{ff41}\u{ff4e}\u{ff4e}\u{ff20}example.com",
            "another password",
        )
        .await;
    let login = app.login("\u{ff21}NN@example.com", "correct horse").await;

    assert_problem(fullwidth, StatusCode::CONFLICT).await;
    assert_eq!(login.status(), StatusCode::OK, "the same account logs in");
}
