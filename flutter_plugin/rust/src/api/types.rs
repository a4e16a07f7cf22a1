//! The records and plain enums that cross to Dart. Only shapes the generated Dart can express
//! without freezed/build_runner: structs, plain enums and primitives. The engine's `EventKind`
//! (an enum with data) is flattened into [`StreamEvent`]; durations are whole milliseconds.

use flutter_rust_bridge::frb;

/// Everything a `StreamingProviderManager` can be tuned by. Every field but `base_url` has
/// the engine's default in the generated Dart constructor (`ManagerConfig(baseUrl: ...)`);
/// `default_manager_config` returns the engine's own defaults so tests can check that the two
/// agree. Durations are whole milliseconds. Validated when the manager is created.
// `#[frb]` on the struct lets its fields carry `#[frb(default = ..)]`.
#[frb(non_opaque)]
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerConfig {
    /// Base URL of the provider registry; `/streaming/providers` is appended. `https` is
    /// required unless the host is loopback or `allow_insecure_http` is set.
    pub base_url: String,
    /// Bearer token sent to the registry. Never logged.
    pub auth_token: Option<String>,
    /// Attempts per start/join/migration, across all providers.
    #[frb(default = 3)]
    pub max_attempts: u32,
    /// Attempts on one provider before failing over to the next.
    #[frb(default = 2)]
    pub attempts_per_provider: u32,
    /// Check interval of a healthy provider that has live sessions.
    #[frb(default = 30000)]
    pub health_check_interval_ms: u64,
    /// Consecutive failures that confirm an outage.
    #[frb(default = 3)]
    pub failure_threshold: u32,
    /// First re-check of a suspect provider; doubles per failure up to the interval.
    #[frb(default = 1000)]
    pub suspect_recheck_delay_ms: u64,
    /// Second outage trigger: failing with no success in between for this long. Null turns
    /// it off.
    #[frb(default = 30000)]
    pub max_unhealthy_for_ms: Option<u64>,
    /// Timeout of every registry request.
    #[frb(default = 5000)]
    pub request_timeout_ms: u64,
    /// Bound on every adapter call: a hanging adapter fails the attempt, not the manager.
    #[frb(default = 10000)]
    pub adapter_timeout_ms: u64,
    /// Ceiling of the first retry's jittered wait.
    #[frb(default = 300)]
    pub backoff_base_ms: u64,
    /// Largest retry wait.
    #[frb(default = 7000)]
    pub backoff_cap_ms: u64,
    /// Bound on a whole start/join/migration including waits.
    #[frb(default = 45000)]
    pub operation_deadline_ms: u64,
    /// How often the provider list is re-read while sessions are live.
    #[frb(default = 30000)]
    pub provider_refresh_interval_ms: u64,
    /// A list younger than this is reused by a new start/join instead of re-read.
    #[frb(default = 5000)]
    pub provider_list_max_age_ms: u64,
    /// Cool-down after a provider's first ejection; multiplied by the ejection count.
    #[frb(default = 30000)]
    pub cooldown_base_ms: u64,
    /// Longest cool-down.
    #[frb(default = 300000)]
    pub cooldown_max_ms: u64,
    /// Move sessions back to a preferred provider once it has been healthy for
    /// `failback_stability_ms`. Off by default: no flapping unless asked for.
    #[frb(default = false)]
    pub failback: bool,
    /// How long a preferred provider must stay healthy before failback.
    #[frb(default = 120000)]
    pub failback_stability_ms: u64,
    /// Largest registry response accepted, in bytes.
    #[frb(default = 1048576)]
    pub max_response_bytes: u64,
    /// Allow `http://` to a non-loopback registry.
    #[frb(default = false)]
    pub allow_insecure_http: bool,
    /// Events buffered per subscriber before the slowest one starts losing the oldest.
    #[frb(default = 1024)]
    pub event_buffer: u32,
    /// Follow the registry's push channel (Server-Sent Events) while sessions are live;
    /// polling continues as the fallback.
    #[frb(default = true)]
    pub push_updates: bool,
    /// Report session start, end and failover to the registry (session telemetry).
    #[frb(default = false)]
    pub report_sessions: bool,
    /// Phase 2 of provider selection: when every candidate provider is at its `max_streams`
    /// limit, wait for a slot and take whichever provider frees one first (first come, first
    /// served), instead of failing at once with `NoCapacity`. Off by default: a live stream
    /// usually wants an answer now; checkers and IPTV profiles want to wait.
    #[frb(default = false)]
    pub wait_for_capacity: bool,
    /// Longest wait for a slot in one start/join/migration, on top of `operation_deadline_ms`
    /// (the deadline bounds the attempts, not the queueing).
    #[frb(default = 600000)]
    pub capacity_max_wait_ms: u64,
    /// Time to live of a stream's slot lease, renewed every third of it while the stream runs,
    /// so that a process that dies without ending its streams frees their slots on a shared
    /// ledger. At least 30 ms.
    #[frb(default = 60000)]
    pub capacity_lease_ttl_ms: u64,
    /// Limit on this manager's concurrent streams over all providers. Null = unlimited; `0` is
    /// rejected.
    pub max_total_streams: Option<u32>,
}

