use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    UserId,
    Email,
    Status,
    TotalCents,
    DedupKey,
    IdempotencyKey,
    Fingerprint,
    MessageId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OrderLines {
    Table,
    OrderId,
    LineNo,
    ProductId,
    Name,
    UnitPriceCents,
    Quantity,
    LineTotalCents,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(pk_uuid(Orders::Id))
                    .col(uuid(Orders::UserId))
                    .col(text(Orders::Email))
                    .col(text(Orders::Status).default("created"))
                    .col(big_integer(Orders::TotalCents))
                    .col(text(Orders::DedupKey))
                    .col(text_null(Orders::IdempotencyKey))
                    .col(text(Orders::Fingerprint))
                    .col(text_null(Orders::MessageId))
                    .col(timestamp_with_time_zone_default_now(Orders::CreatedAt))
                    .check(Expr::col(Orders::TotalCents).gte(0))
                    .to_owned(),
            )
            .await?;
        // The idempotency guarantee: a second insert with the same key for the same user
        // conflicts instead of making a second order.
        manager
            .create_index(
                Index::create()
                    .name("orders_user_id_dedup_key_key")
                    .table(Orders::Table)
                    .col(Orders::UserId)
                    .col(Orders::DedupKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Serves "my orders, newest first" without a sort.
        manager
            .create_index(
                Index::create()
                    .name("orders_user_id_created_at_id_idx")
                    .table(Orders::Table)
                    .col(Orders::UserId)
                    .col((Orders::CreatedAt, IndexOrder::Desc))
                    .col((Orders::Id, IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderLines::Table)
                    .col(uuid(OrderLines::OrderId))
                    .col(integer(OrderLines::LineNo))
                    .col(uuid(OrderLines::ProductId))
                    .col(text(OrderLines::Name))
                    .col(big_integer(OrderLines::UnitPriceCents))
                    .col(integer(OrderLines::Quantity))
                    .col(big_integer(OrderLines::LineTotalCents))
                    .primary_key(
                        Index::create()
                            .col(OrderLines::OrderId)
                            .col(OrderLines::LineNo),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("order_lines_order_id_fkey")
                            .from(OrderLines::Table, OrderLines::OrderId)
                            .to(Orders::Table, Orders::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .check(Expr::col(OrderLines::UnitPriceCents).gte(0))
                    .check(Expr::col(OrderLines::Quantity).between(1, 1000))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OrderLines::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Orders::Table).to_owned())
            .await
    }
}
