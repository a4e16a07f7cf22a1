//! Everything the engine decides is announced as a [`StreamEvent`], and the state of sessions
//! and providers can be read as [`SessionInfo`] and [`ProviderStats`].

use crate::error::ProviderError;
use crate::health::HealthStatus;
use serde::Serialize;
use std::time::Duration;

/// Lifecycle of one session (one stream id on this device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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

impl SessionState {
    /// True for `Failed` and `Ended`: nothing runs for this session any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Failed | Self::Ended)
    }
}

/// Which side of a stream a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Role {
    /// Broadcaster: `start_stream`.
    Publisher,
    /// Viewer: `join_stream`.
    Viewer,
}

/// What an attempt was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Operation {
    /// `start_stream`.
    Start,
    /// `join_stream`.
    Join,
    /// Moving a live session to another provider.
    Migrate,
    /// A publisher starting a hot standby copy of its stream (`standby_providers`).
    Standby,
}

/// Why the engine moved away from a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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
    /// A viewer follows its publisher, which moved to another provider (the placement
    /// directory's new epoch).
    PlacementChanged,
    /// The registry confirmed that the stream's viewers on the provider are stalled (enough of
    /// them, see the registry's audience settings): the publisher's provider failed for its
    /// audience even though the publisher itself sees nothing wrong.
    AudienceStalled,
}

impl FailoverReason {
    /// The provider failed (health checks or a confirmed SDK error), as opposed to a planned
    /// move: such a move never goes back to the provider it left.
    pub fn is_health_driven(self) -> bool {
        matches!(
            self,
            Self::HealthCheckFailed | Self::ErrorReported | Self::AudienceStalled
        )
    }
}

/// How a migration was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum MigrationStrategy {
    /// Leave the old provider, then start on the new one (the default).
    BreakBeforeMake,
    /// Start on the new provider, then leave the old (both adapters support parallel sessions).
    MakeBeforeBreak,
}

