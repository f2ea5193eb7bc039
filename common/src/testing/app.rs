//! The one way tests run a service: the real [`Application`] of any service on port 0, in the
//! test's process, stopped as SIGTERM would stop it.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::Broker,
    service::{Application, Service},
};

use super::wait_until;

/// How long a test waits for a service to become ready, or to stop.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A service running in the test, with an HTTP client for it. Dropping it stops the service.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The port it listens on.
    pub port: u16,
    /// A client for talking to it.
    pub http: reqwest::Client,
    db: DatabaseConnection,
    broker: Option<Broker>,
    shutdown: CancellationToken,
    running: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Builds service `S` with `config` and serves it, without waiting until it is ready.
    /// Panics with the cause when it does not build.
    pub async fn spawn<S: Service>(config: S::Config) -> Self {
        crate::telemetry::init(S::NAME);
        let shutdown = CancellationToken::new();
        let app = Application::build::<S>(config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("{} did not start: {e:#}", S::NAME));
        let port = app.port();
        let db = app.db().clone();
        let broker = app.broker().cloned();
        let running = tokio::spawn(app.run_until_stopped());
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            db,
            broker,
            shutdown,
            running: Some(running),
        }
    }

    /// [`TestApp::spawn`], then waits until `/readyz` answers 200.
    pub async fn spawn_ready<S: Service>(config: S::Config) -> Self {
        let app = Self::spawn::<S>(config).await;
        app.wait_ready().await;
        app
    }

    /// Waits until `/readyz` answers 200; panics after [`PATIENCE`].
    pub async fn wait_ready(&self) {
        let url = self.url("/readyz");
        wait_until(PATIENCE, &format!("{url} to answer 200"), || async {
            let response = self.http.get(&url).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    /// The URL of `path` on this service.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path`, without a token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The text `GET /metrics` answers.
    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("the metrics are text")
    }

    /// The service's pool (closed once the service has stopped).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The service's broker connection, if it has one.
    pub fn broker(&self) -> Option<&Broker> {
        self.broker.as_ref()
    }

    /// The token whose cancellation stops the service, as SIGTERM does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Asks the service to stop as SIGTERM would and returns what `run_until_stopped`
    /// returned; panics if it takes longer than [`PATIENCE`] or panicked. Stopping twice
    /// returns `Ok`.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait_stopped().await
    }

    /// Waits, at most [`PATIENCE`], for the service to stop on its own or because its token
    /// was cancelled, and returns what `run_until_stopped` returned.
    pub async fn wait_stopped(&mut self) -> anyhow::Result<()> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        tokio::time::timeout(PATIENCE, running)
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within {PATIENCE:?}", self.address))
            .expect("the service's task did not panic")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A test that panicked never called `stop`; its service must not outlive it.
        self.shutdown.cancel();
    }
}

/// Stops `app` and checks it stopped the way every service must: a request being handled when
/// the stop begins is answered, new connections are refused from that moment, the whole stop
/// ends within `grace` (the service's `SHUTDOWN_TIMEOUT_SECS`), the broker connection and the
/// pool are closed, and nothing consumes `queue` (the service's work queue, if it has one) any
/// more.
///
/// The request in flight is a `GET /readyz` held up by the test holding every connection of
/// the service's pool, released once the stop has begun.
pub async fn assert_graceful_shutdown(mut app: TestApp, grace: Duration, queue: Option<&str>) {
    use sea_orm::TransactionTrait;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    if let Some(queue) = queue {
        wait_until(PATIENCE, "the service to consume its queue", || async {
            (consumers(queue).await > 0).then_some(())
        })
        .await;
    }
    let pool_size = app
        .db()
        .get_postgres_connection_pool()
        .options()
        .get_max_connections();
    let mut held = Vec::new();
    for _ in 0..pool_size {
        held.push(app.db().begin().await.expect("take a pooled connection"));
    }
    let address = ("127.0.0.1", app.port);
    let mut client = TcpStream::connect(address)
        .await
        .expect("connect to the service");
    client
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("send a request");
    wait_until(PATIENCE, "the request to be in flight", || async {
        let text = app.metrics().await;
        // The scrape itself is one of the active requests.
        (super::metrics::value(&text, "http_server_active_requests", &[]) >= Some(2.0))
            .then_some(())
    })
    .await;

    let started = tokio::time::Instant::now();
    app.shutdown.cancel();
    wait_until(PATIENCE, "the port to refuse new connections", || async {
        TcpStream::connect(address).await.is_err().then_some(())
    })
    .await;
    for transaction in held {
        transaction
            .rollback()
            .await
            .expect("give the connection back");
    }
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, client.read_to_end(&mut answer))
        .await
        .expect("an answer within the patience")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request in flight was answered: {answer}"
    );

    let stopped = app.wait_stopped().await;
    let took = started.elapsed();
    assert!(stopped.is_ok(), "stopped cleanly: {stopped:?}");
    assert!(
        took < grace,
        "stopped within the shutdown timeout of {grace:?} (took {took:?})"
    );
    assert!(
        app.db().ping().await.is_err(),
        "the pool is closed after the stop"
    );
    if let Some(broker) = app.broker() {
        assert!(
            !broker.is_connected(),
            "the broker connection is closed after the stop"
        );
    }
    if let Some(queue) = queue {
        assert_eq!(
            consumers(queue).await,
            0,
            "nothing consumes {queue} after the stop"
        );
    }

    async fn consumers(queue: &str) -> u32 {
        let connection = super::broker_connection().await;
        let channel = connection.create_channel().await.expect("open a channel");
        let (_, consumers) = super::queue_counts(&channel, queue)
            .await
            .expect("the queue exists");
        let _ = connection.close(200, "done".into()).await;
        consumers
    }
}
