//! [`ManagerConfig`] as a record whose every field but `base_url` has the engine's default in
//! the generated code, so hosts write `ManagerConfig(base_url=...)` and override what they need.
//!
//! The defaults are literals here because UniFFI writes them into the generated code;
//! [`default_manager_config`] returns the engine's own defaults so the host tests can check
//! that the two never drift apart.

use crate::errors::StreamguardError;
use std::fmt;
use std::time::Duration;
use streamguard as sg;

/// Everything a [`StreamingProviderManager`](crate::StreamingProviderManager) can be tuned by.
/// Durations are whole milliseconds. Validated when the manager is created. Printing it never
/// shows the `auth_token`.
#[derive(Clone, PartialEq, uniffi::Record)]
// Exported so the hosts' toString()/__str__ use the redacting format below instead of listing
// every field, token included.
#[uniffi::export(Display)]
pub struct ManagerConfig {
    /// Base URL of the provider registry; `/streaming/providers` is appended. `https` is
    /// required unless the host is loopback or `allow_insecure_http` is set.
    pub base_url: String,
    /// Bearer token sent to the registry. Never logged.
    #[uniffi(default = None)]
    pub auth_token: Option<String>,
    /// Attempts per start/join/migration, across all providers.
    #[uniffi(default = 3)]
    pub max_attempts: u32,
    /// Attempts on one provider before failing over to the next.
    #[uniffi(default = 2)]
    pub attempts_per_provider: u32,
    /// Check interval of a healthy provider that has live sessions.
    #[uniffi(default = 30000)]
    pub health_check_interval_ms: u64,
    /// Consecutive failures that confirm an outage.
    #[uniffi(default = 3)]
    pub failure_threshold: u32,
    /// First re-check of a suspect provider; doubles per failure up to the interval.
    #[uniffi(default = 1000)]
    pub suspect_recheck_delay_ms: u64,
    /// Second outage trigger: failing with no success in between for this long. Absent turns
    /// it off.
    #[uniffi(default = Some(30000))]
    pub max_unhealthy_for_ms: Option<u64>,
    /// Timeout of every registry request.
    #[uniffi(default = 5000)]
    pub request_timeout_ms: u64,
    /// Bound on every adapter call: a hanging adapter fails the attempt, not the manager.
    #[uniffi(default = 10000)]
    pub adapter_timeout_ms: u64,
    /// Ceiling of the first retry's jittered wait.
    #[uniffi(default = 300)]
    pub backoff_base_ms: u64,
    /// Largest retry wait.
    #[uniffi(default = 7000)]
    pub backoff_cap_ms: u64,
    /// Bound on a whole start/join/migration including waits.
    #[uniffi(default = 45000)]
    pub operation_deadline_ms: u64,
    /// How often the provider list is re-read while sessions are live.
    #[uniffi(default = 30000)]
    pub provider_refresh_interval_ms: u64,
    /// A list younger than this is reused by a new start/join instead of re-read.
    #[uniffi(default = 5000)]
    pub provider_list_max_age_ms: u64,
    /// Cool-down after a provider's first ejection; multiplied by the ejection count.
    #[uniffi(default = 30000)]
    pub cooldown_base_ms: u64,
    /// Longest cool-down.
    #[uniffi(default = 300000)]
    pub cooldown_max_ms: u64,
    /// Move sessions back to a preferred provider once it has been healthy for
    /// `failback_stability_ms`. Off by default: no flapping unless asked for.
    #[uniffi(default = false)]
    pub failback: bool,
    /// How long a preferred provider must stay healthy before failback.
    #[uniffi(default = 120000)]
    pub failback_stability_ms: u64,
    /// Largest registry response accepted, in bytes.
    #[uniffi(default = 1048576)]
    pub max_response_bytes: u64,
    /// Allow `http://` to a non-loopback registry.
    #[uniffi(default = false)]
    pub allow_insecure_http: bool,
    /// Events buffered per listener before the slowest one starts losing the oldest.
    #[uniffi(default = 1024)]
    pub event_buffer: u32,
    /// Follow the registry's push channel (Server-Sent Events) while sessions are live;
    /// polling continues as the fallback.
    #[uniffi(default = true)]
    pub push_updates: bool,
    /// Report session start, end and failover to the registry (session telemetry).
    #[uniffi(default = false)]
    pub report_sessions: bool,
    /// Phase 2 of provider selection: when every candidate provider is at its `max_streams`
    /// limit, wait for a slot and take whichever provider frees one first (first come, first
    /// served), instead of failing at once with `NoCapacity`. Off by default: a live stream
    /// usually wants an answer now; checkers and IPTV profiles want to wait.
    #[uniffi(default = false)]
    pub wait_for_capacity: bool,
    /// Longest wait for a slot in one start/join/migration, on top of `operation_deadline_ms`
    /// (the deadline bounds the attempts, not the queueing).
    #[uniffi(default = 600000)]
    pub capacity_max_wait_ms: u64,
    /// Time to live of a stream's slot lease, renewed every third of it while the stream runs,
    /// so that a process that dies without ending its streams frees their slots on a shared
    /// ledger. At least 30 ms.
    #[uniffi(default = 60000)]
    pub capacity_lease_ttl_ms: u64,
    /// Limit on this manager's concurrent streams over all providers. Absent = unlimited;
    /// `0` is rejected.
    #[uniffi(default = None)]
    pub max_total_streams: Option<u32>,
}

