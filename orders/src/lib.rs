//! The orders service: stores the orders products sends over RabbitMQ (`order.create.v1`),
//! exactly once per request, answers how the buy behind a stock reservation ended
//! (`order.resolve-reservation.v1`), shows each user their own orders over HTTP and lets them
//! cancel one, and publishes `order.created.v1` and `order.cancelled.v1` through an outbox.

pub mod config;
pub mod consumer;
pub mod domain;
pub mod entity;
pub mod error;
pub mod failpoint;
pub mod migration;
pub mod openapi;
pub mod outbox;
pub mod relay;
pub mod routes;
pub mod startup;
pub mod store;

pub use startup::Orders;
