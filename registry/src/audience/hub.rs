//! The registry's side of the audience signal: the shared [`Audience`] behind a lock, fed by
//! keep-alives and session ends; the task that turns stale reports into unknown and sends
//! held-back pushes; `audience` events for the stream's subscribers; the poll body; and the
//! failover-history entry (`AudienceStalled`) of a confirmed outage.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use tokio::sync::{broadcast, watch, Notify};
use tokio::time::Instant;

use super::{Audience, AudienceConfig, AudienceView, Published};
use crate::sessions::SessionBatch;
use crate::state::{CachedBody, Event};
use crate::store::Store;
use crate::wire::{AudienceState, FailoverEntry, Role};

/// Most tallies `GET /api/admin/audience` lists.
pub const ADMIN_LIST_LIMIT: usize = 1000;

/// The reason of the failover-history entry recorded when viewers confirm an outage.
pub const OUTAGE_REASON: &str = "AudienceStalled";

/// One stream of a keep-alive, as the audience needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub stream_id: &'a str,
    pub provider: &'a str,
    pub role: Role,
    pub state: AudienceState,
}

/// Body of `GET /api/admin/audience`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AdminAudience {
    /// Tallies with viewers, by stream id and provider, at most the first 1000.
    pub audience: Vec<AudienceView>,
    /// How many there are (more than listed when the list was cut).
    pub total: usize,
}

/// The audience of every stream, its events and its history entries.
pub(crate) struct Hub {
    audience: Mutex<Audience>,
    /// Woken when a report may have moved the next deadline.
    wake: Notify,
    events: broadcast::Sender<Event>,
    store: Store,
    history_limit: usize,
}

fn event(view: &AudienceView) -> Event {
    Event::Audience {
        stream_id: Arc::from(view.stream_id.as_str()),
        data: serde_json::to_string(view)
            .expect("audience view always serialises")
            .into(),
    }
}

/// The failover-history entry of an outage the viewers confirmed: from the stalled provider,
/// `to` empty (the publisher's move is its own entry), the numbers in the reason.
pub fn history_entry(view: &AudienceView) -> FailoverEntry {
    FailoverEntry {
        at: view.at,
        from: view.provider.clone(),
        to: String::new(),
        stream_id: view.stream_id.clone(),
        reason: Some(format!(
            "{OUTAGE_REASON} viewers={} stalled={} degraded={} share={}",
            view.viewers, view.stalled, view.degraded, view.stalled_share
        )),
    }
}

