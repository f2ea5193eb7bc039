//! Building the service from its config and running it until shutdown.

use actix_web::{dev::Server, web};
use anyhow::Context;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{config::Config, migration::Migrator, password::Hasher, routes, token::TokenIssuer};

/// The running service: a bound HTTP server and what it needs.
pub struct Application {
    port: u16,
    server: Server,
    db: DatabaseConnection,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects the database, migrates it when configured to, loads the signing key and
    /// binds `0.0.0.0:{port}` (port 0 picks a free one). Serving starts with
    /// [`Application::run_until_stopped`].
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Application> {
        let db = common::db::connect_and_migrate::<Migrator>(
            &config.database,
            crate::migration::LOCK_KEY,
        )
        .await?;
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
        let hasher = Hasher::new(config.hash_concurrency).await?;

        let (listener, port) = common::http::bind(config.port)?;
        let db_data = web::Data::new(db.clone());
        let hasher = web::Data::new(hasher);
        let issuer = web::Data::new(issuer);
        let server = common::http::serve(listener, move |cfg| {
            cfg.app_data(db_data.clone())
                .app_data(hasher.clone())
                .app_data(issuer.clone())
                .configure(routes::configure);
        })?;
        tracing::info!(port, "auth listening");
        Ok(Application {
            port,
            server,
            db,
            shutdown,
        })
    }

    /// The port the server is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the shutdown token is cancelled, then lets in-flight requests finish
    /// (up to `SHUTDOWN_TIMEOUT_SECS`) and closes the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let stopper = common::http::stop_when_cancelled(&self.server, self.shutdown.clone());
        let served = self.server.await.context("the HTTP server failed");
        stopper.abort();
        if let Err(e) = self.db.close().await {
            tracing::warn!(error = %e, "closing the database pool failed");
        }
        tracing::info!("auth stopped");
        served
    }
}
