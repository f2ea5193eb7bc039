//! PostgreSQL pool start-up and migrations under an advisory lock.

use anyhow::Context;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr,
    Statement, TransactionTrait, sqlx::Error as SqlxError,
};
use sea_orm_migration::MigratorTrait;

use crate::{
    config::DatabaseConfig,
    metrics::{self, Registry},
};

/// Opens the pool with the explicit size, acquire timeout and statement timeout of `config`.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(config.url.clone());
    opts.max_connections(config.max_connections)
        .min_connections(1)
        .acquire_timeout(config.acquire_timeout)
        .connect_timeout(config.acquire_timeout)
        .statement_timeout(config.statement_timeout)
        // Statements are useful when debugging and noise otherwise.
        .sqlx_logging(true)
        .sqlx_logging_level(log::LevelFilter::Debug);
    Database::connect(opts)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(&config.url)))
}

/// Applies pending migrations of `M` inside one transaction holding a transaction-scoped
/// advisory lock, so replicas starting together apply them exactly once.
pub async fn migrate<M: MigratorTrait>(
    db: &DatabaseConnection,
    lock_key: i64,
) -> anyhow::Result<()> {
    let txn = db
        .begin()
        .await
        .context("beginning the migration transaction")?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [lock_key.into()],
    ))
    .await
    .context("taking the migration advisory lock")?;
    M::up(&txn, None).await.context("applying migrations")?;
    txn.commit().await.context("committing migrations")?;
    Ok(())
}

/// Opens the pool and, when `config.migrate_on_start` is set, applies pending migrations of
/// `M` under the advisory lock `lock_key`: what every service does as it starts.
pub async fn connect_and_migrate<M: MigratorTrait>(
    config: &DatabaseConfig,
    lock_key: i64,
) -> anyhow::Result<DatabaseConnection> {
    let db = connect(config).await?;
    if config.migrate_on_start {
        migrate::<M>(&db, lock_key).await?;
    }
    Ok(db)
}

/// Applies pending migrations of `M` and closes the pool: the `migrate` subcommand of every
/// service.
pub async fn migrate_and_close<M: MigratorTrait>(
    config: &DatabaseConfig,
    lock_key: i64,
) -> anyhow::Result<()> {
    let db = connect(config).await?;
    migrate::<M>(&db, lock_key).await?;
    db.close().await.context("closing the database pool")?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Registers `shop_db_pool_connections{state="in_use"|"idle"}` and
/// `shop_db_pool_max_connections`, read from the pool at every scrape.
pub fn register_pool_metrics(db: &DatabaseConnection, registry: &Registry) -> anyhow::Result<()> {
    let pool = db.get_postgres_connection_pool().clone();
    let max = pool.options().get_max_connections();
    metrics::gauge_vec_fn(
        registry,
        "shop_db_pool_connections",
        "Connections the pool holds, by whether a request is using them.",
        "state",
        move || {
            let open = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(open);
            vec![("in_use", open - idle), ("idle", idle)]
        },
    )?;
    metrics::gauge_fn(
        registry,
        "shop_db_pool_max_connections",
        "The most connections the pool opens (DB_MAX_CONNECTIONS).",
        move || f64::from(max),
    )
}

/// Whether `err` is the database being unreachable, overloaded or restarting, rather than
/// something wrong with the statement: worth retrying later, not worth giving up on.
pub fn is_transient(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match &**e {
                SqlxError::Io(_)
                | SqlxError::Tls(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed => true,
                SqlxError::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
                _ => false,
            }
        }
        _ => false,
    }
}

/// SQLSTATEs that say "try again": connection exceptions (08), serialization failures and
/// deadlocks (40001, 40P01), insufficient resources (53), a statement cancelled by timeout
/// (57014) and the server shutting down or starting (57P01-57P03).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "57014" | "57P01" | "57P02" | "57P03"
        )
}

/// Whether `err` was caused by a [transient](is_transient) database failure: the database is
/// unreachable or overloaded right now, so the request is worth sending again later.
pub fn is_unavailable(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<DbErr>().is_some_and(is_transient))
}

/// The URL with any password replaced, for logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::ConnAcquireErr;

    use super::*;

    fn exec(e: SqlxError) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
    }

    #[test]
    fn an_unreachable_or_exhausted_database_is_worth_retrying() {
        assert!(is_transient(&DbErr::ConnectionAcquire(
            ConnAcquireErr::Timeout
        )));
        assert!(is_transient(&exec(SqlxError::Io(
            std::io::ErrorKind::ConnectionRefused.into()
        ))));
        assert!(is_transient(&exec(SqlxError::PoolClosed)));
        assert!(transient_sqlstate("08006"));
        assert!(transient_sqlstate("57P01"));
        assert!(transient_sqlstate("40001"));
    }

    #[test]
    fn a_statement_the_database_refuses_is_not_retried() {
        assert!(!is_transient(&DbErr::RecordNotFound("x".to_owned())));
        assert!(!is_transient(&exec(SqlxError::RowNotFound)));
        assert!(!transient_sqlstate("23505"));
        assert!(!transient_sqlstate("42P01"));
    }

    #[test]
    fn an_error_caused_by_an_unreachable_database_says_so_through_its_context() {
        let down: anyhow::Error =
            anyhow::Error::new(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))
                .context("reserving stock");
        assert!(is_unavailable(&down));
        let refused = anyhow::Error::new(exec(SqlxError::RowNotFound)).context("reading");
        assert!(!is_unavailable(&refused));
        assert!(!is_unavailable(&anyhow::anyhow!("no database here")));
    }

    #[test]
    fn a_password_in_a_database_url_never_reaches_the_log() {
        let shown = redact("postgres://shop:hunter22@db:5432/orders");
        assert!(!shown.contains("hunter22"));
        assert!(shown.contains("db:5432/orders"));
    }
}
