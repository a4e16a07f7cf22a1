//! The placement write paths: claim, release, keep-alive refresh, and the sweep that expires
//! claims and drops old tombstones. Each one writes the database first (which decides), then
//! updates the in-memory copy and publishes what changed, under the write lock.

use std::sync::PoisonError;

use super::store::Release;
use super::{owned_by_other, Entry, Placements};
use crate::error::ApiError;
use crate::model::PlacementRecord;
use crate::wire::{validate_stream_id, PlacementClaim, PlacementView, ReleaseQuery};

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Placements {
    /// When a claim made or refreshed at `now_ms` expires.
    fn expires_at(&self, now_ms: i64) -> Option<i64> {
        (!self.ttl.is_zero()).then(|| now_ms.saturating_add(millis(self.ttl)))
    }

    /// Stores `record` in the copy and tells the stream's subscribers. Callers hold the write
    /// lock. The event is sent under the copy's lock, so a new subscriber's snapshot (taken
    /// under it too) is never followed by an older event.
    fn publish(&self, record: PlacementRecord) {
        let entry = Entry::new(record);
        let event = entry.event();
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache.insert(entry.record.stream_id.clone(), entry);
        // No subscribers is fine: the change is in the copy.
        let _ = self.events.send(event);
    }

    /// `PUT .../streams/{streamId}/placement`: records where the publisher is.
    pub(crate) async fn claim(
        &self,
        stream_id: String,
        claim: PlacementClaim,
    ) -> Result<PlacementView, ApiError> {
        validate_stream_id(&stream_id)?;
        claim.validate()?;
        let epoch = claim.epoch;
        let _guard = self.write_lock.lock().await;
        let now = crate::now_ms();
        let expires = self.expires_at(now);
        let outcome = self.store.claim(stream_id, claim, now, expires).await?;
        let record = outcome.map_err(|refusal| refusal.into_api_error(epoch))?;
        tracing::info!(stream = %record.stream_id, provider = %record.provider, epoch, "placement claimed");
        let view = record.public_view();
        self.publish(record);
        Ok(view)
    }

    /// `DELETE .../streams/{streamId}/placement?clientId=`: the owner ends its stream; the
    /// placement stays, not live, with its epoch.
    pub(crate) async fn release(
        &self,
        stream_id: String,
        query: ReleaseQuery,
    ) -> Result<(), ApiError> {
        validate_stream_id(&stream_id)?;
        query.validate()?;
        let _guard = self.write_lock.lock().await;
        let now = crate::now_ms();
        let released = self.store.release(stream_id, query.client_id, now).await?;
        match released {
            Release::Ended(record) => {
                tracing::info!(stream = %record.stream_id, epoch = record.epoch, "placement ended");
                self.publish(record);
                Ok(())
            }
            Release::Unchanged => Ok(()),
            Release::OwnedByOther => Err(owned_by_other()),
        }
    }

    /// A keep-alive from `client_id` listing `stream_ids`: its live claims among them are
    /// held for another TTL. Nothing public changes, so nothing is published.
    pub(crate) async fn refresh(
        &self,
        client_id: &str,
        stream_ids: impl IntoIterator<Item = &str>,
    ) -> Result<(), ApiError> {
        if self.ttl.is_zero() {
            return Ok(());
        }
        let _guard = self.write_lock.lock().await;
        // The copy mirrors the table under the lock: only the client's live claims are written.
        let owned: Vec<String> = {
            let cache = self.read();
            stream_ids
                .into_iter()
                .filter(|id| {
                    cache
                        .get(*id)
                        .is_some_and(|e| e.record.live() && e.record.client_id == client_id)
                })
                .map(str::to_owned)
                .collect()
        };
        if owned.is_empty() {
            return Ok(());
        }
        let expires = self.expires_at(crate::now_ms());
        let client = client_id.to_owned();
        let refreshed = self.store.refresh(client, owned, expires).await?;
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        for id in refreshed {
            if let Some(entry) = cache.get_mut(&id) {
                entry.record.expires_at_ms = expires;
            }
        }
        Ok(())
    }

    /// Another instance changed `stream_id`'s placement (or dropped it): reads it again and
    /// publishes it if it differs from the copy.
    pub(crate) async fn reload(&self, stream_id: &str) -> Result<(), ApiError> {
        let _guard = self.write_lock.lock().await;
        match self.store.placement(stream_id).await? {
            Some(record) => {
                let same = self
                    .read()
                    .get(stream_id)
                    .is_some_and(|e| e.record == record);
                if !same {
                    self.publish(record);
                }
            }
            None => {
                self.cache
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(stream_id);
            }
        }
        Ok(())
    }

    /// Notifications from other instances may have been missed: reads every placement again,
    /// publishing those that differ and dropping those gone.
    pub(crate) async fn reload_all(&self) -> Result<(), ApiError> {
        let _guard = self.write_lock.lock().await;
        let records = self.store.placements().await?;
        let stored: std::collections::HashSet<String> =
            records.iter().map(|r| r.stream_id.clone()).collect();
        for record in records {
            let same = self
                .read()
                .get(&record.stream_id)
                .is_some_and(|e| e.record == record);
            if !same {
                self.publish(record);
            }
        }
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| stored.contains(id));
        Ok(())
    }

    /// Ends the claims not kept alive in time (publishing each) and drops tombstones older than
    /// the retention. Returns how many claims expired.
    pub(crate) async fn sweep(&self) -> Result<usize, ApiError> {
        let _guard = self.write_lock.lock().await;
        let now = crate::now_ms();
        let expired = self.store.expire_placements(now).await?;
        let count = expired.len();
        for record in expired {
            tracing::info!(stream = %record.stream_id, epoch = record.epoch, "placement expired: its client stopped confirming it");
            self.publish(record);
        }
        let cutoff = now.saturating_sub(millis(self.retention));
        let dropped = self.store.collect_garbage(cutoff).await?;
        if !dropped.is_empty() {
            tracing::debug!(dropped = dropped.len(), "ended placements dropped");
            let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            for id in dropped {
                cache.remove(&id);
            }
        }
        Ok(count)
    }
}
