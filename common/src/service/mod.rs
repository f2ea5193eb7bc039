//! The skeleton every service runs on.
//!
//! A service supplies its configuration, its state and routes, and (orders) its consumers, by
//! implementing [`Service`]. The skeleton does the rest, the same way for all three: the
//! command line (`serve`, `migrate`, and the service's own commands), telemetry, the database
//! pool and its migrations, the broker connection, the HTTP server with `/healthz`, `/readyz`
//! and `/metrics`, graceful shutdown, and how a fatal error is reported.
//!
//! Shutdown, on SIGTERM or SIGINT (or when the HTTP server or a worker ends on its own): stop
//! accepting connections, let in-flight requests and deliveries finish, close the broker
//! connection, close the pool, all within `SHUTDOWN_TIMEOUT_SECS`; the log says which task
//! ended and why.

pub mod health;

use std::{future::Future, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::Broker,
    config::{AmqpConfig, ServerConfig},
    db,
    http::{self, Routes, Shared},
    metrics::{self, HttpMetrics, Registry},
    openapi::{self, Document},
    shutdown, telemetry,
};
use health::{Check, Readiness};

/// Of the shutdown timeout, what is kept for closing the broker connection and the pool after
/// in-flight work (at most half of it).
const CLOSE_RESERVE: Duration = Duration::from_secs(1);

