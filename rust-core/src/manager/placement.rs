//! Stream placement in the engine: a publisher claims where it publishes (next epoch, after
//! going live and after every move, before leaving the old provider), keeps the claim alive and
//! releases it on end; a viewer joins where the publisher is and follows it when it moves, and
//! never wanders to a provider the stream is not on. A registry without the placement
//! directory leaves the engine as it was (said once in the log).

use super::*;
use crate::placement::{Placement, PlacementClaim};

/// The lane (see `lanes.rs`) of a stream's placement writes; no provider has this name.
const PLACEMENT_LANE: &str = "\u{0}placement";

/// How often a viewer waiting for its stream to go live (`wait_for_live`) re-reads the
/// placement, in case the push event is lost or push is off.
const LIVE_POLL: Duration = Duration::from_secs(1);

/// What the viewer's join may use.
pub(super) enum Target {
    /// No placement directory (or it could not be read): choose as before.
    Any,
    /// The publisher's provider first, then its standbys.
    Placed(Placement),
}

impl Shared {
    /// Is the placement directory worth asking? False once the registry said it has none.
    fn placement_supported(&self) -> bool {
        !self.state().placement_unsupported
    }

    /// The registry has no placement directory: remember it, and say so once.
    fn placement_missing(&self) {
        let mut st = self.state();
        if !std::mem::replace(&mut st.placement_unsupported, true) {
            info!("the registry has no placement directory: publishers and viewers choose providers on their own");
        }
    }

    /// The registry's placement of `stream_id` (`None`: never placed). A registry without the
    /// directory is remembered here, once for every caller.
    async fn read_placement(&self, stream_id: &str) -> Result<Option<Placement>, BackendError> {
        let id = stream_id.to_string();
        let read = self
            .registry_call(|r| async move { r.placement(&id).await })
            .await;
        if let Err(BackendError::Unsupported(_)) = &read {
            self.placement_missing();
        }
        read
    }

    /// Mark a joining viewer as waiting for its stream to go live (the push channel then
    /// follows the stream), or not any more.
    fn set_awaiting_live(&self, stream_id: &str, gen: u64, waiting: bool) {
        let mut st = self.state();
        if let Some(s) = st.session_mut(stream_id, gen) {
            if std::mem::replace(&mut s.awaiting_live, waiting) != waiting {
                self.push_wake.notify_one();
            }
        }
    }

    /// Tell subscribers where a stream is published now, as this engine learned it.
    pub(super) fn announce_placement(&self, p: &Placement) {
        self.emit(EventKind::PlacementChanged {
            stream_id: p.stream_id.clone(),
            provider: p.provider.clone(),
            epoch: p.epoch,
            live: p.live,
            standby: p.standby.clone(),
        });
    }

    /// Claim `stream_id`'s placement on `provider` with the next epoch. `Ok` also when the
    /// registry has no directory or could not be reached (the claim is retried with the next
    /// keep-alive round); `Err` only when another client owns the stream.
    /// A `retry` (of a claim that failed) is made only if, in its turn, the session is still
    /// live on `provider` with its claim pending: a move claims for itself.
    pub(super) async fn claim(
        self: &Arc<Self>,
        stream_id: &str,
        gen: u64,
        provider: &str,
        retry: bool,
    ) -> Result<(), StreamguardError> {
        if !self.placement_supported() {
            return Ok(());
        }
        // In turn with every other claim and release of this stream id (see `release_claim`).
        let ticket = self.placement_ticket(&mut self.state(), stream_id);
        ticket.turn().await;
        if retry {
            let wanted = self.state().session(stream_id, gen).is_some_and(|s| {
                s.claim_pending
                    && s.info.state == SessionState::Live
                    && s.info.provider.as_deref() == Some(provider)
            });
            if !wanted {
                return Ok(());
            }
        }
        let known = self.state().session(stream_id, gen).map_or(0, |s| s.epoch);
        // The first claim of a session starts above whatever an earlier run left.
        let mut floor = known;
        if known == 0 {
            floor = match self.read_placement(stream_id).await {
                Ok(p) => p.map_or(0, |p| p.epoch),
                Err(BackendError::Unsupported(_)) => return Ok(()),
                Err(e) => return self.claim_failed(stream_id, gen, e),
            };
        }
        for round in 0..2 {
            // The standbys as they are when the claim is sent (a change claims again).
            let standby: Vec<String> = self
                .state()
                .session(stream_id, gen)
                .map(|s| {
                    s.standbys
                        .iter()
                        .map(|l| l.provider.clone())
                        .filter(|p| p != provider)
                        .collect()
                })
                .unwrap_or_default();
            let claim = PlacementClaim {
                provider: provider.to_string(),
                epoch: floor + 1,
                standby,
                client_id: self.client_id.clone(),
            };
            match self
                .registry_call({
                    let (id, claim) = (stream_id.to_string(), claim.clone());
                    |r| async move { r.claim_placement(&id, &claim).await }
                })
                .await
            {
                Ok(p) => {
                    if let Some(s) = self.state().session_mut(stream_id, gen) {
                        s.epoch = p.epoch;
                        s.claim_pending = false;
                    }
                    info!(stream_id, provider, epoch = p.epoch, "placement claimed");
                    self.announce_placement(&p);
                    return Ok(());
                }
                Err(BackendError::Conflict { code, .. }) if code == "stale_epoch" && round == 0 => {
                    // Claimed meanwhile (an earlier run of ours): read it and go above.
                    floor = match self.read_placement(stream_id).await {
                        Ok(p) => p.map_or(floor, |p| p.epoch.max(floor)),
                        Err(e) => return self.claim_failed(stream_id, gen, e),
                    };
                }
                Err(BackendError::Unsupported(_)) => {
                    self.placement_missing();
                    return Ok(());
                }
                Err(e) if conflict_code(&e) == "owned_by_other" => {
                    warn!(stream_id, provider, error = %e, "another client publishes this stream");
                    return Err(StreamguardError::StreamClaimedByOther {
                        stream_id: stream_id.to_string(),
                    });
                }
                Err(e) => return self.claim_failed(stream_id, gen, e),
            }
        }
        Ok(())
    }

