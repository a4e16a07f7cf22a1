//! The engine as one opaque Dart object. Each method converts its arguments, runs the engine
//! call on the plugin's runtime and converts the result; no engine logic lives here. Dart
//! code uses the idiomatic wrapper in `lib/streamguard.dart`, not this class directly.

use crate::adapter::DartAdapter;
use crate::api::types::{
    ManagerConfig, ProviderError, ProviderInfo, ProviderStats, QualitySample, SessionInfo,
    StreamEvent, StreamguardError,
};
use crate::events::{spawn_forwarder, EventOut};
use crate::frb_generated::StreamSink;
use crate::runtime::{run, RUNTIME};
use flutter_rust_bridge::{frb, DartFnFuture};
use std::sync::Arc;
use streamguard as sg;
use tokio_util::sync::CancellationToken;

/// The failover engine: decides which provider carries each stream, retries, fails over,
/// monitors health and migrates live streams.
#[frb(opaque)]
pub struct StreamingProviderManager {
    /// `None` only while dropping (see `Drop`).
    inner: Option<sg::StreamingProviderManager>,
    /// Cancelled by `shutdown()` and on drop: ends every event subscription of this manager.
    shut_down: CancellationToken,
}

impl StreamingProviderManager {
    /// Validate `config` and start the engine. Fails with `InvalidConfig` naming the first bad
    /// field.
    pub fn create(config: ManagerConfig) -> Result<StreamingProviderManager, StreamguardError> {
        let config = sg::ManagerConfig::try_from(config)?;
        // The engine spawns its tasks where it is created.
        let _rt = RUNTIME.enter();
        let inner = sg::StreamingProviderManager::new(config)?;
        Ok(Self {
            inner: Some(inner),
            shut_down: CancellationToken::new(),
        })
    }

    /// Register the adapter for provider `name` (replacing any earlier one), as one Dart
    /// closure per adapter method. Each closure resolves to null on success or to the error.
    /// `supports_parallel_sessions` is read once, here.
    #[allow(clippy::too_many_arguments)]
    pub fn register_adapter(
        &self,
        name: String,
        supports_parallel_sessions: bool,
        initialize: impl Fn(ProviderInfo) -> DartFnFuture<Option<ProviderError>> + Send + Sync + 'static,
        start_stream: impl Fn(String) -> DartFnFuture<Option<ProviderError>> + Send + Sync + 'static,
        join_stream: impl Fn(String) -> DartFnFuture<Option<ProviderError>> + Send + Sync + 'static,
        leave_stream: impl Fn(String) -> DartFnFuture<Option<ProviderError>> + Send + Sync + 'static,
        probe: impl Fn() -> DartFnFuture<Option<ProviderError>> + Send + Sync + 'static,
    ) -> Result<(), StreamguardError> {
        let adapter = DartAdapter {
            initialize: Box::new(initialize),
            start_stream: Box::new(start_stream),
            join_stream: Box::new(join_stream),
            leave_stream: Box::new(leave_stream),
            probe: Box::new(probe),
            supports_parallel_sessions,
        };
        Ok(self.engine().register_adapter(&name, Arc::new(adapter))?)
    }

    /// Go live as publisher of `stream_id`, with retries and failover.
    pub async fn start_stream(&self, stream_id: String) -> Result<SessionInfo, StreamguardError> {
        let engine = self.engine().clone();
        let session = run(async move { engine.start_stream(&stream_id).await }).await??;
        Ok(session.into())
    }

    /// Watch `stream_id` as a viewer, with retries and failover.
    pub async fn join_stream(&self, stream_id: String) -> Result<SessionInfo, StreamguardError> {
        let engine = self.engine().clone();
        let session = run(async move { engine.join_stream(&stream_id).await }).await??;
        Ok(session.into())
    }

    /// End a session: stop its monitoring and leave its provider. Cancels a start still
    /// running.
    pub async fn end_stream(&self, stream_id: String) -> Result<(), StreamguardError> {
        let engine = self.engine().clone();
        Ok(run(async move { engine.end_stream(&stream_id).await }).await??)
    }

