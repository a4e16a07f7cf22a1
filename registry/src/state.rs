//! The registry's in-memory view of the database and its change feed.
//! Writes go to the database first (one lock serialises them per instance), then update the
//! cache and publish events; reads, including every public route, only touch the cache. With
//! several instances on one PostgreSQL database, the changes of the others arrive as
//! notifications ([`crate::fanout`]) and go through the same cache update and publication.

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
use crate::sessions::{Delta, Key, Reported, SessionBatch};
use crate::store::{Counts, Store};
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
    pub(crate) store: Store,
    /// Held across "write database, then update cache" so concurrent writers
    /// cannot leave the cache in a different order than the database.
    write_lock: Mutex<()>,
    cache: RwLock<Cache>,
    events: broadcast::Sender<Event>,
    prober: Prober,
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

impl Registry {
    pub(crate) fn new(
        config: Arc<Config>,
        store: Store,
        records: Vec<ProviderRecord>,
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
    fn commit(&self, upserts: Vec<ProviderRecord>, removed: &[String]) {
        let mut events = Vec::new();
        {
            let mut cache = write(&self.cache);
            let mut touched = Vec::with_capacity(upserts.len());
            for record in upserts {
                touched.push(record.name.clone());
                cache.providers.insert(record.name.clone(), record);
            }
            for name in removed {
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
        self.store.insert_provider(stored).await?;
        tracing::info!(provider = %record.name, "provider created");
        let view = record.admin_view(false);
        self.commit(vec![record], &[]);
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
        self.store.update_settings(stored).await?;
        tracing::info!(provider = %name, active = record.is_active, priority = record.priority, "provider updated");
        let view = record.admin_view(false);
        self.commit(vec![record], &[]);
        Ok(view)
    }

    /// Deletes a provider and its history.
    pub(crate) async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let _guard = self.write_lock.lock().await;
        self.record(name)?;
        self.store.delete_provider(name).await?;
        tracing::info!(provider = %name, "provider deleted");
        self.commit(Vec::new(), &[name.to_owned()]);
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
        self.store.record_check(stored, sample, limit).await?;
        let new_status = record.status();
        if old_status != new_status {
            tracing::warn!(provider = %name, from = ?old_status, to = ?new_status, error = ?outcome.error, "provider status changed");
        }
        let report = CheckReport::latest(&record);
        self.commit(vec![record], &[]);
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
        // No write lock: the database decides (see `store_sessions`).
        // Unknown providers are refused before anything changes.
        self.record(&event.provider)?;
        let to = event.to_provider.as_deref().unwrap_or_default();
        if event.kind == SessionEventKind::Failover {
            self.record(to)?;
        }
        let now = crate::now_ms();
        let from = event.provider.as_str();
        let mut batch = SessionBatch {
            now_ms: now,
            ..SessionBatch::default()
        };
        match &event.client_id {
            Some(client) => {
                let report = match event.kind {
                    SessionEventKind::Start => Reported::Start(from.to_owned()),
                    SessionEventKind::End => Reported::End(from.to_owned()),
                    SessionEventKind::Failover => {
                        Reported::Failover(from.to_owned(), to.to_owned())
                    }
                };
                batch
                    .tracked
                    .push(((client.clone(), event.stream_id.clone()), report));
                // A repeated failover report adds no second history row.
                batch.failover_only_if_counted = true;
            }
            None => {
                let d = |active, total| Delta { active, total };
                batch.untracked = match event.kind {
                    SessionEventKind::Start => vec![(from.to_owned(), d(1, 1))],
                    SessionEventKind::End => vec![(from.to_owned(), d(-1, 0))],
                    SessionEventKind::Failover => {
                        vec![(from.to_owned(), d(-1, 0)), (to.to_owned(), d(1, 1))]
                    }
                };
            }
        }
        batch.failover = (event.kind == SessionEventKind::Failover).then(|| FailoverEntry {
            at: now,
            from: from.to_string(),
            to: to.to_string(),
            stream_id: event.stream_id.clone(),
            reason: event.reason.clone(),
        });
        self.store_sessions(batch).await?;
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
        let mut batch = SessionBatch {
            now_ms: crate::now_ms(),
            ..SessionBatch::default()
        };
        let mut seen = Vec::with_capacity(report.sessions.len());
        {
            let known = read(&self.cache);
            for s in &report.sessions {
                if !known.providers.contains_key(&s.provider) {
                    continue;
                }
                let key = (report.client_id.clone(), s.stream_id.clone());
                batch
                    .tracked
                    .push((key, Reported::Alive(s.provider.clone())));
                seen.push(Seen {
                    stream_id: &s.stream_id,
                    provider: &s.provider,
                    role: s.role,
                    state: s.audience.unwrap_or_default(),
                });
            }
        }
        let tracked = seen.len();
        self.store_sessions(batch).await?;
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
        let (ended, counts) = self
            .store
            .expire_sessions(crate::now_ms().saturating_sub(ttl))
            .await?;
        let expired = ended.len();
        if expired > 0 {
            tracing::info!(
                expired,
                "sessions expired: their clients stopped confirming them"
            );
            self.refresh_counts(counts).await?;
            self.sessions_ended(&ended).await;
        }
        Ok(expired)
    }

    /// Stores session reports (the database decides what they change, see
    /// [`SessionBatch::plan`]), then publishes the new counts. Not under `write_lock`: session
    /// reports are the highest write rate, and the database orders them (per client), so
    /// they run concurrently; only publishing a change of counts takes the lock.
    async fn store_sessions(&self, batch: SessionBatch) -> Result<(), ApiError> {
        if batch.tracked.is_empty() && batch.untracked.is_empty() && batch.failover.is_none() {
            return Ok(());
        }
        let limit = self.config.failover_history_limit;
        let (counts, ended) = self.store.record_sessions(batch, limit).await?;
        if !counts.is_empty() {
            self.refresh_counts(counts).await?;
        }
        self.sessions_ended(&ended).await;
        Ok(())
    }

    /// Tracked sessions that ended (an end report, or expiry) leave the audience.
    async fn sessions_ended(&self, ended: &[Key]) {
        if !ended.is_empty() {
            self.audience.ended(ended).await;
        }
    }

    /// Publishes the counters of the providers in `changed` as they are in the database now.
    /// They are read again under `write_lock` rather than taken from the write that changed
    /// them: writes commit concurrently (and on other instances), so a write's own values may
    /// already be older than the cache; the database's current values never are.
    async fn refresh_counts(&self, changed: Vec<Counts>) -> Result<(), ApiError> {
        let names = changed.into_iter().map(|(name, ..)| name).collect();
        let _guard = self.write_lock.lock().await;
        let counts = self.store.counts(names).await?;
        self.apply_counts(counts);
        Ok(())
    }

    /// Puts stream counters read from the database into the cache and publishes the list if
    /// it changed. Callers hold `write_lock`.
    fn apply_counts(&self, counts: Vec<Counts>) {
        let changed: Vec<ProviderRecord> = {
            let cache = read(&self.cache);
            counts
                .into_iter()
                .filter_map(|(name, active, total)| {
                    let mut r = cache.providers.get(&name)?.clone();
                    r.metrics.active_streams = active;
                    r.metrics.total_streams = total;
                    Some(r)
                })
                .collect()
        };
        if !changed.is_empty() {
            self.commit(changed, &[]);
        }
    }

    /// Another instance changed the counters of `name`.
    pub(crate) async fn counts_changed(&self, name: &str) -> Result<(), ApiError> {
        self.refresh_counts(vec![(name.to_owned(), 0, 0)]).await
    }

    /// Another instance created, edited, checked or deleted `name`: reads it again.
    pub(crate) async fn reload_provider(&self, name: &str) -> Result<(), ApiError> {
        let _guard = self.write_lock.lock().await;
        match self.store.provider(name, self.config.history_limit).await? {
            Some(record) => self.commit(vec![record], &[]),
            None => self.commit(Vec::new(), &[name.to_owned()]),
        }
        Ok(())
    }

    /// Notifications may have been missed: reads every provider again.
    pub(crate) async fn reload_providers(&self) -> Result<(), ApiError> {
        let _guard = self.write_lock.lock().await;
        let records = self.store.providers(self.config.history_limit).await?;
        let gone: Vec<String> = {
            let cache = read(&self.cache);
            cache
                .providers
                .keys()
                .filter(|name| !records.iter().any(|r| &&r.name == name))
                .cloned()
                .collect()
        };
        self.commit(records, &gone);
        Ok(())
    }

    /// Failover history, newest first.
    pub(crate) async fn failovers(&self) -> Result<Vec<FailoverEntry>, ApiError> {
        let limit = self.config.failover_history_limit;
        Ok(self.store.failovers(limit).await?)
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
