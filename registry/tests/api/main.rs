//! Integration tests over real HTTP: every route, auth, rate limiting, caching,
//! events, health probes and history, telemetry, stream placements, the audience signal,
//! persistence, the admin dashboard's static files and the binary itself.

mod admin;
mod audience;
mod common;
mod dashboard;
mod events;
mod health;
mod history;
mod limits;
mod persistence;
mod placement;
mod process;
mod public;
mod security;
mod telemetry;
