//! Pure per-provider health bookkeeping: consecutive failures, the suspect state with fast
//! re-checks, ejection with growing cool-downs, and stability for failback. Time comes in as
//! an argument so every rule is tested without a clock.

use crate::backoff::{cooldown, recheck_delay};
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

/// What the engine currently believes about a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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

/// The knobs of the health rules, taken from `ManagerConfig`.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    /// Consecutive failures that confirm an outage.
    pub failure_threshold: u32,
    /// Regular check interval of a healthy provider.
    pub interval: Duration,
    /// First re-check delay of a suspect provider; doubles per failure.
    pub recheck_first: Duration,
    /// Cool-down after the first ejection.
    pub cooldown_base: Duration,
    /// Longest cool-down.
    pub cooldown_max: Duration,
    /// Second trigger (seed 003's RTMP monitor): failing without a success in between for
    /// this long is an outage too, however few checks that was.
    pub max_unhealthy_for: Option<Duration>,
}

/// The result of feeding one signal to a [`HealthTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Status before the signal.
    pub from: HealthStatus,
    /// Status after it.
    pub to: HealthStatus,
    /// The signal confirmed a new outage: move live sessions away.
    pub outage: bool,
    /// The outage was confirmed by a check right after an error report.
    pub confirmed_report: bool,
}

impl Change {
    /// True if the status changed.
    pub fn status_changed(&self) -> bool {
        self.from != self.to
    }
}

