//! Provider records, request bodies and the JSON views the API returns.
//! One [`ProviderRecord`] holds everything stored about a provider; the view
//! types decide what each audience (public clients, administrators) may see.

use std::collections::VecDeque;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::status::{compute_status, HealthStatus, PublicStatus, StatusInput};

/// Longest provider name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Names that would collide with fixed routes under `/api/streaming/providers/`.
pub const RESERVED_NAMES: [&str; 4] = ["admin", "events", "failovers", "health-check-all"];

/// Top-level config keys that never leave the server on public routes.
const PRIVATE_CONFIG_KEYS: [&str; 3] = ["secret", "private", "probe"];

/// Weight of the newest sample in the moving average of check latency.
const LATENCY_EWMA_ALPHA: f64 = 0.2;

/// Checks that a provider name matches `[a-z0-9_-]{1,64}` and is not reserved.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let well_formed = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !well_formed {
        return Err(ApiError::bad_request(
            "invalid_name",
            "provider name must match [a-z0-9_-]{1,64}",
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(ApiError::bad_request(
            "reserved_name",
            format!("provider name '{name}' is reserved"),
        ));
    }
    Ok(())
}

/// How the health checker reaches a provider, read from `config.probe`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Probe {
    /// `GET url`; healthy on a 2xx answer (redirects are followed).
    Http {
        /// Absolute `http://` or `https://` URL.
        url: String,
    },
    /// A TCP connect to `host:port`.
    Tcp {
        /// `host:port` to connect to.
        address: String,
    },
    /// `ffprobe` reads stream information from an RTMP URL.
    Rtmp {
        /// `rtmp://` or `rtmps://` URL.
        url: String,
    },
}

impl Probe {
    /// Reads the probe from a provider config; `Ok(None)` when none is configured.
    pub fn from_config(config: &Map<String, Value>) -> Result<Option<Probe>, ApiError> {
        let Some(raw) = config.get("probe") else {
            return Ok(None);
        };
        let probe: Probe = serde_json::from_value(raw.clone())
            .map_err(|e| ApiError::bad_request("invalid_probe", format!("config.probe: {e}")))?;
        let valid = match &probe {
            Probe::Http { url } => url.starts_with("http://") || url.starts_with("https://"),
            Probe::Tcp { address } => address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            }),
            Probe::Rtmp { url } => url.starts_with("rtmp://") || url.starts_with("rtmps://"),
        };
        if !valid {
            return Err(ApiError::bad_request(
                "invalid_probe",
                "config.probe: http needs an http(s):// url, tcp a host:port address, rtmp an rtmp(s):// url",
            ));
        }
        Ok(Some(probe))
    }
}

/// The config as public clients see it: without the `secret`, `private` and
/// `probe` keys at the top level, and without any key starting with `_` at any depth.
pub fn public_config(config: &Map<String, Value>) -> Value {
    fn strip(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| !k.starts_with('_'))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    Value::Object(
        config
            .iter()
            .filter(|(k, _)| !k.starts_with('_') && !PRIVATE_CONFIG_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), strip(v)))
            .collect(),
    )
}

/// One recorded health check, kept for charts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckSample {
    /// When the check finished (unix milliseconds).
    pub at: i64,
    /// Whether the provider answered as expected.
    pub ok: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
}

/// Body of `GET /api/streaming/providers/{name}/history`: stored checks for charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckHistory {
    /// Provider name.
    pub provider: String,
    /// Most checks the registry keeps per provider (the `historyLimit` setting).
    pub history_limit: usize,
    /// Checks, oldest first.
    pub checks: Vec<CheckSample>,
}

/// Counters kept per provider, persisted with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Checks ever recorded.
    pub total_checks: u64,
    /// Checks that failed.
    pub failed_checks: u64,
    /// Failed checks in a row.
    pub consecutive_failures: u64,
    /// When the last check finished (unix milliseconds).
    pub last_check_ms: Option<i64>,
    /// Whether the last check succeeded.
    pub last_ok: Option<bool>,
    /// The last check's error, if it failed.
    pub last_error: Option<String>,
    /// The last check's latency in milliseconds.
    pub last_latency_ms: Option<f64>,
    /// Moving average of successful checks' latency in milliseconds.
    pub avg_latency_ms: Option<f64>,
    /// Streams currently live on the provider, as reported by clients.
    pub active_streams: u64,
    /// Streams ever started on (or failed over to) the provider.
    pub total_streams: u64,
}

