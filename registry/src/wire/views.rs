//! What the API answers: the public list and health, the administrators' view with its
//! statistics, check reports and history, stream counts and the failover log.

use serde::Serialize;
use serde_json::Value;

use crate::status::{HealthStatus, PublicStatus};

/// One recorded health check, kept for charts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckHistory {
    /// Provider name.
    pub provider: String,
    /// Most checks the registry keeps per provider (the `historyLimit` setting).
    pub history_limit: usize,
    /// Checks, oldest first.
    pub checks: Vec<CheckSample>,
}

/// A provider in the public list (`GET /api/streaming/providers`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

/// Stream counters of one provider, returned after a session event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

/// One failover reported by a client.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
