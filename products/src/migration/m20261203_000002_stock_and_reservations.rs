//! Stock per product and the reservations a buy takes it through (issue 14). Additive: every
//! existing product becomes untracked (`stock` NULL), so a rolling deploy keeps selling them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // NULL: not tracked, never short. A CHECK rather than a domain rule only: the
        // conditional decrement of a buy is what keeps it true under concurrency.
        db.execute_unprepared(
            "ALTER TABLE products ADD COLUMN stock INTEGER NULL \
             CONSTRAINT products_stock_not_negative CHECK (stock >= 0)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TABLE reservations (
                id UUID PRIMARY KEY,
                user_id UUID NOT NULL,
                idempotency_key TEXT NULL,
                state TEXT NOT NULL CONSTRAINT reservations_state_known
                    CHECK (state IN ('pending', 'committed', 'released', 'returned')),
                order_id UUID NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
        // One live reservation per key and user: a retry finds it rather than taking the
        // stock again. A released one no longer counts, so a retry after a refusal reserves anew.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX reservations_user_key_live ON reservations (user_id, idempotency_key) \
             WHERE idempotency_key IS NOT NULL AND state <> 'released'",
        )
        .await?;
        // What the reconciler scans: the reservations still waiting for their outcome.
        db.execute_unprepared(
            "CREATE INDEX reservations_pending ON reservations (created_at) WHERE state = 'pending'",
        )
        .await?;
        // Every line of the buy; `tracked` says whether stock was taken for it, and so whether
        // a release gives it back.
        db.execute_unprepared(
            "CREATE TABLE reservation_lines (
                reservation_id UUID NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
                product_id UUID NOT NULL REFERENCES products (id),
                quantity INTEGER NOT NULL CONSTRAINT reservation_lines_quantity_positive
                    CHECK (quantity > 0),
                tracked BOOLEAN NOT NULL,
                PRIMARY KEY (reservation_id, product_id)
            )",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE reservation_lines")
            .await?;
        db.execute_unprepared("DROP TABLE reservations").await?;
        db.execute_unprepared("ALTER TABLE products DROP COLUMN stock")
            .await?;
        Ok(())
    }
}
