//! The service's settings, read from the environment.

use std::{path::PathBuf, time::Duration};

use common::config::{ServerConfig, bool_or, parse_or};

use crate::{limits::RateLimitConfig, password::HashQueueConfig};

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (default 3001), the `auth` database and the shutdown timeout.
    pub server: ServerConfig,
    /// `JWT_PRIVATE_KEY_FILE`, `JWT_PREVIOUS_KEY_FILE`, `REQUIRE_JWT_KEY`: the signing keys.
    pub keys: KeyConfig,
    /// `TOKEN_TTL_SECS`, default 900: how long an access token is valid.
    pub token_ttl: Duration,
    /// `HASH_CONCURRENCY`, default the number of CPUs: password hashes computed at once.
    pub hash_concurrency: usize,
    /// `HASH_QUEUE_CAPACITY` and `HASH_QUEUE_DEADLINE_MS`: how many hashes may wait, and how long.
    pub hash_queue: HashQueueConfig,
    /// The rate limits on register and login, and the trusted proxies.
    pub rate_limits: RateLimitConfig,
}

impl Config {
    /// Reads the settings from the environment.
    pub fn from_env() -> anyhow::Result<Config> {
        let token_ttl_secs: u64 = parse_or("TOKEN_TTL_SECS", 900)?;
        anyhow::ensure!(token_ttl_secs > 0, "TOKEN_TTL_SECS must be at least 1");
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let hash_concurrency: usize = parse_or("HASH_CONCURRENCY", cpus)?;
        anyhow::ensure!(hash_concurrency > 0, "HASH_CONCURRENCY must be at least 1");
        Ok(Config {
            server: ServerConfig::from_env("auth", 3001)?,
            keys: KeyConfig::from_env()?,
            token_ttl: Duration::from_secs(token_ttl_secs),
            hash_concurrency,
            hash_queue: HashQueueConfig::from_env(hash_concurrency)?,
            rate_limits: RateLimitConfig::from_env()?,
        })
    }
}

/// Where the token signing keys are, and whether one must be.
#[derive(Debug, Clone, Default)]
pub struct KeyConfig {
    /// `JWT_PRIVATE_KEY_FILE`: a PKCS#8 PEM Ed25519 key that signs tokens. Unset means an
    /// ephemeral key, unless `require` says otherwise.
    pub private_key_file: Option<PathBuf>,
    /// `JWT_PREVIOUS_KEY_FILE`: the key signing used before the last rotation (its public PEM,
    /// or the old private PEM), published beside the current one so tokens it signed keep
    /// verifying until they expire. Auth never signs with it. A missing file means none.
    pub previous_key_file: Option<PathBuf>,
    /// `REQUIRE_JWT_KEY`, default false: refuse to start without `JWT_PRIVATE_KEY_FILE` rather
    /// than sign with an ephemeral key. Set it wherever there is more than one replica.
    pub require: bool,
}

impl KeyConfig {
    /// Reads the settings from the environment.
    pub fn from_env() -> anyhow::Result<KeyConfig> {
        let path = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|path| !path.trim().is_empty())
                .map(PathBuf::from)
        };
        Ok(KeyConfig {
            private_key_file: path("JWT_PRIVATE_KEY_FILE"),
            previous_key_file: path("JWT_PREVIOUS_KEY_FILE"),
            require: bool_or("REQUIRE_JWT_KEY", false)?,
        })
    }
}
