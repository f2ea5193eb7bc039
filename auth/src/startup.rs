//! What auth adds to the service skeleton: its signing key, its password hasher and its
//! routes, and the `admin grant` command.

use actix_web::web;
use clap::Subcommand;
use common::{
    config::ServerConfig,
    http::Routes,
    ids::UserId,
    service::{Parts, Service},
};
use tokio::time::MissedTickBehavior;

use crate::{
    admin,
    client_ip::TrustedProxies,
    config::Config,
    limits::{self, RateLimits},
    migration::{LOCK_KEY, Migrator},
    password::Hasher,
    routes::{self, Logins},
    token::TokenIssuer,
};

/// The auth service: users, passwords and access tokens.
pub struct Auth;

/// Operator commands of `auth`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Operator commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// `auth admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Give the registered user with this id the admin role. The id, not the email: no email
    /// is verified, so an email proves nothing about who holds the account. Take the id from
    /// the account's registration (`id`) or a login's token (`sub`).
    Grant {
        /// The user's id, as `POST /auth/register` answered it.
        #[arg(long)]
        user_id: UserId,
    },
}

impl Service for Auth {
    const NAME: &'static str = "auth";
    const ABOUT: &'static str = "The auth service: users, passwords and access tokens.";
    const MIGRATION_LOCK: i64 = LOCK_KEY;
    type Config = Config;
    type Migrator = Migrator;
    type Command = Command;
    type Api = crate::openapi::Api;

    fn config_from_env() -> anyhow::Result<Config> {
        Config::from_env()
    }

    fn server_config(config: &Config) -> &ServerConfig {
        &config.server
    }

    async fn build(config: Config, parts: &mut Parts) -> anyhow::Result<Routes> {
        let issuer = match &config.jwt_private_key_file {
            Some(path) => TokenIssuer::from_pem_file(path, config.token_ttl)?,
            None => {
                let issuer = TokenIssuer::ephemeral(config.token_ttl)?;
                tracing::warn!(
                    kid = issuer.kid(),
                    "JWT_PRIVATE_KEY_FILE is not set: signing with a key generated now; \
                     tokens will not survive a restart and replicas will not accept each \
                     other's tokens"
                );
                issuer
            }
        };
        tracing::info!(kid = issuer.kid(), "token signing key loaded");
        let hasher = Hasher::new(config.hash_concurrency, config.hash_queue).await?;
        let queued = hasher.clone();
        common::metrics::gauge_fn(
            parts.metrics(),
            "shop_password_hash_queue_depth",
            "Password hashes and verifications waiting for a hashing thread.",
            move || queued.queued() as f64,
        )?;
        let logins = web::Data::new(Logins::register(parts.metrics())?);
        let limits = RateLimits::new(&config.rate_limits).with_metrics(parts.metrics())?;
        if !config.rate_limits.enabled {
            tracing::warn!("RATE_LIMIT_ENABLED is false: register and login have no rate limits");
        }
        let swept = limits.clone();
        let stop = parts.shutdown().clone();
        parts.spawn_worker("rate limit sweeper", async move {
            let mut sweep = tokio::time::interval(limits::SWEEP_EVERY);
            sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    _ = sweep.tick() => swept.forget_stale(),
                }
            }
        });
        let limits = web::Data::from(limits);
        let trusted = web::Data::new(TrustedProxies(config.rate_limits.trusted_proxies.clone()));
        let db = web::Data::new(parts.db().clone());
        let hasher = web::Data::new(hasher);
        let issuer = web::Data::new(issuer);
        Ok(Routes::new(move |cfg| {
            cfg.app_data(db.clone())
                .app_data(hasher.clone())
                .app_data(issuer.clone())
                .app_data(logins.clone())
                .app_data(limits.clone())
                .app_data(trusted.clone())
                .configure(routes::configure);
        }))
    }

    async fn run_command(command: Command, config: Config) -> anyhow::Result<()> {
        match command {
            Command::Admin {
                command: AdminCommand::Grant { user_id },
            } => admin::grant_with_config(&config.server.database, user_id).await,
        }
    }
}
