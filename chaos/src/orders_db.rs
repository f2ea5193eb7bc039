//! Reads the orders database directly: the check trusts no service's own account.

use anyhow::Context;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::check::StoredOrder;

/// The columns of `orders` the check needs; the table has more, which a select ignores.
mod order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub idempotency_key: Option<String>,
        pub total_cents: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every stored order of `users`.
pub async fn orders_of(url: &str, users: &[Uuid]) -> anyhow::Result<Vec<StoredOrder>> {
    let db = Database::connect(url)
        .await
        .context("connect to the orders database")?;
    let rows = order::Entity::find()
        .filter(order::Column::UserId.is_in(users.iter().copied()))
        .all(&db)
        .await
        .context("read the orders")?;
    Ok(rows
        .into_iter()
        .map(|row| StoredOrder {
            id: row.id,
            user_id: row.user_id,
            idempotency_key: row.idempotency_key,
            total_cents: row.total_cents,
        })
        .collect())
}
