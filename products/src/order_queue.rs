//! Makes sure the queue buys go to exists, whichever of products and orders starts first.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use common::amqp::{Broker, declare_work_queue};
use tokio_util::sync::CancellationToken;

/// Longest pause between attempts to declare the queue.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Whether the order queue has been declared; until then buys could not be routed, so the
/// service does not report ready.
#[derive(Debug, Default)]
pub struct OrderQueueDeclared(AtomicBool);

impl OrderQueueDeclared {
    /// Whether the declaration succeeded; for `/readyz`.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.0.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("the order queue is not declared yet")
        }
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Declares `queue` (and its dead-letter queue) once the broker is reachable, retrying with
/// backoff until it succeeds or `shutdown`. The queue is durable, so once is enough: it
/// outlives broker restarts.
pub async fn declare_when_connected(
    broker: Broker,
    queue: String,
    declared: Arc<OrderQueueDeclared>,
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
        match declare(&broker, &queue).await {
            Ok(()) => {
                declared.set();
                tracing::info!(%queue, "order queue declared");
                return;
            }
            Err(e) => tracing::warn!(error = ?e, %queue, "declaring the order queue failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

async fn declare(broker: &Broker, queue: &str) -> anyhow::Result<()> {
    let connection = broker.connection().context("the connection just closed")?;
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel to declare the order queue")?;
    let declared = declare_work_queue(&channel, queue).await;
    // A failed declaration has closed the channel already; closing it again cannot help.
    let _ = channel.close(200, "declared".into()).await;
    declared
}