/// What went wrong inside a provider call. The kind, not the message, drives retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// The call did not finish in time (also used when an adapter hangs past the timeout).
    Timeout,
    /// A network error between the device and the provider.
    Network,
    /// The provider answered but is temporarily unable to serve.
    Unavailable,
    /// Credentials were refused: retrying the same provider cannot help.
    Unauthorized,
    /// The provider's quota or capacity is exhausted.
    QuotaExceeded,
    /// The request itself is invalid (unknown or banned stream): no provider can serve it.
    InvalidStream,
    /// The adapter does not implement this operation (the default for `probe`).
    NotSupported,
    /// The adapter failed in an unexpected way (an unknown exception).
    Internal,
}

/// An error reported by (or on behalf of) a provider adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// What kind of failure this is; decides retry, failover or stop.
    pub kind: ProviderErrorKind,
    /// Human-readable detail from the vendor SDK.
    pub message: String,
}

/// One failed attempt of a start, join or migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The provider that was tried.
    pub provider: String,
    /// 1-based number of the attempt within its operation.
    pub number: u32,
    /// Why it failed.
    pub error: ProviderError,
}

/// Which error of the manager this is (the engine's `StreamguardError` variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamguardErrorKind {
    /// The configuration was rejected by validation; the message names the field.
    InvalidConfig,
    /// An argument was rejected (empty stream id, empty provider name...).
    InvalidArgument,
    /// No provider could even be tried: none is active with a registered adapter.
    NoProviderAvailable,
    /// Every attempt failed; `attempts` says which provider failed how.
    AllAttemptsFailed,
    /// A provider said the request itself is invalid; no other provider was tried.
    RequestRejected,
    /// The operation deadline passed before any attempt succeeded.
    DeadlineExceeded,
    /// Every provider that could take the stream is at its `max_streams` limit (or the global
    /// limit `max_total_streams` is reached), and waiting was off (`wait_for_capacity`) or ran
    /// out (`capacity_max_wait_ms`); `providers` names the full ones.
    NoCapacity,
    /// The capacity ledger (shared slot counts, e.g. Redis) could not be asked. Nothing was
    /// started: without the ledger no limit could be guaranteed (fail closed).
    CapacityUnavailable,
    /// The provider registry could not be read and no earlier list is known.
    Backend,
    /// No session with this stream id exists.
    UnknownSession,
    /// The session is in a state that does not allow this call.
    SessionBusy,
    /// The operation was cancelled by `end_stream` while it ran.
    Cancelled,
    /// The manager was shut down.
    ShutDown,
    /// A bug inside Streamguard. Please report it.
    Internal,
}

/// The error of every manager call, thrown to Dart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[frb(dart_code = "
  @override
  String toString() => 'StreamguardError.${kind.name}: $message';
")]
pub struct StreamguardError {
    /// Which error.
    pub kind: StreamguardErrorKind,
    /// The engine's full description.
    pub message: String,
    /// For `AllAttemptsFailed` and `DeadlineExceeded`: every attempt, in order; for
    /// `RequestRejected`: the rejecting attempt; for `NoCapacity`: the attempts that failed
    /// before capacity ran out (often none). Empty otherwise.
    pub attempts: Vec<Attempt>,
    /// For `NoCapacity`: the providers that were full, best first. Empty otherwise.
    #[frb(default = [])]
    pub providers: Vec<String>,
    /// For `NoCapacity`: how long the operation waited for a slot in all, in milliseconds.
    pub waited_ms: Option<u64>,
}

