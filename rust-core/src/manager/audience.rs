//! The audience as a health signal: quality samples (`record_quality`) score providers and
//! tell a viewer's player state, which the audience reporter sends to the registry (on every
//! change, every second while stalled); the registry's `audience` signal moves a publisher
//! whose viewers stall ([`FailoverReason::AudienceStalled`]); a device whose own link is the
//! problem lowers its quality (`set_quality`) instead of moving anyone. The decisions are the
//! pure policies of [`crate::quality`].

use super::*;
use crate::quality::{self, StallCause};

/// How often a stalled viewer repeats its report (the registry counts a stall report for a
/// short window only, 3 s by default, so a viewer that stays stalled keeps saying so).
const STALLED_REPORT_EVERY: Duration = Duration::from_secs(1);

impl Shared {
    /// Take one quality sample of `stream_id` (see [`crate::quality`]): the provider's score,
    /// a viewer's player state, a publisher's uplink. Ignored unless the session is live.
    pub(super) fn record_quality(
        self: &Arc<Self>,
        stream_id: &str,
        sample: QualitySample,
    ) -> Result<(), StreamguardError> {
        self.ensure_running()?;
        sample
            .validate()
            .map_err(|e| StreamguardError::InvalidArgument(format!("quality sample: {e}")))?;
        let now = Instant::now();
        let mut st = self.state();
        let s = st
            .sessions
            .get(stream_id)
            .ok_or_else(|| StreamguardError::UnknownSession(stream_id.to_string()))?;
        let (gen, role) = (s.gen, s.info.role);
        let (SessionState::Live, Some(provider)) = (s.info.state, s.info.provider.clone()) else {
            return Ok(());
        };
        let score = sample.score();
        let rec = st.record(&provider);
        rec.quality_at = Some(now);
        if let Some((from, to)) = rec.quality.add(score) {
            let score = rec.quality.value().unwrap_or(score);
            info!(provider, score, ?from, ?to, "provider quality");
            self.emit(EventKind::QualityChanged {
                provider: provider.clone(),
                score,
                from,
                to,
            });
        }
        let Some(s) = st.session_mut(stream_id, gen) else {
            return Ok(());
        };
        let q = s.quality.get_or_insert_with(Default::default);
        match role {
            Role::Viewer => {
                let state = AudienceState::of(&sample);
                if q.audience.replace(state) != Some(state) {
                    debug!(stream_id, ?state, "viewer state");
                    self.audience_wake.notify_one();
                }
                if state == AudienceState::Stalled {
                    self.own_stall(&mut st, stream_id, gen, &provider, now);
                }
            }
            Role::Publisher => {
                match q.uplink.last_mut() {
                    Some((p, s)) if *p == provider => {
                        s.add(score);
                    }
                    _ => {
                        let mut s = Score::default();
                        s.add(score);
                        q.uplink.push((provider.clone(), s));
                        if q.uplink.len() > 3 {
                            q.uplink.remove(0);
                        }
                    }
                }
                if uplink_bad(q) {
                    self.degrade(&mut st, stream_id, gen, &provider, now, "publisher uplink");
                }
            }
        }
        Ok(())
    }

    /// A viewer's own player stalls on `provider` (its samples, or its SDK's stall error):
    /// its own problem if the rest of the audience watches fine (it lowers its quality, never
    /// moves); if the registry confirmed an outage or cannot tell, it moves to a standby of the
    /// stream if there is one (a viewer never wanders where the stream is not).
    pub(super) fn own_stall(
        self: &Arc<Self>,
        st: &mut State,
        stream_id: &str,
        gen: u64,
        provider: &str,
        now: Instant,
    ) {
        let view = st
            .session(stream_id, gen)
            .and_then(|s| s.quality.as_ref())
            .and_then(|q| q.view.as_ref())
            .filter(|v| v.provider == provider);
        if quality::stall_cause(view, quality::MIN_OTHERS) == StallCause::Local {
            debug!(
                stream_id,
                provider, "stalled alone: the rest of the audience watches fine"
            );
            self.degrade(st, stream_id, gen, provider, now, "viewer stalled alone");
            return;
        }
        if !self.viewer_standby_elsewhere(st, stream_id, gen, provider) {
            return;
        }
        info!(
            stream_id,
            provider, "viewer moves to a standby of its stream at once"
        );
        let job = MigrationJob {
            stream_id: stream_id.to_string(),
            gen,
            from: provider.to_string(),
            reason: FailoverReason::ErrorReported,
        };
        self.start_migrations(st, vec![job]);
    }

