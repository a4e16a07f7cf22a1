//! Migration: moving a live session off a provider (make-before-break or break-before-make),
//! for the reasons the planning policy ([`crate::planning`]) and health give.

use super::*;

impl Shared {
    /// Apply a health change of `provider`: announce it, reschedule its check, and return the
    /// migrations a new outage calls for.
    pub(super) fn apply_change(
        self: &Arc<Self>,
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
        self.drop_standbys_on(st, provider, None, "provider outage");
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

    /// Move a live session off `job.from`: choose the strategy, move, then record the outcome.
    pub(super) async fn migrate(self: Arc<Self>, job: MigrationJob) {
        let Some((op_lock, cancel, role)) = ({
            let st = self.state();
            st.session(&job.stream_id, job.gen)
                .map(|s| (s.op_lock.clone(), s.cancel.clone(), s.info.role))
        }) else {
            return;
        };
        let _op: OwnedMutexGuard<()> = op_lock.lock_owned().await;
        if role == Role::Viewer {
            // A viewer moves on the newest placement, not on what it learned at its last poll:
            // the publisher may have stopped or moved since.
            self.refresh_placement(&job.stream_id, job.gen).await;
        }
        let Some(MovePlan {
            strategy,
            target,
            only,
        }) = self.plan_move(&job, &cancel)
        else {
            return;
        };
        if role == Role::Publisher {
            if let Some(to) = self.standby_to_promote(&job, target.as_deref()) {
                return self.promote(job, to).await;
            }
        }
        let stays = !matches!(
            job.reason,
            FailoverReason::PlacementChanged | FailoverReason::CapacityLost
        );
        if target.is_none() && only.is_some() && stays {
            return self.stay_with_publisher(&job);
        }
        self.emit(EventKind::Failover {
            stream_id: job.stream_id.clone(),
            from: job.from.clone(),
            to: target,
            reason: job.reason,
        });
        self.emit(EventKind::MigrationStarted {
            stream_id: job.stream_id.clone(),
            from: job.from.clone(),
            reason: job.reason,
            strategy,
        });
        info!(stream_id = job.stream_id, from = job.from, reason = ?job.reason, ?strategy, "migration started");
        let started = Instant::now();
        let moved = self.move_stream(&job, strategy, role, only, &cancel).await;
        let timing = (started, Instant::now());
        match moved.result {
            Ok((to, slot)) => self.moved(job, to, slot, moved.strategy, moved.gap_start, timing),
            Err(StreamguardError::Cancelled(_) | StreamguardError::ShutDown) => {
                // `end_stream` or `shutdown` owns the session now and will finish it; if the
                // old provider was already left, nothing else will report its end.
                let st = self.state();
                if st
                    .session(&job.stream_id, job.gen)
                    .is_some_and(|s| s.info.provider.is_none())
                {
                    self.report(ReportKind::End, &job.from, &job.stream_id, None, None);
                }
            }
            Err(e) => self.not_moved(job, moved.strategy, e),
        }
    }

    /// Is the move still wanted (the session still migrating off `from`, not ended)? Then its
    /// strategy ([`planning::strategy`]), the provider it is expected to land on, and, for a
    /// viewer that follows a placement, the only providers it may use.
    fn plan_move(&self, job: &MigrationJob, cancel: &CancellationToken) -> Option<MovePlan> {
        let st = self.state();
        let s = st.session(&job.stream_id, job.gen)?;
        let still_ours = s.info.state == SessionState::Migrating
            && s.info.provider.as_deref() == Some(job.from.as_str());
        if !still_ours || cancel.is_cancelled() {
            return None;
        }
        // A viewer goes only where its publisher is; nowhere while the publisher is not live.
        let only: Option<Vec<String>> = s.placement.as_ref().map(|p| {
            p.providers()
                .filter(|_| p.live)
                .map(str::to_string)
                .collect()
        });
        // Never start the stream where a standby of it runs or is being started: a standby is
        // promoted instead (see `standby_to_promote`).
        let mut excluded = HashSet::from([job.from.clone()]);
        excluded.extend(s.standby_starting.iter().cloned());
        let target = st
            .ranked(Instant::now(), &excluded, false)
            .into_iter()
            .find(|t| only.as_ref().is_none_or(|o| o.contains(t)));
        let parallel = |p: &str| {
            st.adapters
                .get(p)
                .is_some_and(|a| a.adapter.supports_parallel_sessions())
        };
        let strategy = planning::strategy(
            job.reason,
            parallel(&job.from),
            target.as_deref().is_some_and(parallel),
        );
        Some(MovePlan {
            strategy,
            target,
            only,
        })
    }

    /// A viewer whose provider failed while its publisher is still there (and no standby can
    /// take it) stays: the stream is nowhere else, so moving would show nothing. It keeps being
    /// checked and follows the publisher's move when the placement changes. A planned move
    /// that is only a preference (priority, failback) is dropped without a failure event.
    fn stay_with_publisher(&self, job: &MigrationJob) {
        let mut st = self.state();
        self.set_state(
            &mut st,
            &job.stream_id,
            job.gen,
            SessionState::Live,
            Some(job.from.clone()),
        );
        if matches!(
            job.reason,
            FailoverReason::PriorityChanged | FailoverReason::Failback
        ) {
            // Only a preference: nothing failed, and the stream is only here.
            debug!(stream_id = job.stream_id, from = job.from, reason = ?job.reason, "viewer stays with its publisher");
            return;
        }
        let error = format!(
            "{} failed, but the publisher is still there and no standby can take the stream; staying until the placement changes",
            job.from
        );
        warn!(stream_id = job.stream_id, from = job.from, "{error}");
        Self::set_last_error(&mut st, &job.stream_id, job.gen, error.clone());
        self.emit(EventKind::MigrationFailed {
            stream_id: job.stream_id.clone(),
            from: job.from.clone(),
            error,
            still_on: Some(job.from.clone()),
        });
    }

    /// Carry the move out. Make-before-break: connect elsewhere (parallel-capable providers
    /// only), then leave the old provider; if a health-driven one finds no taker, leave and try
    /// the others break-before-make. Break-before-make: leave, then connect (a planned move may
    /// come back to the old provider, a health-driven one may not).
    async fn move_stream(
        self: &Arc<Self>,
        job: &MigrationJob,
        strategy: MigrationStrategy,
        role: Role,
        only: Option<Vec<String>>,
        cancel: &CancellationToken,
    ) -> Moved {
        let (stream_id, gen, from) = (job.stream_id.as_str(), job.gen, job.from.as_str());
        let health_driven = job.reason.is_health_driven();
        let reconnect = |exclude: HashSet<String>, only_parallel: bool| {
            self.connect(ConnectRequest {
                stream_id,
                gen,
                deadline: Instant::now() + self.config.operation_deadline,
                role,
                operation: Operation::Migrate,
                exclude,
                only_parallel,
                only: only.clone(),
                cancel,
            })
        };
        // Providers carrying (or starting) a standby of this stream are not started on again.
        let standby: Vec<String> = {
            let st = self.state();
            st.session(stream_id, gen)
                .map(|s| {
                    s.standbys
                        .iter()
                        .map(|l| l.provider.clone())
                        .chain(s.standby_starting.iter().cloned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let from_only = || {
            let mut set = HashSet::from([from.to_string()]);
            set.extend(standby.iter().cloned());
            set
        };
        if strategy == MigrationStrategy::BreakBeforeMake {
            let gap_start = Some(self.step_off(from, stream_id, gen).await);
            let exclude = if health_driven {
                from_only()
            } else {
                standby.iter().cloned().collect()
            };
            let result = reconnect(exclude, false).await;
            self.claim_moved(stream_id, gen, role, &result).await;
            return Moved {
                result,
                strategy,
                gap_start,
            };
        }
        let result = reconnect(from_only(), true).await;
        let fall_back = match &result {
            Ok(_) => {
                // Viewers move while both providers carry the stream.
                self.claim_moved(stream_id, gen, role, &result).await;
                self.vacate(from, stream_id, gen).await;
                false
            }
            Err(StreamguardError::Cancelled(_) | StreamguardError::ShutDown) => false,
            Err(_) => health_driven,
        };
        if !fall_back {
            return Moved {
                result,
                strategy,
                gap_start: None,
            };
        }
        // The old provider is down and nothing else took the stream: leave it cleanly (once:
        // the session no longer names it).
        self.step_off(from, stream_id, gen).await;
        // A request the provider rejected as invalid would be rejected anywhere.
        if matches!(result, Err(StreamguardError::RequestRejected { .. })) {
            return Moved {
                result,
                strategy,
                gap_start: None,
            };
        }
        info!(
            stream_id,
            from,
            "no parallel-capable provider took the stream; trying the others break-before-make"
        );
        let gap_start = Some(Instant::now());
        let result = reconnect(from_only(), false).await;
        self.claim_moved(stream_id, gen, role, &result).await;
        Moved {
            result,
            strategy: MigrationStrategy::BreakBeforeMake,
            gap_start,
        }
    }

    /// Leave `from` for good in a move (the session runs nowhere until it lands): returns when
    /// the gap began.
    async fn step_off(&self, from: &str, stream_id: &str, gen: u64) -> Instant {
        self.vacate(from, stream_id, gen).await;
        let left = Instant::now();
        self.set_state(
            &mut self.state(),
            stream_id,
            gen,
            SessionState::Migrating,
            None,
        );
        left
    }

    /// A publisher that moved claims its new provider (next epoch), so its viewers follow. A
    /// refusal (another client took the stream over meanwhile) is logged; the stream stays.
    async fn claim_moved(
        self: &Arc<Self>,
        stream_id: &str,
        gen: u64,
        role: Role,
        result: &Result<(String, HeldSlot), StreamguardError>,
    ) {
        if let (Role::Publisher, Ok((to, _))) = (role, result) {
            if let Err(e) = self.claim(stream_id, gen, to, false).await {
                warn!(stream_id, to, error = %e, "placement not claimed after the move");
            }
        }
    }

    /// The stream runs on `to` now.
    pub(super) fn moved(
        self: &Arc<Self>,
        job: MigrationJob,
        to: String,
        slot: HeldSlot,
        strategy: MigrationStrategy,
        gap_start: Option<Instant>,
        (started, end): (Instant, Instant),
    ) {
        let MigrationJob {
            stream_id,
            gen,
            from,
            reason,
        } = job;
        let mut st = self.state();
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
        self.want_standbys(&mut st, &stream_id, gen);
        let gap = gap_start.map_or(Duration::ZERO, |g| end - g);
        info!(stream_id, from, to, ?gap, "migration finished");
        self.emit(EventKind::MigrationFinished {
            stream_id,
            from,
            to,
            gap,
            duration: end - started,
            strategy,
        });
    }

    /// No provider took the stream: a planned make-before-break move stays on the old provider;
    /// otherwise the session fails (the old provider was left).
    fn not_moved(
        self: &Arc<Self>,
        job: MigrationJob,
        strategy: MigrationStrategy,
        e: StreamguardError,
    ) {
        let MigrationJob {
            stream_id,
            gen,
            from,
            reason,
        } = job;
        let mut st = self.state();
        Self::set_last_error(&mut st, &stream_id, gen, e.to_string());
        let stay = strategy == MigrationStrategy::MakeBeforeBreak && !reason.is_health_driven();
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
            // Both strategies gave the old slot back when they left; never keep one for a
            // session that runs nowhere.
            if let Some(slot) = st.session_mut(&stream_id, gen).and_then(|s| s.slot.take()) {
                let me = self.clone();
                self.tracker
                    .spawn(async move { me.release_slot(slot).await });
            }
            // Nor a placement claim: the publisher runs nowhere now (`finish` will not run for
            // a failed session).
            let claimed = st
                .session_mut(&stream_id, gen)
                .is_some_and(|s| std::mem::take(&mut s.epoch) > 0 || s.claim_pending);
            self.release_claim(&mut st, &stream_id, claimed);
            let standbys = self.take_standbys(&mut st, &stream_id, gen);
            self.spawn_leave_standbys(&stream_id, standbys);
            drop(st);
        }
        warn!(stream_id, from, error = %e, "migration failed");
        self.emit(EventKind::MigrationFailed {
            stream_id,
            from,
            error: e.to_string(),
            still_on,
        });
    }
}