/// A streaming provider as listed by the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Unique name, e.g. `"agora"`; also the key the adapter is registered under.
    pub name: String,
    /// Inactive providers are never chosen.
    pub is_active: bool,
    /// Lower number = preferred. Ties break by name.
    pub priority: u32,
    /// The registry's raw provider configuration (app ids, regions...) as a JSON object.
    pub config_json: String,
    /// Concurrent stream limit, if the registry declares one (0 means unlimited).
    pub max_streams: Option<u32>,
    /// Streams currently running on the provider, if the registry reports it.
    pub active_streams: Option<u32>,
}

/// Lifecycle of one session (one stream id on this device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Created, no attempt made yet.
    Idle,
    /// A start or join is running (attempts, backoff waits).
    Connecting,
    /// Running on a provider.
    Live,
    /// Moving to another provider.
    Migrating,
    /// Every option was exhausted; the stream is not running anywhere.
    Failed,
    /// Ended by `end_stream` or `shutdown`.
    Ended,
}

/// Which side of a stream a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Broadcaster: `start_stream`.
    Publisher,
    /// Viewer: `join_stream`.
    Viewer,
}

/// A snapshot of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Its stream id.
    pub stream_id: String,
    /// Publisher or viewer.
    pub role: Role,
    /// The provider carrying it now, if any.
    pub provider: Option<String>,
    /// Lifecycle state.
    pub state: SessionState,
    /// Attempts made for it so far (all operations).
    pub attempts: u32,
    /// Completed migrations.
    pub migrations: u32,
    /// The last error seen, if any.
    pub last_error: Option<String>,
}

/// What the engine currently believes about a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Never checked or used.
    Unknown,
    /// The last signal was good.
    Healthy,
    /// Failed recently, below the threshold: re-checked quickly to confirm or clear.
    Suspect,
    /// Failure confirmed: sessions were moved away and it is cooling down.
    Unhealthy,
}

/// Statistics of one provider, as seen by this manager.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderStats {
    /// Provider name.
    pub provider: String,
    /// Current health status.
    pub status: HealthStatus,
    /// Start/join/migration attempts on it.
    pub attempts: u64,
    /// Attempts that succeeded.
    pub successes: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Errors reported through `record_error`.
    pub reported_errors: u64,
    /// Failures (of any kind) since its last success.
    pub consecutive_failures: u32,
    /// Health checks run.
    pub health_checks: u64,
    /// Health checks that failed.
    pub failed_health_checks: u64,
    /// When it was last checked (milliseconds since the manager was created).
    pub last_check_at_ms: Option<u64>,
    /// Moving average of health-check round trips.
    pub avg_check_latency_ms: Option<f64>,
    /// Moving average of successful start/join calls.
    pub avg_connect_latency_ms: Option<f64>,
    /// Share of health checks that passed, in percent; null before the first check.
    pub uptime_percent: Option<f64>,
    /// Sessions live on it now.
    pub live_sessions: u32,
    /// Times it was ejected (cooled down).
    pub times_ejected: u32,
    /// Time left in its cool-down.
    pub cooling_for_ms: Option<u64>,
}

/// What an event is about: the engine's `EventKind` variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// An attempt on a provider began (`stream_id`, `provider`, `attempt`, `operation`).
    AttemptStarted,
    /// An attempt failed (`stream_id`, `provider`, `attempt`, `operation`, `error`,
    /// `retry_in_ms` if the same provider will be retried).
    AttemptFailed,
    /// The engine decided to leave a provider (`stream_id`, `from`, `to` if any is left,
    /// `reason`).
    Failover,
    /// A live session began moving (`stream_id`, `from`, `reason`, `strategy`).
    MigrationStarted,
    /// A migration completed (`stream_id`, `from`, `to`, `gap_ms`, `duration_ms`, `strategy`).
    MigrationFinished,
    /// A migration found no provider to move to (`stream_id`, `from`, `message`, `still_on`).
    MigrationFailed,
    /// A provider's health changed (`provider`, `health_from`, `health_to`,
    /// `consecutive_failures`, `message` = what caused it).
    HealthChanged,
    /// The registry's provider list changed (`active`: active providers, preferred first).
    ProviderListChanged,
    /// The registry could not be read; the last good list stays in use (`message`).
    BackendError,
    /// Every candidate provider is full: the operation waits for the first slot to free up
    /// (`wait_for_capacity`), at most `max_wait_ms` (`stream_id`, `providers`: the full ones,
    /// best first, `max_wait_ms`).
    WaitingForCapacity,
    /// A session changed state (`stream_id`, `state_from`, `state_to`, `provider` it runs on
    /// now, if any).
    SessionStateChanged,
}

