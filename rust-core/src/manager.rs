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
use crate::ordering::{position, rank, Standing};
use crate::provider::{ErrorSink, ProviderAdapter, ProviderInfo};
use crate::registry::{
    HttpRegistry, LiveSession, ProviderList, ProviderRegistry, PushEvent, ReportKind,
    SessionReport, ALIVE_BATCH,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify, OwnedMutexGuard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, debug_span, info, info_span, warn, Instrument};

/// How many finished sessions are remembered for `session()` before the oldest are dropped.
const FINISHED_SESSIONS_KEPT: usize = 256;
/// Session reports waiting to be sent; beyond this they are dropped (telemetry must never
/// hold up the engine).
const REPORT_QUEUE: usize = 256;
/// Weight of the newest sample in latency moving averages.
const EWMA_ALPHA: f64 = 0.2;

/// The failover engine. Cheap to clone; all clones drive the same engine. Must be created
/// inside a tokio runtime. Dropping the last clone without `shutdown()` cancels everything and
/// leaves live providers in the background, best effort.
#[derive(Clone)]
pub struct StreamingProviderManager {
    shared: Arc<Shared>,
    _lifetime: Arc<Lifetime>,
}

/// Builds a [`StreamingProviderManager`] with a custom registry, capacity ledger or jitter
/// source.
pub struct ManagerBuilder {
    config: ManagerConfig,
    registry: Option<Arc<dyn ProviderRegistry>>,
    ledger: Option<Arc<dyn SlotLedger>>,
    jitter: Option<Box<dyn JitterSource>>,
}

