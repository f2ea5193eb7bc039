//! The stock check: once the system has settled, every tracked product must hold what its
//! initial stock and its restocks leave after the orders that still stand,
//! `initial + restocked = stock + sum of quantities in non-cancelled orders`,
//! and every cancel the driver was answered must be a cancelled order in the orders database.
//!
//! Read from the two databases directly, as the history check reads orders: no service's own
//! account is trusted. The verdicts are pure functions, unit tested below.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use uuid::Uuid;

use crate::check::Outcome;
use crate::load::{CancelOp, answered_cancelled};

/// Stock added to one product by the admin during the run.
#[derive(Clone, Debug)]
pub struct Restock {
    pub product_id: Uuid,
    pub add: i64,
    /// `Unknown` (no answer): it may or may not have been applied, and both totals are accepted.
    pub outcome: Outcome,
}

/// The two databases as they are at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The stock of every tracked product.
    pub stock: HashMap<Uuid, i64>,
    /// Units of each product in orders that are not cancelled.
    pub ordered: HashMap<Uuid, i64>,
    /// Reservations products has not settled yet.
    pub pending: i64,
    /// Order events orders has not published yet.
    pub unsent: i64,
}

/// One line per tracked product whose stock is not what the orders leave of it.
pub fn mismatches(
    initial: &HashMap<Uuid, i64>,
    restocks: &[Restock],
    now: &Snapshot,
) -> Vec<String> {
    let mut ids: Vec<&Uuid> = initial.keys().collect();
    ids.sort_unstable();
    let mut found = Vec::new();
    for id in ids {
        let added = |outcome: Outcome| -> i64 {
            restocks
                .iter()
                .filter(|r| r.product_id == *id && r.outcome == outcome)
                .map(|r| r.add)
                .sum()
        };
        let (applied, maybe) = (added(Outcome::Ok), added(Outcome::Unknown));
        let expected = initial[id] + applied;
        let Some(&stock) = now.stock.get(id) else {
            found.push(format!("stock: product {id} is no longer tracked"));
            continue;
        };
        let ordered = now.ordered.get(id).copied().unwrap_or(0);
        let held = stock + ordered;
        if held != expected && !(maybe > 0 && held == expected + maybe) {
            found.push(format!(
                "stock: product {id} started with {} and was restocked {applied} (+{maybe} \
                 unknown), but holds {stock} with {ordered} in standing orders ({:+})",
                initial[id],
                held - expected
            ));
        }
    }
    found
}

/// One line per cancel that went wrong: answered cancelled but not cancelled in the database, a
/// cancelled order the driver never cancelled, or a cancel never answered.
pub fn cancel_anomalies(cancels: &[CancelOp], cancelled: &HashSet<Uuid>) -> Vec<String> {
    let asked: HashSet<Uuid> = cancels.iter().map(|op| op.order_id).collect();
    let answered = answered_cancelled(cancels);
    let mut found = Vec::new();
    for id in &asked {
        if !answered.contains(id) {
            found.push(format!("cancel: order {id} was never answered cancelled"));
        } else if !cancelled.contains(id) {
            found.push(format!(
                "cancel: order {id} was answered cancelled but is not"
            ));
        }
    }
    for id in cancelled.difference(&asked) {
        found.push(format!(
            "cancel: order {id} is cancelled but nobody cancelled it"
        ));
    }
    found.sort_unstable();
    found
}

/// Connections to products' and orders' databases.
pub struct Ledgers {
    products: DatabaseConnection,
    orders: DatabaseConnection,
}

/// What [`Ledgers::settle`] saw last.
pub struct Settled {
    pub snapshot: Snapshot,
    pub mismatches: Vec<String>,
    /// How long settling took; the whole budget when it never settled.
    pub took: Duration,
    pub settled: bool,
}

impl Ledgers {
    pub async fn connect(products_db: &str, orders_db: &str) -> anyhow::Result<Self> {
        Ok(Self {
            products: Database::connect(products_db)
                .await
                .context("connect to the products database")?,
            orders: Database::connect(orders_db)
                .await
                .context("connect to the orders database")?,
        })
    }

    /// The stock of every tracked product.
    pub async fn stock(&self) -> anyhow::Result<HashMap<Uuid, i64>> {
        let sql = "SELECT id, stock::int8 FROM products WHERE stock IS NOT NULL";
        pairs(&self.products, sql).await.context("read the stock")
    }

