//! Mirror records and enums of the engine's public data, with `From` conversions. Durations
//! cross as whole milliseconds (`*_ms`), the one unit every host language has; the provider
//! config crosses as a JSON string.

use std::time::Duration;
use streamguard as sg;

/// Whole milliseconds, saturating (no duration the engine reports comes near the limit).
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Mirror a fieldless engine enum variant for variant; a new engine variant fails to compile
/// here instead of being mapped silently.
macro_rules! mirror_enum {
    ($name:ident => $($variant:ident),+ $(,)?) => {
        impl From<sg::$name> for $name {
            fn from(v: sg::$name) -> Self {
                match v {
                    $(sg::$name::$variant => Self::$variant,)+
                }
            }
        }
    };
}

/// Lifecycle of one session (one stream id on this device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
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
mirror_enum!(SessionState => Idle, Connecting, Live, Migrating, Failed, Ended);

/// Which side of a stream a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Role {
    /// Broadcaster: `start_stream`.
    Publisher,
    /// Viewer: `join_stream`.
    Viewer,
}
mirror_enum!(Role => Publisher, Viewer);

/// What an attempt was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Operation {
    /// `start_stream`.
    Start,
    /// `join_stream`.
    Join,
    /// Moving a live session to another provider.
    Migrate,
}
mirror_enum!(Operation => Start, Join, Migrate);

/// Why the engine moved away from a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
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
mirror_enum!(FailoverReason => RetriesExhausted, ProviderRejected, HealthCheckFailed,
    ErrorReported, ProviderDisabled, PriorityChanged, Failback, CapacityLost);

/// How a migration was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum MigrationStrategy {
    /// Leave the old provider, then start on the new one (the default).
    BreakBeforeMake,
    /// Start on the new provider, then leave the old (both adapters support parallel sessions).
    MakeBeforeBreak,
}
mirror_enum!(MigrationStrategy => BreakBeforeMake, MakeBeforeBreak);

/// What the engine currently believes about a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
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
mirror_enum!(HealthStatus => Unknown, Healthy, Suspect, Unhealthy);

/// A streaming provider as listed by the registry.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ProviderInfo {
    /// Unique name, e.g. `"agora"`; also the key its adapter is registered under.
    pub name: String,
    /// Inactive providers are never chosen.
    pub is_active: bool,
    /// Lower number = preferred. Ties break by name.
    pub priority: u32,
    /// The registry's raw provider configuration (app ids, regions...) as a JSON object.
    pub config_json: String,
    /// Concurrent stream limit, if the registry declares one (`0` means unlimited).
    pub max_streams: Option<u32>,
    /// Streams currently running on the provider, if the registry reports it.
    pub active_streams: Option<u32>,
}

// The engine's structs are destructured without `..` here and below: a field added to them
// fails to compile until the bindings carry it too.
impl From<sg::ProviderInfo> for ProviderInfo {
    fn from(p: sg::ProviderInfo) -> Self {
        let sg::ProviderInfo {
            name,
            is_active,
            priority,
            config,
            max_streams,
            active_streams,
        } = p;
        Self {
            // A JSON map always serializes; "{}" is only a guard, never expected.
            config_json: serde_json::to_string(&config).unwrap_or_else(|_| "{}".into()),
            name,
            is_active,
            priority,
            max_streams,
            active_streams,
        }
    }
}

/// One event, stamped with the time since the manager was created.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct StreamEvent {
    /// Milliseconds since the manager was created.
    pub at_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

