//! What orders adds to the service skeleton: the order consumer, the token verifier and its
//! routes.

use actix_web::web;
use common::{
    amqp::ConsumerMetrics,
    config::ServerConfig,
    http::Routes,
    jwt::JwksVerifier,
    service::{NoCommand, Parts, Service},
};

use crate::{
    config::Config,
    consumer::{self, OrderHandler},
    migration::{LOCK_KEY, Migrator},
    routes,
};

/// The orders service: stores the orders products sends over RabbitMQ and shows users their
/// orders.
pub struct Orders;

impl Service for Orders {
    const NAME: &'static str = "orders";
    const ABOUT: &'static str = "The orders service: stores the orders products sends over RabbitMQ and shows users \
         their orders.";
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
        let handler = OrderHandler::new(parts.db().clone(), parts.metrics())?;
        let metrics = ConsumerMetrics::register(parts.metrics())?;
        parts.spawn_worker(
            "order consumer",
            consumer::run(
                broker,
                config.amqp.order_queue,
                config.prefetch,
                handler,
                Some(metrics),
                parts.shutdown().clone(),
            ),
        );
        let db = web::Data::new(parts.db().clone());
        let verifier = web::Data::new(JwksVerifier::new(config.jwks.clone()));
        Ok(Routes::new(move |cfg| {
            cfg.app_data(db.clone())
                .app_data(verifier.clone())
                .configure(routes::configure);
        }))
    }

    async fn run_command(command: NoCommand, _config: Config) -> anyhow::Result<()> {
        match command {}
    }
}
