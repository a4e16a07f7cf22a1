//! Hot standby (`standby_providers`): a live publisher keeps copies of its stream on the next
//! healthy parallel-capable providers, lists them in its placement claim so viewers can switch
//! to one on their own signals at once, promotes one (no start, next epoch) when its primary
//! fails, and replaces standbys that fail, leave the list or lose their capacity slot.
//!
//! One fill job per session at a time starts standbys one by one (`standby_starting` names
//! the provider being started, so a migration never starts the stream there too); every
//! change of the standby set is claimed (next epoch) once the job is done.

use super::*;

impl Shared {
    /// Start filling the standbys of a live publisher in the background: a no-op when
    /// `standby_providers` is 0, the session is not a live publisher, or a fill job runs.
    pub(super) fn want_standbys(self: &Arc<Self>, st: &mut State, stream_id: &str, gen: u64) {
        if self.config.standby_providers == 0 {
            return;
        }
        let Some(s) = st.session_mut(stream_id, gen) else {
            return;
        };
        if s.info.role != Role::Publisher
            || s.info.state != SessionState::Live
            || s.standby_filling
            || s.standbys.len() >= self.config.standby_providers as usize
        {
            return;
        }
        s.standby_filling = true;
        let me = self.clone();
        let id = stream_id.to_string();
        let span = info_span!("standby", stream_id = %id);
        self.tracker
            .spawn(async move { me.fill_standbys(id, gen).await }.instrument(span));
    }

    /// The next provider to start a standby on (marked as starting), with the session's
    /// token; `None` ends the fill job (and clears its flag in the same critical section, so a
    /// standby dropped right after is refilled by a new job).
    fn next_standby(
        &self,
        stream_id: &str,
        gen: u64,
        tried: &HashSet<String>,
    ) -> Option<(String, CancellationToken)> {
        let now = Instant::now();
        let mut st = self.state();
        let want = self.config.standby_providers as usize;
        let s = st.session(stream_id, gen)?;
        let primary = s.info.provider.clone().filter(|_| {
            s.info.state == SessionState::Live
                && s.standbys.len() < want
                && !s.cancel.is_cancelled()
        });
        let parallel = |p: &str| {
            st.adapters
                .get(p)
                .is_some_and(|a| a.adapter.supports_parallel_sessions())
        };
        let candidate = primary.filter(|p| parallel(p)).and_then(|p| {
            let mut excluded = tried.clone();
            excluded.insert(p);
            excluded.extend(s.standbys.iter().map(|l| l.provider.clone()));
            st.ranked(now, &excluded, true).into_iter().next()
        });
        let cancel = s.cancel.clone();
        let s = st.session_mut(stream_id, gen)?;
        match candidate {
            Some(c) => {
                s.standby_starting = Some(c.clone());
                Some((c, cancel))
            }
            None => {
                s.standby_filling = false;
                None
            }
        }
    }

    /// Start standbys until the session has `standby_providers` of them or no provider is
    /// left to try (each is tried once per job), then claim the new set.
    async fn fill_standbys(self: Arc<Self>, stream_id: String, gen: u64) {
        let mut tried = HashSet::new();
        let mut added = false;
        while let Some((candidate, cancel)) = self.next_standby(&stream_id, gen, &tried) {
            tried.insert(candidate.clone());
            let result = self
                .connect(ConnectRequest {
                    stream_id: &stream_id,
                    gen,
                    deadline: Instant::now() + self.config.operation_deadline,
                    role: Role::Publisher,
                    operation: Operation::Standby,
                    exclude: HashSet::new(),
                    only_parallel: true,
                    only: Some(vec![candidate.clone()]),
                    cancel: &cancel,
                })
                .await;
            let unwanted = {
                let mut st = self.state();
                let wanted = st.session_mut(&stream_id, gen).is_some_and(|s| {
                    s.standby_starting = None;
                    s.info.state == SessionState::Live
                        && s.info.provider.as_deref() != Some(candidate.as_str())
                });
                match result {
                    Ok((provider, slot)) if wanted => {
                        info!(stream_id, provider, "standby live");
                        if let Some(s) = st.session_mut(&stream_id, gen) {
                            s.standbys.push(StandbyLeg { provider, slot });
                            sync_standby_info(s);
                        }
                        added = true;
                        None
                    }
                    Ok((provider, slot)) => {
                        let ticket = self.ticket(&mut st, &provider, &stream_id);
                        Some((provider, slot, ticket))
                    }
                    Err(e) => {
                        warn!(stream_id, provider = candidate, error = %e, "standby not started");
                        if cancel.is_cancelled() {
                            if let Some(s) = st.session_mut(&stream_id, gen) {
                                s.standby_filling = false;
                            }
                            return;
                        }
                        None
                    }
                }
            };
            if let Some((provider, slot, ticket)) = unwanted {
                // The session ended or moved meanwhile: this copy is nobody's.
                debug!(stream_id, provider, "standby not needed any more; leaving");
                self.leave_standby(&provider, &stream_id, slot, ticket)
                    .await;
            }
        }
        if added {
            self.claim_standbys(&stream_id, gen).await;
        }
    }

