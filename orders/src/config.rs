//! The orders service's settings, read from the environment.

use std::time::Duration;

use common::{
    config::{AmqpConfig, ServerConfig, parse_or},
    jwt::JwksConfig,
};

/// Everything the orders service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (default 3003), the `orders` database and the shutdown timeout.
    pub server: ServerConfig,
    /// RabbitMQ, the order and resolve queues, and the events exchange.
    pub amqp: AmqpConfig,
    /// `AUTH_JWKS_URL`, `TOKEN_MAX_TTL_SECS`, `JWKS_CACHE_TTL_SECS`: where bearer tokens'
    /// public keys come from, and how long they are trusted.
    pub jwks: JwksConfig,
    /// `ORDER_PREFETCH`, default 32: unacknowledged deliveries each consumer holds at once.
    pub prefetch: u16,
    /// How the outbox relay publishes events.
    pub outbox: OutboxConfig,
}

/// How the outbox relay publishes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// `OUTBOX_POLL_MS`, default 1000: how often the relay looks for events without being woken,
    /// which is how it finds those other replicas wrote and leases that ran out.
    pub poll: Duration,
    /// `OUTBOX_LEASE_SECS`, default 30: how long a relay holds the events it claimed; one that
    /// dies before marking them sent leaves them to be published again after this.
    pub lease: Duration,
    /// `OUTBOX_RETENTION_HOURS`, default 24: how long a sent event is kept before it is deleted.
    pub retention: Duration,
}

/// The relay's settings when no variable is set.
pub const DEFAULT_OUTBOX: OutboxConfig = OutboxConfig {
    poll: Duration::from_secs(1),
    lease: Duration::from_secs(30),
    retention: Duration::from_secs(24 * 3600),
};

impl OutboxConfig {
    /// Reads the relay's settings; each must be at least 1.
    pub fn from_env() -> anyhow::Result<Self> {
        let at_least_one = |name: &str, default: u64| -> anyhow::Result<u64> {
            let value = parse_or(name, default)?;
            // 0 would poll without pause, lease nothing, or delete events as they are sent.
            anyhow::ensure!(value > 0, "{name} must be at least 1");
            Ok(value)
        };
        Ok(Self {
            poll: Duration::from_millis(at_least_one(
                "OUTBOX_POLL_MS",
                DEFAULT_OUTBOX.poll.as_millis() as u64,
            )?),
            lease: Duration::from_secs(at_least_one(
                "OUTBOX_LEASE_SECS",
                DEFAULT_OUTBOX.lease.as_secs(),
            )?),
            retention: Duration::from_secs(
                at_least_one(
                    "OUTBOX_RETENTION_HOURS",
                    DEFAULT_OUTBOX.retention.as_secs() / 3600,
                )?
                .saturating_mul(3600),
            ),
        })
    }
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let prefetch = parse_or("ORDER_PREFETCH", 32)?;
        // A prefetch of 0 means "unlimited" to RabbitMQ, which is never what a typo meant.
        anyhow::ensure!(prefetch > 0, "ORDER_PREFETCH must be at least 1");
        Ok(Self {
            server: ServerConfig::from_env("orders", 3003)?,
            amqp: AmqpConfig::from_env(),
            jwks: JwksConfig::from_env()?,
            prefetch,
            outbox: OutboxConfig::from_env()?,
        })
    }
}
