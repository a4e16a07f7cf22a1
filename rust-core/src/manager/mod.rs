//! The streaming provider manager: the public handle and the engine behind it.
//!
//! Shape (after mini-redis `db.rs`): one `State` behind a std mutex that is never held across
//! an `.await` or a call into host code, one background monitor task that sleeps until the
//! next health check or list refresh is due (or until it is woken), and short-lived tracked
//! tasks for every operation, check and migration, so `shutdown()` can wait for all of them.
//! Per-session async locks serialize start, migration and end of the same stream.

use crate::attempt::{AttemptPolicy, Failed, Next, Stop};
use crate::backoff::{Backoff, JitterSource};
use crate::capacity::{
    Candidate, CapacityError, Grant, InMemoryLedger, Lease, SlotLedger, SlotRequest,
};
use crate::config::ManagerConfig;
use crate::error::{
    Attempt, BackendError, ErrorClass, ProviderError, ProviderErrorKind, StreamguardError,
};
use crate::events::{
    EventKind, FailoverReason, MigrationStrategy, Operation, ProviderStats, Role, SessionInfo,
    SessionState, StreamEvent,
};
use crate::health::{Change, HealthPolicy, HealthTracker};
use crate::lane::{LaneKey, Lanes};
use crate::ordering::{rank, Standing};
use crate::planning::{self, Move, Placed};
use crate::provider::{ErrorSink, ProviderAdapter, ProviderInfo, QualityLevel, QualitySink};
use crate::quality::{AudienceState, AudienceView, QualitySample, Score};
use crate::registry::{
    HttpRegistry, LiveSession, ProviderList, ProviderRegistry, PushEvent, ReportKind,
    SessionReport, ALIVE_BATCH,
};
use crate::schedule;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify, OwnedMutexGuard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::{debug, debug_span, info, info_span, warn, Instrument};

mod adapter;
mod audience;
mod builder;
mod connect;
mod lanes;
mod leases;
mod list;
mod migrate;
mod monitor;
mod placement;
mod push;
mod session;
mod standby;
mod state;
mod telemetry;

pub use builder::ManagerBuilder;
use lanes::LaneTicket;
use state::*;

/// The failover engine. Cheap to clone; all clones drive the same engine. Must be created
/// inside a tokio runtime. Dropping the last clone without `shutdown()` cancels everything and
/// leaves live providers in the background, best effort.
#[derive(Clone)]
pub struct StreamingProviderManager {
    shared: Arc<Shared>,
    _lifetime: Arc<Lifetime>,
}

impl StreamingProviderManager {
    /// Start the engine with `config` and the HTTP registry at `config.base_url`.
    pub fn new(config: ManagerConfig) -> Result<Self, StreamguardError> {
        Self::builder(config).build()
    }

    /// A builder for a custom registry or jitter source.
    pub fn builder(config: ManagerConfig) -> ManagerBuilder {
        ManagerBuilder {
            config,
            registry: None,
            ledger: None,
            jitter: None,
        }
    }

    /// Register the adapter for provider `name` (replacing any earlier one). Providers without
    /// an adapter are skipped.
    pub fn register_adapter(
        &self,
        name: &str,
        adapter: Arc<dyn ProviderAdapter>,
    ) -> Result<(), StreamguardError> {
        if name.trim().is_empty() {
            return Err(StreamguardError::InvalidArgument(
                "provider name must not be empty".into(),
            ));
        }
        let mut st = self.shared.state();
        if st.shut_down {
            return Err(StreamguardError::ShutDown);
        }
        st.adapters.insert(
            name.to_string(),
            Arc::new(AdapterSlot {
                adapter,
                initialized: tokio::sync::Mutex::new(None),
            }),
        );
        Ok(())
    }

    /// Go live as publisher of `stream_id`, with retries and failover. Idempotent: starting a
    /// session that is already live returns it unchanged.
    pub async fn start_stream(&self, stream_id: &str) -> Result<SessionInfo, StreamguardError> {
        self.open(stream_id, Role::Publisher).await
    }

