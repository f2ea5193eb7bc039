//! Stock reservations: a buy takes its stock before orders is asked to store it, and gives it
//! back when orders says no. Each step is one short transaction of conditional updates, so no
//! two buys can both take the last unit, and a reservation changes state at most once
//! (`pending` to `committed` or `released`); DESIGN.md has the whole life of one.

use anyhow::Context;
use common::ids::{OrderId, ProductId, ReservationId, UserId};
use sea_orm::{
    ActiveValue::NotSet,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QuerySelect, Set, SqlErr, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, LockType},
};

use crate::{
    domain::{BuyLine, IdempotencyKey},
    entity::{
        product::{self, Entity as Products},
        reservation::{self, COMMITTED, PENDING, RELEASED, RETURNED},
        reservation_line::{self, Entity as Lines},
    },
    error::Error,
};

/// Takes the stock of `lines` for `user`'s buy in one transaction and returns the reservation
/// to send to orders. With an `Idempotency-Key`, a live reservation of the same user and key is
/// returned instead when it holds the same lines (a retry takes nothing again), and
/// [`Error::KeyReused`] when it holds others. [`Error::OutOfStock`] names every product whose
/// stock is short, and then no stock moves. Products whose stock is not tracked are never short.
pub async fn reserve(
    db: &DatabaseConnection,
    user: UserId,
    key: Option<&IdempotencyKey>,
    lines: &[BuyLine],
) -> Result<ReservationId, Error> {
    match try_reserve(db, user, key, lines).await {
        // Another request with this key inserted its reservation first and committed it while
        // this one waited on the unique index: the second attempt finds it.
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Ok(try_reserve(db, user, key, lines)
                .await
                .context("reserving stock")??)
        }
        result => Ok(result.context("reserving stock")??),
    }
}

async fn try_reserve(
    db: &DatabaseConnection,
    user: UserId,
    key: Option<&IdempotencyKey>,
    lines: &[BuyLine],
) -> Result<Result<ReservationId, Error>, DbErr> {
    let txn = db.begin().await?;
    if let Some(key) = key {
        let live = reservation::Entity::find()
            .filter(reservation::Column::UserId.eq(user))
            .filter(reservation::Column::IdempotencyKey.eq(key.as_str()))
            .filter(reservation::Column::State.ne(RELEASED))
            .one(&txn)
            .await?;
        if let Some(live) = live {
            let mut held: Vec<(ProductId, i32)> = Lines::find()
                .filter(reservation_line::Column::ReservationId.eq(live.id))
                .all(&txn)
                .await?
                .into_iter()
                .map(|line| (line.product_id, line.quantity))
                .collect();
            let mut asked: Vec<(ProductId, i32)> = lines
                .iter()
                .map(|line| (line.product_id, line.quantity.get()))
                .collect();
            held.sort_unstable();
            asked.sort_unstable();
            txn.commit().await?;
            return Ok(if held == asked {
                Ok(live.id)
            } else {
                Err(Error::KeyReused)
            });
        }
    }

    let id = ReservationId::new();
    reservation::Entity::insert(reservation::ActiveModel {
        id: Set(id),
        user_id: Set(user),
        idempotency_key: Set(key.map(|k| k.as_str().to_owned())),
        state: Set(PENDING.to_owned()),
        order_id: Set(None),
        created_at: NotSet,
        updated_at: NotSet,
    })
    .exec_without_returning(&txn)
    .await?;
    // In product id order, so two buys of the same products lock their rows in the same order
    // and cannot deadlock.
    let mut ordered: Vec<&BuyLine> = lines.iter().collect();
    ordered.sort_unstable_by_key(|line| line.product_id);
    let mut short = Vec::new();
    let mut taken = Vec::with_capacity(lines.len());
    for line in ordered {
        let quantity = line.quantity.get();
        // Conditional: takes the units only if they are all there, so the check and the take
        // are one step and no other buy can come between them.
        let took = Products::update_many()
            .col_expr(
                product::Column::Stock,
                Expr::col(product::Column::Stock).sub(quantity),
            )
            .filter(product::Column::Id.eq(line.product_id))
            .filter(product::Column::Stock.gte(quantity))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        let tracked = took || {
            // Nothing taken: either the stock is short, or it is not tracked at all.
            let stock: Option<Option<i32>> = Products::find_by_id(line.product_id)
                .select_only()
                .column(product::Column::Stock)
                .into_tuple()
                .one(&txn)
                .await?;
            if stock.flatten().is_some() {
                short.push(line.product_id);
            }
            false
        };
        taken.push(reservation_line::ActiveModel {
            reservation_id: Set(id),
            product_id: Set(line.product_id),
            quantity: Set(quantity),
            tracked: Set(tracked),
        });
    }
    if !short.is_empty() {
        txn.rollback().await?;
        return Ok(Err(Error::OutOfStock(short)));
    }
    Lines::insert_many(taken)
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(Ok(id))
}

