//! Riding out a hiccup of the shared backend (Redis): the outage clock behind
//! `--backend-grace` and the backoff between retries. (Leases are kept by
//! [`Heartbeat::start_riding_out`](streamguard::capacity::Heartbeat::start_riding_out), which
//! keeps a probe going while renewals fail but the lease is still valid.)

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Doubling delays between retries, from `first` up to `cap`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Delays `first`, `2 first`, ... capped at `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            next: first.min(cap),
            cap,
        }
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.cap);
        d
    }
}

impl Default for Backoff {
    /// 100 ms doubling up to 1 s: a backend that is back is seen within a second.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(1))
    }
}

/// Why a backend call is not retried any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The run was stopped meanwhile (Ctrl-C, or another worker's fatal error).
    Cancelled,
    /// The backend has been unreachable for longer than the grace.
    PastGrace(String),
}

/// The run's outage clock, shared by every worker: started by the first failed backend call,
/// cleared by the first one that succeeds. While it runs, calls are retried with backoff; once
/// it passes the grace, the run stops.
#[derive(Debug)]
pub struct Outage {
    grace: Duration,
    since: Mutex<Option<Instant>>,
}

impl Outage {
    /// A clock that allows outages of up to `grace`.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            since: Mutex::new(None),
        }
    }

    /// A backend call succeeded: the backend is back.
    pub fn recovered(&self) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A backend call failed with `message`: how long the backend has been down, or
    /// [`Stop::PastGrace`] once that is longer than the grace.
    pub fn failed(&self, message: &str) -> Result<Duration, Stop> {
        let now = Instant::now();
        let since = *self
            .since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(now);
        let down = now - since;
        if down > self.grace {
            return Err(Stop::PastGrace(format!(
                "capacity backend unreachable for {:.1}s, longer than the backend grace ({:?}): {message}",
                down.as_secs_f64(),
                self.grace
            )));
        }
        Ok(down)
    }

    /// How long the backend has been down, if it is.
    pub fn down_for(&self) -> Option<Duration> {
        self.since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|s| s.elapsed())
    }

    /// The grace.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// After a failed call: waits the next backoff delay and returns `Ok` (retry), or stops
    /// (past the grace, or the run was cancelled).
    pub async fn pause(
        &self,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
        message: &str,
    ) -> Result<(), Stop> {
        self.failed(message)?;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Stop::Cancelled),
            _ = tokio::time::sleep(backoff.next_delay()) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use streamguard::capacity::{
        Candidate, CapacityError, Grant, Heartbeat, InMemoryLedger, Lease, SlotLedger, SlotRequest,
        Usage,
    };

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        let mut d = Backoff::default();
        assert_eq!(d.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn the_outage_clock_allows_the_grace_and_restarts_after_a_recovery() {
        let o = Outage::new(Duration::from_secs(10));
        assert_eq!(o.down_for(), None);
        assert_eq!(o.failed("x"), Ok(Duration::ZERO));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            o.failed("x"),
            Ok(Duration::from_secs(10)),
            "exactly the grace"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let Err(Stop::PastGrace(m)) = o.failed("redis release: no answer") else {
            panic!("past the grace")
        };
        assert!(m.ends_with(": redis release: no answer"), "{m}");
        assert_eq!(m.matches("unreachable").count(), 1, "{m}");
        // Back: a new outage gets a whole grace again.
        o.recovered();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(o.failed("x"), Ok(Duration::ZERO));
        assert_eq!(o.down_for(), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_backs_off_then_stops_past_the_grace_or_when_cancelled() {
        let o = Outage::new(Duration::from_secs(2));
        let cancel = CancellationToken::new();
        let mut b = Backoff::default();
        let start = Instant::now();
        let mut retries = 0;
        let stop = loop {
            match o.pause(&mut b, &cancel, "down").await {
                Ok(()) => retries += 1,
                Err(s) => break s,
            }
        };
        assert!(matches!(stop, Stop::PastGrace(_)));
        // 0.1 + 0.2 + 0.4 + 0.8 + 1 = 2.5 s > 2 s after 5 retries.
        assert_eq!(retries, 5);
        assert_eq!(start.elapsed(), Duration::from_millis(2500));
        o.recovered();
        cancel.cancel();
        assert_eq!(o.pause(&mut b, &cancel, "down").await, Err(Stop::Cancelled));
    }

    /// An in-memory ledger whose renewals can be made to fail as if the backend were down.
    struct Flaky {
        inner: InMemoryLedger,
        down: AtomicBool,
        renewals: AtomicUsize,
    }

    #[async_trait]
    impl SlotLedger for Flaky {
        async fn try_acquire(&self, r: &SlotRequest) -> Result<Grant, CapacityError> {
            self.inner.try_acquire(r).await
        }
        async fn acquire(&self, r: &SlotRequest, w: Duration) -> Result<Lease, CapacityError> {
            self.inner.acquire(r, w).await
        }
        async fn release(&self, l: &Lease) -> Result<bool, CapacityError> {
            self.inner.release(l).await
        }
        async fn renew(&self, l: &Lease) -> Result<(), CapacityError> {
            self.renewals.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(CapacityError::Unavailable("redis renew: no answer".into()));
            }
            self.inner.renew(l).await
        }
        async fn usage(&self, a: &str) -> Result<Usage, CapacityError> {
            self.inner.usage(a).await
        }
        fn global_limit(&self) -> Option<u32> {
            None
        }
    }

    async fn flaky_lease(ttl: Duration) -> (Arc<Flaky>, Lease) {
        let l = Arc::new(Flaky {
            inner: InMemoryLedger::new(None),
            down: AtomicBool::new(false),
            renewals: AtomicUsize::new(0),
        });
        let req = SlotRequest::new("h", ttl, vec![Candidate::new("a", Some(1))]);
        let Grant::Leased(lease) = l.try_acquire(&req).await.unwrap() else {
            panic!("free")
        };
        (l, lease)
    }

    #[tokio::test(start_paused = true)]
    async fn a_keeper_rides_out_an_outage_shorter_than_the_lease() {
        let (l, lease) = flaky_lease(Duration::from_secs(3)).await;
        let keeper = Heartbeat::start_riding_out(l.clone(), lease);
        // Renewed at 1 s; down from 1.5 s to 3.5 s (less than the 3 s TTL after the renewal).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        l.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        l.down.store(false, Ordering::SeqCst);
        let lost = tokio::time::timeout(Duration::from_secs(30), keeper.lost()).await;
        assert!(lost.is_err(), "kept: {lost:?}");
        assert!(l.renewals.load(Ordering::SeqCst) > 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_keeper_gives_up_before_the_lease_may_have_expired() {
        let (l, lease) = flaky_lease(Duration::from_secs(3)).await;
        let keeper = Heartbeat::start_riding_out(l.clone(), lease);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        l.down.store(true, Ordering::SeqCst);
        let start = Instant::now();
        let e = keeper.lost().await;
        assert!(matches!(e, CapacityError::Unavailable(_)), "{e:?}");
        // Last renewal at 1 s: valid until 4 s; given up no later than that.
        let at = Duration::from_millis(1500) + start.elapsed();
        assert!(at < Duration::from_secs(4), "lost at {at:?}");
        assert!(at >= Duration::from_secs(3), "gave up early, at {at:?}");
    }
}
