//! Session lifecycle: create (a session exists from the first instant of a start), open, end,
//! finish, host error reports and hints, statistics and shutdown.

use super::*;

impl Shared {
    /// Set the state of generation `gen` of `stream_id` (a no-op if that session is gone or was
    /// replaced by a newer one).
    pub(super) fn set_state(
        &self,
        st: &mut State,
        stream_id: &str,
        gen: u64,
        to: SessionState,
        provider: Option<String>,
    ) {
        let Some(s) = st.session_mut(stream_id, gen) else {
            return;
        };
        let from = s.info.state;
        let changed = from != to || s.info.provider != provider;
        s.info.state = to;
        s.info.provider = provider.clone();
        if to.is_finished() && !from.is_finished() {
            prune_finished(st);
        }
        self.push_wake.notify_one();
        if changed {
            info!(
                stream_id,
                ?from,
                ?to,
                provider = provider.as_deref(),
                "session state"
            );
            self.emit(EventKind::SessionStateChanged {
                stream_id: stream_id.to_string(),
                from,
                to,
                provider,
            });
        }
        self.wake.notify_one();
    }

    pub(super) fn set_last_error(st: &mut State, stream_id: &str, gen: u64, error: String) {
        if let Some(s) = st.session_mut(stream_id, gen) {
            s.info.last_error = Some(error);
        }
    }

    /// Before the first attempt: a usable provider list, and for a viewer the providers its
    /// stream is placed on (`None`: any).
    async fn prepare(
        self: &Arc<Self>,
        stream_id: &str,
        gen: u64,
        role: Role,
    ) -> Result<Option<Vec<String>>, StreamguardError> {
        self.ensure_list().await?;
        if role == Role::Publisher {
            return Ok(None);
        }
        match self.viewer_target(stream_id, gen).await? {
            placement::Target::Any => Ok(None),
            placement::Target::Placed(p) => {
                let only: Vec<String> = p.providers().map(str::to_string).collect();
                let has_adapter = {
                    let st = self.state();
                    only.iter().any(|name| st.adapters.contains_key(name))
                };
                if !has_adapter {
                    return Err(StreamguardError::NoAdapterForPlacement {
                        stream_id: stream_id.to_string(),
                        providers: only,
                    });
                }
                self.announce_placement(&p);
                if let Some(s) = self.state().session_mut(stream_id, gen) {
                    s.placement = Some(Box::new(p));
                }
                Ok(Some(only))
            }
        }
    }

    /// Create the session of `stream_id` (generation `gen`), or return the live one of the same
    /// role, or refuse if another operation owns it.
    pub(super) fn create_session(
        &self,
        stream_id: &str,
        role: Role,
        cancel: CancellationToken,
    ) -> Result<Opened, StreamguardError> {
        let mut st = self.state();
        if st.shut_down {
            return Err(StreamguardError::ShutDown);
        }
        if let Some(s) = st.sessions.get(stream_id) {
            if s.info.state == SessionState::Live && s.info.role == role {
                return Ok(Opened::AlreadyLive(s.info.clone()));
            }
            if !s.info.state.is_finished() {
                return Err(StreamguardError::SessionBusy {
                    stream_id: stream_id.to_string(),
                    state: s.info.state,
                });
            }
        }
        st.last_gen += 1;
        let gen = st.last_gen;
        let session = Session {
            info: SessionInfo {
                stream_id: stream_id.to_string(),
                role,
                provider: None,
                state: SessionState::Idle,
                attempts: 0,
                migrations: 0,
                last_error: None,
                standby: Vec::new(),
            },
            gen,
            op_lock: Arc::new(tokio::sync::Mutex::new(())),
            cancel,
            epoch: 0,
            claim_pending: false,
            placement: None,
            slot: None,
            standbys: Vec::new(),
            standby_starting: None,
            standby_filling: false,
            awaiting_live: false,
            quality: None,
        };
        let lock = session.op_lock.clone();
        st.sessions.insert(stream_id.to_string(), session);
        self.set_state(&mut st, stream_id, gen, SessionState::Connecting, None);
        Ok(Opened::New(gen, lock))
    }

