//! Settles the reservations whose buy never heard its outcome (a 504, a 503 after the broker may
//! have taken the request, a crash between steps): it asks orders `order.resolve-reservation.v1`,
//! whose answer is final (DESIGN.md), and commits or releases accordingly.

use std::time::Duration;

use anyhow::Context;
use common::{
    amqp::{CallOptions, RpcClient},
    ids::ReservationId,
    messages::{ResolveReservationReplyV1, ResolveReservationV1},
    metrics::{Registry, register},
};
use prometheus::IntCounterVec;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio_util::sync::CancellationToken;

use crate::{
    entity::reservation::{self, PENDING},
    stock,
};

/// Reservations asked about in one pass, oldest first; the rest wait for the next pass.
const BATCH: u64 = 100;

/// How long the ids of handled order events are kept: far longer than a redelivery or a
/// relay's republish takes, so `processed_events` stays bounded.
const EVENT_IDS_KEPT_DAYS: i32 = 7;

/// When and how often the reconciler looks.
#[derive(Debug, Clone, Copy)]
pub struct ReconcilerConfig {
    /// `RESERVATION_CHECK_INTERVAL_MS`, default 5000: the pause between two passes.
    pub interval: Duration,
    /// `RESERVATION_RESOLVE_AFTER_MS`, default 30000: how long a reservation stays pending
    /// before orders is asked about it; well past the RPC timeout, so the buy that made it has
    /// given up waiting (asking earlier would only refuse buys still on their way).
    pub resolve_after: Duration,
}

/// Asks orders about old pending reservations and settles them.
pub struct Reconciler {
    db: DatabaseConnection,
    orders: RpcClient<ResolveReservationV1>,
    config: ReconcilerConfig,
    settled: IntCounterVec,
}

impl Reconciler {
    /// A reconciler over `db` asking `orders`, counting in `registry`
    /// (`shop_reservations_resolved_total{outcome}`: `ordered`, `refused`, `failed`).
    pub fn new(
        db: DatabaseConnection,
        orders: RpcClient<ResolveReservationV1>,
        config: ReconcilerConfig,
        registry: &Registry,
    ) -> anyhow::Result<Self> {
        let settled = register(
            registry,
            IntCounterVec::new(
                prometheus::Opts::new(
                    "shop_reservations_resolved_total",
                    "Pending reservations orders was asked about, by its answer (ordered, \
                     refused) or failed when there was none.",
                ),
                &["outcome"],
            )?,
        )?;
        for outcome in ["ordered", "refused", "failed"] {
            settled.with_label_values(&[outcome]);
        }
        Ok(Self {
            db,
            orders,
            config,
            settled,
        })
    }

    /// Passes every `interval` until `shutdown`; a pass that fails is logged and tried again at
    /// the next.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.config.interval) => {}
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = format!("{e:#}"), "reconciling reservations failed");
            }
            if let Err(e) = stock::forget_events_older_than(&self.db, EVENT_IDS_KEPT_DAYS).await {
                tracing::warn!(error = %e, "forgetting old order event ids failed");
            }
        }
    }

    /// One pass: asks about every reservation pending longer than `resolve_after` (at most
    /// [`BATCH`]) and settles those orders answered for; how many it settled.
    pub async fn pass(&self) -> anyhow::Result<usize> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(self.config.resolve_after)
                .context("RESERVATION_RESOLVE_AFTER_MS is out of range")?;
        let pending: Vec<ReservationId> = reservation::Entity::find()
            .select_only()
            .column(reservation::Column::Id)
            .filter(reservation::Column::State.eq(PENDING))
            .filter(reservation::Column::CreatedAt.lt(cutoff))
            .order_by_asc(reservation::Column::CreatedAt)
            .limit(BATCH)
            .into_tuple()
            .all(&self.db)
            .await
            .context("reading pending reservations")?;
        let mut settled = 0;
        for id in pending {
            let request = ResolveReservationV1 { reservation_id: id };
            let outcome = match self.orders.call(&request, CallOptions::default()).await {
                Ok(ResolveReservationReplyV1::Ordered { order_id }) => {
                    stock::commit(&self.db, id, order_id).await?;
                    tracing::info!(reservation = %id, %order_id, "pending reservation had an order");
                    "ordered"
                }
                Ok(ResolveReservationReplyV1::Refused) => {
                    stock::release(&self.db, id).await?;
                    tracing::info!(reservation = %id, "pending reservation had no order; released");
                    "refused"
                }
                Ok(ResolveReservationReplyV1::Problem(problem)) => {
                    tracing::warn!(reservation = %id, %problem, "orders could not resolve a reservation");
                    "failed"
                }
                Err(e) => {
                    tracing::warn!(reservation = %id, error = %e, "asking orders about a reservation failed");
                    "failed"
                }
            };
            self.settled.with_label_values(&[outcome]).inc();
            if outcome != "failed" {
                settled += 1;
            }
        }
        Ok(settled)
    }
}
