//! The event subscriber loop: a queue of the consumer's own bound to the events exchange;
//! consume, hand to the handler, ack; again after every reconnect. Events are delivered at least
//! once, so handlers deduplicate by `message_id` (a subscriber refuses an event without one).

use std::panic::AssertUnwindSafe;

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions},
    types::{FieldTable, ShortString},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{
    CONTENT_TYPE_JSON, DELIVERY_LIMIT, HEADER_REQUEST_ID,
    broker::{Broker, Live},
    declare_event_queue, propagation,
    server::{
        HEADER_DELIVERY_COUNT, RETRY_MAX, RETRY_START, Session, confirmed_channel,
        consumer_channel, dead_letter, header_i64, header_string, requeue, resubscribe, settle,
    },
};

/// Which events a subscriber receives, and where they wait for it.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The topic exchange the events are published to; it must exist (its publisher or the
    /// broker's definitions make it), or the subscriber waits and tries again.
    pub exchange: String,
    /// The subscriber's own durable quorum queue (with `<queue>.dlq`), declared and bound at
    /// every (re)subscription.
    pub queue: String,
    /// The routing keys bound, e.g. `order.created.v1`.
    pub routing_keys: Vec<&'static str>,
    /// Unacked events at once in this process.
    pub prefetch: u16,
}

/// One event as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its routing key, which names its type and version.
    pub routing_key: String,
    /// Its publisher's unique id for it; the same on every redelivery and republish.
    pub message_id: String,
    /// Its JSON body.
    pub body: Vec<u8>,
}

/// What handling one event came to.
#[derive(Debug)]
pub enum Handled {
    /// Done, or a duplicate seen before: ack it.
    Done,
    /// It can never be handled (a body that does not parse): move it to the dead-letter queue.
    Reject(String),
    /// Not now (the database is down): keep it and run the handler again after a pause.
    Retry(anyhow::Error),
}

