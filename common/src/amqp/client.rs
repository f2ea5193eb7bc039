//! The typed RPC client: the one place that owns correlation ids, reply queues and timeouts.

use std::{
    collections::HashMap,
    marker::PhantomData,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, Consumer,
    message::BasicReturnMessage,
    options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use prometheus::HistogramVec;
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use super::{
    CONTENT_TYPE_JSON, CallOptions, HEADER_DEADLINE_MS, HEADER_REQUEST_ID, ReplyMode, RpcError,
    RpcRequest,
    broker::{Broker, Live},
    now_epoch_ms, propagation,
    topology::declare_reply_queue,
};
use crate::metrics::{Registry, duration_histogram};

/// The pseudo-queue of RabbitMQ Direct Reply-to.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Channels for per-request reply queues; more let more declares run at once.
const REPLY_CHANNELS: usize = 8;

/// Typed RPC client: owns correlation ids, reply queues and the timeout. Cheap to clone.
///
/// Calls run concurrently: they share long-lived channels (rebuilt lazily after a reconnect)
/// and never wait for one another. The publishing channel has publisher confirms on; a call
/// counts as sent only when RabbitMQ acks it with nothing returned.
pub struct RpcClient<R: RpcRequest> {
    inner: Arc<Inner>,
    _marker: PhantomData<fn() -> R>,
}

impl<R: RpcRequest> Clone for RpcClient<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _marker: PhantomData,
        }
    }
}

impl<R: RpcRequest> std::fmt::Debug for RpcClient<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("queue", &self.inner.queue)
            .field("mode", &self.inner.mode)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl<R: RpcRequest> RpcClient<R> {
    /// A client sending to `queue`; it uses the broker's current connection.
    ///
    /// Nothing is opened until the first call. Panics if `queue` is longer than 255 bytes,
    /// which AMQP does not allow for a queue name.
    pub fn new(
        broker: Broker,
        queue: impl Into<String>,
        mode: ReplyMode,
        timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker,
                queue: ShortString::from(queue.into()),
                mode,
                timeout,
                link: Mutex::new(None),
                rebuild: tokio::sync::Mutex::new(()),
                duration: OnceLock::new(),
            }),
            _marker: PhantomData,
        }
    }

    /// Registers `shop_rpc_client_duration_seconds` (labels `reply_mode` and `outcome`) in
    /// `registry`; from then on every call is timed into it.
    pub fn register_metrics(&self, registry: &Registry) -> anyhow::Result<()> {
        let histogram = duration_histogram(
            registry,
            "shop_rpc_client_duration_seconds",
            "Time from the start of an RPC call to its reply or failure.",
            &["reply_mode", "outcome"],
        )?;
        // Shown at 0 from the start: a series that first appears at 1 shows no increase.
        for outcome in R::REPLY_OUTCOMES.iter().chain(&RpcError::OUTCOMES) {
            histogram.with_label_values(&[self.inner.mode.as_str(), outcome]);
        }
        self.inner
            .duration
            .set(histogram)
            .map_err(|_| anyhow!("this client's metrics are registered already"))
    }

    /// Publishes `request` (persistent, mandatory, confirmed, `expiration` = timeout) and waits
    /// for its reply.
    ///
    /// The whole call, publishing included, takes at most the client's timeout. Fails fast with
    /// [`RpcError::Unavailable`] when there is no connection, when RabbitMQ is blocking
    /// publishers, when the publish is nacked, or when it is returned because no queue is
    /// named `queue`. [`RpcError::Timeout`] means the request may still be processed later;
    /// so does an `Unavailable` caused by the connection dropping after the publish was
    /// confirmed, which is why servers must be idempotent.
    ///
    /// The call runs in a client span whose trace context travels in the request's headers.
    pub async fn call(&self, request: &R, opts: CallOptions) -> Result<R::Reply, RpcError> {
        let started = Instant::now();
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format_args!("send {}", R::MESSAGE_TYPE),
            otel.kind = "client",
            messaging.system = "rabbitmq",
            messaging.destination.name = %self.inner.queue,
            rpc.outcome = tracing::field::Empty,
        );
        let result = self.send(request, opts).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(reply) => R::reply_outcome(reply),
            Err(e) => e.outcome(),
        };
        span.record("rpc.outcome", outcome);
        if let Some(duration) = self.inner.duration.get() {
            duration
                .with_label_values(&[self.inner.mode.as_str(), outcome])
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    async fn send(&self, request: &R, opts: CallOptions) -> Result<R::Reply, RpcError> {
        let body = serde_json::to_vec(request)
            .context("serialize the request")
            .map_err(RpcError::Unavailable)?;
        let reply = self.inner.round_trip(R::MESSAGE_TYPE, &body, opts).await?;
        serde_json::from_slice(&reply)
            .with_context(|| format!("parse the reply to {}", R::MESSAGE_TYPE))
            .map_err(RpcError::BadReply)
    }
}

