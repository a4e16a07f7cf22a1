//! Dart adapters as the engine's `ProviderAdapter`: the Dart `ProviderAdapter` object is
//! handed over as one closure per method (flutter_rust_bridge turns each into a function that
//! calls back into Dart and awaits its future). This is the only place they are called.

use crate::api::types::{ProviderError, ProviderInfo};
use flutter_rust_bridge::DartFnFuture;
use streamguard as sg;

/// What a Dart adapter method resolves to: `None` on success, the error otherwise. (The Dart
/// side catches everything its adapter throws, so a closure always resolves.)
pub type AdapterResult = Option<ProviderError>;

/// A Dart adapter method taking `A`.
pub type AdapterFn<A> = Box<dyn Fn(A) -> DartFnFuture<AdapterResult> + Send + Sync>;

/// The Dart side of one provider, as closures.
pub struct DartAdapter {
    /// `initialize(ProviderInfo)`.
    pub initialize: AdapterFn<ProviderInfo>,
    /// `startStream(streamId)`.
    pub start_stream: AdapterFn<String>,
    /// `joinStream(streamId)`.
    pub join_stream: AdapterFn<String>,
    /// `leaveStream(streamId)`.
    pub leave_stream: AdapterFn<String>,
    /// `probe()`.
    pub probe: Box<dyn Fn() -> DartFnFuture<AdapterResult> + Send + Sync>,
    /// `supportsParallelSessions`, read once at registration: Rust cannot call Dart
    /// synchronously.
    pub supports_parallel_sessions: bool,
}

fn outcome(result: AdapterResult) -> Result<(), sg::ProviderError> {
    match result {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}

#[async_trait::async_trait]
impl sg::ProviderAdapter for DartAdapter {
    async fn initialize(&self, provider: &sg::ProviderInfo) -> Result<(), sg::ProviderError> {
        outcome((self.initialize)(provider.clone().into()).await)
    }

    async fn start_stream(&self, stream_id: &str) -> Result<(), sg::ProviderError> {
        outcome((self.start_stream)(stream_id.to_owned()).await)
    }

    async fn join_stream(&self, stream_id: &str) -> Result<(), sg::ProviderError> {
        outcome((self.join_stream)(stream_id.to_owned()).await)
    }

    async fn leave_stream(&self, stream_id: &str) -> Result<(), sg::ProviderError> {
        outcome((self.leave_stream)(stream_id.to_owned()).await)
    }

    async fn probe(&self) -> Result<(), sg::ProviderError> {
        outcome((self.probe)().await)
    }

    fn supports_parallel_sessions(&self) -> bool {
        self.supports_parallel_sessions
    }
}