    /// Watch `stream_id` as a viewer, with retries and failover.
    pub async fn join_stream(&self, stream_id: &str) -> Result<SessionInfo, StreamguardError> {
        self.open(stream_id, Role::Viewer).await
    }

    /// End a session: stop its monitoring at once and leave its provider. Ending a finished
    /// session is a no-op; an unknown stream id is an error. Cancels a start still running.
    pub async fn end_stream(&self, stream_id: &str) -> Result<(), StreamguardError> {
        let shared = self.shared.clone();
        let id = stream_id.to_string();
        shared
            .tracked(move |s: Arc<Shared>| async move { s.end(&id).await })
            .await
    }

    /// Passive signal from the vendor SDK's own callbacks: `error` happened on `stream_id`.
    /// Transient kinds count as a failure and trigger an immediate confirming check;
    /// provider-fatal kinds move every session off the provider at once; a request-fatal kind
    /// fails this session.
    pub fn record_error(
        &self,
        stream_id: &str,
        error: ProviderError,
    ) -> Result<(), StreamguardError> {
        self.shared.record_error(stream_id, error)
    }

    /// Take a media quality sample of `stream_id` from the host's SDK (frames, stall time, and
    /// where it knows them bitrate, RTT and loss over `sample.interval`; about one per second).
    /// It scores the provider (`ProviderStats::quality_score`, a `QualityChanged` event on a
    /// band change; the formula is in [`crate::quality`]), tells the registry a viewer's player
    /// state, and lowers the quality of a device whose own link is the problem. Samples of a
    /// session that is not live are ignored. Errors: `InvalidArgument` for a bad sample,
    /// `UnknownSession`, `ShutDown`.
    pub fn record_quality(
        &self,
        stream_id: &str,
        sample: QualitySample,
    ) -> Result<(), StreamguardError> {
        self.shared.record_quality(stream_id, sample)
    }

    /// A callback that forwards samples to [`record_quality`](Self::record_quality), for
    /// adapters that measure media themselves (the RTMP adapter's viewer). Holds the engine
    /// weakly, like [`error_sink`](Self::error_sink).
    pub fn quality_sink(&self) -> QualitySink {
        let weak = Arc::downgrade(&self.shared);
        Arc::new(move |stream_id: &str, sample: QualitySample| {
            if let Some(shared) = weak.upgrade() {
                if let Err(e) = shared.record_quality(stream_id, sample) {
                    debug!(stream_id, error = %e, "quality sample not taken");
                }
            }
        })
    }

    /// A callback that forwards errors to [`record_error`](Self::record_error), for adapters
    /// that notice failures on their own (e.g. the RTMP adapter's publisher exiting). It holds
    /// the engine weakly: an adapter keeping it does not keep the manager alive, so dropping
    /// the manager still shuts it down.
    pub fn error_sink(&self) -> ErrorSink {
        let weak = Arc::downgrade(&self.shared);
        Arc::new(move |stream_id: &str, error: ProviderError| {
            if let Some(shared) = weak.upgrade() {
                if let Err(e) = shared.record_error(stream_id, error) {
                    debug!(stream_id, error = %e, "error report not taken");
                }
            }
        })
    }

    /// Hint that connectivity changed (Wi-Fi to cellular, VPN): cut pending backoff waits
    /// short, forget cool-downs, re-check providers and re-read the list now.
    pub fn network_changed(&self) {
        self.shared.network_changed();
    }

    /// Re-read the provider list now. Live sessions migrate if the change calls for it. On a
    /// registry error the last good list stays in use and the error is returned.
    pub async fn refresh_providers(&self) -> Result<Vec<ProviderInfo>, StreamguardError> {
        self.shared.ensure_running()?;
        let shared = self.shared.clone();
        shared
            .tracked(move |s: Arc<Shared>| async move {
                s.refresh(true).await?;
                Ok(s.state().providers.clone())
            })
            .await
    }

