//! The records and plain enums that cross to Dart. Only shapes the generated Dart can express
//! without freezed/build_runner: structs, plain enums and primitives. The engine's `EventKind`
//! (an enum with data) is flattened into [`StreamEvent`]; durations are whole milliseconds.
//!
//! `ManagerConfig`, the plain enums, `ProviderInfo`, `SessionInfo` and `ProviderStats` (with
//! their conversions and the config defaults) are defined once for both bindings in
//! `streamguard-mirror` and expanded here, where the code generator reads them as this
//! module's own types. The errors and the event keep a Dart-only flat shape.

use flutter_rust_bridge::frb;

streamguard_mirror::manager_config!(
    frb,
    // `#[frb]` on the struct lets its fields carry `#[frb(default = ..)]`.
    #[frb(non_opaque)]
    #[derive(Clone, PartialEq)]
);

// ProviderErrorKind, SessionState, Role, Operation, FailoverReason, MigrationStrategy and
// HealthStatus, each with `From` the engine's enum (and back, for ProviderErrorKind).
streamguard_mirror::plain_enums!(#[derive(Debug, Clone, Copy, PartialEq, Eq)]);

// ProviderInfo, SessionInfo and ProviderStats (average latencies in fractional
// milliseconds), each with `From` the engine's struct.
streamguard_mirror::plain_records!(latency = f64, #[derive(Debug, Clone, PartialEq)]);

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
    /// A viewer's stream is not live (no live publisher placement), and `wait_for_live_ms` was
    /// 0 or ran out.
    StreamNotLive,
    /// A viewer's stream is published only on providers without a registered adapter
    /// (`providers` names them: the publisher's, then its standbys).
    NoAdapterForPlacement,
    /// Another client publishes this stream (its placement claim is alive).
    StreamClaimedByOther,
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
    /// Where a stream is published changed: a publisher's own claim, or a viewer learning of
    /// its publisher's move or stop (`stream_id`, `provider`, `epoch`, `live`, `providers`:
    /// the hot standbys, best first).
    PlacementChanged,
    /// A publisher's hot standby became its primary at once, without a start (`stream_id`,
    /// `from`, `to`, `epoch`: the placement epoch claimed for `to`).
    StandbyPromoted,
    /// A provider's media quality score moved into another band (`provider`, `score`,
    /// `quality_from`: null on its first sample, `quality_to`).
    QualityChanged,
    /// The engine asked an adapter to lower a stream's quality instead of moving (`stream_id`,
    /// `provider`, `level`).
    QualityLowered,
    /// The registry's view of a stream's audience on a provider changed (`stream_id`,
    /// `provider`, `viewers`, `stalled`, `outage`).
    AudienceChanged,
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
    /// The full providers a session waits for, best first (waiting for capacity); the hot
    /// standbys of a stream, best first (placement changes).
    #[frb(default = [])]
    pub providers: Vec<String>,
    /// The longest the session will still wait for a slot (waiting for capacity).
    pub max_wait_ms: Option<u64>,
    /// The placement's epoch (placement changes).
    pub epoch: Option<u64>,
    /// The publisher's claim is alive (placement changes).
    pub live: Option<bool>,
    /// A provider's moving quality score, 0 to 100 (quality changes).
    pub score: Option<f64>,
    /// The quality band left (quality changes; null on a provider's first sample).
    pub quality_from: Option<QualityBand>,
    /// The quality band entered (quality changes).
    pub quality_to: Option<QualityBand>,
    /// The quality level asked of the adapter (quality lowered).
    pub level: Option<QualityLevel>,
    /// Viewers reporting on the provider (audience changes).
    pub viewers: Option<u32>,
    /// Of them, stalled (audience changes).
    pub stalled: Option<u32>,
    /// The registry confirmed an outage (audience changes).
    pub outage: Option<bool>,
    /// Detail: the migration or backend error, or what changed a provider's health.
    pub message: Option<String>,
}

/// One media quality sample from the vendor SDK (`recordQuality`), about one per second. Only
/// `interval_ms` is required; fill in what the SDK knows.
#[frb(non_opaque)]
#[derive(Debug, Clone, PartialEq)]
pub struct QualitySample {
    /// The time the sample covers, in milliseconds (greater than zero).
    pub interval_ms: u64,
    /// Frames received (viewer) or sent (publisher) in the interval.
    #[frb(default = 0)]
    pub frames: u32,
    /// Milliseconds of the interval without media (at most `interval_ms`).
    #[frb(default = 0)]
    pub stall_ms: u64,
    /// Media bitrate over the interval, in kbit/s.
    pub bitrate_kbps: Option<u32>,
    /// Round-trip time to the provider's edge, in milliseconds.
    pub rtt_ms: Option<u64>,
    /// Packet loss over the interval, in percent (0 to 100).
    pub loss_percent: Option<f64>,
}
