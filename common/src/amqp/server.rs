//! The RPC server loop: consume, parse, handle, reply, ack; again after every reconnect.

use std::{
    panic::AssertUnwindSafe,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    },
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, ShortString},
};
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{
    CONTENT_TYPE_JSON, DELIVERY_LIMIT, HEADER_DEAD_LETTER_REASON, HEADER_DEADLINE_MS,
    HEADER_REQUEST_ID, Incoming, Outcome, RpcRequest,
    broker::{Broker, Live},
    dead_letter_queue, declare_work_queue, now_epoch_ms, propagation,
};
use crate::metrics::{InProgress, Registry, duration_histogram, register};

/// Set by a quorum queue on a redelivered message: how many times it was returned unsettled.
pub(super) const HEADER_DELIVERY_COUNT: &str = "x-delivery-count";

/// First pause before running the handler again after it asked to retry.
pub(super) const RETRY_START: Duration = Duration::from_millis(200);
/// Longest such pause: a database back from an outage is noticed within this.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(5);
/// First pause before subscribing again after the consumer stopped or could not start.
pub(super) const RESUBSCRIBE_START: Duration = Duration::from_millis(100);
/// Longest such pause.
pub(super) const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);

/// Consumes `queue` until `shutdown`: parses each delivery as `R` (else dead-letters it),
/// runs `handler`, replies to `reply_to` with the same `correlation_id`, then acks.
/// Re-subscribes after every reconnect of `broker`.
///
/// For each connection it opens a consumer channel with `basic_qos(prefetch)`, declares the
/// queue with [`declare_work_queue`], opens a reply channel with publisher confirms, and runs
/// up to `prefetch` deliveries at once. A delivery is moved to `<queue>.dlq` (copied there with
/// the reason in [`HEADER_DEAD_LETTER_REASON`], then acked) when its `content_type` is not
/// JSON, its `type` is not `R::MESSAGE_TYPE`, it lacks `reply_to` or `correlation_id`, its body
/// does not parse, the handler panics, or the queue has already returned it [`DELIVERY_LIMIT`]
/// times unsettled (a request that crashes whoever handles it). One whose `x-deadline-ms` has
/// passed is acked and dropped unhandled: its caller has given up. Each delivery runs in a
/// `delivery` span carrying its `request_id`, `message_id` and `correlation_id`.
///
/// On [`Outcome::Retry`] the delivery is kept, not requeued, and the handler runs again in this
/// process after a pause doubling from 200 ms to 5 s, until it replies. A requeue would count
/// towards the delivery limit and dead-letter good requests during a long database
/// outage; a held delivery also keeps its prefetch slot, so an outage stops new deliveries
/// rather than cycling them. Retrying stops when the request's `x-deadline-ms` passes (acked
/// and dropped as above), when `shutdown` is requested (requeued for another consumer), or when
/// the channel is gone (the broker redelivers it).
///
/// On `shutdown` it stops taking deliveries, lets the ones in progress finish, and returns
/// `Ok`. It returns an error only when the queue cannot be used as configured (it exists with
/// other arguments, or access is refused), which no retry would fix.
pub async fn serve<R, H, Fut>(
    broker: Broker,
    queue: String,
    prefetch: u16,
    handler: H,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    R: RpcRequest,
    H: Fn(Incoming<R>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome<R::Reply>> + Send,
{
    let options = ServeOptions {
        prefetch,
        ..ServeOptions::default()
    };
    serve_with(broker, queue, options, handler, shutdown).await
}

/// How [`serve_with`] consumes, beyond the queue.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Unacknowledged deliveries held at once, and so requests handled at once.
    pub prefetch: u16,
    /// Callbacks at points of the handling, for fault injection.
    pub hooks: Hooks,
    /// Where deliveries are counted and timed; not counted when `None`.
    pub metrics: Option<ConsumerMetrics>,
}

/// Points in the handling of a delivery where [`serve_with`] calls back, so tests can inject
/// faults there.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hooks {
    /// Called once the broker has confirmed the reply, just before the request is acked.
    pub after_reply: Option<fn()>,
}