/// Everything that does not depend on the request type, so it is compiled once.
struct Inner {
    broker: Broker,
    queue: ShortString,
    mode: ReplyMode,
    timeout: Duration,
    /// The channels of the current connection; a std mutex held only to clone the `Arc`.
    link: Mutex<Option<Arc<Link>>>,
    /// Held while channels are being (re)built, so concurrent calls build them once.
    rebuild: tokio::sync::Mutex<()>,
    /// `shop_rpc_client_duration_seconds`, once registered.
    duration: OnceLock<HistogramVec>,
}

impl Inner {
    async fn round_trip(
        &self,
        message_type: &'static str,
        body: &[u8],
        opts: CallOptions,
    ) -> Result<Vec<u8>, RpcError> {
        let live = match self.broker.current() {
            Some(live) if live.is_open() => live,
            _ => return Err(unavailable("not connected to RabbitMQ")),
        };
        if live.connection.status().blocked() {
            // A blocked connection accepts the publish and then sits on it: the caller would
            // wait the whole timeout for a request that is not moving.
            return Err(unavailable(
                "RabbitMQ is blocking publishers (resource alarm)",
            ));
        }
        let message_id = match opts.message_id {
            Some(id) => ShortString::try_new(id)
                .map_err(|e| RpcError::Unavailable(anyhow!(e).context("message_id")))?,
            None => Uuid::new_v4().to_string().into(),
        };
        let correlation_id = Uuid::new_v4().to_string();
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);

        let mut headers = FieldTable::default();
        if let Some(request_id) = opts.request_id {
            headers.insert(
                HEADER_REQUEST_ID.into(),
                AMQPValue::LongString(LongString::from(request_id)),
            );
        }
        headers.insert(
            HEADER_DEADLINE_MS.into(),
            AMQPValue::LongLongInt(now_epoch_ms().saturating_add(timeout_ms)),
        );
        propagation::inject(&tracing::Span::current().context(), &mut headers);
        let properties = BasicProperties::default()
            // Persistent: a request accepted (confirmed) by a quorum queue survives a restart.
            .with_delivery_mode(2)
            .with_content_type(CONTENT_TYPE_JSON.into())
            .with_type(message_type.into())
            .with_message_id(message_id)
            .with_correlation_id(correlation_id.as_str().into())
            // The broker drops (dead-letters) a request still queued when we stop waiting.
            .with_expiration(timeout_ms.to_string().into())
            .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
            .with_headers(headers);

        let attempt = async {
            let link = self.link(&live).await?;
            match &link.kind {
                LinkKind::PerRequest { replies, next } => {
                    // Round robin: RabbitMQ runs each channel's declares and deletes one at a
                    // time, so spreading them lets concurrent calls proceed in parallel.
                    let replies = &replies[next.fetch_add(1, Ordering::Relaxed) % replies.len()];
                    self.per_request(&link, replies, properties, body, &correlation_id)
                        .await
                }
                LinkKind::Direct { .. } => {
                    self.direct(&link, properties, body, &correlation_id).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout(self.timeout)),
        }
    }

