use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{assert_problem, spawn_app};

#[tokio::test]
async fn the_service_is_live_and_ready_with_its_database_named() {
    let (app, _db) = spawn_app().await;

    let health = app.get("/healthz").await;
    let ready = app.get("/readyz").await;

    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "up");
    assert_eq!(ready["checks"]["database"], "up");
}

#[tokio::test]
async fn an_unknown_route_answers_404_with_a_problem_body() {
    let (app, _db) = spawn_app().await;

    let response = app.get("/auth/nothing-here").await;

    assert_problem(response, StatusCode::NOT_FOUND).await;
}
