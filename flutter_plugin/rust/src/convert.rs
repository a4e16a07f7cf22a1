//! The one place where the engine's types and the bridged ones meet. Kept out of `api/` so the
//! code generator sees only the shapes that cross to Dart.

use crate::api::types::*;
use std::time::Duration;
use streamguard as sg;

/// Whole milliseconds, saturating (a `Duration` beyond `u64::MAX` ms is not a real value).
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ms_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn usize_field(name: &str, v: u64) -> Result<usize, StreamguardError> {
    usize::try_from(v).map_err(|_| StreamguardError {
        kind: StreamguardErrorKind::InvalidConfig,
        message: format!("invalid configuration: {name} is too large for this platform"),
        attempts: Vec::new(),
        providers: Vec::new(),
        waited_ms: None,
    })
}

impl TryFrom<ManagerConfig> for sg::ManagerConfig {
    type Error = StreamguardError;

    // A struct literal, not assignments on `new()`: a field added to the engine's config must
    // fail to compile here until the plugin exposes it.
    fn try_from(c: ManagerConfig) -> Result<Self, StreamguardError> {
        let d = Duration::from_millis;
        Ok(sg::ManagerConfig {
            base_url: c.base_url,
            auth_token: c.auth_token,
            max_attempts: c.max_attempts,
            attempts_per_provider: c.attempts_per_provider,
            health_check_interval: d(c.health_check_interval_ms),
            failure_threshold: c.failure_threshold,
            suspect_recheck_delay: d(c.suspect_recheck_delay_ms),
            max_unhealthy_for: c.max_unhealthy_for_ms.map(d),
            request_timeout: d(c.request_timeout_ms),
            adapter_timeout: d(c.adapter_timeout_ms),
            backoff_base: d(c.backoff_base_ms),
            backoff_cap: d(c.backoff_cap_ms),
            operation_deadline: d(c.operation_deadline_ms),
            provider_refresh_interval: d(c.provider_refresh_interval_ms),
            provider_list_max_age: d(c.provider_list_max_age_ms),
            cooldown_base: d(c.cooldown_base_ms),
            cooldown_max: d(c.cooldown_max_ms),
            failback: c.failback,
            failback_stability: d(c.failback_stability_ms),
            max_response_bytes: usize_field("max_response_bytes", c.max_response_bytes)?,
            allow_insecure_http: c.allow_insecure_http,
            event_buffer: usize_field("event_buffer", c.event_buffer.into())?,
            push_updates: c.push_updates,
            report_sessions: c.report_sessions,
            wait_for_capacity: c.wait_for_capacity,
            capacity_max_wait: d(c.capacity_max_wait_ms),
            capacity_lease_ttl: d(c.capacity_lease_ttl_ms),
            max_total_streams: c.max_total_streams,
        })
    }
}

impl From<sg::ManagerConfig> for ManagerConfig {
    fn from(c: sg::ManagerConfig) -> Self {
        Self {
            base_url: c.base_url,
            auth_token: c.auth_token,
            max_attempts: c.max_attempts,
            attempts_per_provider: c.attempts_per_provider,
            health_check_interval_ms: ms(c.health_check_interval),
            failure_threshold: c.failure_threshold,
            suspect_recheck_delay_ms: ms(c.suspect_recheck_delay),
            max_unhealthy_for_ms: c.max_unhealthy_for.map(ms),
            request_timeout_ms: ms(c.request_timeout),
            adapter_timeout_ms: ms(c.adapter_timeout),
            backoff_base_ms: ms(c.backoff_base),
            backoff_cap_ms: ms(c.backoff_cap),
            operation_deadline_ms: ms(c.operation_deadline),
            provider_refresh_interval_ms: ms(c.provider_refresh_interval),
            provider_list_max_age_ms: ms(c.provider_list_max_age),
            cooldown_base_ms: ms(c.cooldown_base),
            cooldown_max_ms: ms(c.cooldown_max),
            failback: c.failback,
            failback_stability_ms: ms(c.failback_stability),
            max_response_bytes: c.max_response_bytes as u64,
            allow_insecure_http: c.allow_insecure_http,
            // The engine's buffer is a usize; anything above u32 would be a misconfiguration.
            event_buffer: u32::try_from(c.event_buffer).unwrap_or(u32::MAX),
            push_updates: c.push_updates,
            report_sessions: c.report_sessions,
            wait_for_capacity: c.wait_for_capacity,
            capacity_max_wait_ms: ms(c.capacity_max_wait),
            capacity_lease_ttl_ms: ms(c.capacity_lease_ttl),
            max_total_streams: c.max_total_streams,
        }
    }
}

impl From<sg::ProviderErrorKind> for ProviderErrorKind {
    fn from(k: sg::ProviderErrorKind) -> Self {
        use sg::ProviderErrorKind as K;
        match k {
            K::Timeout => Self::Timeout,
            K::Network => Self::Network,
            K::Unavailable => Self::Unavailable,
            K::Unauthorized => Self::Unauthorized,
            K::QuotaExceeded => Self::QuotaExceeded,
            K::InvalidStream => Self::InvalidStream,
            K::NotSupported => Self::NotSupported,
            K::Internal => Self::Internal,
        }
    }
}

