//! Operator commands run from the command line rather than over HTTP.

use anyhow::Context;
use common::{config::DatabaseConfig, jwt::ROLE_ADMIN};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::{domain::Email, store};

/// Gives the user with `email` the `admin` role. Granting it twice changes nothing; an email
/// no user has is an error. Tokens issued before keep their old roles until they expire.
pub async fn grant(db: &DatabaseConnection, email: &str) -> anyhow::Result<()> {
    let email = Email::parse(email).with_context(|| format!("{email:?} is not an email"))?;
    let txn = db
        .begin()
        .await
        .context("beginning the grant transaction")?;
    let user = store::find_by_email_for_update(&txn, &email)
        .await
        .context("looking up the user")?
        .with_context(|| format!("no user is registered with the email {email}"))?;
    if user.roles.contains(ROLE_ADMIN) {
        tracing::info!(user_id = %user.id, "the user already has the admin role");
        return Ok(());
    }
    let mut roles = user.roles;
    roles.0.push(ROLE_ADMIN.to_owned());
    store::set_roles(&txn, user.id, roles)
        .await
        .context("saving the roles")?;
    txn.commit().await.context("committing the grant")?;
    tracing::info!(user_id = %user.id, "granted the admin role");
    Ok(())
}

/// [`grant`] over a connection opened from `config` for this one command.
pub async fn grant_with_config(config: &DatabaseConfig, email: &str) -> anyhow::Result<()> {
    let db = common::db::connect(config).await?;
    let granted = grant(&db, email).await;
    if let Err(e) = db.close().await {
        tracing::warn!(error = %e, "closing the database pool failed");
    }
    granted
}
