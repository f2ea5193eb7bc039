//! RabbitMQ: one supervised connection per process, a typed RPC client with two reply modes,
//! and an RPC server loop. (Interface fixed; implementation in progress.)

use std::{str::FromStr, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use tokio_util::sync::CancellationToken;

/// A request that travels over RPC: its `type` property and the type of its reply.
pub trait RpcRequest: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The AMQP `type` property, e.g. `order.create.v1`.
    const MESSAGE_TYPE: &'static str;
    /// What the server answers.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
}

/// How the client receives replies (`RPC_REPLY_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    /// A fresh exclusive, auto-delete queue for each request.
    #[default]
    PerRequest,
    /// RabbitMQ Direct Reply-to (`amq.rabbitmq.reply-to`).
    Direct,
}

impl FromStr for ReplyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "per-request" => Ok(Self::PerRequest),
            "direct" => Ok(Self::Direct),
            other => Err(format!("expected `per-request` or `direct`, not {other:?}")),
        }
    }
}

/// A supervised connection: reconnects with backoff after the broker goes away. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    _private: (),
}

impl Broker {
    /// Starts the supervisor; it runs until `shutdown` is cancelled.
    pub fn start(_url: impl Into<String>, _shutdown: CancellationToken) -> Self {
        unimplemented!("amqp::Broker")
    }

    /// Whether a connection is open right now (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        unimplemented!("amqp::Broker")
    }
}

/// Why an RPC call produced no reply.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Not connected, publish not confirmed, or unroutable (no queue): 503.
    #[error("broker unavailable: {0}")]
    Unavailable(anyhow::Error),
    /// No reply within the timeout; the outcome is unknown: 504.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// A reply arrived that could not be read: 500.
    #[error("unreadable reply: {0}")]
    BadReply(anyhow::Error),
}

/// Per-call details.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// The `message_id`; a fresh UUID when `None`.
    pub message_id: Option<String>,
    /// The request id of the HTTP request behind the call, sent as the `x-request-id` header.
    pub request_id: Option<String>,
}

/// Typed RPC client: owns correlation ids, reply queues and the timeout. Cheap to clone.
pub struct RpcClient<R: RpcRequest> {
    _marker: std::marker::PhantomData<fn() -> R>,
}

impl<R: RpcRequest> Clone for RpcClient<R> {
    fn clone(&self) -> Self {
        Self {
            _marker: std::marker::PhantomData,
        }
    }
}

impl<R: RpcRequest> RpcClient<R> {
    /// A client sending to `queue`; it uses the broker's current connection.
    pub fn new(
        _broker: Broker,
        _queue: impl Into<String>,
        _mode: ReplyMode,
        _timeout: Duration,
    ) -> Self {
        unimplemented!("amqp::RpcClient")
    }

    /// Publishes `request` (persistent, mandatory, confirmed, `expiration` = timeout) and waits
    /// for its reply.
    pub async fn call(&self, _request: &R, _opts: CallOptions) -> Result<R::Reply, RpcError> {
        unimplemented!("amqp::RpcClient")
    }
}

/// A request as the server's handler receives it.
#[derive(Debug, Clone)]
pub struct Incoming<R> {
    /// The parsed body.
    pub request: R,
    /// The `message_id` property (the dedup key when the request carries none).
    pub message_id: Option<String>,
    /// The `x-request-id` header.
    pub request_id: Option<String>,
    /// Whether the broker has delivered it before.
    pub redelivered: bool,
}

/// What the handler decided.
#[derive(Debug)]
pub enum Outcome<T> {
    /// Send this reply, then ack.
    Reply(T),
    /// A transient failure (database down): requeue after a pause, do not dead-letter.
    Retry(anyhow::Error),
}

/// Declares the durable quorum work queue `name` and its dead-letter queue `<name>.dlq`, with
/// every argument explicit. Both sides call it, so neither depends on the other starting first.
pub async fn declare_work_queue(_channel: &lapin::Channel, _name: &str) -> anyhow::Result<()> {
    unimplemented!("amqp::declare_work_queue")
}

/// Consumes `queue` until `shutdown`: parses each delivery as `R` (else dead-letters it),
/// runs `handler`, replies to `reply_to` with the same `correlation_id`, then acks.
/// Re-subscribes after every reconnect of `broker`.
pub async fn serve<R, H, Fut>(
    _broker: Broker,
    _queue: String,
    _prefetch: u16,
    _handler: H,
    _shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    R: RpcRequest,
    H: Fn(Incoming<R>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome<R::Reply>> + Send,
{
    unimplemented!("amqp::serve")
}