    /// Start or join: the session exists (Connecting) from the first instant, so `end_stream`
    /// can cancel it whatever it waits for: the list read, a slot, a backoff, an adapter call.
    /// `cancel` is the session's token; `created` learns its generation.
    pub(super) async fn open(
        self: Arc<Self>,
        stream_id: &str,
        role: Role,
        cancel: CancellationToken,
        created: Arc<std::sync::OnceLock<u64>>,
    ) -> Result<SessionInfo, StreamguardError> {
        let deadline = Instant::now() + self.config.operation_deadline;
        let (gen, op_lock) = match self.create_session(stream_id, role, cancel.clone())? {
            Opened::New(gen, lock) => (gen, lock),
            Opened::AlreadyLive(info) => return Ok(info),
        };
        let _ = created.set(gen);
        let _op = op_lock.lock_owned().await;
        let operation = match role {
            Role::Publisher => Operation::Start,
            Role::Viewer => Operation::Join,
        };
        // List and placement reads count against the deadline like everything else.
        let prepared = tokio::select! {
            r = tokio::time::timeout_at(deadline, self.prepare(stream_id, gen, role)) => {
                r.unwrap_or(Err(StreamguardError::DeadlineExceeded { attempts: Vec::new() }))
            }
            _ = cancel.cancelled() => Err(self.stop_error(stream_id)),
        };
        let result = match prepared {
            Ok(only) => {
                self.connect(ConnectRequest {
                    stream_id,
                    gen,
                    deadline,
                    role,
                    operation,
                    exclude: HashSet::new(),
                    only_parallel: false,
                    only,
                    cancel: &cancel,
                })
                .await
            }
            Err(e) => Err(e),
        };
        // A publisher claims its placement before it counts as live, so viewers can find it;
        // if another client owns the stream, it leaves again. The claim runs to its end
        // (bounded by `request_timeout` per request: a claim dropped on its way could still
        // land after its release); an `end_stream` meanwhile wins: the stream never goes live.
        let result = match (result, role) {
            (Ok((provider, slot)), Role::Publisher) => {
                let claimed = self.claim(stream_id, gen, &provider, false).await;
                let claimed = claimed.and_then(|()| match cancel.is_cancelled() {
                    true => Err(self.stop_error(stream_id)),
                    false => Ok(()),
                });
                match claimed {
                    Ok(()) => Ok((provider, slot)),
                    Err(e) => {
                        {
                            let mut st = self.state();
                            let claimed = st
                                .session_mut(stream_id, gen)
                                .is_some_and(|s| std::mem::take(&mut s.epoch) > 0);
                            self.release_claim(&mut st, stream_id, claimed);
                        }
                        self.leave(&provider, stream_id).await;
                        self.release_slot(slot).await;
                        Err(e)
                    }
                }
            }
            (r, _) => r,
        };
        let mut st = self.state();
        match result {
            Ok((provider, slot)) => {
                self.report(ReportKind::Start, &provider, stream_id, None, None);
                self.set_state(
                    &mut st,
                    stream_id,
                    gen,
                    SessionState::Live,
                    Some(provider.clone()),
                );
                let info = st.session(stream_id, gen).map(|s| s.info.clone());
                self.install_slot(&mut st, stream_id, gen, &provider, slot);
                self.want_standbys(&mut st, stream_id, gen);
                info.ok_or_else(|| StreamguardError::Internal("session vanished".into()))
            }
            Err(e) => {
                let to = match e {
                    StreamguardError::Cancelled(_) | StreamguardError::ShutDown => {
                        SessionState::Ended
                    }
                    _ => SessionState::Failed,
                };
                Self::set_last_error(&mut st, stream_id, gen, e.to_string());
                self.set_state(&mut st, stream_id, gen, to, None);
                Err(e)
            }
        }
    }

    pub(super) fn stop_error(&self, stream_id: &str) -> StreamguardError {
        if self.cancel.is_cancelled() {
            StreamguardError::ShutDown
        } else {
            StreamguardError::Cancelled(stream_id.to_string())
        }
    }

