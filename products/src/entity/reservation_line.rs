//! The `reservation_lines` table: the lines of a reserved buy.

use common::ids::{ProductId, ReservationId};
use sea_orm::entity::prelude::*;

/// A row of `reservation_lines`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reservation_lines")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub reservation_id: ReservationId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub product_id: ProductId,
    pub quantity: i32,
    /// Whether stock was taken for this line (the product's stock is tracked).
    pub tracked: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
