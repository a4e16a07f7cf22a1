//! Mirror records and enums of the engine's public data, with `From` conversions. Durations
//! cross as whole milliseconds (`*_ms`), the one unit every host language has; the provider
//! config crosses as a JSON string. The plain enums and records are expanded from
//! `streamguard-mirror` (shared with the Flutter plugin); the event with data is UniFFI's own.

use streamguard as sg;

pub(crate) use streamguard_mirror::ms;

// ProviderErrorKind, SessionState, Role, Operation, FailoverReason, MigrationStrategy and
// HealthStatus, each with `From` the engine's enum (and back, for ProviderErrorKind).
streamguard_mirror::plain_enums!(#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]);

// ProviderInfo, SessionInfo and ProviderStats (average latencies in whole milliseconds), each
// with `From` the engine's struct.
streamguard_mirror::plain_records!(latency = u64, #[derive(Debug, Clone, PartialEq, uniffi::Record)]);

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
    /// Where a stream is published changed (a publisher's own claim, or a viewer learning of
    /// its publisher's move or stop).
    PlacementChanged {
        /// The stream.
        stream_id: String,
        /// The provider carrying its publisher.
        provider: String,
        /// The placement's epoch (increases with every move of the publisher).
        epoch: u64,
        /// The publisher's claim is alive.
        live: bool,
        /// Providers carrying hot standby copies of the stream, best first.
        standby: Vec<String>,
    },
    /// A provider's media quality score moved into another band.
    QualityChanged {
        /// The provider.
        provider: String,
        /// Its moving score now, 0 to 100.
        score: f64,
        /// The band it left (absent: its first sample).
        from: Option<QualityBand>,
        /// The band it is in now.
        to: QualityBand,
    },
    /// The engine asked an adapter to lower a stream's quality instead of moving (a viewer
    /// stalling alone, a publisher whose uplink is bad on every provider).
    QualityLowered {
        /// The stream.
        stream_id: String,
        /// The provider carrying it.
        provider: String,
        /// The level asked for.
        level: QualityLevel,
    },
    /// The registry's view of a stream's audience on a provider changed.
    AudienceChanged {
        /// The stream.
        stream_id: String,
        /// The provider its viewers watch on.
        provider: String,
        /// Viewers reporting.
        viewers: u32,
        /// Of them, stalled.
        stalled: u32,
        /// The registry confirmed an outage.
        outage: bool,
    },
    /// A publisher's hot standby became its primary at once (no start, no gap): its primary
    /// failed, or a planned move chose the standby.
    StandbyPromoted {
        /// The stream.
        stream_id: String,
        /// The provider left.
        from: String,
        /// The standby that is the primary now.
        to: String,
        /// The placement epoch claimed for `to` (0 without a placement directory).
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

/// One media quality sample from the host's SDK (`record_quality`), about one per second.
/// Only `interval_ms` is required; fill in what the SDK knows. Scored by the formula of the
/// engine's `quality` module: stalls dominate, loss and round-trip time reduce the score.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct QualitySample {
    /// The time the sample covers, in milliseconds (greater than zero).
    pub interval_ms: u64,
    /// Frames received (viewer) or sent (publisher) in the interval.
    #[uniffi(default = 0)]
    pub frames: u32,
    /// Milliseconds of the interval without media (at most `interval_ms`).
    #[uniffi(default = 0)]
    pub stall_ms: u64,
    /// Media bitrate over the interval, in kbit/s.
    #[uniffi(default = None)]
    pub bitrate_kbps: Option<u32>,
    /// Round-trip time to the provider's edge, in milliseconds.
    #[uniffi(default = None)]
    pub rtt_ms: Option<u64>,
    /// Packet loss over the interval, in percent (0 to 100).
    #[uniffi(default = None)]
    pub loss_percent: Option<f64>,
}

impl From<QualitySample> for sg::QualitySample {
    fn from(s: QualitySample) -> Self {
        use std::time::Duration;
        Self {
            interval: Duration::from_millis(s.interval_ms),
            frames: s.frames,
            stall: Duration::from_millis(s.stall_ms),
            bitrate_kbps: s.bitrate_kbps,
            rtt: s.rtt_ms.map(Duration::from_millis),
            loss_percent: s.loss_percent,
        }
    }
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
            K::PlacementChanged {
                stream_id,
                provider,
                epoch,
                live,
                standby,
            } => Self::PlacementChanged {
                stream_id,
                provider,
                epoch,
                live,
                standby,
            },
            K::QualityChanged {
                provider,
                score,
                from,
                to,
            } => Self::QualityChanged {
                provider,
                score,
                from: from.map(Into::into),
                to: to.into(),
            },
            K::QualityLowered {
                stream_id,
                provider,
                level,
            } => Self::QualityLowered {
                stream_id,
                provider,
                level: level.into(),
            },
            K::AudienceChanged {
                stream_id,
                provider,
                viewers,
                stalled,
                outage,
            } => Self::AudienceChanged {
                stream_id,
                provider,
                viewers,
                stalled,
                outage,
            },
            K::StandbyPromoted {
                stream_id,
                from,
                to,
                epoch,
            } => Self::StandbyPromoted {
                stream_id,
                from,
                to,
                epoch,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn a_placement_change_crosses_with_its_epoch() {
        let e: StreamEvent = sg::StreamEvent {
            at: Duration::from_millis(3),
            kind: sg::EventKind::PlacementChanged {
                stream_id: "s".into(),
                provider: "zegocloud".into(),
                epoch: 4,
                live: true,
                standby: vec!["webrtc".into()],
            },
        }
        .into();
        assert_eq!(
            e.kind,
            EventKind::PlacementChanged {
                stream_id: "s".into(),
                provider: "zegocloud".into(),
                epoch: 4,
                live: true,
                standby: vec!["webrtc".into()],
            }
        );
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
