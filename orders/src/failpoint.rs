//! Crash points for fault-injection tests: with the `failpoints` feature, `ORDERS_FAILPOINT`
//! names a point of handling a buy where the process aborts, as a `kill -9` would land there.
//! `ORDERS_FAILPOINT_AFTER=<n>` (default 1) fires it on the n-th time the point is reached.
//! Without the feature [`hit`] is an empty function, and release images never carry it.

/// A place in the handling of a buy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The order is written but its transaction not yet committed (`before-commit`).
    BeforeCommit,
    /// The order is committed, no reply is sent yet (`after-commit`).
    AfterCommit,
    /// The reply is confirmed by the broker, the request is not acked yet (`after-reply`).
    AfterReply,
}

impl Point {
    /// The name `ORDERS_FAILPOINT` uses for this point.
    pub fn name(self) -> &'static str {
        match self {
            Self::BeforeCommit => "before-commit",
            Self::AfterCommit => "after-commit",
            Self::AfterReply => "after-reply",
        }
    }
}

/// Aborts the process when `point` is the armed failpoint and this is the time it fires.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_point: Point) {}

/// Aborts the process when `point` is the armed failpoint and this is the time it fires.
#[cfg(feature = "failpoints")]
pub fn hit(point: Point) {
    use std::sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    };

    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static REACHED: AtomicU64 = AtomicU64::new(0);

    let armed = ARMED.get_or_init(|| {
        let name = std::env::var("ORDERS_FAILPOINT").ok()?;
        let after = std::env::var("ORDERS_FAILPOINT_AFTER")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1);
        let known = [Point::BeforeCommit, Point::AfterCommit, Point::AfterReply];
        if known.iter().any(|p| p.name() == name) {
            tracing::warn!(failpoint = %name, after, "failpoint armed");
        } else {
            tracing::error!(failpoint = %name, "unknown failpoint; it never fires");
        }
        Some((name, after))
    });
    let Some((name, after)) = armed else { return };
    if name != point.name() {
        return;
    }
    if REACHED.fetch_add(1, Ordering::SeqCst) + 1 == *after {
        tracing::error!(failpoint = point.name(), "failpoint reached; aborting");
        std::process::abort();
    }
}
