//! Queries on the products table. Every function takes `&impl ConnectionTrait`, so it works on
//! the pool or inside a transaction.

use anyhow::Context;
use common::{ids::ProductId, paging::Paging};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqlErr,
};

use crate::{
    domain::NewProduct,
    entity::product::{self, ActiveModel, Column, Entity as Products},
    error::Error,
};

/// Adds `new` to the catalog and returns the stored row.
pub async fn insert(db: &impl ConnectionTrait, new: &NewProduct) -> Result<product::Model, Error> {
    let row = ActiveModel {
        id: Set(ProductId::new()),
        name: Set(new.name.as_str().to_owned()),
        description: Set(new.description.as_str().to_owned()),
        price_cents: Set(new.price.cents().get()),
        image_url: Set(new.image_url.as_ref().map(|u| u.as_str().to_owned())),
        // The database's clock orders the catalog, so one clock serves every replica.
        created_at: NotSet,
    };
    row.insert(db).await.map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            Error::Conflict("This product already exists.")
        }
        _ => Error::Unexpected(anyhow::Error::new(e).context("inserting a product")),
    })
}

/// One page of the catalog, oldest first; ties on the creation time are broken by id so pages
/// never overlap.
pub async fn list(
    db: &impl ConnectionTrait,
    paging: Paging,
) -> anyhow::Result<Vec<product::Model>> {
    Products::find()
        .order_by_asc(Column::CreatedAt)
        .order_by_asc(Column::Id)
        .limit(paging.limit())
        .offset(paging.offset())
        .all(db)
        .await
        .context("listing products")
}

/// The product `id`, if it exists.
pub async fn get(
    db: &impl ConnectionTrait,
    id: ProductId,
) -> anyhow::Result<Option<product::Model>> {
    Products::find_by_id(id)
        .one(db)
        .await
        .context("reading a product")
}

/// Those of `ids` that exist, in one query, in no particular order.
pub async fn find_many(
    db: &impl ConnectionTrait,
    ids: &[ProductId],
) -> anyhow::Result<Vec<product::Model>> {
    Products::find()
        .filter(Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await
        .context("reading the products of a buy")
}
