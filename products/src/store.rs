//! Queries on the products table. Every function takes `&impl ConnectionTrait`, so it works on
//! the pool or inside a transaction.

use anyhow::Context;
use common::{ids::ProductId, paging::Paging};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::NotSet,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
    sea_query::{Expr, ExprTrait},
};

use crate::{
    domain::{NewProduct, ProductChanges, Stock, StockChange},
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
        stock: Set(new.stock.map(Stock::get)),
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

/// Applies `changes` to the product `id` in one statement and returns the row as stored. Adding
/// to the stock is done by the database (`stock = stock + n`), so it composes with the buys
/// taking stock at the same moment; it needs a tracked stock, and the sum may not pass
/// [`Stock::MAX`].
pub async fn update(
    db: &impl ConnectionTrait,
    id: ProductId,
    changes: &ProductChanges,
) -> Result<product::Model, Error> {
    let mut update = Products::update_many().filter(Column::Id.eq(id));
    if let Some(name) = &changes.name {
        update = update.col_expr(Column::Name, Expr::value(name.as_str()));
    }
    if let Some(description) = &changes.description {
        update = update.col_expr(Column::Description, Expr::value(description.as_str()));
    }
    if let Some(price) = changes.price {
        update = update.col_expr(Column::PriceCents, Expr::value(price.cents().get()));
    }
    if let Some(url) = &changes.image_url {
        update = update.col_expr(Column::ImageUrl, Expr::value(url.as_str()));
    }
    match changes.stock {
        Some(StockChange::Set(stock)) => {
            update = update.col_expr(Column::Stock, Expr::value(stock.get()));
        }
        Some(StockChange::Add(added)) => {
            update = update
                .col_expr(Column::Stock, Expr::col(Column::Stock).add(added.get()))
                .filter(Column::Stock.lte(Stock::MAX - added.get()));
        }
        None => {}
    }
    let mut rows = update
        .exec_with_returning(db)
        .await
        .context("changing a product")?;
    if let Some(row) = rows.pop() {
        return Ok(row);
    }
    // Nothing changed: say why, from the row as it is now.
    match get(db, id).await? {
        None => Err(Error::ProductNotFound(id)),
        Some(row) if row.stock.is_none() => Err(Error::Conflict(
            "This product's stock is not tracked; set stock before adding to it.",
        )),
        Some(_) => Err(Error::Invalid(crate::domain::Invalid::new(format!(
            "add_stock would take the stock past {}",
            Stock::MAX
        )))),
    }
}
