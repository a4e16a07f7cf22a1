//! Pure backoff and cool-down arithmetic. No clocks and no global RNG: the caller passes a
//! uniform sample, so tests pin every delay.

use std::time::Duration;

/// A source of uniform samples in `[0, 1)` for jitter. Injected so tests are deterministic.
pub trait JitterSource: Send {
    /// The next sample, uniform in `[0, 1)`.
    fn next_unit(&mut self) -> f64;
}

impl<R: rand::RngCore + Send> JitterSource for R {
    fn next_unit(&mut self) -> f64 {
        rand::Rng::random::<f64>(self)
    }
}

/// Exponential backoff with full jitter: retry `n` waits a uniform time in
/// `[0, min(cap, base * 2^(n-1))]` (AWS "full jitter", as LiveKit does), so a crowd of clients
/// that failed together does not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry.
    pub base: Duration,
    /// Largest ceiling of any retry.
    pub cap: Duration,
}

impl Backoff {
    /// The upper bound of the wait before retry `retry` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << exp)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The jittered wait before retry `retry`, given a uniform `unit` sample in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.ceiling(retry).mul_f64(unit)
    }
}

/// Envoy-style ejection: a provider that failed is not chosen for `base * times` (capped), so a
/// provider that keeps failing stays out longer each time.
pub fn cooldown(base: Duration, max: Duration, times_ejected: u32) -> Duration {
    base.checked_mul(times_ejected.max(1))
        .map_or(max, |d| d.min(max))
}

/// The wait before re-checking a provider that has failed `consecutive_failures` checks: fast
/// (`first`, then doubling) while suspect, never longer than the regular `interval`.
pub fn recheck_delay(first: Duration, interval: Duration, consecutive_failures: u32) -> Duration {
    if consecutive_failures == 0 {
        return interval;
    }
    let exp = (consecutive_failures - 1).min(31);
    first
        .checked_mul(1u32 << exp)
        .map_or(interval, |d| d.min(interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn ceilings_follow_livekit_schedule() {
        let b = Backoff {
            base: MS(300),
            cap: MS(7000),
        };
        let got: Vec<u128> = (1..=7).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(got, vec![300, 600, 1200, 2400, 4800, 7000, 7000]);
        assert_eq!(b.ceiling(u32::MAX), MS(7000));
    }

    #[test]
    fn delay_scales_with_the_sample() {
        let b = Backoff {
            base: MS(300),
            cap: MS(7000),
        };
        assert_eq!(b.delay(1, 0.0), Duration::ZERO);
        assert_eq!(b.delay(1, 0.5), MS(150));
        assert_eq!(b.delay(3, 0.25), MS(300));
        // Garbage samples never produce garbage waits.
        assert_eq!(b.delay(3, f64::NAN), Duration::ZERO);
        assert_eq!(b.delay(3, 7.0), MS(1200));
    }

    #[test]
    fn cooldown_grows_with_each_ejection_and_is_capped() {
        let base = Duration::from_secs(30);
        let max = Duration::from_secs(300);
        assert_eq!(cooldown(base, max, 1), base);
        assert_eq!(cooldown(base, max, 3), Duration::from_secs(90));
        assert_eq!(cooldown(base, max, 50), max);
        assert_eq!(cooldown(base, max, u32::MAX), max);
    }

    #[test]
    fn suspect_rechecks_are_fast_then_regular() {
        let i = Duration::from_secs(30);
        let f = Duration::from_secs(1);
        assert_eq!(recheck_delay(f, i, 0), i);
        assert_eq!(recheck_delay(f, i, 1), f);
        assert_eq!(recheck_delay(f, i, 2), Duration::from_secs(2));
        assert_eq!(recheck_delay(f, i, 10), i);
    }

    proptest! {
        #[test]
        fn delay_never_exceeds_ceiling_or_cap(base in 1u64..5_000, cap in 1u64..60_000, n in 1u32..100, u in 0.0f64..1.0) {
            let b = Backoff { base: MS(base), cap: MS(cap.max(base)) };
            let d = b.delay(n, u);
            prop_assert!(d <= b.ceiling(n));
            prop_assert!(d <= b.cap);
        }

        #[test]
        fn ceilings_never_shrink(base in 1u64..5_000, cap in 1u64..60_000, n in 1u32..60) {
            let b = Backoff { base: MS(base), cap: MS(cap.max(base)) };
            prop_assert!(b.ceiling(n + 1) >= b.ceiling(n));
        }
    }
}
