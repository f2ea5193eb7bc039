//! The transactional outbox: an event is a row written in the transaction of the change it
//! describes, so it exists exactly when the change does; the relay ([`crate::relay`]) publishes
//! it afterwards. Every function takes any connection, so writers call them inside their own
//! transaction.

use std::{sync::Arc, time::Duration};

use common::{
    amqp::{HEADER_REQUEST_ID, propagation},
    messages::Event,
};
use lapin::types::{AMQPValue, FieldTable};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    Statement,
    prelude::Expr,
};
use tokio::sync::Notify;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::entity::outbox;

/// Wakes this replica's relay after a commit that wrote an event, so it is published at once
/// rather than at the next poll. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// Tells the relay there is something to publish. A wake while the relay is busy is kept
    /// for its next wait, so none is lost.
    pub fn notify(&self) {
        self.0.notify_one();
    }

    /// Waits for the next [`Wake::notify`].
    pub async fn notified(&self) {
        self.0.notified().await;
    }
}

/// The string headers an event is published with: the request id and the W3C trace context of
/// the change that wrote it, so its consumers' logs and traces join the request's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(serde_json::Map<String, serde_json::Value>);

impl Headers {
    /// The headers of a change made now: `request_id` and the current span's trace context.
    pub fn current(request_id: Option<&str>) -> Self {
        let mut table = FieldTable::default();
        propagation::inject(&tracing::Span::current().context(), &mut table);
        let mut headers: serde_json::Map<_, _> = table
            .inner()
            .iter()
            .filter_map(|(key, value)| match value {
                AMQPValue::LongString(s) => Some((
                    key.to_string(),
                    String::from_utf8_lossy(s.as_bytes()).into_owned().into(),
                )),
                _ => None,
            })
            .collect();
        if let Some(id) = request_id {
            headers.insert(HEADER_REQUEST_ID.to_owned(), id.into());
        }
        Self(headers)
    }

    /// The stored headers of `row` as AMQP headers; anything but a string is left out.
    pub fn of(row: &outbox::Model) -> FieldTable {
        let mut table = FieldTable::default();
        if let Some(map) = row.headers.as_object() {
            for (key, value) in map {
                if let Some(text) = value.as_str() {
                    table.insert(key.as_str().into(), AMQPValue::LongString(text.into()));
                }
            }
        }
        table
    }
}

/// Writes `event` to the outbox under a fresh `message_id`, which it returns.
pub async fn enqueue<E: Event>(
    db: &impl ConnectionTrait,
    event: &E,
    headers: &Headers,
) -> Result<Uuid, DbErr> {
    let message_id = Uuid::new_v4();
    let payload = serde_json::to_value(event)
        .map_err(|e| DbErr::Custom(format!("an event does not serialize: {e}")))?;
    outbox::Entity::insert(outbox::ActiveModel {
        id: NotSet,
        message_id: Set(message_id),
        routing_key: Set(E::ROUTING_KEY.to_owned()),
        payload: Set(payload),
        headers: Set(serde_json::Value::Object(headers.0.clone())),
        created_at: NotSet,
        claimed_until: NotSet,
        sent_at: NotSet,
    })
    .exec_without_returning(db)
    .await?;
    Ok(message_id)
}

/// Takes up to `batch` unsent rows, oldest first, that no relay holds (never claimed, or whose
/// lease has run out), and holds them for `lease`. One statement, so the claim commits at once
/// and nothing is held while the rows are published.
///
/// `SKIP LOCKED` lets relays of several replicas claim at the same moment without waiting for
/// one another, each taking other rows; the lease is what keeps a row from being taken again
/// while its relay publishes it, and what frees it should that relay die before marking it.
pub async fn claim(
    db: &impl ConnectionTrait,
    batch: u64,
    lease: Duration,
) -> Result<Vec<outbox::Model>, DbErr> {
    const CLAIM: &str = "UPDATE outbox SET claimed_until = now() + make_interval(secs => $2) \
         WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL \
             AND (claimed_until IS NULL OR claimed_until < now()) \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING *";
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let mut rows = outbox::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            DbBackend::Postgres,
            CLAIM,
            [batch.into(), lease.as_secs_f64().into()],
        ))
        .all(db)
        .await?;
    // RETURNING keeps no order; the relay publishes in the order the rows were written.
    rows.sort_unstable_by_key(|row| row.id);
    Ok(rows)
}

/// Marks the rows `ids` sent: the broker has confirmed them.
pub async fn mark_sent(db: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    outbox::Entity::update_many()
        .col_expr(outbox::Column::SentAt, Expr::current_timestamp())
        .filter(outbox::Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// Lets go of the rows `ids` before their lease ends, so they are tried again at the next
/// pass rather than a lease later: their publish failed for a reason a retry may fix.
pub async fn release(db: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    outbox::Entity::update_many()
        .col_expr(
            outbox::Column::ClaimedUntil,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .filter(outbox::Column::Id.is_in(ids.iter().copied()))
        .filter(outbox::Column::SentAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// How many rows wait to be published.
pub async fn pending(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    outbox::Entity::find()
        .filter(outbox::Column::SentAt.is_null())
        .count(db)
        .await
}

/// Deletes up to `batch` rows sent more than `retention` ago; returns how many it deleted.
/// Bounded, so one pass never holds many locks or runs long after a backlog.
pub async fn prune(
    db: &impl ConnectionTrait,
    retention: Duration,
    batch: u64,
) -> Result<u64, DbErr> {
    const PRUNE: &str = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
         WHERE sent_at < now() - make_interval(secs => $1) LIMIT $2)";
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let deleted = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            PRUNE,
            [retention.as_secs_f64().into(), batch.into()],
        ))
        .await?;
    Ok(deleted.rows_affected())
}
