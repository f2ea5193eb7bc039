//! Orders in PostgreSQL. Every function takes any connection, so it runs on the pool or inside
//! a caller's transaction alike.

use std::collections::HashMap;

use common::{
    ids::{OrderId, UserId},
    messages::{Order, OrderItem},
    paging::Paging,
};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    RuntimeErr, TransactionSession, TransactionTrait, TryInsertResult,
    sqlx::Error as SqlxError,
};

use crate::{
    domain::NewOrder,
    entity::{order, order_line},
};

/// The status of every order this service stores.
pub const STATUS_CREATED: &str = "created";

/// What storing a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new order was stored.
    Created(Order),
    /// An order with the same dedup key and the same lines already existed; this is it.
    Replayed(Order),
    /// The dedup key belongs to an earlier order with different lines; nothing was stored.
    KeyReused(OrderId),
}

/// Stores `new` with its lines in one transaction, unless its dedup key is already taken for
/// this user. Concurrent calls with one key store exactly one order: the losers' inserts wait
/// for the winner's commit, then find its row.
pub async fn insert_order<C>(db: &C, new: &NewOrder) -> Result<Inserted, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    let id = OrderId::new();
    let row = order::ActiveModel {
        id: Set(id),
        user_id: Set(new.user_id()),
        email: Set(new.email().as_str().to_owned()),
        status: Set(STATUS_CREATED.to_owned()),
        total_cents: Set(new.total().get()),
        dedup_key: Set(new.dedup_key().as_str().to_owned()),
        idempotency_key: Set(new.idempotency_key().map(|k| k.as_str().to_owned())),
        fingerprint: Set(new.fingerprint().as_str().to_owned()),
        message_id: Set(new.message_id().map(str::to_owned)),
        // The database's clock, so orders from every replica sort on one time line.
        created_at: NotSet,
    };
    // RETURNING gives the row as stored (with the database's created_at), so the reply is
    // built from it and the lines already in hand: no reads after the writes.
    let inserted = match order::Entity::insert(row)
        .on_conflict_do_nothing_on([order::Column::UserId, order::Column::DedupKey])
        .exec_with_returning(&txn)
        .await
    {
        // sea-orm 2.0 reports ON CONFLICT DO NOTHING ... RETURNING giving no row as "not
        // found" rather than as a conflict; with this statement it can only be the conflict.
        Err(DbErr::RecordNotFound(_)) => TryInsertResult::Conflicted,
        other => other?,
    };
    let outcome = match inserted {
        TryInsertResult::Inserted(row) => {
            let items: Vec<OrderItem> = new
                .lines()
                .iter()
                .map(|line| OrderItem {
                    product_id: line.product_id(),
                    name: line.name().as_str().to_owned(),
                    unit_price_cents: line.unit_price().get(),
                    quantity: line.quantity().get(),
                    line_total_cents: line.line_total().get(),
                })
                .collect();
            let lines = items
                .iter()
                .zip(1..)
                .map(|(item, line_no)| order_line::ActiveModel {
                    order_id: Set(id),
                    line_no: Set(line_no),
                    product_id: Set(item.product_id),
                    name: Set(item.name.clone()),
                    unit_price_cents: Set(item.unit_price_cents),
                    quantity: Set(item.quantity),
                    line_total_cents: Set(item.line_total_cents),
                });
            order_line::Entity::insert_many(lines)
                .exec_without_returning(&txn)
                .await?;
            Inserted::Created(Order {
                id: row.id,
                user_id: row.user_id,
                status: row.status,
                items,
                total_cents: row.total_cents,
                created_at: row.created_at,
            })
        }
        TryInsertResult::Conflicted => {
            let existing = order::Entity::find()
                .filter(order::Column::UserId.eq(new.user_id()))
                .filter(order::Column::DedupKey.eq(new.dedup_key().as_str()))
                .one(&txn)
                .await?
                .ok_or_else(|| {
                    DbErr::RecordNotFound("the order holding a conflicting dedup key".to_owned())
                })?;
            if existing.fingerprint == new.fingerprint().as_str() {
                Inserted::Replayed(with_lines_one(&txn, existing).await?)
            } else {
                Inserted::KeyReused(existing.id)
            }
        }
        TryInsertResult::Empty => {
            return Err(DbErr::Custom("an order insert had no row".to_owned()));
        }
    };
    crate::failpoint::hit(crate::failpoint::Point::BeforeCommit);
    txn.commit().await?;
    Ok(outcome)
}

