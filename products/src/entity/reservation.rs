//! The `reservations` table: the stock set aside for one buy, and how that buy ended.

use chrono::{DateTime, Utc};
use common::ids::{OrderId, ReservationId, UserId};
use sea_orm::entity::prelude::*;

/// Waiting for the outcome of its buy: the stock is taken.
pub const PENDING: &str = "pending";
/// Its order was stored: the stock stays taken.
pub const COMMITTED: &str = "committed";
/// No order was stored, nor ever will be: the stock was given back.
pub const RELEASED: &str = "released";
/// Its order was cancelled: the stock was given back.
pub const RETURNED: &str = "returned";

/// A row of `reservations`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reservations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ReservationId,
    pub user_id: UserId,
    #[sea_orm(column_type = "Text", nullable)]
    pub idempotency_key: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub order_id: Option<OrderId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
