//! The `products` table.

use chrono::{DateTime, Utc};
use common::ids::ProductId;
use sea_orm::entity::prelude::*;

/// A row of `products`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    /// Chosen by the service (UUIDv7), never by the database.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ProductId,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    pub price_cents: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub image_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Units left to sell; `None` when the product's stock is not tracked (unlimited).
    pub stock: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