impl Metrics {
    /// Folds one check result into the counters.
    pub fn record_check(&mut self, sample: &CheckSample, error: Option<String>) {
        self.total_checks += 1;
        self.last_check_ms = Some(sample.at);
        self.last_ok = Some(sample.ok);
        self.last_latency_ms = Some(sample.latency_ms);
        if sample.ok {
            self.consecutive_failures = 0;
            self.last_error = None;
            // Failed checks mostly measure the timeout, so only successes feed the average.
            self.avg_latency_ms = Some(match self.avg_latency_ms {
                Some(avg) => avg + LATENCY_EWMA_ALPHA * (sample.latency_ms - avg),
                None => sample.latency_ms,
            });
        } else {
            self.failed_checks += 1;
            self.consecutive_failures += 1;
            self.last_error = error;
        }
    }

    /// Successful checks over all checks, in percent; `None` before the first check.
    pub fn uptime_percent(&self) -> Option<f64> {
        (self.total_checks > 0).then(|| {
            let ok = self.total_checks - self.failed_checks;
            ok as f64 * 100.0 / self.total_checks as f64
        })
    }
}

/// Everything stored about one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRecord {
    /// Unique name, `[a-z0-9_-]{1,64}`.
    pub name: String,
    /// Whether clients may use it.
    pub is_active: bool,
    /// Failover order: lower is tried first.
    pub priority: u32,
    /// Full config, including private parts and the probe.
    pub config: Map<String, Value>,
    /// Stream capacity; `None` means unlimited.
    pub max_streams: Option<u32>,
    /// What the provider costs per month, for the admin dashboard.
    pub monthly_cost: f64,
    /// Creation time (unix milliseconds).
    pub created_at_ms: i64,
    /// Last change by an administrator (unix milliseconds).
    pub updated_at_ms: i64,
    /// Check and stream counters.
    pub metrics: Metrics,
    /// Recent checks, oldest first, bounded by the configured history limit.
    pub history: VecDeque<CheckSample>,
}

impl ProviderRecord {
    /// Failed checks over the recent-history window, in percent (0 when empty).
    pub fn error_rate_percent(&self) -> f64 {
        if self.history.is_empty() {
            return 0.0;
        }
        let failed = self.history.iter().filter(|s| !s.ok).count();
        failed as f64 * 100.0 / self.history.len() as f64
    }

    /// The detailed status derived from the record.
    pub fn status(&self) -> HealthStatus {
        compute_status(&StatusInput {
            is_active: self.is_active,
            total_checks: self.metrics.total_checks,
            consecutive_failures: self.metrics.consecutive_failures,
            uptime_percent: self.metrics.uptime_percent().unwrap_or(0.0),
            error_rate_percent: self.error_rate_percent(),
        })
    }

    /// The probe configured for this provider, if any (invalid probes count as none).
    pub fn probe(&self) -> Option<Probe> {
        Probe::from_config(&self.config).ok().flatten()
    }

    /// The entry shown in the public provider list.
    pub fn public_view(&self) -> PublicProvider {
        PublicProvider {
            name: self.name.clone(),
            is_active: self.is_active,
            priority: self.priority,
            config: public_config(&self.config),
            max_streams: self.max_streams,
            active_streams: self.metrics.active_streams,
        }
    }

    /// The body of the public health route.
    pub fn public_health(&self) -> PublicHealth {
        let status = self.status();
        PublicHealth {
            healthy: status.is_healthy(),
            provider: self.name.clone(),
            status: status.public_status(),
        }
    }

