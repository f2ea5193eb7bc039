//! `outbox`: events written in the transaction of the change they describe, waiting for the
//! relay to publish them.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Increasing with each row written, so the relay publishes oldest first.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The event's `message_id`, by which consumers deduplicate.
    pub message_id: Uuid,
    /// Also the message's `type`: `order.created.v1`, `order.cancelled.v1`.
    pub routing_key: String,
    /// The event's body.
    #[sea_orm(column_type = "JsonBinary")]
    pub payload: Json,
    /// String headers for the message: the request id and the trace context of the change.
    #[sea_orm(column_type = "JsonBinary")]
    pub headers: Json,
    pub created_at: DateTime<Utc>,
    /// Until when a relay holds the row; another relay takes it after that.
    pub claimed_until: Option<DateTime<Utc>>,
    /// When the broker confirmed it; `None` while it waits.
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
