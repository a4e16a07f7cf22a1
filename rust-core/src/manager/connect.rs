//! The connect loop shared by start, join and migration: it carries out the decisions of the
//! pure [`AttemptPolicy`](crate::attempt::AttemptPolicy), one attempt at a time, each in its
//! (provider, stream) lane and under a capacity lease.

use super::*;

impl Shared {
    /// Announce that the connect loop gave up on `left` (provider and why) for `to`, or for
    /// nothing when no provider can take the stream.
    pub(super) fn announce_failover(
        &self,
        stream_id: &str,
        left: Option<(String, FailoverReason)>,
        to: Option<&str>,
    ) {
        let Some((from, reason)) = left else { return };
        if self.state().standby_starting_on(stream_id, &from) {
            // A standby start that gave up: the stream itself did not move.
            return;
        }
        info!(stream_id, from, to, ?reason, "failover");
        self.emit(EventKind::Failover {
            stream_id: stream_id.to_string(),
            from,
            to: to.map(str::to_string),
            reason,
        });
    }

    /// [`connect_loop`](Self::connect_loop) with its capacity lease: handed to the caller on
    /// success, released on failure.
    pub(super) async fn connect(
        self: &Arc<Self>,
        req: ConnectRequest<'_>,
    ) -> Result<(String, HeldSlot), StreamguardError> {
        let stream_id = req.stream_id;
        let mut held = None;
        let result = self.connect_loop(req, &mut held).await;
        match (result, held) {
            (Ok(provider), Some(slot)) => Ok((provider, slot)),
            (Ok(provider), None) => {
                // connect_loop only attempts a provider while holding its slot.
                self.leave(&provider, stream_id).await;
                Err(StreamguardError::Internal(format!(
                    "connected to {provider} without a capacity lease"
                )))
            }
            (Err(e), slot) => {
                if let Some(slot) = slot {
                    self.release_slot(slot).await;
                }
                Err(e)
            }
        }
    }

    /// The escalation loop shared by start, join and migration; [`AttemptPolicy`] decides after
    /// each failure whether to retry the same provider after a jittered backoff, fail over, or
    /// stop; no attempt starts at or after the deadline. Every attempt runs under a capacity
    /// lease on its provider, kept across retries of that provider and given back on failover.
    /// A half-open provider gets one attempt (its trial). Returns the provider now carrying
    /// the stream; its lease is left in `held`.
    pub(super) async fn connect_loop(
        self: &Arc<Self>,
        mut req: ConnectRequest<'_>,
        held: &mut Option<HeldSlot>,
    ) -> Result<String, StreamguardError> {
        let mut run = Run {
            deadline: req.deadline,
            waited: Duration::ZERO,
            attempts: Vec::new(),
            tries: HashMap::new(),
            excluded: std::mem::take(&mut req.exclude),
            retry: None,
            left_behind: None,
            retry_rx: self.retry_now.subscribe(),
        };
        loop {
            if req.cancel.is_cancelled() {
                return Err(self.stop_error(req.stream_id));
            }
            self.may_start(run.attempts.len(), run.deadline, &mut run.attempts)?;
            let (provider, info, slot) = self.pick(&req, &mut run, held).await?;
            self.wait_to_retry(&req, &mut run, &provider).await?;
            // Again right before the call: choosing a provider and waiting take time.
            self.may_start(run.attempts.len(), run.deadline, &mut run.attempts)?;
            let number = run.attempts.len() as u32 + 1;
            let started = Instant::now();
            let Some(begun) = self.begin_attempt(&req, &run.excluded, &provider) else {
                // Another start began the trial of this half-open provider while this one
                // chose it (a ledger answer takes a moment): go to the next provider.
                run.excluded.insert(provider);
                continue;
            };
            let (trial, result) = self
                .attempt(
                    &req,
                    &mut run,
                    held,
                    (&provider, &info, &slot),
                    number,
                    begun,
                )
                .await?;
            let error = match result {
                Ok(()) => {
                    self.connected(&provider, req.stream_id, Instant::now() - started);
                    info!(
                        stream_id = req.stream_id,
                        provider,
                        attempt = number,
                        "connected"
                    );
                    return Ok(provider);
                }
                Err(error) => error,
            };
            self.after_failure(&req, &mut run, provider, number, trial, error)?;
        }
    }