/// Marks the reservation `id` as `order`'s, once orders has stored it: the stock stays taken.
/// Only a pending reservation changes, so a late or repeated call does nothing.
pub async fn commit(
    db: &impl ConnectionTrait,
    id: ReservationId,
    order: OrderId,
) -> anyhow::Result<()> {
    settle(db, id, &[PENDING], COMMITTED, Some(order))
        .await
        .context("committing a reservation")?;
    Ok(())
}

/// Gives the stock of the pending reservation `id` back, once it is certain that no order was
/// or will be stored with it; `false` when it was not pending (already settled, so nothing
/// moved). The state change and the stock move in one transaction, so a release happens once.
pub async fn release(db: &DatabaseConnection, id: ReservationId) -> anyhow::Result<bool> {
    let txn = db.begin().await.context("releasing a reservation")?;
    let changed = settle(&txn, id, &[PENDING], RELEASED, None)
        .await
        .context("releasing a reservation")?;
    if changed {
        give_back(&txn, id).await?;
    }
    txn.commit().await.context("releasing a reservation")?;
    Ok(changed)
}

/// Adds the tracked lines of reservation `id` back to their products' stock.
async fn give_back(db: &impl ConnectionTrait, id: ReservationId) -> anyhow::Result<()> {
    let lines = Lines::find()
        .filter(reservation_line::Column::ReservationId.eq(id))
        .filter(reservation_line::Column::Tracked.eq(true))
        .lock(LockType::Update)
        .all(db)
        .await
        .context("reading a reservation's lines")?;
    for line in lines {
        Products::update_many()
            .col_expr(
                product::Column::Stock,
                Expr::col(product::Column::Stock).add(line.quantity),
            )
            .filter(product::Column::Id.eq(line.product_id))
            .exec(db)
            .await
            .context("giving stock back")?;
    }
    Ok(())
}

/// What an order event says about a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderNews {
    /// `order.created.v1`: an order was stored with the reservation.
    Created(ReservationId, OrderId),
    /// `order.cancelled.v1`: the reservation's order was cancelled.
    Cancelled(ReservationId),
}

/// Applies the event `message_id` once: a pending reservation with a new order is committed; the
/// reservation of a cancelled order is returned and its stock given back (also when the
/// cancellation overtook the creation). `false` when the event was handled before, or changed
/// nothing. The record of the event and its effect commit together.
pub async fn apply(
    db: &DatabaseConnection,
    message_id: &str,
    news: OrderNews,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let first_time = txn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO processed_events (message_id) VALUES ($1) ON CONFLICT DO NOTHING",
            [message_id.into()],
        ))
        .await?
        .rows_affected()
        == 1;
    if !first_time {
        txn.commit().await?;
        return Ok(false);
    }
    let changed = match news {
        OrderNews::Created(reservation, order) => {
            settle(&txn, reservation, &[PENDING], COMMITTED, Some(order)).await?
        }
        OrderNews::Cancelled(reservation) => {
            let returned = settle(&txn, reservation, &[PENDING, COMMITTED], RETURNED, None).await?;
            if returned {
                give_back(&txn, reservation)
                    .await
                    .map_err(|e| DbErr::Custom(format!("{e:#}")))?;
            }
            returned
        }
    };
    txn.commit().await?;
    Ok(changed)
}

/// Moves reservation `id` from one of `from` to `to` (with `order`, when given); whether it did.
async fn settle(
    db: &impl ConnectionTrait,
    id: ReservationId,
    from: &[&str],
    to: &str,
    order: Option<OrderId>,
) -> Result<bool, DbErr> {
    let mut update = reservation::Entity::update_many()
        .col_expr(reservation::Column::State, Expr::value(to))
        .col_expr(reservation::Column::UpdatedAt, Expr::current_timestamp())
        .filter(reservation::Column::Id.eq(id))
        .filter(reservation::Column::State.is_in(from.iter().copied()));
    if let Some(order) = order {
        update = update.col_expr(reservation::Column::OrderId, Expr::value(order));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Forgets the events handled before `days` ago: far longer than any redelivery or republish
/// takes, so the table stays bounded. How many it forgot.
pub async fn forget_events_older_than(db: &impl ConnectionTrait, days: i32) -> Result<u64, DbErr> {
    Ok(db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM processed_events WHERE processed_at < now() - make_interval(days => $1)",
            [days.into()],
        ))
        .await?
        .rows_affected())
}