    /// Every order that is cancelled.
    pub async fn cancelled(&self) -> anyhow::Result<HashSet<Uuid>> {
        let sql = "SELECT id FROM orders WHERE status = 'cancelled'";
        let rows = self.orders.query_all_raw(statement(sql)).await?;
        rows.iter()
            .map(|row| row.try_get_by_index::<Uuid>(0))
            .collect::<Result<_, _>>()
            .context("read the cancelled orders")
    }

    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let ordered = "SELECT l.product_id, sum(l.quantity)::int8 FROM order_lines l \
             JOIN orders o ON o.id = l.order_id WHERE o.status <> 'cancelled' \
             GROUP BY l.product_id";
        let pending = "SELECT count(*) FROM reservations WHERE state = 'pending'";
        let unsent = "SELECT count(*) FROM outbox WHERE sent_at IS NULL";
        Ok(Snapshot {
            stock: self.stock().await?,
            ordered: pairs(&self.orders, ordered)
                .await
                .context("read the ordered units")?,
            pending: count(&self.products, pending)
                .await
                .context("count the pending reservations")?,
            unsent: count(&self.orders, unsent)
                .await
                .context("count the unsent events")?,
        })
    }

    /// Waits, at most `budget`, until no reservation is pending, every event is sent and the
    /// stock adds up; answers what it saw last. A database that does not answer yet (one just
    /// restarted) is asked again.
    pub async fn settle(
        &self,
        initial: &HashMap<Uuid, i64>,
        restocks: &[Restock],
        budget: Duration,
    ) -> Settled {
        let started = Instant::now();
        let mut last = Settled {
            snapshot: Snapshot::default(),
            mismatches: vec!["stock: the databases never answered".to_owned()],
            took: budget,
            settled: false,
        };
        while started.elapsed() < budget {
            match self.snapshot().await {
                Ok(snapshot) => {
                    let mismatches = mismatches(initial, restocks, &snapshot);
                    let settled =
                        snapshot.pending == 0 && snapshot.unsent == 0 && mismatches.is_empty();
                    last = Settled {
                        snapshot,
                        mismatches,
                        took: started.elapsed(),
                        settled,
                    };
                    if settled {
                        break;
                    }
                }
                Err(error) => tracing::warn!("{error:#}; asking again"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        last
    }
}

fn statement(sql: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql)
}

async fn pairs(db: &DatabaseConnection, sql: &str) -> anyhow::Result<HashMap<Uuid, i64>> {
    let rows = db.query_all_raw(statement(sql)).await?;
    let pairs = rows
        .iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    Ok(pairs)
}

async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(statement(sql))
        .await?
        .context("a count answered no row")?;
    Ok(row.try_get_by_index(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn snapshot(stock: &[(u128, i64)], ordered: &[(u128, i64)]) -> Snapshot {
        Snapshot {
            stock: stock.iter().map(|&(p, n)| (id(p), n)).collect(),
            ordered: ordered.iter().map(|&(p, n)| (id(p), n)).collect(),
            pending: 0,
            unsent: 0,
        }
    }

    fn restock(product: u128, add: i64, outcome: Outcome) -> Restock {
        Restock {
            product_id: id(product),
            add,
            outcome,
        }
    }

    #[test]
    fn stock_that_adds_up_passes() {
        let initial = HashMap::from([(id(1), 10), (id(2), 5)]);
        let restocks = [restock(1, 4, Outcome::Ok), restock(2, 3, Outcome::Fail)];
        let now = snapshot(&[(1, 6), (2, 0)], &[(1, 8), (2, 5), (3, 40)]);
        assert!(mismatches(&initial, &restocks, &now).is_empty());
    }

    #[test]
    fn a_unit_lost_or_gained_is_named_with_its_product() {
        let initial = HashMap::from([(id(1), 10)]);
        let leaked = snapshot(&[(1, 1)], &[(1, 8)]);
        let found = mismatches(&initial, &[], &leaked);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains(&id(1).to_string()) && found[0].contains("(-1)"));
        let doubled = snapshot(&[(1, 3)], &[(1, 8)]);
        assert!(mismatches(&initial, &[], &doubled)[0].contains("(+1)"));
    }

    #[test]
    fn an_unknown_restock_may_count_or_not_but_nothing_else() {
        let initial = HashMap::from([(id(1), 10)]);
        let restocks = [restock(1, 5, Outcome::Unknown)];
        assert!(mismatches(&initial, &restocks, &snapshot(&[(1, 2)], &[(1, 8)])).is_empty());
        assert!(mismatches(&initial, &restocks, &snapshot(&[(1, 7)], &[(1, 8)])).is_empty());
        assert_eq!(
            mismatches(&initial, &restocks, &snapshot(&[(1, 4)], &[(1, 8)])).len(),
            1
        );
    }

    #[test]
    fn a_product_that_lost_its_stock_column_is_a_mismatch() {
        let initial = HashMap::from([(id(1), 10)]);
        assert_eq!(mismatches(&initial, &[], &snapshot(&[], &[])).len(), 1);
    }

    fn cancel(order: u128, status: Option<u16>) -> CancelOp {
        CancelOp {
            order_id: id(order),
            user_id: id(99),
            status,
        }
    }

    #[test]
    fn cancels_must_match_the_cancelled_orders() {
        let cancels = [
            cancel(1, None),
            cancel(1, Some(200)),
            cancel(2, Some(200)),
            cancel(3, Some(503)),
        ];
        let cancelled = HashSet::from([id(1), id(2), id(3)]);
        let found = cancel_anomalies(&cancels, &cancelled);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("never answered"));

        let lost = HashSet::from([id(2), id(3), id(4)]);
        let found = cancel_anomalies(&cancels[..3], &lost);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .any(|f| f.contains("answered cancelled but is not"))
        );
        assert!(found.iter().any(|f| f.contains("nobody cancelled it")));
    }
}
