//! Building and running the service.

use std::sync::Arc;

use actix_web::{dev::Server, web};
use anyhow::Context;
use common::{
    amqp::{Broker, RpcClient},
    jwt::JwksVerifier,
    messages::CreateOrderV1,
};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::Catalog,
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
        let db = common::db::connect_and_migrate::<Migrator>(&config.database, LOCK_KEY).await?;
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

        let (listener, port) = common::http::bind(config.port)?;
        let catalog = web::Data::new(Catalog::new(db.clone(), config.catalog_cache_ttl));
        let db = web::Data::new(db);
        let broker_data = web::Data::new(broker.clone());
        let orders = web::Data::new(orders);
        let verifier = web::Data::new(verifier);
        let in_flight = web::Data::new(InFlight::default());
        let queue_declared = web::Data::from(queue_declared);
        let server = common::http::serve(listener, move |cfg| {
            cfg.app_data(db.clone())
                .app_data(catalog.clone())
                .app_data(broker_data.clone())
                .app_data(orders.clone())
                .app_data(verifier.clone())
                .app_data(in_flight.clone())
                .app_data(queue_declared.clone())
                .configure(routes::configure);
        })?;
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
