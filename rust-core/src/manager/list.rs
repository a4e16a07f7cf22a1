//! The provider list: single-flight reads whose outcome every waiter shares, planned moves
//! after a change, and reconciliation after every read.

use super::*;

impl Shared {
    /// Read the list if none is known or it is older than `provider_list_max_age`, joining a
    /// read already in flight. A failure is fatal only when no list was ever read; with a
    /// last good list the caller waits at most for one read (`request_timeout`).
    pub(super) async fn ensure_list(self: &Arc<Self>) -> Result<(), StreamguardError> {
        let (known, fresh) = {
            let st = self.state();
            let fresh = st
                .list_fetched_at
                .is_some_and(|t| t.elapsed() < self.config.provider_list_max_age);
            (st.list_known, fresh)
        };
        if fresh {
            return Ok(());
        }
        match self.refresh(false).await {
            Ok(_) => Ok(()),
            Err(e) if !known => Err(e),
            Err(_) => Ok(()),
        }
    }

    /// Read the provider list. Single flight: one read is in flight at a time, and its
    /// outcome, success or failure, is shared by every caller waiting for it (a hung registry
    /// costs each waiter one `request_timeout`, not one per caller ahead of it). A `force`d
    /// read (push, `refresh_providers()`) only uses a read that started after it was asked for.
    pub(super) async fn refresh(self: &Arc<Self>, force: bool) -> ReadOutcome {
        let asked_after = force.then(|| self.state().list_reads);
        loop {
            let (mut done, usable) = {
                let mut st = self.state();
                match &st.list_read {
                    Some(read) => (
                        read.done.clone(),
                        asked_after.is_none_or(|asked| read.seq > asked),
                    ),
                    None => {
                        if let (Some(asked), Some((seq, outcome))) = (asked_after, &st.last_read) {
                            if *seq > asked {
                                return outcome.clone();
                            }
                        }
                        (self.start_read(&mut st), true)
                    }
                }
            };
            let outcome = match done.wait_for(Option::is_some).await {
                Ok(v) => v.clone().unwrap_or(Err(StreamguardError::ShutDown)),
                // The read task was dropped (shutdown).
                Err(_) => Err(StreamguardError::ShutDown),
            };
            if usable {
                return outcome;
            }
        }
    }

    /// Start a list read on its own task (so a caller that gives up does not cancel it for
    /// the others) and register it as the one in flight.
    pub(super) fn start_read(
        self: &Arc<Self>,
        st: &mut State,
    ) -> watch::Receiver<Option<ReadOutcome>> {
        st.list_reads += 1;
        let seq = st.list_reads;
        let (tx, rx) = watch::channel(None);
        st.list_read = Some(ListRead {
            seq,
            done: rx.clone(),
        });
        let me = self.clone();
        self.tracker.spawn(async move {
            // The registry call itself is guarded (`registry_call`): a registry that panics
            // fails this read only, and the read in flight is always cleared and every waiter
            // told.
            let outcome = tokio::select! {
                o = me.read_list() => o,
                _ = me.cancel.cancelled() => Err(StreamguardError::ShutDown),
            };
            {
                let mut st = me.state();
                st.list_read = None;
                st.last_read = Some((seq, outcome.clone()));
            }
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    /// One request for the list, bounded by `request_timeout`, and its effects: the new list,
    /// migrations a change calls for, and reconciliation after every successful read,
    /// changed or not.
    pub(super) async fn read_list(self: &Arc<Self>) -> ReadOutcome {
        let etag = {
            let st = self.state();
            st.list_etag.clone().filter(|_| st.list_known)
        };
        let result = self
            .registry_call(|r| async move { r.providers(etag.as_deref()).await })
            .await;
        let now = Instant::now();
        let (providers, etag) = match result {
            Err(e) => {
                warn!(error = %e, "provider list refresh failed; keeping the last good list");
                self.emit(EventKind::BackendError {
                    error: format!("provider list: {e}"),
                });
                return Err(StreamguardError::Backend(e));
            }
            Ok(ProviderList::NotModified) => {
                let mut st = self.state();
                st.list_fetched_at = Some(now);
                self.reconcile(&mut st);
                return Ok(false);
            }
            Ok(ProviderList::Fresh { providers, etag }) => (providers, etag),
        };
        let mut st = self.state();
        st.list_fetched_at = Some(now);
        st.list_etag = etag;
        let first = !st.list_known;
        st.list_known = true;
        if st.providers == providers {
            self.reconcile(&mut st);
            return Ok(false);
        }
        let old = std::mem::replace(&mut st.providers, providers);
        for p in &st.providers.clone() {
            st.record(&p.name);
        }
        let active = st.ranked(now, &HashSet::new(), false);
        info!(?active, "provider list changed");
        self.list_version.send_modify(|v| *v += 1);
        self.emit(EventKind::ProviderListChanged { active });
        if !first {
            let jobs = self.planned_migrations(&st, &old, now);
            self.start_migrations(&mut st, jobs);
        }
        self.reconcile(&mut st);
        Ok(true)
    }

    /// Desired state (the list) against actual state (where sessions run): every live
    /// session on a provider that is no longer listed or active moves off it. Run after every
    /// list read, changed or not; `install_slot` does the same for a session that just went
    /// live.
    pub(super) fn reconcile(self: &Arc<Self>, st: &mut State) {
        let gone: HashSet<String> = st
            .sessions
            .values()
            .flat_map(|s| &s.standbys)
            .filter(|l| !st.is_listed_active(&l.provider))
            .map(|l| l.provider.clone())
            .collect();
        for provider in gone {
            self.drop_standbys_on(st, &provider, None, "provider no longer listed or active");
        }
        let jobs = st.misplaced();
        if !jobs.is_empty() {
            info!(
                sessions = jobs.len(),
                "reconciling: sessions on providers no longer listed or active"
            );
        }
        self.start_migrations(st, jobs);
    }

    /// After a list change: move sessions whose provider was disabled or removed, and sessions
    /// whose provider lost its place to another one *because of this change* (a provider that
    /// was already preferred before does not pull sessions back: that is failback's job).
    pub(super) fn planned_migrations(
        &self,
        st: &State,
        old: &[ProviderInfo],
        now: Instant,
    ) -> Vec<MigrationJob> {
        let best = st.ranked(now, &HashSet::new(), false).into_iter().next();
        st.jobs(planning::after_change(
            old,
            &st.providers,
            best.as_deref(),
            &st.placed(),
        ))
    }
}
