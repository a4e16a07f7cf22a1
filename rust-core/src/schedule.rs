//! The monitor's schedule: which health checks and list refreshes are due now, and when to wake
//! next. Pure and synchronous (times in, decisions out), so every rule has a table test; the
//! monitor task only carries the plan out and sleeps until `wake_at` or a wake-up.

use std::time::Duration;
use tokio::time::Instant;

/// One provider's check clock, as the monitor keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// When its next check is due; `None` while it is not monitored.
    pub next_check: Option<Instant>,
    /// A check of it is running.
    pub in_flight: bool,
    /// It needs checks: it carries live sessions, or failback watches it.
    pub monitored: bool,
}

/// What the monitor does this turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The new `next_check` of every clock, in order.
    pub next_checks: Vec<Option<Instant>>,
    /// Indexes of the clocks whose check starts now.
    pub due: Vec<usize>,
    /// Re-read the provider list now.
    pub refresh: bool,
    /// When the list is read next (`None` while no session is live: an idle app polls nothing).
    pub next_refresh: Option<Instant>,
    /// When to wake up next, unless woken earlier; `None` for nothing scheduled.
    pub wake_at: Option<Instant>,
}

/// Plan one turn at `now`. A newly monitored provider is first checked one `interval` from now;
/// one no longer monitored stops being checked at once (the seed app's timer kept running
/// after the stream ended); a running check is never started twice. While any session is
/// live the list is re-read every `refresh_every`.
pub fn plan(
    now: Instant,
    interval: Duration,
    clocks: &[Clock],
    live: bool,
    next_refresh: Option<Instant>,
    refresh_every: Duration,
) -> Plan {
    let mut wake_at: Option<Instant> = None;
    let mut wake = |t: Instant| wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
    let mut due = Vec::new();
    let next_checks = clocks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if !c.monitored {
                return None;
            }
            let at = c.next_check.unwrap_or(now + interval);
            if !c.in_flight {
                if at <= now {
                    due.push(i);
                } else {
                    wake(at);
                }
            }
            Some(at)
        })
        .collect();
    let (refresh, next_refresh) = match (live, next_refresh) {
        (false, _) => (false, None),
        (true, Some(at)) if at > now => {
            wake(at);
            (false, Some(at))
        }
        (true, Some(_)) => {
            wake(now + refresh_every);
            (true, Some(now + refresh_every))
        }
        (true, None) => {
            wake(now + refresh_every);
            (false, Some(now + refresh_every))
        }
    };
    Plan {
        next_checks,
        due,
        refresh,
        next_refresh,
        wake_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn clock(next: Option<u64>, in_flight: bool, monitored: bool, t0: Instant) -> Clock {
        Clock {
            next_check: next.map(|n| t0 + S * n as u32),
            in_flight,
            monitored,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn checks_table() {
        let t0 = Instant::now();
        let at = |n: u64| Some(t0 + S * n as u32);
        // (case, clock, next_check after, due now)
        let now = t0 + 10 * S;
        let table = [
            (
                "new: first check one interval away",
                clock(None, false, true, t0),
                at(40),
                false,
            ),
            ("due", clock(Some(10), false, true, t0), at(10), true),
            ("overdue", clock(Some(2), false, true, t0), at(2), true),
            ("not yet", clock(Some(15), false, true, t0), at(15), false),
            (
                "running: never twice",
                clock(Some(2), true, true, t0),
                at(2),
                false,
            ),
            (
                "no longer monitored: stops",
                clock(Some(15), false, false, t0),
                None,
                false,
            ),
        ];
        for (case, c, next, due) in table {
            let p = plan(now, 30 * S, &[c], false, None, 30 * S);
            assert_eq!(p.next_checks, vec![next], "{case}");
            assert_eq!(p.due == vec![0], due, "{case}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_for_the_earliest_pending_deadline() {
        let t0 = Instant::now();
        let clocks = [
            clock(Some(7), false, true, t0),
            clock(Some(3), false, true, t0),
            clock(Some(1), true, true, t0), // running: its deadline does not wake us
            clock(Some(2), false, false, t0), // not monitored
        ];
        let p = plan(t0, 30 * S, &clocks, false, None, 30 * S);
        assert_eq!(p.wake_at, Some(t0 + 3 * S));
        assert!(p.due.is_empty());
        let idle = plan(t0, 30 * S, &[], false, None, 30 * S);
        assert_eq!(idle.wake_at, None, "nothing to do: sleep until woken");
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_table() {
        let t0 = Instant::now();
        let every = 30 * S;
        // (case, live, next_refresh, refresh now, next_refresh after)
        let table = [
            ("idle: no polling", false, Some(t0), false, None),
            (
                "first live turn: one period away",
                true,
                None,
                false,
                Some(t0 + every),
            ),
            ("due", true, Some(t0), true, Some(t0 + every)),
            ("not yet", true, Some(t0 + 5 * S), false, Some(t0 + 5 * S)),
        ];
        for (case, live, next, refresh, after) in table {
            let p = plan(t0, every, &[], live, next, every);
            assert_eq!((p.refresh, p.next_refresh), (refresh, after), "{case}");
            assert_eq!(p.wake_at, after, "{case}");
        }
    }
}
