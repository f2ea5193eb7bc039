//! The orders schema. Migrations are its source of truth; entities follow them by hand.

use sea_orm_migration::prelude::*;

mod m20250101_000001_create_orders;
mod m20250301_000002_lifecycle_and_outbox;

/// Key of the PostgreSQL advisory lock held while migrating, so replicas starting together
/// apply the migrations once. Any constant works: each service has its own database.
pub const LOCK_KEY: i64 = 0x6f72_6465_7273; // "orders"

/// Every migration of the orders database, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_orders::Migration),
            Box::new(m20250301_000002_lifecycle_and_outbox::Migration),
        ]
    }
}