    /// Everything an administrator sees; `with_history` adds the recent checks.
    pub fn admin_view(&self, with_history: bool) -> AdminProvider {
        let status = self.status();
        let m = &self.metrics;
        AdminProvider {
            name: self.name.clone(),
            is_active: self.is_active,
            priority: self.priority,
            config: Value::Object(self.config.clone()),
            max_streams: self.max_streams,
            monthly_cost: self.monthly_cost,
            created_at: self.created_at_ms,
            updated_at: self.updated_at_ms,
            status,
            healthy: status.is_healthy(),
            public_status: status.public_status(),
            statistics: Statistics {
                total_checks: m.total_checks,
                failed_checks: m.failed_checks,
                consecutive_failures: m.consecutive_failures,
                last_check: m.last_check_ms,
                last_check_ok: m.last_ok,
                last_error: m.last_error.clone(),
                last_latency_ms: m.last_latency_ms,
                average_latency_ms: m.avg_latency_ms,
                uptime: m.uptime_percent(),
                error_rate: self.error_rate_percent(),
                active_streams: m.active_streams,
                total_streams: m.total_streams,
            },
            recent_checks: with_history.then(|| self.history.iter().copied().collect()),
        }
    }
}

/// A provider in the public list (`GET /api/streaming/providers`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicProvider {
    /// Provider name.
    pub name: String,
    /// Always true on the public list, kept for the client contract.
    pub is_active: bool,
    /// Failover order: lower is tried first.
    pub priority: u32,
    /// Public part of the config.
    pub config: Value,
    /// Stream capacity; omitted when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<u32>,
    /// Streams currently reported live.
    pub active_streams: u64,
}

/// Body of `GET /api/streaming/providers/{name}/health` and of `health` events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicHealth {
    /// Whether clients should keep using the provider.
    pub healthy: bool,
    /// Provider name.
    pub provider: String,
    /// Coarse status.
    pub status: PublicStatus,
}

/// Check and stream statistics on the admin views.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    /// Checks ever recorded.
    pub total_checks: u64,
    /// Checks that failed.
    pub failed_checks: u64,
    /// Failed checks in a row.
    pub consecutive_failures: u64,
    /// When the last check finished (unix milliseconds).
    pub last_check: Option<i64>,
    /// Whether the last check succeeded.
    pub last_check_ok: Option<bool>,
    /// The last check's error.
    pub last_error: Option<String>,
    /// The last check's latency.
    pub last_latency_ms: Option<f64>,
    /// Moving average latency of successful checks.
    pub average_latency_ms: Option<f64>,
    /// Successful checks over all checks, percent (lifetime).
    pub uptime: Option<f64>,
    /// Failed checks over the recent-history window, percent.
    pub error_rate: f64,
    /// Streams currently reported live.
    pub active_streams: u64,
    /// Streams ever started on or failed over to the provider.
    pub total_streams: u64,
}

/// A provider as administrators see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminProvider {
    /// Provider name.
    pub name: String,
    /// Whether clients may use it.
    pub is_active: bool,
    /// Failover order.
    pub priority: u32,
    /// Full config, private parts included.
    pub config: Value,
    /// Stream capacity; `null` means unlimited.
    pub max_streams: Option<u32>,
    /// Monthly cost.
    pub monthly_cost: f64,
    /// Creation time (unix milliseconds).
    pub created_at: i64,
    /// Last administrative change (unix milliseconds).
    pub updated_at: i64,
    /// Detailed status.
    pub status: HealthStatus,
    /// Same value as the public health route's `healthy`.
    pub healthy: bool,
    /// Same value as the public health route's `status`.
    pub public_status: PublicStatus,
    /// Counters.
    pub statistics: Statistics,
    /// Recent checks, oldest first (single-provider view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_checks: Option<Vec<CheckSample>>,
}

/// Body of `POST /api/streaming/providers` and an entry of a seed file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewProvider {
    /// Unique name, `[a-z0-9_-]{1,64}`.
    pub name: String,
    /// Defaults to true.
    #[serde(default = "default_true")]
    pub is_active: bool,
    /// Defaults to 100; must be >= 0.
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// Defaults to `{}`.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// Defaults to unlimited.
    #[serde(default)]
    pub max_streams: Option<u32>,
    /// Defaults to 0.
    #[serde(default)]
    pub monthly_cost: f64,
}

fn default_true() -> bool {
    true
}

fn default_priority() -> i64 {
    100
}

