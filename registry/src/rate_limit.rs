//! Per-client token-bucket rate limiting for the unauthenticated routes.
//! [`TokenBucket`] is pure arithmetic over an injected instant; [`RateLimiter`]
//! keeps one bucket per client address and bounds how many it remembers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Buckets remembered before idle (full) ones are dropped.
const PRUNE_THRESHOLD: usize = 4096;

/// A bucket that refills at `rate` tokens per second up to `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens at `now`.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            updated: now,
        }
    }

    /// Tokens available at `now` (after refilling), without taking any.
    pub fn available(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        self.tokens = self.available(now, rate, burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(missing / rate))
        }
    }
}

/// One token bucket per client, keyed by address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl RateLimiter {
    /// A limiter allowing `per_second` requests per second with bursts of `burst`.
    /// A non-positive rate disables limiting.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            rate: per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether limiting is switched off.
    pub fn is_disabled(&self) -> bool {
        self.rate <= 0.0 || !self.rate.is_finite()
    }

    /// Takes a token for `ip`, or returns how long the client should wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.is_disabled() {
            return Ok(());
        }
        let now = Instant::now();
        let key = client_key(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= PRUNE_THRESHOLD && !buckets.contains_key(&key) {
            // A full bucket carries no state worth keeping: forgetting it is
            // equivalent to recreating it full on the client's next request.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.available(now, rate, burst) < burst);
        }
        buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(self.burst, now))
            .try_take(now, self.rate, self.burst)
    }
}

/// Groups IPv6 clients by /64, since one host usually owns a whole /64 and
/// could otherwise rotate addresses to escape its bucket.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(3.0, t0);
        for _ in 0..3 {
            assert!(b.try_take(t0, 2.0, 3.0).is_ok());
        }
        let wait = b.try_take(t0, 2.0, 3.0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a second at 2 tokens/s refills exactly one token.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.try_take(t1, 2.0, 3.0).is_ok());
        assert!(b.try_take(t1, 2.0, 3.0).is_err());
    }

    #[test]
    fn refill_is_capped_at_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(2.0, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.available(later, 10.0, 2.0), 2.0);
        assert!(b.try_take(later, 10.0, 2.0).is_ok());
        assert!(b.try_take(later, 10.0, 2.0).is_ok());
        assert!(b.try_take(later, 10.0, 2.0).is_err());
    }

    #[test]
    fn clock_going_backwards_does_not_add_tokens() {
        let t1 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::full(1.0, t1);
        assert!(b.try_take(t1, 1.0, 1.0).is_ok());
        assert!(b.try_take(t1 - Duration::from_secs(5), 1.0, 1.0).is_err());
    }

    #[test]
    fn limiter_is_per_client() {
        let limiter = RateLimiter::new(0.001, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_err());
        assert!(limiter.check(b).is_ok());
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let limiter = RateLimiter::new(0.001, 1);
        assert!(limiter.check("2001:db8::1".parse().unwrap()).is_ok());
        assert!(limiter.check("2001:db8::2".parse().unwrap()).is_err());
        assert!(limiter.check("2001:db8:0:1::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn zero_rate_disables_limiting() {
        let limiter = RateLimiter::new(0.0, 1);
        for _ in 0..100 {
            assert!(limiter.check("127.0.0.1".parse().unwrap()).is_ok());
        }
    }

    #[test]
    fn many_clients_are_pruned_once_their_buckets_refill() {
        let limiter = RateLimiter::new(1e9, 1);
        for i in 0..(PRUNE_THRESHOLD as u32 + 10) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            assert!(limiter.check(ip).is_ok());
        }
        let len = limiter.buckets.lock().unwrap().len();
        assert!(len < PRUNE_THRESHOLD, "{len} buckets kept");
    }
}
