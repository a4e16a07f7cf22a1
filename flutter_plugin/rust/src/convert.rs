//! Conversions of the Dart-only shapes: the flat errors and the flattened event. (The config,
//! the plain enums and records bring theirs from `streamguard-mirror`.) Kept out of `api/` so
//! the code generator sees only the shapes that cross to Dart.

use crate::api::types::*;
use std::time::Duration;
use streamguard as sg;
use streamguard_mirror::ms;

impl From<sg::ProviderError> for ProviderError {
    fn from(e: sg::ProviderError) -> Self {
        Self {
            kind: e.kind.into(),
            message: e.message,
        }
    }
}

impl From<ProviderError> for sg::ProviderError {
    fn from(e: ProviderError) -> Self {
        sg::ProviderError::new(e.kind.into(), e.message)
    }
}

impl From<sg::Attempt> for Attempt {
    fn from(a: sg::Attempt) -> Self {
        Self {
            provider: a.provider,
            number: a.number,
            error: a.error.into(),
        }
    }
}

impl From<sg::StreamguardError> for StreamguardError {
    fn from(e: sg::StreamguardError) -> Self {
        use sg::StreamguardError as E;
        use StreamguardErrorKind as K;
        let message = e.to_string();
        let (mut providers, mut waited_ms) = (Vec::new(), None);
        let (kind, attempts) = match e {
            E::InvalidConfig(_) => (K::InvalidConfig, Vec::new()),
            E::InvalidArgument(_) => (K::InvalidArgument, Vec::new()),
            E::NoProviderAvailable { .. } => (K::NoProviderAvailable, Vec::new()),
            E::AllAttemptsFailed { attempts } => (K::AllAttemptsFailed, attempts),
            E::RequestRejected { provider, error } => (
                K::RequestRejected,
                // The engine does not keep the attempt number of the rejecting call.
                vec![sg::Attempt {
                    provider,
                    number: 0,
                    error,
                }],
            ),
            E::DeadlineExceeded { attempts } => (K::DeadlineExceeded, attempts),
            E::NoCapacity {
                providers: full,
                waited,
                attempts,
            } => {
                providers = full;
                waited_ms = Some(ms(waited));
                (K::NoCapacity, attempts)
            }
            E::CapacityUnavailable(_) => (K::CapacityUnavailable, Vec::new()),
            E::Backend(_) => (K::Backend, Vec::new()),
            E::StreamNotLive { .. } => (K::StreamNotLive, Vec::new()),
            E::NoAdapterForPlacement {
                providers: placed, ..
            } => {
                providers = placed;
                (K::NoAdapterForPlacement, Vec::new())
            }
            E::StreamClaimedByOther { .. } => (K::StreamClaimedByOther, Vec::new()),
            E::UnknownSession(_) => (K::UnknownSession, Vec::new()),
            E::SessionBusy { .. } => (K::SessionBusy, Vec::new()),
            E::Cancelled(_) => (K::Cancelled, Vec::new()),
            E::ShutDown => (K::ShutDown, Vec::new()),
            E::Internal(_) => (K::Internal, Vec::new()),
        };
        Self {
            kind,
            message,
            attempts: attempts.into_iter().map(Attempt::from).collect(),
            providers,
            waited_ms,
        }
    }
}

impl From<QualitySample> for sg::QualitySample {
    fn from(s: QualitySample) -> Self {
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

impl StreamguardError {
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: StreamguardErrorKind::Internal,
            message: format!("internal error: {}", message.into()),
            attempts: Vec::new(),
            providers: Vec::new(),
            waited_ms: None,
        }
    }
}

impl StreamEvent {
    /// An event of `kind` at `at` with every optional field empty.
    fn empty(at: Duration, kind: EventType) -> Self {
        Self {
            at_ms: ms(at),
            kind,
            stream_id: None,
            provider: None,
            from: None,
            to: None,
            attempt: None,
            operation: None,
            error: None,
            retry_in_ms: None,
            reason: None,
            strategy: None,
            gap_ms: None,
            duration_ms: None,
            still_on: None,
            health_from: None,
            health_to: None,
            consecutive_failures: None,
            state_from: None,
            state_to: None,
            active: Vec::new(),
            providers: Vec::new(),
            max_wait_ms: None,
            epoch: None,
            live: None,
            score: None,
            quality_from: None,
            quality_to: None,
            level: None,
            viewers: None,
            stalled: None,
            outage: None,
            message: None,
        }
    }
}

