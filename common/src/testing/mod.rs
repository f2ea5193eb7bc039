//! Helpers for integration tests: any service running in the test ([`TestApp`]) and the shutdown
//! every service must show, a fresh database per test, unique queue names, waiting on a
//! condition with a deadline, a stand-in for auth's token issuer, a look at the broker's
//! queues, a TCP relay that injects network faults, and the loopback guard of the load and fault
//! tools. Compiled only with the `testing` feature.

use std::{future::Future, time::Duration};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use uuid::Uuid;

use crate::config::{DatabaseConfig, HttpTimeouts, ServerConfig, var_or};

mod app;
mod broker;
mod issuer;
mod logs;
mod loopback;
pub mod metrics;
pub mod openapi;
mod relay;

pub use app::{PATIENCE, TestApp, assert_graceful_shutdown};
pub use broker::{
    broker_connection, consume_without_acks, delete_exchange_on_drop, delete_queue,
    delete_queue_on_drop, next_reply, next_reply_with_headers, publish, queue_counts,
    request_properties,
};
pub use issuer::{
    Forgery, KEY_ID, NEXT_KEY_ID, SIGNING_KEY_PEM, TestIssuer, TokenForge, claims_for,
};
pub use logs::CapturedLogs;
pub use loopback::require_loopback;
pub use relay::{FaultRelay, RelayMode};

/// The server-level URL tests use to create and drop their databases.
pub fn admin_database_url() -> String {
    var_or(
        "TEST_DATABASE_ADMIN_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

/// The broker URL tests use.
pub fn amqp_url() -> String {
    var_or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

/// A database created for one test and dropped when this value is dropped.
pub struct TestDatabase {
    /// Its name, `test_<uuid>`.
    pub name: String,
    /// A URL that reaches it.
    pub url: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name. Panics, saying how to start PostgreSQL,
    /// when the server does not answer.
    pub async fn create() -> Self {
        let admin_url = admin_database_url();
        let admin = Database::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not answering at {admin_url} ({e}). Start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
                 or set TEST_DATABASE_ADMIN_URL."
            )
        });
        // The name is ours (a UUID without dashes), so quoting it is enough; identifiers cannot
        // be bound as parameters.
        let name = format!("test_{}", Uuid::new_v4().simple());
        admin
            .execute_raw(Statement::from_string(
                DbBackend::Postgres,
                ["CREATE DATABASE \"", &name, "\""].concat(),
            ))
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        Self { name, url }
    }

    /// Database settings for a service under test, pointing at this database.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url.clone(),
            max_connections: 5,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            migrate_on_start: true,
        }
    }

    /// Server settings for a service under test: any free port, this database, and
    /// [`TEST_SHUTDOWN_TIMEOUT`].
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            port: 0,
            database: self.config(),
            shutdown_timeout: TEST_SHUTDOWN_TIMEOUT,
            timeouts: HttpTimeouts::default(),
        }
    }
}

/// The `SHUTDOWN_TIMEOUT_SECS` of services under test.
pub const TEST_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = &self.name;
        run_detached(async move {
            if let Ok(admin) = Database::connect(&admin_database_url()).await {
                let _ = admin
                    .execute_raw(Statement::from_string(
                        DbBackend::Postgres,
                        ["DROP DATABASE IF EXISTS \"", name, "\" WITH (FORCE)"].concat(),
                    ))
                    .await;
                let _ = admin.close().await;
            }
        });
    }
}

/// Runs `work` to completion on a thread of its own with its own runtime. `Drop` runs inside
/// the test's runtime, which cannot be blocked on; a thread with its own runtime can.
pub fn run_detached<F>(work: F)
where
    F: Future<Output = ()> + Send,
{
    std::thread::scope(|scope| {
        let _ = scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for clean-up")
                    .block_on(work);
            })
            .join();
    });
}

/// A queue name no other test uses: `<prefix>.<uuid>`.
pub fn unique_queue(prefix: &str) -> String {
    format!("{prefix}.{}", Uuid::new_v4().simple())
}

/// Fails the test, saying how to start RabbitMQ, unless the broker accepts a connection.
pub async fn require_broker() {
    let _ = broker_connection().await.close(200, "ok".into()).await;
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `response` tells caches not to store it (`Cache-Control: no-store`) and
/// browsers not to sniff its content type.
pub fn assert_not_stored(response: &reqwest::Response) {
    use reqwest::header::{CACHE_CONTROL, HeaderValue, X_CONTENT_TYPE_OPTIONS};
    let what = format!("{} {}", response.url(), response.status());
    assert_eq!(
        response.headers().get(CACHE_CONTROL),
        Some(&HeaderValue::from_static("no-store")),
        "{what}"
    );
    assert_eq!(
        response.headers().get(X_CONTENT_TYPE_OPTIONS),
        Some(&HeaderValue::from_static("nosniff")),
        "{what}"
    );
}
