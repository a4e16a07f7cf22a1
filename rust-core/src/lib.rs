//! # Streamguard
//!
//! A failover engine for live streaming. Host apps wrap each vendor SDK (Agora, ZegoCloud,
//! LiveKit, WebRTC, RTMP) in a [`ProviderAdapter`]; the [`StreamingProviderManager`] decides
//! which provider carries each stream: bounded retries with jittered backoff, priority
//! failover, health monitoring with fast confirmation, live migration, cool-downs, and events
//! and statistics for every decision. Pure Rust on tokio; bindings live in other crates.
//!
//! ```no_run
//! use std::sync::Arc;
//! use streamguard::{ManagerConfig, StreamingProviderManager};
//! # async fn demo(agora: Arc<dyn streamguard::ProviderAdapter>) -> Result<(), streamguard::StreamguardError> {
//! let manager = StreamingProviderManager::new(ManagerConfig::new("https://api.example.com/api"))?;
//! manager.register_adapter("agora", agora)?;
//! let session = manager.start_stream("stream-42").await?;
//! println!("live on {:?}", session.provider);
//! manager.end_stream("stream-42").await?;
//! manager.shutdown().await
//! # }
//! ```

#![warn(missing_docs)]

pub mod attempt;
pub mod backoff;
pub mod capacity;
mod config;
mod error;
mod events;
pub mod health;
mod lane;
mod manager;
pub mod ordering;
pub mod placement;
pub mod planning;
mod provider;
pub mod quality;
pub mod registry;
#[cfg(feature = "rtmp")]
pub mod rtmp;
pub mod schedule;

pub use backoff::JitterSource;
pub use config::ManagerConfig;
pub use error::{
    Attempt, BackendError, ErrorClass, ProviderError, ProviderErrorKind, StreamguardError,
};
pub use events::{
    EventKind, FailoverReason, MigrationStrategy, Operation, ProviderStats, Role, SessionInfo,
    SessionState, StreamEvent,
};
pub use health::HealthStatus;
pub use manager::{ManagerBuilder, StreamingProviderManager};
pub use placement::{Placement, PlacementClaim};
pub use provider::{ErrorSink, ProviderAdapter, ProviderInfo, QualityLevel, QualitySink};
pub use quality::{AudienceState, AudienceView, QualityBand, QualitySample};
pub use registry::{
    HttpRegistry, LiveSession, ProviderList, ProviderRegistry, PushEvent, RegistryHealth,
    ReportKind, SessionReport,
};
