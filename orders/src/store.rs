//! Orders in PostgreSQL. Every function takes any connection, so it runs on the pool or inside
//! a caller's transaction alike.

use std::collections::HashMap;

use common::{
    ids::{OrderId, ReservationId, UserId},
    messages::{EventLineV1, Order, OrderCancelledV1, OrderCreatedV1, OrderItem},
    paging::Paging,
};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionSession, TransactionTrait, TryInsertResult,
    prelude::Expr,
};

use crate::{
    domain::NewOrder,
    entity::{order, order_line, reservation_outcome},
    outbox::{self, Headers},
};

/// The status of an order as stored.
pub const STATUS_CREATED: &str = "created";

/// The status of an order its buyer cancelled.
pub const STATUS_CANCELLED: &str = "cancelled";

/// What storing a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new order was stored.
    Created(Order),
    /// An order with the same dedup key and the same lines already existed; this is it.
    Replayed(Order),
    /// The dedup key belongs to an earlier order with different lines; nothing was stored.
    KeyReused(OrderId),
    /// The reservation was resolved as refused before this request arrived: no order may be
    /// stored with it any more, and none was.
    ReservationExpired,
    /// The reservation belongs to another order (this one, `OrderId`, or one stored under
    /// another dedup key); nothing was stored.
    ReservationTaken(OrderId),
}

/// Stores `new` with its lines in one transaction, unless its dedup key is already taken for
/// this user. Concurrent calls with one key store exactly one order: the losers' inserts wait
/// for the winner's commit, then find its row.
///
/// A new order claims its reservation in `reservation_outcomes` and writes `order.created.v1`
/// (with `headers`) to the outbox, both in the same transaction: the order, the claim and the
/// event exist together or not at all.
pub async fn insert_order<C>(db: &C, new: &NewOrder, headers: &Headers) -> Result<Inserted, DbErr>
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
        reservation_id: Set(new.reservation_id()),
        cancelled_at: Set(None),
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
            if let Some(reservation) = new.reservation_id() {
                match claim_reservation(&txn, reservation, id).await? {
                    None => {}
                    Some(refused) => {
                        txn.rollback().await?;
                        return Ok(refused);
                    }
                }
            }
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
            let order = Order {
                id: row.id,
                user_id: row.user_id,
                status: row.status,
                items,
                total_cents: row.total_cents,
                created_at: row.created_at,
            };
            let created = OrderCreatedV1 {
                order_id: order.id,
                user_id: order.user_id,
                reservation_id: row.reservation_id,
                items: event_lines(&order.items),
                total_cents: order.total_cents,
                created_at: order.created_at,
            };
            outbox::enqueue(&txn, &created, headers).await?;
            Inserted::Created(order)
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
            let other_reservation = new
                .reservation_id()
                .is_some_and(|r| existing.reservation_id != Some(r));
            if existing.fingerprint != new.fingerprint().as_str() {
                Inserted::KeyReused(existing.id)
            } else if other_reservation {
                // The same buy again, but with stock set aside a second time: answering with
                // the order would tie that second reservation to it and take its stock twice.
                Inserted::ReservationTaken(existing.id)
            } else {
                Inserted::Replayed(with_lines_one(&txn, existing).await?)
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

/// Claims `reservation` for the order `order` inside the order's transaction: `None` when it
/// is now this order's, else why no order may be stored with it.
///
/// The primary key of `reservation_outcomes` is the fence between this and a resolve
/// ([`resolve_reservation`]), which inserts the same reservation with no order. Whichever
/// insert comes first wins; the second waits on the key until the first commits (or rolls
/// back, and then it wins), so a reservation is never both ordered and refused.
async fn claim_reservation(
    txn: &impl ConnectionTrait,
    reservation: ReservationId,
    order: OrderId,
) -> Result<Option<Inserted>, DbErr> {
    let claimed = reservation_outcome::Entity::insert(reservation_outcome::ActiveModel {
        reservation_id: Set(reservation),
        order_id: Set(Some(order)),
    })
    .on_conflict_do_nothing_on([reservation_outcome::Column::ReservationId])
    .exec_without_returning(txn)
    .await?;
    if matches!(claimed, TryInsertResult::Inserted(rows) if rows > 0) {
        return Ok(None);
    }
    let outcome = reservation_outcome::Entity::find_by_id(reservation)
        .one(txn)
        .await?
        .ok_or_else(|| {
            DbErr::RecordNotFound("the outcome of a conflicting reservation".to_owned())
        })?;
    Ok(Some(match outcome.order_id {
        None => Inserted::ReservationExpired,
        Some(other) => Inserted::ReservationTaken(other),
    }))
}

/// How the buy behind `reservation` ended: `Some(order)` when an order was stored with it,
/// `None` when none was, and then none ever will be (see [`claim_reservation`]).
pub async fn resolve_reservation<C>(
    db: &C,
    reservation: ReservationId,
) -> Result<Option<OrderId>, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    reservation_outcome::Entity::insert(reservation_outcome::ActiveModel {
        reservation_id: Set(reservation),
        order_id: Set(None),
    })
    .on_conflict_do_nothing_on([reservation_outcome::Column::ReservationId])
    .exec_without_returning(&txn)
    .await?;
    let outcome = reservation_outcome::Entity::find_by_id(reservation)
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("a reservation outcome just written".to_owned()))?;
    txn.commit().await?;
    Ok(outcome.order_id)
}

/// What cancelling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// The order was `created` and is now `cancelled`; `order.cancelled.v1` is in the outbox.
    Now(Order),
    /// It was cancelled already; nothing changed.
    Already(Order),
    /// It is in a status cancelling does not apply to; nothing changed.
    NotCancellable(Order),
    /// The user has no such order.
    NotFound,
}

/// Cancels `user`'s order `id` if it is `created`, writing `order.cancelled.v1` (with
/// `headers`) to the outbox in the same transaction. A conditional update rather than a read
/// then a write, so two cancels at once make one change and one event.
pub async fn cancel_for_user<C>(
    db: &C,
    user: UserId,
    id: OrderId,
    headers: &Headers,
) -> Result<Cancelled, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    let changed = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(STATUS_CANCELLED))
        .col_expr(order::Column::CancelledAt, Expr::current_timestamp())
        .filter(order::Column::Id.eq(id))
        .filter(order::Column::UserId.eq(user))
        .filter(order::Column::Status.eq(STATUS_CREATED))
        .exec_with_returning(&txn)
        .await?
        .pop();
    let outcome = match changed {
        Some(row) => {
            let cancelled_at = row.cancelled_at.ok_or_else(|| {
                DbErr::Custom("a cancelled order without its cancellation time".to_owned())
            })?;
            let reservation_id = row.reservation_id;
            let order = with_lines_one(&txn, row).await?;
            let event = OrderCancelledV1 {
                order_id: order.id,
                user_id: order.user_id,
                reservation_id,
                items: event_lines(&order.items),
                cancelled_at,
            };
            outbox::enqueue(&txn, &event, headers).await?;
            Cancelled::Now(order)
        }
        None => match get_for_user(&txn, user, id).await? {
            None => Cancelled::NotFound,
            Some(order) if order.status == STATUS_CANCELLED => Cancelled::Already(order),
            Some(order) => Cancelled::NotCancellable(order),
        },
    };
    txn.commit().await?;
    Ok(outcome)
}

/// The lines of `items` as events carry them.
fn event_lines(items: &[OrderItem]) -> Vec<EventLineV1> {
    items
        .iter()
        .map(|item| EventLineV1 {
            product_id: item.product_id,
            quantity: item.quantity,
        })
        .collect()
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
