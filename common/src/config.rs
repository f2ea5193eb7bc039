//! Configuration read from the environment (and from a `.env` file when one is present).

use std::{str::FromStr, time::Duration};

use anyhow::Context;

/// Reads `.env` into the environment when the file exists; a missing file is not an error.
pub fn load_dotenv() {
    // A malformed .env is worth failing on, a missing one is the normal case in containers.
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => panic!("could not read .env: {e}"),
    }
}

/// The value of `name`, or `default` when it is unset or empty.
pub fn var_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => default.to_owned(),
    }
}

/// Parses `name` as `T`, falling back to `default` when it is unset or empty.
pub fn parse_or<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={v:?} is not valid: {e}")),
        _ => Ok(default),
    }
}

/// Parses a boolean variable written as `true`/`false`, `1`/`0`, `yes`/`no`.
pub fn bool_or(name: &str, default: bool) -> anyhow::Result<bool> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => anyhow::bail!("{name}={other:?} is not a boolean"),
        },
        _ => Ok(default),
    }
}

/// Settings of a service's PostgreSQL pool.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/<service>`.
    pub url: String,
    /// `DB_MAX_CONNECTIONS`, default 10.
    pub max_connections: u32,
    /// `DB_ACQUIRE_TIMEOUT_MS`, default 3000: how long a request waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT_MS`, default 5000: the server cancels statements running longer.
    pub statement_timeout: Duration,
    /// `MIGRATE_ON_START`, default true.
    pub migrate_on_start: bool,
}

impl DatabaseConfig {
    /// Reads the database settings of `service` from the environment.
    pub fn from_env(service: &str) -> anyhow::Result<Self> {
        Ok(Self {
            url: var_or(
                "DATABASE_URL",
                &format!("postgres://postgres@127.0.0.1:5432/{service}"),
            ),
            max_connections: parse_or("DB_MAX_CONNECTIONS", 10)?,
            acquire_timeout: Duration::from_millis(parse_or("DB_ACQUIRE_TIMEOUT_MS", 3000)?),
            statement_timeout: Duration::from_millis(parse_or("DB_STATEMENT_TIMEOUT_MS", 5000)?),
            migrate_on_start: bool_or("MIGRATE_ON_START", true)?,
        })
    }
}

/// Settings of the RabbitMQ connection and the queues products and orders share.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// `ORDER_QUEUE`, default `ORDER`.
    pub order_queue: String,
    /// `RESOLVE_QUEUE`, default `ORDER_RESOLVE`: where products asks orders how a reservation
    /// ended.
    pub resolve_queue: String,
    /// `EVENTS_EXCHANGE`, default `shop.events`: the topic exchange of order events.
    pub events_exchange: String,
}

impl AmqpConfig {
    /// Reads the broker settings from the environment.
    pub fn from_env() -> Self {
        Self {
            url: var_or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            order_queue: var_or("ORDER_QUEUE", crate::messages::DEFAULT_ORDER_QUEUE),
            resolve_queue: var_or("RESOLVE_QUEUE", crate::messages::DEFAULT_RESOLVE_QUEUE),
            events_exchange: var_or("EVENTS_EXCHANGE", crate::messages::EVENTS_EXCHANGE),
        }
    }

    /// The broker at `url` with the order queue `order_queue`, and a resolve queue and an events
    /// exchange named after it (`<order_queue>_RESOLVE`, `<order_queue>.events`), so that a
    /// test's one unique queue name keeps all three apart from every other test's.
    pub fn with_order_queue(url: String, order_queue: String) -> Self {
        Self {
            url,
            resolve_queue: format!("{order_queue}_RESOLVE"),
            events_exchange: format!("{order_queue}.events"),
            order_queue,
        }
    }
}

/// What every service is configured with, whatever else it needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `PORT`: the HTTP port on 0.0.0.0; 0 picks a free one.
    pub port: u16,
    /// The service's own database.
    pub database: DatabaseConfig,
    /// `SHUTDOWN_TIMEOUT_SECS`, default 20: how long in-flight requests and deliveries may take
    /// after SIGTERM before the service stops anyway.
    pub shutdown_timeout: Duration,
    /// How long a client may take to send a request.
    pub timeouts: HttpTimeouts,
}

/// How long the HTTP server waits for a client, so a slow or silent one cannot hold a
/// connection (and a worker's memory) for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// `HTTP_REQUEST_HEAD_TIMEOUT_MS`, default 5000: from a connection's first byte (or the
    /// previous answer) to the end of the request line and headers; then 408 and the connection
    /// closes.
    pub request_head: Duration,
    /// `HTTP_REQUEST_BODY_TIMEOUT_MS`, default 10000: from the end of the headers to the end of
    /// the body a route reads; then 408 and the connection closes.
    pub request_body: Duration,
    /// `HTTP_CLIENT_DISCONNECT_TIMEOUT_MS`, default 1000: how long a closing connection waits
    /// for the client to go before it is dropped.
    pub client_disconnect: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            request_head: Duration::from_secs(5),
            request_body: Duration::from_secs(10),
            client_disconnect: Duration::from_secs(1),
        }
    }
}

impl HttpTimeouts {
    /// Reads the timeouts from the environment; each must be at least 1 ms.
    pub fn from_env() -> anyhow::Result<Self> {
        let default = Self::default();
        let millis = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            let ms: u64 = parse_or(name, default.as_millis() as u64)?;
            anyhow::ensure!(ms > 0, "{name} must be at least 1");
            Ok(Duration::from_millis(ms))
        };
        Ok(Self {
            request_head: millis("HTTP_REQUEST_HEAD_TIMEOUT_MS", default.request_head)?,
            request_body: millis("HTTP_REQUEST_BODY_TIMEOUT_MS", default.request_body)?,
            client_disconnect: millis(
                "HTTP_CLIENT_DISCONNECT_TIMEOUT_MS",
                default.client_disconnect,
            )?,
        })
    }
}

impl ServerConfig {
    /// Reads the settings of `service`, whose port is `default_port` unless `PORT` says
    /// otherwise.
    pub fn from_env(service: &str, default_port: u16) -> anyhow::Result<Self> {
        Ok(Self {
            port: parse_or("PORT", default_port)?,
            database: DatabaseConfig::from_env(service).context("database settings")?,
            shutdown_timeout: Duration::from_secs(parse_or("SHUTDOWN_TIMEOUT_SECS", 20)?),
            timeouts: HttpTimeouts::from_env().context("HTTP timeouts")?,
        })
    }
}

/// `AUTH_JWKS_URL`, where verifiers fetch auth's public keys.
pub fn jwks_url() -> String {
    var_or(
        "AUTH_JWKS_URL",
        "http://127.0.0.1:3001/auth/.well-known/jwks.json",
    )
}
