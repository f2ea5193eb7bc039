//! The schema of the `auth` database. Migrations are its source of truth.

use sea_orm_migration::prelude::*;

mod m20250101_000001_create_users;

pub use m20250101_000001_create_users::EMAIL_INDEX;

/// Every migration of the service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20250101_000001_create_users::Migration)]
    }
}

/// The advisory lock taken while migrating, so replicas starting together migrate once.
/// Any constant works as long as no other migrator sharing the database uses it; this is
/// "auth" in ASCII.
pub const LOCK_KEY: i64 = 0x6175_7468;
