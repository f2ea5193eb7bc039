//! The work queue and its dead-letter queue, the per-request reply queue, and the events
//! exchange with the queues its consumers bind to it.
//!
//! The work queue belongs to its consumer: the broker's definitions create it in a deployment
//! (`kube/base/rabbitmq/20-queues.json`, also mounted by `docker-compose.yml`), and the server
//! loop ([`serve`](super::serve)) declares it again at every (re)subscription, with the same
//! arguments, so a broker without definitions (a local run, a test) or a queue deleted by
//! hand is made again. A publisher only checks that it exists ([`check_work_queue`]), which
//! needs no right on it: the broker may then refuse that publisher every right to configure
//! (and so delete or redeclare) the queue, and grant it only the write on the default exchange
//! its requests go through.

use anyhow::Context;
use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

/// How many times a request may be returned to the work queue unsettled (a consumer dying with
/// it, or a requeue) before the next consumer to receive it moves it to `<queue>.dlq` instead of
/// handling it.
pub const DELIVERY_LIMIT: i32 = 5;

/// The queue's own `x-delivery-limit`, a backstop well past [`DELIVERY_LIMIT`]: a request
/// returned this often was never even dead-lettered by the consumers, and the queue drops it.
/// Written out because RabbitMQ 3.x has no default and 4.x defaults to 20.
const QUEUE_DELIVERY_LIMIT: i32 = 20;

/// The name of `queue`'s dead-letter queue: `<queue>.dlq`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Declares the durable quorum work queue `name` and its dead-letter queue `<name>.dlq`, with
/// every argument explicit. The consumer calls it; it needs the right to configure both.
///
/// Idempotent: declaring again with the same arguments is a no-op. If `name` already exists
/// with other arguments, RabbitMQ answers PRECONDITION_FAILED and closes `channel`.
///
/// The work queue has no dead-letter exchange: what lands in `<name>.dlq` is put there by the
/// server loop ([`serve`](super::serve)), for a reason a human must look at. A request whose
/// `expiration` passes while it waits is simply dropped: its caller has already answered 504
/// and retries with the same key, so a copy in the DLQ would only bury the poison among good
/// buys after every outage.
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
    // Quorum: replicated, durable, and it counts deliveries (`x-delivery-count`), which is how
    // a request that crashes its consumers is recognised.
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(QUEUE_DELIVERY_LIMIT),
    );
    // No max-length is set, so nothing is refused for length; should one be added, publishers
    // hear a nack (503) rather than the oldest request being dropped silently.
    args.insert("x-overflow".into(), text("reject-publish"));
    channel
        .queue_declare(name.into(), durable(), args)
        .await
        .with_context(|| format!("declare work queue {name}"))?;
    Ok(())
}

/// Checks that the work queue `name` exists, without creating or changing it: a passive
/// declare, which RabbitMQ allows without any right on the queue. A missing queue is an error
/// (NOT_FOUND), after which RabbitMQ closes `channel`.
pub async fn check_work_queue(channel: &Channel, name: &str) -> anyhow::Result<()> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("look up work queue {name}"))?;
    Ok(())
}

/// Declares the durable topic exchange `name` that events are published to
/// ([`EVENTS_EXCHANGE`](crate::messages::EVENTS_EXCHANGE) in a deployment). Its publisher
/// (orders) calls it; it needs the right to configure the exchange. Idempotent.
pub async fn declare_events_exchange(channel: &Channel, name: &str) -> anyhow::Result<()> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                // Survives a broker restart, like the queues bound to it.
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declare exchange {name}"))?;
    Ok(())
}

/// Declares the consumer's own durable quorum queue `name` with its dead-letter queue, exactly
/// as [`declare_work_queue`] does, and binds it to the events exchange `exchange` for each of
/// `routing_keys`. The exchange must exist already (its publisher or the broker's definitions
/// make it); a missing one is an error (NOT_FOUND) that closes `channel`. Needs the right to
/// configure both queues, to write to `name` and to read from the exchange. Idempotent.
pub async fn declare_event_queue(
    channel: &Channel,
    exchange: &str,
    name: &str,
    routing_keys: &[&str],
) -> anyhow::Result<()> {
    declare_work_queue(channel, name).await?;
    for key in routing_keys {
        channel
            .queue_bind(
                name.into(),
                exchange.into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("bind {name} to {exchange} for {key}"))?;
    }
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