    /// The channels for `live`, reused while they are open and belong to its generation.
    async fn link(&self, live: &Live) -> Result<Arc<Link>, RpcError> {
        if let Some(link) = self.cached(live.generation) {
            return Ok(link);
        }
        let _building = self.rebuild.lock().await;
        if let Some(link) = self.cached(live.generation) {
            return Ok(link);
        }
        let link = Arc::new(
            Link::open(live, self.mode)
                .await
                .map_err(RpcError::Unavailable)?,
        );
        *lock(&self.link) = Some(link.clone());
        Ok(link)
    }

    fn cached(&self, generation: u64) -> Option<Arc<Link>> {
        lock(&self.link)
            .as_ref()
            .filter(|link| link.is_usable(generation))
            .cloned()
    }

    async fn per_request(
        &self,
        link: &Link,
        replies: &Channel,
        properties: BasicProperties,
        body: &[u8],
        correlation_id: &str,
    ) -> Result<Vec<u8>, RpcError> {
        let name = declare_reply_queue(replies)
            .await
            .map_err(|e| lapin_unavailable(e, "declare a reply queue"))?;
        let reply_queue = ReplyQueue {
            channel: replies.clone(),
            name,
            deleted: false,
        };
        let mut consumer = None;
        let result = async {
            let consumer = consumer.insert(
                replies
                    .basic_consume(
                        reply_queue.name.clone(),
                        ShortString::default(),
                        BasicConsumeOptions {
                            // A reply is read once or not at all; nothing to redeliver it to.
                            no_ack: true,
                            exclusive: true,
                            ..BasicConsumeOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| lapin_unavailable(e, "consume the reply queue"))?,
            );
            let waiter = link.pending.register(correlation_id)?;
            self.publish(
                link,
                properties.with_reply_to(reply_queue.name.clone()),
                body,
                correlation_id,
            )
            .await?;
            tokio::select! {
                reply = next_reply(consumer, correlation_id) => reply,
                answer = waiter.answer() => answer,
            }
        }
        .await;
        reply_queue.delete().await;
        drop(consumer);
        result
    }

    async fn direct(
        &self,
        link: &Link,
        properties: BasicProperties,
        body: &[u8],
        correlation_id: &str,
    ) -> Result<Vec<u8>, RpcError> {
        let waiter = link.pending.register(correlation_id)?;
        // Direct Reply-to requires publishing on the channel that consumes the pseudo-queue,
        // which is this link's publishing channel.
        self.publish(
            link,
            properties.with_reply_to(DIRECT_REPLY_TO.into()),
            body,
            correlation_id,
        )
        .await?;
        waiter.answer().await
    }

    async fn publish(
        &self,
        link: &Link,
        properties: BasicProperties,
        body: &[u8],
        correlation_id: &str,
    ) -> Result<(), RpcError> {
        let confirm = link
            .publisher
            .basic_publish(
                // The default exchange routes straight to the queue of that name.
                ShortString::default(),
                self.queue.clone(),
                BasicPublishOptions {
                    // No queue means nobody will ever answer: learn it now (503) rather than
                    // after the timeout (504).
                    mandatory: true,
                    // Not supported by RabbitMQ, and a busy consumer is no reason to refuse.
                    immediate: false,
                },
                body,
                properties,
            )
            .await
            .map_err(|e| lapin_unavailable(e, "publish the request"))?;
        let confirmation = confirm
            .await
            .map_err(|e| lapin_unavailable(e, "wait for the publisher confirm"))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => {
                link.pending.settle_returned(returned, correlation_id)
            }
            Confirmation::Nack(returned) => {
                if let Some(returned) = returned {
                    let _ = link.pending.settle_returned(returned, correlation_id);
                }
                Err(unavailable("RabbitMQ refused the request (nack)"))
            }
            Confirmation::NotRequested => Err(unavailable(
                "publisher confirms are off on the publishing channel",
            )),
        }
    }
}

