//! Migration: moving a live session off a provider (make-before-break or break-before-make),
//! for the reasons the planning policy ([`crate::planning`]) and health give.

use super::*;

impl Shared {
    /// Apply a health change of `provider`: announce it, reschedule its check, and return the
    /// migrations a new outage calls for.
    pub(super) fn apply_change(
        &self,
        st: &mut State,
        provider: &str,
        change: Change,
        reason: FailoverReason,
        detail: &str,
        now: Instant,
    ) -> Vec<MigrationJob> {
        let rec = st.record(provider);
        let consecutive = rec.health.consecutive_failures();
        let delay = rec.health.next_check_delay(&self.policy);
        if let Some(next) = rec.next_check {
            rec.next_check = Some(next.min(now + delay));
        }
        if change.status_changed() {
            info!(provider, from = ?change.from, to = ?change.to, consecutive, detail, "provider health");
            self.emit(EventKind::HealthChanged {
                provider: provider.to_string(),
                from: change.from,
                to: change.to,
                consecutive_failures: consecutive,
                detail: detail.to_string(),
            });
        }
        self.wake.notify_one();
        if !change.outage {
            return Vec::new();
        }
        warn!(provider, detail, "outage confirmed; moving live sessions");
        st.jobs_on(provider, reason)
    }

    /// Mark jobs' sessions as migrating (so no second migration starts) and spawn them.
    pub(super) fn start_migrations(self: &Arc<Self>, st: &mut State, jobs: Vec<MigrationJob>) {
        for job in jobs {
            let Some(s) = st.session(&job.stream_id, job.gen) else {
                continue;
            };
            if s.info.state != SessionState::Live
                || s.info.provider.as_deref() != Some(job.from.as_str())
            {
                continue;
            }
            let provider = s.info.provider.clone();
            self.set_state(
                st,
                &job.stream_id,
                job.gen,
                SessionState::Migrating,
                provider,
            );
            let me = self.clone();
            let span = info_span!("migrate", stream_id = %job.stream_id, from = %job.from, reason = ?job.reason);
            self.tracker
                .spawn(async move { me.migrate(job).await }.instrument(span));
        }
    }

