//! Many buyers at once: every answer must reach the buyer who asked, in both reply modes.
//!
//! That no per-request reply queue outlives its request is checked in `broker_restart`, the one
//! binary that runs alone: here other tests' reply queues come and go on the same broker, and
//! which of them are ours cannot be seen over HTTP.

mod support;

use common::amqp::ReplyMode;
use support::{Options, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_buys_with_per_request_replies_each_reach_their_buyer() {
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    system
        .assert_concurrent_buys_reach_their_buyers(10, 200)
        .await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_buys_with_direct_replies_each_reach_their_buyer() {
    let system = System::start(Options::new(ReplyMode::Direct)).await;
    system
        .assert_concurrent_buys_reach_their_buyers(10, 200)
        .await;
    system.stop().await;
}
