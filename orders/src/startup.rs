//! Building and running the service: database, broker, HTTP server and order consumer.

use actix_web::{dev::Server, web};
use anyhow::Context;
use common::{amqp::Broker, jwt::JwksVerifier};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    consumer,
    migration::{LOCK_KEY, Migrator},
    routes,
};

/// The running service: an HTTP server and an order consumer sharing one shutdown token.
pub struct Application {
    port: u16,
    server: Server,
    consumer: JoinHandle<anyhow::Result<()>>,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects to the database (migrating it when configured to), binds the HTTP port,
    /// starts the broker connection and the consumer. Nothing stops until `shutdown`.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let db = common::db::connect_and_migrate::<Migrator>(&config.database, LOCK_KEY).await?;
        let (listener, port) = common::http::bind(config.port)?;

        let broker = Broker::start(config.amqp.url.clone(), shutdown.clone());
        let verifier = web::Data::new(JwksVerifier::new(config.jwks_url.clone()));
        let db_data = web::Data::new(db.clone());
        let broker_data = web::Data::new(broker.clone());
        let server = common::http::serve(listener, move |cfg| {
            cfg.app_data(db_data.clone())
                .app_data(broker_data.clone())
                .app_data(verifier.clone())
                .configure(routes::configure);
        })?;

        let consumer = tokio::spawn(consumer::run(
            broker,
            config.amqp.order_queue,
            config.prefetch,
            db,
            shutdown.clone(),
        ));
        tracing::info!(port, "orders listening");
        Ok(Self {
            port,
            server,
            consumer,
            shutdown,
        })
    }

    /// The bound HTTP port (useful when the configured port was 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until the shutdown token is cancelled and in-flight requests and deliveries have
    /// finished. If either task ends first, the other is stopped too and the error returned.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        common::http::stop_when_cancelled(&self.server, self.shutdown.clone());

        let mut http = tokio::spawn(self.server);
        let mut consumer = self.consumer;
        let (first, first_result) = tokio::select! {
            r = &mut http => (Task::Http, joined(r.map(|r| r.map_err(anyhow::Error::from)))),
            r = &mut consumer => (Task::Consumer, joined(r)),
        };
        let first_result = first.ended(first_result, &self.shutdown);
        // Whatever ended first, the other task must not outlive it.
        self.shutdown.cancel();
        let (second, second_result) = match first {
            Task::Http => (Task::Consumer, joined(consumer.await)),
            Task::Consumer => (
                Task::Http,
                joined(http.await.map(|r| r.map_err(anyhow::Error::from))),
            ),
        };
        let second_result = second.ended(second_result, &self.shutdown);
        first_result.and(second_result)
    }
}

#[derive(Debug, Clone, Copy)]
enum Task {
    Http,
    Consumer,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Http => "http server",
            Task::Consumer => "order consumer",
        }
    }

    /// Logs how the task ended; ending without a shutdown request is an error.
    fn ended(self, result: anyhow::Result<()>, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let task = self.name();
        match result {
            Ok(()) if shutdown.is_cancelled() => {
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
}

fn joined(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.context("the task panicked or was cancelled")?
}