    pub(super) async fn end(self: Arc<Self>, stream_id: &str) -> Result<(), StreamguardError> {
        let gen = self
            .state()
            .sessions
            .get(stream_id)
            .ok_or_else(|| StreamguardError::UnknownSession(stream_id.to_string()))?
            .gen;
        self.end_gen(stream_id, gen).await
    }

    /// End generation `gen` of `stream_id`: cancel whatever it waits for, then finish it under
    /// its op lock. A no-op if it finished or was replaced.
    pub(super) async fn end_gen(
        self: &Arc<Self>,
        stream_id: &str,
        gen: u64,
    ) -> Result<(), StreamguardError> {
        let (op_lock, cancel) = {
            let st = self.state();
            let Some(s) = st.session(stream_id, gen) else {
                return Ok(());
            };
            if s.info.state.is_finished() {
                return Ok(());
            }
            (s.op_lock.clone(), s.cancel.clone())
        };
        cancel.cancel();
        let _op = op_lock.lock_owned().await;
        self.finish(stream_id, gen, SessionState::Ended).await;
        Ok(())
    }

    /// Stop monitoring the session at once, then leave its provider. The caller holds the
    /// session's op lock.
    pub(super) async fn finish(self: &Arc<Self>, stream_id: &str, gen: u64, to: SessionState) {
        let provider = {
            let mut st = self.state();
            let Some(s) = st.session_mut(stream_id, gen) else {
                return;
            };
            if s.info.state.is_finished() {
                return;
            }
            let p = s.info.provider.take();
            let slot = s.slot.take();
            // A claim made, or a retry possibly on its way: released in its turn.
            let claimed = std::mem::take(&mut s.epoch) > 0 || s.claim_pending;
            self.set_state(&mut st, stream_id, gen, to, None);
            // From here a new session of the same id may start: queued behind this ticket, its
            // attempts on this provider come after our leave.
            let ticket = p.as_ref().map(|p| self.ticket(&mut st, p, stream_id));
            // Likewise its placement release lands before a new session's claim.
            self.release_claim(&mut st, stream_id, claimed);
            let standbys = self.take_standbys(&mut st, stream_id, gen);
            (p.zip(ticket), slot, standbys)
        };
        let (provider, slot, standbys) = provider;
        if let Some((p, ticket)) = provider {
            self.report(ReportKind::End, &p, stream_id, None, None);
            ticket.turn().await;
            self.leave(&p, stream_id).await;
        }
        // After leaving: the slot is free only once the stream really stopped.
        if let Some(slot) = slot {
            self.release_slot(slot).await;
        }
        self.leave_standbys(stream_id, standbys).await;
    }

    pub(super) fn record_error(
        self: &Arc<Self>,
        stream_id: &str,
        error: ProviderError,
    ) -> Result<(), StreamguardError> {
        self.ensure_running()?;
        let now = Instant::now();
        let mut st = self.state();
        let s = st
            .sessions
            .get(stream_id)
            .ok_or_else(|| StreamguardError::UnknownSession(stream_id.to_string()))?;
        let gen = s.gen;
        let (SessionState::Live, Some(provider)) = (s.info.state, s.info.provider.clone()) else {
            // A start or migration in progress handles its own errors.
            debug!(stream_id, state = ?s.info.state, %error, "error report ignored: session not live");
            return Ok(());
        };
        warn!(stream_id, provider, %error, "error reported by the host");
        Self::set_last_error(&mut st, stream_id, gen, error.to_string());
        let viewer = st.session_role(stream_id) == Some(Role::Viewer);
        if error.class() != ErrorClass::RequestFatal && viewer {
            // A viewer's SDK error is its player failing: its own problem, or its provider's.
            self.own_stall(&mut st, stream_id, gen, &provider, now);
        }
        let rec = st.record(&provider);
        rec.reported_errors += 1;
        let detail = format!("reported: {error}");
        match error.class() {
            ErrorClass::RequestFatal => {
                // The stream itself is refused (banned, deleted): no provider can carry it.
                let me = self.clone();
                let id = stream_id.to_string();
                let lock = st.sessions[stream_id].op_lock.clone();
                drop(st);
                self.tracker.spawn(async move {
                    let _op = lock.lock_owned().await;
                    // Only this generation: a newer session of the same id is not at fault.
                    me.finish(&id, gen, SessionState::Failed).await;
                });
            }
            ErrorClass::ProviderFatal => {
                let change = rec.health.mark_down(now, &self.policy);
                let jobs = self.apply_change(
                    &mut st,
                    &provider,
                    change,
                    FailoverReason::ErrorReported,
                    &detail,
                    now,
                );
                self.start_migrations(&mut st, jobs);
            }
            ErrorClass::Transient => {
                let change = rec.health.on_reported_error(now, &self.policy);
                if !change.outage {
                    // Confirm (or clear) at once with an independent check.
                    rec.next_check = Some(now);
                }
                let jobs = self.apply_change(
                    &mut st,
                    &provider,
                    change,
                    FailoverReason::ErrorReported,
                    &detail,
                    now,
                );
                self.start_migrations(&mut st, jobs);
            }
        }
        Ok(())
    }

