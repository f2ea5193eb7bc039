//! `reservation_outcomes`: how the buy behind each reservation orders has heard of ended, an
//! order or (`order_id` NULL) never one.

use common::ids::{OrderId, ReservationId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reservation_outcomes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub reservation_id: ReservationId,
    /// The order stored with the reservation; `None` once a resolve has refused it for good.
    pub order_id: Option<OrderId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
