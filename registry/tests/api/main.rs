//! Integration tests over real HTTP: every route, auth, rate limiting, caching,
//! events, health probes, telemetry, persistence and the binary itself.

mod admin;
mod common;
mod events;
mod health;
mod persistence;
mod process;
mod public;
mod security;
mod telemetry;
