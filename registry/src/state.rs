//! The registry's in-memory view of the database and its change feed.
//! Writes go to SQLite first (one lock serialises them), then update the cache
//! and publish events; reads, including every public route, only touch the cache.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::{broadcast, Mutex};
use tokio::task::JoinSet;

use crate::audience::hub::{Hub, Seen};
use crate::config::Config;
use crate::error::ApiError;
use crate::health::Prober;
use crate::model::{PlacementRecord, ProviderRecord};
use crate::placement::Placements;
use crate::sessions::{Outcome, Report, RowChange, Sessions};
use crate::store::{self, Store};
use crate::wire::{
    AdminProvider, AliveReport, CheckHistory, CheckReport, CheckSample, FailoverEntry, NewProvider,
    ProviderUpdate, PublicProvider, SessionEvent, SessionEventKind, StreamCounts,
};

/// Events buffered per subscriber before it is considered lagging.
const EVENT_BUFFER: usize = 1024;

/// A change published to event-stream subscribers; payloads are pre-serialised JSON.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// The public provider list changed; payload `{"providers":[...]}`.
    Providers(Arc<str>),
    /// A provider's public health changed; payload `{"healthy","provider","status"}`.
    Health(Arc<str>),
    /// A stream's placement changed; payload `{"streamId","provider","epoch","standby","live"}`.
    /// Sent only to subscribers of that stream.
    Placement {
        /// The stream, for filtering.
        stream_id: Arc<str>,
        /// The event's data.
        data: Arc<str>,
    },
    /// A stream's audience on a provider changed; payload
    /// `{"streamId","provider","viewers","stalled","degraded","stalledShare","outage","at"}`.
    /// Sent only to subscribers of that stream.
    Audience {
        /// The stream, for filtering.
        stream_id: Arc<str>,
        /// The event's data.
        data: Arc<str>,
    },
    /// The server is stopping: streams end.
    Shutdown,
}

/// A serialised response body with its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedBody {
    /// Full JSON envelope.
    pub body: String,
    /// Quoted strong ETag derived from `body`.
    pub etag: String,
}

impl CachedBody {
    pub(crate) fn envelope(data: &str) -> Self {
        let body = format!("{{\"success\":true,\"data\":{data}}}");
        let etag = format!("\"{:016x}\"", fnv1a64(body.as_bytes()));
        Self { body, etag }
    }
}

/// FNV-1a: tiny, stable across releases (unlike `DefaultHasher`), plenty for ETags.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Cache {
    providers: BTreeMap<String, ProviderRecord>,
    list_data: Arc<str>,
    list: Arc<CachedBody>,
    health: HashMap<String, (Arc<str>, Arc<CachedBody>)>,
}