/// One event, stamped with the time since the manager was created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamEvent {
    /// Time since the manager was created (tokio time, so virtual in paused tests).
    pub at: Duration,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum EventKind {
    /// An attempt on a provider began.
    AttemptStarted {
        /// Session.
        stream_id: String,
        /// Provider tried.
        provider: String,
        /// 1-based attempt number within the operation.
        attempt: u32,
        /// Start, join or migrate.
        operation: Operation,
    },
    /// An attempt failed.
    AttemptFailed {
        /// Session.
        stream_id: String,
        /// Provider tried.
        provider: String,
        /// 1-based attempt number within the operation.
        attempt: u32,
        /// Start, join or migrate.
        operation: Operation,
        /// The adapter's error.
        error: ProviderError,
        /// Wait before retrying the same provider, if it will be retried.
        retry_in: Option<Duration>,
    },
    /// The engine decided to leave a provider for another.
    Failover {
        /// Session concerned.
        stream_id: String,
        /// Provider left behind.
        from: String,
        /// Provider to try next, if any is left.
        to: Option<String>,
        /// Why.
        reason: FailoverReason,
    },
    /// A live session began moving to another provider.
    MigrationStarted {
        /// Session.
        stream_id: String,
        /// Provider it runs on.
        from: String,
        /// Why it moves.
        reason: FailoverReason,
        /// How.
        strategy: MigrationStrategy,
    },
    /// A migration completed.
    MigrationFinished {
        /// Session.
        stream_id: String,
        /// Old provider.
        from: String,
        /// New provider.
        to: String,
        /// How long no provider carried the stream (zero for make-before-break).
        gap: Duration,
        /// How long the whole migration took.
        duration: Duration,
        /// How.
        strategy: MigrationStrategy,
    },
    /// A migration found no provider to move to.
    MigrationFailed {
        /// Session.
        stream_id: String,
        /// Provider it was on.
        from: String,
        /// Why it failed.
        error: String,
        /// Where the session still runs (a planned move that failed keeps the old provider).
        still_on: Option<String>,
    },
    /// A provider's health status changed.
    HealthChanged {
        /// Provider.
        provider: String,
        /// Old status.
        from: HealthStatus,
        /// New status.
        to: HealthStatus,
        /// Failures since its last success.
        consecutive_failures: u32,
        /// What caused the change.
        detail: String,
    },
    /// The registry's provider list changed.
    ProviderListChanged {
        /// Active providers, preferred first.
        active: Vec<String>,
    },
    /// The registry could not be read; the last good list stays in use.
    BackendError {
        /// What failed.
        error: String,
    },
    /// Every candidate provider is full: the operation waits for the first slot to free up
    /// (`wait_for_capacity`), at most `max_wait`.
    WaitingForCapacity {
        /// The session that waits.
        stream_id: String,
        /// The full providers it waits for, best first.
        providers: Vec<String>,
        /// The longest it will still wait.
        max_wait: Duration,
    },
    /// Where a stream is published changed, as this engine learned it: its own claim as a
    /// publisher (after going live or moving), or the registry's placement as a viewer (a move
    /// of its publisher, or the publisher stopping: `live` false).
    PlacementChanged {
        /// The stream.
        stream_id: String,
        /// The provider carrying its publisher.
        provider: String,
        /// The placement's epoch (increases with every move of the publisher).
        epoch: u64,
        /// The publisher's claim is alive.
        live: bool,
        /// Providers carrying hot standby copies of the stream (`standby_providers`), best
        /// first; empty without standbys.
        standby: Vec<String>,
    },
    /// A provider's media quality score (from `record_quality` samples, see
    /// [`quality`](crate::quality)) moved into another band.
    QualityChanged {
        /// The provider.
        provider: String,
        /// Its moving score now, 0 to 100.
        score: f64,
        /// The band it left (`None`: its first sample).
        from: Option<crate::quality::QualityBand>,
        /// The band it is in now.
        to: crate::quality::QualityBand,
    },
    /// The engine asked an adapter to lower a stream's quality (`set_quality`) instead of
    /// moving: a viewer stalling while the rest of the audience watches fine, or a publisher
    /// whose uplink is bad on every provider.
    QualityLowered {
        /// The stream.
        stream_id: String,
        /// The provider carrying it.
        provider: String,
        /// The level asked for.
        level: crate::provider::QualityLevel,
    },
    /// The registry's view of a stream's audience on a provider changed (its `audience` push
    /// event): how many viewers, how many stalled, and whether that is a confirmed outage.
    AudienceChanged {
        /// The stream.
        stream_id: String,
        /// The provider its viewers watch on.
        provider: String,
        /// Viewers reporting.
        viewers: u32,
        /// Of them, stalled.
        stalled: u32,
        /// The registry confirmed an outage (its minimum count and share reached).
        outage: bool,
    },
    /// A publisher's primary provider failed (or a planned move chose a standby) and a hot
    /// standby became the primary at once, without starting anything: `epoch` is the
    /// placement's new epoch. Viewers already on `to` see no gap.
    StandbyPromoted {
        /// The stream.
        stream_id: String,
        /// The provider left.
        from: String,
        /// The standby that is the primary now.
        to: String,
        /// The placement epoch claimed for `to` (0 if the registry has no directory).
        epoch: u64,
    },
    /// A session changed state.
    SessionStateChanged {
        /// Session.
        stream_id: String,
        /// Old state.
        from: SessionState,
        /// New state.
        to: SessionState,
        /// Provider it runs on now, if any.
        provider: Option<String>,
    },
}

/// A snapshot of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// Publisher: providers carrying hot standby copies of the stream (`standby_providers`),
    /// best first. Empty for viewers and without standbys.
    pub standby: Vec<String>,
}

/// Statistics of one provider, as seen by this manager.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// When it was last checked (time since the manager was created).
    pub last_check_at: Option<Duration>,
    /// Moving average of health-check round trips.
    pub avg_check_latency: Option<Duration>,
    /// Moving average of successful start/join calls.
    pub avg_connect_latency: Option<Duration>,
    /// Share of health checks that passed, in percent; `None` before the first check.
    pub uptime_percent: Option<f64>,
    /// Sessions live on it now (primaries only; standby copies are in `standby_sessions`).
    pub live_sessions: u32,
    /// Hot standby copies of publishers' streams it carries now (each holds a capacity slot).
    pub standby_sessions: u32,
    /// Its media quality score, 0 to 100 (moving average of `record_quality` samples, see
    /// [`quality`](crate::quality)); `None` before the first sample.
    pub quality_score: Option<f64>,
    /// Times it was ejected (cooled down).
    pub times_ejected: u32,
    /// Time left in its cool-down.
    pub cooling_for: Option<Duration>,
}
