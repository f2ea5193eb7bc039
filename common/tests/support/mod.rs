//! Shared setup for the AMQP tests: a tiny request type, a broker, an echo server, and a
//! plain lapin connection for looking at (and tampering with) queues directly.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    amqp::{self, Broker, Incoming, Outcome, RpcRequest},
    testing::{self, amqp_url, broker_connection, queue_counts, require_broker},
};
use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection,
    options::{BasicGetOptions, BasicPublishOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, ShortString},
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The test request: the server answers with the same number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Echo {
    pub n: u32,
}

/// The echo server's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReply {
    pub n: u32,
}

impl RpcRequest for Echo {
    const MESSAGE_TYPE: &'static str = "test.echo.v1";
    type Reply = EchoReply;
}

/// What a handler saw, in order: the number and whether it was a redelivery.
pub type Seen = Arc<Mutex<Vec<(u32, bool)>>>;

/// A broker connected to the test RabbitMQ, and the token that stops it.
pub async fn connected_broker() -> (Broker, CancellationToken) {
    require_broker().await;
    let shutdown = CancellationToken::new();
    let broker = Broker::start(amqp_url(), shutdown.clone());
    assert!(
        broker.wait_connected(Duration::from_secs(10)).await,
        "the broker did not connect to {}",
        amqp_url()
    );
    (broker, shutdown)
}

/// A running `serve` loop and the token that stops it.
pub struct Server {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

/// Serves `queue` with a handler that echoes `n` and records what it saw.
pub fn echo_server(broker: &Broker, queue: &str, prefetch: u16, seen: Seen) -> Server {
    serve_with(broker, queue, prefetch, move |incoming: Incoming<Echo>| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .push((incoming.request.n, incoming.redelivered));
            Outcome::Reply(EchoReply {
                n: incoming.request.n,
            })
        }
    })
}

/// Serves `queue` with any handler.
pub fn serve_with<H, Fut>(broker: &Broker, queue: &str, prefetch: u16, handler: H) -> Server
where
    H: Fn(Incoming<Echo>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome<EchoReply>> + Send + 'static,
{
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(amqp::serve(
        broker.clone(),
        queue.to_owned(),
        prefetch,
        handler,
        shutdown.clone(),
    ));
    Server { shutdown, handle }
}

/// A plain connection of the test's own, to inspect queues the way an operator would.
pub struct Raw {
    pub connection: Connection,
}

impl Raw {
    pub async fn connect() -> Self {
        Self {
            connection: broker_connection().await,
        }
    }

    pub async fn channel(&self) -> Channel {
        self.connection
            .create_channel()
            .await
            .expect("open a channel")
    }

    /// Declares `queue` and its dead-letter queue as the services do.
    pub async fn declare_work_queue(&self, queue: &str) {
        amqp::declare_work_queue(&self.channel().await, queue)
            .await
            .expect("declare the work queue");
    }

    /// Messages ready in `queue` (a passive declare, which creates nothing).
    pub async fn message_count(&self, queue: &str) -> u32 {
        self.passive(queue)
            .await
            .unwrap_or_else(|e| panic!("queue {queue} should exist: {e}"))
            .0
    }

    /// Consumers on `queue`.
    pub async fn consumer_count(&self, queue: &str) -> u32 {
        self.passive(queue)
            .await
            .unwrap_or_else(|e| panic!("queue {queue} should exist: {e}"))
            .1
    }

    /// Whether `queue` exists. An exclusive queue of another connection exists too: RabbitMQ
    /// answers RESOURCE_LOCKED rather than NOT_FOUND for it.
    pub async fn exists(&self, queue: &str) -> bool {
        match self.passive(queue).await {
            Ok(_) => true,
            Err(e) => match e.kind() {
                lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
                    AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => false,
                    AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) => true,
                    other => panic!("unexpected answer to a passive declare: {other:?}"),
                },
                other => panic!("unexpected error from a passive declare: {other:?}"),
            },
        }
    }

    async fn passive(&self, queue: &str) -> lapin::Result<(u32, u32)> {
        // A failed passive declare closes its channel, so each check gets a fresh one.
        queue_counts(&self.channel().await, queue).await
    }

    /// Publishes `body` to `queue` through the default exchange.
    pub async fn publish(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        testing::publish(&self.channel().await, queue, body, properties).await;
    }

    /// An exclusive queue of this connection to receive replies in.
    pub async fn reply_queue(&self) -> (Channel, ShortString) {
        let channel = self.channel().await;
        let queue = amqp::declare_reply_queue(&channel)
            .await
            .expect("declare a reply queue");
        (channel, queue)
    }

    /// Takes one message from `queue`, if there is one.
    pub async fn get(channel: &Channel, queue: &ShortString) -> Option<lapin::message::Delivery> {
        channel
            .basic_get(queue.clone(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
            .map(|message| message.delivery)
    }

    /// Answers every request on `queue` itself (bypassing `serve`), except `n == 0`, and hands
    /// each request's properties to the test.
    pub async fn respond(
        &self,
        queue: &str,
    ) -> tokio::sync::mpsc::UnboundedReceiver<BasicProperties> {
        let channel = self.channel().await;
        let mut consumer = testing::consume_without_acks(&channel, queue).await;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let request: Echo = serde_json::from_slice(&delivery.data).expect("an Echo");
                let properties = delivery.properties.clone();
                let _ = tx.send(properties.clone());
                if request.n == 0 {
                    continue;
                }
                let reply = serde_json::to_vec(&EchoReply { n: request.n }).unwrap();
                let _ = channel
                    .basic_publish(
                        ShortString::default(),
                        properties.reply_to().clone().expect("reply_to"),
                        BasicPublishOptions::default(),
                        &reply,
                        BasicProperties::default()
                            .with_correlation_id(properties.correlation_id().clone().unwrap()),
                    )
                    .await;
            }
        });
        rx
    }

    /// Deletes `queue` and its dead-letter queue, so the shared broker does not fill up.
    pub async fn delete_work_queue(&self, queue: &str) {
        testing::delete_queue(&self.channel().await, queue).await;
    }
}

/// Properties of a request as `RpcClient` would send it, for publishing by hand.
pub fn request_properties(correlation_id: &str, reply_to: &ShortString) -> BasicProperties {
    testing::request_properties(Echo::MESSAGE_TYPE, correlation_id, reply_to.as_str())
}

/// An integer header as a test reads it back.
pub fn header_i64(properties: &BasicProperties, name: &str) -> Option<i64> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

/// A string header as a test reads it back.
pub fn header_str(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}
