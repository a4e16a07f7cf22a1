//! [`StreamingProviderManager`]: the engine's manager as a UniFFI object. Each method converts
//! its arguments, forwards to the engine (async ones on the bindings' runtime) and converts the
//! result back.

use crate::adapter::{HostAdapter, ProviderAdapter};
use crate::config::ManagerConfig;
use crate::errors::{ProviderError, StreamguardError};
use crate::listener::{EventListener, EventSubscription, ListenerHandle};
use crate::runtime::{run, run_cancellable, RUNTIME};
use crate::types::{ProviderInfo, ProviderStats, QualitySample, SessionInfo};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use streamguard as sg;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The failover engine: decides which provider carries each stream, retries, fails over,
/// monitors health and migrates live streams. Create one per app, register an adapter per
/// provider, then start or join streams.
///
/// Call `shutdown()` before letting it go: it leaves every provider and stops every task.
/// Releasing it without `shutdown()` (Kotlin `close()`, garbage collection) is safe too: the
/// engine then leaves live providers in the background.
#[derive(uniffi::Object)]
pub struct StreamingProviderManager {
    /// Dropped by hand, inside the runtime: see `Drop`.
    inner: ManuallyDrop<sg::StreamingProviderManager>,
    /// Cancelled by `shutdown()` and on drop: stops every listener task of this manager.
    shut_down: CancellationToken,
    /// The listener tasks, so `shutdown()` can wait until they delivered the last events: after
    /// it returns, no Streamguard thread calls into the host (which matters to a host that is
    /// about to exit, such as a Python interpreter).
    listeners: TaskTracker,
}

#[uniffi::export]
impl StreamingProviderManager {
    /// Validate `config` and start the engine. Throws `StreamguardError.InvalidConfig` naming
    /// the first bad field.
    #[uniffi::constructor]
    pub fn new(config: ManagerConfig) -> Result<Arc<Self>, StreamguardError> {
        let config = sg::ManagerConfig::try_from(config)?;
        // The engine spawns its background tasks where it is created: on the bindings' runtime.
        let _rt = RUNTIME.enter();
        let inner = sg::StreamingProviderManager::new(config)?;
        Ok(Arc::new(Self {
            inner: ManuallyDrop::new(inner),
            shut_down: CancellationToken::new(),
            listeners: TaskTracker::new(),
        }))
    }

    /// Register the adapter for provider `name` (replacing any earlier one). Providers the
    /// registry lists without an adapter here are skipped.
    pub fn register_adapter(
        &self,
        name: String,
        adapter: Arc<dyn ProviderAdapter>,
    ) -> Result<(), StreamguardError> {
        Ok(self
            .inner
            .register_adapter(&name, Arc::new(HostAdapter(adapter)))?)
    }

    /// Go live as publisher of `stream_id`, with retries and failover. Returns the session once
    /// it is live; starting a live session again returns it unchanged. Cancellable: cancelling
    /// the awaiting task (Python task cancel or `asyncio.wait_for`, Kotlin `withTimeout` or
    /// scope cancel, Swift task cancel) cancels the start as `end_stream` would, and a provider
    /// that comes up late is left.
    pub async fn start_stream(&self, stream_id: String) -> Result<SessionInfo, StreamguardError> {
        let inner = self.engine();
        Ok(
            run_cancellable(async move { inner.start_stream(&stream_id).await })
                .await??
                .into(),
        )
    }

    /// Watch `stream_id` as a viewer, with retries and failover. Cancellable like
    /// `start_stream`.
    pub async fn join_stream(&self, stream_id: String) -> Result<SessionInfo, StreamguardError> {
        let inner = self.engine();
        Ok(
            run_cancellable(async move { inner.join_stream(&stream_id).await })
                .await??
                .into(),
        )
    }

    /// `start_stream` that also ends when `cancel` is cancelled, as if the awaiting task had
    /// been (throws `StreamguardError.Cancelled`). For the Swift glue only: UniFFI's Swift
    /// never cancels an async call, so `startStream` there cancels this token from a task
    /// cancellation handler. Excluded from Python and Kotlin.
    pub async fn start_stream_with(
        &self,
        stream_id: String,
        cancel: Arc<CancelToken>,
    ) -> Result<SessionInfo, StreamguardError> {
        self.open_until(stream_id, &cancel, |engine, id| async move {
            engine.start_stream(&id).await
        })
        .await
    }

    /// `join_stream` with a `cancel` token, as `start_stream_with`. Swift glue only.
    pub async fn join_stream_with(
        &self,
        stream_id: String,
        cancel: Arc<CancelToken>,
    ) -> Result<SessionInfo, StreamguardError> {
        self.open_until(stream_id, &cancel, |engine, id| async move {
            engine.join_stream(&id).await
        })
        .await
    }

    /// End a session: stop its monitoring at once and leave its provider. Cancels a start that
    /// is still running. Ending a finished session does nothing; an unknown id throws. Runs to
    /// completion even if the awaiting task is cancelled.
    pub async fn end_stream(&self, stream_id: String) -> Result<(), StreamguardError> {
        let inner = self.engine();
        Ok(run(async move { inner.end_stream(&stream_id).await }).await??)
    }

    /// Report an error the vendor SDK signalled on its own (a callback, not a call made by the
    /// engine). Transient kinds trigger an immediate confirming health check; provider-fatal
    /// kinds move every session off the provider at once; `InvalidStream` fails this session.
    pub fn record_error(
        &self,
        stream_id: String,
        error: ProviderError,
    ) -> Result<(), StreamguardError> {
        // May start a health check: spawn it on the bindings' runtime.
        let _rt = RUNTIME.enter();
        Ok(self.inner.record_error(&stream_id, error.into())?)
    }