/// What an attempt was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `start_stream`.
    Start,
    /// `join_stream`.
    Join,
    /// Moving a live session to another provider.
    Migrate,
}

/// Why the engine moved away from a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverReason {
    /// An operation used up `attempts_per_provider` on it.
    RetriesExhausted,
    /// It returned a provider-fatal error (unauthorized, quota...).
    ProviderRejected,
    /// Health checks confirmed an outage.
    HealthCheckFailed,
    /// The vendor SDK reported an error that was confirmed (or was provider-fatal).
    ErrorReported,
    /// The registry disabled or removed it.
    ProviderDisabled,
    /// The registry made another provider preferred.
    PriorityChanged,
    /// A preferred provider has been healthy long enough to move back to it.
    Failback,
    /// The stream's capacity lease could not be renewed (it expired, or the shared ledger was
    /// unreachable for longer than its time to live): its slot may belong to someone else now.
    CapacityLost,
}

/// How a migration was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStrategy {
    /// Leave the old provider, then start on the new one (the default).
    BreakBeforeMake,
    /// Start on the new provider, then leave the old (both adapters support parallel sessions).
    MakeBeforeBreak,
}

/// One engine decision. `kind` says which; the fields that kind carries are set (see
/// [`EventType`]), the others are null (`active` and `providers` are empty).
// `#[frb]` on the struct lets its fields carry `#[frb(default = ..)]`.
#[frb(non_opaque)]
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// Milliseconds since the manager was created.
    pub at_ms: u64,
    /// What happened.
    pub kind: EventType,
    /// The session concerned.
    pub stream_id: Option<String>,
    /// The provider tried (attempts), checked (health) or carrying the session (state changes).
    pub provider: Option<String>,
    /// The provider left behind (failover, migration).
    pub from: Option<String>,
    /// The provider moved to (failover, finished migration).
    pub to: Option<String>,
    /// 1-based attempt number within the operation.
    pub attempt: Option<u32>,
    /// Start, join or migrate.
    pub operation: Option<Operation>,
    /// The adapter's error of a failed attempt.
    pub error: Option<ProviderError>,
    /// Wait before retrying the same provider.
    pub retry_in_ms: Option<u64>,
    /// Why the engine moved away from a provider.
    pub reason: Option<FailoverReason>,
    /// How a migration is carried out.
    pub strategy: Option<MigrationStrategy>,
    /// How long no provider carried the stream (zero for make-before-break).
    pub gap_ms: Option<u64>,
    /// How long the whole migration took.
    pub duration_ms: Option<u64>,
    /// Where the session still runs after a failed migration.
    pub still_on: Option<String>,
    /// Old health status of `provider`.
    pub health_from: Option<HealthStatus>,
    /// New health status of `provider`.
    pub health_to: Option<HealthStatus>,
    /// Failures of `provider` since its last success.
    pub consecutive_failures: Option<u32>,
    /// Old session state.
    pub state_from: Option<SessionState>,
    /// New session state.
    pub state_to: Option<SessionState>,
    /// Active providers, preferred first (provider list changes).
    pub active: Vec<String>,
    /// The full providers a session waits for, best first (waiting for capacity).
    #[frb(default = [])]
    pub providers: Vec<String>,
    /// The longest the session will still wait for a slot (waiting for capacity).
    pub max_wait_ms: Option<u64>,
    /// Detail: the migration or backend error, or what changed a provider's health.
    pub message: Option<String>,
}
