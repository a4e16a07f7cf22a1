//! The monitor: one task that runs health checks and list refreshes when due and sleeps until
//! the next deadline or a wake-up.

use super::*;

impl Shared {
    /// The background loop: run checks and list refreshes when due, then sleep until the next
    /// deadline or a wake-up, re-reading the state every turn.
    pub(super) async fn monitor(self: Arc<Self>) {
        loop {
            let now = Instant::now();
            let (due, refresh_due, next) = self.schedule(now);
            for provider in due {
                let me = self.clone();
                let span = debug_span!("check", provider = %provider);
                self.tracker
                    .spawn(async move { me.check(provider).await }.instrument(span));
            }
            if refresh_due {
                let me = self.clone();
                self.tracker.spawn(async move {
                    let _ = me.refresh(false).await;
                    // Placement: viewers poll where their publishers are (push is faster and
                    // this is its fallback); publishers retry claims that failed and, without
                    // session telemetry, keep their claims alive themselves.
                    me.poll_placements().await;
                    me.reclaim_pending().await;
                    if !me.config.report_sessions {
                        me.send_alive(true).await;
                    }
                });
            }
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = sleep => {}
            }
        }
        debug!("monitor stopped");
    }

    /// Carry out [`schedule::plan`] on the records: mark the due checks as running and keep
    /// the new deadlines. Returns the checks to start, whether to refresh, and when to wake.
    pub(super) fn schedule(&self, now: Instant) -> (Vec<String>, bool, Option<Instant>) {
        let mut st = self.state();
        let monitored = st.monitored(now, self.config.failback);
        for p in &monitored {
            st.record(p);
        }
        let names: Vec<String> = st.records.keys().cloned().collect();
        let clocks: Vec<schedule::Clock> = names
            .iter()
            .map(|n| {
                let r = &st.records[n];
                schedule::Clock {
                    next_check: r.next_check,
                    in_flight: r.check_in_flight,
                    monitored: monitored.contains(n),
                }
            })
            .collect();
        let live = st
            .sessions
            .values()
            .any(|s| s.info.state == SessionState::Live);
        let plan = schedule::plan(
            now,
            self.config.health_check_interval,
            &clocks,
            live,
            st.next_refresh,
            self.config.provider_refresh_interval,
        );
        for (name, next) in names.iter().zip(&plan.next_checks) {
            if let Some(r) = st.records.get_mut(name) {
                r.next_check = *next;
            }
        }
        let due: Vec<String> = plan.due.iter().map(|&i| names[i].clone()).collect();
        for name in &due {
            if let Some(r) = st.records.get_mut(name) {
                r.check_in_flight = true;
            }
        }
        st.next_refresh = plan.next_refresh;
        (due, plan.refresh, plan.wake_at)
    }

    /// One health check of `provider`: the registry's verdict and the adapter's probe, in
    /// parallel. Any "unhealthy" fails the check; silence from both changes nothing.
    pub(super) async fn check(self: Arc<Self>, provider: String) {
        let started = Instant::now();
        let verdicts = self.verdicts(&provider).await;
        let now = Instant::now();
        let bad: Vec<&str> = verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Bad(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        let good = verdicts.iter().any(|v| matches!(v, Verdict::Good));
        let mut st = self.state();
        let rec = st.record(&provider);
        rec.check_in_flight = false;
        let change = if !bad.is_empty() {
            rec.checks += 1;
            rec.failed_checks += 1;
            rec.last_check_at = Some(now);
            Some((rec.health.on_failure(now, &self.policy), bad.join("; ")))
        } else if good {
            rec.checks += 1;
            rec.last_check_at = Some(now);
            rec.check_latency.add(now - started);
            let change = rec.health.on_success(now, &self.policy);
            Some((change, "check passed".to_string()))
        } else {
            None
        };
        let delay = rec.health.next_check_delay(&self.policy);
        if rec.next_check.is_some() {
            rec.next_check = Some(now + delay);
        }
        debug!(provider, good, bad = ?bad, ?delay, "health check");
        if let Some((change, detail)) = change {
            let reason = if change.confirmed_report {
                FailoverReason::ErrorReported
            } else {
                FailoverReason::HealthCheckFailed
            };
            let jobs = self.apply_change(&mut st, &provider, change, reason, &detail, now);
            self.start_migrations(&mut st, jobs);
            if self.config.failback {
                let jobs = self.failback_jobs(&st, now);
                self.start_migrations(&mut st, jobs);
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The registry's verdict and the adapter's probe, asked in parallel. A registry outage
    /// or an unsupported probe says nothing (`Unknown`), never "unhealthy".
    async fn verdicts(&self, provider: &str) -> Vec<Verdict> {
        let slot = self.state().adapters.get(provider).cloned();
        let registry = async {
            let p = provider.to_string();
            self.registry_call(|r| async move { r.health(&p).await })
                .await
        };
        let probe = async {
            match &slot {
                Some(slot) => Some(
                    self.call_adapter(
                        "probe",
                        slot.adapter.clone(),
                        |a: Arc<dyn ProviderAdapter>| async move { a.probe().await },
                    )
                    .await,
                ),
                None => None,
            }
        };
        let (reg, probe) = tokio::join!(registry, probe);
        let mut verdicts = Vec::new();
        verdicts.push(match reg {
            Ok(h) if h.healthy => Verdict::Good,
            Ok(h) => Verdict::Bad(format!("registry reports {:?}", h.status)),
            Err(BackendError::UnknownProvider(p)) => {
                Verdict::Bad(format!("registry does not know {p:?}"))
            }
            Err(e) => {
                self.emit(EventKind::BackendError {
                    error: format!("health of {provider}: {e}"),
                });
                Verdict::Unknown
            }
        });
        match probe {
            Some(Ok(())) => verdicts.push(Verdict::Good),
            Some(Err(e)) if e.kind == ProviderErrorKind::NotSupported => {
                verdicts.push(Verdict::Unknown)
            }
            Some(Err(e)) => verdicts.push(Verdict::Bad(format!("probe: {e}"))),
            None => {}
        }
        verdicts
    }

    /// With failback on: sessions not on the best provider move back once that provider has
    /// been healthy for `failback_stability`.
    pub(super) fn failback_jobs(&self, st: &State, now: Instant) -> Vec<MigrationJob> {
        let best = st.ranked(now, &HashSet::new(), false).into_iter().next();
        let ready = best.as_ref().is_some_and(|b| {
            let stable = st
                .records
                .get(b)
                .and_then(|r| r.health.stable_for(now))
                .is_some_and(|d| d >= self.config.failback_stability);
            stable && !st.is_cooling(b, now)
        });
        st.jobs(planning::failback(
            &st.providers,
            best.as_deref(),
            ready,
            &st.placed(),
        ))
    }
}