/// What one service adds to the skeleton.
pub trait Service: 'static {
    /// `auth`, `products` or `orders`: the binary's name, and the service in logs and traces.
    const NAME: &'static str;
    /// One line saying what the service does, for `--help`.
    const ABOUT: &'static str;
    /// The advisory lock its migrations run under, so replicas apply them once.
    const MIGRATION_LOCK: i64;
    /// Its settings.
    type Config: Send + 'static;
    /// Its schema.
    type Migrator: MigratorTrait;
    /// Its commands besides `serve` and `migrate` ([`NoCommand`] for none).
    type Command: Subcommand + Send;
    /// The OpenAPI description of its own routes; `/openapi.json` serves it with the skeleton's
    /// (see [`crate::openapi`]).
    type Api: utoipa::OpenApi;

    /// Reads the settings from the environment.
    fn config_from_env() -> anyhow::Result<Self::Config>;

    /// The port, database and shutdown settings within them.
    fn server_config(config: &Self::Config) -> &ServerConfig;

    /// Builds the service's state on the skeleton's `parts` (its pool is connected and
    /// migrated by then) and returns its routes.
    fn build(
        config: Self::Config,
        parts: &mut Parts,
    ) -> impl Future<Output = anyhow::Result<Routes>> + Send;

    /// Runs one of its own commands.
    fn run_command(
        command: Self::Command,
        config: Self::Config,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The commands of a service that has none besides `serve` and `migrate`.
#[derive(Debug, Subcommand)]
pub enum NoCommand {}

#[derive(Parser)]
#[command(version)]
struct Cli<C: Subcommand> {
    #[command(subcommand)]
    command: Option<Command<C>>,
}

#[derive(Subcommand)]
enum Command<C: Subcommand> {
    /// Serve HTTP, and consume the service's queues if it has any (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    #[command(flatten)]
    Own(C),
}

/// The whole of a service's `main`: reads `.env`, parses the command line, starts telemetry,
/// runs the command on a Tokio runtime, and reports a fatal error the one way every service
/// does: one JSON line at ERROR with the cause chain, and exit status 1.
pub fn main<S: Service>() -> ExitCode {
    crate::config::load_dotenv();
    let matches = Cli::<S::Command>::command()
        .name(S::NAME)
        .about(S::ABOUT)
        .get_matches();
    let cli = match Cli::<S::Command>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Before the runtime: the span exporter runs on threads of its own.
    let telemetry = telemetry::init(S::NAME);
    let result = tokio::runtime::Runtime::new()
        .context("starting the Tokio runtime")
        .and_then(|runtime| runtime.block_on(run::<S>(cli.command.unwrap_or(Command::Serve))));
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                service = S::NAME,
                error = format!("{e:#}"),
                "stopped by an error"
            );
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn run<S: Service>(command: Command<S::Command>) -> anyhow::Result<()> {
    let config = S::config_from_env()?;
    match command {
        Command::Serve => {
            let app = Application::build::<S>(config, shutdown::on_signal()).await?;
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let database = &S::server_config(&config).database;
            db::migrate_and_close::<S::Migrator>(database, S::MIGRATION_LOCK).await
        }
        Command::Own(command) => S::run_command(command, config).await,
    }
}

/// What a service builds on: its pool, its metrics registry, its shutdown token, and the
/// broker, readiness checks and workers it adds.
pub struct Parts {
    db: DatabaseConnection,
    registry: Registry,
    stop: CancellationToken,
    broker: Option<Broker>,
    checks: Vec<(&'static str, Check)>,
    workers: Vec<Worker>,
}

/// A task that runs as long as the service: a consumer.
struct Worker {
    name: &'static str,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Parts {
    /// The service's database pool, connected and migrated.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The registry `/metrics` shows; register the service's own metrics here.
    pub fn metrics(&self) -> &Registry {
        &self.registry
    }

    /// Cancelled when the service is to stop.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.stop
    }

    /// Starts the process's one broker connection: `/readyz` reports it as `broker`,
    /// `shop_amqp_connected` shows it, and it is closed once requests and workers have
    /// finished.
    pub fn connect_broker(&mut self, amqp: &AmqpConfig) -> anyhow::Result<Broker> {
        anyhow::ensure!(self.broker.is_none(), "the broker is connected already");
        let broker = Broker::start(amqp.url.clone(), self.stop.clone());
        let watched = broker.clone();
        metrics::gauge_fn(
            &self.registry,
            "shop_amqp_connected",
            "Whether the connection to RabbitMQ is open (1) or not (0).",
            move || f64::from(u8::from(watched.is_connected())),
        )?;
        let watched = broker.clone();
        self.ready_when("broker", move || {
            watched
                .is_connected()
                .then_some(())
                .ok_or("the broker is not connected")
        });
        self.broker = Some(broker.clone());
        Ok(broker)
    }

    /// Adds `check` to `/readyz` under `name`; it answers why not when the dependency is down.
    pub fn ready_when(
        &mut self,
        name: &'static str,
        check: impl Fn() -> Result<(), &'static str> + Send + Sync + 'static,
    ) {
        self.checks.push((name, Arc::new(check)));
    }

    /// Runs `work` (a consumer) until shutdown; it must stop soon after [`Parts::shutdown`] is
    /// cancelled, finishing what it has started. Ending earlier, or with an error, stops the
    /// whole service.
    pub fn spawn_worker(
        &mut self,
        name: &'static str,
        work: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.workers.push(Worker {
            name,
            task: tokio::spawn(work),
        });
    }
}

/// A running service: its HTTP server bound, its workers started.
pub struct Application {
    name: &'static str,
    port: u16,
    server: actix_web::dev::Server,
    stop: CancellationToken,
    db: DatabaseConnection,
    broker: Option<Broker>,
    workers: Vec<Worker>,
    grace: Duration,
}

impl Application {
    /// Connects and migrates the pool, builds service `S` on it, and binds its port (0 picks a
    /// free one); serving starts with [`Application::run_until_stopped`]. Everything stops when
    /// `shutdown` is cancelled.
    pub async fn build<S: Service>(
        config: S::Config,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let server = S::server_config(&config).clone();
        let db =
            db::connect_and_migrate::<S::Migrator>(&server.database, S::MIGRATION_LOCK).await?;
        let registry = metrics::registry();
        db::register_pool_metrics(&db, &registry)?;
        let http_metrics = HttpMetrics::register(&registry)?;
        // A child token: a failed build stops what it started without touching the caller's.
        let stop = shutdown.child_token();
        let mut parts = Parts {
            db: db.clone(),
            registry: registry.clone(),
            stop: stop.clone(),
            broker: None,
            checks: Vec::new(),
            workers: Vec::new(),
        };
        let built = async {
            let routes = S::build(config, &mut parts).await?;
            let (listener, port) = http::bind(server.port)?;
            let shared = Shared {
                registry,
                metrics: http_metrics,
                readiness: Readiness {
                    db: db.clone(),
                    checks: std::mem::take(&mut parts.checks),
                },
                document: document::<S>()?,
            };
            let http = http::serve(
                listener,
                server.shutdown_timeout,
                server.timeouts,
                shared,
                routes,
            )?;
            anyhow::Ok((http, port))
        }
        .await;
        let (http, port) = match built {
            Ok(built) => built,
            Err(e) => {
                stop.cancel();
                return Err(e);
            }
        };
        tracing::info!(service = S::NAME, port, "listening");
        Ok(Self {
            name: S::NAME,
            port,
            server: http,
            stop,
            db,
            broker: parts.broker,
            workers: parts.workers,
            grace: server.shutdown_timeout,
        })
    }

    /// The port the server is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The service's pool; closed once the service has stopped.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The service's broker connection, if it has one; closed once the service has stopped.
    pub fn broker(&self) -> Option<&Broker> {
        self.broker.as_ref()
    }

    /// Serves until shutdown is requested or a task (the HTTP server, a worker) ends by itself,
    /// then stops as the module documentation says. Returns an error when a task failed or
    /// ended before shutdown was requested, or when stopping took longer than allowed.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            name,
            server,
            stop,
            db,
            broker,
            workers,
            grace,
            ..
        } = self;
        let handle = server.handle();
        let mut running: FuturesUnordered<BoxFuture<'static, (&'static str, anyhow::Result<()>)>> =
            FuturesUnordered::new();
        let http = tokio::spawn(server);
        running.push(
            async move {
                (
                    "HTTP server",
                    joined(http.await.map(|r| r.map_err(Into::into))),
                )
            }
            .boxed(),
        );
        for worker in workers {
            running.push(async move { (worker.name, joined(worker.task.await)) }.boxed());
        }

        let mut failures = Vec::new();
        tokio::select! {
            () = stop.cancelled() => {}
            Some((task, result)) = running.next() => {
                // Both may be ready at once: a worker that saw the stop has ended for it.
                let stopping = stop.is_cancelled();
                // Whatever ended first, nothing else may outlive it.
                stop.cancel();
                failures.extend(ended(task, result, stopping).err());
            }
        }
        let deadline = Instant::now() + grace;
        // Requests and deliveries may use all of the grace but what closing the connections
        // needs, so the whole stop fits in it.
        let drain_deadline = deadline - CLOSE_RESERVE.min(grace / 2);
        tracing::info!(service = name, grace_secs = grace.as_secs(), "stopping");
        let drained = tokio::time::timeout_at(drain_deadline, async {
            // Stops accepting at once; in-flight requests get what remains of the grace.
            handle.stop(true).await;
            while let Some((task, result)) = running.next().await {
                failures.extend(ended(task, result, true).err());
            }
        })
        .await;
        if drained.is_err() {
            tracing::error!(
                service = name,
                grace_secs = grace.as_secs(),
                "in-flight work did not finish within the shutdown timeout"
            );
            failures.push(anyhow::anyhow!(
                "in-flight work did not finish within {grace:?} of the shutdown"
            ));
        }
        // Last, so no request or delivery still in flight loses its connection.
        if let Some(broker) = broker {
            let _ = tokio::time::timeout_at(deadline, broker.close()).await;
        }
        // Waits for the connections in use to come back, so it is bounded too.
        match tokio::time::timeout_at(deadline, db.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(service = name, error = %e, "closing the pool failed"),
            Err(_) => tracing::warn!(service = name, "the pool did not close in time"),
        }
        tracing::info!(service = name, "stopped");
        // The first failure is the cause; any later one was logged where it happened.
        failures.into_iter().next().map_or(Ok(()), Err)
    }
}

/// The OpenAPI document of service `S`, serialized once for `/openapi.json`.
fn document<S: Service>() -> anyhow::Result<Document> {
    let doc = openapi::document(S::NAME, <S::Api as utoipa::OpenApi>::openapi());
    let json = serde_json::to_vec(&doc).context("serializing the OpenAPI document")?;
    Ok(Document(json.into()))
}

fn joined(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.context("the task panicked or was cancelled")?
}

/// Logs how `task` ended; ending before shutdown was requested is an error.
fn ended(task: &'static str, result: anyhow::Result<()>, stopping: bool) -> anyhow::Result<()> {
    match result {
        Ok(()) if stopping => {
            tracing::info!(task, "stopped after shutdown was requested");
            Ok(())
        }
        Ok(()) => {
            tracing::error!(task, "stopped before shutdown was requested");
            Err(anyhow::anyhow!("the {task} stopped unexpectedly"))
        }
        Err(e) => {
            tracing::error!(task, error = format!("{e:#}"), "failed");
            Err(e.context(format!("the {task} failed")))
        }
    }
}
