//! The placement directory: which provider carries each published stream, so viewers join the
//! publisher's provider and follow it when it moves.
//!
//! A publisher claims a stream with an epoch (`PUT .../streams/{id}/placement`). A claim is
//! accepted only with an epoch above the stored one (fencing: a publisher that was cut off and
//! comes back with an old epoch cannot move viewers back) and only if no other client holds the
//! stream; the database decides both in one statement ([`store::claim`]). A claim is held while
//! its client keeps it alive (the session keep-alive refreshes it) and ends when released or
//! when it expires (the session TTL); an ended placement stays as a tombstone, still fencing,
//! for the configured retention, then is dropped.
//!
//! Reads are served from an in-memory copy of the table with pre-serialised bodies, so public
//! reads never touch the database; every change is published as a `placement` event to the
//! event-stream subscribers of that stream. The write paths are in [`claims`], the SQL in
//! [`store`].

mod claims;
pub mod store;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{broadcast, Mutex};

use crate::error::ApiError;
use crate::model::PlacementRecord;
use crate::state::{CachedBody, Event};
use crate::store::Store;
use crate::wire::{AdminStreams, PlacementClaim};

/// Most placements the admin list returns (live ones, by stream id).
pub const ADMIN_LIST_LIMIT: usize = 1000;

/// Why a claim was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The claim's epoch is not above the stored one.
    StaleEpoch {
        /// The stored epoch.
        stored: i64,
    },
    /// Another client holds the stream (its claim is live and not expired).
    OwnedByOther,
}

/// Why `claim` may not replace `stored` at `now_ms`, or `None` if it may. Another client's
/// hold is reported first: it cannot take the stream whatever its epoch. [`store::claim`]
/// applies the same rule in SQL.
pub fn refusal(stored: &PlacementRecord, claim: &PlacementClaim, now_ms: i64) -> Option<Refusal> {
    if stored.client_id != claim.client_id && stored.held_at(now_ms) {
        return Some(Refusal::OwnedByOther);
    }
    (claim.epoch <= stored.epoch).then_some(Refusal::StaleEpoch {
        stored: stored.epoch,
    })
}

impl Refusal {
    /// The 409 answered for it.
    pub fn into_api_error(self, claimed: i64) -> ApiError {
        match self {
            Refusal::StaleEpoch { stored } => ApiError::new(
                StatusCode::CONFLICT,
                "stale_epoch",
                format!("epoch {claimed} is not above the stored epoch {stored}"),
            ),
            Refusal::OwnedByOther => owned_by_other(),
        }
    }
}

fn owned_by_other() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "owned_by_other",
        "another client holds this stream; it may take over once that claim expired",
    )
}

/// A stored placement with its public body and event data, serialised once per change.
#[derive(Debug, Clone)]
struct Entry {
    record: PlacementRecord,
    data: Arc<str>,
    body: Arc<CachedBody>,
}

impl Entry {
    fn new(record: PlacementRecord) -> Self {
        let data: Arc<str> = serde_json::to_string(&record.public_view())
            .expect("placement view always serialises")
            .into();
        let body = Arc::new(CachedBody::envelope(&data));
        Self { record, data, body }
    }

    fn event(&self) -> Event {
        Event::Placement {
            stream_id: Arc::from(self.record.stream_id.as_str()),
            data: Arc::clone(&self.data),
        }
    }
}

/// The placement directory: the table's in-memory copy, its write path and its events.
pub(crate) struct Placements {
    store: Store,
    events: broadcast::Sender<Event>,
    /// How long a claim lives without a keep-alive; zero: for ever.
    ttl: Duration,
    /// How long an ended placement is kept (fencing, `GET`) before it is dropped.
    retention: Duration,
    /// Held across "write database, then update the copy and publish", so events go out in
    /// database order.
    write_lock: Mutex<()>,
    cache: RwLock<BTreeMap<String, Entry>>,
}