/// Shared registry state behind every route and the health checker.
pub(crate) struct Registry {
    config: Arc<Config>,
    store: Store,
    /// Held across "write database, then update cache" so concurrent writers
    /// cannot leave the cache in a different order than the database.
    write_lock: Mutex<()>,
    cache: RwLock<Cache>,
    events: broadcast::Sender<Event>,
    prober: Prober,
    /// Streams of clients that identify themselves; changed only under `write_lock`.
    sessions: std::sync::Mutex<Sessions>,
    /// The placement directory (its own lock: it shares no rows with the above).
    pub(crate) placements: Placements,
    /// Viewers' reports and the outages they confirm (its own lock).
    pub(crate) audience: Hub,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn list_data(providers: &BTreeMap<String, ProviderRecord>) -> Arc<str> {
    let mut list: Vec<PublicProvider> = providers
        .values()
        .filter(|p| p.is_active)
        .map(ProviderRecord::public_view)
        .collect();
    // Records come out of the map sorted by name; a stable sort keeps that as tie-break.
    list.sort_by_key(|p| p.priority);
    #[derive(serde::Serialize)]
    struct ListData {
        providers: Vec<PublicProvider>,
    }
    let data = serde_json::to_string(&ListData { providers: list })
        .expect("provider list always serialises");
    Arc::from(data)
}

fn health_entry(record: &ProviderRecord) -> (Arc<str>, Arc<CachedBody>) {
    let data =
        serde_json::to_string(&record.public_health()).expect("health view always serialises");
    let body = Arc::new(CachedBody::envelope(&data));
    (Arc::from(data), body)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    pub(crate) fn new(
        config: Arc<Config>,
        store: Store,
        records: Vec<ProviderRecord>,
        sessions: Sessions,
        placements: Vec<PlacementRecord>,
        prober: Prober,
    ) -> Self {
        let providers: BTreeMap<String, ProviderRecord> =
            records.into_iter().map(|r| (r.name.clone(), r)).collect();
        let list_data = list_data(&providers);
        let list = Arc::new(CachedBody::envelope(&list_data));
        let health = providers
            .values()
            .map(|r| (r.name.clone(), health_entry(r)))
            .collect();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let placements = Placements::new(
            store.clone(),
            events.clone(),
            config.session_ttl,
            config.placement_retention,
            placements,
        );
        let audience = Hub::new(
            config.audience,
            events.clone(),
            store.clone(),
            config.failover_history_limit,
        );
        Self {
            config,
            store,
            write_lock: Mutex::new(()),
            cache: RwLock::new(Cache {
                providers,
                list_data,
                list,
                health,
            }),
            events,
            prober,
            sessions: std::sync::Mutex::new(sessions),
            placements,
            audience,
        }
    }

    /// Body of the public provider list.
    pub(crate) fn public_list(&self) -> Arc<CachedBody> {
        Arc::clone(&read(&self.cache).list)
    }

    /// Body of a provider's public health route.
    pub(crate) fn public_health(&self, name: &str) -> Option<Arc<CachedBody>> {
        read(&self.cache)
            .health
            .get(name)
            .map(|(_, body)| Arc::clone(body))
    }

    /// Every provider, in failover order.
    pub(crate) fn admin_list(&self) -> Vec<AdminProvider> {
        let mut list: Vec<AdminProvider> = read(&self.cache)
            .providers
            .values()
            .map(|r| r.admin_view(false))
            .collect();
        list.sort_by_key(|p| p.priority);
        list
    }

    /// One provider with its recent checks.
    pub(crate) fn admin_get(&self, name: &str) -> Option<AdminProvider> {
        read(&self.cache)
            .providers
            .get(name)
            .map(|r| r.admin_view(true))
    }

    /// A provider's stored checks, oldest first: those at or after `since`
    /// (unix milliseconds), at most the newest `limit` of them.
    pub(crate) fn history(
        &self,
        name: &str,
        since: Option<i64>,
        limit: usize,
    ) -> Option<CheckHistory> {
        let cache = read(&self.cache);
        let record = cache.providers.get(name)?;
        let since = since.unwrap_or(i64::MIN);
        let mut checks: Vec<CheckSample> = record
            .history
            .iter()
            .rev()
            .filter(|s| s.at >= since)
            .take(limit)
            .copied()
            .collect();
        checks.reverse();
        Some(CheckHistory {
            provider: record.name.clone(),
            history_limit: self.config.history_limit,
            checks,
        })
    }

    /// Latest check outcome of every provider, sorted by name.
    pub(crate) fn latest_checks(&self) -> Vec<CheckReport> {
        read(&self.cache)
            .providers
            .values()
            .map(CheckReport::latest)
            .collect()
    }

    fn record(&self, name: &str) -> Result<ProviderRecord, ApiError> {
        read(&self.cache)
            .providers
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::unknown_provider(name))
    }

    /// Subscribes to changes and returns the current state as initial events: the provider
    /// list, every provider's health, and the placement and audience of each of `streams` that
    /// has one. Subscribing under the cache locks means no change falls between the two.
    pub(crate) fn subscribe(
        &self,
        streams: &HashSet<String>,
    ) -> (broadcast::Receiver<Event>, Vec<Event>) {
        let cache = read(&self.cache);
        let (receiver, placements) = self.audience.subscribe(streams, || {
            self.placements
                .subscribe(streams, || self.events.subscribe())
        });
        let mut initial = vec![Event::Providers(Arc::clone(&cache.list_data))];
        initial.extend(
            cache
                .providers
                .keys()
                .filter_map(|name| cache.health.get(name))
                .map(|(data, _)| Event::Health(Arc::clone(data))),
        );
        initial.extend(placements);
        (receiver, initial)
    }