    /// Claim the placement again (next epoch) so it lists the session's standbys as they are
    /// now; only while the session is live (a move claims for itself).
    pub(super) async fn claim_standbys(self: &Arc<Self>, stream_id: &str, gen: u64) {
        let primary = self
            .state()
            .session(stream_id, gen)
            .filter(|s| s.info.state == SessionState::Live)
            .and_then(|s| s.info.provider.clone());
        if let Some(p) = primary {
            if let Err(e) = self.claim(stream_id, gen, &p, false).await {
                warn!(stream_id, error = %e, "standby set not claimed");
            }
        }
    }

    /// Leave a standby copy (in its lane's turn), then give its slot back.
    async fn leave_standby(
        &self,
        provider: &str,
        stream_id: &str,
        slot: HeldSlot,
        ticket: LaneTicket,
    ) {
        ticket.turn().await;
        self.leave(provider, stream_id).await;
        drop(ticket);
        self.release_slot(slot).await;
    }

    /// Drop every standby on `provider` (it failed, left the list, or a lease on it was lost:
    /// `lease` names the one lost, else all go): leave them in the background, claim the
    /// smaller set and start replacements.
    pub(super) fn drop_standbys_on(
        self: &Arc<Self>,
        st: &mut State,
        provider: &str,
        lease: Option<&str>,
        why: &str,
    ) {
        let hit: Vec<(String, u64)> = st
            .sessions
            .values()
            .filter(|s| {
                s.standbys
                    .iter()
                    .any(|l| l.provider == provider && lease.is_none_or(|id| l.slot.lease.id == id))
            })
            .map(|s| (s.info.stream_id.clone(), s.gen))
            .collect();
        for (stream_id, gen) in hit {
            let Some(s) = st.session_mut(&stream_id, gen) else {
                continue;
            };
            let Some(i) = s.standbys.iter().position(|l| l.provider == provider) else {
                continue;
            };
            let leg = s.standbys.remove(i);
            sync_standby_info(s);
            warn!(stream_id, provider, why, "standby dropped");
            let ticket = self.ticket(st, provider, &stream_id);
            let me = self.clone();
            self.tracker.spawn(async move {
                me.leave_standby(&leg.provider, &stream_id, leg.slot, ticket)
                    .await;
                me.claim_standbys(&stream_id, gen).await;
                me.want_standbys(&mut me.state(), &stream_id, gen);
            });
        }
    }

    /// Take every standby of a session that stops (ended, failed): the caller leaves them.
    pub(super) fn take_standbys(
        self: &Arc<Self>,
        st: &mut State,
        stream_id: &str,
        gen: u64,
    ) -> Vec<(StandbyLeg, LaneTicket)> {
        let legs = match st.session_mut(stream_id, gen) {
            Some(s) => {
                let legs = std::mem::take(&mut s.standbys);
                sync_standby_info(s);
                legs
            }
            None => return Vec::new(),
        };
        legs.into_iter()
            .map(|leg| {
                let ticket = self.ticket(st, &leg.provider, stream_id);
                (leg, ticket)
            })
            .collect()
    }

    /// Leave standbys taken with [`take_standbys`](Self::take_standbys), one after another.
    pub(super) async fn leave_standbys(
        &self,
        stream_id: &str,
        legs: Vec<(StandbyLeg, LaneTicket)>,
    ) {
        for (leg, ticket) in legs {
            self.leave_standby(&leg.provider, stream_id, leg.slot, ticket)
                .await;
        }
    }

    /// Leave standbys in the background (a session that failed without an op to wait on).
    pub(super) fn spawn_leave_standbys(
        self: &Arc<Self>,
        stream_id: &str,
        legs: Vec<(StandbyLeg, LaneTicket)>,
    ) {
        if legs.is_empty() {
            return;
        }
        let me = self.clone();
        let id = stream_id.to_string();
        self.tracker
            .spawn(async move { me.leave_standbys(&id, legs).await });
    }