impl Placements {
    pub(crate) fn new(
        store: Store,
        events: broadcast::Sender<Event>,
        ttl: Duration,
        retention: Duration,
        records: Vec<PlacementRecord>,
    ) -> Self {
        let cache = records
            .into_iter()
            .map(|r| (r.stream_id.clone(), Entry::new(r)))
            .collect();
        Self {
            store,
            events,
            ttl,
            retention,
            write_lock: Mutex::new(()),
            cache: RwLock::new(cache),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The placement of `stream_id` as JSON (the `data` of its public body) and the body of
    /// `GET /api/streaming/streams/{streamId}`, if a placement is stored.
    pub(crate) fn public_data(&self, stream_id: &str) -> Option<(Arc<str>, Arc<CachedBody>)> {
        self.read()
            .get(stream_id)
            .map(|e| (Arc::clone(&e.data), Arc::clone(&e.body)))
    }

    /// Live placements by stream id (at most [`ADMIN_LIST_LIMIT`]) and how many are live.
    pub(crate) fn admin_list(&self) -> AdminStreams {
        let cache = self.read();
        let live = cache.values().filter(|e| e.record.live());
        AdminStreams {
            total: live.clone().count(),
            streams: live
                .take(ADMIN_LIST_LIMIT)
                .map(|e| e.record.admin_view())
                .collect(),
        }
    }

    /// Subscribes (with `subscribe`) and returns the current placement of each of `streams`
    /// that has one, both under the copy's lock: events are sent under it too, so every
    /// event the new receiver gets is newer than (or the same as) the snapshot.
    pub(crate) fn subscribe<R>(
        &self,
        streams: &HashSet<String>,
        subscribe: impl FnOnce() -> R,
    ) -> (R, Vec<Event>) {
        let cache = self.read();
        let receiver = subscribe();
        (receiver, Self::events_of(&cache, streams))
    }

    /// The current placement of each of `streams` that has one, as events (for a lagging
    /// subscriber).
    pub(crate) fn snapshot(&self, streams: &HashSet<String>) -> Vec<Event> {
        Self::events_of(&self.read(), streams)
    }

    fn events_of(cache: &BTreeMap<String, Entry>, streams: &HashSet<String>) -> Vec<Event> {
        let mut ids: Vec<&String> = streams.iter().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| cache.get(id))
            .map(Entry::event)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(
        client: &str,
        epoch: i64,
        expires: Option<i64>,
        ended: Option<i64>,
    ) -> PlacementRecord {
        PlacementRecord {
            stream_id: "s".into(),
            provider: "agora".into(),
            epoch,
            standby: vec![],
            client_id: client.into(),
            expires_at_ms: expires,
            ended_at_ms: ended,
            updated_at_ms: 0,
        }
    }

    fn claim(client: &str, epoch: i64) -> PlacementClaim {
        PlacementClaim {
            provider: "zego".into(),
            epoch,
            standby: vec![],
            client_id: client.into(),
        }
    }

    #[test]
    fn refusal_table() {
        use Refusal::*;
        let now = 100;
        let cases = [
            // (stored, claim, expected)
            (stored("a", 3, Some(200), None), claim("a", 4), None),
            (
                stored("a", 3, Some(200), None),
                claim("a", 3),
                Some(StaleEpoch { stored: 3 }),
            ),
            (
                stored("a", 3, Some(200), None),
                claim("a", 2),
                Some(StaleEpoch { stored: 3 }),
            ),
            (
                stored("a", 3, Some(200), None),
                claim("b", 9),
                Some(OwnedByOther),
            ),
            (
                stored("a", 3, None, None),
                claim("b", 9),
                Some(OwnedByOther),
            ),
            // Expired (swept or not) or ended: another client may take over, above the epoch.
            (stored("a", 3, Some(100), None), claim("b", 4), None),
            (
                stored("a", 3, Some(100), None),
                claim("b", 3),
                Some(StaleEpoch { stored: 3 }),
            ),
            (stored("a", 3, Some(200), Some(50)), claim("b", 4), None),
            (
                stored("a", 3, Some(200), Some(50)),
                claim("a", 3),
                Some(StaleEpoch { stored: 3 }),
            ),
        ];
        for (i, (s, c, want)) in cases.into_iter().enumerate() {
            assert_eq!(refusal(&s, &c, now), want, "case {i}");
        }
    }

    #[test]
    fn refusals_answer_409_with_both_epochs() {
        let e = Refusal::StaleEpoch { stored: 7 }.into_api_error(5);
        assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "stale_epoch"));
        assert!(
            e.message.contains('5') && e.message.contains('7'),
            "{}",
            e.message
        );
        let e = Refusal::OwnedByOther.into_api_error(5);
        assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "owned_by_other"));
    }
}