/// Health of one provider.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    status: HealthStatus,
    consecutive_failures: u32,
    times_ejected: u32,
    cooling_until: Option<Instant>,
    last_ejected_at: Option<Instant>,
    healthy_since: Option<Instant>,
    unhealthy_since: Option<Instant>,
    report_pending: bool,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthTracker {
    /// A provider nothing is known about.
    pub fn new() -> Self {
        Self {
            status: HealthStatus::Unknown,
            consecutive_failures: 0,
            times_ejected: 0,
            cooling_until: None,
            last_ejected_at: None,
            healthy_since: None,
            unhealthy_since: None,
            report_pending: false,
        }
    }

    /// Current status.
    pub fn status(&self) -> HealthStatus {
        self.status
    }
    /// Failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
    /// How often it was ejected (decays after a quiet `cooldown_max`).
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected
    }
    /// True while the provider must not be preferred.
    pub fn is_cooling(&self, now: Instant) -> bool {
        self.cooling_until.is_some_and(|t| now < t)
    }
    /// Time left in the cool-down, if any.
    pub fn cooling_left(&self, now: Instant) -> Option<Duration> {
        self.cooling_until
            .filter(|t| now < *t)
            .map(|t| t.duration_since(now))
    }
    /// Half-open (Envoy's and resilience4j's term): the cool-down after an ejection ran out,
    /// but nothing has succeeded on the provider since. It may be tried again, one trial at a
    /// time (a start or a health check), and is preferred again only once a trial passes.
    pub fn is_half_open(&self, now: Instant) -> bool {
        self.consecutive_failures > 0 && self.cooling_until.is_some_and(|t| now >= t)
    }
    /// How long the provider has been continuously healthy, if it is.
    pub fn stable_for(&self, now: Instant) -> Option<Duration> {
        self.healthy_since.map(|t| now.saturating_duration_since(t))
    }

    /// A check or an operation succeeded.
    pub fn on_success(&mut self, now: Instant, policy: &HealthPolicy) -> Change {
        let from = self.status;
        self.consecutive_failures = 0;
        self.report_pending = false;
        self.unhealthy_since = None;
        if self.healthy_since.is_none() {
            self.healthy_since = Some(now);
        }
        // Ejections are forgiven after a quiet spell, so one bad day is not punished forever.
        if self
            .last_ejected_at
            .is_some_and(|t| now.saturating_duration_since(t) >= policy.cooldown_max)
        {
            self.times_ejected = 0;
        }
        // A cool-down that ran out is over once something succeeded: the provider is no
        // longer half-open.
        if !self.is_cooling(now) {
            self.cooling_until = None;
        }
        self.status = HealthStatus::Healthy;
        Change {
            from,
            to: self.status,
            outage: false,
            confirmed_report: false,
        }
    }

    /// A health check or an attempt on the provider failed.
    pub fn on_failure(&mut self, now: Instant, policy: &HealthPolicy) -> Change {
        let from = self.status;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.healthy_since = None;
        let since = *self.unhealthy_since.get_or_insert(now);
        let too_long = policy
            .max_unhealthy_for
            .is_some_and(|d| now.saturating_duration_since(since) >= d);
        // A failure reported by the vendor SDK and then confirmed by an independent check is
        // an outage already: waiting for the full count would only lengthen the stall.
        let confirmed = std::mem::take(&mut self.report_pending);
        if confirmed || too_long || self.consecutive_failures >= policy.failure_threshold {
            let mut change = self.mark_down(now, policy);
            change.confirmed_report = confirmed;
            return change;
        }
        if self.status != HealthStatus::Unhealthy {
            self.status = HealthStatus::Suspect;
        }
        Change {
            from,
            to: self.status,
            outage: false,
            confirmed_report: false,
        }
    }

    /// The vendor SDK reported a transient error on a live session: counts as a failure and
    /// asks for confirmation by an immediate check.
    pub fn on_reported_error(&mut self, now: Instant, policy: &HealthPolicy) -> Change {
        let change = self.on_failure(now, policy);
        if !change.outage && self.status != HealthStatus::Unhealthy {
            self.report_pending = true;
        }
        change
    }

    /// The outage is confirmed (threshold reached, confirmed report, provider-fatal report):
    /// the provider becomes unhealthy and cools down. `outage` is set only on the transition,
    /// so sessions are moved once per outage.
    pub fn mark_down(&mut self, now: Instant, policy: &HealthPolicy) -> Change {
        let from = self.status;
        self.consecutive_failures = self.consecutive_failures.max(policy.failure_threshold);
        self.report_pending = false;
        self.healthy_since = None;
        self.status = HealthStatus::Unhealthy;
        if !self.is_cooling(now) {
            self.cool_down(now, policy);
        }
        Change {
            from,
            to: self.status,
            outage: from != HealthStatus::Unhealthy,
            confirmed_report: false,
        }
    }

    /// An operation gave up on the provider: do not prefer it for a while, longer each time
    /// (Envoy's ejection). Health status is left to the checks.
    pub fn cool_down(&mut self, now: Instant, policy: &HealthPolicy) {
        self.times_ejected = self.times_ejected.saturating_add(1);
        self.cooling_until = Some(
            now + cooldown(
                policy.cooldown_base,
                policy.cooldown_max,
                self.times_ejected,
            ),
        );
        self.last_ejected_at = Some(now);
    }

    /// Forget the cool-down (after a network change our own connectivity may have been at
    /// fault, not the provider's).
    pub fn forgive(&mut self) {
        self.cooling_until = None;
    }

    /// When to check next: fast while suspect, the regular interval otherwise.
    pub fn next_check_delay(&self, policy: &HealthPolicy) -> Duration {
        if self.report_pending {
            return Duration::ZERO;
        }
        match self.status {
            HealthStatus::Suspect => recheck_delay(
                policy.recheck_first,
                policy.interval,
                self.consecutive_failures,
            ),
            _ => policy.interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            failure_threshold: 3,
            interval: Duration::from_secs(30),
            recheck_first: Duration::from_secs(1),
            cooldown_base: Duration::from_secs(30),
            cooldown_max: Duration::from_secs(300),
            max_unhealthy_for: Some(Duration::from_secs(30)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn three_failures_mark_down_and_success_resets() {
        let p = policy();
        let mut h = HealthTracker::new();
        let t0 = Instant::now();
        assert_eq!(h.on_success(t0, &p).to, HealthStatus::Healthy);
        let c1 = h.on_failure(t0, &p);
        assert_eq!((c1.to, c1.outage), (HealthStatus::Suspect, false));
        assert_eq!(h.next_check_delay(&p), Duration::from_secs(1));
        h.on_failure(t0, &p);
        assert_eq!(h.next_check_delay(&p), Duration::from_secs(2));
        let c3 = h.on_failure(t0, &p);
        assert!(c3.outage);
        assert_eq!(h.status(), HealthStatus::Unhealthy);
        assert!(h.is_cooling(t0));
        assert_eq!(h.cooling_left(t0), Some(Duration::from_secs(30)));
        // Further failures of the same outage do not announce it again.
        assert!(!h.on_failure(t0, &p).outage);
        // A success after the cool-down clears everything.
        let later = t0 + Duration::from_secs(31);
        assert!(!h.is_cooling(later));
        h.on_success(later, &p);
        assert_eq!(h.consecutive_failures(), 0);
        assert_eq!(h.status(), HealthStatus::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_after_the_cool_down_until_a_success() {
        let p = policy();
        let mut h = HealthTracker::new();
        let t0 = Instant::now();
        assert!(!h.is_half_open(t0), "never failed");
        h.on_failure(t0, &p);
        assert!(!h.is_half_open(t0), "suspect, never ejected");
        h.cool_down(t0, &p);
        assert!(
            h.is_cooling(t0) && !h.is_half_open(t0),
            "cooling, not yet half-open"
        );
        let after = t0 + Duration::from_secs(30);
        assert!(!h.is_cooling(after) && h.is_half_open(after));
        // A failed trial ejects it again, for longer.
        h.on_failure(after, &p);
        h.cool_down(after, &p);
        assert!(!h.is_half_open(after));
        let later = after + h.cooling_left(after).unwrap();
        assert!(h.is_half_open(later));
        // A passing trial closes it for good, even if a later check fails.
        h.on_success(later, &p);
        assert!(!h.is_half_open(later));
        h.on_failure(later, &p);
        assert!(
            !h.is_half_open(later),
            "a suspect provider is not half-open"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_success_between_failures_prevents_an_outage() {
        let p = policy();
        let mut h = HealthTracker::new();
        let t = Instant::now();
        for _ in 0..10 {
            assert!(!h.on_failure(t, &p).outage);
            assert!(!h.on_failure(t, &p).outage);
            h.on_success(t, &p);
        }
        assert_eq!(h.times_ejected(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cool_down_without_outage_keeps_counting_toward_one() {
        // An operation gave up after two failures; the next failed check is the third.
        let p = policy();
        let mut h = HealthTracker::new();
        let t = Instant::now();
        h.on_failure(t, &p);
        h.on_failure(t, &p);
        h.cool_down(t, &p);
        assert_eq!(h.status(), HealthStatus::Suspect);
        assert!(h.on_failure(t, &p).outage);
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_ejections_cool_down_longer_and_decay() {
        let p = policy();
        let mut h = HealthTracker::new();
        let t0 = Instant::now();
        h.mark_down(t0, &p);
        assert_eq!(h.times_ejected(), 1);
        // Failing again after the cool-down cools it down for longer.
        let t1 = t0 + Duration::from_secs(31);
        h.on_failure(t1, &p);
        assert_eq!(h.times_ejected(), 2);
        assert_eq!(h.cooling_left(t1), Some(Duration::from_secs(60)));
        // Failures while cooling do not stack ejections.
        h.on_failure(t1, &p);
        assert_eq!(h.times_ejected(), 2);
        // A success long after the last ejection forgives the history.
        h.on_success(t1 + Duration::from_secs(301), &p);
        assert_eq!(h.times_ejected(), 0);
        h.cool_down(t1, &p);
        h.forgive();
        assert!(!h.is_cooling(t1));
    }

    #[tokio::test(start_paused = true)]
    async fn reported_error_confirmed_by_a_check_is_an_outage_at_once() {
        let p = policy();
        let mut h = HealthTracker::new();
        let t = Instant::now();
        h.on_success(t, &p);
        let c = h.on_reported_error(t, &p);
        assert!(!c.outage);
        assert_eq!(h.next_check_delay(&p), Duration::ZERO, "re-check at once");
        let c = h.on_failure(t, &p);
        assert!(c.outage && c.confirmed_report, "independent confirmation");
    }
    #[tokio::test(start_paused = true)]
    async fn reported_error_contradicted_by_a_check_is_a_blip() {
        let p = policy();
        let mut h = HealthTracker::new();
        let t = Instant::now();
        h.on_reported_error(t, &p);
        h.on_success(t, &p);
        assert_eq!(h.consecutive_failures(), 0);
        assert!(!h.on_failure(t, &p).outage);
    }

    #[tokio::test(start_paused = true)]
    async fn stability_counts_from_first_success_after_failure() {
        let p = policy();
        let mut h = HealthTracker::new();
        let t = Instant::now();
        h.on_success(t, &p);
        h.on_success(t + Duration::from_secs(10), &p);
        assert_eq!(
            h.stable_for(t + Duration::from_secs(20)),
            Some(Duration::from_secs(20))
        );
        h.on_failure(t + Duration::from_secs(20), &p);
        assert_eq!(h.stable_for(t + Duration::from_secs(21)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn continuously_unhealthy_for_long_enough_is_an_outage() {
        // Seed 003: 3 s checks, 10 consecutive failures would take 30 s; the duration trigger
        // fires at 12 s even though only 5 checks failed.
        let p = HealthPolicy {
            failure_threshold: 10,
            max_unhealthy_for: Some(Duration::from_secs(12)),
            ..policy()
        };
        let mut h = HealthTracker::new();
        let t0 = Instant::now();
        h.on_success(t0, &p);
        for i in 0..4u64 {
            assert!(
                !h.on_failure(t0 + Duration::from_secs(3 * i), &p).outage,
                "check {i}"
            );
        }
        assert!(h.on_failure(t0 + Duration::from_secs(12), &p).outage);
        // A success in between restarts the clock.
        let mut h = HealthTracker::new();
        h.on_failure(t0, &p);
        h.on_success(t0 + Duration::from_secs(6), &p);
        assert!(!h.on_failure(t0 + Duration::from_secs(13), &p).outage);
        // Off when not configured.
        let off = HealthPolicy {
            failure_threshold: 10,
            max_unhealthy_for: None,
            ..policy()
        };
        let mut h = HealthTracker::new();
        h.on_failure(t0, &off);
        assert!(!h.on_failure(t0 + Duration::from_secs(600), &off).outage);
    }
}
