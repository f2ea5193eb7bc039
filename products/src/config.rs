//! Settings read from the environment.

use std::time::Duration;

use common::{
    amqp::ReplyMode,
    config::{AmqpConfig, ServerConfig, parse_or, var_or},
    jwt::JwksConfig,
};

use crate::{catalog::CacheLimits, reconciler::ReconcilerConfig};

/// Everything the products service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (default 3002), the `products` database and the shutdown timeout.
    pub server: ServerConfig,
    /// The broker and the queue buy requests go to.
    pub amqp: AmqpConfig,
    /// `ORDER_EVENTS_QUEUE`, default `products.order-events`: products' own queue of order
    /// events.
    pub events_queue: String,
    /// `RPC_TIMEOUT_MS`, default 5000: how long a buy waits for the orders reply.
    pub rpc_timeout: Duration,
    /// `RPC_REPLY_MODE`: `per-request` (default) or `direct`.
    pub reply_mode: ReplyMode,
    /// `AUTH_JWKS_URL`, `TOKEN_MAX_TTL_SECS`, `JWKS_CACHE_TTL_SECS`: where auth publishes the
    /// keys tokens are verified with, and how long they are trusted.
    pub jwks: JwksConfig,
    /// `CATALOG_CACHE_TTL_MS`, default 1000: how long products and listing pages are served
    /// from memory before being read again; 0 reads the database every time.
    /// `CATALOG_CACHE_MAX_BYTES`, default 4 MiB: the most both caches hold together.
    pub catalog_cache: CacheLimits,
    /// `RESERVATION_CHECK_INTERVAL_MS` (default 5000) and `RESERVATION_RESOLVE_AFTER_MS`
    /// (default 30000, at least `RPC_TIMEOUT_MS`): when pending reservations are settled.
    pub reconciler: ReconcilerConfig,
}

/// `CATALOG_CACHE_TTL_MS` when unset: a replica sees a product another one added within it.
pub const DEFAULT_CATALOG_CACHE_TTL: Duration = Duration::from_secs(1);

/// `CATALOG_CACHE_MAX_BYTES` when unset: a few canonical pages of long descriptions (a page of
/// 50 products of 5,000 characters is about 260 KB) and a few hundred such products, small
/// beside the 128 MiB the pod may use.
pub const DEFAULT_CATALOG_CACHE_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// The catalog cache when neither variable is set.
pub const DEFAULT_CATALOG_CACHE: CacheLimits = CacheLimits {
    ttl: DEFAULT_CATALOG_CACHE_TTL,
    max_bytes: DEFAULT_CATALOG_CACHE_MAX_BYTES,
};

/// `ORDER_EVENTS_QUEUE` when unset.
pub const DEFAULT_EVENTS_QUEUE: &str = "products.order-events";

/// When pending reservations are settled if neither variable is set: every 5 s, those pending
/// for 30 s (six default RPC timeouts).
pub const DEFAULT_RECONCILER: ReconcilerConfig = ReconcilerConfig {
    interval: Duration::from_secs(5),
    resolve_after: Duration::from_secs(30),
};

impl Config {
    /// Reads the configuration; a value that does not parse is an error rather than a default.
    pub fn from_env() -> anyhow::Result<Self> {
        let rpc_timeout_ms: u64 = parse_or("RPC_TIMEOUT_MS", 5000)?;
        // A zero timeout would fail every buy before orders could answer.
        anyhow::ensure!(rpc_timeout_ms > 0, "RPC_TIMEOUT_MS must be positive");
        let check_interval_ms: u64 = parse_or(
            "RESERVATION_CHECK_INTERVAL_MS",
            DEFAULT_RECONCILER.interval.as_millis() as u64,
        )?;
        anyhow::ensure!(
            check_interval_ms > 0,
            "RESERVATION_CHECK_INTERVAL_MS must be positive"
        );
        let resolve_after_ms: u64 = parse_or(
            "RESERVATION_RESOLVE_AFTER_MS",
            DEFAULT_RECONCILER.resolve_after.as_millis() as u64,
        )?;
        // Sooner, and a buy still waiting for its reply could see its reservation refused.
        anyhow::ensure!(
            resolve_after_ms >= rpc_timeout_ms,
            "RESERVATION_RESOLVE_AFTER_MS must be at least RPC_TIMEOUT_MS"
        );
        Ok(Self {
            server: ServerConfig::from_env("products", 3002)?,
            amqp: AmqpConfig::from_env(),
            events_queue: var_or("ORDER_EVENTS_QUEUE", DEFAULT_EVENTS_QUEUE),
            rpc_timeout: Duration::from_millis(rpc_timeout_ms),
            reply_mode: parse_or("RPC_REPLY_MODE", ReplyMode::PerRequest)?,
            jwks: JwksConfig::from_env()?,
            catalog_cache: CacheLimits {
                ttl: Duration::from_millis(parse_or(
                    "CATALOG_CACHE_TTL_MS",
                    DEFAULT_CATALOG_CACHE_TTL.as_millis() as u64,
                )?),
                max_bytes: parse_or("CATALOG_CACHE_MAX_BYTES", DEFAULT_CATALOG_CACHE_MAX_BYTES)?,
            },
            reconciler: ReconcilerConfig {
                interval: Duration::from_millis(check_interval_ms),
                resolve_after: Duration::from_millis(resolve_after_ms),
            },
        })
    }
}
