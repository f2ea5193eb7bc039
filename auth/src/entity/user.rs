//! The `users` table.

use common::ids::UserId;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A registered user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// The user's id, the `sub` of their tokens.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: UserId,
    /// The address, normalised to lower case before it is stored.
    pub email: String,
    /// An optional display name.
    pub name: Option<String>,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// Roles such as `admin`.
    #[sea_orm(column_type = "JsonBinary")]
    pub roles: Roles,
    /// When the user registered.
    pub created_at: DateTimeUtc,
}

/// The roles of a user, stored as a JSON array of strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct Roles(pub Vec<String>);

impl Roles {
    /// Whether `role` is among them.
    pub fn contains(&self, role: &str) -> bool {
        self.0.iter().any(|r| r == role)
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