    /// Move a live session off `job.from`.
    pub(super) async fn migrate(self: Arc<Self>, job: MigrationJob) {
        let MigrationJob {
            stream_id,
            gen,
            from,
            reason,
        } = job;
        let Some((op_lock, cancel, role)) = ({
            let st = self.state();
            st.session(&stream_id, gen)
                .map(|s| (s.op_lock.clone(), s.cancel.clone(), s.info.role))
        }) else {
            return;
        };
        let _op: OwnedMutexGuard<()> = op_lock.lock_owned().await;
        let now = Instant::now();
        let (mut strategy, target) = {
            let st = self.state();
            let still_ours = st.session(&stream_id, gen).is_some_and(|s| {
                s.info.state == SessionState::Migrating
                    && s.info.provider.as_deref() == Some(from.as_str())
            });
            if !still_ours || cancel.is_cancelled() {
                return;
            }
            let mut ex = HashSet::new();
            ex.insert(from.clone());
            let target = st.ranked(now, &ex, false).into_iter().next();
            let parallel = |p: &str| {
                st.adapters
                    .get(p)
                    .is_some_and(|a| a.adapter.supports_parallel_sessions())
            };
            // A lost slot may be someone else's already: stop using it before anything else.
            let mbb = reason != FailoverReason::CapacityLost
                && parallel(&from)
                && target.as_deref().is_some_and(parallel);
            let strategy = if mbb {
                MigrationStrategy::MakeBeforeBreak
            } else {
                MigrationStrategy::BreakBeforeMake
            };
            (strategy, target)
        };
        let health_driven = matches!(
            reason,
            FailoverReason::HealthCheckFailed | FailoverReason::ErrorReported
        );
        self.emit(EventKind::Failover {
            stream_id: stream_id.clone(),
            from: from.clone(),
            to: target.clone(),
            reason,
        });
        self.emit(EventKind::MigrationStarted {
            stream_id: stream_id.clone(),
            from: from.clone(),
            reason,
            strategy,
        });
        info!(stream_id, from, ?reason, ?strategy, "migration started");
        let started = Instant::now();
        let mut exclude = HashSet::new();
        exclude.insert(from.clone());
        let reconnect = |exclude: HashSet<String>, only_parallel: bool| {
            self.connect(ConnectRequest {
                stream_id: &stream_id,
                gen,
                deadline: Instant::now() + self.config.operation_deadline,
                role,
                operation: Operation::Migrate,
                exclude,
                only_parallel,
                cancel: &cancel,
            })
        };
        let (result, gap_start) = match strategy {
            MigrationStrategy::MakeBeforeBreak => {
                let r = reconnect(exclude.clone(), true).await;
                let stopped = matches!(
                    r,
                    Err(StreamguardError::Cancelled(_) | StreamguardError::ShutDown)
                );
                if r.is_ok() {
                    self.vacate(&from, &stream_id, gen).await;
                    (r, None)
                } else if health_driven && !stopped {
                    // The old provider is down and nothing else took the stream: leave it
                    // cleanly (once: the session no longer names it).
                    {
                        let mut st = self.state();
                        self.set_state(&mut st, &stream_id, gen, SessionState::Migrating, None);
                    }
                    self.vacate(&from, &stream_id, gen).await;
                    // No parallel-capable provider took it: the others may still, after a gap.
                    // A request the provider rejected as invalid would be rejected anywhere.
                    if !matches!(r, Err(StreamguardError::RequestRejected { .. })) {
                        info!(stream_id, from, "no parallel-capable provider took the stream; trying the others break-before-make");
                        strategy = MigrationStrategy::BreakBeforeMake;
                        let gap_start = Instant::now();
                        (reconnect(exclude, false).await, Some(gap_start))
                    } else {
                        (r, None)
                    }
                } else {
                    (r, None)
                }
            }
            MigrationStrategy::BreakBeforeMake => {
                self.vacate(&from, &stream_id, gen).await;
                let gap_start = Instant::now();
                {
                    let mut st = self.state();
                    self.set_state(&mut st, &stream_id, gen, SessionState::Migrating, None);
                }
                // A planned move may fall back to the old provider: it is healthy, only no
                // longer preferred. A health-driven move must not go back.
                if !health_driven {
                    exclude.clear();
                }
                (reconnect(exclude, false).await, Some(gap_start))
            }
        };
        let end = Instant::now();
        let mut st = self.state();
        match result {
            Ok((to, slot)) => {
                if let Some(s) = st.session_mut(&stream_id, gen) {
                    s.info.migrations += 1;
                }
                if to != from {
                    self.report(
                        ReportKind::Failover,
                        &from,
                        &stream_id,
                        Some(&to),
                        Some(reason),
                    );
                }
                self.set_state(
                    &mut st,
                    &stream_id,
                    gen,
                    SessionState::Live,
                    Some(to.clone()),
                );
                self.install_slot(&mut st, &stream_id, gen, &to, slot);
                let gap = gap_start.map_or(Duration::ZERO, |g| end - g);
                info!(stream_id, from, to, ?gap, "migration finished");
                self.emit(EventKind::MigrationFinished {
                    stream_id: stream_id.clone(),
                    from,
                    to,
                    gap,
                    duration: end - started,
                    strategy,
                });
            }
            Err(StreamguardError::Cancelled(_) | StreamguardError::ShutDown) => {
                // `end_stream` or `shutdown` owns the session now and will finish it; if the
                // old provider was already left, nothing else will report its end.
                if st
                    .session(&stream_id, gen)
                    .is_some_and(|s| s.info.provider.is_none())
                {
                    self.report(ReportKind::End, &from, &stream_id, None, None);
                }
            }
            Err(e) => {
                Self::set_last_error(&mut st, &stream_id, gen, e.to_string());
                let stay = strategy == MigrationStrategy::MakeBeforeBreak && !health_driven;
                let still_on = stay.then(|| from.clone());
                if stay {
                    self.set_state(
                        &mut st,
                        &stream_id,
                        gen,
                        SessionState::Live,
                        Some(from.clone()),
                    );
                } else {
                    self.report(ReportKind::End, &from, &stream_id, None, None);
                    self.set_state(&mut st, &stream_id, gen, SessionState::Failed, None);
                    // Both strategies gave the old slot back when they left; never keep one
                    // for a session that runs nowhere.
                    if let Some(slot) = st.session_mut(&stream_id, gen).and_then(|s| s.slot.take())
                    {
                        let me = self.clone();
                        self.tracker
                            .spawn(async move { me.release_slot(slot).await });
                    }
                }
                warn!(stream_id, from, error = %e, "migration failed");
                self.emit(EventKind::MigrationFailed {
                    stream_id: stream_id.clone(),
                    from,
                    error: e.to_string(),
                    still_on,
                });
            }
        }
    }
}
