use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Name,
    Description,
    PriceCents,
    ImageUrl,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(pk_uuid(Products::Id))
                    .col(text(Products::Name))
                    .col(text(Products::Description))
                    .col(big_integer(Products::PriceCents).check((
                        "products_price_cents_not_negative",
                        Expr::col(Products::PriceCents).gte(0),
                    )))
                    .col(text_null(Products::ImageUrl))
                    .col(timestamp_with_time_zone_default_now(Products::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // The catalog is listed oldest first, and pages through it by this pair.
        manager
            .create_index(
                Index::create()
                    .name("products_created_at_id_idx")
                    .table(Products::Table)
                    .col(Products::CreatedAt)
                    .col(Products::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Products::Table).to_owned())
            .await
    }
}