    /// A claim that could not be made now: keep streaming, retry at the next keep-alive round.
    fn claim_failed(
        &self,
        stream_id: &str,
        gen: u64,
        e: BackendError,
    ) -> Result<(), StreamguardError> {
        warn!(stream_id, error = %e, "placement claim failed; retrying with the next keep-alive");
        self.emit(EventKind::BackendError {
            error: format!("placement of {stream_id}: {e}"),
        });
        if let Some(s) = self.state().session_mut(stream_id, gen) {
            s.claim_pending = true;
        }
        Ok(())
    }

    /// Claims that failed earlier, tried again (each keep-alive round). Each retry waits for
    /// its turn in the stream's placement lane, like every claim and release: a move's claim
    /// queued earlier lands first (and the retry is dropped), one queued later lands after it,
    /// and an end's release lands after a retry already on its way.
    pub(super) async fn reclaim_pending(self: &Arc<Self>) {
        let pending: Vec<(String, u64, String)> = {
            let st = self.state();
            st.sessions
                .values()
                .filter(|s| s.claim_pending && s.info.state == SessionState::Live)
                .filter_map(|s| Some((s.info.stream_id.clone(), s.gen, s.info.provider.clone()?)))
                .collect()
        };
        for (id, gen, provider) in pending {
            let _ = self.claim(&id, gen, &provider, true).await;
        }
    }

    /// Queue a placement write (a claim or a release) of `stream_id`: they run one at a time,
    /// in the order queued, like the adapter calls of a (provider, stream) pair. A release is
    /// queued in the same critical section that ends its session, so a restarted session's
    /// claim always lands after it, never before (the release would end the new claim).
    fn placement_ticket(self: &Arc<Self>, st: &mut State, stream_id: &str) -> LaneTicket {
        self.ticket(st, PLACEMENT_LANE, stream_id)
    }

    /// The publisher stopped: end its claim if it made one (`claimed`: an epoch was claimed, or
    /// a retry may be on its way). Queued in the stream's placement lane here, in the caller's
    /// critical section (the one that ends the session), so it lands after any claim already on
    /// its way and before a restarted session's claim; sent in the background. A claim left
    /// behind expires.
    pub(super) fn release_claim(self: &Arc<Self>, st: &mut State, stream_id: &str, claimed: bool) {
        if !claimed || st.placement_unsupported {
            return;
        }
        let ticket = self.placement_ticket(st, stream_id);
        let me = self.clone();
        let id = stream_id.to_string();
        self.tracker.spawn(async move {
            ticket.turn().await;
            let r = me
                .registry_call({
                    let (id, client) = (id.clone(), me.client_id.clone());
                    |r| async move { r.release_placement(&id, &client).await }
                })
                .await;
            match r {
                Ok(()) => debug!(stream_id = id, "placement released"),
                Err(e) => warn!(stream_id = id, error = %e, "placement release failed; it expires"),
            }
            drop(ticket);
        });
    }

