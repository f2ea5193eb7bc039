//! The closed loop: C workers, each sending its next request when the previous one answers,
//! through a warm-up that is not counted and a measured run bounded in time and in requests.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
// Tokio's clock rather than std's, so a test with a paused clock runs a point in no time.
use tokio::time::Instant;

use crate::stats::Tally;

/// How long one sweep point lasts.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub warmup: Duration,
    pub measured: Duration,
    /// The measured run stops early once this many requests have been sent.
    pub max_requests: u64,
}

/// Shared by the workers of one point.
struct Clock {
    measure_from: Instant,
    stop_at: Instant,
    max_requests: u64,
    /// Requests started in the measured run, across workers.
    started: AtomicU64,
}

/// A worker's view of the point: whether to send another request, and its own tally.
pub struct Pacer {
    clock: Arc<Clock>,
    tally: Tally,
}

/// Whether a request belongs to the warm-up or to the measured run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Warmup,
    Measured,
}

impl Pacer {
    /// The phase of the next request, or `None` when the worker must stop.
    pub fn next(&self) -> Option<Phase> {
        let now = Instant::now();
        if now >= self.clock.stop_at {
            return None;
        }
        if now < self.clock.measure_from {
            return Some(Phase::Warmup);
        }
        let n = self.clock.started.fetch_add(1, Ordering::Relaxed);
        (n < self.clock.max_requests).then_some(Phase::Measured)
    }

    /// Counts a request of `phase` that started at `start`: `Ok`, or why it failed.
    pub fn record(&mut self, phase: Phase, start: Instant, outcome: Result<(), String>) {
        if phase == Phase::Measured {
            self.tally.record(start.elapsed(), outcome);
        }
    }
}

/// What a point measured: the merged tally, and when the measured run began and ended.
pub struct PointRun {
    pub tally: Tally,
    pub wall: Duration,
}

/// Runs `concurrency` workers made by `worker` through `plan`, calling `at_measure_start` once
/// the warm-up is over and `at_measure_end` once every worker has stopped. A worker gets its
/// index and a [`Pacer`], loops while the pacer says so, and returns the pacer when done.
pub async fn run_point<W, Fut, S, E>(
    concurrency: usize,
    plan: Plan,
    worker: W,
    at_measure_start: S,
    at_measure_end: E,
) -> anyhow::Result<PointRun>
where
    W: Fn(usize, Pacer) -> Fut,
    Fut: Future<Output = anyhow::Result<Pacer>> + Send + 'static,
    S: FnOnce(),
    E: FnOnce(),
{
    let measure_from = Instant::now() + plan.warmup;
    let clock = Arc::new(Clock {
        measure_from,
        stop_at: measure_from + plan.measured,
        max_requests: plan.max_requests,
        started: AtomicU64::new(0),
    });
    // Dropped on an early return or a Ctrl-C, which aborts every worker still running.
    let mut workers = JoinSet::new();
    for index in 0..concurrency {
        let pacer = Pacer {
            clock: clock.clone(),
            tally: Tally::default(),
        };
        workers.spawn(worker(index, pacer));
    }
    tokio::time::sleep_until(measure_from).await;
    at_measure_start();
    // A request in flight at the stop finishes first; its own timeout bounds how long that is.
    let hard_stop = clock.stop_at + Duration::from_secs(30);
    let mut tally = Tally::default();
    loop {
        let joined = tokio::time::timeout_at(hard_stop, workers.join_next())
            .await
            .context("workers still busy 30 s after the end of the point")?;
        let Some(joined) = joined else { break };
        let pacer = joined.context("a worker panicked")??;
        tally.merge(&pacer.tally);
    }
    let wall = Instant::now().saturating_duration_since(measure_from);
    at_measure_end();
    Ok(PointRun { tally, wall })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_measured_requests_are_counted_and_the_cap_stops_the_run() {
        let plan = Plan {
            warmup: Duration::from_millis(100),
            measured: Duration::from_secs(3600),
            max_requests: 50,
        };
        let run = run_point(
            4,
            plan,
            |_, mut pacer| async move {
                while let Some(phase) = pacer.next() {
                    let start = Instant::now();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    pacer.record(phase, start, Ok(()));
                }
                Ok(pacer)
            },
            || {},
            || {},
        )
        .await
        .unwrap();
        // Four workers 10 ms apart spend the 100 ms warm-up on some 40 uncounted requests;
        // the measured run then ends at the cap, not after an hour.
        assert_eq!(run.tally.ok, 50);
        assert!(run.wall < Duration::from_secs(1), "{:?}", run.wall);
    }
}