impl ManagerBuilder {
    /// Use `registry` instead of the HTTP client of `config.base_url`.
    pub fn registry(mut self, registry: Arc<dyn ProviderRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Count streams on `ledger` instead of a private in-memory one: every stream holds a
    /// lease on its provider's account while it runs, so managers (or checkers) sharing one
    /// ledger, e.g. `streamguard-redis`, share each provider's `max_streams` and the ledger's
    /// global limit. `config.max_total_streams` must then be `None`.
    pub fn capacity(mut self, ledger: Arc<dyn SlotLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Use `jitter` for backoff samples (tests pass a seeded RNG).
    pub fn jitter(mut self, jitter: Box<dyn JitterSource>) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Validate the config and start the engine.
    pub fn build(self) -> Result<StreamingProviderManager, StreamguardError> {
        self.config.validate()?;
        let config = self.config;
        let ledger: Arc<dyn SlotLedger> = match (self.ledger, config.max_total_streams) {
            (Some(_), Some(_)) => {
                return Err(StreamguardError::InvalidConfig(
                    "max_total_streams applies to the built-in ledger only; set the global limit on the ledger passed to capacity()".into(),
                ))
            }
            (Some(l), None) => l,
            (None, limit) => Arc::new(InMemoryLedger::new(limit)),
        };
        let registry: Arc<dyn ProviderRegistry> = match self.registry {
            Some(r) => r,
            None => Arc::new(
                HttpRegistry::new(
                    &config.base_url,
                    config.auth_token.clone(),
                    config.request_timeout,
                    config.max_response_bytes,
                )
                .map_err(|e| StreamguardError::InvalidConfig(e.to_string()))?,
            ),
        };
        let jitter = self
            .jitter
            .unwrap_or_else(|| Box::new(<rand::rngs::StdRng as rand::SeedableRng>::from_os_rng()));
        let (events, _) = broadcast::channel(config.event_buffer);
        let (reports, reports_rx) = if config.report_sessions {
            let (tx, rx) = tokio::sync::mpsc::channel(REPORT_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (retry_now, _) = watch::channel(0u64);
        let (list_version, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            policy: config.health_policy(),
            attempts: AttemptPolicy {
                max_attempts: config.max_attempts,
                attempts_per_provider: config.attempts_per_provider,
            },
            lane_turn: watch::channel(0).0,
            backoff: Backoff {
                base: config.backoff_base,
                cap: config.backoff_cap,
            },
            config,
            registry,
            state: Mutex::new(State::default()),
            events,
            wake: Notify::new(),
            push_wake: Notify::new(),
            reports,
            telemetry_done: CancellationToken::new(),
            retry_now,
            list_version,
            ledger,
            lease_wake: Notify::new(),
            client_id: {
                use rand::{Rng, SeedableRng};
                format!(
                    "sg-{:032x}",
                    rand::rngs::StdRng::from_os_rng().random::<u128>()
                )
            },
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            epoch: Instant::now(),
            jitter: Mutex::new(jitter),
        });
        let monitor = shared.clone();
        shared.tracker.spawn(async move { monitor.monitor().await });
        if let Some(rx) = reports_rx {
            let reporter = shared.clone();
            shared
                .tracker
                .spawn(async move { reporter.reporter(rx).await });
        }
        if shared.config.push_updates {
            let push = shared.clone();
            shared.tracker.spawn(async move { push.push_loop().await });
        }
        let keeper = shared.clone();
        shared
            .tracker
            .spawn(async move { keeper.lease_keeper().await });
        info!(config = ?shared.config, "streamguard manager started");
        Ok(StreamingProviderManager {
            _lifetime: Arc::new(Lifetime {
                shared: shared.clone(),
            }),
            shared,
        })
    }
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

struct AdapterSlot {
    adapter: Arc<dyn ProviderAdapter>,
    /// The provider entry the adapter was last initialized with. An async lock, held across
    /// `initialize`, so two sessions never initialize the same SDK at once.
    initialized: tokio::sync::Mutex<Option<ProviderInfo>>,
}

#[derive(Default, Clone, Copy)]
struct Ewma(Option<f64>);

impl Ewma {
    fn add(&mut self, d: Duration) {
        let x = d.as_secs_f64();
        self.0 = Some(match self.0 {
            None => x,
            Some(m) => m + EWMA_ALPHA * (x - m),
        });
    }
    fn get(&self) -> Option<Duration> {
        self.0.map(Duration::from_secs_f64)
    }
}

#[derive(Default)]
struct ProviderRecord {
    health: HealthTracker,
    attempts: u64,
    successes: u64,
    failures: u64,
    reported_errors: u64,
    checks: u64,
    failed_checks: u64,
    last_check_at: Option<Instant>,
    check_latency: Ewma,
    connect_latency: Ewma,
    next_check: Option<Instant>,
    check_in_flight: bool,
    /// Starts on the provider while it is half-open (its trial) in flight: one, except in
    /// panic mode (nothing else left to try).
    trials_in_flight: u32,
}

struct Session {
    info: SessionInfo,
    /// Unique per manager, increasing: a new session of the same stream id gets a higher one.
    /// Work that outlives its session (an abandoned adapter call, a migration, a spawned
    /// finish) carries the generation it was started for and touches only that session.
    gen: u64,
    /// Held by whoever operates on the session: start/join, migration, end.
    op_lock: Arc<tokio::sync::Mutex<()>>,
    /// Cancelled by `end_stream` (and, as a child of the manager's token, by shutdown).
    cancel: CancellationToken,
    finished_seq: u64,
    /// The capacity lease of the provider the stream runs on (during a make-before-break
    /// migration: of the provider it is leaving). `None` while it runs nowhere.
    slot: Option<HeldSlot>,
}

/// A capacity lease held by the engine, renewed by the lease keeper until released.
struct HeldSlot {
    lease: Arc<Lease>,
    /// Set by the keeper when the lease could not be kept.
    lost: Arc<AtomicBool>,
}

/// The lease keeper's record of a held lease.
struct Kept {
    /// Shared with the [`HeldSlot`]; its holder is the stream id.
    lease: Arc<Lease>,
    lost: Arc<AtomicBool>,
    /// Until when the last successful renewal (or the grant) keeps the lease alive.
    valid_until: Instant,
}

#[derive(Default)]
struct State {
    providers: Vec<ProviderInfo>,
    list_known: bool,
    list_etag: Option<String>,
    list_fetched_at: Option<Instant>,
    adapters: HashMap<String, Arc<AdapterSlot>>,
    records: HashMap<String, ProviderRecord>,
    sessions: HashMap<String, Session>,
    next_refresh: Option<Instant>,
    shut_down: bool,
    finished_seq: u64,
    /// Every lease held, by lease id, for the lease keeper.
    kept: HashMap<String, Kept>,
    /// The generation of the last session created.
    last_gen: u64,
    /// The provider-list read in flight, if any (single flight: every caller that may use it
    /// waits for its outcome instead of sending its own request).
    list_read: Option<ListRead>,
    /// Reads started so far, and the outcome of the last one finished (with its number).
    list_reads: u64,
    last_read: Option<(u64, ReadOutcome)>,
    /// Adapter calls per (provider, stream id) run one at a time, in order (see `lane.rs`).
    lanes: Lanes,
}

/// The outcome of one provider-list read: whether the list changed, or why it failed.
type ReadOutcome = Result<bool, StreamguardError>;

/// A provider-list read in flight.
struct ListRead {
    /// Its number (1, 2, ...): a forced refresh may only use a read that started after it was
    /// asked for, so a change announced by push is never answered by an older read.
    seq: u64,
    done: watch::Receiver<Option<ReadOutcome>>,
}

impl State {
    fn record(&mut self, name: &str) -> &mut ProviderRecord {
        self.records.entry(name.to_string()).or_default()
    }

    fn is_cooling(&self, name: &str, now: Instant) -> bool {
        self.records
            .get(name)
            .is_some_and(|r| r.health.is_cooling(now))
    }

    fn ranked(&self, now: Instant, excluded: &HashSet<String>, only_parallel: bool) -> Vec<String> {
        rank(&self.providers, |name| Standing {
            has_adapter: self
                .adapters
                .get(name)
                .is_some_and(|a| !only_parallel || a.adapter.supports_parallel_sessions()),
            cooling: self.is_cooling(name, now),
            excluded: excluded.contains(name),
            trial_busy: self.records.get(name).is_some_and(|r| {
                r.health.is_half_open(now) && (r.check_in_flight || r.trials_in_flight > 0)
            }),
        })
    }

    /// The session of `stream_id` if it is still generation `gen`.
    fn session(&self, stream_id: &str, gen: u64) -> Option<&Session> {
        self.sessions.get(stream_id).filter(|s| s.gen == gen)
    }

    fn session_mut(&mut self, stream_id: &str, gen: u64) -> Option<&mut Session> {
        self.sessions.get_mut(stream_id).filter(|s| s.gen == gen)
    }

    /// Migration jobs for every live session on `provider`.
    fn jobs_on(&self, provider: &str, reason: FailoverReason) -> Vec<MigrationJob> {
        let mut jobs: Vec<MigrationJob> = self
            .sessions
            .values()
            .filter(|s| {
                s.info.state == SessionState::Live && s.info.provider.as_deref() == Some(provider)
            })
            .map(|s| MigrationJob::of(s, provider, reason))
            .collect();
        jobs.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        jobs
    }

    /// Is `provider` in the list and active? Sessions on any other provider must move off it
    /// (desired state: the list; actual state: where sessions run).
    fn is_listed_active(&self, provider: &str) -> bool {
        self.providers
            .iter()
            .any(|p| p.name == provider && p.is_active)
    }

    /// Reconciliation: every live session on a provider that is no longer listed or active.
    fn misplaced(&self) -> Vec<MigrationJob> {
        let mut jobs: Vec<MigrationJob> = self
            .sessions
            .values()
            .filter(|s| s.info.state == SessionState::Live)
            .filter_map(|s| {
                let p = s.info.provider.as_deref()?;
                (!self.is_listed_active(p))
                    .then(|| MigrationJob::of(s, p, FailoverReason::ProviderDisabled))
            })
            .collect();
        jobs.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        jobs
    }

    /// Providers `ranked` leaves out only because the registry reports them at `max_streams`,
    /// best first: a capacity wait watches the list for them to free up.
    fn reported_full(&self, excluded: &HashSet<String>, only_parallel: bool) -> Vec<String> {
        let mut full: Vec<&ProviderInfo> =
            self.providers
                .iter()
                .filter(|p| {
                    p.is_active
                        && !p.has_free_slot()
                        && !excluded.contains(&p.name)
                        && self.adapters.get(&p.name).is_some_and(|a| {
                            !only_parallel || a.adapter.supports_parallel_sessions()
                        })
                })
                .collect();
        full.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        full.into_iter().map(|p| p.name.clone()).collect()
    }

    fn live_on(&self, provider: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .sessions
            .values()
            .filter(|s| {
                s.info.state == SessionState::Live && s.info.provider.as_deref() == Some(provider)
            })
            .map(|s| s.info.stream_id.clone())
            .collect();
        v.sort();
        v
    }

    /// Providers that need checks: those carrying live sessions and, with failback on, the
    /// preferred provider of every session that runs elsewhere.
    fn monitored(&self, now: Instant, failback: bool) -> HashSet<String> {
        let mut set = HashSet::new();
        let ranked = if failback {
            self.ranked(now, &HashSet::new(), false)
        } else {
            Vec::new()
        };
        for s in self.sessions.values() {
            if s.info.state != SessionState::Live {
                continue;
            }
            let Some(p) = &s.info.provider else { continue };
            set.insert(p.clone());
            if let Some(best) = ranked.first() {
                if best != p {
                    set.insert(best.clone());
                }
            }
        }
        set
    }
}

/// A session that must move off `from`.
struct MigrationJob {
    stream_id: String,
    gen: u64,
    from: String,
    reason: FailoverReason,
}

impl MigrationJob {
    fn of(s: &Session, from: &str, reason: FailoverReason) -> Self {
        Self {
            stream_id: s.info.stream_id.clone(),
            gen: s.gen,
            from: from.to_string(),
            reason,
        }
    }
}

/// What one connect loop was asked to do.
struct ConnectRequest<'a> {
    stream_id: &'a str,
    gen: u64,
    /// The operation's deadline (`operation_deadline` from its start); capacity waits extend it.
    deadline: Instant,
    role: Role,
    operation: Operation,
    exclude: HashSet<String>,
    only_parallel: bool,
    cancel: &'a CancellationToken,
}

/// A place in a (provider, stream) lane; its turn ends when it is dropped.
struct LaneTicket {
    shared: Arc<Shared>,
    key: LaneKey,
    ticket: u64,
}

impl LaneTicket {
    /// Wait for this ticket's turn (earlier calls on the pair are bounded by
    /// `adapter_timeout`, so this is too).
    async fn turn(&self) {
        let mut turns = self.shared.lane_turn.subscribe();
        loop {
            if self.shared.state().lanes.is_turn(&self.key, self.ticket) {
                return;
            }
            if turns.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for LaneTicket {
    fn drop(&mut self) {
        debug!(key = ?self.key, ticket = self.ticket, "lane ticket released");
        self.shared.state().lanes.release(&self.key, self.ticket);
        self.shared
            .lane_turn
            .send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// What [`Shared::create_session`] did.
enum Opened {
    /// A new session of this generation, with its op lock.
    New(u64, Arc<tokio::sync::Mutex<()>>),
    /// Starting a live session again returns it unchanged.
    AlreadyLive(SessionInfo),
}

/// What [`Shared::choose`] found.
enum Choice {
    /// Attempt this provider; its slot is held.
    Go(String, ProviderInfo, Arc<AdapterSlot>),
    /// No provider could be tried at all (none active with an adapter, or all given up on).
    NoneUsable,
    /// Every provider that could be tried is full, and waiting is off or ran out.
    Full(Vec<String>),
}

enum Verdict {
    Good,
    Bad(String),
    Unknown,
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
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not wedge the engine: the state is kept consistent between
        // statements, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ensure_running(&self) -> Result<(), StreamguardError> {
        if self.state().shut_down || self.cancel.is_cancelled() {
            Err(StreamguardError::ShutDown)
        } else {
            Ok(())
        }
    }

    fn emit(&self, kind: EventKind) {
        let at = Instant::now().saturating_duration_since(self.epoch);
        debug!(?kind, "event");
        // No subscribers is fine: events are a view, not a control path.
        let _ = self.events.send(StreamEvent { at, kind });
    }

    fn since_epoch(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }

    /// Run `f` on a tracked task and turn an engine panic into an error.
    async fn tracked<T, F, Fut>(self: Arc<Self>, f: F) -> Result<T, StreamguardError>
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

    /// Set the state of generation `gen` of `stream_id` (a no-op if that session is gone or was
    /// replaced by a newer one).
    fn set_state(
        &self,
        st: &mut State,
        stream_id: &str,
        gen: u64,
        to: SessionState,
        provider: Option<String>,
    ) {
        let Some(s) = st.session_mut(stream_id, gen) else {
            return;
        };
        let from = s.info.state;
        let changed = from != to || s.info.provider != provider;
        s.info.state = to;
        s.info.provider = provider.clone();
        if to.is_finished() && !from.is_finished() {
            st.finished_seq += 1;
            let seq = st.finished_seq;
            if let Some(s) = st.session_mut(stream_id, gen) {
                s.finished_seq = seq;
            }
            prune_finished(st);
        }
        self.push_wake.notify_one();
        if changed {
            info!(
                stream_id,
                ?from,
                ?to,
                provider = provider.as_deref(),
                "session state"
            );
            self.emit(EventKind::SessionStateChanged {
                stream_id: stream_id.to_string(),
                from,
                to,
                provider,
            });
        }
        self.wake.notify_one();
    }

    fn set_last_error(st: &mut State, stream_id: &str, gen: u64, error: String) {
        if let Some(s) = st.session_mut(stream_id, gen) {
            s.info.last_error = Some(error);
        }
    }

    /// Apply a health change of `provider`: announce it, reschedule its check, and return the
    /// migrations a new outage calls for.
    fn apply_change(
        &self,
        st: &mut State,
        provider: &str,
        change: Change,
        reason: FailoverReason,
        detail: &str,
        now: Instant,
    ) -> Vec<MigrationJob> {
        let rec = st.record(provider);
        let consecutive = rec.health.consecutive_failures();
        let delay = rec.health.next_check_delay(&self.policy);
        if let Some(next) = rec.next_check {
            rec.next_check = Some(next.min(now + delay));
        }
        if change.status_changed() {
            info!(provider, from = ?change.from, to = ?change.to, consecutive, detail, "provider health");
            self.emit(EventKind::HealthChanged {
                provider: provider.to_string(),
                from: change.from,
                to: change.to,
                consecutive_failures: consecutive,
                detail: detail.to_string(),
            });
        }
        self.wake.notify_one();
        if !change.outage {
            return Vec::new();
        }
        warn!(provider, detail, "outage confirmed; moving live sessions");
        st.jobs_on(provider, reason)
    }

    /// Mark jobs' sessions as migrating (so no second migration starts) and spawn them.
    fn start_migrations(self: &Arc<Self>, st: &mut State, jobs: Vec<MigrationJob>) {
        for job in jobs {
            let Some(s) = st.session(&job.stream_id, job.gen) else {
                continue;
            };
            if s.info.state != SessionState::Live
                || s.info.provider.as_deref() != Some(job.from.as_str())
            {
                continue;
            }
            let provider = s.info.provider.clone();
            self.set_state(
                st,
                &job.stream_id,
                job.gen,
                SessionState::Migrating,
                provider,
            );
            let me = self.clone();
            let span = info_span!("migrate", stream_id = %job.stream_id, from = %job.from, reason = ?job.reason);
            self.tracker
                .spawn(async move { me.migrate(job).await }.instrument(span));
        }
    }

    // ----- adapter calls -------------------------------------------------------------------

    /// Call into host code on its own task, bounded by `adapter_timeout`. A panic or a hang
    /// becomes a typed error; the engine never waits longer than the timeout.
    async fn call_adapter<F, Fut>(
        &self,
        what: &str,
        adapter: Arc<dyn ProviderAdapter>,
        f: F,
    ) -> Result<(), ProviderError>
    where
        F: FnOnce(Arc<dyn ProviderAdapter>) -> Fut,
        Fut: Future<Output = Result<(), ProviderError>> + Send + 'static,
    {
        let mut handle = self.tracker.spawn(f(adapter));
        match tokio::time::timeout(self.config.adapter_timeout, &mut handle).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(ProviderError::internal(format!(
                "adapter {what} failed: {}",
                panic_message(e)
            ))),
            Err(_) => {
                handle.abort();
                Err(ProviderError::timeout(format!(
                    "adapter {what} did not finish within {:?}",
                    self.config.adapter_timeout
                )))
            }
        }
    }

    async fn ensure_initialized(
        &self,
        slot: &AdapterSlot,
        info: &ProviderInfo,
    ) -> Result<(), ProviderError> {
        let mut done = slot.initialized.lock().await;
        if done.as_ref() == Some(info) {
            return Ok(());
        }
        let owned = info.clone();
        self.call_adapter(
            "initialize",
            slot.adapter.clone(),
            move |a: Arc<dyn ProviderAdapter>| async move { a.initialize(&owned).await },
        )
        .await?;
        *done = Some(info.clone());
        Ok(())
    }

    async fn adapter_connect(
        &self,
        slot: &AdapterSlot,
        info: &ProviderInfo,
        stream_id: &str,
        role: Role,
    ) -> Result<(), ProviderError> {
        self.ensure_initialized(slot, info).await?;
        let id = stream_id.to_string();
        match role {
            Role::Publisher => {
                self.call_adapter(
                    "start_stream",
                    slot.adapter.clone(),
                    move |a: Arc<dyn ProviderAdapter>| async move { a.start_stream(&id).await },
                )
                .await
            }
            Role::Viewer => {
                self.call_adapter(
                    "join_stream",
                    slot.adapter.clone(),
                    move |a: Arc<dyn ProviderAdapter>| async move { a.join_stream(&id).await },
                )
                .await
            }
        }
    }

    /// Leave `stream_id` on `provider` through that provider's own adapter.
    async fn leave(&self, provider: &str, stream_id: &str) {
        let slot = self.state().adapters.get(provider).cloned();
        let Some(slot) = slot else {
            warn!(provider, stream_id, "no adapter to leave through");
            return;
        };
        let id = stream_id.to_string();
        let r = self
            .call_adapter(
                "leave_stream",
                slot.adapter.clone(),
                move |a: Arc<dyn ProviderAdapter>| async move { a.leave_stream(&id).await },
            )
            .await;
        match r {
            Ok(()) => debug!(provider, stream_id, "left"),
            Err(e) => warn!(provider, stream_id, error = %e, "leave failed"),
        }
    }

    // ----- capacity -------------------------------------------------------------------------

    /// A ledger call bounded by `request_timeout` (on top of `extra`), so a hanging shared
    /// backend fails closed instead of holding the operation.
    async fn ledger_call<T>(
        &self,
        extra: Duration,
        fut: impl Future<Output = Result<T, CapacityError>>,
    ) -> Result<T, CapacityError> {
        match tokio::time::timeout(self.config.request_timeout + extra, fut).await {
            Ok(r) => r,
            Err(_) => Err(CapacityError::Unavailable(format!(
                "no answer within {:?}",
                self.config.request_timeout + extra
            ))),
        }
    }

    fn capacity_error(e: CapacityError) -> StreamguardError {
        match e {
            CapacityError::Invalid(m) => {
                StreamguardError::Internal(format!("capacity request: {m}"))
            }
            other => StreamguardError::CapacityUnavailable(other.to_string()),
        }
    }

    /// Start keeping `lease` on behalf of `stream_id`: the lease keeper renews it from now on.
    fn hold(&self, stream_id: &str, lease: Lease) -> HeldSlot {
        debug_assert_eq!(lease.holder, stream_id);
        let lease = Arc::new(lease);
        let lost = Arc::new(AtomicBool::new(false));
        self.state().kept.insert(
            lease.id.clone(),
            Kept {
                lease: lease.clone(),
                lost: lost.clone(),
                valid_until: Instant::now() + lease.ttl,
            },
        );
        self.lease_wake.notify_one();
        HeldSlot { lease, lost }
    }

    /// One task renews every held lease, all at once every third of the lease TTL (one sleeping
    /// task per stream would cost more than the rest of a session). A backend that cannot be
    /// reached is retried while each lease is still valid by its last renewal; once a lease may
    /// have expired (or the ledger says it did), its slot is lost and a live stream on it moves
    /// (fail closed).
    async fn lease_keeper(self: Arc<Self>) {
        let every = (self.config.capacity_lease_ttl / 3).max(Duration::from_millis(10));
        loop {
            while self.state().kept.is_empty() {
                tokio::select! {
                    _ = self.lease_wake.notified() => {}
                    _ = self.cancel.cancelled() => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.cancel.cancelled() => return,
            }
            let due: Vec<Arc<Lease>> = self
                .state()
                .kept
                .values()
                .map(|k| k.lease.clone())
                .collect();
            // All leases live on one backend: once it is unreachable, the rest of the round
            // is not asked again (a dead Redis would otherwise cost a timeout per lease).
            let mut unreachable: Option<String> = None;
            for lease in due {
                let asked = Instant::now();
                let result = match &unreachable {
                    Some(e) => Err(CapacityError::Unavailable(e.clone())),
                    None => {
                        tokio::select! {
                            r = self.ledger_call(Duration::ZERO, self.ledger.renew(&lease)) => r,
                            _ = self.cancel.cancelled() => return,
                        }
                    }
                };
                if let Err(CapacityError::Unavailable(e)) = &result {
                    unreachable = Some(e.clone());
                }
                self.renewed(&lease, asked, every, result);
            }
        }
    }

    /// Apply the outcome of one renewal of `lease`.
    fn renewed(
        self: &Arc<Self>,
        lease: &Lease,
        asked: Instant,
        every: Duration,
        result: Result<(), CapacityError>,
    ) {
        let mut st = self.state();
        // Released meanwhile: nothing to keep.
        let Some(kept) = st.kept.get_mut(&lease.id) else {
            return;
        };
        let error = match result {
            Ok(()) => {
                kept.valid_until = asked + lease.ttl;
                return;
            }
            Err(CapacityError::Unavailable(e)) if Instant::now() + every < kept.valid_until => {
                warn!(stream_id = %kept.lease.holder, account = %lease.account, error = %e, "lease renewal failed; retrying while the lease lasts");
                return;
            }
            Err(e) => e,
        };
        let Some(kept) = st.kept.remove(&lease.id) else {
            return;
        };
        kept.lost.store(true, Ordering::SeqCst);
        warn!(stream_id = %kept.lease.holder, account = %lease.account, error = %error, "capacity lease lost");
        let job = st
            .sessions
            .get(&kept.lease.holder)
            .filter(|s| {
                s.info.state == SessionState::Live
                    && s.slot.as_ref().is_some_and(|h| h.lease.id == lease.id)
            })
            .map(|s| MigrationJob::of(s, &lease.account, FailoverReason::CapacityLost));
        // A lease still in use by a start or migration is handled when it finishes
        // (`install_slot` sees the flag).
        if let Some(job) = job {
            self.start_migrations(&mut st, vec![job]);
        }
    }

    /// Stop keeping a slot and give it back.
    async fn release_slot(&self, slot: HeldSlot) {
        self.state().kept.remove(&slot.lease.id);
        self.release_lease(&slot.lease).await;
    }

    /// Give a lease back to the ledger. A failed release only delays the slot's return until
    /// its TTL runs out.
    async fn release_lease(&self, lease: &Lease) {
        match self
            .ledger_call(Duration::ZERO, self.ledger.release(lease))
            .await
        {
            Ok(_) => debug!(account = %lease.account, holder = %lease.holder, "slot released"),
            Err(e) => {
                warn!(account = %lease.account, error = %e, "slot release failed; it frees when the lease expires")
            }
        }
    }

    /// Leave `provider`, then give back the session's slot on it (in that order: the slot is
    /// free only once the stream really stopped).
    async fn vacate(&self, provider: &str, stream_id: &str, gen: u64) {
        self.leave(provider, stream_id).await;
        let slot = self
            .state()
            .session_mut(stream_id, gen)
            .and_then(|s| s.slot.take());
        if let Some(slot) = slot {
            self.release_slot(slot).await;
        }
    }

    /// Hand a connected stream's slot to its session, then reconcile: if the lease was lost
    /// while connecting, or the provider left the list (or was disabled) meanwhile, the
    /// session moves at once. The caller has just made the session live on `provider`.
    fn install_slot(
        self: &Arc<Self>,
        st: &mut State,
        stream_id: &str,
        gen: u64,
        provider: &str,
        slot: HeldSlot,
    ) {
        let lost = slot.lost.load(Ordering::SeqCst);
        let Some(s) = st.session_mut(stream_id, gen) else {
            // Cannot happen (the caller holds the session's op lock); never keep a slot for
            // nobody.
            let me = self.clone();
            self.tracker
                .spawn(async move { me.release_slot(slot).await });
            return;
        };
        s.slot = Some(slot);
        let reason = if lost {
            FailoverReason::CapacityLost
        } else if !st.is_listed_active(provider) {
            info!(
                stream_id,
                provider, "provider left the list while connecting; moving"
            );
            FailoverReason::ProviderDisabled
        } else {
            return;
        };
        let job = MigrationJob {
            stream_id: stream_id.to_string(),
            gen,
            from: provider.to_string(),
            reason,
        };
        self.start_migrations(st, vec![job]);
    }

    /// The provider for the next attempt, with its slot in `held`: the retried provider if it
    /// is still listed (keeping its slot), else the best ranked provider with a free slot
    /// (phase 1), else, with `wait_for_capacity`, the first full one to free up (phase 2),
    /// woken by the ledger's hand-off or, for providers the registry reports full, by a
    /// changed list (re-read every `provider_refresh_interval` while waiting).
    async fn choose(
        self: &Arc<Self>,
        req: &ConnectRequest<'_>,
        excluded: &HashSet<String>,
        retried: Option<&str>,
        held: &mut Option<HeldSlot>,
        waited: &mut Duration,
    ) -> Result<Choice, StreamguardError> {
        let usable = |st: &State, name: &str| {
            let info = st
                .providers
                .iter()
                .find(|i| i.name == name && i.is_active)?;
            let slot = st.adapters.get(name)?;
            Some((name.to_string(), info.clone(), slot.clone()))
        };
        if let Some(p) = retried {
            if held.as_ref().is_some_and(|h| h.lease.account == p) {
                if let Some((n, i, a)) = usable(&self.state(), p) {
                    return Ok(Choice::Go(n, i, a));
                }
            }
        }
        if let Some(old) = held.take() {
            self.release_slot(old).await;
        }
        let cfg = &self.config;
        let stream_id = req.stream_id;
        let mut list_rx = self.list_version.subscribe();
        let mut announced = false;
        loop {
            list_rx.borrow_and_update();
            let now = Instant::now();
            let (candidates, reported_full) = {
                let st = self.state();
                let ranked: Vec<_> = st
                    .ranked(now, excluded, req.only_parallel)
                    .iter()
                    .filter_map(|p| usable(&st, p))
                    .collect();
                (ranked, st.reported_full(excluded, req.only_parallel))
            };
            if candidates.is_empty() && reported_full.is_empty() {
                return Ok(Choice::NoneUsable);
            }
            let request = SlotRequest::new(
                stream_id,
                cfg.capacity_lease_ttl,
                candidates
                    .iter()
                    .map(|(n, i, _)| Candidate::new(n.clone(), i.max_streams))
                    .collect(),
            );
            if !candidates.is_empty() {
                // A lease granted as the session is cancelled expires by its TTL.
                let grant = tokio::select! {
                    r = self.ledger_call(Duration::ZERO, self.ledger.try_acquire(&request)) => {
                        r.map_err(Self::capacity_error)?
                    }
                    _ = req.cancel.cancelled() => return Err(self.stop_error(stream_id)),
                };
                if let Grant::Leased(lease) = grant {
                    let Some((n, i, a)) = candidates.into_iter().find(|c| c.0 == lease.account)
                    else {
                        return Err(StreamguardError::Internal(
                            "ledger granted an account not asked for".into(),
                        ));
                    };
                    *held = Some(self.hold(stream_id, lease));
                    return Ok(Choice::Go(n, i, a));
                }
            }
            let full: Vec<String> = candidates
                .iter()
                .map(|c| c.0.clone())
                .chain(reported_full.iter().cloned())
                .collect();
            let left = cfg.capacity_max_wait.saturating_sub(*waited);
            if !cfg.wait_for_capacity || left.is_zero() {
                return Ok(Choice::Full(full));
            }
            if !announced {
                announced = true;
                info!(
                    stream_id,
                    ?full,
                    ?left,
                    "all candidate providers full; waiting for a slot"
                );
                self.emit(EventKind::WaitingForCapacity {
                    stream_id: stream_id.to_string(),
                    providers: full.clone(),
                    max_wait: left,
                });
            }
            let watch_list = !reported_full.is_empty();
            let started = Instant::now();
            let granted = tokio::select! {
                r = self.ledger_call(left, self.ledger.acquire(&request, left)), if !candidates.is_empty() => Some(r),
                _ = list_rx.changed(), if watch_list => None,
                _ = tokio::time::sleep(cfg.provider_refresh_interval.min(left)), if watch_list => {
                    let _ = self.refresh(true).await;
                    None
                }
                _ = req.cancel.cancelled() => return Err(self.stop_error(stream_id)),
            };
            *waited += started.elapsed();
            match granted {
                None => continue,
                Some(Err(CapacityError::Timeout { .. })) => return Ok(Choice::Full(full)),
                Some(Err(e)) => return Err(Self::capacity_error(e)),
                Some(Ok(lease)) => {
                    // Still usable? The list may have changed during the wait.
                    let fresh = usable(&self.state(), &lease.account);
                    match fresh {
                        Some((n, i, a)) if !excluded.contains(&n) => {
                            *held = Some(self.hold(stream_id, lease));
                            return Ok(Choice::Go(n, i, a));
                        }
                        _ => self.release_lease(&lease).await,
                    }
                }
            }
        }
    }

    // ----- start / join / migrate ----------------------------------------------------------

    /// Read the list if none is known or it is older than `provider_list_max_age`, joining a
    /// read already in flight. A failure is fatal only when no list was ever read; with a
    /// last good list the caller waits at most for one read (`request_timeout`).
    async fn ensure_list(self: &Arc<Self>) -> Result<(), StreamguardError> {
        let (known, fresh) = {
            let st = self.state();
            let fresh = st
                .list_fetched_at
                .is_some_and(|t| t.elapsed() < self.config.provider_list_max_age);
            (st.list_known, fresh)
        };
        if fresh {
            return Ok(());
        }
        match self.refresh(false).await {
            Ok(_) => Ok(()),
            Err(e) if !known => Err(e),
            Err(_) => Ok(()),
        }
    }

    /// Create the session of `stream_id` (generation `gen`), or return the live one of the same
    /// role, or refuse if another operation owns it.
    fn create_session(
        &self,
        stream_id: &str,
        role: Role,
        cancel: CancellationToken,
    ) -> Result<Opened, StreamguardError> {
        let mut st = self.state();
        if st.shut_down {
            return Err(StreamguardError::ShutDown);
        }
        if let Some(s) = st.sessions.get(stream_id) {
            if s.info.state == SessionState::Live && s.info.role == role {
                return Ok(Opened::AlreadyLive(s.info.clone()));
            }
            if !s.info.state.is_finished() {
                return Err(StreamguardError::SessionBusy {
                    stream_id: stream_id.to_string(),
                    state: s.info.state,
                });
            }
        }
        st.last_gen += 1;
        let gen = st.last_gen;
        let session = Session {
            info: SessionInfo {
                stream_id: stream_id.to_string(),
                role,
                provider: None,
                state: SessionState::Idle,
                attempts: 0,
                migrations: 0,
                last_error: None,
            },
            gen,
            op_lock: Arc::new(tokio::sync::Mutex::new(())),
            cancel,
            finished_seq: 0,
            slot: None,
        };
        let lock = session.op_lock.clone();
        st.sessions.insert(stream_id.to_string(), session);
        self.set_state(&mut st, stream_id, gen, SessionState::Connecting, None);
        Ok(Opened::New(gen, lock))
    }

    /// Start or join: the session exists (Connecting) from the first instant, so `end_stream`
    /// can cancel it whatever it waits for: the list read, a slot, a backoff, an adapter call.
    /// `cancel` is the session's token; `created` learns its generation.
    async fn open(
        self: Arc<Self>,
        stream_id: &str,
        role: Role,
        cancel: CancellationToken,
        created: Arc<std::sync::OnceLock<u64>>,
    ) -> Result<SessionInfo, StreamguardError> {
        let deadline = Instant::now() + self.config.operation_deadline;
        let (gen, op_lock) = match self.create_session(stream_id, role, cancel.clone())? {
            Opened::New(gen, lock) => (gen, lock),
            Opened::AlreadyLive(info) => return Ok(info),
        };
        let _ = created.set(gen);
        let _op = op_lock.lock_owned().await;
        let operation = match role {
            Role::Publisher => Operation::Start,
            Role::Viewer => Operation::Join,
        };
        // List reads count against the deadline like everything else.
        let listed = tokio::select! {
            r = tokio::time::timeout_at(deadline, self.ensure_list()) => {
                r.unwrap_or(Err(StreamguardError::DeadlineExceeded { attempts: Vec::new() }))
            }
            _ = cancel.cancelled() => Err(self.stop_error(stream_id)),
        };
        let result = match listed {
            Ok(()) => {
                self.connect(ConnectRequest {
                    stream_id,
                    gen,
                    deadline,
                    role,
                    operation,
                    exclude: HashSet::new(),
                    only_parallel: false,
                    cancel: &cancel,
                })
                .await
            }
            Err(e) => Err(e),
        };
        let mut st = self.state();
        match result {
            Ok((provider, slot)) => {
                self.report(ReportKind::Start, &provider, stream_id, None, None);
                self.set_state(
                    &mut st,
                    stream_id,
                    gen,
                    SessionState::Live,
                    Some(provider.clone()),
                );
                let info = st.session(stream_id, gen).map(|s| s.info.clone());
                self.install_slot(&mut st, stream_id, gen, &provider, slot);
                info.ok_or_else(|| StreamguardError::Internal("session vanished".into()))
            }
            Err(e) => {
                let to = match e {
                    StreamguardError::Cancelled(_) | StreamguardError::ShutDown => {
                        SessionState::Ended
                    }
                    _ => SessionState::Failed,
                };
                Self::set_last_error(&mut st, stream_id, gen, e.to_string());
                self.set_state(&mut st, stream_id, gen, to, None);
                Err(e)
            }
        }
    }

    fn stop_error(&self, stream_id: &str) -> StreamguardError {
        if self.cancel.is_cancelled() {
            StreamguardError::ShutDown
        } else {
            StreamguardError::Cancelled(stream_id.to_string())
        }
    }

    /// Announce that the connect loop gave up on `left` (provider and why) for `to`, or for
    /// nothing when no provider can take the stream.
    fn announce_failover(
        &self,
        stream_id: &str,
        left: Option<(String, FailoverReason)>,
        to: Option<&str>,
    ) {
        let Some((from, reason)) = left else { return };
        info!(stream_id, from, to, ?reason, "failover");
        self.emit(EventKind::Failover {
            stream_id: stream_id.to_string(),
            from,
            to: to.map(str::to_string),
            reason,
        });
    }

    /// [`connect_loop`](Self::connect_loop) with its capacity lease: handed to the caller on
    /// success, released on failure.
    async fn connect(
        self: &Arc<Self>,
        req: ConnectRequest<'_>,
    ) -> Result<(String, HeldSlot), StreamguardError> {
        let stream_id = req.stream_id;
        let mut held = None;
        let result = self.connect_loop(req, &mut held).await;
        match (result, held) {
            (Ok(provider), Some(slot)) => Ok((provider, slot)),
            (Ok(provider), None) => {
                // connect_loop only attempts a provider while holding its slot.
                self.leave(&provider, stream_id).await;
                Err(StreamguardError::Internal(format!(
                    "connected to {provider} without a capacity lease"
                )))
            }
            (Err(e), slot) => {
                if let Some(slot) = slot {
                    self.release_slot(slot).await;
                }
                Err(e)
            }
        }
    }

    /// The escalation loop shared by start, join and migration; [`AttemptPolicy`] decides after
    /// each failure whether to retry the same provider after a jittered backoff, fail over, or
    /// stop; no attempt starts at or after the deadline. Every attempt runs under a capacity
    /// lease on its provider, kept across retries of that provider and given back on failover.
    /// A half-open provider gets one attempt (its trial). Returns the provider now carrying
    /// the stream; its lease is left in `held`.
    async fn connect_loop(
        self: &Arc<Self>,
        mut req: ConnectRequest<'_>,
        held: &mut Option<HeldSlot>,
    ) -> Result<String, StreamguardError> {
        let mut deadline = req.deadline;
        let mut waited = Duration::ZERO;
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut tries: HashMap<String, u32> = HashMap::new();
        let mut excluded = std::mem::take(&mut req.exclude);
        let mut retry: Option<(String, Duration)> = None;
        let mut left_behind: Option<(String, FailoverReason)> = None;
        let mut retry_rx = self.retry_now.subscribe();
        let stream_id = req.stream_id;
        loop {
            if req.cancel.is_cancelled() {
                return Err(self.stop_error(stream_id));
            }
            self.may_start(attempts.len(), deadline, &mut attempts)?;
            // Choose: the provider being retried if it is still listed, else the best ranked
            // one with a free slot (or, in phase 2, the first full one to free up).
            let waited_before = waited;
            let choice = self
                .choose(
                    &req,
                    &excluded,
                    retry.as_ref().map(|(p, _)| p.as_str()),
                    held,
                    &mut waited,
                )
                .await?;
            // Queueing for a slot is bounded by `capacity_max_wait`, not by the deadline.
            deadline += waited - waited_before;
            let choice = match choice {
                Choice::Go(p, info, slot) => Some((p, info, slot)),
                Choice::NoneUsable => None,
                Choice::Full(providers) => {
                    self.announce_failover(stream_id, left_behind.take(), None);
                    return Err(StreamguardError::NoCapacity {
                        providers,
                        waited,
                        attempts,
                    });
                }
            };
            self.announce_failover(
                stream_id,
                left_behind.take(),
                choice.as_ref().map(|c| c.0.as_str()),
            );
            let Some((provider, info, slot)) = choice else {
                return Err(if attempts.is_empty() {
                    StreamguardError::NoProviderAvailable {
                        reason: "no active provider with a registered adapter".into(),
                    }
                } else {
                    StreamguardError::AllAttemptsFailed { attempts }
                });
            };
            if let Some((p, delay)) = retry.take() {
                if p == provider && !delay.is_zero() {
                    let until = Instant::now() + delay;
                    if until >= deadline {
                        return Err(StreamguardError::DeadlineExceeded { attempts });
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = retry_rx.changed() => debug!(stream_id, "retry now"),
                        _ = req.cancel.cancelled() => return Err(self.stop_error(stream_id)),
                    }
                }
            }
            // Again right before the call: choosing a provider and waiting take time.
            self.may_start(attempts.len(), deadline, &mut attempts)?;
            let number = attempts.len() as u32 + 1;
            let (trial, ticket) = self.begin_attempt(&provider, stream_id, req.gen);
            self.emit(EventKind::AttemptStarted {
                stream_id: stream_id.to_string(),
                provider: provider.clone(),
                attempt: number,
                operation: req.operation,
            });
            let started = Instant::now();
            // The attempt runs on its own task so `end_stream` need not wait for a slow SDK:
            // if the session is cancelled mid-call, a follow-up task lets the call finish
            // (bounded by `adapter_timeout`) and cleans up after it.
            let given_up = req.cancel.child_token();
            let mut call = {
                let me = self.clone();
                let (slot, info, id, role) =
                    (slot.clone(), info.clone(), stream_id.to_string(), req.role);
                let given_up = given_up.clone();
                self.tracker.spawn(async move {
                    // Older work on this (provider, stream) goes first, its cleanup included.
                    tokio::select! {
                        _ = ticket.turn() => {}
                        _ = given_up.cancelled() => {
                            return (Err(ProviderError::internal("given up before the call")), ticket);
                        }
                    }
                    (me.adapter_connect(&slot, &info, &id, role).await, ticket)
                })
            };
            let abandon = |call, slot| {
                given_up.cancel();
                self.abandon(call, slot, &provider, trial)
            };
            let (result, ticket) = tokio::select! {
                r = &mut call => match r {
                    Ok((r, ticket)) => (r, Some(ticket)),
                    Err(e) => (Err(ProviderError::internal(panic_message(e))), None),
                },
                _ = req.cancel.cancelled() => {
                    abandon(call, held.take());
                    return Err(self.stop_error(stream_id));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    abandon(call, held.take());
                    attempts.push(Attempt {
                        provider: provider.clone(),
                        number,
                        error: ProviderError::timeout("operation deadline reached during the call"),
                    });
                    return Err(StreamguardError::DeadlineExceeded { attempts });
                }
            };
            self.end_attempt(&provider, trial);
            let now = Instant::now();
            let error = match result {
                Ok(()) if req.cancel.is_cancelled() => {
                    // Ended while the call ran: do not leave a stream running nobody owns
                    // (still in the lane, before anything newer on this pair).
                    self.leave(&provider, stream_id).await;
                    drop(ticket);
                    return Err(self.stop_error(stream_id));
                }
                Ok(()) => {
                    self.connected(&provider, stream_id, now - started);
                    info!(stream_id, provider, attempt = number, "connected");
                    return Ok(provider);
                }
                Err(error) => error,
            };
            drop(ticket);
            warn!(stream_id, provider, attempt = number, %error, "attempt failed");
            attempts.push(Attempt {
                provider: provider.clone(),
                number,
                error: error.clone(),
            });
            let on_provider = {
                let n = tries.entry(provider.clone()).or_default();
                *n += 1;
                *n
            };
            let delay = {
                let unit = self
                    .jitter
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .next_unit();
                self.backoff.delay(on_provider, unit)
            };
            let next = self.attempts.after_failure(&Failed {
                class: error.class(),
                attempts: attempts.len() as u32,
                on_provider,
                trial,
                retry_delay: delay,
                now,
                deadline,
            });
            self.failed(&provider, stream_id, req.gen, &error, next, now);
            let retry_in = match next {
                Next::Retry { delay } => {
                    retry = Some((provider.clone(), delay));
                    Some(delay)
                }
                Next::Failover { reason } => {
                    excluded.insert(provider.clone());
                    left_behind = Some((provider.clone(), reason));
                    None
                }
                Next::Stop(_) => None,
            };
            self.emit(EventKind::AttemptFailed {
                stream_id: stream_id.to_string(),
                provider: provider.clone(),
                attempt: number,
                operation: req.operation,
                error: error.clone(),
                retry_in,
            });
            match next {
                Next::Stop(Stop::Rejected) => {
                    return Err(StreamguardError::RequestRejected { provider, error })
                }
                Next::Stop(Stop::Deadline) => {
                    return Err(StreamguardError::DeadlineExceeded { attempts })
                }
                Next::Stop(Stop::BudgetSpent) => {
                    return Err(StreamguardError::AllAttemptsFailed { attempts })
                }
                Next::Failover { .. } if attempts.len() as u32 >= self.config.max_attempts => {
                    // The budget is spent: announce the failover that cannot happen.
                    self.announce_failover(stream_id, left_behind.take(), None);
                }
                _ => {}
            }
        }
    }

    /// [`AttemptPolicy::may_start`] as an error.
    fn may_start(
        &self,
        made: usize,
        deadline: Instant,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(), StreamguardError> {
        match self
            .attempts
            .may_start(made as u32, Instant::now(), deadline)
        {
            None => Ok(()),
            Some(Stop::Deadline) => Err(StreamguardError::DeadlineExceeded {
                attempts: std::mem::take(attempts),
            }),
            Some(_) => Err(StreamguardError::AllAttemptsFailed {
                attempts: std::mem::take(attempts),
            }),
        }
    }

    /// Count an attempt on `provider` and queue it in the (provider, stream) lane. Returns
    /// whether it is the provider's half-open trial, and the lane ticket.
    fn begin_attempt(
        self: &Arc<Self>,
        provider: &str,
        stream_id: &str,
        gen: u64,
    ) -> (bool, LaneTicket) {
        let now = Instant::now();
        let mut st = self.state();
        let rec = st.record(provider);
        rec.attempts += 1;
        let trial = rec.health.is_half_open(now);
        if trial {
            rec.trials_in_flight += 1;
            info!(
                provider,
                stream_id, "half-open: this attempt is the provider's trial"
            );
        }
        if let Some(s) = st.session_mut(stream_id, gen) {
            s.info.attempts += 1;
        }
        let ticket = self.ticket(&mut st, provider, stream_id);
        (trial, ticket)
    }

    /// The attempt on `provider` finished (or was abandoned and then finished).
    fn end_attempt(&self, provider: &str, trial: bool) {
        if trial {
            let mut st = self.state();
            let rec = st.record(provider);
            rec.trials_in_flight = rec.trials_in_flight.saturating_sub(1);
        }
    }

    /// Queue in the lane of (`provider`, `stream_id`). Taken under the state lock, together with
    /// the decision that needs the call, so the order of calls is the order of decisions.
    fn ticket(self: &Arc<Self>, st: &mut State, provider: &str, stream_id: &str) -> LaneTicket {
        let key: LaneKey = (provider.to_string(), stream_id.to_string());
        let ticket = st.lanes.take(&key);
        debug!(?key, ticket, "lane ticket taken");
        LaneTicket {
            shared: self.clone(),
            key,
            ticket,
        }
    }

    /// Bookkeeping of a successful attempt.
    fn connected(self: &Arc<Self>, provider: &str, stream_id: &str, took: Duration) {
        let now = Instant::now();
        let mut st = self.state();
        let rec = st.record(provider);
        rec.successes += 1;
        rec.connect_latency.add(took);
        let change = rec.health.on_success(now, &self.policy);
        let jobs = self.apply_change(
            &mut st,
            provider,
            change,
            FailoverReason::HealthCheckFailed,
            "connected",
            now,
        );
        self.start_migrations(&mut st, jobs);
        debug!(stream_id, provider, "attempt succeeded");
    }

    /// Bookkeeping of a failed attempt: the provider's health (a request's own fault says
    /// nothing about the provider) and its cool-down when the loop gives up on it.
    fn failed(
        self: &Arc<Self>,
        provider: &str,
        stream_id: &str,
        gen: u64,
        error: &ProviderError,
        next: Next,
        now: Instant,
    ) {
        let mut st = self.state();
        Self::set_last_error(&mut st, stream_id, gen, error.to_string());
        let rec = st.record(provider);
        rec.failures += 1;
        if error.class() == ErrorClass::RequestFatal {
            return;
        }
        let change = rec.health.on_failure(now, &self.policy);
        if matches!(next, Next::Failover { .. }) {
            rec.health.cool_down(now, &self.policy);
        }
        let jobs = self.apply_change(
            &mut st,
            provider,
            change,
            FailoverReason::HealthCheckFailed,
            &error.to_string(),
            now,
        );
        self.start_migrations(&mut st, jobs);
    }

    /// An attempt whose operation ended (cancelled, deadline) while the adapter call ran: let
    /// the call finish on its own (bounded by `adapter_timeout`), leave if it succeeded (still
    /// in its lane, so before any newer session's call on the same pair), and only then give
    /// its slot back.
    fn abandon(
        self: &Arc<Self>,
        call: tokio::task::JoinHandle<(Result<(), ProviderError>, LaneTicket)>,
        slot: Option<HeldSlot>,
        provider: &str,
        trial: bool,
    ) {
        let me = self.clone();
        let p = provider.to_string();
        self.tracker.spawn(async move {
            let finished = call.await;
            me.end_attempt(&p, trial);
            if let Ok((Ok(()), ticket)) = finished {
                info!(stream_id = %ticket.key.1, provider = %p, "abandoned call succeeded late; leaving");
                me.leave(&p, &ticket.key.1).await;
            }
            if let Some(slot) = slot {
                me.release_slot(slot).await;
            }
        });
    }

    /// Move a live session off `job.from`.
    async fn migrate(self: Arc<Self>, job: MigrationJob) {
        let MigrationJob {
            stream_id,
            gen,
            from,
            reason,
        } = job;
        let Some((op_lock, cancel, role)) = ({
            let st = self.state();
            st.session(&stream_id, gen)
                .map(|s| (s.op_lock.clone(), s.cancel.clone(), s.info.role))
        }) else {
            return;
        };
        let _op: OwnedMutexGuard<()> = op_lock.lock_owned().await;
        let now = Instant::now();
        let (mut strategy, target) = {
            let st = self.state();
            let still_ours = st.session(&stream_id, gen).is_some_and(|s| {
                s.info.state == SessionState::Migrating
                    && s.info.provider.as_deref() == Some(from.as_str())
            });
            if !still_ours || cancel.is_cancelled() {
                return;
            }
            let mut ex = HashSet::new();
            ex.insert(from.clone());
            let target = st.ranked(now, &ex, false).into_iter().next();
            let parallel = |p: &str| {
                st.adapters
                    .get(p)
                    .is_some_and(|a| a.adapter.supports_parallel_sessions())
            };
            // A lost slot may be someone else's already: stop using it before anything else.
            let mbb = reason != FailoverReason::CapacityLost
                && parallel(&from)
                && target.as_deref().is_some_and(parallel);
            let strategy = if mbb {
                MigrationStrategy::MakeBeforeBreak
            } else {
                MigrationStrategy::BreakBeforeMake
            };
            (strategy, target)
        };
        let health_driven = matches!(
            reason,
            FailoverReason::HealthCheckFailed | FailoverReason::ErrorReported
        );
        self.emit(EventKind::Failover {
            stream_id: stream_id.clone(),
            from: from.clone(),
            to: target.clone(),
            reason,
        });
        self.emit(EventKind::MigrationStarted {
            stream_id: stream_id.clone(),
            from: from.clone(),
            reason,
            strategy,
        });
        info!(stream_id, from, ?reason, ?strategy, "migration started");
        let started = Instant::now();
        let mut exclude = HashSet::new();
        exclude.insert(from.clone());
        let reconnect = |exclude: HashSet<String>, only_parallel: bool| {
            self.connect(ConnectRequest {
                stream_id: &stream_id,
                gen,
                deadline: Instant::now() + self.config.operation_deadline,
                role,
                operation: Operation::Migrate,
                exclude,
                only_parallel,
                cancel: &cancel,
            })
        };
        let (result, gap_start) = match strategy {
            MigrationStrategy::MakeBeforeBreak => {
                let r = reconnect(exclude.clone(), true).await;
                let stopped = matches!(
                    r,
                    Err(StreamguardError::Cancelled(_) | StreamguardError::ShutDown)
                );
                if r.is_ok() {
                    self.vacate(&from, &stream_id, gen).await;
                    (r, None)
                } else if health_driven && !stopped {
                    // The old provider is down and nothing else took the stream: leave it
                    // cleanly (once: the session no longer names it).
                    {
                        let mut st = self.state();
                        self.set_state(&mut st, &stream_id, gen, SessionState::Migrating, None);
                    }
                    self.vacate(&from, &stream_id, gen).await;
                    // No parallel-capable provider took it: the others may still, after a gap.
                    // A request the provider rejected as invalid would be rejected anywhere.
                    if !matches!(r, Err(StreamguardError::RequestRejected { .. })) {
                        info!(stream_id, from, "no parallel-capable provider took the stream; trying the others break-before-make");
                        strategy = MigrationStrategy::BreakBeforeMake;
                        let gap_start = Instant::now();
                        (reconnect(exclude, false).await, Some(gap_start))
                    } else {
                        (r, None)
                    }
                } else {
                    (r, None)
                }
            }
            MigrationStrategy::BreakBeforeMake => {
                self.vacate(&from, &stream_id, gen).await;
                let gap_start = Instant::now();
                {
                    let mut st = self.state();
                    self.set_state(&mut st, &stream_id, gen, SessionState::Migrating, None);
                }
                // A planned move may fall back to the old provider: it is healthy, only no
                // longer preferred. A health-driven move must not go back.
                if !health_driven {
                    exclude.clear();
                }
                (reconnect(exclude, false).await, Some(gap_start))
            }
        };
        let end = Instant::now();
        let mut st = self.state();
        match result {
            Ok((to, slot)) => {
                if let Some(s) = st.session_mut(&stream_id, gen) {
                    s.info.migrations += 1;
                }
                if to != from {
                    self.report(
                        ReportKind::Failover,
                        &from,
                        &stream_id,
                        Some(&to),
                        Some(reason),
                    );
                }
                self.set_state(
                    &mut st,
                    &stream_id,
                    gen,
                    SessionState::Live,
                    Some(to.clone()),
                );
                self.install_slot(&mut st, &stream_id, gen, &to, slot);
                let gap = gap_start.map_or(Duration::ZERO, |g| end - g);
                info!(stream_id, from, to, ?gap, "migration finished");
                self.emit(EventKind::MigrationFinished {
                    stream_id: stream_id.clone(),
                    from,
                    to,
                    gap,
                    duration: end - started,
                    strategy,
                });
            }
            Err(StreamguardError::Cancelled(_) | StreamguardError::ShutDown) => {
                // `end_stream` or `shutdown` owns the session now and will finish it; if the
                // old provider was already left, nothing else will report its end.
                if st
                    .session(&stream_id, gen)
                    .is_some_and(|s| s.info.provider.is_none())
                {
                    self.report(ReportKind::End, &from, &stream_id, None, None);
                }
            }
            Err(e) => {
                Self::set_last_error(&mut st, &stream_id, gen, e.to_string());
                let stay = strategy == MigrationStrategy::MakeBeforeBreak && !health_driven;
                let still_on = stay.then(|| from.clone());
                if stay {
                    self.set_state(
                        &mut st,
                        &stream_id,
                        gen,
                        SessionState::Live,
                        Some(from.clone()),
                    );
                } else {
                    self.report(ReportKind::End, &from, &stream_id, None, None);
                    self.set_state(&mut st, &stream_id, gen, SessionState::Failed, None);
                    // Both strategies gave the old slot back when they left; never keep one
                    // for a session that runs nowhere.
                    if let Some(slot) = st.session_mut(&stream_id, gen).and_then(|s| s.slot.take())
                    {
                        let me = self.clone();
                        self.tracker
                            .spawn(async move { me.release_slot(slot).await });
                    }
                }
                warn!(stream_id, from, error = %e, "migration failed");
                self.emit(EventKind::MigrationFailed {
                    stream_id: stream_id.clone(),
                    from,
                    error: e.to_string(),
                    still_on,
                });
            }
        }
    }

    // ----- end, errors, hints --------------------------------------------------------------

    async fn end(self: Arc<Self>, stream_id: &str) -> Result<(), StreamguardError> {
        let gen = self
            .state()
            .sessions
            .get(stream_id)
            .ok_or_else(|| StreamguardError::UnknownSession(stream_id.to_string()))?
            .gen;
        self.end_gen(stream_id, gen).await
    }

    /// End generation `gen` of `stream_id`: cancel whatever it waits for, then finish it under
    /// its op lock. A no-op if it finished or was replaced.
    async fn end_gen(self: &Arc<Self>, stream_id: &str, gen: u64) -> Result<(), StreamguardError> {
        let (op_lock, cancel) = {
            let st = self.state();
            let Some(s) = st.session(stream_id, gen) else {
                return Ok(());
            };
            if s.info.state.is_finished() {
                return Ok(());
            }
            (s.op_lock.clone(), s.cancel.clone())
        };
        cancel.cancel();
        let _op = op_lock.lock_owned().await;
        self.finish(stream_id, gen, SessionState::Ended).await;
        Ok(())
    }

    /// Stop monitoring the session at once, then leave its provider. The caller holds the
    /// session's op lock.
    async fn finish(self: &Arc<Self>, stream_id: &str, gen: u64, to: SessionState) {
        let (provider, slot) = {
            let mut st = self.state();
            let Some(s) = st.session_mut(stream_id, gen) else {
                return;
            };
            if s.info.state.is_finished() {
                return;
            }
            let p = s.info.provider.take();
            let slot = s.slot.take();
            self.set_state(&mut st, stream_id, gen, to, None);
            // From here a new session of the same id may start: queued behind this ticket, its
            // attempts on this provider come after our leave.
            let ticket = p.as_ref().map(|p| self.ticket(&mut st, p, stream_id));
            (p.zip(ticket), slot)
        };
        if let Some((p, ticket)) = provider {
            self.report(ReportKind::End, &p, stream_id, None, None);
            ticket.turn().await;
            self.leave(&p, stream_id).await;
        }
        // After leaving: the slot is free only once the stream really stopped.
        if let Some(slot) = slot {
            self.release_slot(slot).await;
        }
    }

    fn record_error(
        self: &Arc<Self>,
        stream_id: &str,
        error: ProviderError,
    ) -> Result<(), StreamguardError> {
        self.ensure_running()?;
        let now = Instant::now();
        let mut st = self.state();
        let s = st
            .sessions
            .get(stream_id)
            .ok_or_else(|| StreamguardError::UnknownSession(stream_id.to_string()))?;
        let gen = s.gen;
        let (SessionState::Live, Some(provider)) = (s.info.state, s.info.provider.clone()) else {
            // A start or migration in progress handles its own errors.
            debug!(stream_id, state = ?s.info.state, %error, "error report ignored: session not live");
            return Ok(());
        };
        warn!(stream_id, provider, %error, "error reported by the host");
        Self::set_last_error(&mut st, stream_id, gen, error.to_string());
        let rec = st.record(&provider);
        rec.reported_errors += 1;
        let detail = format!("reported: {error}");
        match error.class() {
            ErrorClass::RequestFatal => {
                // The stream itself is refused (banned, deleted): no provider can carry it.
                let me = self.clone();
                let id = stream_id.to_string();
                let lock = st.sessions[stream_id].op_lock.clone();
                drop(st);
                self.tracker.spawn(async move {
                    let _op = lock.lock_owned().await;
                    // Only this generation: a newer session of the same id is not at fault.
                    me.finish(&id, gen, SessionState::Failed).await;
                });
            }
            ErrorClass::ProviderFatal => {
                let change = rec.health.mark_down(now, &self.policy);
                let jobs = self.apply_change(
                    &mut st,
                    &provider,
                    change,
                    FailoverReason::ErrorReported,
                    &detail,
                    now,
                );
                self.start_migrations(&mut st, jobs);
            }
            ErrorClass::Transient => {
                let change = rec.health.on_reported_error(now, &self.policy);
                if !change.outage {
                    // Confirm (or clear) at once with an independent check.
                    rec.next_check = Some(now);
                }
                let jobs = self.apply_change(
                    &mut st,
                    &provider,
                    change,
                    FailoverReason::ErrorReported,
                    &detail,
                    now,
                );
                self.start_migrations(&mut st, jobs);
            }
        }
        Ok(())
    }

    fn network_changed(&self) {
        info!("network changed: retrying now");
        self.retry_now.send_modify(|g| *g = g.wrapping_add(1));
        let now = Instant::now();
        let mut st = self.state();
        for rec in st.records.values_mut() {
            rec.health.forgive();
            if rec.next_check.is_some() {
                rec.next_check = Some(now);
            }
        }
        if st.next_refresh.is_some() {
            st.next_refresh = Some(now);
        }
        drop(st);
        self.wake.notify_one();
    }

    // ----- registry ------------------------------------------------------------------------

    /// Read the provider list. Single flight: one read is in flight at a time, and its
    /// outcome, success or failure, is shared by every caller waiting for it (a hung registry
    /// costs each waiter one `request_timeout`, not one per caller ahead of it). A `force`d
    /// read (push, `refresh_providers()`) only uses a read that started after it was asked for.
    async fn refresh(self: &Arc<Self>, force: bool) -> ReadOutcome {
        let asked_after = force.then(|| self.state().list_reads);
        loop {
            let (mut done, usable) = {
                let mut st = self.state();
                match &st.list_read {
                    Some(read) => (
                        read.done.clone(),
                        asked_after.is_none_or(|asked| read.seq > asked),
                    ),
                    None => {
                        if let (Some(asked), Some((seq, outcome))) = (asked_after, &st.last_read) {
                            if *seq > asked {
                                return outcome.clone();
                            }
                        }
                        (self.start_read(&mut st), true)
                    }
                }
            };
            let outcome = match done.wait_for(Option::is_some).await {
                Ok(v) => v.clone().unwrap_or(Err(StreamguardError::ShutDown)),
                // The read task was dropped (shutdown).
                Err(_) => Err(StreamguardError::ShutDown),
            };
            if usable {
                return outcome;
            }
        }
    }

    /// Start a list read on its own task (so a caller that gives up does not cancel it for
    /// the others) and register it as the one in flight.
    fn start_read(self: &Arc<Self>, st: &mut State) -> watch::Receiver<Option<ReadOutcome>> {
        st.list_reads += 1;
        let seq = st.list_reads;
        let (tx, rx) = watch::channel(None);
        st.list_read = Some(ListRead {
            seq,
            done: rx.clone(),
        });
        let me = self.clone();
        self.tracker.spawn(async move {
            let outcome = tokio::select! {
                o = me.read_list() => o,
                _ = me.cancel.cancelled() => Err(StreamguardError::ShutDown),
            };
            {
                let mut st = me.state();
                st.list_read = None;
                st.last_read = Some((seq, outcome.clone()));
            }
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    /// One request for the list, bounded by `request_timeout`, and its effects: the new list,
    /// migrations a change calls for, and reconciliation after every successful read,
    /// changed or not.
    async fn read_list(self: &Arc<Self>) -> ReadOutcome {
        let etag = {
            let st = self.state();
            st.list_etag.clone().filter(|_| st.list_known)
        };
        let result = match tokio::time::timeout(
            self.config.request_timeout,
            self.registry.providers(etag.as_deref()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout),
        };
        let now = Instant::now();
        let (providers, etag) = match result {
            Err(e) => {
                warn!(error = %e, "provider list refresh failed; keeping the last good list");
                self.emit(EventKind::BackendError {
                    error: format!("provider list: {e}"),
                });
                return Err(StreamguardError::Backend(e));
            }
            Ok(ProviderList::NotModified) => {
                let mut st = self.state();
                st.list_fetched_at = Some(now);
                self.reconcile(&mut st);
                return Ok(false);
            }
            Ok(ProviderList::Fresh { providers, etag }) => (providers, etag),
        };
        let mut st = self.state();
        st.list_fetched_at = Some(now);
        st.list_etag = etag;
        let first = !st.list_known;
        st.list_known = true;
        if st.providers == providers {
            self.reconcile(&mut st);
            return Ok(false);
        }
        let old = std::mem::replace(&mut st.providers, providers);
        for p in &st.providers.clone() {
            st.record(&p.name);
        }
        let active = st.ranked(now, &HashSet::new(), false);
        info!(?active, "provider list changed");
        self.list_version.send_modify(|v| *v += 1);
        self.emit(EventKind::ProviderListChanged { active });
        if !first {
            let jobs = self.planned_migrations(&st, &old, now);
            self.start_migrations(&mut st, jobs);
        }
        self.reconcile(&mut st);
        Ok(true)
    }

    /// Desired state (the list) against actual state (where sessions run): every live
    /// session on a provider that is no longer listed or active moves off it. Run after every
    /// list read, changed or not; `install_slot` does the same for a session that just went
    /// live.
    fn reconcile(self: &Arc<Self>, st: &mut State) {
        let jobs = st.misplaced();
        if !jobs.is_empty() {
            info!(
                sessions = jobs.len(),
                "reconciling: sessions on providers no longer listed or active"
            );
        }
        self.start_migrations(st, jobs);
    }

    /// After a list change: move sessions whose provider was disabled or removed, and sessions
    /// whose provider lost its place to another one *because of this change* (a provider that
    /// was already preferred before does not pull sessions back: that is failback's job).
    fn planned_migrations(
        &self,
        st: &State,
        old: &[ProviderInfo],
        now: Instant,
    ) -> Vec<MigrationJob> {
        let best = st.ranked(now, &HashSet::new(), false).into_iter().next();
        let mut jobs = Vec::new();
        for s in st.sessions.values() {
            let (SessionState::Live, Some(cur)) = (s.info.state, s.info.provider.as_ref()) else {
                continue;
            };
            let reason = match position(&st.providers, cur) {
                None => Some(FailoverReason::ProviderDisabled),
                Some(cur_new) => best.as_ref().filter(|b| *b != cur).and_then(|b| {
                    let b_new = position(&st.providers, b)?;
                    let was_ahead = match (position(old, b), position(old, cur)) {
                        (Some(bo), Some(co)) => bo < co,
                        _ => false,
                    };
                    (b_new < cur_new && !was_ahead).then_some(FailoverReason::PriorityChanged)
                }),
            };
            if let Some(reason) = reason {
                jobs.push(MigrationJob::of(s, cur, reason));
            }
        }
        jobs
    }

    // ----- session telemetry ---------------------------------------------------------------

    /// Queue a session report (no-op unless `report_sessions`). Never blocks: a full queue
    /// drops the report.
    fn report(
        &self,
        kind: ReportKind,
        provider: &str,
        stream_id: &str,
        to: Option<&str>,
        reason: Option<FailoverReason>,
    ) {
        let Some(tx) = &self.reports else { return };
        let report = SessionReport {
            kind,
            provider: provider.to_string(),
            stream_id: stream_id.to_string(),
            to_provider: to.map(str::to_string),
            reason: reason.map(|r| format!("{r:?}")),
            client_id: Some(self.client_id.clone()),
        };
        if tx.try_send(report).is_err() {
            debug!(stream_id, "session report dropped: queue full");
        }
    }

    /// Sends queued reports in order and, every `provider_refresh_interval` while sessions
    /// run, a keep-alive listing them, so the registry keeps counting this instance's streams
    /// and expires them if it dies without reporting their ends.
    async fn reporter(self: Arc<Self>, mut rx: tokio::sync::mpsc::Receiver<SessionReport>) {
        let every = self.config.provider_refresh_interval;
        let mut next_alive = Instant::now() + every;
        loop {
            let report = tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => return,
                },
                _ = tokio::time::sleep_until(next_alive) => {
                    next_alive = Instant::now() + every;
                    self.send_alive().await;
                    continue;
                }
                _ = self.telemetry_done.cancelled() => {
                    // Shutdown queued the final "end" reports: send them, then stop.
                    while let Ok(r) = rx.try_recv() {
                        self.send_report(r).await;
                    }
                    return;
                }
            };
            self.send_report(report).await;
        }
    }

    async fn send_alive(&self) {
        let live: Vec<LiveSession> = {
            let st = self.state();
            st.sessions
                .values()
                .filter(|s| matches!(s.info.state, SessionState::Live | SessionState::Migrating))
                .filter_map(|s| {
                    Some(LiveSession {
                        provider: s.info.provider.clone()?,
                        stream_id: s.info.stream_id.clone(),
                    })
                })
                .collect()
        };
        for batch in live.chunks(ALIVE_BATCH) {
            let sent = tokio::time::timeout(
                self.config.request_timeout,
                self.registry.alive(&self.client_id, batch),
            )
            .await;
            match sent {
                Ok(Ok(())) => debug!(sessions = batch.len(), "sessions confirmed to the registry"),
                // An older registry without keep-alives: nothing to do about it.
                Ok(Err(BackendError::Status(404))) => {
                    debug!("registry has no keep-alive route");
                    return;
                }
                Ok(Err(e)) => warn!(error = %e, "session keep-alive failed"),
                Err(_) => warn!("session keep-alive timed out"),
            }
        }
    }

    async fn send_report(&self, report: SessionReport) {
        match tokio::time::timeout(self.config.request_timeout, self.registry.report(&report)).await
        {
            Ok(Ok(())) => debug!(?report, "session reported"),
            Ok(Err(e)) => warn!(error = %e, kind = ?report.kind, "session report failed"),
            Err(_) => warn!(kind = ?report.kind, "session report timed out"),
        }
    }

    // ----- push channel --------------------------------------------------------------------

    fn any_live(&self) -> bool {
        self.state()
            .sessions
            .values()
            .any(|s| matches!(s.info.state, SessionState::Live | SessionState::Migrating))
    }

    /// Follow the registry's push channel while any session is live (an idle app holds no
    /// connection open), reconnecting with jittered backoff. Polling goes on regardless, so a
    /// registry without push, or a broken channel, only costs latency.
    async fn push_loop(self: Arc<Self>) {
        let mut failures: u32 = 0;
        let mut retry_rx = self.retry_now.subscribe();
        loop {
            while !self.any_live() {
                tokio::select! {
                    _ = self.push_wake.notified() => {}
                    _ = self.cancel.cancelled() => return,
                }
            }
            let me = self.clone();
            let on_event = move |ev: PushEvent| me.on_push(ev);
            let idle = async {
                loop {
                    self.push_wake.notified().await;
                    if !self.any_live() {
                        break;
                    }
                }
            };
            let outcome = tokio::select! {
                r = self.registry.follow(&on_event) => Some(r),
                _ = idle => None,
                _ = self.cancel.cancelled() => return,
            };
            let delay = match outcome {
                None => continue,
                Some(Err(BackendError::PushUnsupported)) => {
                    debug!("registry has no push channel; polling only");
                    // The registry may be upgraded while we run: ask again now and then.
                    Duration::from_secs(300)
                }
                Some(Ok(())) => {
                    failures = 0;
                    Duration::from_secs(1)
                }
                Some(Err(e)) => {
                    failures = failures.saturating_add(1);
                    debug!(error = %e, failures, "push channel failed; polling meanwhile");
                    let unit = self
                        .jitter
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .next_unit();
                    Backoff {
                        base: Duration::from_secs(1),
                        cap: Duration::from_secs(30),
                    }
                    .delay(failures, unit)
                }
            };
            // Like every backoff wait in the engine, this one ends on `network_changed()`
            // (the loop then connects once).
            retry_rx.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = retry_rx.changed() => debug!("network changed: reconnecting the push channel now"),
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    fn on_push(self: &Arc<Self>, ev: PushEvent) {
        debug!(?ev, "push");
        match ev {
            PushEvent::ProvidersChanged => {
                let me = self.clone();
                self.tracker.spawn(async move {
                    let _ = me.refresh(true).await;
                });
            }
            PushEvent::HealthChanged {
                provider,
                healthy: false,
            } => {
                // Check our own view now instead of at the next interval.
                let now = Instant::now();
                let mut st = self.state();
                if let Some(rec) = st.records.get_mut(&provider) {
                    if rec.next_check.is_some() {
                        rec.next_check = Some(now);
                    }
                }
                drop(st);
                self.wake.notify_one();
            }
            PushEvent::HealthChanged { .. } => {}
        }
    }

    // ----- monitor -------------------------------------------------------------------------

    /// The background loop: run checks and list refreshes when due, then sleep until the next
    /// deadline or a wake-up, re-reading the state every turn.
    async fn monitor(self: Arc<Self>) {
        loop {
            let now = Instant::now();
            let (due, refresh_due, next) = self.schedule(now);
            for provider in due {
                let me = self.clone();
                let span = debug_span!("check", provider = %provider);
                self.tracker
                    .spawn(async move { me.check(provider).await }.instrument(span));
            }
            if refresh_due {
                let me = self.clone();
                self.tracker.spawn(async move {
                    let _ = me.refresh(false).await;
                });
            }
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = sleep => {}
            }
        }
        debug!("monitor stopped");
    }

    fn schedule(&self, now: Instant) -> (Vec<String>, bool, Option<Instant>) {
        let mut st = self.state();
        let monitored = st.monitored(now, self.config.failback);
        for p in &monitored {
            st.record(p);
        }
        let interval = self.config.health_check_interval;
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (name, rec) in st.records.iter_mut() {
            if !monitored.contains(name) {
                // No live session on it: stop checking at once (the seed app's timer kept
                // running after the stream ended).
                rec.next_check = None;
                continue;
            }
            let at = *rec.next_check.get_or_insert(now + interval);
            if rec.check_in_flight {
                continue;
            }
            if at <= now {
                rec.check_in_flight = true;
                due.push(name.clone());
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        let live = st
            .sessions
            .values()
            .any(|s| s.info.state == SessionState::Live);
        let mut refresh_due = false;
        if live {
            let at = *st
                .next_refresh
                .get_or_insert(now + self.config.provider_refresh_interval);
            if at <= now {
                refresh_due = true;
                let at = now + self.config.provider_refresh_interval;
                st.next_refresh = Some(at);
                next = Some(next.map_or(at, |n| n.min(at)));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        } else {
            st.next_refresh = None;
        }
        (due, refresh_due, next)
    }

    /// One health check of `provider`: the registry's verdict and the adapter's probe, in
    /// parallel. Any "unhealthy" fails the check; silence from both changes nothing.
    async fn check(self: Arc<Self>, provider: String) {
        let started = Instant::now();
        let slot = self.state().adapters.get(&provider).cloned();
        let registry = async {
            match tokio::time::timeout(self.config.request_timeout, self.registry.health(&provider))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(BackendError::Timeout),
            }
        };
        let probe = async {
            match &slot {
                Some(slot) => Some(
                    self.call_adapter(
                        "probe",
                        slot.adapter.clone(),
                        |a: Arc<dyn ProviderAdapter>| async move { a.probe().await },
                    )
                    .await,
                ),
                None => None,
            }
        };
        let (reg, probe) = tokio::join!(registry, probe);
        let now = Instant::now();
        let mut verdicts = Vec::new();
        match reg {
            Ok(h) if h.healthy => verdicts.push(Verdict::Good),
            Ok(h) => verdicts.push(Verdict::Bad(format!("registry reports {:?}", h.status))),
            Err(BackendError::UnknownProvider(p)) => {
                verdicts.push(Verdict::Bad(format!("registry does not know {p:?}")))
            }
            Err(e) => {
                self.emit(EventKind::BackendError {
                    error: format!("health of {provider}: {e}"),
                });
                verdicts.push(Verdict::Unknown);
            }
        }
        match probe {
            Some(Ok(())) => verdicts.push(Verdict::Good),
            Some(Err(e)) if e.kind == ProviderErrorKind::NotSupported => {
                verdicts.push(Verdict::Unknown)
            }
            Some(Err(e)) => verdicts.push(Verdict::Bad(format!("probe: {e}"))),
            None => {}
        }
        let bad: Vec<&str> = verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Bad(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        let good = verdicts.iter().any(|v| matches!(v, Verdict::Good));
        let mut st = self.state();
        let rec = st.record(&provider);
        rec.check_in_flight = false;
        let change = if !bad.is_empty() {
            rec.checks += 1;
            rec.failed_checks += 1;
            rec.last_check_at = Some(now);
            Some((rec.health.on_failure(now, &self.policy), bad.join("; ")))
        } else if good {
            rec.checks += 1;
            rec.last_check_at = Some(now);
            rec.check_latency.add(now - started);
            Some((
                rec.health.on_success(now, &self.policy),
                "check passed".to_string(),
            ))
        } else {
            None
        };
        let delay = rec.health.next_check_delay(&self.policy);
        if rec.next_check.is_some() {
            rec.next_check = Some(now + delay);
        }
        debug!(provider, good, bad = ?bad, ?delay, "health check");
        if let Some((change, detail)) = change {
            let reason = if change.confirmed_report {
                FailoverReason::ErrorReported
            } else {
                FailoverReason::HealthCheckFailed
            };
            let jobs = self.apply_change(&mut st, &provider, change, reason, &detail, now);
            self.start_migrations(&mut st, jobs);
            if self.config.failback {
                let jobs = self.failback_jobs(&st, now);
                self.start_migrations(&mut st, jobs);
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// With failback on: sessions not on the best provider move back once that provider has
    /// been healthy for `failback_stability`.
    fn failback_jobs(&self, st: &State, now: Instant) -> Vec<MigrationJob> {
        let Some(best) = st.ranked(now, &HashSet::new(), false).into_iter().next() else {
            return Vec::new();
        };
        let stable = st
            .records
            .get(&best)
            .and_then(|r| r.health.stable_for(now))
            .is_some_and(|d| d >= self.config.failback_stability);
        if !stable || st.is_cooling(&best, now) {
            return Vec::new();
        }
        let Some(best_pos) = position(&st.providers, &best) else {
            return Vec::new();
        };
        st.sessions
            .values()
            .filter(|s| s.info.state == SessionState::Live)
            .filter_map(|s| {
                let cur = s.info.provider.as_ref()?;
                let cur_pos = position(&st.providers, cur).unwrap_or(usize::MAX);
                (cur != &best && best_pos < cur_pos)
                    .then(|| MigrationJob::of(s, cur, FailoverReason::Failback))
            })
            .collect()
    }

    // ----- stats and shutdown --------------------------------------------------------------

    fn stats(&self) -> Vec<ProviderStats> {
        let now = Instant::now();
        let st = self.state();
        let mut names: Vec<(u32, String)> = st
            .providers
            .iter()
            .map(|p| (p.priority, p.name.clone()))
            .collect();
        for name in st.records.keys() {
            if !st.providers.iter().any(|p| &p.name == name) {
                names.push((u32::MAX, name.clone()));
            }
        }
        names.sort();
        names
            .into_iter()
            .map(|(_, name)| {
                // A provider only known from the list has an empty record: all zeros.
                let empty = ProviderRecord::default();
                let r = st.records.get(&name).unwrap_or(&empty);
                let live = st.live_on(&name).len() as u32;
                ProviderStats {
                    provider: name,
                    status: r.health.status(),
                    attempts: r.attempts,
                    successes: r.successes,
                    failures: r.failures,
                    reported_errors: r.reported_errors,
                    consecutive_failures: r.health.consecutive_failures(),
                    health_checks: r.checks,
                    failed_health_checks: r.failed_checks,
                    last_check_at: r.last_check_at.map(|t| self.since_epoch(t)),
                    avg_check_latency: r.check_latency.get(),
                    avg_connect_latency: r.connect_latency.get(),
                    uptime_percent: (r.checks > 0)
                        .then(|| 100.0 * (r.checks - r.failed_checks) as f64 / r.checks as f64),
                    live_sessions: live,
                    times_ejected: r.health.times_ejected(),
                    cooling_for: r.health.cooling_left(now),
                }
            })
            .collect()
    }

    async fn shutdown(self: Arc<Self>) {
        let sessions: Vec<(String, u64, Arc<tokio::sync::Mutex<()>>)> = {
            let mut st = self.state();
            st.shut_down = true;
            st.sessions
                .values()
                .filter(|s| !s.info.state.is_finished())
                .map(|s| (s.info.stream_id.clone(), s.gen, s.op_lock.clone()))
                .collect()
        };
        info!(sessions = sessions.len(), "shutting down");
        self.cancel.cancel();
        let mut leaving = tokio::task::JoinSet::new();
        for (id, gen, lock) in sessions {
            let me = self.clone();
            leaving.spawn(async move {
                let _op = lock.lock_owned().await;
                me.finish(&id, gen, SessionState::Ended).await;
            });
        }
        while leaving.join_next().await.is_some() {}
        self.telemetry_done.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        info!("shut down");
    }
}

fn prune_finished(st: &mut State) {
    let finished = st
        .sessions
        .values()
        .filter(|s| s.info.state.is_finished())
        .count();
    if finished <= FINISHED_SESSIONS_KEPT {
        return;
    }
    if let Some(oldest) = st
        .sessions
        .values()
        .filter(|s| s.info.state.is_finished())
        .min_by_key(|s| s.finished_seq)
        .map(|s| s.info.stream_id.clone())
    {
        st.sessions.remove(&oldest);
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
