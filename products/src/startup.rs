//! Building and running the service.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::Server, web};
use anyhow::Context;
use common::{
    amqp::{Broker, RpcClient},
    config::DatabaseConfig,
    jwt::JwksVerifier,
    messages::CreateOrderV1,
    problem,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    in_flight::InFlight,
    migration::{LOCK_KEY, Migrator},
    order_queue::{self, OrderQueueDeclared},
    routes,
};

/// The running service: its HTTP server, bound and ready to be awaited.
pub struct Application {
    port: u16,
    server: Server,
    broker: Broker,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects the database (migrating it when configured to), starts the broker connection,
    /// and binds `0.0.0.0:{port}`; port 0 picks a free one.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let db = common::db::connect(&config.database).await?;
        if config.database.migrate_on_start {
            common::db::migrate::<Migrator>(&db, LOCK_KEY).await?;
        }
        let broker = Broker::start(config.amqp.url.clone(), shutdown.clone());
        let orders = RpcClient::<CreateOrderV1>::new(
            broker.clone(),
            config.amqp.order_queue.clone(),
            config.reply_mode,
            config.rpc_timeout,
        );
        let verifier = JwksVerifier::new(config.jwks_url.clone());
        let queue_declared = Arc::new(OrderQueueDeclared::default());
        tokio::spawn(order_queue::declare_when_connected(
            broker.clone(),
            config.amqp.order_queue.clone(),
            queue_declared.clone(),
            shutdown.clone(),
        ));

        let listener = TcpListener::bind(("0.0.0.0", config.port))
            .with_context(|| format!("binding port {}", config.port))?;
        let port = listener
            .local_addr()
            .context("reading the bound port")?
            .port();
        let grace = common::config::shutdown_timeout()?;

        let db = web::Data::new(db);
        let broker_data = web::Data::new(broker.clone());
        let orders = web::Data::new(orders);
        let verifier = web::Data::new(verifier);
        let in_flight = web::Data::new(InFlight::default());
        let queue_declared = web::Data::from(queue_declared);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(common::telemetry::request_span())
                .app_data(problem::json_config())
                .app_data(problem::path_config())
                .app_data(problem::query_config())
                .app_data(db.clone())
                .app_data(broker_data.clone())
                .app_data(orders.clone())
                .app_data(verifier.clone())
                .app_data(in_flight.clone())
                .app_data(queue_declared.clone())
                .configure(routes::configure)
                .default_service(web::to(problem::not_found))
        })
        .listen(listener)
        .context("listening for HTTP")?
        // The shutdown token decides when to stop, not actix's own signal handling.
        .disable_signals()
        .shutdown_timeout(grace.as_secs())
        .run();
        tracing::info!(port, queue = %config.amqp.order_queue, "products listening");
        Ok(Self {
            port,
            server,
            broker,
            shutdown,
        })
    }

    /// The port the server is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the shutdown token is cancelled, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            mut server,
            broker,
            shutdown,
            ..
        } = self;
        let handle = server.handle();
        tokio::select! {
            result = &mut server => {
                // Without the server there is nothing to serve; stop the broker too.
                shutdown.cancel();
                broker.close().await;
                result.context("the HTTP server stopped on its own")?;
                tracing::warn!("the HTTP server stopped on its own");
                return Ok(());
            }
            () = shutdown.cancelled() => {}
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
        // The command is sent now; the server future, awaited next, is what carries it out.
        let stopped = handle.stop(true);
        server.await.context("stopping the HTTP server")?;
        stopped.await;
        tracing::info!("the HTTP server stopped after shutdown was requested");
        // Last, so no request still in flight loses its connection.
        broker.close().await;
        Ok(())
    }
}

/// Applies pending migrations to the database of `config` (the `migrate` subcommand).
pub async fn migrate(config: &DatabaseConfig) -> anyhow::Result<()> {
    let db = common::db::connect(config).await?;
    common::db::migrate::<Migrator>(&db, LOCK_KEY).await?;
    db.close().await.context("closing the database pool")?;
    Ok(())
}
