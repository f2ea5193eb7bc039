//! Looking at and tampering with queues the way an operator would, over a plain lapin
//! connection of the test's own.

use std::time::Duration;

use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    options::{
        BasicConsumeOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::FieldTable,
};

use serde::de::DeserializeOwned;

use super::{amqp_url, run_detached};
use crate::amqp::{CONTENT_TYPE_JSON, dead_letter_queue};

/// A connection to the test broker. Panics, saying how to start RabbitMQ, when it does not
/// answer.
pub async fn broker_connection() -> Connection {
    let url = amqp_url();
    Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is not answering at {url} ({e}). Start it with \
                 `rabbitmq-server -detached`, or set AMQP_URL."
            )
        })
}

/// Messages ready in `queue` and consumers on it: `(messages, consumers)`, from a passive
/// declare, which creates nothing. A missing queue is an error, and, as with any failed
/// declare, RabbitMQ then closes `channel`.
pub async fn queue_counts(channel: &Channel, queue: &str) -> lapin::Result<(u32, u32)> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((declared.message_count(), declared.consumer_count()))
}

/// Deletes the work queue `queue` and its dead-letter queue. A queue that is already gone is
/// not an error: leftovers only cost the broker memory, and must not fail a test whose
/// assertions all passed.
pub async fn delete_queue(channel: &Channel, queue: &str) {
    for name in [queue.to_owned(), dead_letter_queue(queue)] {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// [`delete_queue`] for a `Drop` impl: quorum queues outlive their consumers, so a test's
/// queues must be removed even when it panicked, from inside its runtime.
pub fn delete_queue_on_drop(queue: &str) {
    on_a_channel_detached(|channel| async move { delete_queue(&channel, queue).await });
}

/// Deletes the exchange `exchange`, from a `Drop` impl as [`delete_queue_on_drop`] does; one
/// already gone is not an error.
pub fn delete_exchange_on_drop(exchange: &str) {
    on_a_channel_detached(|channel| async move {
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    });
}

/// Runs `work` on a channel of a connection of its own, on a thread of its own; nothing when
/// the broker does not answer.
fn on_a_channel_detached<F, Fut>(work: F)
where
    F: FnOnce(Channel) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    run_detached(async move {
        let Ok(connection) =
            Connection::connect(&amqp_url(), ConnectionProperties::default()).await
        else {
            return;
        };
        if let Ok(channel) = connection.create_channel().await {
            work(channel).await;
        }
        let _ = connection.close(200, "test over".into()).await;
    });
}

/// Properties of an RPC request of type `kind` as `RpcClient` sends it, for publishing by
/// hand: JSON, persistent, with a correlation id and a queue to reply to.
pub fn request_properties(kind: &str, correlation_id: &str, reply_to: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE_JSON.into())
        .with_type(kind.into())
        .with_correlation_id(correlation_id.into())
        .with_reply_to(reply_to.into())
        .with_delivery_mode(2)
}

/// Publishes `body` to `queue` through the default exchange, as `mandatory`, and panics unless
/// the broker took it: acked with nothing returned on a channel with publisher confirms, or
/// merely sent on one without.
pub async fn publish(channel: &Channel, queue: &str, body: &[u8], properties: BasicProperties) {
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("a publisher confirm");
    assert!(
        matches!(
            confirmation,
            Confirmation::Ack(None) | Confirmation::NotRequested
        ),
        "the broker took the message: {confirmation:?}"
    );
}

/// Consumes `queue` in no-ack mode, as a reply queue is read.
pub async fn consume_without_acks(channel: &Channel, queue: &str) -> Consumer {
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("consume {queue}: {e}"))
}

/// The next message on `replies` within `timeout`: its correlation id and its body, read as a
/// `T`. Panics when none arrives in time or it is not a well-formed reply.
pub async fn next_reply<T: DeserializeOwned>(
    replies: &mut Consumer,
    timeout: Duration,
) -> (String, T) {
    let (correlation_id, reply, _) = next_reply_with_headers(replies, timeout).await;
    (correlation_id, reply)
}

/// [`next_reply`], with the reply's headers.
pub async fn next_reply_with_headers<T: DeserializeOwned>(
    replies: &mut Consumer,
    timeout: Duration,
) -> (String, T, FieldTable) {
    let delivery = tokio::time::timeout(timeout, replies.next())
        .await
        .unwrap_or_else(|_| panic!("a reply within {timeout:?}"))
        .expect("the reply consumer is open")
        .expect("a reply delivery");
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let correlation_id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .expect("a reply carries the request's correlation id")
        .to_string();
    let reply = serde_json::from_slice(&delivery.data).unwrap_or_else(|e| {
        panic!(
            "a reply in the expected shape, not {} ({e})",
            String::from_utf8_lossy(&delivery.data)
        )
    });
    (correlation_id, reply, headers)
}
