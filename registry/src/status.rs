//! Pure health-status rules: turns a provider's check statistics into a status.
//! Kept free of I/O and clocks so every threshold can be unit-tested directly;
//! the registry calls [`compute_status`] whenever a provider's metrics change.

use serde::Serialize;

/// Consecutive failed checks at which a provider becomes [`HealthStatus::Critical`].
/// Three matches the client engine's failure threshold, so both sides agree on "down".
pub const CRITICAL_CONSECUTIVE_FAILURES: u64 = 3;

/// Uptime (percent) at or above which a provider is [`HealthStatus::Excellent`].
pub const EXCELLENT_UPTIME_PERCENT: f64 = 99.0;

/// Uptime (percent) at or above which a provider can be [`HealthStatus::Healthy`].
pub const HEALTHY_UPTIME_PERCENT: f64 = 95.0;

/// Recent error rate (percent) below which a provider can be [`HealthStatus::Healthy`].
pub const HEALTHY_MAX_ERROR_RATE_PERCENT: f64 = 10.0;

/// Detailed status shown to administrators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// Uptime of at least 99 %.
    Excellent,
    /// Uptime of at least 95 % and a recent error rate under 10 %.
    Healthy,
    /// Checked and reachable lately, but below the healthy thresholds.
    Warning,
    /// Three or more consecutive failed checks.
    Critical,
    /// Turned off by an administrator (`isActive == false`).
    Disabled,
    /// Never checked (for example because no probe is configured).
    Unknown,
}

/// Coarse status published to clients on the public health route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PublicStatus {
    /// EXCELLENT or HEALTHY.
    Active,
    /// WARNING.
    Degraded,
    /// CRITICAL.
    Down,
    /// UNKNOWN.
    Unknown,
    /// DISABLED.
    Disabled,
}

/// The statistics a status is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusInput {
    /// Whether an administrator has the provider turned on.
    pub is_active: bool,
    /// Checks ever recorded.
    pub total_checks: u64,
    /// Failed checks in a row, reset by any success.
    pub consecutive_failures: u64,
    /// Successful checks over all checks, in percent (lifetime).
    pub uptime_percent: f64,
    /// Failed checks over the recent-history window, in percent.
    pub error_rate_percent: f64,
}

/// Applies the status rules in their documented order; the first match wins.
pub fn compute_status(input: &StatusInput) -> HealthStatus {
    if !input.is_active {
        HealthStatus::Disabled
    } else if input.total_checks == 0 {
        HealthStatus::Unknown
    } else if input.consecutive_failures >= CRITICAL_CONSECUTIVE_FAILURES {
        HealthStatus::Critical
    } else if input.uptime_percent >= EXCELLENT_UPTIME_PERCENT {
        HealthStatus::Excellent
    } else if input.uptime_percent >= HEALTHY_UPTIME_PERCENT
        && input.error_rate_percent < HEALTHY_MAX_ERROR_RATE_PERCENT
    {
        HealthStatus::Healthy
    } else {
        HealthStatus::Warning
    }
}

impl HealthStatus {
    /// Whether clients should keep using the provider.
    ///
    /// Only CRITICAL and DISABLED are unhealthy: a single failed check (WARNING) is
    /// not a reason to move live streams, and UNKNOWN means "no evidence", so
    /// failing over on it would punish providers that simply have no probe.
    pub fn is_healthy(self) -> bool {
        !matches!(self, HealthStatus::Critical | HealthStatus::Disabled)
    }

    /// The coarse status shown on the public health route.
    pub fn public_status(self) -> PublicStatus {
        match self {
            HealthStatus::Excellent | HealthStatus::Healthy => PublicStatus::Active,
            HealthStatus::Warning => PublicStatus::Degraded,
            HealthStatus::Critical => PublicStatus::Down,
            HealthStatus::Unknown => PublicStatus::Unknown,
            HealthStatus::Disabled => PublicStatus::Disabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(total: u64, consecutive: u64, uptime: f64, error_rate: f64) -> StatusInput {
        StatusInput {
            is_active: true,
            total_checks: total,
            consecutive_failures: consecutive,
            uptime_percent: uptime,
            error_rate_percent: error_rate,
        }
    }

    #[test]
    fn disabled_wins_over_everything() {
        let mut i = input(10, 5, 0.0, 100.0);
        i.is_active = false;
        assert_eq!(compute_status(&i), HealthStatus::Disabled);
    }

    #[test]
    fn never_checked_is_unknown() {
        assert_eq!(
            compute_status(&input(0, 0, 0.0, 0.0)),
            HealthStatus::Unknown
        );
    }

    #[test]
    fn three_consecutive_failures_are_critical_even_with_high_uptime() {
        assert_eq!(
            compute_status(&input(1000, 3, 99.7, 1.0)),
            HealthStatus::Critical
        );
        assert_eq!(
            compute_status(&input(1000, 2, 99.8, 1.0)),
            HealthStatus::Excellent
        );
    }

    #[test]
    fn uptime_thresholds() {
        assert_eq!(
            compute_status(&input(100, 0, 99.0, 50.0)),
            HealthStatus::Excellent
        );
        assert_eq!(
            compute_status(&input(100, 0, 98.99, 9.99)),
            HealthStatus::Healthy
        );
        assert_eq!(
            compute_status(&input(100, 0, 95.0, 0.0)),
            HealthStatus::Healthy
        );
        assert_eq!(
            compute_status(&input(100, 0, 96.0, 10.0)),
            HealthStatus::Warning
        );
        assert_eq!(
            compute_status(&input(100, 1, 94.99, 0.0)),
            HealthStatus::Warning
        );
    }

    #[test]
    fn public_mapping_and_healthiness() {
        use HealthStatus::*;
        let cases = [
            (Excellent, PublicStatus::Active, true),
            (Healthy, PublicStatus::Active, true),
            (Warning, PublicStatus::Degraded, true),
            (Critical, PublicStatus::Down, false),
            (Unknown, PublicStatus::Unknown, true),
            (Disabled, PublicStatus::Disabled, false),
        ];
        for (status, public, healthy) in cases {
            assert_eq!(status.public_status(), public, "{status:?}");
            assert_eq!(status.is_healthy(), healthy, "{status:?}");
        }
    }

    #[test]
    fn serialized_names() {
        assert_eq!(
            serde_json::to_string(&HealthStatus::Critical).unwrap(),
            "\"CRITICAL\""
        );
        assert_eq!(
            serde_json::to_string(&PublicStatus::Degraded).unwrap(),
            "\"degraded\""
        );
    }
}