/// A page of `user`'s orders, newest first, with their lines.
pub async fn list_for_user(
    db: &impl ConnectionTrait,
    user: UserId,
    paging: Paging,
) -> Result<Vec<Order>, DbErr> {
    let rows = order::Entity::find()
        .filter(order::Column::UserId.eq(user))
        .order_by_desc(order::Column::CreatedAt)
        .order_by_desc(order::Column::Id)
        .limit(paging.limit())
        .offset(paging.offset())
        .all(db)
        .await?;
    with_lines(db, rows).await
}

/// `user`'s order `id`, or `None` when there is no such order or it belongs to someone else.
pub async fn get_for_user(
    db: &impl ConnectionTrait,
    user: UserId,
    id: OrderId,
) -> Result<Option<Order>, DbErr> {
    let row = order::Entity::find_by_id(id)
        .filter(order::Column::UserId.eq(user))
        .one(db)
        .await?;
    match row {
        Some(row) => Ok(Some(with_lines_one(db, row).await?)),
        None => Ok(None),
    }
}

/// Whether `err` is the database being unreachable, overloaded or restarting, rather than
/// something wrong with the statement: worth retrying later, not worth giving up on.
pub fn is_transient(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match &**e {
                SqlxError::Io(_)
                | SqlxError::Tls(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed => true,
                SqlxError::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
                _ => false,
            }
        }
        _ => false,
    }
}

/// SQLSTATEs that say "try again": connection exceptions (08), serialization failures and
/// deadlocks (40001, 40P01), insufficient resources (53), a statement cancelled by timeout
/// (57014) and the server shutting down or starting (57P01-57P03).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "57014" | "57P01" | "57P02" | "57P03"
        )
}

/// Attaches to each of `rows` its lines, fetched for all of them in one query.
async fn with_lines(
    db: &impl ConnectionTrait,
    rows: Vec<order::Model>,
) -> Result<Vec<Order>, DbErr> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines = lines_of(db, rows.iter().map(|r| r.id)).await?;
    Ok(rows
        .into_iter()
        .map(|row| assemble(row, &mut lines))
        .collect())
}

async fn with_lines_one(db: &impl ConnectionTrait, row: order::Model) -> Result<Order, DbErr> {
    let mut lines = lines_of(db, [row.id]).await?;
    Ok(assemble(row, &mut lines))
}

async fn lines_of(
    db: &impl ConnectionTrait,
    orders: impl IntoIterator<Item = OrderId>,
) -> Result<HashMap<OrderId, Vec<OrderItem>>, DbErr> {
    let lines = order_line::Entity::find()
        .filter(order_line::Column::OrderId.is_in(orders))
        .order_by_asc(order_line::Column::OrderId)
        .order_by_asc(order_line::Column::LineNo)
        .all(db)
        .await?;
    let mut by_order: HashMap<OrderId, Vec<OrderItem>> = HashMap::new();
    for line in lines {
        by_order.entry(line.order_id).or_default().push(OrderItem {
            product_id: line.product_id,
            name: line.name,
            unit_price_cents: line.unit_price_cents,
            quantity: line.quantity,
            line_total_cents: line.line_total_cents,
        });
    }
    Ok(by_order)
}

fn assemble(row: order::Model, lines: &mut HashMap<OrderId, Vec<OrderItem>>) -> Order {
    Order {
        id: row.id,
        user_id: row.user_id,
        status: row.status,
        items: lines.remove(&row.id).unwrap_or_default(),
        total_cents: row.total_cents,
        created_at: row.created_at,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::ConnAcquireErr;

    use super::*;

    fn exec(e: SqlxError) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
    }

    #[test]
    fn an_unreachable_or_exhausted_database_is_worth_retrying() {
        assert!(is_transient(&DbErr::ConnectionAcquire(
            ConnAcquireErr::Timeout
        )));
        assert!(is_transient(&exec(SqlxError::Io(
            std::io::ErrorKind::ConnectionRefused.into()
        ))));
        assert!(is_transient(&exec(SqlxError::PoolClosed)));
        assert!(transient_sqlstate("08006"));
        assert!(transient_sqlstate("57P01"));
        assert!(transient_sqlstate("40001"));
    }

    #[test]
    fn a_statement_the_database_refuses_is_not_retried() {
        assert!(!is_transient(&DbErr::RecordNotFound("x".to_owned())));
        assert!(!is_transient(&exec(SqlxError::RowNotFound)));
        assert!(!transient_sqlstate("23505"));
        assert!(!transient_sqlstate("42P01"));
    }
}