    pub(super) fn network_changed(&self) {
        info!("network changed: retrying now");
        self.retry_now.send_modify(|g| *g = g.wrapping_add(1));
        let now = Instant::now();
        let mut st = self.state();
        for rec in st.records.values_mut() {
            rec.health.forgive();
            if rec.next_check.is_some() {
                rec.next_check = Some(now);
            }
        }
        if st.next_refresh.is_some() {
            st.next_refresh = Some(now);
        }
        drop(st);
        self.wake.notify_one();
    }

    pub(super) fn stats(&self) -> Vec<ProviderStats> {
        let now = Instant::now();
        let st = self.state();
        let mut names: Vec<(u32, String)> = st
            .providers
            .iter()
            .map(|p| (p.priority, p.name.clone()))
            .collect();
        for name in st.records.keys() {
            if !st.providers.iter().any(|p| &p.name == name) {
                names.push((u32::MAX, name.clone()));
            }
        }
        names.sort();
        names
            .into_iter()
            .map(|(_, name)| {
                // A provider only known from the list has an empty record: all zeros.
                let empty = ProviderRecord::default();
                let r = st.records.get(&name).unwrap_or(&empty);
                let live = st.live_on(&name).len() as u32;
                let standby = st
                    .sessions
                    .values()
                    .flat_map(|s| &s.standbys)
                    .filter(|l| l.provider == name)
                    .count() as u32;
                ProviderStats {
                    provider: name,
                    status: r.health.status(),
                    attempts: r.attempts,
                    successes: r.successes,
                    failures: r.failures,
                    reported_errors: r.reported_errors,
                    consecutive_failures: r.health.consecutive_failures(),
                    health_checks: r.checks,
                    failed_health_checks: r.failed_checks,
                    last_check_at: r.last_check_at.map(|t| self.since_epoch(t)),
                    avg_check_latency: r.check_latency.get(),
                    avg_connect_latency: r.connect_latency.get(),
                    uptime_percent: (r.checks > 0)
                        .then(|| 100.0 * (r.checks - r.failed_checks) as f64 / r.checks as f64),
                    live_sessions: live,
                    standby_sessions: standby,
                    quality_score: r.quality.value(),
                    times_ejected: r.health.times_ejected(),
                    cooling_for: r.health.cooling_left(now),
                }
            })
            .collect()
    }

    pub(super) async fn shutdown(self: Arc<Self>) {
        let sessions: Vec<(String, u64, Arc<tokio::sync::Mutex<()>>)> = {
            let mut st = self.state();
            st.shut_down = true;
            st.sessions
                .values()
                .filter(|s| !s.info.state.is_finished())
                .map(|s| (s.info.stream_id.clone(), s.gen, s.op_lock.clone()))
                .collect()
        };
        info!(sessions = sessions.len(), "shutting down");
        self.cancel.cancel();
        let mut leaving = tokio::task::JoinSet::new();
        for (id, gen, lock) in sessions {
            let me = self.clone();
            leaving.spawn(async move {
                let _op = lock.lock_owned().await;
                me.finish(&id, gen, SessionState::Ended).await;
            });
        }
        while leaving.join_next().await.is_some() {}
        self.telemetry_done.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        info!("shut down");
    }
}
