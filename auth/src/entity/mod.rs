//! Hand-written sea-orm entities; the migrations define the tables they map.

pub mod user;
