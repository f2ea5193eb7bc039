//! Typed identifiers shared by the services and the message contract. Each is a UUID on the
//! wire and in the database, and a distinct type in code so one cannot stand for another.

use std::{fmt, str::FromStr};

use sea_orm::DeriveValueType;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            DeriveValueType, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7), so ids sort roughly by creation.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The UUID inside.
            pub fn into_uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        // Sea-orm asks every primary key type for a conversion from an auto-increment id; a
        // UUID key is never auto-incremented, so the conversion only ever reports that.
        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($name)))
            }
        }
    };
}

typed_id!(
    /// The id of a user, the `sub` of their tokens.
    UserId
);
typed_id!(
    /// The id of a product in the catalog.
    ProductId
);
typed_id!(
    /// The id of an order.
    OrderId
);
typed_id!(
    /// The id of a stock reservation products makes before it asks orders to store a buy.
    ReservationId
);
