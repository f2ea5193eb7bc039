//! products and a missing order queue: it looks the queue up, never creates it, and is not ready
//! until whoever owns the queue (orders, or the broker's definitions) has made it.
//!
//! A binary of its own: the test reads products' log lines, so it installs the process's one
//! log subscriber before anything else can.

mod support;

use common::{
    telemetry::{self, Spans},
    testing::{CapturedLogs, PATIENCE, queue_counts, require_broker, wait_until},
};
use reqwest::StatusCode;
use serde_json::json;
use support::{Amqp, Options, assert_problem, spawn_app_with};

#[tokio::test]
async fn products_started_before_its_queue_exists_waits_unready_without_creating_it() {
    let logs = CapturedLogs::default();
    let _telemetry = telemetry::init_with("products", Spans::Dropped, logs.clone());
    require_broker().await;
    let app = spawn_app_with(Options {
        declare_queue: false,
        wait_ready: false,
        ..Options::default()
    })
    .await;

    wait_until(PATIENCE, "products to look for its queue twice", || async {
        let misses = logs
            .lines()
            .iter()
            .filter(|line| line["fields"]["message"] == "the order queue is not there yet")
            .count();
        (misses >= 2).then_some(())
    })
    .await;
    let ready = assert_problem(app.get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(ready["checks"]["broker"], "up");
    assert_eq!(ready["checks"]["order_queue"], "down");
    let cup = app.create_product("Cup", 450).await;
    let buy = app.buy(&json!({"ids": [cup.id]})).await;
    assert_problem(buy, StatusCode::SERVICE_UNAVAILABLE).await;
    let amqp = Amqp::connect().await;
    assert!(
        queue_counts(&amqp.channel, &app.queue).await.is_err(),
        "products created the queue"
    );

    Amqp::connect().await.declare(&app.queue).await;

    app.wait_ready().await;
}