    /// Choose the provider of the next attempt (see [`choose`](Self::choose)) and announce the
    /// failover that led to it; errors when none can be tried.
    async fn pick(
        self: &Arc<Self>,
        req: &ConnectRequest<'_>,
        run: &mut Run,
        held: &mut Option<HeldSlot>,
    ) -> Result<Usable, StreamguardError> {
        let waited_before = run.waited;
        let retried = run.retry.as_ref().map(|(p, _)| p.as_str());
        let choice = self
            .choose(req, &run.excluded, retried, held, &mut run.waited)
            .await?;
        // Queueing for a slot is bounded by `capacity_max_wait`, not by the deadline.
        run.deadline += run.waited - waited_before;
        let stream_id = req.stream_id;
        match choice {
            Choice::Go(p, info, slot) => {
                self.announce_failover(stream_id, run.left_behind.take(), Some(&p));
                Ok((p, info, slot))
            }
            Choice::Full(providers) => {
                self.announce_failover(stream_id, run.left_behind.take(), None);
                Err(StreamguardError::NoCapacity {
                    providers,
                    waited: run.waited,
                    attempts: std::mem::take(&mut run.attempts),
                })
            }
            Choice::NoneUsable => {
                self.announce_failover(stream_id, run.left_behind.take(), None);
                Err(if run.attempts.is_empty() {
                    StreamguardError::NoProviderAvailable {
                        reason: "no active provider with a registered adapter".into(),
                    }
                } else {
                    StreamguardError::AllAttemptsFailed {
                        attempts: std::mem::take(&mut run.attempts),
                    }
                })
            }
        }
    }

    /// Wait out the backoff of a retry of `provider` (ended early by `network_changed()`).
    async fn wait_to_retry(
        &self,
        req: &ConnectRequest<'_>,
        run: &mut Run,
        provider: &str,
    ) -> Result<(), StreamguardError> {
        let Some((p, delay)) = run.retry.take() else {
            return Ok(());
        };
        if p != provider || delay.is_zero() {
            return Ok(());
        }
        let until = Instant::now() + delay;
        if until >= run.deadline {
            return Err(StreamguardError::DeadlineExceeded {
                attempts: std::mem::take(&mut run.attempts),
            });
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = run.retry_rx.changed() => debug!(stream_id = req.stream_id, "retry now"),
            _ = req.cancel.cancelled() => return Err(self.stop_error(req.stream_id)),
        }
        Ok(())
    }