/// What a consumer counts: `shop_amqp_consumed_total{queue, outcome}` (`ack`,
/// `dead_lettered`, `retried`, `expired`), `shop_amqp_handling_duration_seconds{queue}` from
/// delivery to settlement, and `shop_amqp_consumers{queue}`, the subscriptions open now.
#[derive(Clone)]
pub struct ConsumerMetrics {
    consumed: IntCounterVec,
    handling: HistogramVec,
    consumers: IntGaugeVec,
}

impl ConsumerMetrics {
    /// Registers the consumer's metrics in `registry`.
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        Ok(Self {
            consumed: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "shop_amqp_consumed_total",
                        "Deliveries settled, by how: ack (answered), dead_lettered, retried (held \
                         for another attempt or returned to the queue) or expired (past its \
                         deadline).",
                    ),
                    &["queue", "outcome"],
                )?,
            )?,
            handling: duration_histogram(
                registry,
                "shop_amqp_handling_duration_seconds",
                "Time from a delivery's arrival to its settlement.",
                &["queue"],
            )?,
            consumers: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "shop_amqp_consumers",
                        "Consumer subscriptions this process holds on the queue now.",
                    ),
                    &["queue"],
                )?,
            )?,
        })
    }

    /// Shows every outcome of `queue` at 0, and no subscription, before the first delivery: a
    /// series that first appears at 1 shows no increase to an alert.
    fn start_counting(&self, queue: &str) {
        for outcome in ["ack", "dead_lettered", "retried", "expired"] {
            self.consumed.with_label_values(&[queue, outcome]);
        }
        self.consumers.with_label_values(&[queue]);
    }
}

/// Counts a delivery's settlement, and its handling time once it is final.
struct Tally<'a> {
    metrics: Option<&'a ConsumerMetrics>,
    queue: &'a str,
    received: Instant,
}

impl Tally<'_> {
    fn count(&self, outcome: &'static str) {
        if let Some(metrics) = self.metrics {
            metrics
                .consumed
                .with_label_values(&[self.queue, outcome])
                .inc();
            if outcome != "retried" {
                metrics
                    .handling
                    .with_label_values(&[self.queue])
                    .observe(self.received.elapsed().as_secs_f64());
            }
        }
    }
}

