//! The Streamguard stream checker: probes every stream of an M3U playlist with ffprobe under a
//! global concurrency limit and per-profile limits held in a capacity ledger (in memory, or
//! shared through Redis by several processes), fails over between an account's profiles
//! (free profiles first, then waits for full ones), and writes a JSON and a CSV report.
//!
//! ```text
//! streamguard check --playlist list.m3u --accounts accounts.json --report out \
//!     [--redis redis://127.0.0.1:6379/] [--concurrency 100]
//! ```
//!
//! The accounts file format is described in [`accounts`], what is read from a playlist in
//! [`m3u`], and how entries with the same stream share one probe in [`plan`].

#![warn(missing_docs)]

pub mod accounts;
pub mod backend;
pub mod cli;
pub mod m3u;
pub mod plan;
pub mod probe;
pub mod queue;
pub mod report;
pub mod run;
