//! Counting a measured run: each worker keeps its own tally (no shared lock on the hot path),
//! the tallies are merged, and the merge becomes the figures a report shows.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency the histogram holds, in microseconds; a slower answer is clamped to it.
const MAX_LATENCY_US: u64 = 120_000_000;

/// What one worker (or several, merged) saw during the measured run.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latencies of the successful requests, in microseconds.
    latency_us: Histogram<u64>,
    /// Requests that answered as expected.
    pub ok: u64,
    /// Requests that did not: a wrong status, no answer, or no answer in time.
    pub errors: u64,
    /// The errors by what went wrong (a status code, `timeout`, ...).
    pub error_kinds: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            // Three significant figures: 1 µs resolution below 1 ms, 0.1% above.
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            ok: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
        }
    }
}

impl Tally {
    /// Counts one request that took `latency` and either succeeded or failed for the reason
    /// given. Only successes enter the latency figures: a refused request can be fast and
    /// would flatter them.
    pub fn record(&mut self, latency: Duration, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency_us
                    .saturating_record(us.clamp(1, MAX_LATENCY_US));
                self.ok += 1;
            }
            Err(kind) => {
                self.errors += 1;
                *self.error_kinds.entry(kind).or_default() += 1;
            }
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Self) {
        // Both share the bounds of `default`, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        self.ok += other.ok;
        self.errors += other.errors;
        for (kind, n) in &other.error_kinds {
            *self.error_kinds.entry(kind.clone()).or_default() += n;
        }
    }

    /// The figures of this tally over a measured run that lasted `wall`.
    pub fn summarize(&self, wall: Duration) -> Summary {
        let ms = |q: f64| {
            if self.ok == 0 {
                0.0
            } else {
                self.latency_us.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let secs = wall.as_secs_f64();
        Summary {
            requests: self.ok + self.errors,
            ok: self.ok,
            errors: self.errors,
            wall_secs: secs,
            throughput: if secs > 0.0 {
                self.ok as f64 / secs
            } else {
                0.0
            },
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: if self.ok == 0 {
                0.0
            } else {
                self.latency_us.max() as f64 / 1000.0
            },
            error_kinds: self.error_kinds.clone(),
        }
    }
}

/// The figures of one measured run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Requests completed, successful or not.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// How long the measured run lasted, up to the last answer.
    pub wall_secs: f64,
    /// Successful requests per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub error_kinds: BTreeMap<String, u64>,
}

/// The median of `values` (the mean of the middle two for an even count), or `None` if empty.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