    /// Where a viewer may join `stream_id`: the placement's providers, or anywhere when the
    /// registry has no directory (or cannot be read: the join goes on as before, with a
    /// `BackendError` event). A stream that is not live is waited for up to `wait_for_live`
    /// (woken by a pushed placement, re-read every [`LIVE_POLL`]), then `StreamNotLive`.
    pub(super) async fn viewer_target(
        &self,
        stream_id: &str,
        gen: u64,
    ) -> Result<Target, StreamguardError> {
        if !self.placement_supported() {
            return Ok(Target::Any);
        }
        let until = Instant::now() + self.config.wait_for_live;
        let mut news = self.placement_news.subscribe();
        let read = loop {
            news.borrow_and_update();
            match self.read_placement(stream_id).await {
                Ok(Some(p)) if p.live => break Ok(Some(p)),
                Ok(_) if Instant::now() < until => {}
                other => break other,
            }
            // Follow the stream on the push channel while waiting.
            self.set_awaiting_live(stream_id, gen, true);
            let poll = (Instant::now() + LIVE_POLL).min(until);
            tokio::select! {
                _ = news.changed() => {}
                _ = tokio::time::sleep_until(poll) => {}
            }
        };
        self.set_awaiting_live(stream_id, gen, false);
        match read {
            Ok(Some(p)) if p.live => Ok(Target::Placed(p)),
            Ok(_) => Err(StreamguardError::StreamNotLive {
                stream_id: stream_id.to_string(),
            }),
            Err(BackendError::Unsupported(_)) => Ok(Target::Any),
            Err(e) => {
                warn!(stream_id, error = %e, "placement unreadable; joining by priority");
                self.emit(EventKind::BackendError {
                    error: format!("placement of {stream_id}: {e}"),
                });
                Ok(Target::Any)
            }
        }
    }

    /// A placement seen for a live viewer (poll or push): move to the publisher's provider if
    /// it is elsewhere now. Also when the placement is not newer than the one kept: a change
    /// that arrived while the viewer was still moving (to an older placement) is kept but
    /// cannot start a move then, so the next poll starts it.
    pub(super) fn placement_seen(self: &Arc<Self>, p: Placement) {
        let mut st = self.state();
        let Some(s) = st.sessions.get_mut(&p.stream_id) else {
            return;
        };
        if s.info.role != Role::Viewer || s.info.state.is_finished() {
            return;
        }
        if s.awaiting_live {
            // `join_stream` is waiting for the stream to go live: it reads the placement again.
            if p.live {
                self.placement_news.send_modify(|n| *n = n.wrapping_add(1));
            }
            return;
        }
        // Follow whenever a live viewer is off the placement it keeps, not only on a newer
        // epoch: a change seen while it was moving must not be lost (`install_slot` checks
        // again when a move ends, and every later poll or push checks here).
        if p.supersedes(s.placement.as_deref()) {
            info!(
                stream_id = p.stream_id,
                provider = p.provider,
                epoch = p.epoch,
                live = p.live,
                "placement changed"
            );
            self.announce_placement(&p);
            s.placement = Some(Box::new(p));
        }
        let (id, gen) = (s.info.stream_id.clone(), s.gen);
        let Some(on) = s
            .info
            .provider
            .clone()
            .filter(|_| s.info.state == SessionState::Live)
        else {
            return;
        };
        if st.follows_elsewhere(&id, gen, &on) {
            let job = MigrationJob {
                stream_id: id,
                gen,
                from: on,
                reason: FailoverReason::PlacementChanged,
            };
            self.start_migrations(&mut st, vec![job]);
        }
    }

    /// Re-read a following viewer's placement before it moves (kept if it is newer than the
    /// one it has; the one it has stays if the registry cannot be read).
    pub(super) async fn refresh_placement(&self, stream_id: &str, gen: u64) {
        let follows = self
            .state()
            .session(stream_id, gen)
            .is_some_and(|s| s.placement.is_some());
        if !follows || !self.placement_supported() {
            return;
        }
        if let Ok(Some(p)) = self.read_placement(stream_id).await {
            let mut st = self.state();
            if let Some(s) = st.session_mut(stream_id, gen) {
                if p.supersedes(s.placement.as_deref()) {
                    self.announce_placement(&p);
                    s.placement = Some(Box::new(p));
                }
            }
        }
    }

    /// Poll the placements of live viewers (the fallback when push is off or broken).
    pub(super) async fn poll_placements(self: &Arc<Self>) {
        if !self.placement_supported() {
            return;
        }
        let viewed: Vec<String> = self.viewed_streams();
        for id in viewed {
            if self.state().session_role(&id) == Some(Role::Publisher) {
                continue;
            }
            match self.read_placement(&id).await {
                Ok(Some(p)) => self.placement_seen(p),
                Ok(None) => {}
                Err(BackendError::Unsupported(_)) => return,
                Err(e) => debug!(stream_id = id, error = %e, "placement poll failed"),
            }
        }
    }

    /// Streams the push channel follows: those with a live (or moving) viewer session or a
    /// join waiting for them to go live (their `placement` and `audience` events), and those a
    /// live publisher has claimed (their `audience` events).
    pub(super) fn viewed_streams(&self) -> Vec<String> {
        let st = self.state();
        let mut v: Vec<String> = st
            .sessions
            .values()
            .filter(|s| {
                let running = matches!(s.info.state, SessionState::Live | SessionState::Migrating);
                match s.info.role {
                    Role::Viewer => s.awaiting_live || running,
                    Role::Publisher => running && s.epoch > 0,
                }
            })
            .map(|s| s.info.stream_id.clone())
            .collect();
        v.sort();
        v
    }
}

fn conflict_code(e: &BackendError) -> &str {
    match e {
        BackendError::Conflict { code, .. } => code,
        _ => "",
    }
}
