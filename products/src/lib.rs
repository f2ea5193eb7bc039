//! The catalog service: lists and manages products, and turns a buy into an order by pricing
//! it from its own database and asking the orders service over RabbitMQ RPC.

pub mod catalog;
pub mod config;
pub mod consumer;
pub mod domain;
pub mod entity;
pub mod error;
pub mod in_flight;
pub mod migration;
pub mod openapi;
pub mod order_queue;
pub mod reconciler;
pub mod routes;
pub mod startup;
pub mod stock;
pub mod store;

pub use startup::Products;