impl Summary {
    /// Several runs of one point as one: the median of each rate and latency figure, and the
    /// counts added up. `None` for no runs.
    pub fn median_of(runs: &[Summary]) -> Option<Summary> {
        let of = |figure: fn(&Summary) -> f64| median(runs.iter().map(figure));
        let mut error_kinds = BTreeMap::new();
        for run in runs {
            for (kind, n) in &run.error_kinds {
                *error_kinds.entry(kind.clone()).or_default() += n;
            }
        }
        Some(Summary {
            requests: runs.iter().map(|r| r.requests).sum(),
            ok: runs.iter().map(|r| r.ok).sum(),
            errors: runs.iter().map(|r| r.errors).sum(),
            wall_secs: runs.iter().map(|r| r.wall_secs).sum(),
            throughput: of(|r| r.throughput)?,
            p50_ms: of(|r| r.p50_ms)?,
            p95_ms: of(|r| r.p95_ms)?,
            p99_ms: of(|r| r.p99_ms)?,
            max_ms: of(|r| r.max_ms)?,
            error_kinds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= expected * tolerance
    }

    #[test]
    fn percentiles_come_from_the_successful_latencies() {
        let mut tally = Tally::default();
        for ms in 1..=1000u64 {
            tally.record(Duration::from_millis(ms), Ok(()));
        }
        // Errors are counted but must not move the latency figures.
        for _ in 0..500 {
            tally.record(Duration::from_micros(5), Err("503".into()));
        }
        let s = tally.summarize(Duration::from_secs(4));
        assert_eq!((s.requests, s.ok, s.errors), (1500, 1000, 500));
        assert_eq!(s.error_kinds, BTreeMap::from([("503".to_owned(), 500)]));
        assert!(close(s.p50_ms, 500.0, 0.002), "p50 {}", s.p50_ms);
        assert!(close(s.p95_ms, 950.0, 0.002), "p95 {}", s.p95_ms);
        assert!(close(s.p99_ms, 990.0, 0.002), "p99 {}", s.p99_ms);
        assert!(close(s.max_ms, 1000.0, 0.002), "max {}", s.max_ms);
        // Throughput counts successes only: 1000 in 4 s.
        assert!(close(s.throughput, 250.0, 1e-9), "{}", s.throughput);
    }

    #[test]
    fn sub_millisecond_latencies_keep_microsecond_precision() {
        let mut tally = Tally::default();
        for us in [180, 200, 220, 240] {
            tally.record(Duration::from_micros(us), Ok(()));
        }
        let s = tally.summarize(Duration::from_secs(1));
        assert_eq!(s.p50_ms, 0.2);
        assert_eq!(s.max_ms, 0.24);
    }

    #[test]
    fn merged_tallies_equal_one_tally_of_everything() {
        let (mut a, mut b, mut all) = (Tally::default(), Tally::default(), Tally::default());
        for ms in 1..=100u64 {
            let latency = Duration::from_millis(ms * 3);
            if ms % 2 == 0 { &mut a } else { &mut b }.record(latency, Ok(()));
            all.record(latency, Ok(()));
        }
        a.record(Duration::from_millis(1), Err("timeout".into()));
        b.record(Duration::from_millis(1), Err("timeout".into()));
        b.record(Duration::from_millis(1), Err("502".into()));
        for kind in ["timeout", "timeout", "502"] {
            all.record(Duration::from_millis(1), Err(kind.into()));
        }
        a.merge(&b);
        let wall = Duration::from_millis(2500);
        let merged = a.summarize(wall);
        assert_eq!(merged, all.summarize(wall));
        assert_eq!(merged.errors, 3);
        assert_eq!(merged.error_kinds["timeout"], 2);
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([7.0]), Some(7.0));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn runs_merge_into_medians_of_their_figures_and_sums_of_their_counts() {
        let run = |throughput: f64, p99_ms: f64, errors: u64| Summary {
            requests: 100 + errors,
            ok: 100,
            errors,
            wall_secs: 2.0,
            throughput,
            p50_ms: p99_ms / 4.0,
            p95_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms * 2.0,
            error_kinds: BTreeMap::from([("503".to_owned(), errors)]),
        };
        // The median of each figure on its own: the slowest run's p99 does not come along
        // with the median throughput.
        let merged = Summary::median_of(&[
            run(900.0, 40.0, 1),
            run(1000.0, 10.0, 0),
            run(950.0, 30.0, 2),
        ])
        .unwrap();
        assert_eq!(merged.throughput, 950.0);
        assert_eq!(merged.p99_ms, 30.0);
        assert_eq!(merged.p50_ms, 7.5);
        assert_eq!((merged.requests, merged.ok, merged.errors), (303, 300, 3));
        assert_eq!(merged.wall_secs, 6.0);
        assert_eq!(merged.error_kinds["503"], 3);
        assert_eq!(Summary::median_of(&[]), None);
    }

    #[test]
    fn a_run_with_only_errors_has_no_latency_and_no_throughput() {
        let mut tally = Tally::default();
        tally.record(Duration::from_millis(3), Err("transport".into()));
        let s = tally.summarize(Duration::from_secs(2));
        assert_eq!((s.requests, s.errors, s.throughput), (1, 1, 0.0));
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (0.0, 0.0, 0.0));
    }
}