    /// Event streams currently open.
    pub(crate) fn subscriber_count(&self) -> usize {
        self.events.receiver_count()
    }

    /// The current list and the placements of `streams` as events, to resynchronise a
    /// lagging subscriber.
    pub(crate) fn resync(&self, streams: &HashSet<String>) -> Vec<Event> {
        let mut events = vec![Event::Providers(Arc::clone(&read(&self.cache).list_data))];
        events.extend(self.placements.snapshot(streams));
        events.extend(self.audience.snapshot(streams));
        events
    }

    /// Ends every open event stream.
    pub(crate) fn close_events(&self) {
        let _ = self.events.send(Event::Shutdown);
    }

    /// Swaps changed records into the cache and publishes what clients can see change.
    /// Callers hold `write_lock`, so events go out in database order.
    fn commit(&self, upserts: Vec<ProviderRecord>, removed: Option<&str>) {
        let mut events = Vec::new();
        {
            let mut cache = write(&self.cache);
            let mut touched = Vec::with_capacity(upserts.len());
            for record in upserts {
                touched.push(record.name.clone());
                cache.providers.insert(record.name.clone(), record);
            }
            if let Some(name) = removed {
                cache.providers.remove(name);
                cache.health.remove(name);
            }
            let data = list_data(&cache.providers);
            if data != cache.list_data {
                cache.list = Arc::new(CachedBody::envelope(&data));
                cache.list_data = Arc::clone(&data);
                events.push(Event::Providers(data));
            }
            for name in touched {
                let entry = health_entry(&cache.providers[&name]);
                let changed = cache
                    .health
                    .get(&name)
                    .is_none_or(|(old, _)| *old != entry.0);
                if changed {
                    events.push(Event::Health(Arc::clone(&entry.0)));
                    cache.health.insert(name, entry);
                }
            }
        }
        for event in events {
            // No subscribers is fine: the change is still in the cache.
            let _ = self.events.send(event);
        }
    }

    /// Creates a provider.
    pub(crate) async fn create(&self, body: NewProvider) -> Result<AdminProvider, ApiError> {
        let record = body.into_record(crate::now_ms())?;
        let _guard = self.write_lock.lock().await;
        let stored = record.clone();
        self.store
            .call(move |c| store::insert_provider(c, &stored))
            .await?;
        tracing::info!(provider = %record.name, "provider created");
        let view = record.admin_view(false);
        self.commit(vec![record], None);
        Ok(view)
    }

    /// Applies an administrator's update.
    pub(crate) async fn update(
        &self,
        name: &str,
        update: ProviderUpdate,
    ) -> Result<AdminProvider, ApiError> {
        let _guard = self.write_lock.lock().await;
        let mut record = self.record(name)?;
        update.apply(&mut record, crate::now_ms())?;
        let stored = record.clone();
        self.store
            .call(move |c| store::update_providers(c, std::slice::from_ref(&stored)))
            .await?;
        tracing::info!(provider = %name, active = record.is_active, priority = record.priority, "provider updated");
        let view = record.admin_view(false);
        self.commit(vec![record], None);
        Ok(view)
    }

