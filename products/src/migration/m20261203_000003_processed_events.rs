//! The order events products has handled, by `message_id`, so a redelivered or republished
//! event is recognised and changes nothing the second time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE processed_events (
                message_id TEXT PRIMARY KEY,
                processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
        // What the reconciler prunes by: rows older than any redelivery could be.
        db.execute_unprepared(
            "CREATE INDEX processed_events_processed_at ON processed_events (processed_at)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE processed_events")
            .await?;
        Ok(())
    }
}