impl From<ProviderErrorKind> for sg::ProviderErrorKind {
    fn from(k: ProviderErrorKind) -> Self {
        use ProviderErrorKind as K;
        match k {
            K::Timeout => Self::Timeout,
            K::Network => Self::Network,
            K::Unavailable => Self::Unavailable,
            K::Unauthorized => Self::Unauthorized,
            K::QuotaExceeded => Self::QuotaExceeded,
            K::InvalidStream => Self::InvalidStream,
            K::NotSupported => Self::NotSupported,
            K::Internal => Self::Internal,
        }
    }
}

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

impl From<sg::ProviderInfo> for ProviderInfo {
    fn from(p: sg::ProviderInfo) -> Self {
        Self {
            // A JSON map always serializes.
            config_json: serde_json::Value::Object(p.config).to_string(),
            name: p.name,
            is_active: p.is_active,
            priority: p.priority,
            max_streams: p.max_streams,
            active_streams: p.active_streams,
        }
    }
}

impl From<sg::SessionState> for SessionState {
    fn from(s: sg::SessionState) -> Self {
        use sg::SessionState as S;
        match s {
            S::Idle => Self::Idle,
            S::Connecting => Self::Connecting,
            S::Live => Self::Live,
            S::Migrating => Self::Migrating,
            S::Failed => Self::Failed,
            S::Ended => Self::Ended,
        }
    }
}

impl From<sg::Role> for Role {
    fn from(r: sg::Role) -> Self {
        match r {
            sg::Role::Publisher => Self::Publisher,
            sg::Role::Viewer => Self::Viewer,
        }
    }
}

impl From<sg::SessionInfo> for SessionInfo {
    fn from(s: sg::SessionInfo) -> Self {
        Self {
            stream_id: s.stream_id,
            role: s.role.into(),
            provider: s.provider,
            state: s.state.into(),
            attempts: s.attempts,
            migrations: s.migrations,
            last_error: s.last_error,
        }
    }
}

impl From<sg::HealthStatus> for HealthStatus {
    fn from(h: sg::HealthStatus) -> Self {
        use sg::HealthStatus as H;
        match h {
            H::Unknown => Self::Unknown,
            H::Healthy => Self::Healthy,
            H::Suspect => Self::Suspect,
            H::Unhealthy => Self::Unhealthy,
        }
    }
}

impl From<sg::ProviderStats> for ProviderStats {
    fn from(s: sg::ProviderStats) -> Self {
        Self {
            provider: s.provider,
            status: s.status.into(),
            attempts: s.attempts,
            successes: s.successes,
            failures: s.failures,
            reported_errors: s.reported_errors,
            consecutive_failures: s.consecutive_failures,
            health_checks: s.health_checks,
            failed_health_checks: s.failed_health_checks,
            last_check_at_ms: s.last_check_at.map(ms),
            avg_check_latency_ms: s.avg_check_latency.map(ms_f64),
            avg_connect_latency_ms: s.avg_connect_latency.map(ms_f64),
            uptime_percent: s.uptime_percent,
            live_sessions: s.live_sessions,
            times_ejected: s.times_ejected,
            cooling_for_ms: s.cooling_for.map(ms),
        }
    }
}

impl From<sg::Operation> for Operation {
    fn from(o: sg::Operation) -> Self {
        match o {
            sg::Operation::Start => Self::Start,
            sg::Operation::Join => Self::Join,
            sg::Operation::Migrate => Self::Migrate,
        }
    }
}

impl From<sg::FailoverReason> for FailoverReason {
    fn from(r: sg::FailoverReason) -> Self {
        use sg::FailoverReason as R;
        match r {
            R::RetriesExhausted => Self::RetriesExhausted,
            R::ProviderRejected => Self::ProviderRejected,
            R::HealthCheckFailed => Self::HealthCheckFailed,
            R::ErrorReported => Self::ErrorReported,
            R::ProviderDisabled => Self::ProviderDisabled,
            R::PriorityChanged => Self::PriorityChanged,
            R::Failback => Self::Failback,
            R::CapacityLost => Self::CapacityLost,
        }
    }
}

impl From<sg::MigrationStrategy> for MigrationStrategy {
    fn from(s: sg::MigrationStrategy) -> Self {
        match s {
            sg::MigrationStrategy::BreakBeforeMake => Self::BreakBeforeMake,
            sg::MigrationStrategy::MakeBeforeBreak => Self::MakeBeforeBreak,
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
    fn provider_config_crosses_as_json() {
        let mut p = sg::ProviderInfo::new("agora", 1);
        p.config.insert("appId".into(), "abc".into());
        let info = ProviderInfo::from(p);
        assert_eq!(info.config_json, r#"{"appId":"abc"}"#);
    }
}
