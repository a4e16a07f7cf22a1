//! The attempt policy: after an attempt fails, retry the same provider after a delay, fail
//! over to the next one, or stop. Pure and synchronous (no clock, no state), so every rule has
//! a table test; the connect loop in the manager only carries the decision out.

use crate::error::ErrorClass;
use crate::events::FailoverReason;
use std::time::Duration;
use tokio::time::Instant;

/// The knobs, from `ManagerConfig`.
#[derive(Debug, Clone, Copy)]
pub struct AttemptPolicy {
    /// Attempts per operation across all providers (`max_attempts`).
    pub max_attempts: u32,
    /// Attempts on one provider before failing over (`attempts_per_provider`).
    pub attempts_per_provider: u32,
}

/// What is known when an attempt has just failed.
#[derive(Debug, Clone, Copy)]
pub struct Failed {
    /// How the error is classified ([`ProviderError::class`](crate::ProviderError::class)).
    pub class: ErrorClass,
    /// Attempts made by this operation so far, the failed one included.
    pub attempts: u32,
    /// Attempts made on this provider by this operation, the failed one included.
    pub on_provider: u32,
    /// The provider was on trial (half-open after a cool-down): one attempt only.
    pub trial: bool,
    /// The backoff the retry would wait (already jittered).
    pub retry_delay: Duration,
    /// Now.
    pub now: Instant,
    /// The operation's deadline.
    pub deadline: Instant,
}

/// Why an operation stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The error was the request's own fault: no provider would take it.
    Rejected,
    /// `max_attempts` attempts were made.
    BudgetSpent,
    /// The next attempt could not start before the deadline.
    Deadline,
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the same provider again.
    Retry {
        /// How long to wait first.
        delay: Duration,
    },
    /// Give the provider up (and cool it down) for the next one, for `reason`. Whether a next
    /// attempt is allowed at all is [`AttemptPolicy::may_start`]'s call.
    Failover {
        /// Why the provider is given up.
        reason: FailoverReason,
    },
    /// End the operation.
    Stop(Stop),
}

impl AttemptPolicy {
    /// Decide what follows a failed attempt.
    pub fn after_failure(&self, f: &Failed) -> Next {
        match f.class {
            ErrorClass::RequestFatal => Next::Stop(Stop::Rejected),
            ErrorClass::ProviderFatal => Next::Failover {
                reason: FailoverReason::ProviderRejected,
            },
            ErrorClass::Transient if f.trial || f.on_provider >= self.attempts_per_provider => {
                Next::Failover {
                    reason: FailoverReason::RetriesExhausted,
                }
            }
            ErrorClass::Transient if f.attempts >= self.max_attempts => {
                Next::Stop(Stop::BudgetSpent)
            }
            // A retry that could only start at or after the deadline is not worth waiting for.
            ErrorClass::Transient if f.now + f.retry_delay >= f.deadline => {
                Next::Stop(Stop::Deadline)
            }
            ErrorClass::Transient => Next::Retry {
                delay: f.retry_delay,
            },
        }
    }

    /// May an attempt start now? `None` if yes, else why not. Checked right before every
    /// attempt, after the provider (and its slot) was chosen, since choosing can take time.
    pub fn may_start(&self, attempts: u32, now: Instant, deadline: Instant) -> Option<Stop> {
        if attempts >= self.max_attempts {
            Some(Stop::BudgetSpent)
        } else if now >= deadline {
            Some(Stop::Deadline)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    const POLICY: AttemptPolicy = AttemptPolicy {
        max_attempts: 3,
        attempts_per_provider: 2,
    };

    fn failed(class: ErrorClass, attempts: u32, on_provider: u32) -> Failed {
        let now = Instant::now();
        Failed {
            class,
            attempts,
            on_provider,
            trial: false,
            retry_delay: Duration::from_millis(300),
            now,
            deadline: now + Duration::from_secs(45),
        }
    }

    #[test]
    fn decisions_by_class_tries_and_budget() {
        let retry = Next::Retry {
            delay: Duration::from_millis(300),
        };
        let exhausted = Next::Failover {
            reason: FailoverReason::RetriesExhausted,
        };
        let rejected_by_provider = Next::Failover {
            reason: FailoverReason::ProviderRejected,
        };
        let table = [
            // (class, attempts, on provider) -> decision
            ((Transient, 1, 1), retry),
            ((Transient, 2, 2), exhausted),
            ((Transient, 2, 1), retry),
            ((Transient, 3, 1), Next::Stop(Stop::BudgetSpent)),
            ((Transient, 3, 2), exhausted),
            ((ProviderFatal, 1, 1), rejected_by_provider),
            ((ProviderFatal, 3, 1), rejected_by_provider),
            ((RequestFatal, 1, 1), Next::Stop(Stop::Rejected)),
            ((RequestFatal, 3, 2), Next::Stop(Stop::Rejected)),
        ];
        for ((class, attempts, on), want) in table {
            assert_eq!(
                POLICY.after_failure(&failed(class, attempts, on)),
                want,
                "{class:?} after {attempts} attempts, {on} on this provider"
            );
        }
    }

    #[test]
    fn a_trial_gets_one_attempt() {
        let mut f = failed(Transient, 1, 1);
        f.trial = true;
        assert_eq!(
            POLICY.after_failure(&f),
            Next::Failover {
                reason: FailoverReason::RetriesExhausted
            }
        );
    }

    #[test]
    fn no_retry_that_would_start_at_or_after_the_deadline() {
        let mut f = failed(Transient, 1, 1);
        f.retry_delay = Duration::from_secs(5);
        for (left, want) in [
            (
                Duration::from_secs(6),
                Next::Retry {
                    delay: f.retry_delay,
                },
            ),
            (Duration::from_secs(5), Next::Stop(Stop::Deadline)),
            (Duration::from_secs(3), Next::Stop(Stop::Deadline)),
            (Duration::ZERO, Next::Stop(Stop::Deadline)),
        ] {
            f.deadline = f.now + left;
            assert_eq!(POLICY.after_failure(&f), want, "{left:?} left");
        }
    }

    #[test]
    fn may_start_checks_budget_then_deadline() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert_eq!(POLICY.may_start(0, now, later), None);
        assert_eq!(POLICY.may_start(2, now, later), None);
        assert_eq!(POLICY.may_start(3, now, later), Some(Stop::BudgetSpent));
        assert_eq!(POLICY.may_start(1, later, later), Some(Stop::Deadline));
        assert_eq!(POLICY.may_start(1, later, now), Some(Stop::Deadline));
    }
}
