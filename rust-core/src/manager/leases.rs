//! Capacity leases: the provider choice under the ledger (phase 1 and phase 2), holding and
//! releasing slots, and the lease keeper that renews every held lease (one task for all).

use super::*;

impl Shared {
    /// A ledger call bounded by `request_timeout` (on top of `extra`), so a hanging shared
    /// backend fails closed instead of holding the operation.
    pub(super) async fn ledger_call<T>(
        &self,
        extra: Duration,
        fut: impl Future<Output = Result<T, CapacityError>>,
    ) -> Result<T, CapacityError> {
        match tokio::time::timeout(self.config.request_timeout + extra, fut).await {
            Ok(r) => r,
            Err(_) => Err(CapacityError::Unavailable(format!(
                "no answer within {:?}",
                self.config.request_timeout + extra
            ))),
        }
    }

    pub(super) fn capacity_error(e: CapacityError) -> StreamguardError {
        match e {
            CapacityError::Invalid(m) => {
                StreamguardError::Internal(format!("capacity request: {m}"))
            }
            // The ledger's own message already says what could not be reached: one prefix.
            CapacityError::Unavailable(m) => StreamguardError::CapacityUnavailable(m),
            other => StreamguardError::CapacityUnavailable(other.to_string()),
        }
    }

    /// Start keeping `lease` on behalf of `stream_id`: the lease keeper renews it from now on.
    pub(super) fn hold(&self, stream_id: &str, lease: Lease) -> HeldSlot {
        debug_assert_eq!(lease.holder, stream_id);
        let lease = Arc::new(lease);
        let lost = Arc::new(AtomicBool::new(false));
        self.state().kept.insert(
            lease.id.clone(),
            Kept {
                lease: lease.clone(),
                lost: lost.clone(),
                valid_until: Instant::now() + lease.ttl,
            },
        );
        self.lease_wake.notify_one();
        HeldSlot { lease, lost }
    }

