//! The outbox relay: publishes the events of the outbox to the events exchange, confirmed,
//! and marks them sent. One runs in every replica.
//!
//! A pass claims a batch (a lease, committed at once), publishes it with no transaction open,
//! waits for the broker's confirms, and marks the confirmed rows sent. Delivery is at least
//! once: a relay that dies between the publish and the mark leaves the rows leased, and once
//! the lease runs out a relay publishes them again under the same `message_id`, by which
//! consumers deduplicate. Nothing is lost while the broker is down: rows stay in the table
//! until a confirm comes back.

use std::time::Duration;

use anyhow::Context;
use common::{
    amqp::{Broker, CONTENT_TYPE_JSON, declare_events_exchange},
    metrics::{Registry, register},
};
use lapin::{
    BasicProperties, Channel, Confirmation, PublisherConfirm,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use prometheus::{IntCounter, IntGauge};
use sea_orm::DatabaseConnection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    config::OutboxConfig,
    entity::outbox as row,
    outbox::{self, Headers, Wake},
};

/// Events claimed and published in one pass. A full batch is followed by another pass at once.
const BATCH: u64 = 100;
/// First pause after a pass failed (broker or database unreachable); doubled after each
/// further failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest such pause, so a broker back from an outage is used within seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often sent events past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The most rows one prune deletes; a larger backlog goes over the next prunes.
const PRUNE_BATCH: u64 = 5000;

/// Publishes the outbox's events until shutdown.
pub struct Relay {
    db: DatabaseConnection,
    broker: Broker,
    exchange: String,
    config: OutboxConfig,
    wake: Wake,
    published: IntCounter,
    pending: IntGauge,
}

/// How a pass ended.
enum Pass {
    /// Nothing more to publish now: wait for a wake or the poll.
    Done,
    /// A full batch went out: there may be more.
    Full,
}

/// What became of the rows of one batch.
#[derive(Default)]
struct Batch {
    /// Confirmed by the broker: to be marked sent.
    sent: Vec<i64>,
    /// Confirmed, but returned: no queue is bound for their routing key. Left leased, so they
    /// are tried again once the lease runs out rather than on every pass.
    returned: Vec<String>,
    /// Not confirmed: to be released and tried again at once.
    failed: Vec<i64>,
    /// Why the first failure failed.
    error: Option<anyhow::Error>,
}

