//! Manager configuration, its defaults (which reproduce the seed app's behaviour, minus its
//! defects) and validation.

use crate::error::StreamguardError;
use crate::health::HealthPolicy;
use std::fmt;
use std::time::Duration;

/// Everything a [`StreamingProviderManager`](crate::StreamingProviderManager) can be tuned by.
/// Build one with [`ManagerConfig::new`] and override fields; `validate` runs on construction.
#[derive(Clone, PartialEq)]
pub struct ManagerConfig {
    /// Base URL of the provider registry; `/streaming/providers` is appended.
    pub base_url: String,
    /// Bearer token sent to the registry. Never logged.
    pub auth_token: Option<String>,
    /// Attempts per start/join/migration, across all providers. Default 3.
    pub max_attempts: u32,
    /// Attempts on one provider before failing over to the next. Default 2.
    pub attempts_per_provider: u32,
    /// Check interval of a healthy provider that has live sessions. Default 30 s.
    pub health_check_interval: Duration,
    /// Consecutive failures that confirm an outage. Default 3.
    pub failure_threshold: u32,
    /// First re-check of a suspect provider; doubles per failure up to the interval. Default 1 s.
    pub suspect_recheck_delay: Duration,
    /// Second outage trigger: failing with no success in between for this long (seed 003's
    /// "unhealthy continuously for 30 s"). `None` turns it off. Default 30 s.
    pub max_unhealthy_for: Option<Duration>,
    /// Timeout of every registry request. Default 5 s.
    pub request_timeout: Duration,
    /// Bound on every adapter call: a hanging adapter fails the attempt instead of the manager.
    /// Default 10 s (Agora reports a lost connection after 10 s).
    pub adapter_timeout: Duration,
    /// Ceiling of the first retry's jittered wait. Default 300 ms.
    pub backoff_base: Duration,
    /// Largest retry wait. Default 7 s.
    pub backoff_cap: Duration,
    /// Bound on a whole start/join/migration including waits. Default 45 s.
    pub operation_deadline: Duration,
    /// How often the provider list is re-read while sessions are live. Default 30 s.
    pub provider_refresh_interval: Duration,
    /// A list younger than this is reused by a new start/join instead of re-read. Default 5 s.
    pub provider_list_max_age: Duration,
    /// Cool-down after a provider's first ejection; multiplied by the ejection count. Default 30 s.
    pub cooldown_base: Duration,
    /// Longest cool-down. Default 300 s.
    pub cooldown_max: Duration,
    /// Move sessions back to a preferred provider once it has been healthy for
    /// `failback_stability`. Default off: no flapping unless asked for.
    pub failback: bool,
    /// How long a preferred provider must stay healthy before failback. Default 120 s.
    pub failback_stability: Duration,
    /// Largest registry response accepted. Default 1 MiB.
    pub max_response_bytes: usize,
    /// Allow `http://` to a non-loopback registry. Default false: TLS unless on this machine.
    pub allow_insecure_http: bool,
    /// Events buffered per subscriber before the slowest one starts losing the oldest.
    pub event_buffer: usize,
    /// Follow the registry's push channel (Server-Sent Events) while sessions are live, so list
    /// changes arrive in about a second; polling continues as the fallback. Default true.
    pub push_updates: bool,
    /// Report session start, end and failover to the registry (session telemetry), from a
    /// bounded background queue that never delays the engine. Default false.
    pub report_sessions: bool,
    /// Phase 2 of provider selection: when every candidate provider is at its `max_streams`
    /// limit, wait for a slot and take whichever provider frees one first (first come, first
    /// served), instead of failing at once with `NoCapacity`. Default false: a live stream
    /// usually wants an answer now; checkers and IPTV profiles want to wait.
    pub wait_for_capacity: bool,
    /// Longest wait for a slot in one start/join/migration, on top of `operation_deadline`
    /// (the deadline bounds the attempts, not the queueing). Default 600 s.
    pub capacity_max_wait: Duration,
    /// Time to live of a stream's slot lease, renewed every third of it while the stream runs,
    /// so that a process that dies without ending its streams frees their slots on a shared
    /// ledger. Default 60 s.
    pub capacity_lease_ttl: Duration,
    /// Limit on this manager's concurrent streams over all providers (the default in-memory
    /// ledger's global limit). `None` = unlimited. Must stay `None` when a ledger is passed to
    /// the builder, which carries its own global limit. Default `None`.
    pub max_total_streams: Option<u32>,
    /// Publishers: hot standby copies of each stream, on the next healthy parallel-capable
    /// providers after the primary (0 to 3; default 0, off). Listed in the placement, so
    /// viewers switch to one at once on their own signals, and promoted (no start, next epoch)
    /// when the primary fails. Each standby is a full publish: it holds a capacity slot on its
    /// provider and costs its upstream bandwidth. Needs adapters that support parallel
    /// sessions; a provider without that is never a standby.
    pub standby_providers: u32,
    /// Viewers: how long `join_stream` waits for a stream that is not live yet (no publisher
    /// placement), woken by the placement push event or a poll every second. Default zero:
    /// `StreamNotLive` at once.
    pub wait_for_live: Duration,
}

