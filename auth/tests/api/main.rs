//! End-to-end tests of the auth service over HTTP, against real PostgreSQL.

mod admin;
mod health;
mod limits;
mod login;
mod register;
mod responses;
mod seed;
mod support;
mod tokens;