impl From<sg::StreamEvent> for StreamEvent {
    fn from(e: sg::StreamEvent) -> Self {
        Self {
            at_ms: ms(e.at),
            kind: e.kind.into(),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
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
        /// The kind of the adapter's error.
        error_kind: crate::ProviderErrorKind,
        /// The adapter's error text.
        error_detail: String,
        /// Wait before retrying the same provider, if it will be retried.
        retry_in_ms: Option<u64>,
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
        gap_ms: u64,
        /// How long the whole migration took.
        duration_ms: u64,
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
    /// (`wait_for_capacity`), at most `max_wait_ms`.
    WaitingForCapacity {
        /// The session that waits.
        stream_id: String,
        /// The full providers it waits for, best first.
        providers: Vec<String>,
        /// The longest it will still wait, in milliseconds.
        max_wait_ms: u64,
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

impl From<sg::EventKind> for EventKind {
    fn from(k: sg::EventKind) -> Self {
        use sg::EventKind as K;
        match k {
            K::AttemptStarted {
                stream_id,
                provider,
                attempt,
                operation,
            } => Self::AttemptStarted {
                stream_id,
                provider,
                attempt,
                operation: operation.into(),
            },
            K::AttemptFailed {
                stream_id,
                provider,
                attempt,
                operation,
                error,
                retry_in,
            } => Self::AttemptFailed {
                stream_id,
                provider,
                attempt,
                operation: operation.into(),
                error_kind: error.kind.into(),
                error_detail: error.message,
                retry_in_ms: retry_in.map(ms),
            },
            K::Failover {
                stream_id,
                from,
                to,
                reason,
            } => Self::Failover {
                stream_id,
                from,
                to,
                reason: reason.into(),
            },
            K::MigrationStarted {
                stream_id,
                from,
                reason,
                strategy,
            } => Self::MigrationStarted {
                stream_id,
                from,
                reason: reason.into(),
                strategy: strategy.into(),
            },
            K::MigrationFinished {
                stream_id,
                from,
                to,
                gap,
                duration,
                strategy,
            } => Self::MigrationFinished {
                stream_id,
                from,
                to,
                gap_ms: ms(gap),
                duration_ms: ms(duration),
                strategy: strategy.into(),
            },
            K::MigrationFailed {
                stream_id,
                from,
                error,
                still_on,
            } => Self::MigrationFailed {
                stream_id,
                from,
                error,
                still_on,
            },
            K::HealthChanged {
                provider,
                from,
                to,
                consecutive_failures,
                detail,
            } => Self::HealthChanged {
                provider,
                from: from.into(),
                to: to.into(),
                consecutive_failures,
                detail,
            },
            K::ProviderListChanged { active } => Self::ProviderListChanged { active },
            K::BackendError { error } => Self::BackendError { error },
            K::WaitingForCapacity {
                stream_id,
                providers,
                max_wait,
            } => Self::WaitingForCapacity {
                stream_id,
                providers,
                max_wait_ms: ms(max_wait),
            },
            K::SessionStateChanged {
                stream_id,
                from,
                to,
                provider,
            } => Self::SessionStateChanged {
                stream_id,
                from: from.into(),
                to: to.into(),
                provider,
            },
        }
    }
}

/// A snapshot of one session.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
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

impl From<sg::SessionInfo> for SessionInfo {
    fn from(s: sg::SessionInfo) -> Self {
        let sg::SessionInfo {
            stream_id,
            role,
            provider,
            state,
            attempts,
            migrations,
            last_error,
        } = s;
        Self {
            stream_id,
            role: role.into(),
            provider,
            state: state.into(),
            attempts,
            migrations,
            last_error,
        }
    }
}

/// Statistics of one provider, as seen by this manager.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
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
    /// When it was last checked, in milliseconds since the manager was created.
    pub last_check_at_ms: Option<u64>,
    /// Moving average of health-check round trips, in milliseconds.
    pub avg_check_latency_ms: Option<u64>,
    /// Moving average of successful start/join calls, in milliseconds.
    pub avg_connect_latency_ms: Option<u64>,
    /// Share of health checks that passed, in percent; absent before the first check.
    pub uptime_percent: Option<f64>,
    /// Sessions live on it now.
    pub live_sessions: u32,
    /// Times it was ejected (cooled down).
    pub times_ejected: u32,
    /// Milliseconds left in its cool-down.
    pub cooling_for_ms: Option<u64>,
}

impl From<sg::ProviderStats> for ProviderStats {
    fn from(s: sg::ProviderStats) -> Self {
        let sg::ProviderStats {
            provider,
            status,
            attempts,
            successes,
            failures,
            reported_errors,
            consecutive_failures,
            health_checks,
            failed_health_checks,
            last_check_at,
            avg_check_latency,
            avg_connect_latency,
            uptime_percent,
            live_sessions,
            times_ejected,
            cooling_for,
        } = s;
        Self {
            provider,
            status: status.into(),
            attempts,
            successes,
            failures,
            reported_errors,
            consecutive_failures,
            health_checks,
            failed_health_checks,
            last_check_at_ms: last_check_at.map(ms),
            avg_check_latency_ms: avg_check_latency.map(ms),
            avg_connect_latency_ms: avg_connect_latency.map(ms),
            uptime_percent,
            live_sessions,
            times_ejected,
            cooling_for_ms: cooling_for.map(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_cross_as_milliseconds() {
        let e: StreamEvent = sg::StreamEvent {
            at: Duration::from_millis(1500),
            kind: sg::EventKind::AttemptFailed {
                stream_id: "s".into(),
                provider: "agora".into(),
                attempt: 1,
                operation: sg::Operation::Start,
                error: sg::ProviderError::timeout("t"),
                retry_in: Some(Duration::from_micros(250_900)),
            },
        }
        .into();
        assert_eq!(e.at_ms, 1500);
        let EventKind::AttemptFailed {
            retry_in_ms,
            error_kind,
            ..
        } = e.kind
        else {
            panic!("wrong variant");
        };
        assert_eq!(retry_in_ms, Some(250));
        assert_eq!(error_kind, crate::ProviderErrorKind::Timeout);
    }

    #[test]
    fn waiting_for_capacity_crosses_with_its_wait_in_milliseconds() {
        let e: StreamEvent = sg::StreamEvent {
            at: Duration::from_millis(7),
            kind: sg::EventKind::WaitingForCapacity {
                stream_id: "s".into(),
                providers: vec!["agora".into()],
                max_wait: Duration::from_secs(600),
            },
        }
        .into();
        assert_eq!(
            e.kind,
            EventKind::WaitingForCapacity {
                stream_id: "s".into(),
                providers: vec!["agora".into()],
                max_wait_ms: 600_000,
            }
        );
        assert_eq!(
            FailoverReason::from(sg::FailoverReason::CapacityLost),
            FailoverReason::CapacityLost
        );
    }

    #[test]
    fn provider_config_crosses_as_json() {
        let mut p = sg::ProviderInfo::new("agora", 1);
        p.config.insert("appId".into(), serde_json::json!("abc"));
        let p: ProviderInfo = p.into();
        assert_eq!(p.config_json, r#"{"appId":"abc"}"#);
    }
}
