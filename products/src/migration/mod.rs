//! The schema of the products database; migrations are its source of truth.

use sea_orm_migration::prelude::*;

mod m20250101_000001_create_products;
mod m20261203_000002_stock_and_reservations;
mod m20261203_000003_processed_events;

/// The advisory lock key products migrations run under, so replicas apply them once.
pub const LOCK_KEY: i64 = 0x7072_6f64_7563_7473;

/// Applies the products migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_products::Migration),
            Box::new(m20261203_000002_stock_and_reservations::Migration),
            Box::new(m20261203_000003_processed_events::Migration),
        ]
    }
}
