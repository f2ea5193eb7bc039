//! What auth adds to the service skeleton: its signing key, its password hasher and its
//! routes, and the `admin grant` and `keys` commands.

use actix_web::web;
use anyhow::Context;
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
    config::{Config, KeyConfig},
    limits::{self, RateLimits},
    migration::{LOCK_KEY, Migrator},
    password::Hasher,
    routes::{self, Logins},
    token::{self, TokenIssuer},
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
    /// The token signing keys in JWT_PRIVATE_KEY_FILE and JWT_PREVIOUS_KEY_FILE.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
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

/// `auth keys ...`. Auth reads the files at start, so restart it after a change.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new signing key to JWT_PRIVATE_KEY_FILE, unless the file exists.
    Init,
    /// Move the signing key's public half to JWT_PREVIOUS_KEY_FILE and write a new signing key.
    Rotate,
    /// Remove JWT_PREVIOUS_KEY_FILE, once the tokens it signed have expired.
    DropPrevious,
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
        let issuer = TokenIssuer::from_config(&config.keys, config.token_ttl)?;
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
            Command::Keys { command } => keys(command, &config.keys),
        }
    }
}

fn keys(command: KeysCommand, keys: &KeyConfig) -> anyhow::Result<()> {
    let current = keys
        .private_key_file
        .as_deref()
        .context("JWT_PRIVATE_KEY_FILE must name the signing key file")?;
    let previous = || {
        keys.previous_key_file
            .as_deref()
            .context("JWT_PREVIOUS_KEY_FILE must name where the previous key goes")
    };
    match command {
        KeysCommand::Init => {
            let kid = token::init_key_file(current)?;
            tracing::info!(%kid, path = %current.display(), "signing key in place");
        }
        KeysCommand::Rotate => {
            let rotation = token::rotate_key_files(current, previous()?)?;
            tracing::info!(
                current = %rotation.current,
                previous = %rotation.previous,
                "signing key rotated; restart auth to sign with the new key"
            );
        }
        KeysCommand::DropPrevious => {
            let path = previous()?;
            if token::drop_previous_key_file(path)? {
                tracing::info!(path = %path.display(), "previous key removed; restart auth to stop publishing it");
            } else {
                tracing::info!(path = %path.display(), "there was no previous key");
            }
        }
    }
    Ok(())
}