/// Consumes `subscription` until `shutdown`, running `handler` on each event and acking it
/// once the handler is done. Re-subscribes after every reconnect of `broker`.
///
/// An event is moved to `<queue>.dlq` with its reason when it lacks a `message_id` (it could not
/// be deduplicated), is not JSON, is rejected or panics its handler, or has been returned to the
/// queue [`DELIVERY_LIMIT`] times unsettled. On [`Handled::Retry`] the event is held (keeping its
/// prefetch slot, so an outage stops new deliveries) and handled again after a pause doubling up
/// to 5 s; on `shutdown` it is requeued for the next consumer.
///
/// Returns `Ok` on `shutdown`, and an error only when the queue cannot be used as configured
/// (it exists with other arguments, or access is refused), which no retry would fix.
pub async fn subscribe<H, Fut>(
    broker: Broker,
    subscription: Subscription,
    handler: H,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    H: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Handled> + Send,
{
    let queue = subscription.queue.as_str();
    resubscribe(&broker, queue, &shutdown, |live| {
        consume(live, &subscription, &handler, &shutdown)
    })
    .await
}

/// One subscription on `live`, until `shutdown` stops it or it ends.
async fn consume<H, Fut>(
    live: Live,
    subscription: &Subscription,
    handler: &H,
    shutdown: &CancellationToken,
) -> anyhow::Result<Session>
where
    H: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Handled> + Send,
{
    let queue = subscription.queue.as_str();
    let channel = consumer_channel(&live.connection, subscription.prefetch).await?;
    declare_event_queue(
        &channel,
        &subscription.exchange,
        queue,
        &subscription.routing_keys,
    )
    .await?;
    // An event is acked only once its dead letter, if it needs one, is confirmed.
    let dead_letters = confirmed_channel(&live.connection, "dead letters").await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            ShortString::default(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("start consuming")?;
    tracing::info!(queue, exchange = %subscription.exchange, "consuming events");
    let limit = (subscription.prefetch > 0).then_some(usize::from(subscription.prefetch));
    let (channel_ref, dead_letters) = (&channel, &dead_letters);
    consumer
        .take_until(shutdown.cancelled())
        .for_each_concurrent(limit, |delivery| async move {
            match delivery {
                Ok(delivery) => {
                    handle(
                        delivery,
                        handler,
                        channel_ref,
                        dead_letters,
                        queue,
                        shutdown,
                    )
                    .await
                }
                Err(e) => tracing::warn!(queue, error = %e, "subscriber failed"),
            }
        })
        .await;
    if !shutdown.is_cancelled() {
        return Ok(Session::Ended);
    }
    // Events received but never started go back to the queue when the channel closes.
    let _ = channel.close(200, "shutting down".into()).await;
    let _ = dead_letters.close(200, "shutting down".into()).await;
    tracing::info!(queue, "stopped consuming events");
    Ok(Session::Stopped)
}

async fn handle<H, Fut>(
    delivery: Delivery,
    handler: &H,
    channel: &lapin::Channel,
    dead_letters: &lapin::Channel,
    queue: &str,
    shutdown: &CancellationToken,
) where
    H: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Handled> + Send,
{
    let properties = &delivery.properties;
    let message_id = properties.message_id().as_ref().map(ShortString::to_string);
    let returned = header_i64(properties, HEADER_DELIVERY_COUNT).unwrap_or(0);
    let span = tracing::info_span!(
        "event",
        otel.name = %format_args!("process {}", delivery.routing_key),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        queue,
        routing_key = %delivery.routing_key,
        message_id = message_id.as_deref(),
        request_id = header_string(properties, HEADER_REQUEST_ID).as_deref(),
        returned,
    );
    let _ = span.set_parent(propagation::extract(properties.headers().as_ref()));
    async move {
        let refusal = if returned >= i64::from(DELIVERY_LIMIT) {
            Some(format!("returned to the queue {returned} times without being settled"))
        } else if !is_json(&delivery) {
            Some("not application/json".to_owned())
        } else if message_id.is_none() {
            Some("no message_id, so it cannot be deduplicated".to_owned())
        } else {
            None
        };
        if let Some(why) = refusal {
            tracing::error!(reason = %why, "dead-lettering the event");
            dead_letter(&delivery, dead_letters, queue, &why).await;
            return;
        }
        let received = Received {
            routing_key: delivery.routing_key.to_string(),
            message_id: message_id.unwrap_or_default(),
            body: delivery.data.clone(),
        };
        let mut pause = RETRY_START;
        for attempt in 1u32.. {
            let error = match AssertUnwindSafe(handler(received.clone()))
                .catch_unwind()
                .await
            {
                Ok(Handled::Done) => {
                    settle(delivery.acker.ack(BasicAckOptions::default()).await, "ack");
                    return;
                }
                Ok(Handled::Reject(why)) => {
                    tracing::error!(reason = %why, "event rejected; dead-lettering it");
                    dead_letter(&delivery, dead_letters, queue, &why).await;
                    return;
                }
                Err(_) => {
                    tracing::error!("event handler panicked; dead-lettering the event");
                    dead_letter(&delivery, dead_letters, queue, "its handler panicked").await;
                    return;
                }
                Ok(Handled::Retry(error)) => error,
            };
            if !channel.status().connected() {
                tracing::warn!(error = format!("{error:#}"), attempt, "handler failed for now and the channel is gone; leaving the event to the broker");
                return;
            }
            tracing::warn!(
                error = format!("{error:#}"),
                attempt,
                retry_in_ms = pause.as_millis() as u64,
                "handler failed for now; retrying the event"
            );
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => {
                    requeue(&delivery.acker).await;
                    return;
                }
            }
            pause = (pause * 2).min(RETRY_MAX);
        }
    }
    .instrument(span)
    .await
}

fn is_json(delivery: &Delivery) -> bool {
    let content_type = delivery
        .properties
        .content_type()
        .as_ref()
        .map(ShortString::as_str);
    let media_type = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    media_type.is_some_and(|m| m.eq_ignore_ascii_case(CONTENT_TYPE_JSON))
}