impl From<sg::StreamEvent> for StreamEvent {
    fn from(e: sg::StreamEvent) -> Self {
        use sg::EventKind as K;
        let at = e.at;
        match e.kind {
            K::AttemptStarted {
                stream_id,
                provider,
                attempt,
                operation,
            } => StreamEvent {
                stream_id: Some(stream_id),
                provider: Some(provider),
                attempt: Some(attempt),
                operation: Some(operation.into()),
                ..StreamEvent::empty(at, EventType::AttemptStarted)
            },
            K::AttemptFailed {
                stream_id,
                provider,
                attempt,
                operation,
                error,
                retry_in,
            } => StreamEvent {
                stream_id: Some(stream_id),
                provider: Some(provider),
                attempt: Some(attempt),
                operation: Some(operation.into()),
                error: Some(error.into()),
                retry_in_ms: retry_in.map(ms),
                ..StreamEvent::empty(at, EventType::AttemptFailed)
            },
            K::Failover {
                stream_id,
                from,
                to,
                reason,
            } => StreamEvent {
                stream_id: Some(stream_id),
                from: Some(from),
                to,
                reason: Some(reason.into()),
                ..StreamEvent::empty(at, EventType::Failover)
            },
            K::MigrationStarted {
                stream_id,
                from,
                reason,
                strategy,
            } => StreamEvent {
                stream_id: Some(stream_id),
                from: Some(from),
                reason: Some(reason.into()),
                strategy: Some(strategy.into()),
                ..StreamEvent::empty(at, EventType::MigrationStarted)
            },
            K::MigrationFinished {
                stream_id,
                from,
                to,
                gap,
                duration,
                strategy,
            } => StreamEvent {
                stream_id: Some(stream_id),
                from: Some(from),
                to: Some(to),
                gap_ms: Some(ms(gap)),
                duration_ms: Some(ms(duration)),
                strategy: Some(strategy.into()),
                ..StreamEvent::empty(at, EventType::MigrationFinished)
            },
            K::MigrationFailed {
                stream_id,
                from,
                error,
                still_on,
            } => StreamEvent {
                stream_id: Some(stream_id),
                from: Some(from),
                message: Some(error),
                still_on,
                ..StreamEvent::empty(at, EventType::MigrationFailed)
            },
            K::HealthChanged {
                provider,
                from,
                to,
                consecutive_failures,
                detail,
            } => StreamEvent {
                provider: Some(provider),
                health_from: Some(from.into()),
                health_to: Some(to.into()),
                consecutive_failures: Some(consecutive_failures),
                message: Some(detail),
                ..StreamEvent::empty(at, EventType::HealthChanged)
            },
            K::ProviderListChanged { active } => StreamEvent {
                active,
                ..StreamEvent::empty(at, EventType::ProviderListChanged)
            },
            K::BackendError { error } => StreamEvent {
                message: Some(error),
                ..StreamEvent::empty(at, EventType::BackendError)
            },
            K::WaitingForCapacity {
                stream_id,
                providers,
                max_wait,
            } => StreamEvent {
                stream_id: Some(stream_id),
                providers,
                max_wait_ms: Some(ms(max_wait)),
                ..StreamEvent::empty(at, EventType::WaitingForCapacity)
            },
            K::PlacementChanged {
                stream_id,
                provider,
                epoch,
                live,
                standby,
            } => StreamEvent {
                stream_id: Some(stream_id),
                provider: Some(provider),
                epoch: Some(epoch),
                live: Some(live),
                providers: standby,
                ..StreamEvent::empty(at, EventType::PlacementChanged)
            },
            K::QualityChanged {
                provider,
                score,
                from,
                to,
            } => StreamEvent {
                provider: Some(provider),
                score: Some(score),
                quality_from: from.map(Into::into),
                quality_to: Some(to.into()),
                ..StreamEvent::empty(at, EventType::QualityChanged)
            },
            K::QualityLowered {
                stream_id,
                provider,
                level,
            } => StreamEvent {
                stream_id: Some(stream_id),
                provider: Some(provider),
                level: Some(level.into()),
                ..StreamEvent::empty(at, EventType::QualityLowered)
            },
            K::AudienceChanged {
                stream_id,
                provider,
                viewers,
                stalled,
                outage,
            } => StreamEvent {
                stream_id: Some(stream_id),
                provider: Some(provider),
                viewers: Some(viewers),
                stalled: Some(stalled),
                outage: Some(outage),
                ..StreamEvent::empty(at, EventType::AudienceChanged)
            },
            K::StandbyPromoted {
                stream_id,
                from,
                to,
                epoch,
            } => StreamEvent {
                stream_id: Some(stream_id),
                from: Some(from),
                to: Some(to),
                epoch: Some(epoch),
                ..StreamEvent::empty(at, EventType::StandbyPromoted)
            },
            K::SessionStateChanged {
                stream_id,
                from,
                to,
                provider,
            } => StreamEvent {
                stream_id: Some(stream_id),
                state_from: Some(from.into()),
                state_to: Some(to.into()),
                provider,
                ..StreamEvent::empty(at, EventType::SessionStateChanged)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_the_engine_type() {
        let core = sg::ManagerConfig::new("https://api.example.com/api");
        let mine = ManagerConfig::from(core.clone());
        assert_eq!(sg::ManagerConfig::try_from(mine).unwrap(), core);
    }

    #[test]
    fn every_error_kind_round_trips() {
        use ProviderErrorKind as K;
        for k in [
            K::Timeout,
            K::Network,
            K::Unavailable,
            K::Unauthorized,
            K::QuotaExceeded,
            K::InvalidStream,
            K::NotSupported,
            K::Internal,
        ] {
            assert_eq!(ProviderErrorKind::from(sg::ProviderErrorKind::from(k)), k);
        }
    }

    #[test]
    fn all_attempts_failed_keeps_every_attempt_and_the_message() {
        let e = StreamguardError::from(sg::StreamguardError::AllAttemptsFailed {
            attempts: vec![sg::Attempt {
                provider: "agora".into(),
                number: 1,
                error: sg::ProviderError::timeout("t1"),
            }],
        });
        assert_eq!(e.kind, StreamguardErrorKind::AllAttemptsFailed);
        assert_eq!(e.attempts.len(), 1);
        assert_eq!(e.attempts[0].error.kind, ProviderErrorKind::Timeout);
        assert!(e.message.contains("#1 agora: Timeout: t1"), "{}", e.message);
    }

    #[test]
    fn no_capacity_names_the_full_providers_and_the_wait() {
        let e = StreamguardError::from(sg::StreamguardError::NoCapacity {
            providers: vec!["agora".into(), "zegocloud".into()],
            waited: Duration::from_micros(2_500_900),
            attempts: vec![sg::Attempt {
                provider: "agora".into(),
                number: 1,
                error: sg::ProviderError::timeout("t1"),
            }],
        });
        assert_eq!(e.kind, StreamguardErrorKind::NoCapacity);
        assert_eq!(e.providers, ["agora", "zegocloud"]);
        assert_eq!(e.waited_ms, Some(2500));
        assert_eq!(e.attempts.len(), 1);
        assert!(e.message.contains("no free stream slot"), "{}", e.message);

        let e = StreamguardError::from(sg::StreamguardError::CapacityUnavailable(
            "redis down".into(),
        ));
        assert_eq!(e.kind, StreamguardErrorKind::CapacityUnavailable);
        assert!(e.message.contains("redis down"), "{}", e.message);
        assert!(e.providers.is_empty() && e.waited_ms.is_none());
    }

    #[test]
    fn waiting_for_capacity_is_flattened_with_its_providers() {
        let e = StreamEvent::from(sg::StreamEvent {
            at: Duration::from_millis(5),
            kind: sg::EventKind::WaitingForCapacity {
                stream_id: "s1".into(),
                providers: vec!["agora".into()],
                max_wait: Duration::from_secs(600),
            },
        });
        assert_eq!(e.kind, EventType::WaitingForCapacity);
        assert_eq!(e.stream_id.as_deref(), Some("s1"));
        assert_eq!(e.providers, ["agora"]);
        assert_eq!(e.max_wait_ms, Some(600_000));
        assert!(e.active.is_empty() && e.message.is_none());
        assert_eq!(
            FailoverReason::from(sg::FailoverReason::CapacityLost),
            FailoverReason::CapacityLost
        );
    }

    #[test]
    fn a_placement_change_is_flattened_with_its_epoch() {
        let e = StreamEvent::from(sg::StreamEvent {
            at: Duration::from_millis(5),
            kind: sg::EventKind::PlacementChanged {
                stream_id: "s1".into(),
                provider: "zegocloud".into(),
                epoch: 3,
                live: false,
                standby: vec!["webrtc".into()],
            },
        });
        assert_eq!(e.kind, EventType::PlacementChanged);
        assert_eq!(e.stream_id.as_deref(), Some("s1"));
        assert_eq!(e.provider.as_deref(), Some("zegocloud"));
        assert_eq!((e.epoch, e.live), (Some(3), Some(false)));
        assert_eq!(e.providers, ["webrtc"]);
        let e = StreamEvent::from(sg::StreamEvent {
            at: Duration::from_millis(6),
            kind: sg::EventKind::StandbyPromoted {
                stream_id: "s1".into(),
                from: "agora".into(),
                to: "zegocloud".into(),
                epoch: 4,
            },
        });
        assert_eq!(e.kind, EventType::StandbyPromoted);
        assert_eq!(
            (e.from.as_deref(), e.to.as_deref(), e.epoch),
            (Some("agora"), Some("zegocloud"), Some(4))
        );
        let e = StreamguardError::from(sg::StreamguardError::NoAdapterForPlacement {
            stream_id: "s1".into(),
            providers: vec!["livekit".into()],
        });
        assert_eq!(e.kind, StreamguardErrorKind::NoAdapterForPlacement);
        assert_eq!(e.providers, ["livekit"]);
        assert_eq!(
            FailoverReason::from(sg::FailoverReason::PlacementChanged),
            FailoverReason::PlacementChanged
        );
    }

    #[test]
    fn provider_config_crosses_as_json() {
        let mut p = sg::ProviderInfo::new("agora", 1);
        p.config.insert("appId".into(), "abc".into());
        let info = ProviderInfo::from(p);
        assert_eq!(info.config_json, r#"{"appId":"abc"}"#);
    }
}