    /// Deletes a provider and its history.
    pub(crate) async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let _guard = self.write_lock.lock().await;
        self.record(name)?;
        let owned = name.to_owned();
        self.store
            .call(move |c| store::delete_provider(c, &owned))
            .await?;
        tracing::info!(provider = %name, "provider deleted");
        self.commit(Vec::new(), Some(name));
        Ok(())
    }

    /// Probes one provider now and records the result. Without a probe nothing
    /// is checked or written and the latest stored result is returned.
    pub(crate) async fn check(&self, name: &str) -> Result<CheckReport, ApiError> {
        let before = self.record(name)?;
        let Some(probe) = before.probe() else {
            return Ok(CheckReport::latest(&before));
        };
        // Probing happens outside the write lock: it can take the whole timeout.
        let outcome = self.prober.probe(&probe).await;
        let _guard = self.write_lock.lock().await;
        let mut record = self.record(name)?;
        let old_status = record.status();
        let sample = CheckSample {
            at: crate::now_ms(),
            ok: outcome.ok,
            latency_ms: outcome.latency.as_secs_f64() * 1000.0,
        };
        record.metrics.record_check(&sample, outcome.error.clone());
        record.history.push_back(sample);
        let limit = self.config.history_limit;
        while record.history.len() > limit {
            record.history.pop_front();
        }
        let stored = record.clone();
        self.store
            .call(move |c| store::record_check(c, &stored, &sample, limit))
            .await?;
        let new_status = record.status();
        if old_status != new_status {
            tracing::warn!(provider = %name, from = ?old_status, to = ?new_status, error = ?outcome.error, "provider status changed");
        }
        let report = CheckReport::latest(&record);
        self.commit(vec![record], None);
        Ok(report)
    }

    /// Checks providers concurrently (only active ones when `only_active`),
    /// returning reports sorted by name.
    pub(crate) async fn check_all(self: &Arc<Self>, only_active: bool) -> Vec<CheckReport> {
        let names: Vec<String> = read(&self.cache)
            .providers
            .values()
            .filter(|r| r.is_active || !only_active)
            .map(|r| r.name.clone())
            .collect();
        let mut tasks = JoinSet::new();
        for name in names {
            let registry = Arc::clone(self);
            tasks.spawn(async move { registry.check(&name).await });
        }
        let mut reports = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(report)) => reports.push(report),
                // Deleted while being checked: nothing to report.
                Ok(Err(e)) if e.code == "unknown_provider" => {}
                Ok(Err(e)) => tracing::error!(error = %e, "health check failed"),
                Err(e) => tracing::error!(error = %e, "health check task failed"),
            }
        }
        reports.sort_by(|a, b| a.provider.cmp(&b.provider));
        reports
    }

    /// Applies a client's session event to the stream counters. With a `clientId` the event
    /// is deduplicated against the client's tracked streams; without one it counts as sent.
    pub(crate) async fn session_event(
        &self,
        event: SessionEvent,
    ) -> Result<Vec<StreamCounts>, ApiError> {
        event.validate()?;
        let _guard = self.write_lock.lock().await;
        // Unknown providers are refused before anything changes.
        self.record(&event.provider)?;
        let to = event.to_provider.as_deref().unwrap_or_default();
        if event.kind == SessionEventKind::Failover {
            self.record(to)?;
        }
        let now = crate::now_ms();
        let from = event.provider.as_str();
        let outcome = match &event.client_id {
            Some(client) => {
                let report = match event.kind {
                    SessionEventKind::Start => Report::Start(from),
                    SessionEventKind::End => Report::End(from),
                    SessionEventKind::Failover => Report::Failover(from, to),
                };
                lock(&self.sessions).apply((client.clone(), event.stream_id.clone()), report, now)
            }
            None => {
                let mut o = Outcome::default();
                match event.kind {
                    SessionEventKind::Start => o.add(from, 1, 1),
                    SessionEventKind::End => o.add(from, -1, 0),
                    SessionEventKind::Failover => {
                        o.add(from, -1, 0);
                        o.add(to, 1, 1);
                    }
                }
                o
            }
        };
        // A repeated failover report adds no second history row.
        let failover = (event.kind == SessionEventKind::Failover
            && (event.client_id.is_none() || !outcome.deltas.is_empty()))
        .then(|| FailoverEntry {
            at: now,
            from: from.to_string(),
            to: to.to_string(),
            stream_id: event.stream_id.clone(),
            reason: event.reason.clone(),
        });
        self.store_outcome(outcome, failover).await?;
        let mut names = vec![from];
        if event.kind == SessionEventKind::Failover {
            names.push(to);
        }
        names
            .into_iter()
            .map(|name| {
                let r = self.record(name)?;
                Ok(StreamCounts {
                    name: r.name.clone(),
                    active_streams: r.metrics.active_streams,
                    total_streams: r.metrics.total_streams,
                })
            })
            .collect()
    }

    /// A client's keep-alive: every stream it still runs. Refreshes them (so they do not
    /// expire), counts ones the registry missed and moves ones it has on another provider.
    /// Streams on providers that no longer exist are skipped. Viewers' states go to the
    /// audience, counted under `ip`. Returns how many were tracked.
    pub(crate) async fn sessions_alive(
        &self,
        report: AliveReport,
        ip: std::net::IpAddr,
    ) -> Result<usize, ApiError> {
        report.validate()?;
        let _guard = self.write_lock.lock().await;
        let now = crate::now_ms();
        let mut outcome = Outcome::default();
        let mut seen = Vec::with_capacity(report.sessions.len());
        {
            let known = read(&self.cache);
            let mut sessions = lock(&self.sessions);
            for s in &report.sessions {
                if !known.providers.contains_key(&s.provider) {
                    continue;
                }
                let key = (report.client_id.clone(), s.stream_id.clone());
                let o = sessions.apply(key, Report::Alive(&s.provider), now);
                Sessions::merge(&mut outcome, o);
                seen.push(Seen {
                    stream_id: &s.stream_id,
                    provider: &s.provider,
                    role: s.role,
                    state: s.audience.unwrap_or_default(),
                });
            }
        }
        let tracked = seen.len();
        self.store_outcome(outcome, None).await?;
        self.audience.keep_alive(&report.client_id, &seen, ip).await;
        // The same keep-alive holds the client's placement claims on these streams.
        let ids = report.sessions.iter().map(|s| s.stream_id.as_str());
        self.placements.refresh(&report.client_id, ids).await?;
        Ok(tracked)
    }

    /// Forgets streams whose client has not confirmed them for the session TTL. Returns how
    /// many expired.
    pub(crate) async fn expire_sessions(&self) -> Result<usize, ApiError> {
        let ttl = i64::try_from(self.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let _guard = self.write_lock.lock().await;
        let outcome = lock(&self.sessions).expire(crate::now_ms().saturating_sub(ttl));
        let expired = outcome.rows.len();
        if expired > 0 {
            tracing::info!(
                expired,
                "sessions expired: their clients stopped confirming them"
            );
            self.store_outcome(outcome, None).await?;
        }
        Ok(expired)
    }

    /// Applies counter deltas and stores them with the session rows (and a failover), then
    /// publishes the new counts. If storing fails, the tracked sessions are put back.
    /// Callers hold `write_lock`.
    async fn store_outcome(
        &self,
        outcome: Outcome,
        failover: Option<FailoverEntry>,
    ) -> Result<(), ApiError> {
        let Outcome { deltas, rows, undo } = outcome;
        if deltas.is_empty() && rows.is_empty() && failover.is_none() {
            return Ok(());
        }
        let mut changed = Vec::new();
        for (name, d) in &deltas {
            // A provider deleted since: its counters are gone with it.
            let Ok(mut r) = self.record(name) else {
                continue;
            };
            let active = i64::try_from(r.metrics.active_streams).unwrap_or(i64::MAX);
            r.metrics.active_streams = u64::try_from((active + d.active).max(0)).unwrap_or(0);
            r.metrics.total_streams += d.total;
            changed.push(r);
        }
        let ended: Vec<(String, String)> = rows
            .iter()
            .filter_map(|row| match row {
                RowChange::Remove(key) => Some(key.clone()),
                RowChange::Upsert(..) => None,
            })
            .collect();
        let stored = changed.clone();
        let limit = self.config.failover_history_limit;
        let result = self
            .store
            .call(move |c| store::record_session(c, &stored, &rows, failover.as_ref(), limit))
            .await;
        if let Err(e) = result {
            lock(&self.sessions).restore(undo);
            return Err(e.into());
        }
        self.commit(changed, None);
        self.audience.ended(&ended).await;
        Ok(())
    }

    /// Failover history, newest first.
    pub(crate) async fn failovers(&self) -> Result<Vec<FailoverEntry>, ApiError> {
        let limit = self.config.failover_history_limit;
        Ok(self
            .store
            .call(move |c| store::list_failovers(c, limit))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_follows_content() {
        let a = CachedBody::envelope("{\"x\":1}");
        let b = CachedBody::envelope("{\"x\":1}");
        let c = CachedBody::envelope("{\"x\":2}");
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