    /// The standby a publisher's move off `job.from` should promote, if any: the move's
    /// planned target when it is a standby; for a failure of the primary, the best-ranked
    /// standby even if a better provider exists (no start and no gap beats priority; failback
    /// can move it later).
    pub(super) fn standby_to_promote(
        &self,
        job: &MigrationJob,
        target: Option<&str>,
    ) -> Option<String> {
        let st = self.state();
        let s = st.session(&job.stream_id, job.gen)?;
        if s.info.role != Role::Publisher || s.standbys.is_empty() {
            return None;
        }
        let is_standby = |p: &str| s.standbys.iter().any(|l| l.provider == p);
        if let Some(t) = target.filter(|t| is_standby(t)) {
            return Some(t.to_string());
        }
        if !matches!(
            job.reason,
            FailoverReason::HealthCheckFailed
                | FailoverReason::ErrorReported
                | FailoverReason::ProviderDisabled
                | FailoverReason::CapacityLost
        ) {
            return None;
        }
        let excluded = HashSet::from([job.from.clone()]);
        st.ranked(Instant::now(), &excluded, true)
            .into_iter()
            .find(|p| is_standby(p))
    }

    /// Promote the standby on `to` to primary: claim it (next epoch, the other standbys kept)
    /// while both still carry the stream, leave the old primary, and start a replacement
    /// standby. No adapter start and no gap.
    pub(super) async fn promote(self: &Arc<Self>, job: MigrationJob, to: String) {
        let started = Instant::now();
        let leg = {
            let mut st = self.state();
            let Some(s) = st.session_mut(&job.stream_id, job.gen) else {
                return;
            };
            let Some(i) = s.standbys.iter().position(|l| l.provider == to) else {
                return;
            };
            let leg = s.standbys.remove(i);
            sync_standby_info(s);
            leg
        };
        self.emit(EventKind::Failover {
            stream_id: job.stream_id.clone(),
            from: job.from.clone(),
            to: Some(to.clone()),
            reason: job.reason,
        });
        self.emit(EventKind::MigrationStarted {
            stream_id: job.stream_id.clone(),
            from: job.from.clone(),
            reason: job.reason,
            strategy: MigrationStrategy::MakeBeforeBreak,
        });
        info!(stream_id = job.stream_id, from = job.from, to, reason = ?job.reason, "promoting standby");
        if let Err(e) = self.claim(&job.stream_id, job.gen, &to, false).await {
            warn!(stream_id = job.stream_id, to, error = %e, "promoted standby not claimed");
        }
        self.vacate(&job.from, &job.stream_id, job.gen).await;
        let epoch = self
            .state()
            .session(&job.stream_id, job.gen)
            .map_or(0, |s| s.epoch);
        let (stream_id, gen, from) = (job.stream_id.clone(), job.gen, job.from.clone());
        self.moved(
            job,
            to.clone(),
            leg.slot,
            MigrationStrategy::MakeBeforeBreak,
            None,
            (started, Instant::now()),
        );
        self.emit(EventKind::StandbyPromoted {
            stream_id: stream_id.clone(),
            from,
            to,
            epoch,
        });
        self.want_standbys(&mut self.state(), &stream_id, gen);
    }

    /// A viewer whose own SDK reported an error on its provider, with a standby of its stream
    /// elsewhere: moving costs it nothing the stream is not already doing, so it moves at once
    /// instead of waiting for the outage to be confirmed.
    pub(super) fn viewer_standby_elsewhere(
        &self,
        st: &State,
        stream_id: &str,
        gen: u64,
        on: &str,
    ) -> bool {
        let Some(p) = st
            .session(stream_id, gen)
            .filter(|s| s.info.role == Role::Viewer)
            .and_then(|s| s.placement.as_ref())
            .filter(|p| p.live)
        else {
            return false;
        };
        let excluded = HashSet::from([on.to_string()]);
        let ranked = st.ranked(Instant::now(), &excluded, false);
        p.standby
            .iter()
            .chain(std::iter::once(&p.provider))
            .any(|x| x != on && ranked.contains(x))
    }
}

/// Keep the session's public view of its standbys in step with the legs it holds.
pub(super) fn sync_standby_info(s: &mut Session) {
    s.info.standby = s.standbys.iter().map(|l| l.provider.clone()).collect();
}
