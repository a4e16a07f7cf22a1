//! Which client streams are live on which provider, so that `activeStreams` stays true when
//! reports repeat, arrive for streams never seen, or stop because a client died.
//!
//! Clients that send a `clientId` are tracked per `(clientId, streamId)`: a repeated start is
//! counted once, an end for a stream that is not live changes nothing, and a stream whose client
//! stops confirming it (keep-alive reports) expires after the session TTL. Pure: the store
//! runs it inside the transaction that reads the reported keys' rows and writes the returned
//! row changes and counter deltas, so the database decides even with several instances.

use std::collections::{BTreeMap, HashMap};

/// A tracked stream: `(clientId, streamId)`.
pub type Key = (String, String);

/// Where a tracked stream runs and when its client last confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// Provider carrying the stream.
    pub provider: String,
    /// Last report about it (unix milliseconds).
    pub seen_ms: i64,
}

/// One row change for the `sessions` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    /// Insert or replace.
    Upsert(Key, Tracked),
    /// Delete.
    Remove(Key),
}

/// Counter changes of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta {
    /// Change of `activeStreams`.
    pub active: i64,
    /// Increase of `totalStreams`.
    pub total: u64,
}

/// What one report changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Counter changes by provider (only non-zero ones).
    pub deltas: BTreeMap<String, Delta>,
    /// Rows to write.
    pub rows: Vec<RowChange>,
    /// What the changed keys held before, to undo the change if it cannot be stored.
    pub undo: Vec<(Key, Option<Tracked>)>,
}

impl Outcome {
    /// The sessions this outcome removes (ended or expired).
    pub fn ended(&self) -> Vec<Key> {
        self.rows
            .iter()
            .filter_map(|row| match row {
                RowChange::Remove(key) => Some(key.clone()),
                RowChange::Upsert(..) => None,
            })
            .collect()
    }

    /// Count `active` and `total` more streams on `provider`.
    pub fn add(&mut self, provider: &str, active: i64, total: u64) {
        let d = self.deltas.entry(provider.to_string()).or_default();
        d.active += active;
        d.total += total;
        if *d == Delta::default() {
            self.deltas.remove(provider);
        }
    }
}

/// What a client reported about one of its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report<'a> {
    /// Started on the provider.
    Start(&'a str),
    /// Ended on the provider.
    End(&'a str),
    /// Moved from the first provider to the second.
    Failover(&'a str, &'a str),
    /// Still live on the provider (keep-alive).
    Alive(&'a str),
}

/// An owned [`Report`], to send a batch of them to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// Started on the provider.
    Start(String),
    /// Ended on the provider.
    End(String),
    /// Moved from the first provider to the second.
    Failover(String, String),
    /// Still live on the provider (keep-alive).
    Alive(String),
}

impl Reported {
    /// The borrowed report.
    pub fn as_report(&self) -> Report<'_> {
        match self {
            Reported::Start(p) => Report::Start(p),
            Reported::End(p) => Report::End(p),
            Reported::Failover(a, b) => Report::Failover(a, b),
            Reported::Alive(p) => Report::Alive(p),
        }
    }
}

/// Session reports to store in one transaction.
#[derive(Debug, Clone, Default)]
pub struct SessionBatch {
    /// Reports about tracked streams (clients that send a `clientId`), in order.
    pub tracked: Vec<(Key, Reported)>,
    /// Counter changes of reports without a `clientId` (counted as sent).
    pub untracked: Vec<(String, Delta)>,
    /// A failover history row to add.
    pub failover: Option<crate::wire::FailoverEntry>,
    /// Add `failover` only if the reports changed a counter (a repeated failover report of a
    /// tracked stream adds no second row).
    pub failover_only_if_counted: bool,
    /// When the reports arrived (unix milliseconds).
    pub now_ms: i64,
}

impl SessionBatch {
    /// Whether the batch holds keep-alives only (no start, end, failover or untracked count).
    pub fn only_keep_alives(&self) -> bool {
        self.untracked.is_empty()
            && self.failover.is_none()
            && self
                .tracked
                .iter()
                .all(|(_, r)| matches!(r, Reported::Alive(_)))
    }

