//! Round trips per second through `RpcClient` and `serve`, in both reply modes, against the
//! RabbitMQ at `AMQP_URL`. A load run, not a test: it asserts nothing and logs its results.
//!
//! `cargo run --release -p common --example rpc_rate -- [calls] [concurrency]`
//! (defaults: 2000 calls, 32 at a time).

use std::time::{Duration, Instant};

use anyhow::Context;
use common::amqp::{
    self, Broker, CallOptions, Incoming, Outcome, ReplyMode, RpcClient, RpcRequest,
    dead_letter_queue,
};
use futures::{StreamExt, stream};
use lapin::options::QueueDeleteOptions;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Serialize, Deserialize)]
struct Ping {
    n: u32,
}

#[derive(Serialize, Deserialize)]
struct Pong {
    n: u32,
}

impl RpcRequest for Ping {
    const MESSAGE_TYPE: &'static str = "bench.ping.v1";
    type Reply = Pong;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("rpc_rate");
    let mut args = std::env::args().skip(1);
    let calls: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);

    let shutdown = CancellationToken::new();
    let broker = Broker::start(common::config::AmqpConfig::from_env().url, shutdown.clone());
    anyhow::ensure!(
        broker.wait_connected(Duration::from_secs(10)).await,
        "RabbitMQ is not answering at AMQP_URL"
    );
    let queue = format!("rpc_rate.{}", uuid::Uuid::new_v4().simple());
    let channel = broker
        .connection()
        .context("connected")?
        .create_channel()
        .await?;
    amqp::declare_work_queue(&channel, &queue).await?;
    let server = tokio::spawn(amqp::serve(
        broker.clone(),
        queue.clone(),
        64,
        |incoming: Incoming<Ping>| async move {
            Outcome::Reply(Pong {
                n: incoming.request.n,
            })
        },
        shutdown.clone(),
    ));

    for mode in [ReplyMode::Direct, ReplyMode::PerRequest] {
        let client = RpcClient::<Ping>::new(broker.clone(), &queue, mode, Duration::from_secs(10));
        // Warm-up: channels opened, consumer subscribed.
        run(&client, 100, concurrency).await?;
        let started = Instant::now();
        run(&client, calls, concurrency).await?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            ?mode,
            calls,
            concurrency,
            seconds,
            round_trips_per_second = (f64::from(calls) / seconds).round(),
            "rpc rate"
        );
    }

    shutdown.cancel();
    server.await??;
    for name in [queue.clone(), dead_letter_queue(&queue)] {
        channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    broker.close().await;
    Ok(())
}

async fn run(client: &RpcClient<Ping>, calls: u32, concurrency: usize) -> anyhow::Result<()> {
    let mut replies = stream::iter(0..calls)
        .map(|n| async move {
            let pong = client.call(&Ping { n }, CallOptions::default()).await?;
            anyhow::ensure!(pong.n == n, "reply {} to request {n}", pong.n);
            Ok(())
        })
        .buffer_unordered(concurrency);
    while let Some(reply) = replies.next().await {
        reply?;
    }
    Ok(())
}