/// Most hot standby copies a publisher may keep (`standby_providers`): each is a full publish
/// with its own upstream bandwidth and capacity slot, so more is rarely worth it.
pub const MAX_STANDBY_PROVIDERS: u32 = 3;

impl ManagerConfig {
    /// Defaults for everything but the registry URL.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            auth_token: None,
            max_attempts: 3,
            attempts_per_provider: 2,
            health_check_interval: Duration::from_secs(30),
            failure_threshold: 3,
            suspect_recheck_delay: Duration::from_secs(1),
            max_unhealthy_for: Some(Duration::from_secs(30)),
            request_timeout: Duration::from_secs(5),
            adapter_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(300),
            backoff_cap: Duration::from_secs(7),
            operation_deadline: Duration::from_secs(45),
            provider_refresh_interval: Duration::from_secs(30),
            provider_list_max_age: Duration::from_secs(5),
            cooldown_base: Duration::from_secs(30),
            cooldown_max: Duration::from_secs(300),
            failback: false,
            failback_stability: Duration::from_secs(120),
            max_response_bytes: 1 << 20,
            allow_insecure_http: false,
            event_buffer: 1024,
            push_updates: true,
            report_sessions: false,
            wait_for_capacity: false,
            capacity_max_wait: crate::capacity::DEFAULT_MAX_WAIT,
            capacity_lease_ttl: crate::capacity::DEFAULT_LEASE_TTL,
            max_total_streams: None,
            standby_providers: 0,
            wait_for_live: Duration::ZERO,
        }
    }

    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), StreamguardError> {
        let bad = |msg: String| Err(StreamguardError::InvalidConfig(msg));
        let url = reqwest::Url::parse(&self.base_url);
        let Ok(url) = url else {
            return bad(format!("base_url {:?} is not a URL", self.base_url));
        };
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = match url.host() {
                    Some(url::Host::Domain(d)) => d == "localhost",
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                if !loopback && !self.allow_insecure_http {
                    return bad(format!(
                        "base_url {:?} uses plain http to a remote host; use https or set allow_insecure_http",
                        self.base_url
                    ));
                }
            }
            other => return bad(format!("base_url scheme {other:?} is not http or https")),
        }
        if self
            .auth_token
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.chars().any(|c| c.is_control() || c == ' '))
        {
            return bad("auth_token must be non-empty printable text without spaces".into());
        }
        for (name, v) in [
            ("max_attempts", self.max_attempts),
            ("attempts_per_provider", self.attempts_per_provider),
            ("failure_threshold", self.failure_threshold),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        for (name, d) in [
            ("health_check_interval", self.health_check_interval),
            ("suspect_recheck_delay", self.suspect_recheck_delay),
            ("request_timeout", self.request_timeout),
            ("adapter_timeout", self.adapter_timeout),
            ("backoff_cap", self.backoff_cap),
            ("operation_deadline", self.operation_deadline),
            ("provider_refresh_interval", self.provider_refresh_interval),
            ("cooldown_max", self.cooldown_max),
            ("failback_stability", self.failback_stability),
            ("capacity_max_wait", self.capacity_max_wait),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be greater than zero"));
            }
        }
        // Shared ledgers keep lease times in milliseconds; a shorter lease could never be renewed.
        if self.capacity_lease_ttl < Duration::from_millis(30) {
            return bad("capacity_lease_ttl must be at least 30 ms".into());
        }
        if self.max_total_streams == Some(0) {
            return bad("max_total_streams must be at least 1 (or None for unlimited)".into());
        }
        if self.max_unhealthy_for.is_some_and(|d| d.is_zero()) {
            return bad("max_unhealthy_for must be greater than zero (or None)".into());
        }
        if self.backoff_base > self.backoff_cap {
            return bad("backoff_base must not exceed backoff_cap".into());
        }
        if self.cooldown_base > self.cooldown_max {
            return bad("cooldown_base must not exceed cooldown_max".into());
        }
        if self.max_response_bytes < 1024 {
            return bad("max_response_bytes must be at least 1024".into());
        }
        if self.event_buffer == 0 {
            return bad("event_buffer must be at least 1".into());
        }
        if self.standby_providers > MAX_STANDBY_PROVIDERS {
            return bad(format!(
                "standby_providers must be at most {MAX_STANDBY_PROVIDERS} (each standby is a full publish)"
            ));
        }
        if self.wait_for_live > self.operation_deadline {
            return bad("wait_for_live must not exceed operation_deadline".into());
        }
        Ok(())
    }

    pub(crate) fn health_policy(&self) -> HealthPolicy {
        HealthPolicy {
            failure_threshold: self.failure_threshold,
            interval: self.health_check_interval,
            recheck_first: self.suspect_recheck_delay,
            cooldown_base: self.cooldown_base,
            cooldown_max: self.cooldown_max,
            max_unhealthy_for: self.max_unhealthy_for,
        }
    }
}