impl Relay {
    /// A relay publishing the events of `db` to `exchange` on `broker`, woken by `wake`, its
    /// metrics (`shop_outbox_published_total`, `shop_outbox_pending`) in `registry`.
    pub fn new(
        db: DatabaseConnection,
        broker: Broker,
        exchange: String,
        config: OutboxConfig,
        wake: Wake,
        registry: &Registry,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            broker,
            exchange,
            config,
            wake,
            published: register(
                registry,
                IntCounter::new(
                    "shop_outbox_published_total",
                    "Events the broker confirmed; an event published again after a crash or an \
                     expired lease counts again.",
                )?,
            )?,
            pending: register(
                registry,
                IntGauge::new(
                    "shop_outbox_pending",
                    "Events in the outbox not yet confirmed by the broker, as of the relay's \
                     last pass.",
                )?,
            )?,
        })
    }

    /// Publishes until `shutdown`; a pass under way finishes first. Never gives up: while the
    /// broker or the database is unreachable it tries again, backing off from 100 ms to 5 s,
    /// and says so once per outage.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(exchange = %self.exchange, "relaying events");
        let mut channel = None;
        let mut failing = false;
        let mut pause = BACKOFF_START;
        let mut next_prune = Instant::now();
        while !shutdown.is_cancelled() {
            if Instant::now() >= next_prune {
                self.prune().await;
                next_prune = Instant::now() + PRUNE_EVERY;
            }
            match self.pass(&mut channel).await {
                Ok(pass) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(exchange = %self.exchange, "publishing events again");
                    }
                    pause = BACKOFF_START;
                    if let Pass::Full = pass {
                        continue;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.config.poll) => {}
                    }
                }
                Err(e) => {
                    // A fresh channel next time: this one may be what failed.
                    channel = None;
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(
                            exchange = %self.exchange,
                            error = format!("{e:#}"),
                            "cannot publish events; they wait in the outbox until the broker \
                             takes them"
                        );
                    } else {
                        tracing::debug!(error = format!("{e:#}"), "still cannot publish events");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(BACKOFF_MAX);
                }
            }
        }
        if let Some(channel) = channel {
            let _ = channel.close(200, "shutting down".into()).await;
        }
        tracing::info!(exchange = %self.exchange, "stopped relaying events");
        Ok(())
    }

    async fn pass(&self, channel: &mut Option<Channel>) -> anyhow::Result<Pass> {
        let pending = outbox::pending(&self.db)
            .await
            .context("count the events waiting")?;
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        if pending == 0 && !self.broker.is_connected() {
            // Nothing to publish and nowhere to: no outage to report.
            return Ok(Pass::Done);
        }
        // Opened (and the exchange declared) even with nothing to publish, so that the exchange
        // exists for consumers to bind to within a poll of every (re)connect.
        let open = match channel {
            Some(open) if open.status().connected() => open.clone(),
            _ => channel.insert(self.open_channel().await?).clone(),
        };
        if pending == 0 {
            return Ok(Pass::Done);
        }
        // Checked before claiming, so no lease is taken on events that cannot go out now.
        let connection = self
            .broker
            .connection()
            .context("not connected to RabbitMQ")?;
        anyhow::ensure!(
            !connection.status().blocked(),
            "RabbitMQ is blocking publishers (resource alarm)"
        );
        let rows = outbox::claim(&self.db, BATCH, self.config.lease)
            .await
            .context("claim events")?;
        let full = rows.len() as u64 == BATCH;
        let batch = self.publish(&open, &rows).await;
        outbox::mark_sent(&self.db, &batch.sent)
            .await
            .context("mark events sent")?;
        self.published.inc_by(batch.sent.len() as u64);
        self.pending.sub(batch.sent.len() as i64);
        if let Some(routing_key) = batch.returned.first() {
            tracing::warn!(
                exchange = %self.exchange,
                routing_key,
                returned = batch.returned.len(),
                retry_in_secs = self.config.lease.as_secs(),
                "events returned: no queue is bound for them; publishing them again later"
            );
        }
        if let Some(error) = batch.error {
            if let Err(e) = outbox::release(&self.db, &batch.failed).await {
                // Their lease frees them later instead.
                tracing::debug!(error = %e, "could not release unpublished events");
            }
            return Err(error);
        }
        Ok(if full { Pass::Full } else { Pass::Done })
    }

    /// A publishing channel with confirms on, after declaring the exchange: on every
    /// (re)connect, so a broker without definitions, or one that lost the exchange, gets it back.
    async fn open_channel(&self) -> anyhow::Result<Channel> {
        let connection = self
            .broker
            .connection()
            .context("not connected to RabbitMQ")?;
        let channel = connection
            .create_channel()
            .await
            .context("open the publishing channel")?;
        // An event counts as published only once RabbitMQ has taken it.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("turn on publisher confirms")?;
        declare_events_exchange(&channel, &self.exchange).await?;
        Ok(channel)
    }

    /// Publishes `rows` in order, then waits for their confirms, for at most half the lease:
    /// a row must be marked before another relay may take it again.
    async fn publish(&self, channel: &Channel, rows: &[row::Model]) -> Batch {
        let deadline = Instant::now() + self.config.lease / 2;
        let mut batch = Batch::default();
        let mut confirms: Vec<(i64, &str, PublisherConfirm)> = Vec::with_capacity(rows.len());
        for (n, row) in rows.iter().enumerate() {
            match self.publish_one(channel, row).await {
                Ok(confirm) => confirms.push((row.id, &row.routing_key, confirm)),
                Err(e) => {
                    batch.error = Some(e);
                    batch.failed.extend(rows[n..].iter().map(|r| r.id));
                    break;
                }
            }
        }
        for (id, routing_key, confirm) in confirms {
            let failure = match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(Confirmation::Ack(None))) => {
                    batch.sent.push(id);
                    continue;
                }
                Ok(Ok(Confirmation::Ack(Some(_)))) => {
                    batch.returned.push(routing_key.to_owned());
                    continue;
                }
                Ok(Ok(Confirmation::Nack(_))) => {
                    anyhow::anyhow!("RabbitMQ refused an event (nack)")
                }
                Ok(Ok(Confirmation::NotRequested)) => {
                    anyhow::anyhow!("publisher confirms are off on the publishing channel")
                }
                Ok(Err(e)) => anyhow::Error::new(e).context("wait for a publisher confirm"),
                Err(_) => anyhow::anyhow!("no publisher confirm within half the lease"),
            };
            batch.failed.push(id);
            batch.error.get_or_insert(failure);
        }
        batch
    }

    async fn publish_one(
        &self,
        channel: &Channel,
        row: &row::Model,
    ) -> anyhow::Result<PublisherConfirm> {
        let body = serde_json::to_vec(&row.payload).context("serialize an event")?;
        let properties = BasicProperties::default()
            // Persistent: an event the broker confirmed survives its restart in a durable queue.
            .with_delivery_mode(2)
            .with_content_type(CONTENT_TYPE_JSON.into())
            .with_type(row.routing_key.as_str().into())
            // Consumers deduplicate by it: the same row always goes out under the same id.
            .with_message_id(row.message_id.to_string().into())
            // When the change happened, not when this relay got to it.
            .with_timestamp(row.created_at.timestamp().max(0) as u64)
            .with_app_id("orders".into())
            .with_headers(Headers::of(row));
        channel
            .basic_publish(
                self.exchange.as_str().into(),
                row.routing_key.as_str().into(),
                BasicPublishOptions {
                    // An event no queue takes is returned rather than dropped, and stays unsent.
                    mandatory: true,
                    // Not supported by RabbitMQ.
                    immediate: false,
                },
                &body,
                properties,
            )
            .await
            .context("publish an event")
    }

    /// Deletes sent events past their retention; a failure waits for the next prune.
    async fn prune(&self) {
        match outbox::prune(&self.db, self.config.retention, PRUNE_BATCH).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted sent events past their retention"),
            Err(e) => tracing::debug!(error = %e, "could not delete old sent events"),
        }
    }
}