    /// Report an error from the vendor SDK's own callbacks (connection lost, token expired).
    pub fn record_error(
        &self,
        stream_id: String,
        error: ProviderError,
    ) -> Result<(), StreamguardError> {
        let _rt = RUNTIME.enter();
        Ok(self.engine().record_error(&stream_id, error.into())?)
    }

    /// One media quality sample of `stream_id` from the vendor SDK (about one per second):
    /// scores the provider, tells the registry a viewer's player state, and lowers the quality
    /// of a device whose own link is the problem. Fails with `InvalidArgument` for a bad
    /// sample, `UnknownSession`.
    pub fn record_quality(
        &self,
        stream_id: String,
        sample: QualitySample,
    ) -> Result<(), StreamguardError> {
        let _rt = RUNTIME.enter();
        Ok(self.engine().record_quality(&stream_id, sample.into())?)
    }

    /// Connectivity changed (Wi-Fi to cellular, VPN): retry now, forget cool-downs, re-check.
    pub fn network_changed(&self) {
        let _rt = RUNTIME.enter();
        self.engine().network_changed();
    }

    /// Re-read the provider list now; live sessions migrate if the change calls for it.
    pub async fn refresh_providers(&self) -> Result<Vec<ProviderInfo>, StreamguardError> {
        let engine = self.engine().clone();
        let list = run(async move { engine.refresh_providers().await }).await??;
        Ok(list.into_iter().map(ProviderInfo::from).collect())
    }

    /// The provider list in use (the last good one read from the registry).
    pub fn providers(&self) -> Vec<ProviderInfo> {
        let list = self.engine().providers();
        list.into_iter().map(ProviderInfo::from).collect()
    }

    /// A snapshot of one session, if it is known.
    pub fn session(&self, stream_id: String) -> Option<SessionInfo> {
        self.engine().session(&stream_id).map(SessionInfo::from)
    }

    /// Snapshots of every known session.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let list = self.engine().sessions();
        list.into_iter().map(SessionInfo::from).collect()
    }

    /// Statistics of every provider known from the list or from use, preferred first.
    pub fn provider_stats(&self) -> Vec<ProviderStats> {
        let stats = self.engine().provider_stats();
        stats.into_iter().map(ProviderStats::from).collect()
    }

    /// Every event from now on, in order, until the stream is cancelled or the manager is shut
    /// down (events emitted before the shutdown finished are delivered first). The Dart future
    /// completes once the subscription exists, so no event emitted afterwards is missed.
    #[frb(stream_dart_await)]
    pub fn events(&self, sink: StreamSink<StreamEvent>) -> Result<(), StreamguardError> {
        self.subscribe_to(sink);
        Ok(())
    }

    /// Leave every provider and stop every task. Idempotent; afterwards every call but the
    /// read-only ones fails with `ShutDown`.
    pub async fn shutdown(&self) -> Result<(), StreamguardError> {
        let engine = self.engine().clone();
        let result = run(async move { engine.shutdown().await }).await;
        self.shut_down.cancel();
        Ok(result??)
    }

    /// Background tasks still running (monitor, checks, operations). Zero after `shutdown()`.
    pub fn task_count(&self) -> u64 {
        self.engine().task_count() as u64
    }

    /// Forward every event from now on to `out` (what [`events`](Self::events) does with the
    /// Dart stream; tests pass a channel).
    #[frb(ignore)]
    pub fn subscribe_to(&self, out: impl EventOut) {
        spawn_forwarder(self.engine().subscribe(), out, self.shut_down.clone());
    }

    fn engine(&self) -> &sg::StreamingProviderManager {
        self.inner
            .as_ref()
            .expect("the engine is only taken while dropping")
    }
}

impl Drop for StreamingProviderManager {
    fn drop(&mut self) {
        self.shut_down.cancel();
        // Dart releases this object from its finalizer thread. The engine leaves live
        // providers only if its last handle is dropped inside a tokio runtime.
        let _rt = RUNTIME.enter();
        drop(self.inner.take());
    }
}

/// The engine's own defaults for everything but `base_url`: equal to the generated Dart
/// constructor's defaults (`ManagerConfig(baseUrl: ...)`), which the tests check.
#[frb(sync)]
pub fn default_manager_config(base_url: String) -> ManagerConfig {
    sg::ManagerConfig::new(base_url).into()
}
