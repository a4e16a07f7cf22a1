//! Lanes: the adapter calls for one (provider, stream id) pair run one at a time, in the order
//! they were queued. A FIFO ticket lock, pure and synchronous: a place in a lane is taken
//! under the engine's state lock, in the same critical section as the decision that needs it
//! (a session ending, an attempt starting), so an older session's leave can never land after
//! a newer session's start of the same stream, and a late success of an abandoned call is
//! left before anything newer touches the pair. Waiting for one's turn is the manager's job.

use std::collections::{BTreeSet, HashMap};

/// A (provider, stream id) pair.
pub(crate) type LaneKey = (String, String);

#[derive(Default)]
struct Lane {
    /// The next ticket to hand out.
    next: u64,
    /// The ticket whose turn it is.
    serving: u64,
    /// Tickets given up before their turn came.
    gone: BTreeSet<u64>,
}

/// Every lane with a ticket out; a lane disappears when its last ticket is released.
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: HashMap<LaneKey, Lane>,
}

impl Lanes {
    /// Queue in `key`'s lane.
    pub(crate) fn take(&mut self, key: &LaneKey) -> u64 {
        let lane = self.lanes.entry(key.clone()).or_default();
        let ticket = lane.next;
        lane.next += 1;
        ticket
    }

    /// Is it `ticket`'s turn?
    pub(crate) fn is_turn(&self, key: &LaneKey, ticket: u64) -> bool {
        self.lanes.get(key).is_none_or(|l| l.serving == ticket)
    }

    /// `ticket` is done (or gave up waiting): the next one still waiting gets its turn.
    pub(crate) fn release(&mut self, key: &LaneKey, ticket: u64) {
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        if lane.serving == ticket {
            lane.serving += 1;
            while lane.gone.remove(&lane.serving) {
                lane.serving += 1;
            }
        } else if ticket > lane.serving {
            lane.gone.insert(ticket);
        }
        if lane.serving >= lane.next {
            self.lanes.remove(key);
        }
    }

    /// Lanes with tickets out (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lanes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> LaneKey {
        (p.to_string(), "s".to_string())
    }

    #[test]
    fn first_come_first_served_per_pair() {
        let mut l = Lanes::default();
        let (a, b) = (key("agora"), key("zego"));
        let t0 = l.take(&a);
        let t1 = l.take(&a);
        let u0 = l.take(&b);
        assert!(l.is_turn(&a, t0) && !l.is_turn(&a, t1));
        assert!(l.is_turn(&b, u0), "lanes are independent");
        l.release(&a, t0);
        assert!(l.is_turn(&a, t1));
        l.release(&a, t1);
        l.release(&b, u0);
        assert_eq!(l.len(), 0, "empty lanes are dropped");
    }

    #[test]
    fn a_ticket_given_up_early_is_skipped() {
        let mut l = Lanes::default();
        let a = key("agora");
        let t0 = l.take(&a);
        let t1 = l.take(&a);
        let t2 = l.take(&a);
        l.release(&a, t1); // gave up waiting
        assert!(!l.is_turn(&a, t2));
        l.release(&a, t0);
        assert!(l.is_turn(&a, t2), "t1 is skipped");
        l.release(&a, t2);
        assert_eq!(l.len(), 0);
        // Releasing twice or an unknown ticket changes nothing.
        l.release(&a, t2);
        let t3 = l.take(&a);
        assert!(l.is_turn(&a, t3));
    }
}
