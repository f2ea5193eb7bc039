//! The history checker: joins what clients were told with what the orders database holds.
//!
//! Pure functions over a history and a list of orders, so every verdict can be unit tested.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What one attempt at a buy learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// 2xx: an order exists, with the id and total answered.
    Ok,
    /// A definite refusal: no order was made for this attempt.
    Fail,
    /// Timeout, 5xx, 409 or a broken connection: an order may or may not exist.
    Unknown,
}

/// The phase an attempt belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Load,
    Retry,
}

/// One buy line as sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: Uuid,
    pub quantity: u32,
}

/// One HTTP attempt, as written to the history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub key: String,
    pub user_id: Uuid,
    pub lines: Vec<Line>,
    pub phase: Phase,
    /// When the attempt started, in milliseconds since the Unix epoch, to line it up with the
    /// faults a scenario injected.
    pub at_unix_ms: i64,
    /// Milliseconds since the run started.
    pub start_ms: u64,
    pub end_ms: u64,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub order_id: Option<Uuid>,
    pub total_cents: Option<i64>,
    /// Why the outcome is not `ok`, for a human reading the history.
    pub error: Option<String>,
}

impl Op {
    pub fn latency_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }
}

/// A stored order, as read from the `orders` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOrder {
    pub id: Uuid,
    pub user_id: Uuid,
    pub idempotency_key: Option<String>,
    pub total_cents: i64,
}

/// The verdict. `lost`, `duplicated`, `unexpected` and `unresolved` must all be zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Distinct keys sent.
    pub buys: usize,
    /// Keys that ended with a 2xx answer.
    pub ok: usize,
    /// Keys whose load-phase answer was unknown.
    pub unknown: usize,
    /// Keys sent again in the retry phase.
    pub retried: usize,
    /// Keys answered 2xx with no stored order, or with an order id that is not the stored one.
    pub lost: usize,
    /// Keys with more than one stored order, or answered two different order ids.
    pub duplicated: usize,
    /// Orders no key accounts for: an unknown key, a refused key, a null key, a wrong total.
    pub unexpected: usize,
    /// Keys that never got a definite answer, even after the retry phase.
    pub unresolved: usize,
    /// One human-readable line per anomaly.
    pub anomalies: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0 && self.unresolved == 0
    }
}

/// Joins `history` with `orders` (the orders of the users the run created).
pub fn check(history: &[Op], orders: &[StoredOrder]) -> Report {
    let mut report = Report::default();

    let mut by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut stored: HashMap<&str, Vec<&StoredOrder>> = HashMap::new();
    for order in orders {
        match order.idempotency_key.as_deref() {
            Some(key) if by_key.contains_key(key) => stored.entry(key).or_default().push(order),
            Some(key) => {
                report.unexpected += 1;
                report.anomalies.push(format!(
                    "unexpected: order {} has unknown key {key}",
                    order.id
                ));
            }
            None => {
                report.unexpected += 1;
                report
                    .anomalies
                    .push(format!("unexpected: order {} has no key", order.id));
            }
        }
    }

    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort_unstable();
    report.buys = keys.len();
    for key in keys {
        let ops = &by_key[key];
        let held = stored.get(key).map(Vec::as_slice).unwrap_or_default();
        check_key(key, ops, held, &mut report);
    }
    report
}

fn check_key(key: &str, ops: &[&Op], held: &[&StoredOrder], report: &mut Report) {
    let first_load = ops.iter().find(|op| op.phase == Phase::Load);
    if first_load.is_some_and(|op| op.outcome == Outcome::Unknown) {
        report.unknown += 1;
    }
    if ops.iter().any(|op| op.phase == Phase::Retry) {
        report.retried += 1;
    }
    let answered: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| op.outcome == Outcome::Ok)
        .collect();
    let answered_ids: HashSet<Uuid> = answered.iter().filter_map(|op| op.order_id).collect();
    let definite_fail = ops.iter().any(|op| op.outcome == Outcome::Fail);

    if !answered.is_empty() {
        report.ok += 1;
    } else if !definite_fail {
        report.unresolved += 1;
        report
            .anomalies
            .push(format!("unresolved: key {key} never got a definite answer"));
    }

    if held.len() > 1 || answered_ids.len() > 1 {
        report.duplicated += 1;
        report.anomalies.push(format!(
            "duplicated: key {key} has {} stored orders and {} answered ids",
            held.len(),
            answered_ids.len()
        ));
    }

    let stored_ids: HashSet<Uuid> = held.iter().map(|order| order.id).collect();
    if !answered.is_empty() && answered_ids.iter().any(|id| !stored_ids.contains(id)) {
        report.lost += 1;
        report.anomalies.push(format!(
            "lost: key {key} was answered {answered_ids:?} but holds {stored_ids:?}"
        ));
    }

    if answered.is_empty() && definite_fail && !held.is_empty() {
        report.unexpected += 1;
        report.anomalies.push(format!(
            "unexpected: key {key} was refused yet owns an order"
        ));
    }
    let owners: HashSet<Uuid> = ops.iter().map(|op| op.user_id).collect();
    for order in held {
        let total_differs = answered
            .iter()
            .any(|op| op.order_id == Some(order.id) && op.total_cents != Some(order.total_cents));
        if total_differs || !owners.contains(&order.user_id) {
            report.unexpected += 1;
            report.anomalies.push(format!(
                "unexpected: order {} of key {key} differs from its answer (total or user)",
                order.id
            ));
        }
    }
}