/// [`serve`], with every option.
pub async fn serve_with<R, H, Fut>(
    broker: Broker,
    queue: String,
    options: ServeOptions,
    handler: H,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    R: RpcRequest,
    H: Fn(Incoming<R>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome<R::Reply>> + Send,
{
    if let Some(metrics) = &options.metrics {
        metrics.start_counting(&queue);
    }
    resubscribe(&broker, &queue, &shutdown, |live| {
        consume(live, &queue, &options, &handler, &shutdown)
    })
    .await
}

/// Runs `session` on each open connection of `broker`, one after the other, until `shutdown`:
/// again at once after a session that [ended](Session::Ended) (the connection or channel
/// closed, the queue was deleted), again after a pause doubling from 100 ms to 5 s after one that
/// could not start. Returns `Ok` on `shutdown` (or once the supervisor is gone), and the error of
/// a session that failed for good ([`is_permanent`]), with `queue` named.
pub(super) async fn resubscribe<F, Fut>(
    broker: &Broker,
    queue: &str,
    shutdown: &CancellationToken,
    mut session: F,
) -> anyhow::Result<()>
where
    F: FnMut(Live) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Session>>,
{
    let mut state = broker.subscribe();
    let mut pause = RESUBSCRIBE_START;
    loop {
        let live = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            live = next_open(&mut state) => live,
        };
        let Some(live) = live else {
            // The supervisor has stopped without a connection: nothing left to consume.
            shutdown.cancelled().await;
            return Ok(());
        };
        let generation = live.generation;
        match session(live).await {
            Ok(Session::Stopped) => return Ok(()),
            Ok(Session::Ended) => {
                tracing::warn!(queue, generation, "consumer stopped; subscribing again");
                pause = RESUBSCRIBE_START;
            }
            // Left to the caller to log, once, with the rest of the cause chain.
            Err(e) if is_permanent(&e) => return Err(e.context(format!("consume {queue}"))),
            Err(e) => {
                tracing::warn!(
                    queue,
                    error = format!("{e:#}"),
                    retry_in_ms = pause.as_millis() as u64,
                    "cannot start consuming"
                );
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RESUBSCRIBE_MAX);
    }
}

/// How a consuming session ended.
pub(super) enum Session {
    /// `shutdown` was cancelled and the deliveries in progress are done.
    Stopped,
    /// The consumer stream ended: the connection or channel closed, or the queue was deleted.
    Ended,
}

/// A channel to consume on, with at most `prefetch` unacked deliveries: the bound on the work in
/// progress in this process.
pub(super) async fn consumer_channel(
    connection: &lapin::Connection,
    prefetch: u16,
) -> anyhow::Result<Channel> {
    let channel = connection
        .create_channel()
        .await
        .context("open the consumer channel")?;
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .context("set the prefetch")?;
    Ok(channel)
}

/// A channel with publisher confirms on, for what a consumer publishes (`what`: its replies or
/// dead letters) before it acks a delivery.
pub(super) async fn confirmed_channel(
    connection: &lapin::Connection,
    what: &str,
) -> anyhow::Result<Channel> {
    let channel = connection
        .create_channel()
        .await
        .with_context(|| format!("open the channel for {what}"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .with_context(|| format!("turn on publisher confirms for {what}"))?;
    Ok(channel)
}

/// The next open connection, or `None` once the supervisor is gone.
pub(super) async fn next_open(state: &mut watch::Receiver<Option<Live>>) -> Option<Live> {
    // A connection that died but is still published is skipped until the supervisor notices.
    state
        .wait_for(|s| s.as_ref().is_some_and(Live::is_open))
        .await
        .ok()
        .and_then(|s| s.clone())
}

async fn consume<R, H, Fut>(
    live: Live,
    queue: &str,
    options: &ServeOptions,
    handler: &H,
    shutdown: &CancellationToken,
) -> anyhow::Result<Session>
where
    R: RpcRequest,
    H: Fn(Incoming<R>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome<R::Reply>> + Send,
{
    let prefetch = options.prefetch;
    let connection = &live.connection;
    let channel = consumer_channel(connection, prefetch).await?;
    declare_work_queue(&channel, queue).await?;
    // A request is acked only once RabbitMQ has taken its reply.
    let replies = confirmed_channel(connection, "replies").await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            ShortString::default(),
            BasicConsumeOptions {
                // Acked by hand after the reply, so a crash mid-request means redelivery.
                no_ack: false,
                // Several instances share the queue.
                exclusive: false,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .context("start consuming")?;
    tracing::info!(
        queue,
        prefetch,
        generation = live.generation,
        "consuming requests"
    );
    // Counted while this session lasts, whichever way it ends.
    let _subscribed = options
        .metrics
        .as_ref()
        .map(|m| InProgress::new(&m.consumers.with_label_values(&[queue])));

    // prefetch 0 means "unlimited" to RabbitMQ; follow it here too.
    let limit = (prefetch > 0).then_some(usize::from(prefetch));
    // On shutdown, tell RabbitMQ to stop sending while the requests in progress finish. A task
    // of its own, so the consuming future below stays a plain `.await`.
    let stop_sending = tokio::spawn({
        let (channel, tag, shutdown) = (channel.clone(), consumer.tag(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            if let Err(e) = channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await
            {
                tracing::debug!(error = %e, "cancelling the consumer failed");
            }
        }
    });
    let (channel, replies) = (&channel, &replies);
    consumer
        .take_until(shutdown.cancelled())
        .for_each_concurrent(limit, |delivery| async move {
            match delivery {
                Ok(delivery) => {
                    handle(
                        delivery, handler, options, channel, replies, queue, shutdown,
                    )
                    .await
                }
                Err(e) => tracing::warn!(queue, error = %e, "consumer failed"),
            }
        })
        .await;
    if !shutdown.is_cancelled() {
        stop_sending.abort();
        return Ok(Session::Ended);
    }
    let _ = stop_sending.await;
    // Deliveries received but never started go back to the queue when the channel closes.
    let _ = channel.close(200, "shutting down".into()).await;
    let _ = replies.close(200, "shutting down".into()).await;
    tracing::info!(queue, "stopped consuming");
    Ok(Session::Stopped)
}

async fn handle<R, H, Fut>(
    delivery: Delivery,
    handler: &H,
    options: &ServeOptions,
    channel: &Channel,
    replies: &Channel,
    queue: &str,
    shutdown: &CancellationToken,
) where
    R: RpcRequest,
    H: Fn(Incoming<R>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome<R::Reply>> + Send,
{
    let properties = &delivery.properties;
    let request_id = header_string(properties, HEADER_REQUEST_ID);
    let message_id = properties.message_id().as_ref().map(|id| id.to_string());
    // Counted by the quorum queue: how often this request went back to the queue unsettled.
    let returned = header_i64(properties, HEADER_DELIVERY_COUNT).unwrap_or(0);
    let tally = Tally {
        metrics: options.metrics.as_ref(),
        queue,
        received: Instant::now(),
    };
    let span = tracing::info_span!(
        "delivery",
        otel.name = %format_args!("process {}", R::MESSAGE_TYPE),
        otel.kind = "server",
        messaging.system = "rabbitmq",
        queue,
        request_id = request_id.as_deref(),
        message_id = message_id.as_deref(),
        correlation_id = properties
            .correlation_id()
            .as_ref()
            .map(ShortString::as_str),
        redelivered = delivery.redelivered,
        returned,
    );
    // Continues the caller's trace; a request without a (valid) trace context starts its own.
    let _ = span.set_parent(propagation::extract(properties.headers().as_ref()));
    async move {
        // One line per delivery, for counting redeliveries in fault tests.
        tracing::debug!("delivery received");
        if returned >= i64::from(DELIVERY_LIMIT) {
            // It keeps coming back unsettled: most likely it takes its consumer down with it.
            let why = format!("returned to the queue {returned} times without being settled");
            tracing::error!(reason = %why, "dead-lettering the request");
            tally.count(dead_letter(&delivery, replies, queue, &why).await);
            return;
        }
        let deadline = header_i64(&delivery.properties, HEADER_DEADLINE_MS);
        let mut pause = RETRY_START;
        for attempt in 1u32.. {
            // Parsed again for every attempt: the handler owns its request.
            let request = match read_request::<R>(&delivery) {
                Ok(request) => request,
                Err(why) => {
                    tracing::warn!(reason = %why, "unreadable request; dead-lettering it");
                    tally.count(dead_letter(&delivery, replies, queue, &why).await);
                    return;
                }
            };
            if let Some(late_ms) = deadline.map(|d| now_epoch_ms() - d).filter(|&l| l > 0) {
                // Acked, not dead-lettered: nothing is wrong with it, it is just too late.
                tracing::warn!(
                    late_ms,
                    attempt,
                    "request past the moment its caller gave up; dropping it"
                );
                settle(delivery.acker.ack(BasicAckOptions::default()).await, "ack");
                tally.count("expired");
                return;
            }
            let incoming = Incoming {
                request,
                message_id: message_id.clone(),
                request_id: request_id.clone(),
                redelivered: delivery.redelivered,
            };
            let error = match AssertUnwindSafe(handler(incoming)).catch_unwind().await {
                Ok(Outcome::Reply(reply)) => {
                    match send_reply::<R>(replies, &delivery.properties, &reply).await {
                        Ok(()) => {
                            if let Some(after_reply) = options.hooks.after_reply {
                                after_reply();
                            }
                            settle(delivery.acker.ack(BasicAckOptions::default()).await, "ack");
                            tally.count("ack");
                        }
                        Err(e) => {
                            // Redelivered and answered again; the handler is idempotent.
                            tracing::warn!(
                                error = format!("{e:#}"),
                                "could not send the reply; requeueing the request"
                            );
                            requeue(&delivery.acker).await;
                            tally.count("retried");
                        }
                    }
                    return;
                }
                Ok(Outcome::Retry(e)) => e,
                Err(_) => {
                    // A panic is most likely this message's doing; the dead-letter queue keeps
                    // it for a human instead of crashing every consumer it is redelivered to.
                    tracing::error!("handler panicked; dead-lettering the request");
                    tally.count(
                        dead_letter(&delivery, replies, queue, "its handler panicked").await,
                    );
                    return;
                }
            };
            tally.count("retried");
            if !channel.status().connected() {
                // Nothing to settle on a dead channel; the broker redelivers the request.
                tracing::warn!(
                    error = format!("{error:#}"),
                    attempt,
                    "handler failed for now and the channel is gone; leaving the request to \
                     the broker"
                );
                return;
            }
            // Woken at the deadline rather than after it, so a hopeless request goes at once.
            let until_deadline = deadline
                .map(|d| Duration::from_millis(u64::try_from(d - now_epoch_ms()).unwrap_or(0)));
            let wait = until_deadline.map_or(pause, |left| pause.min(left));
            tracing::warn!(
                error = format!("{error:#}"),
                attempt,
                retry_in_ms = wait.as_millis() as u64,
                "handler failed for now; retrying the request"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {
                    tracing::info!(attempt, "shutting down; requeueing the request");
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

/// Checks the properties an RPC request must carry, then parses the body.
fn read_request<R: RpcRequest>(delivery: &Delivery) -> Result<R, String> {
    let properties = &delivery.properties;
    let content_type = properties.content_type().as_ref().map(ShortString::as_str);
    // Compare the media type only: `application/json; charset=utf-8` is still JSON.
    let media_type = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    if !media_type.is_some_and(|m| m.eq_ignore_ascii_case(CONTENT_TYPE_JSON)) {
        return Err(format!(
            "content_type is {content_type:?}, not {CONTENT_TYPE_JSON}"
        ));
    }
    let kind = properties.kind().as_ref().map(ShortString::as_str);
    if kind != Some(R::MESSAGE_TYPE) {
        return Err(format!("type is {kind:?}, not {}", R::MESSAGE_TYPE));
    }
    if properties.reply_to().is_none() || properties.correlation_id().is_none() {
        return Err("no reply_to or correlation_id: nobody to answer".to_owned());
    }
    serde_json::from_slice(&delivery.data).map_err(|e| format!("body does not parse: {e}"))
}

async fn send_reply<R: RpcRequest>(
    replies: &Channel,
    request: &BasicProperties,
    reply: &R::Reply,
) -> anyhow::Result<()> {
    let body = serde_json::to_vec(reply).context("serialize the reply")?;
    let (Some(reply_to), Some(correlation_id)) = (request.reply_to(), request.correlation_id())
    else {
        anyhow::bail!("the request has no reply_to or correlation_id");
    };
    let mut properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE_JSON.into())
        .with_type(format!("{}.reply", R::MESSAGE_TYPE).into())
        .with_correlation_id(correlation_id.clone())
        // Transient: reply queues are exclusive and die with their client anyway.
        .with_delivery_mode(1)
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64);
    let mut headers = FieldTable::default();
    if let Some(request_id) = request
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(HEADER_REQUEST_ID))
    {
        headers.insert(HEADER_REQUEST_ID.into(), request_id.clone());
    }
    // The server's span, so the caller can tie the answer to the work behind it.
    propagation::inject(&tracing::Span::current().context(), &mut headers);
    properties = properties.with_headers(headers);
    let confirmation = replies
        .basic_publish(
            ShortString::default(),
            reply_to.clone(),
            BasicPublishOptions {
                // The requester may have timed out and its queue be gone; that is not an error.
                mandatory: false,
                immediate: false,
            },
            &body,
            properties,
        )
        .await
        .context("publish the reply")?
        .await
        .context("wait for the reply's publisher confirm")?;
    match confirmation {
        Confirmation::Nack(_) => anyhow::bail!("RabbitMQ refused the reply (nack)"),
        Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
    }
}

/// Returns a request to its queue; it counts towards the queue's delivery limit.
pub(super) async fn requeue(acker: &Acker) {
    let options = BasicNackOptions {
        requeue: true,
        multiple: false,
    };
    settle(acker.nack(options).await, "nack");
}

/// Moves a request to `<queue>.dlq`, where it waits for a human, then acks it. The copy keeps
/// the body and properties, less the `expiration` (a dead letter must not vanish on its own),
/// and says why in [`HEADER_DEAD_LETTER_REASON`]. Published here rather than left to a
/// dead-letter exchange, so that requests which merely expired never land there. When the copy
/// is not confirmed the request is requeued, to be tried again.
/// Returns the outcome to count: `dead_lettered`, or `retried` when it went back to the queue.
pub(super) async fn dead_letter(
    delivery: &Delivery,
    replies: &Channel,
    queue: &str,
    reason: &str,
) -> &'static str {
    match publish_dead_letter(delivery, replies, queue, reason).await {
        Ok(()) => {
            settle(delivery.acker.ack(BasicAckOptions::default()).await, "ack");
            "dead_lettered"
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not dead-letter the request; requeueing it"
            );
            requeue(&delivery.acker).await;
            "retried"
        }
    }
}

async fn publish_dead_letter(
    delivery: &Delivery,
    replies: &Channel,
    queue: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let dlq = dead_letter_queue(queue);
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        HEADER_DEAD_LETTER_REASON.into(),
        AMQPValue::LongString(reason.into()),
    );
    // Built afresh rather than cloned: no `expiration`, and no `user_id`, which RabbitMQ
    // refuses (closing the channel) unless it names this connection's own user.
    let original = &delivery.properties;
    let mut properties = BasicProperties::default()
        // Persistent, like the request: the DLQ is durable and so is what waits in it.
        .with_delivery_mode(2)
        .with_headers(headers);
    if let Some(v) = original.content_type() {
        properties = properties.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        properties = properties.with_content_encoding(v.clone());
    }
    if let Some(v) = original.kind() {
        properties = properties.with_type(v.clone());
    }
    if let Some(v) = original.message_id() {
        properties = properties.with_message_id(v.clone());
    }
    if let Some(v) = original.correlation_id() {
        properties = properties.with_correlation_id(v.clone());
    }
    if let Some(v) = original.reply_to() {
        properties = properties.with_reply_to(v.clone());
    }
    if let Some(v) = original.timestamp() {
        properties = properties.with_timestamp(*v);
    }
    if let Some(v) = original.app_id() {
        properties = properties.with_app_id(v.clone());
    }
    let confirmation = replies
        .basic_publish(
            ShortString::default(),
            dlq.as_str().into(),
            BasicPublishOptions {
                // A missing DLQ must not swallow the request: it is returned, and requeued.
                mandatory: true,
                immediate: false,
            },
            &delivery.data,
            properties,
        )
        .await
        .context("publish the dead letter")?
        .await
        .context("wait for the dead letter's publisher confirm")?;
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => anyhow::bail!("{dlq} does not exist"),
        Confirmation::Nack(_) => anyhow::bail!("RabbitMQ refused the dead letter (nack)"),
    }
}

/// Logs an ack, nack or reject that did not reach the broker; the channel is gone, and the
/// broker redelivers the message to the next consumer.
pub(super) fn settle(result: lapin::Result<bool>, what: &'static str) {
    match result {
        Ok(true) => {}
        Ok(false) => tracing::debug!(what, "delivery already settled or its channel closed"),
        Err(e) => tracing::warn!(what, error = %e, "could not settle the delivery"),
    }
}

pub(super) fn header_string(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

pub(super) fn header_i64(properties: &BasicProperties, name: &str) -> Option<i64> {
    // Other publishers may pick any integer type, or even a string.
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

/// Errors that come back identically however often the consumer is restarted.
pub(super) fn is_permanent(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<lapin::Error>()
            .is_some_and(|e| match e.kind() {
                lapin::ErrorKind::ProtocolError(amqp) => matches!(
                    amqp.kind(),
                    AMQPErrorKind::Soft(
                        AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::ACCESSREFUSED
                    )
                ),
                _ => false,
            })
    })
}
