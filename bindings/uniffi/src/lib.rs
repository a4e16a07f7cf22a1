//! # Streamguard bindings (UniFFI)
//!
//! Python, Kotlin and Swift bindings of the [`streamguard`] failover engine. This crate is a
//! thin layer: mirror records and enums with `From` conversions (the config, plain enums and
//! records are defined once for both bindings in `streamguard-mirror`), a host-implemented
//! [`ProviderAdapter`] and [`EventListener`], and a [`StreamingProviderManager`] object that
//! forwards every call to the engine. It holds no engine logic.
//!
//! Every async call runs on one lazily built multi-thread tokio runtime ([`runtime`]), so the
//! host's executor (asyncio, Kotlin coroutines, Swift tasks) only waits for results.

#![warn(missing_docs)]

mod adapter;
mod config;
mod errors;
mod listener;
mod manager;
mod runtime;
mod types;

pub use adapter::ProviderAdapter;
pub use config::{default_manager_config, ManagerConfig};
pub use errors::{Attempt, ProviderError, StreamguardError};
pub use listener::{EventListener, EventSubscription, ListenerError, ListenerHandle};
pub use manager::{CancelToken, StreamingProviderManager};
pub use runtime::quiesce;
pub use types::{
    EventKind, FailoverReason, HealthStatus, MigrationStrategy, Operation, ProviderErrorKind,
    ProviderInfo, ProviderStats, QualityBand, QualityLevel, QualitySample, Role, SessionInfo,
    SessionState, StreamEvent,
};

// The namespace names the generated modules: `streamguard.py`, `streamguard.kt`,
// `Streamguard.swift` (see uniffi.toml), whatever the library file is called.
uniffi::setup_scaffolding!("streamguard");