/// The `q`-quantile (0..=1) of `values`, nearest rank; 0 when empty.
pub fn percentile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Uuid {
        Uuid::from_u128(7)
    }

    fn op(key: &str, phase: Phase, outcome: Outcome, order: Option<u128>) -> Op {
        Op {
            key: key.to_owned(),
            user_id: user(),
            lines: vec![Line {
                product_id: Uuid::from_u128(1),
                quantity: 1,
            }],
            phase,
            at_unix_ms: 0,
            start_ms: 0,
            end_ms: 5,
            status: None,
            outcome,
            order_id: order.map(Uuid::from_u128),
            total_cents: order.map(|_| 100),
            error: None,
        }
    }

    fn stored(key: &str, id: u128) -> StoredOrder {
        StoredOrder {
            id: Uuid::from_u128(id),
            user_id: user(),
            idempotency_key: Some(key.to_owned()),
            total_cents: 100,
        }
    }

    #[test]
    fn a_clean_history_passes_with_retried_unknowns_counted() {
        let history = [
            op("a", Phase::Load, Outcome::Ok, Some(10)),
            op("b", Phase::Load, Outcome::Unknown, None),
            op("b", Phase::Retry, Outcome::Ok, Some(11)),
            op("c", Phase::Load, Outcome::Fail, None),
        ];
        let report = check(&history, &[stored("a", 10), stored("b", 11)]);
        assert!(report.passed(), "{report:?}");
        assert_eq!(
            (report.buys, report.ok, report.unknown, report.retried),
            (3, 2, 1, 1)
        );
    }

    #[test]
    fn an_answered_order_missing_from_the_database_is_lost() {
        let history = [op("a", Phase::Load, Outcome::Ok, Some(10))];
        let report = check(&history, &[]);
        assert_eq!(report.lost, 1);
        assert!(!report.passed());
    }

    #[test]
    fn two_orders_for_one_key_are_duplicated() {
        let history = [op("a", Phase::Load, Outcome::Ok, Some(10))];
        let report = check(&history, &[stored("a", 10), stored("a", 11)]);
        assert_eq!(report.duplicated, 1);
    }

    #[test]
    fn two_different_ids_answered_for_one_key_are_duplicated() {
        let history = [
            op("a", Phase::Load, Outcome::Ok, Some(10)),
            op("a", Phase::Retry, Outcome::Ok, Some(11)),
        ];
        let report = check(&history, &[stored("a", 10)]);
        assert_eq!(report.duplicated, 1);
    }

    #[test]
    fn an_order_whose_key_was_never_sent_is_unexpected() {
        let history = [op("a", Phase::Load, Outcome::Ok, Some(10))];
        let report = check(&history, &[stored("a", 10), stored("zzz", 12)]);
        assert_eq!(report.unexpected, 1);
        assert_eq!(report.lost, 0);
    }

    #[test]
    fn an_answer_naming_another_order_than_the_stored_one_is_lost() {
        let history = [op("a", Phase::Load, Outcome::Ok, Some(10))];
        let report = check(&history, &[stored("a", 99)]);
        assert_eq!(report.lost, 1);
    }

    #[test]
    fn a_stored_total_unlike_the_answered_one_is_unexpected() {
        let history = [op("a", Phase::Load, Outcome::Ok, Some(10))];
        let mut order = stored("a", 10);
        order.total_cents = 101;
        let report = check(&history, &[order]);
        assert_eq!(report.unexpected, 1);
    }

    #[test]
    fn a_refused_key_that_owns_an_order_is_unexpected() {
        let history = [op("a", Phase::Load, Outcome::Fail, None)];
        let report = check(&history, &[stored("a", 10)]);
        assert_eq!(report.unexpected, 1);
    }

    #[test]
    fn a_key_left_unknown_after_retries_fails_the_check() {
        let history = [
            op("a", Phase::Load, Outcome::Unknown, None),
            op("a", Phase::Retry, Outcome::Unknown, None),
        ];
        let report = check(&history, &[]);
        assert_eq!(report.unresolved, 1);
        assert!(!report.passed());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&mut values, 0.5), 50);
        assert_eq!(percentile(&mut values, 0.99), 99);
        assert_eq!(percentile(&mut [], 0.5), 0);
    }
}