    /// The distinct keys the batch reads, sorted (locks are taken in this order).
    pub fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self.tracked.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Applies the batch to `current` (the stored rows of [`keys`](Self::keys)): the rows to
    /// write, the counter deltas, and whether the failover row is to be added.
    pub fn plan(&self, current: Vec<(Key, Tracked)>) -> (Outcome, bool) {
        let mut sessions = Sessions::from_rows(current);
        let mut outcome = Outcome::default();
        for (key, report) in &self.tracked {
            let o = sessions.apply(key.clone(), report.as_report(), self.now_ms);
            Sessions::merge(&mut outcome, o);
        }
        for (provider, d) in &self.untracked {
            outcome.add(provider, d.active, d.total);
        }
        let failover = self.failover.is_some()
            && (!self.failover_only_if_counted || !outcome.deltas.is_empty());
        (outcome, failover)
    }
}

/// Counter deltas of the removed rows of an expiry: one stream less on each row's provider.
pub fn expired_deltas<'a>(providers: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Delta> {
    let mut out = Outcome::default();
    for p in providers {
        out.add(p, -1, 0);
    }
    out.deltas
}

/// The live streams of clients that identify themselves.
#[derive(Debug, Default)]
pub struct Sessions {
    live: HashMap<Key, Tracked>,
}

impl Sessions {
    /// Sessions loaded from the database.
    pub fn from_rows(rows: impl IntoIterator<Item = (Key, Tracked)>) -> Self {
        Self {
            live: rows.into_iter().collect(),
        }
    }

    /// Streams tracked now.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Put back what `undo` lists (newest change last), after storing an outcome failed.
    pub fn restore(&mut self, undo: Vec<(Key, Option<Tracked>)>) {
        for (key, before) in undo.into_iter().rev() {
            match before {
                Some(t) => self.live.insert(key, t),
                None => self.live.remove(&key),
            };
        }
    }