    /// Take one media quality sample of `stream_id` from the vendor SDK (about one per
    /// second): it scores the provider (`ProviderStats.quality_score`, `QualityChanged`
    /// events), tells the registry a viewer's player state (stalled viewers move their
    /// publisher when enough of them stall) and lowers the quality of a device whose own link
    /// is the problem. Throws `InvalidArgument` for a bad sample, `UnknownSession`.
    pub fn record_quality(
        &self,
        stream_id: String,
        sample: QualitySample,
    ) -> Result<(), StreamguardError> {
        let _rt = RUNTIME.enter();
        Ok(self.inner.record_quality(&stream_id, sample.into())?)
    }

    /// Hint that connectivity changed (Wi-Fi to cellular, VPN): cut pending backoff waits
    /// short, forget cool-downs, re-check providers and re-read the list now.
    pub fn network_changed(&self) {
        let _rt = RUNTIME.enter();
        self.inner.network_changed();
    }

    /// Re-read the provider list now; live sessions migrate if the change calls for it. On a
    /// registry error the last good list stays in use and the error is thrown. Cancelling the
    /// await abandons the read (Python and Kotlin).
    pub async fn refresh_providers(&self) -> Result<Vec<ProviderInfo>, StreamguardError> {
        let inner = self.engine();
        let list = run_cancellable(async move { inner.refresh_providers().await }).await??;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// The provider list in use (the last good one read from the registry).
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.inner.providers().into_iter().map(Into::into).collect()
    }

    /// A snapshot of one session, if it is known (finished sessions are remembered for a while).
    pub fn session(&self, stream_id: String) -> Option<SessionInfo> {
        self.inner.session(&stream_id).map(Into::into)
    }

    /// Snapshots of every known session, by stream id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.inner.sessions().into_iter().map(Into::into).collect()
    }

    /// Statistics of every provider known from the list or from use, preferred first.
    pub fn provider_stats(&self) -> Vec<ProviderStats> {
        self.inner
            .provider_stats()
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// Deliver every event from now on to `listener` until the returned handle is closed or
    /// released, or the manager is shut down. Keep the handle: releasing it unsubscribes.
    pub fn add_listener(&self, listener: Arc<dyn EventListener>) -> Arc<ListenerHandle> {
        // Subscribe here, before returning, so no event after this call is missed.
        ListenerHandle::spawn(
            &self.listeners,
            self.inner.subscribe(),
            listener,
            self.shut_down.clone(),
        )
    }

    /// Leave every provider and stop every task, listeners included (and every `subscribe()`
    /// subscription ends after its buffered events): they first receive the
    /// events already emitted, and none is called after this returns. Idempotent. Afterwards
    /// every call but the read-only ones throws `StreamguardError.ShutDown`. Do not await it
    /// from inside `on_event` (it waits for that very call to return).
    pub async fn shutdown(&self) -> Result<(), StreamguardError> {
        let inner = self.engine();
        let shut_down = self.shut_down.clone();
        let listeners = self.listeners.clone();
        run(async move {
            let result = inner.shutdown().await;
            shut_down.cancel();
            listeners.close();
            listeners.wait().await;
            result
        })
        .await??;
        Ok(())
    }

    /// Subscribe to every event from now on, to be read with `next()`: the pull form of
    /// `add_listener`, behind Python's `async for event in manager.events()`, Kotlin's
    /// `events(): Flow<StreamEvent>` and Swift's `events(): AsyncStream<StreamEvent>`. It
    /// subscribes before returning, so no event emitted after this call is missed. A reader
    /// that falls more than `event_buffer` events behind loses the oldest, as a listener does.
    pub fn subscribe(&self) -> Arc<EventSubscription> {
        EventSubscription::new(self.inner.subscribe(), self.shut_down.clone())
    }

    /// Background tasks the engine still runs (monitor, checks, operations). Zero after
    /// `shutdown()`.
    pub fn task_count(&self) -> u64 {
        self.inner.task_count() as u64
    }
}

/// Cancels one `start_stream_with`/`join_stream_with` call (the Swift glue's task
/// cancellation handler holds it). Cancelled before the call starts, the call does nothing.
#[derive(uniffi::Object, Default)]
pub struct CancelToken(CancellationToken);

#[uniffi::export]
impl CancelToken {
    /// A token not cancelled yet.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Cancel the call that holds this token. Idempotent.
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

impl StreamingProviderManager {
    /// Run `open` (a start or join) until it returns or `cancel` is cancelled, which drops the
    /// engine's future and so cancels the operation (see `start_stream`).
    async fn open_until<F, Fut>(
        &self,
        stream_id: String,
        cancel: &CancelToken,
        open: F,
    ) -> Result<SessionInfo, StreamguardError>
    where
        F: FnOnce(sg::StreamingProviderManager, String) -> Fut,
        Fut: Future<Output = Result<sg::SessionInfo, sg::StreamguardError>> + Send + 'static,
    {
        let cancel = cancel.0.clone();
        let id = stream_id.clone();
        let opening = open(self.engine(), stream_id);
        Ok(run_cancellable(async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(sg::StreamguardError::Cancelled(id)),
                result = opening => result,
            }
        })
        .await??
        .into())
    }

    /// A handle to the engine for a task on the runtime (the engine is cheap to clone).
    fn engine(&self) -> sg::StreamingProviderManager {
        sg::StreamingProviderManager::clone(&self.inner)
    }
}

impl Drop for StreamingProviderManager {
    fn drop(&mut self) {
        self.shut_down.cancel();
        // The engine leaves live providers only if its last handle is dropped inside a tokio
        // runtime; the host releases this object from its own thread (a finalizer, a GC
        // cleaner), so enter the bindings' runtime for the drop.
        let _rt = RUNTIME.enter();
        // SAFETY: `inner` is dropped exactly once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
    }
}
