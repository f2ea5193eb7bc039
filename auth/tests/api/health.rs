use std::time::Duration;

use auth::startup::Application;
use common::testing::TestDatabase;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::support::{assert_problem, spawn_app, test_config};

#[tokio::test]
async fn the_service_is_healthy_and_ready_with_its_database() {
    let (app, _db) = spawn_app().await;

    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();

    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_route_answers_404_with_a_problem_body() {
    let (app, _db) = spawn_app().await;

    let response = app
        .http
        .get(app.url("/auth/nothing-here"))
        .send()
        .await
        .unwrap();

    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn cancelling_the_shutdown_token_stops_the_service() {
    let db = TestDatabase::create().await;
    let shutdown = CancellationToken::new();
    let app = Application::build(test_config(&db), shutdown.clone())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}/healthz", app.port());
    let running = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(&address).send().await.unwrap().status(),
        StatusCode::OK
    );

    shutdown.cancel();

    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the service stops within 10 seconds")
        .unwrap()
        .expect("the service stops cleanly");
    assert!(
        http.get(&address).send().await.is_err(),
        "nothing listens any more"
    );
}