    /// One task renews every held lease, all at once every third of the lease TTL (one sleeping
    /// task per stream would cost more than the rest of a session). A backend that cannot be
    /// reached is retried while each lease is still valid by its last renewal; once a lease may
    /// have expired (or the ledger says it did), its slot is lost and a live stream on it moves
    /// (fail closed).
    pub(super) async fn lease_keeper(self: Arc<Self>) {
        let every = (self.config.capacity_lease_ttl / 3).max(Duration::from_millis(10));
        // After a round that could not reach the ledger, the next comes sooner, so a stall
        // shorter than the lease is ridden out with more tries before any lease may lapse.
        let retry = every / 3;
        let mut wait = every;
        loop {
            while self.state().kept.is_empty() {
                tokio::select! {
                    _ = self.lease_wake.notified() => {}
                    _ = self.cancel.cancelled() => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancel.cancelled() => return,
            }
            let due: Vec<Arc<Lease>> = self
                .state()
                .kept
                .values()
                .map(|k| k.lease.clone())
                .collect();
            // All leases live on one backend: once it is unreachable, the rest of the round
            // is not asked again (a dead Redis would otherwise cost a timeout per lease).
            let mut unreachable: Option<String> = None;
            for lease in due {
                let asked = Instant::now();
                let result = match &unreachable {
                    Some(e) => Err(CapacityError::Unavailable(e.clone())),
                    None => {
                        tokio::select! {
                            r = self.ledger_call(Duration::ZERO, self.ledger.renew(&lease)) => r,
                            _ = self.cancel.cancelled() => return,
                        }
                    }
                };
                if let Err(CapacityError::Unavailable(e)) = &result {
                    unreachable = Some(e.clone());
                }
                self.renewed(&lease, asked, retry, result);
            }
            wait = if unreachable.is_some() { retry } else { every };
        }
    }

    /// Apply the outcome of one renewal of `lease`.
    pub(super) fn renewed(
        self: &Arc<Self>,
        lease: &Lease,
        asked: Instant,
        every: Duration,
        result: Result<(), CapacityError>,
    ) {
        let mut st = self.state();
        // Released meanwhile: nothing to keep.
        let Some(kept) = st.kept.get_mut(&lease.id) else {
            return;
        };
        let error = match result {
            Ok(()) => {
                kept.valid_until = asked + lease.ttl;
                return;
            }
            Err(CapacityError::Unavailable(e)) if Instant::now() + every < kept.valid_until => {
                warn!(stream_id = %kept.lease.holder, account = %lease.account, error = %e, "lease renewal failed; retrying while the lease lasts");
                return;
            }
            Err(e) => e,
        };
        let Some(kept) = st.kept.remove(&lease.id) else {
            return;
        };
        kept.lost.store(true, Ordering::SeqCst);
        warn!(stream_id = %kept.lease.holder, account = %lease.account, error = %error, "capacity lease lost");
        let job = st
            .sessions
            .get(&kept.lease.holder)
            .filter(|s| {
                s.info.state == SessionState::Live
                    && s.slot.as_ref().is_some_and(|h| h.lease.id == lease.id)
            })
            .map(|s| MigrationJob::of(s, &lease.account, FailoverReason::CapacityLost));
        // A lease still in use by a start or migration is handled when it finishes
        // (`install_slot` sees the flag).
        if let Some(job) = job {
            self.start_migrations(&mut st, vec![job]);
        }
        self.drop_standbys_on(
            &mut st,
            &lease.account,
            Some(&lease.id),
            "capacity lease lost",
        );
    }

    /// Stop keeping a slot and give it back.
    pub(super) async fn release_slot(&self, slot: HeldSlot) {
        self.state().kept.remove(&slot.lease.id);
        self.release_lease(&slot.lease).await;
    }

    /// Give a lease back to the ledger. A failed release only delays the slot's return until
    /// its TTL runs out.
    pub(super) async fn release_lease(&self, lease: &Lease) {
        match self
            .ledger_call(Duration::ZERO, self.ledger.release(lease))
            .await
        {
            Ok(_) => debug!(account = %lease.account, holder = %lease.holder, "slot released"),
            Err(e) => {
                warn!(account = %lease.account, error = %e, "slot release failed; it frees when the lease expires")
            }
        }
    }

    /// Leave `provider`, then give back the session's slot on it (in that order: the slot is
    /// free only once the stream really stopped).
    pub(super) async fn vacate(&self, provider: &str, stream_id: &str, gen: u64) {
        self.leave(provider, stream_id).await;
        let slot = self
            .state()
            .session_mut(stream_id, gen)
            .and_then(|s| s.slot.take());
        if let Some(slot) = slot {
            self.release_slot(slot).await;
        }
    }

    /// Hand a connected stream's slot to its session, then reconcile: if the lease was lost
    /// while connecting, or the provider left the list (or was disabled) meanwhile, the
    /// session moves at once. The caller has just made the session live on `provider`.
    pub(super) fn install_slot(
        self: &Arc<Self>,
        st: &mut State,
        stream_id: &str,
        gen: u64,
        provider: &str,
        slot: HeldSlot,
    ) {
        let lost = slot.lost.load(Ordering::SeqCst);
        let Some(s) = st.session_mut(stream_id, gen) else {
            // Cannot happen (the caller holds the session's op lock); never keep a slot for
            // nobody.
            let me = self.clone();
            self.tracker
                .spawn(async move { me.release_slot(slot).await });
            return;
        };
        s.slot = Some(slot);
        let reason = if lost {
            FailoverReason::CapacityLost
        } else if !st.is_listed_active(provider) {
            info!(
                stream_id,
                provider, "provider left the list while connecting; moving"
            );
            FailoverReason::ProviderDisabled
        } else if st.follows_elsewhere(stream_id, gen, provider) {
            // A viewer whose publisher moved while this session was connecting or moving.
            FailoverReason::PlacementChanged
        } else {
            return;
        };
        let job = MigrationJob {
            stream_id: stream_id.to_string(),
            gen,
            from: provider.to_string(),
            reason,
        };
        self.start_migrations(st, vec![job]);
    }

    /// The provider for the next attempt, with its slot in `held`: the retried provider if it
    /// is still listed (keeping its slot), else the best ranked provider with a free slot
    /// (phase 1), else, with `wait_for_capacity`, the first full one to free up (phase 2),
    /// woken by the ledger's hand-off or, for providers the registry reports full, by a
    /// changed list (re-read every `provider_refresh_interval` while waiting).
    pub(super) async fn choose(
        self: &Arc<Self>,
        req: &ConnectRequest<'_>,
        excluded: &HashSet<String>,
        retried: Option<&str>,
        held: &mut Option<HeldSlot>,
        waited: &mut Duration,
    ) -> Result<Choice, StreamguardError> {
        if let Some(p) = retried {
            if held.as_ref().is_some_and(|h| h.lease.account == p) {
                if let Some((n, i, a)) = self.state().usable(p) {
                    return Ok(Choice::Go(n, i, a));
                }
            }
        }
        if let Some(old) = held.take() {
            self.release_slot(old).await;
        }
        let mut list_rx = self.list_version.subscribe();
        let mut announced = false;
        loop {
            list_rx.borrow_and_update();
            let (candidates, reported_full) = self.candidates(req, excluded);
            if candidates.is_empty() && reported_full.is_empty() {
                return Ok(Choice::NoneUsable);
            }
            let request = SlotRequest::new(
                req.stream_id,
                self.config.capacity_lease_ttl,
                candidates
                    .iter()
                    .map(|(n, i, _)| Candidate::new(n.clone(), i.max_streams))
                    .collect(),
            );
            if let Some(go) = self.phase_one(req, &request, &candidates, held).await? {
                return Ok(go);
            }
            let full: Vec<String> = candidates
                .iter()
                .map(|c| c.0.clone())
                .chain(reported_full.iter().cloned())
                .collect();
            let left = self.config.capacity_max_wait.saturating_sub(*waited);
            if !self.config.wait_for_capacity || left.is_zero() {
                return Ok(Choice::Full(full));
            }
            if !std::mem::replace(&mut announced, true) {
                info!(
                    stream_id = req.stream_id,
                    ?full,
                    ?left,
                    "all candidate providers full; waiting for a slot"
                );
                self.emit(EventKind::WaitingForCapacity {
                    stream_id: req.stream_id.to_string(),
                    providers: full.clone(),
                    max_wait: left,
                });
            }
            let started = Instant::now();
            let granted = self
                .phase_two(
                    req,
                    &request,
                    !candidates.is_empty(),
                    !reported_full.is_empty(),
                    left,
                    &mut list_rx,
                )
                .await?;
            *waited += started.elapsed();
            match granted {
                None => continue,
                Some(Err(CapacityError::Timeout { .. })) => return Ok(Choice::Full(full)),
                Some(Err(e)) => return Err(Self::capacity_error(e)),
                Some(Ok(lease)) => {
                    // Still usable? The list may have changed during the wait.
                    let fresh = self.state().usable(&lease.account);
                    match fresh {
                        Some((n, i, a)) if !excluded.contains(&n) => {
                            *held = Some(self.hold(req.stream_id, lease));
                            return Ok(Choice::Go(n, i, a));
                        }
                        _ => self.release_lease(&lease).await,
                    }
                }
            }
        }
    }

    /// The providers an attempt may use now, best first (a viewer: its publisher's provider
    /// first, then the standbys, nothing else), and those skipped only because the registry
    /// reports them full.
    fn candidates(
        &self,
        req: &ConnectRequest<'_>,
        excluded: &HashSet<String>,
    ) -> (Vec<Usable>, Vec<String>) {
        let st = self.state();
        let allowed = |p: &String| req.only.as_ref().is_none_or(|o| o.contains(p));
        let mut ranked: Vec<_> = st
            .ranked(Instant::now(), excluded, req.only_parallel)
            .iter()
            .filter(|p| allowed(p))
            .filter_map(|p| st.usable(p))
            .collect();
        if let Some(first) = req.only.as_ref().and_then(|o| o.first()) {
            if let Some(i) = ranked.iter().position(|c| &c.0 == first) {
                let c = ranked.remove(i);
                ranked.insert(0, c);
            }
        }
        let mut full = st.reported_full(excluded, req.only_parallel);
        full.retain(|p| allowed(p));
        (ranked, full)
    }

    /// Phase 1: the best ranked candidate with a free slot, if any.
    async fn phase_one(
        &self,
        req: &ConnectRequest<'_>,
        request: &SlotRequest,
        candidates: &[Usable],
        held: &mut Option<HeldSlot>,
    ) -> Result<Option<Choice>, StreamguardError> {
        if candidates.is_empty() {
            return Ok(None);
        }
        // A lease granted as the session is cancelled expires by its TTL.
        let grant = tokio::select! {
            r = self.ledger_call(Duration::ZERO, self.ledger.try_acquire(request)) => {
                r.map_err(Self::capacity_error)?
            }
            _ = req.cancel.cancelled() => return Err(self.stop_error(req.stream_id)),
        };
        let Grant::Leased(lease) = grant else {
            return Ok(None);
        };
        let Some((n, i, a)) = candidates.iter().find(|c| c.0 == lease.account).cloned() else {
            return Err(StreamguardError::Internal(
                "ledger granted an account not asked for".into(),
            ));
        };
        *held = Some(self.hold(req.stream_id, lease));
        Ok(Some(Choice::Go(n, i, a)))
    }

    /// Phase 2: wait (at most `left`) for the ledger to hand over a slot of a candidate or, for
    /// providers the registry reports full, for the list to change (re-read every
    /// `provider_refresh_interval`). `None`: re-evaluate.
    async fn phase_two(
        self: &Arc<Self>,
        req: &ConnectRequest<'_>,
        request: &SlotRequest,
        ask_ledger: bool,
        watch_list: bool,
        left: Duration,
        list_rx: &mut watch::Receiver<u64>,
    ) -> Result<Option<Result<Lease, CapacityError>>, StreamguardError> {
        Ok(tokio::select! {
            r = self.ledger_call(left, self.ledger.acquire(request, left)), if ask_ledger => Some(r),
            _ = list_rx.changed(), if watch_list => None,
            _ = tokio::time::sleep(self.config.provider_refresh_interval.min(left)), if watch_list => {
                // The read may hang for `request_timeout`: `end_stream` does not wait for it.
                tokio::select! {
                    _ = self.refresh(true) => {}
                    _ = req.cancel.cancelled() => return Err(self.stop_error(req.stream_id)),
                }
                None
            }
            _ = req.cancel.cancelled() => return Err(self.stop_error(req.stream_id)),
        })
    }
}
