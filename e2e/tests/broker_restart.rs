//! Tests that need the broker to themselves: a RabbitMQ restart under running services, and
//! counting reply queues left on the broker.
//!
//! Restarting RabbitMQ breaks every other test using it, and another test's reply queues would
//! blur the count, so this binary runs alone: `scripts/test` gives it a phase of its own, and
//! `.config/nextest.toml` (or the lock below, under `cargo test`) runs its tests one at a time.
//! `rabbitmqctl` talks to the node `RABBITMQ_NODENAME` names, as it always does, which must be
//! the node behind `AMQP_URL`.

mod support;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::{amqp::ReplyMode, testing::wait_until};
use reqwest::StatusCode;
use serde_json::Value;
use support::{Options, System, items};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Runs `rabbitmqctl` and returns its standard output; panics when it fails.
async fn rabbitmqctl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("rabbitmqctl did not run ({e}); these tests need it on PATH"));
    assert!(
        output.status.success(),
        "rabbitmqctl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Starts the broker's application again when dropped armed, so a test that fails while the
/// broker is stopped does not leave it stopped for everything after it.
struct RestartGuard {
    armed: bool,
}

impl Drop for RestartGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::process::Command::new("rabbitmqctl")
                .arg("start_app")
                .status();
        }
    }
}

/// The names of the exclusive queues on the broker: reply queues are exclusive to the
/// connection that asked, the order queues are not.
async fn exclusive_queues() -> BTreeSet<String> {
    let listed = rabbitmqctl(&[
        "list_queues",
        "name",
        "exclusive",
        "--formatter",
        "json",
        "--silent",
    ])
    .await;
    let queues: Vec<Value> = serde_json::from_str(&listed)
        .unwrap_or_else(|e| panic!("rabbitmqctl list_queues printed no JSON ({e}): {listed}"));
    queues
        .iter()
        .filter(|q| q["exclusive"] == true)
        .map(|q| q["name"].as_str().expect("a queue name").to_owned())
        .collect()
}

async fn buying_works_again_after_the_broker_restarts(mode: ReplyMode) {
    let _alone = ONE_AT_A_TIME.lock().await;
    // Short, so an attempt lost in the restart does not hold up the next one for long.
    let rpc_timeout = Duration::from_secs(3);
    let system = System::start(Options::new(mode).with_rpc_timeout(rpc_timeout)).await;
    let admin = system.admin().await;
    let lamp = system.product(&admin, "Lamp", 250).await;
    let lamp = items(&[(lamp["id"].as_str().expect("an id"), 1)]);
    let alice = system.user("alice").await;
    let before = system
        .buy(&alice.token, &lamp, None)
        .await
        .expect(StatusCode::CREATED, "buy before the restart");

    let mut guard = RestartGuard { armed: true };
    rabbitmqctl(&["stop_app"]).await;
    wait_until(
        Duration::from_secs(10),
        "products and orders to report not ready while the broker is down",
        || async {
            let down = (
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::SERVICE_UNAVAILABLE,
            );
            (system.readiness().await == down).then_some(())
        },
    )
    .await;
    rabbitmqctl(&["start_app"]).await;
    guard.armed = false;
    rabbitmqctl(&["await_startup"]).await;

    // One attempt every half second: each may wait for its reply, and a burst of attempts
    // would only pile requests onto a broker that is still coming back.
    let mut last_attempt: Option<Instant> = None;
    let after = wait_until(
        Duration::from_secs(30),
        "a buy to succeed after the broker restarted, with no service restarted",
        || {
            let due = last_attempt.is_none_or(|t| t.elapsed() >= Duration::from_millis(500));
            if due {
                last_attempt = Some(Instant::now());
            }
            let (system, alice, lamp) = (&system, &alice, &lamp);
            async move {
                if !due {
                    return None;
                }
                let reply = system.buy(&alice.token, lamp, None).await;
                (reply.status == StatusCode::CREATED).then_some(reply.body)
            }
        },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "products and orders to report ready again",
        || async { (system.readiness().await == (StatusCode::OK, StatusCode::OK)).then_some(()) },
    )
    .await;

    let listed: Vec<Value> = system.orders(&alice.token).await;
    for order in [&before.body, &after] {
        assert!(
            listed.iter().any(|o| o["id"] == order["id"]),
            "order {} is listed after the restart",
            order["id"]
        );
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buying_with_per_request_replies_works_again_after_the_broker_restarts() {
    buying_works_again_after_the_broker_restarts(ReplyMode::PerRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buying_with_direct_replies_works_again_after_the_broker_restarts() {
    buying_works_again_after_the_broker_restarts(ReplyMode::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_reply_queue_outlives_two_hundred_concurrent_per_request_buys() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    // Queues that exist already belong to connections that are not this test's buys.
    let before = exclusive_queues().await;
    system
        .assert_concurrent_buys_reach_their_buyers(10, 200)
        .await;
    wait_until(
        Duration::from_secs(10),
        "every per-request reply queue to be deleted \
         (see `rabbitmqctl list_queues name exclusive consumers`)",
        || async {
            let now = exclusive_queues().await;
            now.is_subset(&before).then_some(())
        },
    )
    .await;
    system.stop().await;
}
