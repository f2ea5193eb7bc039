//! Waits until the queue buys go to exists. Products never creates it: the broker's definitions
//! do in a deployment, and orders, which consumes it, declares it at every subscription. So
//! products needs no right to configure the queue (nor, therefore, to delete it), only to
//! publish through the default exchange (`kube/base/rabbitmq/30-permissions.json`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use common::amqp::{Broker, check_work_queue};
use tokio_util::sync::CancellationToken;

/// Longest pause between two looks for the queue.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Whether the order queue has been seen; until then buys could not be routed, so the service
/// does not report ready.
#[derive(Debug, Default)]
pub struct OrderQueueFound(AtomicBool);

impl OrderQueueFound {
    /// Whether the queue was found; for `/readyz`.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.0.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("the order queue does not exist yet (orders or the broker's definitions create it)")
        }
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Looks for `queue` once the broker is reachable, again with backoff until it is there or
/// `shutdown`. The queue is durable, so once found it stays: should it be deleted later, buys
/// are returned unroutable and answer 503 until orders declares it again.
pub async fn wait_for_queue(
    broker: Broker,
    queue: String,
    found: Arc<OrderQueueFound>,
    shutdown: CancellationToken,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = broker.wait_connected(MAX_PAUSE) => connected,
        };
        if !connected {
            // The broker supervisor logs why; waiting again is all there is to do.
            continue;
        }
        match look_up(&broker, &queue).await {
            Ok(()) => {
                found.set();
                tracing::info!(%queue, "order queue found");
                return;
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), %queue, "the order queue is not there yet")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

async fn look_up(broker: &Broker, queue: &str) -> anyhow::Result<()> {
    let connection = broker.connection().context("the connection just closed")?;
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel to look up the order queue")?;
    let found = check_work_queue(&channel, queue).await;
    // A failed lookup has closed the channel already; closing it again cannot help.
    let _ = channel.close(200, "looked up".into()).await;
    found
}