    /// One attempt on `provider`: the adapter call on its own task, in its (provider, stream)
    /// lane, raced against cancellation and the deadline. An abandoned call is handed to
    /// [`abandon`](Self::abandon). Returns whether it was a half-open trial and the call's
    /// outcome.
    async fn attempt(
        self: &Arc<Self>,
        req: &ConnectRequest<'_>,
        run: &mut Run,
        held: &mut Option<HeldSlot>,
        (provider, info, slot): (&str, &ProviderInfo, &Arc<AdapterSlot>),
        number: u32,
        (trial, ticket): (bool, LaneTicket),
    ) -> Result<(bool, Result<(), ProviderError>), StreamguardError> {
        let stream_id = req.stream_id;
        self.emit(EventKind::AttemptStarted {
            stream_id: stream_id.to_string(),
            provider: provider.to_string(),
            attempt: number,
            operation: req.operation,
        });
        // The attempt runs on its own task so `end_stream` need not wait for a slow SDK.
        let given_up = req.cancel.child_token();
        let mut call = {
            let me = self.clone();
            let (slot, info, id, role) =
                (slot.clone(), info.clone(), stream_id.to_string(), req.role);
            let given_up = given_up.clone();
            self.tracker.spawn(async move {
                // Older work on this (provider, stream) goes first, its cleanup included.
                tokio::select! {
                    _ = ticket.turn() => {}
                    _ = given_up.cancelled() => {
                        return (Err(ProviderError::internal("given up before the call")), ticket);
                    }
                }
                (me.adapter_connect(&slot, &info, &id, role).await, ticket)
            })
        };
        let mut abandon = |call| {
            given_up.cancel();
            self.abandon(call, held.take(), provider, trial);
        };
        let (result, ticket) = tokio::select! {
            r = &mut call => match r {
                Ok((r, ticket)) => (r, Some(ticket)),
                Err(e) => (Err(ProviderError::internal(panic_message(e))), None),
            },
            _ = req.cancel.cancelled() => {
                abandon(call);
                return Err(self.stop_error(stream_id));
            }
            _ = tokio::time::sleep_until(run.deadline) => {
                abandon(call);
                run.attempts.push(Attempt {
                    provider: provider.to_string(),
                    number,
                    error: ProviderError::timeout("operation deadline reached during the call"),
                });
                return Err(StreamguardError::DeadlineExceeded {
                    attempts: std::mem::take(&mut run.attempts),
                });
            }
        };
        self.end_attempt(provider, trial);
        if result.is_ok() && req.cancel.is_cancelled() {
            // Ended while the call ran: do not leave a stream running nobody owns (still in
            // the lane, before anything newer on this pair).
            self.leave(provider, stream_id).await;
            drop(ticket);
            return Err(self.stop_error(stream_id));
        }
        Ok((trial, result))
    }

