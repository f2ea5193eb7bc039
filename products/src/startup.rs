//! What products adds to the service skeleton: the catalog, the RPC client that asks orders to
//! store a buy, the token verifier and its routes.

use std::sync::Arc;

use actix_web::web;
use common::{
    amqp::{RpcClient, subscribe},
    config::ServerConfig,
    http::Routes,
    jwt::JwksVerifier,
    messages::{CreateOrderV1, ResolveReservationV1},
    service::{NoCommand, Parts, Service},
};

use crate::{
    catalog::Catalog,
    config::Config,
    consumer,
    in_flight::InFlight,
    migration::{LOCK_KEY, Migrator},
    order_queue::{self, OrderQueueFound},
    reconciler::Reconciler,
    routes::{self, Checkout},
};

/// The products service: the catalog, and buys turned into orders.
pub struct Products;

impl Service for Products {
    const NAME: &'static str = "products";
    const ABOUT: &'static str = "The products service: the catalog, and buys turned into orders.";
    const MIGRATION_LOCK: i64 = LOCK_KEY;
    type Config = Config;
    type Migrator = Migrator;
    type Command = NoCommand;
    type Api = crate::openapi::Api;

    fn config_from_env() -> anyhow::Result<Config> {
        Config::from_env()
    }

    fn server_config(config: &Config) -> &ServerConfig {
        &config.server
    }

    async fn build(config: Config, parts: &mut Parts) -> anyhow::Result<Routes> {
        let broker = parts.connect_broker(&config.amqp)?;
        let orders = RpcClient::<CreateOrderV1>::new(
            broker.clone(),
            config.amqp.order_queue.clone(),
            config.reply_mode,
            config.rpc_timeout,
        );
        orders.register_metrics(parts.metrics())?;
        // Buys cannot be routed until the queue exists, whichever of products and orders
        // starts first; products only looks for it (it may not create it).
        let queue_found = Arc::new(OrderQueueFound::default());
        let found = queue_found.clone();
        parts.ready_when("order_queue", move || found.check());
        tokio::spawn(order_queue::wait_for_queue(
            broker.clone(),
            config.amqp.order_queue.clone(),
            queue_found,
            parts.shutdown().clone(),
        ));
        tracing::info!(queue = %config.amqp.order_queue, reply_mode = config.reply_mode.as_str(), "buys go to the order queue");

        let resolve = RpcClient::<ResolveReservationV1>::new(
            broker.clone(),
            config.amqp.resolve_queue.clone(),
            config.reply_mode,
            config.rpc_timeout,
        );
        let reconciler = Reconciler::new(
            parts.db().clone(),
            resolve,
            config.reconciler,
            parts.metrics(),
        )?;
        let shutdown = parts.shutdown().clone();
        parts.spawn_worker("reservation reconciler", reconciler.run(shutdown));
        let db = parts.db().clone();
        let events = consumer::subscription(
            config.amqp.events_exchange.clone(),
            config.events_queue.clone(),
        );
        let shutdown = parts.shutdown().clone();
        parts.spawn_worker(
            "order events consumer",
            subscribe(
                broker.clone(),
                events,
                move |event| {
                    let db = db.clone();
                    async move { consumer::handle(&db, event).await }
                },
                shutdown,
            ),
        );
        let catalog = Catalog::new(parts.db().clone(), config.catalog_cache);
        catalog.register_metrics(parts.metrics())?;
        let catalog = web::Data::new(catalog);
        let checkout = web::Data::new(Checkout {
            orders,
            in_flight: InFlight::default(),
            db: parts.db().clone(),
        });
        let verifier = web::Data::new(JwksVerifier::new(config.jwks.clone()));
        Ok(Routes::new(move |cfg| {
            cfg.app_data(catalog.clone())
                .app_data(checkout.clone())
                .app_data(verifier.clone())
                .configure(routes::configure);
        }))
    }

    async fn run_command(command: NoCommand, _config: Config) -> anyhow::Result<()> {
        match command {}
    }
}
