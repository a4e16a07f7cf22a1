//! Integration tests over real HTTP: every route, auth, rate limiting, caching,
//! events, health probes and history, telemetry, stream placements, the audience signal,
//! persistence, the admin dashboard's static files and the binary itself. Every test runs on
//! SQLite, and on PostgreSQL with `STREAMGUARD_TEST_DB=postgres` (`scripts/test.sh` runs
//! both); `cluster` always runs on PostgreSQL (several instances on one database).

mod admin;
mod audience;
mod cache_control;
mod cluster;
mod common;
mod dashboard;
mod events;
mod health;
mod history;
mod limits;
mod persistence;
#[path = "../support/postgres.rs"]
pub mod pg;
mod placement;
mod process;
mod public;
mod security;
mod telemetry;
