//! The orders service's settings, read from the environment.

use common::{
    config::{AmqpConfig, ServerConfig, parse_or},
    jwt::JwksConfig,
};

/// Everything the orders service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (default 3003), the `orders` database and the shutdown timeout.
    pub server: ServerConfig,
    /// RabbitMQ and the order queue.
    pub amqp: AmqpConfig,
    /// `AUTH_JWKS_URL`, `TOKEN_MAX_TTL_SECS`, `JWKS_CACHE_TTL_SECS`: where bearer tokens'
    /// public keys come from, and how long they are trusted.
    pub jwks: JwksConfig,
    /// `ORDER_PREFETCH`, default 32: unacknowledged deliveries the consumer holds at once.
    pub prefetch: u16,
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
        })
    }
}
