//! # streamguard_flutter
//!
//! The native library of the `streamguard` Flutter plugin: a thin flutter_rust_bridge facade
//! over the `streamguard` engine. [`api`] is what the code generator bridges; the other
//! modules adapt flutter_rust_bridge's types (Dart closures, `StreamSink`) to the engine's
//! traits and convert between the engine's types and the bridged ones. No engine logic here.

#![warn(missing_docs)]

mod adapter;
pub mod api;
mod convert;
pub mod events;
mod frb_generated;
mod runtime;