// Hand-written so the token can never reach a log line through `{:?}`.
impl fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("base_url", &self.base_url)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_attempts", &self.max_attempts)
            .field("attempts_per_provider", &self.attempts_per_provider)
            .field("health_check_interval", &self.health_check_interval)
            .field("failure_threshold", &self.failure_threshold)
            .field("suspect_recheck_delay", &self.suspect_recheck_delay)
            .field("max_unhealthy_for", &self.max_unhealthy_for)
            .field("request_timeout", &self.request_timeout)
            .field("adapter_timeout", &self.adapter_timeout)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("operation_deadline", &self.operation_deadline)
            .field("provider_refresh_interval", &self.provider_refresh_interval)
            .field("provider_list_max_age", &self.provider_list_max_age)
            .field("cooldown_base", &self.cooldown_base)
            .field("cooldown_max", &self.cooldown_max)
            .field("failback", &self.failback)
            .field("failback_stability", &self.failback_stability)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("event_buffer", &self.event_buffer)
            .field("push_updates", &self.push_updates)
            .field("report_sessions", &self.report_sessions)
            .field("wait_for_capacity", &self.wait_for_capacity)
            .field("capacity_max_wait", &self.capacity_max_wait)
            .field("capacity_lease_ttl", &self.capacity_lease_ttl)
            .field("max_total_streams", &self.max_total_streams)
            .field("standby_providers", &self.standby_providers)
            .field("wait_for_live", &self.wait_for_live)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> ManagerConfig {
        ManagerConfig::new("https://api.example.com/api")
    }

    #[test]
    fn defaults_reproduce_the_seed_numbers() {
        let c = ok();
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.attempts_per_provider, 2);
        assert_eq!(c.health_check_interval, Duration::from_secs(30));
        assert_eq!(c.failure_threshold, 3);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.backoff_base, Duration::from_millis(300));
        assert_eq!(c.backoff_cap, Duration::from_secs(7));
        assert!(!c.failback);
        c.validate().unwrap();
    }

    #[test]
    fn zero_interval_and_threshold_are_rejected_by_name() {
        let mut c = ok();
        c.health_check_interval = Duration::ZERO;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("health_check_interval"), "{e}");
        let mut c = ok();
        c.failure_threshold = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("failure_threshold"), "{e}");
        let mut c = ok();
        c.max_attempts = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for u in [
            "http://127.0.0.1:8080/api",
            "http://localhost/api",
            "http://[::1]:9/api",
        ] {
            ManagerConfig::new(u).validate().unwrap();
        }
        let mut c = ManagerConfig::new("http://example.com/api");
        assert!(c.validate().is_err());
        c.allow_insecure_http = true;
        c.validate().unwrap();
        assert!(ManagerConfig::new("ftp://x/").validate().is_err());
        assert!(ManagerConfig::new("not a url").validate().is_err());
    }

    #[test]
    fn inverted_ranges_are_rejected() {
        let mut c = ok();
        c.backoff_base = Duration::from_secs(10);
        assert!(c.validate().is_err());
        let mut c = ok();
        c.cooldown_base = Duration::from_secs(1000);
        assert!(c.validate().is_err());
    }

    #[test]
    fn capacity_settings_are_validated_by_name() {
        let c = ok();
        assert!(!c.wait_for_capacity);
        assert_eq!(c.capacity_max_wait, Duration::from_secs(600));
        let mut c = ok();
        c.capacity_lease_ttl = Duration::from_millis(5);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("capacity_lease_ttl"), "{e}");
        let mut c = ok();
        c.capacity_max_wait = Duration::ZERO;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("capacity_max_wait"), "{e}");
        let mut c = ok();
        c.standby_providers = MAX_STANDBY_PROVIDERS + 1;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("standby_providers"), "{e}");
        c.standby_providers = MAX_STANDBY_PROVIDERS;
        c.wait_for_live = c.operation_deadline + Duration::from_secs(1);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("wait_for_live"), "{e}");
        c.wait_for_live = Duration::ZERO;
        c.max_total_streams = Some(0);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("max_total_streams"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let mut c = ok();
        c.auth_token = Some("s3cr3t-token".into());
        let s = format!("{c:?}");
        assert!(!s.contains("s3cr3t"), "{s}");
        assert!(s.contains("redacted"));
    }
}
