//! What the registry stores about a provider ([`ProviderRecord`], with its check
//! [`Metrics`]), how a validated body becomes or changes a record, and which wire view each
//! audience gets from it. The JSON shapes themselves are in [`crate::wire`].

use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::status::{compute_status, HealthStatus, StatusInput};
use crate::wire::{
    public_config, validate_cost, validate_name, validate_priority, AdminPlacement, AdminProvider,
    CheckReport, CheckSample, Invalid, NewProvider, PlacementView, Probe, ProviderUpdate,
    PublicHealth, PublicProvider, Statistics,
};

/// Weight of the newest sample in the moving average of check latency.
const LATENCY_EWMA_ALPHA: f64 = 0.2;

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

/// Where a stream is published, as stored: the last accepted claim, kept after the stream
/// ended (a tombstone) so that its epoch still fences stale publishers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRecord {
    /// The stream.
    pub stream_id: String,
    /// Provider carrying it.
    pub provider: String,
    /// Epoch of the last accepted claim.
    pub epoch: i64,
    /// Hot-standby providers.
    pub standby: Vec<String>,
    /// The client that made the last accepted claim.
    pub client_id: String,
    /// When the claim expires unless kept alive (unix milliseconds); `None`: never.
    pub expires_at_ms: Option<i64>,
    /// When the claim ended (released or expired); `None` while it is live.
    pub ended_at_ms: Option<i64>,
    /// Last change of the placement (unix milliseconds).
    pub updated_at_ms: i64,
}

impl PlacementRecord {
    /// Whether the claim has neither ended nor been marked expired.
    pub fn live(&self) -> bool {
        self.ended_at_ms.is_none()
    }

    /// Whether the claim still holds the stream at `now_ms`: live and not past its expiry
    /// (a claim past its expiry may be taken over before the sweep marks it ended).
    pub fn held_at(&self, now_ms: i64) -> bool {
        self.live() && self.expires_at_ms.is_none_or(|at| at > now_ms)
    }

    /// The public view (no client id).
    pub fn public_view(&self) -> PlacementView {
        PlacementView {
            stream_id: self.stream_id.clone(),
            provider: self.provider.clone(),
            epoch: self.epoch,
            standby: self.standby.clone(),
            live: self.live(),
        }
    }

    /// The administrators' view.
    pub fn admin_view(&self) -> AdminPlacement {
        AdminPlacement {
            stream_id: self.stream_id.clone(),
            provider: self.provider.clone(),
            epoch: self.epoch,
            standby: self.standby.clone(),
            live: self.live(),
            client_id: self.client_id.clone(),
            updated_at: self.updated_at_ms,
            expires_at: self.expires_at_ms,
        }
    }
}

impl NewProvider {
    /// Validates the body and turns it into a fresh record created at `now_ms`.
    pub fn into_record(self, now_ms: i64) -> Result<ProviderRecord, Invalid> {
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
    pub fn apply(self, record: &mut ProviderRecord, now_ms: i64) -> Result<(), Invalid> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
