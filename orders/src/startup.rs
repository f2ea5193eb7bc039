//! What orders adds to the service skeleton: the order and resolve consumers, the outbox
//! relay, the token verifier and its routes.

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
    consumer::{self, Consuming, OrderHandler},
    migration::{LOCK_KEY, Migrator},
    outbox::Wake,
    relay::Relay,
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
        let wake = Wake::default();
        let handler = OrderHandler::new(parts.db().clone(), parts.metrics(), wake.clone())?;
        let consuming = Consuming {
            broker: broker.clone(),
            prefetch: config.prefetch,
            metrics: Some(ConsumerMetrics::register(parts.metrics())?),
            shutdown: parts.shutdown().clone(),
        };
        parts.spawn_worker(
            "order consumer",
            consumer::run(consuming.clone(), config.amqp.order_queue, handler.clone()),
        );
        parts.spawn_worker(
            "resolve consumer",
            consumer::run_resolver(consuming, config.amqp.resolve_queue, handler),
        );
        // Not a readiness check: events wait in the outbox while they cannot be published,
        // and serving orders does not depend on it; `broker` already says when it is down.
        let relay = Relay::new(
            parts.db().clone(),
            broker,
            config.amqp.events_exchange,
            config.outbox,
            wake.clone(),
            parts.metrics(),
        )?;
        parts.spawn_worker("outbox relay", relay.run(parts.shutdown().clone()));
        let db = web::Data::new(parts.db().clone());
        let wake = web::Data::new(wake);
        let verifier = web::Data::new(JwksVerifier::new(config.jwks.clone()));
        Ok(Routes::new(move |cfg| {
            cfg.app_data(db.clone())
                .app_data(wake.clone())
                .app_data(verifier.clone())
                .configure(routes::configure);
        }))
    }

    async fn run_command(command: NoCommand, _config: Config) -> anyhow::Result<()> {
        match command {}
    }
}
