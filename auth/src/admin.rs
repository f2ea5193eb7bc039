//! Operator commands run from the command line rather than over HTTP.

use anyhow::Context;
use common::{config::DatabaseConfig, ids::UserId, jwt::ROLE_ADMIN};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::store;

/// Gives the user with id `user_id` the `admin` role. Granting it twice changes nothing; an id
/// no user has is an error. Tokens issued before keep their old roles until they expire.
///
/// The grant names the account by its id, not by its email: no email is ever verified, so
/// whoever registered an address first holds it, and an operator who granted by email could
/// hand the role to a stranger who registered the address before the real owner. The id comes
/// from the account itself (the `id` of the registration, the `sub` of a login's token), so
/// whoever hands it over has proved they hold the account.
pub async fn grant(db: &DatabaseConnection, user_id: UserId) -> anyhow::Result<()> {
    let txn = db
        .begin()
        .await
        .context("beginning the grant transaction")?;
    let user = store::find_by_id_for_update(&txn, user_id)
        .await
        .context("looking up the user")?
        .with_context(|| format!("no user has the id {user_id}"))?;
    if user.roles.contains(ROLE_ADMIN) {
        tracing::info!(user_id = %user.id, email = %user.email, created_at = %user.created_at,
            "the user already has the admin role");
        return Ok(());
    }
    let mut roles = user.roles;
    roles.0.push(ROLE_ADMIN.to_owned());
    store::set_roles(&txn, user.id, roles)
        .await
        .context("saving the roles")?;
    txn.commit().await.context("committing the grant")?;
    tracing::info!(user_id = %user.id, email = %user.email, created_at = %user.created_at,
        "granted the admin role");
    Ok(())
}

/// [`grant`] over a connection opened from `config` for this one command.
pub async fn grant_with_config(config: &DatabaseConfig, user_id: UserId) -> anyhow::Result<()> {
    let db = common::db::connect(config).await?;
    let granted = grant(&db, user_id).await;
    if let Err(e) = db.close().await {
        tracing::warn!(error = %e, "closing the database pool failed");
    }
    granted
}