/// The engine's defaults for everything but `base_url`: equal to `ManagerConfig(base_url)`
/// built with the generated defaults.
#[uniffi::export]
pub fn default_manager_config(base_url: String) -> ManagerConfig {
    sg::ManagerConfig::new(base_url).into()
}

// Hand-written so the token can never reach a log line, here or in a host.
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
            .field("health_check_interval_ms", &self.health_check_interval_ms)
            .field("failure_threshold", &self.failure_threshold)
            .field("suspect_recheck_delay_ms", &self.suspect_recheck_delay_ms)
            .field("max_unhealthy_for_ms", &self.max_unhealthy_for_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("adapter_timeout_ms", &self.adapter_timeout_ms)
            .field("backoff_base_ms", &self.backoff_base_ms)
            .field("backoff_cap_ms", &self.backoff_cap_ms)
            .field("operation_deadline_ms", &self.operation_deadline_ms)
            .field(
                "provider_refresh_interval_ms",
                &self.provider_refresh_interval_ms,
            )
            .field("provider_list_max_age_ms", &self.provider_list_max_age_ms)
            .field("cooldown_base_ms", &self.cooldown_base_ms)
            .field("cooldown_max_ms", &self.cooldown_max_ms)
            .field("failback", &self.failback)
            .field("failback_stability_ms", &self.failback_stability_ms)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("event_buffer", &self.event_buffer)
            .field("push_updates", &self.push_updates)
            .field("report_sessions", &self.report_sessions)
            .field("wait_for_capacity", &self.wait_for_capacity)
            .field("capacity_max_wait_ms", &self.capacity_max_wait_ms)
            .field("capacity_lease_ttl_ms", &self.capacity_lease_ttl_ms)
            .field("max_total_streams", &self.max_total_streams)
            .finish()
    }
}

impl fmt::Display for ManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

fn usize_field(name: &str, v: u64) -> Result<usize, StreamguardError> {
    usize::try_from(v).map_err(|_| StreamguardError::InvalidConfig {
        detail: format!("{name} is too large for this platform"),
    })
}

impl TryFrom<ManagerConfig> for sg::ManagerConfig {
    type Error = StreamguardError;

    // A struct literal, not field assignments on `new()`: a field added to the engine's
    // config must fail to compile here until the bindings expose it.
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
        use crate::types::ms;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_the_engine_type() {
        let mine = default_manager_config("https://api.example.com/api".into());
        let core: sg::ManagerConfig = mine.clone().try_into().unwrap();
        assert_eq!(core, sg::ManagerConfig::new("https://api.example.com/api"));
        assert!(ManagerConfig::from(core) == mine);
    }

    #[test]
    fn printing_never_shows_the_token() {
        let mut c = default_manager_config("https://api.example.com/api".into());
        c.auth_token = Some("s3cr3t-token".into());
        let shown = c.to_string();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("redacted") && shown.contains("max_attempts: 3"),
            "{shown}"
        );
        assert!(
            shown.contains("wait_for_capacity: false")
                && shown.contains("capacity_max_wait_ms: 600000")
                && shown.contains("capacity_lease_ttl_ms: 60000")
                && shown.contains("max_total_streams: None"),
            "{shown}"
        );
    }
}
