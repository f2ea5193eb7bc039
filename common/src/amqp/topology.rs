//! The work queue and its dead-letter queue, declared the same way by both sides, and the
//! per-request reply queue.

use anyhow::Context;
use lapin::{
    Channel,
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

/// How many times a request may be returned to the work queue (nack, or a consumer dying
/// with it unacked) before it is dead-lettered instead of delivered again.
pub const DELIVERY_LIMIT: i32 = 5;

/// The name of `queue`'s dead-letter queue: `<queue>.dlq`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Declares the durable quorum work queue `name` and its dead-letter queue `<name>.dlq`, with
/// every argument explicit. Both sides call it, so neither depends on the other starting first.
///
/// Idempotent: declaring again with the same arguments is a no-op. If `name` already exists
/// with other arguments, RabbitMQ answers PRECONDITION_FAILED and closes `channel`.
///
/// Messages dead-lettered into `<name>.dlq` are the ones rejected as unreadable, the ones
/// returned more than [`DELIVERY_LIMIT`] times, and requests whose `expiration` passed while
/// they waited (nobody was consuming; the caller had already given up).
pub async fn declare_work_queue(channel: &Channel, name: &str) -> anyhow::Result<()> {
    let dlq = dead_letter_queue(name);
    let mut dlq_args = FieldTable::default();
    // Replicated and fsynced like the work queue, so a dead letter survives what a request does.
    dlq_args.insert("x-queue-type".into(), text("quorum"));
    channel
        .queue_declare(dlq.as_str().into(), durable(), dlq_args)
        .await
        .with_context(|| format!("declare dead-letter queue {dlq}"))?;

    let mut args = FieldTable::default();
    // Quorum: replicated, durable, and it counts deliveries, which a poison message needs.
    args.insert("x-queue-type".into(), text("quorum"));
    // The default exchange routes by queue name, so no exchange or binding has to exist.
    args.insert("x-dead-letter-exchange".into(), text(""));
    // ...to `<name>.dlq`, declared above.
    args.insert("x-dead-letter-routing-key".into(), text(&dlq));
    // RabbitMQ 3.10 has no default limit: without one a message that crashes its consumer
    // would be redelivered forever.
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(DELIVERY_LIMIT),
    );
    // The queue keeps a dead letter until the DLQ has confirmed it, so a rejected request is
    // never lost on the way (the default, at-most-once, drops it if the DLQ is unavailable).
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    // Required by at-least-once (with drop-head it silently falls back to at-most-once). No
    // max-length is set, so nothing is rejected for length; only a broker resource alarm
    // makes publishes wait, and then the client times out rather than losing requests.
    args.insert("x-overflow".into(), text("reject-publish"));
    channel
        .queue_declare(name.into(), durable(), args)
        .await
        .with_context(|| format!("declare work queue {name}"))?;
    Ok(())
}

/// Declares a reply queue for one request and returns the name the server gave it.
pub async fn declare_reply_queue(channel: &Channel) -> lapin::Result<ShortString> {
    let declared = channel
        .queue_declare(
            // Empty: the server picks a unique `amq.gen-…` name.
            ShortString::default(),
            QueueDeclareOptions {
                // Only this connection may consume it, and it dies with the connection.
                exclusive: true,
                // Gone once its consumer is, even if nobody deletes it explicitly.
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(declared.name().clone())
}

fn durable() -> QueueDeclareOptions {
    // Quorum queues must be durable and may be neither exclusive nor auto-delete.
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}