    /// Ask the adapter for the next lower quality level of a live session (at most one step
    /// per [`DEGRADE_HOLD`](quality::DEGRADE_HOLD); never again once it said "not supported").
    fn degrade(
        self: &Arc<Self>,
        st: &mut State,
        stream_id: &str,
        gen: u64,
        provider: &str,
        now: Instant,
        why: &'static str,
    ) {
        let Some(slot) = st.adapters.get(provider).cloned() else {
            return;
        };
        let Some(q) = st
            .session_mut(stream_id, gen)
            .and_then(|s| s.quality.as_mut())
        else {
            return;
        };
        let held = q
            .lowered_at
            .is_some_and(|t| now.saturating_duration_since(t) < quality::DEGRADE_HOLD);
        let Some(level) = q.level.unwrap_or(QualityLevel::High).lower() else {
            return;
        };
        if q.no_set_quality || held {
            return;
        }
        q.level = Some(level);
        q.lowered_at = Some(now);
        let me = self.clone();
        let (id, provider) = (stream_id.to_string(), provider.to_string());
        self.tracker.spawn(async move {
            let call_id = id.clone();
            let r = me
                .call_adapter(
                    "set_quality",
                    slot.adapter.clone(),
                    move |a: Arc<dyn ProviderAdapter>| async move {
                        a.set_quality(&call_id, level).await
                    },
                )
                .await;
            match r {
                Ok(()) => {
                    info!(stream_id = id, provider, ?level, why, "quality lowered");
                    me.emit(EventKind::QualityLowered {
                        stream_id: id,
                        provider,
                        level,
                    });
                }
                Err(e) => {
                    let unsupported = e.kind == ProviderErrorKind::NotSupported;
                    if unsupported {
                        debug!(stream_id = id, provider, "set_quality not supported");
                    } else {
                        warn!(stream_id = id, provider, error = %e, "set_quality failed");
                    }
                    let mut st = me.state();
                    if let Some(q) = st.session_mut(&id, gen).and_then(|s| s.quality.as_mut()) {
                        q.no_set_quality |= unsupported;
                        q.level = level.raise_from();
                    }
                }
            }
        });
    }

    /// The registry's audience signal for a followed stream (push). A viewer keeps it to tell
    /// its own stalls from its provider's; a publisher whose viewers on its provider are
    /// confirmed stalled treats that as a failure of the provider and moves (unless its own
    /// uplink is the problem: then it lowers its quality instead of hopping).
    pub(super) fn audience_seen(self: &Arc<Self>, view: AudienceView) {
        self.emit(EventKind::AudienceChanged {
            stream_id: view.stream_id.clone(),
            provider: view.provider.clone(),
            viewers: view.viewers,
            stalled: view.stalled,
            outage: view.outage,
        });
        let now = Instant::now();
        let mut st = self.state();
        let Some(s) = st.sessions.get_mut(&view.stream_id) else {
            return;
        };
        let on = s
            .info
            .provider
            .clone()
            .filter(|p| s.info.state == SessionState::Live && *p == view.provider);
        let Some(provider) = on else {
            return;
        };
        let (gen, role) = (s.gen, s.info.role);
        let q = s.quality.get_or_insert_with(Default::default);
        let outage = view.outage;
        let stream_id = view.stream_id.clone();
        match role {
            Role::Viewer => {
                let stalled = q.audience == Some(AudienceState::Stalled);
                q.view = Some(view);
                if outage && stalled {
                    self.own_stall(&mut st, &stream_id, gen, &provider, now);
                }
            }
            Role::Publisher if outage => {
                if uplink_bad(q) {
                    warn!(stream_id, provider, "viewers stalled, but the publisher's uplink is bad on every provider: lowering quality instead of moving");
                    self.degrade(&mut st, &stream_id, gen, &provider, now, "publisher uplink");
                    return;
                }
                warn!(
                    stream_id,
                    provider,
                    viewers = view.viewers,
                    stalled = view.stalled,
                    "audience outage confirmed by the registry; moving"
                );
                // Check the provider now: other sessions on it may be hit too.
                let rec = st.record(&provider);
                if rec.next_check.is_some() {
                    rec.next_check = Some(now);
                }
                self.wake.notify_one();
                let job = MigrationJob {
                    stream_id,
                    gen,
                    from: provider,
                    reason: FailoverReason::AudienceStalled,
                };
                self.start_migrations(&mut st, vec![job]);
            }
            Role::Publisher => {}
        }
    }

    /// Send the viewers' player states (with the keep-alive of every followed session) when
    /// one changes, and every [`STALLED_REPORT_EVERY`] while one is stalled.
    pub(super) async fn audience_reporter(self: Arc<Self>) {
        loop {
            let stalled = self.state().sessions.values().any(|s| {
                s.info.state == SessionState::Live
                    && s.quality
                        .as_ref()
                        .is_some_and(|q| q.audience == Some(AudienceState::Stalled))
            });
            let repeat = async {
                if stalled {
                    tokio::time::sleep(STALLED_REPORT_EVERY).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = self.audience_wake.notified() => {}
                _ = repeat => {}
                _ = self.cancel.cancelled() => return,
            }
            self.send_alive(!self.config.report_sessions).await;
        }
    }
}

/// Is the publisher's own uplink the problem (bad on the provider it is on and on the one
/// before)?
fn uplink_bad(q: &SessionQuality) -> bool {
    let scores: Vec<(String, f64)> = q
        .uplink
        .iter()
        .filter_map(|(p, s)| Some((p.clone(), s.usable(Duration::ZERO)?)))
        .collect();
    quality::uplink_is_the_problem(&scores)
}