    /// The provider list in use (the last good one read from the registry).
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.shared.state().providers.clone()
    }

    /// A snapshot of one session, if it is known.
    pub fn session(&self, stream_id: &str) -> Option<SessionInfo> {
        self.shared
            .state()
            .sessions
            .get(stream_id)
            .map(|s| s.info.clone())
    }

    /// Snapshots of every known session.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .shared
            .state()
            .sessions
            .values()
            .map(|s| s.info.clone())
            .collect();
        v.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        v
    }

    /// Statistics of every provider known from the list or from use, preferred first.
    pub fn provider_stats(&self) -> Vec<ProviderStats> {
        self.shared.stats()
    }

    /// Subscribe to events. Each subscriber gets every event from now on; one that falls more
    /// than `event_buffer` events behind loses the oldest (and is told so by `recv`).
    pub fn subscribe(&self) -> broadcast::Receiver<StreamEvent> {
        self.shared.events.subscribe()
    }

    /// Leave every provider and stop every task. Idempotent. Afterwards every call but the
    /// read-only ones returns [`StreamguardError::ShutDown`].
    pub async fn shutdown(&self) -> Result<(), StreamguardError> {
        self.shared.clone().shutdown().await;
        Ok(())
    }

    /// Background tasks still running (the monitor, checks, operations). Zero after shutdown.
    pub fn task_count(&self) -> usize {
        self.shared.tracker.len()
    }

    async fn open(&self, stream_id: &str, role: Role) -> Result<SessionInfo, StreamguardError> {
        validate_stream_id(stream_id)?;
        self.shared.ensure_running()?;
        let shared = self.shared.clone();
        let id = stream_id.to_string();
        let cancel = shared.cancel.child_token();
        let created = Arc::new(std::sync::OnceLock::new());
        // A caller that stops waiting (drops this future: a timeout, a cancelled task)
        // cancels the operation, as `end_stream` would.
        let mut abandon = AbandonOnDrop {
            shared: Arc::downgrade(&shared),
            stream_id: id.clone(),
            cancel: cancel.clone(),
            created: created.clone(),
            armed: true,
        };
        // Run on a tracked task: `shutdown()` waits for it, and a bug that panics inside the
        // engine comes back as an error instead of unwinding into the caller.
        let result = shared
            .tracked(move |s: Arc<Shared>| {
                let span = info_span!("open", stream_id = %id, ?role);
                async move { s.open(&id, role, cancel, created).await }.instrument(span)
            })
            .await;
        abandon.armed = false;
        result
    }
}

/// Cancels a start or join whose caller stopped waiting, and ends the session it created (it
/// may have gone live just before the caller gave up, with nobody left to end it).
struct AbandonOnDrop {
    shared: std::sync::Weak<Shared>,
    stream_id: String,
    cancel: CancellationToken,
    created: Arc<std::sync::OnceLock<u64>>,
    armed: bool,
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.cancel.cancel();
        let (Some(shared), Some(&gen)) = (self.shared.upgrade(), self.created.get()) else {
            return;
        };
        debug!(stream_id = %self.stream_id, gen, "caller stopped waiting; ending the session");
        if tokio::runtime::Handle::try_current().is_ok() {
            let id = std::mem::take(&mut self.stream_id);
            let me = shared.clone();
            shared.tracker.spawn(async move {
                let _ = me.end_gen(&id, gen).await;
            });
        }
    }
}

fn validate_stream_id(id: &str) -> Result<(), StreamguardError> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(StreamguardError::InvalidArgument(
            "stream_id must be 1 to 256 bytes of printable text".into(),
        ));
    }
    Ok(())
}

/// Cancels the engine when the last handle goes away.
struct Lifetime {
    shared: Arc<Shared>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        if self.shared.state().shut_down {
            return;
        }
        warn!("manager dropped without shutdown(); leaving live providers in the background");
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let shared = self.shared.clone();
                rt.spawn(async move { shared.shutdown().await });
            }
            // No runtime left to leave providers on: at least stop every task.
            Err(_) => {
                self.shared.cancel.cancel();
                self.shared.telemetry_done.cancel();
            }
        }
    }
}