    /// Merge `other` into `into` (several reports stored together).
    pub fn merge(into: &mut Outcome, other: Outcome) {
        for (p, d) in other.deltas {
            into.add(&p, d.active, d.total);
        }
        into.rows.extend(other.rows);
        into.undo.extend(other.undo);
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Apply one report about `key` at `now_ms`.
    pub fn apply(&mut self, key: Key, report: Report<'_>, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        let before = self.live.get(&key).cloned();
        let current = before.as_ref().map(|t| t.provider.clone());
        out.undo.push((key.clone(), before));
        let on = |p: &str| Tracked {
            provider: p.to_string(),
            seen_ms: now_ms,
        };
        match report {
            Report::Start(p) | Report::Alive(p) | Report::Failover(_, p) => {
                match current.as_deref() {
                    // Already counted there: a repeat or a keep-alive.
                    Some(c) if c == p => {}
                    Some(c) => {
                        out.add(c, -1, 0);
                        out.add(p, 1, 1);
                    }
                    None => out.add(p, 1, 1),
                }
                self.live.insert(key.clone(), on(p));
                out.rows.push(RowChange::Upsert(key, on(p)));
            }
            Report::End(p) => {
                // An end for a stream not live there (a repeat, or after it expired or moved)
                // changes nothing.
                if current.as_deref() == Some(p) {
                    self.live.remove(&key);
                    out.add(p, -1, 0);
                    out.rows.push(RowChange::Remove(key));
                }
            }
        }
        out
    }

    /// Forget the streams not confirmed since `cutoff_ms`.
    pub fn expire(&mut self, cutoff_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        let stale: Vec<Key> = self
            .live
            .iter()
            .filter(|(_, t)| t.seen_ms < cutoff_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(t) = self.live.remove(&key) {
                out.add(&t.provider, -1, 0);
                out.rows.push(RowChange::Remove(key.clone()));
                out.undo.push((key, Some(t)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str, s: &str) -> Key {
        (c.to_string(), s.to_string())
    }

    fn deltas(o: &Outcome) -> Vec<(&str, i64, u64)> {
        o.deltas
            .iter()
            .map(|(p, d)| (p.as_str(), d.active, d.total))
            .collect()
    }

    #[test]
    fn a_repeated_start_counts_once_and_a_stray_end_counts_nothing() {
        let mut s = Sessions::default();
        assert_eq!(
            deltas(&s.apply(key("c", "s"), Report::Start("a"), 1)),
            [("a", 1, 1)]
        );
        assert_eq!(deltas(&s.apply(key("c", "s"), Report::Start("a"), 2)), []);
        assert_eq!(deltas(&s.apply(key("c", "x"), Report::End("a"), 3)), []);
        assert_eq!(deltas(&s.apply(key("c", "s"), Report::End("b"), 3)), []);
        assert_eq!(
            deltas(&s.apply(key("c", "s"), Report::End("a"), 4)),
            [("a", -1, 0)]
        );
        assert_eq!(deltas(&s.apply(key("c", "s"), Report::End("a"), 5)), []);
        assert!(s.is_empty());
    }

    #[test]
    fn viewers_of_one_stream_on_different_clients_are_counted_apart() {
        let mut s = Sessions::default();
        s.apply(key("phone1", "match"), Report::Start("a"), 1);
        let o = s.apply(key("phone2", "match"), Report::Start("a"), 1);
        assert_eq!(deltas(&o), [("a", 1, 1)]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn failover_moves_the_count_and_a_keep_alive_repairs_a_missed_report() {
        let mut s = Sessions::default();
        s.apply(key("c", "s"), Report::Start("a"), 1);
        let o = s.apply(key("c", "s"), Report::Failover("a", "b"), 2);
        assert_eq!(deltas(&o), [("a", -1, 0), ("b", 1, 1)]);
        // The failover report to c was lost; the keep-alive says where it really is.
        let o = s.apply(key("c", "s"), Report::Alive("c"), 3);
        assert_eq!(deltas(&o), [("b", -1, 0), ("c", 1, 1)]);
        // A keep-alive for a stream the registry never heard of counts it.
        let o = s.apply(key("c", "new"), Report::Alive("a"), 3);
        assert_eq!(deltas(&o), [("a", 1, 1)]);
    }

    #[test]
    fn a_batch_plans_on_the_stored_rows_and_knows_keep_alives() {
        let mut batch = SessionBatch {
            now_ms: 10,
            ..SessionBatch::default()
        };
        batch
            .tracked
            .push((key("c", "s"), Reported::Alive("a".into())));
        batch
            .tracked
            .push((key("c", "t"), Reported::Alive("b".into())));
        assert!(batch.only_keep_alives());
        // "s" is stored on a already: only "t" counts.
        let (o, _) = batch.plan(vec![(
            key("c", "s"),
            Tracked {
                provider: "a".into(),
                seen_ms: 1,
            },
        )]);
        assert_eq!(deltas(&o), [("b", 1, 1)]);
        assert_eq!(o.rows.len(), 2);
        batch
            .tracked
            .push((key("c", "u"), Reported::Start("a".into())));
        assert!(!batch.only_keep_alives());
        batch.tracked.pop();
        batch.untracked.push((
            "a".into(),
            Delta {
                active: 1,
                total: 1,
            },
        ));
        assert!(!batch.only_keep_alives());
    }

    #[test]
    fn streams_not_confirmed_in_time_expire() {
        let mut s = Sessions::default();
        s.apply(key("dead", "s1"), Report::Start("a"), 100);
        s.apply(key("dead", "s2"), Report::Start("a"), 100);
        s.apply(key("live", "s3"), Report::Start("a"), 100);
        s.apply(key("live", "s3"), Report::Alive("a"), 200);
        let o = s.expire(150);
        assert_eq!(deltas(&o), [("a", -2, 0)]);
        assert_eq!(o.rows.len(), 2);
        assert_eq!(s.len(), 1);
        assert_eq!(s.expire(150), Outcome::default());
        // Storing failed: everything comes back.
        s.restore(o.undo);
        assert_eq!(s.len(), 3);
        let o = s.apply(key("live", "s3"), Report::End("a"), 300);
        s.restore(o.undo);
        assert_eq!(s.len(), 3);
    }
}
