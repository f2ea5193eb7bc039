//! `orders`: one row per stored order.

use chrono::{DateTime, Utc};
use common::ids::{OrderId, ReservationId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: OrderId,
    pub user_id: UserId,
    pub email: String,
    /// `created` or `cancelled`.
    pub status: String,
    pub total_cents: i64,
    /// `key:<Idempotency-Key>` or `msg:<message_id>`; unique per user.
    pub dedup_key: String,
    pub idempotency_key: Option<String>,
    /// Hex SHA-256 of the lines, to tell a replay from a reused key.
    pub fingerprint: String,
    pub message_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The stock products reserved for it; `None` for a buy made without one.
    pub reservation_id: Option<ReservationId>,
    /// When its buyer cancelled it; set exactly when `status` is `cancelled`.
    pub cancelled_at: Option<DateTime<Utc>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::order_line::Entity")]
    Lines,
}

impl Related<super::order_line::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Lines.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
