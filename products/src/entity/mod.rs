//! Hand-written sea-orm entities; the migrations define the tables they map.

pub mod product;
pub mod reservation;
pub mod reservation_line;