    /// After a failed attempt: bookkeeping, the policy's decision, its event; an error when
    /// the operation stops.
    fn after_failure(
        self: &Arc<Self>,
        req: &ConnectRequest<'_>,
        run: &mut Run,
        provider: String,
        number: u32,
        trial: bool,
        error: ProviderError,
    ) -> Result<(), StreamguardError> {
        let stream_id = req.stream_id;
        let now = Instant::now();
        warn!(stream_id, provider, attempt = number, %error, "attempt failed");
        run.attempts.push(Attempt {
            provider: provider.clone(),
            number,
            error: error.clone(),
        });
        let on_provider = {
            let n = run.tries.entry(provider.clone()).or_default();
            *n += 1;
            *n
        };
        let unit = self
            .jitter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_unit();
        let next = self.attempts.after_failure(&Failed {
            class: error.class(),
            attempts: run.attempts.len() as u32,
            on_provider,
            trial,
            retry_delay: self.backoff.delay(on_provider, unit),
            now,
            deadline: run.deadline,
        });
        self.failed(&provider, stream_id, req.gen, &error, next, now);
        let retry_in = match next {
            Next::Retry { delay } => {
                run.retry = Some((provider.clone(), delay));
                Some(delay)
            }
            Next::Failover { reason } => {
                run.excluded.insert(provider.clone());
                run.left_behind = Some((provider.clone(), reason));
                None
            }
            Next::Stop(_) => None,
        };
        self.emit(EventKind::AttemptFailed {
            stream_id: stream_id.to_string(),
            provider: provider.clone(),
            attempt: number,
            operation: req.operation,
            error: error.clone(),
            retry_in,
        });
        match next {
            Next::Stop(Stop::Rejected) => {
                Err(StreamguardError::RequestRejected { provider, error })
            }
            Next::Stop(Stop::Deadline) => Err(StreamguardError::DeadlineExceeded {
                attempts: std::mem::take(&mut run.attempts),
            }),
            Next::Stop(Stop::BudgetSpent) => Err(StreamguardError::AllAttemptsFailed {
                attempts: std::mem::take(&mut run.attempts),
            }),
            Next::Failover { .. } if run.attempts.len() as u32 >= self.config.max_attempts => {
                // The budget is spent: announce the failover that cannot happen.
                self.announce_failover(stream_id, run.left_behind.take(), None);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// [`AttemptPolicy::may_start`] as an error.
    pub(super) fn may_start(
        &self,
        made: usize,
        deadline: Instant,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(), StreamguardError> {
        match self
            .attempts
            .may_start(made as u32, Instant::now(), deadline)
        {
            None => Ok(()),
            Some(Stop::Deadline) => Err(StreamguardError::DeadlineExceeded {
                attempts: std::mem::take(attempts),
            }),
            Some(_) => Err(StreamguardError::AllAttemptsFailed {
                attempts: std::mem::take(attempts),
            }),
        }
    }

    /// Count an attempt on `provider` and queue it in the (provider, stream) lane. Returns
    /// whether it is the provider's half-open trial, and the lane ticket; `None` if the
    /// provider is half-open and its trial is already in flight while another provider could
    /// be tried (checked here, under the lock that counts the trial, so two starts that chose
    /// it at once never both become its trial; in panic mode it is tried anyway).
    pub(super) fn begin_attempt(
        self: &Arc<Self>,
        req: &ConnectRequest<'_>,
        excluded: &HashSet<String>,
        provider: &str,
    ) -> Option<(bool, LaneTicket)> {
        let (stream_id, gen) = (req.stream_id, req.gen);
        let now = Instant::now();
        let mut st = self.state();
        let busy = st.records.get(provider).is_some_and(|r| {
            r.health.is_half_open(now) && (r.check_in_flight || r.trials_in_flight > 0)
        });
        if busy {
            let allowed = |p: &String| req.only.as_ref().is_none_or(|o| o.contains(p));
            let first = st
                .ranked(now, excluded, req.only_parallel)
                .into_iter()
                .find(allowed);
            if first.is_some_and(|f| f != provider) {
                return None;
            }
        }
        let rec = st.record(provider);
        rec.attempts += 1;
        let trial = rec.health.is_half_open(now);
        if trial {
            rec.trials_in_flight += 1;
            info!(
                provider,
                stream_id, "half-open: this attempt is the provider's trial"
            );
        }
        if let Some(s) = st.session_mut(stream_id, gen) {
            s.info.attempts += 1;
        }
        let ticket = self.ticket(&mut st, provider, stream_id);
        Some((trial, ticket))
    }

    /// The attempt on `provider` finished (or was abandoned and then finished).
    pub(super) fn end_attempt(&self, provider: &str, trial: bool) {
        if trial {
            let mut st = self.state();
            let rec = st.record(provider);
            rec.trials_in_flight = rec.trials_in_flight.saturating_sub(1);
        }
    }

    /// Bookkeeping of a successful attempt.
    pub(super) fn connected(self: &Arc<Self>, provider: &str, stream_id: &str, took: Duration) {
        let now = Instant::now();
        let mut st = self.state();
        let rec = st.record(provider);
        rec.successes += 1;
        rec.connect_latency.add(took);
        let change = rec.health.on_success(now, &self.policy);
        let jobs = self.apply_change(
            &mut st,
            provider,
            change,
            FailoverReason::HealthCheckFailed,
            "connected",
            now,
        );
        self.start_migrations(&mut st, jobs);
        debug!(stream_id, provider, "attempt succeeded");
    }

    /// Bookkeeping of a failed attempt: the provider's health (a request's own fault says
    /// nothing about the provider) and its cool-down when the loop gives up on it.
    pub(super) fn failed(
        self: &Arc<Self>,
        provider: &str,
        stream_id: &str,
        gen: u64,
        error: &ProviderError,
        next: Next,
        now: Instant,
    ) {
        let mut st = self.state();
        Self::set_last_error(&mut st, stream_id, gen, error.to_string());
        let rec = st.record(provider);
        rec.failures += 1;
        if error.class() == ErrorClass::RequestFatal {
            return;
        }
        let change = rec.health.on_failure(now, &self.policy);
        if matches!(next, Next::Failover { .. }) {
            rec.health.cool_down(now, &self.policy);
        }
        let jobs = self.apply_change(
            &mut st,
            provider,
            change,
            FailoverReason::HealthCheckFailed,
            &error.to_string(),
            now,
        );
        self.start_migrations(&mut st, jobs);
    }
}
