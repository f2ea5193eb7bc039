//! Shared pieces of the shop services: the service skeleton (command line, start-up, health,
//! metrics, shutdown), configuration, telemetry, the problem+json error body, paging, database
//! start-up, JWT verification, AMQP messaging, the message contract and the domain values two
//! services must agree on.

pub mod amqp;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod ids;
pub mod jwt;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod problem;
pub mod service;
pub mod shutdown;
pub mod telemetry;

#[cfg(feature = "testing")]
pub mod testing;