/// Body of `PUT /api/streaming/providers/{name}`: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderUpdate {
    /// New active flag.
    pub is_active: Option<bool>,
    /// New priority, must be >= 0.
    pub priority: Option<i64>,
    /// Replaces the whole config.
    pub config: Option<Map<String, Value>>,
    /// `Some(None)` (JSON `null`) makes the provider unlimited.
    #[serde(default, deserialize_with = "present_or_null")]
    pub max_streams: Option<Option<u32>>,
    /// New monthly cost, must be >= 0.
    pub monthly_cost: Option<f64>,
}

/// Tells an explicit `null` (`Some(None)`) apart from an absent field (`None`).
fn present_or_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Checks a priority from a request body.
pub fn validate_priority(priority: i64) -> Result<u32, ApiError> {
    u32::try_from(priority).map_err(|_| {
        ApiError::bad_request(
            "invalid_priority",
            "priority must be an integer between 0 and 4294967295",
        )
    })
}

/// Checks a monthly cost from a request body.
pub fn validate_cost(cost: f64) -> Result<f64, ApiError> {
    if cost.is_finite() && cost >= 0.0 {
        Ok(cost)
    } else {
        Err(ApiError::bad_request(
            "invalid_monthly_cost",
            "monthlyCost must be a number >= 0",
        ))
    }
}

impl NewProvider {
    /// Validates the body and turns it into a fresh record created at `now_ms`.
    pub fn into_record(self, now_ms: i64) -> Result<ProviderRecord, ApiError> {
        validate_name(&self.name)?;
        let priority = validate_priority(self.priority)?;
        let monthly_cost = validate_cost(self.monthly_cost)?;
        Probe::from_config(&self.config)?;
        Ok(ProviderRecord {
            name: self.name,
            is_active: self.is_active,
            priority,
            config: self.config,
            max_streams: self.max_streams,
            monthly_cost,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            metrics: Metrics::default(),
            history: VecDeque::new(),
        })
    }
}

impl ProviderUpdate {
    /// Applies the update to `record`, validating every field before changing any.
    pub fn apply(self, record: &mut ProviderRecord, now_ms: i64) -> Result<(), ApiError> {
        let priority = self.priority.map(validate_priority).transpose()?;
        let monthly_cost = self.monthly_cost.map(validate_cost).transpose()?;
        if let Some(config) = &self.config {
            Probe::from_config(config)?;
        }
        if let Some(active) = self.is_active {
            record.is_active = active;
        }
        if let Some(priority) = priority {
            record.priority = priority;
        }
        if let Some(config) = self.config {
            record.config = config;
        }
        if let Some(max) = self.max_streams {
            record.max_streams = max;
        }
        if let Some(cost) = monthly_cost {
            record.monthly_cost = cost;
        }
        record.updated_at_ms = now_ms;
        Ok(())
    }
}

/// Seed file contents: `{"providers": [ ... ]}` with entries shaped like the create body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// Providers to create on first start.
    pub providers: Vec<NewProvider>,
}

/// Kind of session telemetry event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionEventKind {
    /// A stream started on `provider`.
    Start,
    /// A stream on `provider` ended.
    End,
    /// A stream moved from `provider` to `toProvider`.
    Failover,
}

/// Body of `POST /api/streaming/sessions/events`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: SessionEventKind,
    /// Provider the stream is (or was) on.
    pub provider: String,
    /// Client's stream id.
    pub stream_id: String,
    /// Failover target; required for failovers, refused otherwise.
    #[serde(default)]
    pub to_provider: Option<String>,
    /// Free-text reason, at most 512 bytes.
    #[serde(default)]
    pub reason: Option<String>,
    /// The reporting client (one engine instance). With it, reports are deduplicated per
    /// `(clientId, streamId)` and streams expire when the client stops confirming them;
    /// without it every report is counted as sent.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// Body of `POST /api/streaming/sessions/alive`: every stream a client still runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AliveReport {
    /// The reporting client.
    pub client_id: String,
    /// Its live streams.
    pub sessions: Vec<AliveSession>,
}

/// One live stream in an [`AliveReport`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AliveSession {
    /// Provider carrying it.
    pub provider: String,
    /// Client's stream id.
    pub stream_id: String,
}

