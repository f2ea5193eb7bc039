//! RabbitMQ: one supervised connection per process ([`Broker`]), a typed RPC client with two
//! reply modes ([`RpcClient`]), and the RPC server loop ([`serve`]).
//!
//! The wire format of a request: published to the default exchange with the queue name as
//! routing key, `mandatory`, persistent, `content_type` `application/json`, `type` =
//! [`RpcRequest::MESSAGE_TYPE`], `message_id`, `correlation_id`, `reply_to`, `expiration` = the
//! client's timeout in milliseconds, `timestamp`, and the headers [`HEADER_REQUEST_ID`],
//! [`HEADER_DEADLINE_MS`] and the W3C trace context (`traceparent`, `tracestate`) of the
//! caller's span. The reply goes to `reply_to` with the same `correlation_id`, `type` =
//! `<MESSAGE_TYPE>.reply`, and the trace context of the server's span.

use std::{str::FromStr, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

mod broker;
mod client;
pub mod propagation;
mod server;
mod subscriber;
mod topology;

pub use broker::{Broker, CLOSE_TIMEOUT};
pub use client::RpcClient;
pub use server::{ConsumerMetrics, Hooks, ServeOptions, serve, serve_with};
pub use subscriber::{Handled, Received, Subscription, subscribe};
pub use topology::{
    DELIVERY_LIMIT, check_work_queue, dead_letter_queue, declare_event_queue,
    declare_events_exchange, declare_reply_queue, declare_work_queue,
};

/// The `content_type` of every request and reply.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Header carrying the request id of the HTTP request behind a call, so logs on both sides
/// share it.
pub const HEADER_REQUEST_ID: &str = "x-request-id";

/// Header a dead letter carries in `<queue>.dlq`: why it was taken out of the work queue.
pub const HEADER_DEAD_LETTER_REASON: &str = "x-dead-letter-reason";

/// Header carrying the moment (Unix epoch milliseconds) the client stops waiting; a server
/// that sees it in the past drops the request instead of doing work nobody will read.
pub const HEADER_DEADLINE_MS: &str = "x-deadline-ms";

/// A request that travels over RPC: its `type` property and the type of its reply.
pub trait RpcRequest: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The AMQP `type` property, e.g. `order.create.v1`.
    const MESSAGE_TYPE: &'static str;
    /// What the server answers.
    type Reply: Serialize + DeserializeOwned + Send + 'static;

    /// The `outcome` labels [`RpcRequest::reply_outcome`] gives.
    const REPLY_OUTCOMES: &'static [&'static str] = &["reply"];

    /// The `outcome` label a reply gets in `shop_rpc_client_duration_seconds` (`order` or
    /// `problem` for a buy): one of [`RpcRequest::REPLY_OUTCOMES`], never taken from the
    /// reply's content.
    fn reply_outcome(_reply: &Self::Reply) -> &'static str {
        "reply"
    }
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

impl ReplyMode {
    /// The name `RPC_REPLY_MODE` gives it, which is also its metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerRequest => "per-request",
            Self::Direct => "direct",
        }
    }
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

impl RpcError {
    /// The `outcome` label of a call that failed this way.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::BadReply(_) => "bad_reply",
        }
    }

    /// Every label [`RpcError::outcome`] gives.
    pub const OUTCOMES: [&'static str; 3] = ["unavailable", "timeout", "bad_reply"];
}

/// Per-call details.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// The `message_id`; a fresh UUID when `None`. It is an AMQP short string, so at most 255
    /// bytes; a longer one fails the call with [`RpcError::Unavailable`] before anything is sent.
    pub message_id: Option<String>,
    /// The request id of the HTTP request behind the call, sent as the `x-request-id` header.
    pub request_id: Option<String>,
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
    /// A transient failure (database down): keep the delivery and run the handler again after
    /// a growing pause, until it replies, the request's deadline passes, or shutdown (then it
    /// is requeued). Never dead-lettered.
    Retry(anyhow::Error),
}

/// Milliseconds since the Unix epoch, the unit of [`HEADER_DEADLINE_MS`].
fn now_epoch_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_mode_parses_the_names_rpc_reply_mode_accepts() {
        assert_eq!("per-request".parse(), Ok(ReplyMode::PerRequest));
        assert_eq!("direct".parse(), Ok(ReplyMode::Direct));
        assert!("Direct".parse::<ReplyMode>().is_err());
    }
}
