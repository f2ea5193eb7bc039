//! Reading and writing users. Every function takes any connection, pool or transaction.

use chrono::Utc;
use common::ids::UserId;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, SqlErr,
    sea_query::{Expr, ExprTrait, Func},
};

use crate::{
    domain::{Email, UserName},
    entity::user::{self, Roles},
    migration::EMAIL_INDEX,
};

/// Why a user could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    /// The email belongs to an existing user.
    #[error("the email is already registered")]
    EmailTaken,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Inserts a user with no roles. The unique index, not a prior lookup, decides whether the
/// email is free, so two registrations racing for one address cannot both succeed.
pub async fn insert_user(
    db: &impl ConnectionTrait,
    email: &Email,
    name: Option<&UserName>,
    password_hash: String,
) -> Result<user::Model, InsertUserError> {
    let row = user::ActiveModel {
        id: Set(UserId::new()),
        email: Set(email.as_str().to_owned()),
        name: Set(name.map(|n| n.as_str().to_owned())),
        password_hash: Set(password_hash),
        roles: Set(Roles::default()),
        created_at: Set(Utc::now()),
    };
    row.insert(db).await.map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(msg)) if msg.contains(EMAIL_INDEX) => {
            InsertUserError::EmailTaken
        }
        _ => InsertUserError::Db(e),
    })
}

/// The user with `email`, compared without regard to case.
pub async fn find_by_email(
    db: &impl ConnectionTrait,
    email: &Email,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(email_matches(email))
        .one(db)
        .await
}

/// The user with `id`, locking the row until the transaction `db` ends.
pub async fn find_by_id_for_update(
    db: &impl ConnectionTrait,
    id: UserId,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_id(id).lock_exclusive().one(db).await
}

/// Replaces the roles of user `id`.
pub async fn set_roles(db: &impl ConnectionTrait, id: UserId, roles: Roles) -> Result<(), DbErr> {
    user::Entity::update_many()
        .col_expr(user::Column::Roles, Expr::value(roles))
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

// Written as lower(email) = lower($1) so PostgreSQL can use the unique index on lower(email),
// and so both sides are lower-cased by the same rules.
fn email_matches(email: &Email) -> Expr {
    Expr::expr(Func::lower(Expr::col(user::Column::Email)))
        .eq(Func::lower(Expr::val(email.as_str())))
}