/// Most streams in one keep-alive report (clients send several when they run more).
pub const MAX_ALIVE_SESSIONS: usize = 500;

/// Longest accepted `clientId`.
pub const MAX_CLIENT_ID_LEN: usize = 128;

fn validate_client_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_client_id",
            "clientId must be 1 to 128 of A-Z a-z 0-9 - _ .",
        ))
    }
}

fn validate_stream_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_STREAM_ID_LEN {
        return Err(ApiError::bad_request(
            "invalid_stream_id",
            "streamId must be 1 to 256 bytes",
        ));
    }
    Ok(())
}

impl AliveReport {
    /// Checks sizes and ids.
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_client_id(&self.client_id)?;
        if self.sessions.len() > MAX_ALIVE_SESSIONS {
            return Err(ApiError::bad_request(
                "too_many_sessions",
                "at most 500 sessions per keep-alive report",
            ));
        }
        for s in &self.sessions {
            validate_stream_id(&s.stream_id)?;
        }
        Ok(())
    }
}

/// Longest accepted `streamId`.
pub const MAX_STREAM_ID_LEN: usize = 256;

/// Longest accepted failover `reason`.
pub const MAX_REASON_LEN: usize = 512;

impl SessionEvent {
    /// Checks field combinations serde cannot express.
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_stream_id(&self.stream_id)?;
        if let Some(id) = &self.client_id {
            validate_client_id(id)?;
        }
        if self
            .reason
            .as_ref()
            .is_some_and(|r| r.len() > MAX_REASON_LEN)
        {
            return Err(ApiError::bad_request(
                "invalid_reason",
                "reason must be at most 512 bytes",
            ));
        }
        match (self.kind, &self.to_provider) {
            (SessionEventKind::Failover, None) => Err(ApiError::bad_request(
                "missing_to_provider",
                "a failover needs toProvider",
            )),
            (SessionEventKind::Failover, Some(to)) if *to == self.provider => {
                Err(ApiError::bad_request(
                    "invalid_to_provider",
                    "toProvider must differ from provider",
                ))
            }
            (SessionEventKind::Start | SessionEventKind::End, Some(_)) => {
                Err(ApiError::bad_request(
                    "unexpected_to_provider",
                    "toProvider is only allowed on failover events",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Stream counters of one provider, returned after a session event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamCounts {
    /// Provider name.
    pub name: String,
    /// Streams currently live.
    pub active_streams: u64,
    /// Streams ever started on or failed over to it.
    pub total_streams: u64,
}

/// A provider's latest health-check outcome, as returned by the check routes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Provider name.
    pub provider: String,
    /// Probe type (`http`, `tcp`, `rtmp`), `null` when none is configured.
    pub probe: Option<&'static str>,
    /// When the last check finished (unix milliseconds); `null` if never checked.
    pub last_check: Option<i64>,
    /// Whether the last check succeeded.
    pub ok: Option<bool>,
    /// The last check's latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// The last check's error.
    pub error: Option<String>,
    /// Detailed status.
    pub status: HealthStatus,
    /// Public `healthy` value.
    pub healthy: bool,
    /// Public `status` value.
    pub public_status: PublicStatus,
    /// Failed checks in a row.
    pub consecutive_failures: u64,
    /// Lifetime uptime percent.
    pub uptime: Option<f64>,
    /// Recent error rate percent.
    pub error_rate: f64,
}

impl CheckReport {
    /// The report for a record's latest stored check.
    pub fn latest(record: &ProviderRecord) -> Self {
        let status = record.status();
        let m = &record.metrics;
        CheckReport {
            provider: record.name.clone(),
            probe: record.probe().map(|p| match p {
                Probe::Http { .. } => "http",
                Probe::Tcp { .. } => "tcp",
                Probe::Rtmp { .. } => "rtmp",
            }),
            last_check: m.last_check_ms,
            ok: m.last_ok,
            latency_ms: m.last_latency_ms,
            error: m.last_error.clone(),
            status,
            healthy: status.is_healthy(),
            public_status: status.public_status(),
            consecutive_failures: m.consecutive_failures,
            uptime: m.uptime_percent(),
            error_rate: record.error_rate_percent(),
        }
    }
}

/// One failover reported by a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverEntry {
    /// When it was reported (unix milliseconds).
    pub at: i64,
    /// Provider the stream left.
    pub from: String,
    /// Provider the stream moved to.
    pub to: String,
    /// Client's stream id.
    pub stream_id: String,
    /// Client's reason, if given.
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn names() {
        for ok in ["agora", "a", "web-rtc_2", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Agora",
            "a b",
            "ä",
            "a/b",
            &"x".repeat(65),
            "admin",
            "events",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_config_strips_private_parts() {
        let config = map(json!({
            "appId": "abc",
            "secret": {"key": "s"},
            "private": 1,
            "probe": {"type": "tcp", "address": "10.0.0.1:80"},
            "_token": "t",
            "nested": {"ok": 1, "_hidden": 2, "list": [{"_x": 1, "y": 2}]}
        }));
        assert_eq!(
            public_config(&config),
            json!({"appId": "abc", "nested": {"ok": 1, "list": [{"y": 2}]}})
        );
    }

    #[test]
    fn probes_parse_and_validate() {
        let ok = [
            json!({"probe": {"type": "http", "url": "http://127.0.0.1:1/x"}}),
            json!({"probe": {"type": "tcp", "address": "localhost:443"}}),
            json!({"probe": {"type": "rtmp", "url": "rtmp://h/live/k"}}),
            json!({}),
        ];
        for c in ok {
            assert!(Probe::from_config(&map(c.clone())).is_ok(), "{c}");
        }
        let bad = [
            json!({"probe": {"type": "ftp", "url": "ftp://x"}}),
            json!({"probe": {"type": "http", "url": "file:///etc/passwd"}}),
            json!({"probe": {"type": "tcp", "address": "nohost"}}),
            json!({"probe": {"type": "tcp", "address": "h:0"}}),
            json!({"probe": {"type": "http", "url": "http://x", "extra": 1}}),
            json!({"probe": "http://x"}),
        ];
        for c in bad {
            assert!(Probe::from_config(&map(c.clone())).is_err(), "{c}");
        }
    }

    #[test]
    fn metrics_track_failures_and_latency() {
        let mut m = Metrics::default();
        let s = |ok, latency_ms| CheckSample {
            at: 1,
            ok,
            latency_ms,
        };
        m.record_check(&s(true, 100.0), None);
        m.record_check(&s(true, 200.0), None);
        assert_eq!(m.avg_latency_ms, Some(120.0));
        m.record_check(&s(false, 5000.0), Some("timeout".into()));
        m.record_check(&s(false, 5000.0), Some("timeout".into()));
        assert_eq!(m.consecutive_failures, 2);
        assert_eq!(m.avg_latency_ms, Some(120.0));
        assert_eq!(m.uptime_percent(), Some(50.0));
        assert_eq!(m.last_error.as_deref(), Some("timeout"));
        m.record_check(&s(true, 120.0), None);
        assert_eq!(m.consecutive_failures, 0);
        assert_eq!(m.last_error, None);
    }

    #[test]
    fn update_distinguishes_null_from_absent() {
        let u: ProviderUpdate = serde_json::from_value(json!({"maxStreams": null})).unwrap();
        assert_eq!(u.max_streams, Some(None));
        let u: ProviderUpdate = serde_json::from_value(json!({})).unwrap();
        assert_eq!(u.max_streams, None);
        assert!(serde_json::from_value::<ProviderUpdate>(json!({"bogus": 1})).is_err());
    }

    #[test]
    fn update_is_all_or_nothing() {
        let mut rec = NewProvider {
            name: "agora".into(),
            is_active: true,
            priority: 1,
            config: Map::new(),
            max_streams: None,
            monthly_cost: 0.0,
        }
        .into_record(0)
        .unwrap();
        let before = rec.clone();
        let u = ProviderUpdate {
            is_active: Some(false),
            priority: Some(-1),
            ..Default::default()
        };
        assert!(u.apply(&mut rec, 5).is_err());
        assert_eq!(rec, before);
    }
}
