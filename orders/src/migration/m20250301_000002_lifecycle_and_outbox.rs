//! Issue 14: an order's reservation and cancellation, the reservation fence, and the outbox of
//! order events. Additive: existing orders keep working (no reservation, `created`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    ReservationId,
    CancelledAt,
}

#[derive(DeriveIden)]
enum ReservationOutcomes {
    Table,
    ReservationId,
    OrderId,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    MessageId,
    RoutingKey,
    Payload,
    Headers,
    CreatedAt,
    ClaimedUntil,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(uuid_null(Orders::ReservationId))
                    .add_column(timestamp_with_time_zone_null(Orders::CancelledAt))
                    .to_owned(),
            )
            .await?;
        // Every existing row is `created` without a cancellation time, so the check holds for
        // them and needs no NOT VALID step. The pair is checked together: a cancelled order
        // always says when.
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (
                    (status = 'created' AND cancelled_at IS NULL)
                    OR (status = 'cancelled' AND cancelled_at IS NOT NULL))",
            )
            .await?;
        // The fence between storing an order and resolving its reservation: whichever inserts
        // the reservation first decides, an order id for a stored order, NULL for "never".
        manager
            .create_table(
                Table::create()
                    .table(ReservationOutcomes::Table)
                    .col(pk_uuid(ReservationOutcomes::ReservationId))
                    .col(uuid_null(ReservationOutcomes::OrderId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("reservation_outcomes_order_id_fkey")
                            .from(ReservationOutcomes::Table, ReservationOutcomes::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(big_pk_auto(Outbox::Id))
                    .col(uuid_uniq(Outbox::MessageId))
                    .col(text(Outbox::RoutingKey))
                    .col(json_binary(Outbox::Payload))
                    .col(json_binary(Outbox::Headers).default(Expr::cust("'{}'::jsonb")))
                    .col(timestamp_with_time_zone_default_now(Outbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(Outbox::ClaimedUntil))
                    .col(timestamp_with_time_zone_null(Outbox::SentAt))
                    .to_owned(),
            )
            .await?;
        // The relay's claim and the pending gauge read only unsent rows, oldest first; sent
        // rows (most of the table until they are pruned) stay out of this index.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL",
            )
            .await?;
        // Pruning finds the sent rows past their retention without reading the unsent ones.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX outbox_sent_at_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ReservationOutcomes::Table).to_owned())
            .await?;
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE orders DROP CONSTRAINT orders_status_check")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::ReservationId)
                    .drop_column(Orders::CancelledAt)
                    .to_owned(),
            )
            .await
    }
}
