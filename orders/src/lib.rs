//! The orders service: stores the orders products sends over RabbitMQ (`order.create.v1`),
//! exactly once per request, and shows each user their own orders over HTTP.

pub mod config;
pub mod consumer;
pub mod domain;
pub mod entity;
pub mod error;
pub mod failpoint;
pub mod migration;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod store;

pub use startup::Orders;
