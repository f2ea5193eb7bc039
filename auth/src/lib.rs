//! The auth service: registers users, checks their passwords and issues the EdDSA tokens the
//! other services verify against its JWKS.

pub mod admin;
pub mod client_ip;
pub mod config;
pub mod domain;
pub mod entity;
pub mod error;
pub mod limits;
pub mod migration;
pub mod openapi;
pub mod password;
pub mod routes;
pub mod startup;
pub mod store;
pub mod token;

pub use startup::Auth;