impl Hub {
    pub(crate) fn new(
        config: AudienceConfig,
        events: broadcast::Sender<Event>,
        store: Store,
        history_limit: usize,
    ) -> Self {
        Self {
            audience: Mutex::new(Audience::new(config)),
            wake: Notify::new(),
            events,
            store,
            history_limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Audience> {
        self.audience.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Flushes and sends, under the lock (so a new subscriber's snapshot, taken under it too,
    /// is never followed by an older event). Returns the outages that started.
    fn publish(&self, audience: &mut Audience) -> Vec<AudienceView> {
        let mut started = Vec::new();
        for Published {
            view,
            outage_started,
        } in audience.flush(Instant::now(), crate::now_ms())
        {
            // No subscribers is fine: the tally is in the poll body.
            let _ = self.events.send(event(&view));
            if outage_started {
                tracing::warn!(stream = %view.stream_id, provider = %view.provider, viewers = view.viewers, stalled = view.stalled, "viewers confirm an outage");
                started.push(view);
            }
        }
        started
    }

    /// Writes the history entries of outages that started. A failed write is logged, not
    /// answered: the report itself was applied.
    async fn record(&self, started: Vec<AudienceView>) {
        if started.is_empty() {
            return;
        }
        let entries: Vec<FailoverEntry> = started.iter().map(history_entry).collect();
        let limit = self.history_limit;
        for entry in entries {
            let batch = SessionBatch {
                now_ms: entry.at,
                failover: Some(entry),
                ..SessionBatch::default()
            };
            if let Err(e) = self.store.record_sessions(batch, limit).await {
                tracing::warn!(error = %e, "could not record an audience outage in the history");
            }
        }
    }

    /// The streams of a client's keep-alive, reported from `ip`: viewers' states are counted,
    /// a stream it publishes is not watched by it.
    pub(crate) async fn keep_alive(&self, client_id: &str, seen: &[Seen<'_>], ip: IpAddr) {
        let started = {
            let mut audience = self.lock();
            let now = Instant::now();
            for s in seen {
                match s.role {
                    Role::Viewer => {
                        audience.report(s.stream_id, client_id, s.provider, ip, s.state, now)
                    }
                    Role::Publisher => audience.remove(s.stream_id, client_id),
                }
            }
            self.publish(&mut audience)
        };
        self.wake.notify_one();
        self.record(started).await;
    }

    /// Sessions `(clientId, streamId)` that ended or expired: their clients no longer watch
    /// those streams. (Fewer known viewers can raise the stalled share, so this too can
    /// confirm an outage.)
    pub(crate) async fn ended(&self, sessions: &[(String, String)]) {
        if sessions.is_empty() {
            return;
        }
        let started = {
            let mut audience = self.lock();
            for (client_id, stream_id) in sessions {
                audience.remove(stream_id, client_id);
            }
            self.publish(&mut audience)
        };
        self.wake.notify_one();
        self.record(started).await;
    }

    /// Turns stale reports into unknown and sends pushes that were held back until now.
    async fn tick(&self) {
        let started = {
            let mut audience = self.lock();
            audience.expire(Instant::now());
            self.publish(&mut audience)
        };
        self.record(started).await;
    }

    /// Runs [`tick`](Self::tick) whenever something is due, until `stop`.
    pub(crate) async fn run(&self, mut stop: watch::Receiver<bool>) {
        loop {
            let deadline = self.lock().next_deadline();
            let due = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let tick = tokio::select! {
                _ = due => true,
                _ = self.wake.notified() => false,
                _ = stop.wait_for(|s| *s) => return,
            };
            if tick {
                self.tick().await;
            }
        }
    }

    /// Runs `subscribe` under the lock and adds the current tallies of `streams` to its
    /// initial events, so every later `audience` event is newer than them.
    pub(crate) fn subscribe<R>(
        &self,
        streams: &HashSet<String>,
        subscribe: impl FnOnce() -> (R, Vec<Event>),
    ) -> (R, Vec<Event>) {
        let audience = self.lock();
        let (receiver, mut initial) = subscribe();
        initial.extend(Self::events_of(&audience, streams));
        (receiver, initial)
    }

    /// The current tallies of `streams` as events (for a lagging subscriber).
    pub(crate) fn snapshot(&self, streams: &HashSet<String>) -> Vec<Event> {
        Self::events_of(&self.lock(), streams)
    }

    fn events_of(audience: &Audience, streams: &HashSet<String>) -> Vec<Event> {
        let mut ids: Vec<&String> = streams.iter().collect();
        ids.sort();
        ids.into_iter()
            .flat_map(|id| audience.views(id))
            .map(|v| event(&v))
            .collect()
    }

    /// The body of `GET /api/streaming/streams/{streamId}` with the stream's `audience` added
    /// to its placement `placement` (a JSON object), or `None` when it has no viewers.
    pub(crate) fn public_body(&self, stream_id: &str, placement: &str) -> Option<CachedBody> {
        let views = self.lock().views(stream_id);
        if views.is_empty() {
            return None;
        }
        let audience = serde_json::to_string(&views).expect("audience views always serialise");
        let open = placement
            .strip_suffix('}')
            .expect("a placement view is a JSON object");
        Some(CachedBody::envelope(&format!(
            "{open},\"audience\":{audience}}}"
        )))
    }

    /// Every tally with viewers (admin).
    pub(crate) fn admin_list(&self) -> AdminAudience {
        let (audience, total) = self.lock().all_views(ADMIN_LIST_LIMIT);
        AdminAudience { audience, total }
    }
}