/// The channels a client uses on one connection.
struct Link {
    generation: u64,
    /// Publisher confirms on; in Direct mode it also consumes the replies.
    publisher: Channel,
    kind: LinkKind,
    pending: Arc<Pending>,
}

enum LinkKind {
    /// Reply queues are declared, consumed and deleted on channels of their own, so the
    /// publishing channel only ever carries publishes and confirms.
    PerRequest {
        replies: Vec<Channel>,
        next: AtomicUsize,
    },
    /// Stops the reply dispatcher (and so closes the channel) when the link is dropped.
    Direct { _dispatcher: DropGuard },
}

impl Link {
    async fn open(live: &Live, mode: ReplyMode) -> anyhow::Result<Self> {
        let connection = &live.connection;
        let publisher = connection
            .create_channel()
            .await
            .context("open the publishing channel")?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("turn on publisher confirms")?;
        let pending = Arc::new(Pending::default());
        let kind = match mode {
            ReplyMode::PerRequest => {
                let mut replies = Vec::with_capacity(REPLY_CHANNELS);
                for _ in 0..REPLY_CHANNELS {
                    replies.push(
                        connection
                            .create_channel()
                            .await
                            .context("open a reply-queue channel")?,
                    );
                }
                LinkKind::PerRequest {
                    replies,
                    next: AtomicUsize::new(0),
                }
            }
            ReplyMode::Direct => {
                let consumer = publisher
                    .basic_consume(
                        DIRECT_REPLY_TO.into(),
                        ShortString::default(),
                        BasicConsumeOptions {
                            // Direct Reply-to only works in no-ack mode.
                            no_ack: true,
                            ..BasicConsumeOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .context("consume amq.rabbitmq.reply-to")?;
                let stop = CancellationToken::new();
                tokio::spawn(dispatch_replies(consumer, pending.clone(), stop.clone()));
                LinkKind::Direct {
                    _dispatcher: stop.drop_guard(),
                }
            }
        };
        tracing::debug!(
            generation = live.generation,
            ?mode,
            "RPC client channels open"
        );
        Ok(Self {
            generation: live.generation,
            publisher,
            kind,
            pending,
        })
    }

    fn is_usable(&self, generation: u64) -> bool {
        let replies_open = match &self.kind {
            LinkKind::PerRequest { replies, .. } => {
                replies.iter().all(|channel| channel.status().connected())
            }
            LinkKind::Direct { .. } => !self.pending.is_closed(),
        };
        self.generation == generation && self.publisher.status().connected() && replies_open
    }
}

/// Routes Direct Reply-to deliveries to their callers by correlation id, until the channel
/// closes or the link is dropped; then fails every caller still waiting.
async fn dispatch_replies(mut consumer: Consumer, pending: Arc<Pending>, stop: CancellationToken) {
    loop {
        let delivery = tokio::select! {
            _ = stop.cancelled() => break,
            delivery = consumer.next() => delivery,
        };
        match delivery {
            Some(Ok(delivery)) => {
                let Some(correlation_id) = delivery.properties.correlation_id().as_ref() else {
                    tracing::warn!("ignoring a reply without correlation_id");
                    continue;
                };
                pending.settle(correlation_id.as_str(), Answer::Reply(delivery.data));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Direct Reply-to consumer failed");
                break;
            }
            None => break,
        }
    }
    pending.close();
}

/// What a waiting caller is told.
enum Answer {
    Reply(Vec<u8>),
    /// The request came back unroutable, attached to another call's publisher confirm.
    Returned(String),
}

/// Callers waiting for an answer, by correlation id.
#[derive(Default)]
struct Pending {
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    /// Set once no answer can arrive any more (Direct mode: the reply consumer ended).
    closed: AtomicBool,
}

impl Pending {
    fn register(self: &Arc<Self>, correlation_id: &str) -> Result<Waiter, RpcError> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = lock(&self.waiting);
        // Checked under the lock that close() takes, so no caller is added after the drain.
        if self.closed.load(Ordering::Acquire) {
            return Err(unavailable("the reply channel closed"));
        }
        waiting.insert(correlation_id.to_owned(), tx);
        Ok(Waiter {
            pending: self.clone(),
            correlation_id: correlation_id.to_owned(),
            rx,
        })
    }

    fn settle(&self, correlation_id: &str, answer: Answer) {
        match lock(&self.waiting).remove(correlation_id) {
            Some(tx) => {
                let _ = tx.send(answer);
            }
            None => tracing::debug!(correlation_id, "reply for a call that is no longer waiting"),
        }
    }

    /// lapin hands a returned message to whichever confirm it resolves next, which under
    /// concurrent publishing need not be the returned message's own: route it by its
    /// correlation id. Fails the current call when the message is its own.
    fn settle_returned(
        &self,
        returned: BasicReturnMessage,
        correlation_id: &str,
    ) -> Result<(), RpcError> {
        let why = format!(
            "RabbitMQ returned the request: {} {}",
            returned.reply_code, returned.reply_text
        );
        match returned.delivery.properties.correlation_id() {
            Some(owner) if owner.as_str() != correlation_id => {
                self.settle(owner.as_str(), Answer::Returned(why));
                Ok(())
            }
            _ => Err(unavailable(why)),
        }
    }

    fn close(&self) {
        let mut waiting = lock(&self.waiting);
        self.closed.store(true, Ordering::Release);
        // Dropping the senders wakes every waiting caller with "closed".
        waiting.clear();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// One caller's place in [`Pending`]; leaving (timeout, cancellation) frees it.
struct Waiter {
    pending: Arc<Pending>,
    correlation_id: String,
    rx: oneshot::Receiver<Answer>,
}

impl Waiter {
    async fn answer(mut self) -> Result<Vec<u8>, RpcError> {
        match (&mut self.rx).await {
            Ok(Answer::Reply(body)) => Ok(body),
            Ok(Answer::Returned(why)) => Err(unavailable(why)),
            Err(_) => Err(unavailable("the reply channel closed")),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        lock(&self.pending.waiting).remove(&self.correlation_id);
    }
}

/// A per-request reply queue, deleted on every way out of the call.
struct ReplyQueue {
    channel: Channel,
    name: ShortString,
    deleted: bool,
}

impl ReplyQueue {
    async fn delete(mut self) {
        self.deleted = true;
        if let Err(e) = self
            .channel
            .queue_delete(self.name.clone(), QueueDeleteOptions::default())
            .await
        {
            // Exclusive: if the channel or connection is gone, so is the queue.
            tracing::debug!(queue = %self.name, error = %e, "deleting a reply queue failed");
        }
    }
}

impl Drop for ReplyQueue {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // The call was abandoned mid-flight (timeout or a dropped future): delete in the
        // background rather than leave the queue to the connection's end.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let channel = self.channel.clone();
            let name = self.name.clone();
            runtime.spawn(async move {
                let _ = channel
                    .queue_delete(name, QueueDeleteOptions::default())
                    .await;
            });
        }
    }
}

/// The body of the first delivery carrying `correlation_id`.
async fn next_reply(consumer: &mut Consumer, correlation_id: &str) -> Result<Vec<u8>, RpcError> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|e| lapin_unavailable(e, "receive the reply"))?;
        if delivery
            .properties
            .correlation_id()
            .as_ref()
            .is_some_and(|id| id.as_str() == correlation_id)
        {
            return Ok(delivery.data);
        }
        tracing::warn!("ignoring a reply with another correlation_id");
    }
    Err(unavailable("the reply queue was cancelled"))
}

fn unavailable(why: impl std::fmt::Display) -> RpcError {
    RpcError::Unavailable(anyhow!("{why}"))
}

fn lapin_unavailable(error: lapin::Error, doing: &'static str) -> RpcError {
    RpcError::Unavailable(anyhow::Error::new(error).context(doing))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked: every operation is one insert/remove.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
