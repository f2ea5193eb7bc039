//! Hand-written sea-orm entities for the tables the migrations create.

pub mod order;
pub mod order_line;
pub mod outbox;
pub mod reservation_outcome;