struct Shared {
    config: ManagerConfig,
    policy: HealthPolicy,
    backoff: Backoff,
    registry: Arc<dyn ProviderRegistry>,
    state: Mutex<State>,
    events: broadcast::Sender<StreamEvent>,
    /// Wakes the monitor when the schedule may have changed.
    wake: Notify,
    /// Wakes the push listener when sessions go live or end.
    push_wake: Notify,
    /// Session telemetry queue, when `report_sessions` is on.
    reports: Option<tokio::sync::mpsc::Sender<SessionReport>>,
    /// Tells the reporter to flush and stop (after shutdown has ended every session).
    telemetry_done: CancellationToken,
    /// Bumped by `network_changed` to cut backoff waits short.
    retry_now: watch::Sender<u64>,
    /// Bumped when the provider list changes, so waits for a provider the registry reports
    /// full re-evaluate at once.
    list_version: watch::Sender<u64>,
    /// Counts running streams per provider account and in all; hands out their leases.
    ledger: Arc<dyn SlotLedger>,
    /// Wakes the lease keeper when the first lease is held.
    lease_wake: Notify,
    /// Identifies this engine instance in session telemetry (random, never reused).
    client_id: String,
    cancel: CancellationToken,
    tracker: TaskTracker,
    epoch: Instant,
    jitter: Mutex<Box<dyn JitterSource>>,
    /// Retry, fail over or stop: the connect loop's decisions.
    attempts: AttemptPolicy,
    /// Bumped whenever a lane ticket is released.
    lane_turn: watch::Sender<u64>,
    /// Bumped when a viewer waiting for its stream to go live (`wait_for_live`) sees a live
    /// placement pushed.
    placement_news: watch::Sender<u64>,
    /// Wakes the audience reporter: a viewer's player state changed.
    audience_wake: Notify,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not wedge the engine: the state is kept consistent between
        // statements, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn ensure_running(&self) -> Result<(), StreamguardError> {
        if self.state().shut_down || self.cancel.is_cancelled() {
            Err(StreamguardError::ShutDown)
        } else {
            Ok(())
        }
    }

    pub(super) fn emit(&self, kind: EventKind) {
        let at = Instant::now().saturating_duration_since(self.epoch);
        debug!(?kind, "event");
        // No subscribers is fine: events are a view, not a control path.
        let _ = self.events.send(StreamEvent { at, kind });
    }

    pub(super) fn since_epoch(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }

    /// A call into the registry (host code when the app brings its own `ProviderRegistry`), on a
    /// task of its own and bounded by `request_timeout`: a registry that hangs costs one
    /// timeout, one that panics fails this call only, as a `BackendError::Network`.
    pub(super) async fn registry_call<T, F, Fut>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn ProviderRegistry>) -> Fut,
        Fut: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        // Aborted when this future is dropped (a cancelled start, shutdown) or times out, so a
        // hung registry never leaves a task behind for `shutdown()` to wait on.
        let call = AbortOnDropHandle::new(self.tracker.spawn(f(self.registry.clone())));
        match tokio::time::timeout(self.config.request_timeout, call).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(BackendError::Network(format!(
                "registry call failed: {}",
                panic_message(e)
            ))),
            Err(_) => Err(BackendError::Timeout),
        }
    }

    /// Run `f` on a tracked task and turn an engine panic into an error.
    pub(super) async fn tracked<T, F, Fut>(self: Arc<Self>, f: F) -> Result<T, StreamguardError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T, StreamguardError>> + Send + 'static,
    {
        let fut = f(self.clone());
        match self.tracker.spawn(fut).await {
            Ok(r) => r,
            Err(e) => Err(StreamguardError::Internal(format!(
                "engine task failed: {}",
                panic_message(e)
            ))),
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "cancelled".into();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".into()
    }
}
