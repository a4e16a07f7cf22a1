//! Session telemetry: start/end/failover reports and keep-alives, from a bounded queue that
//! never delays the engine.

use super::*;

impl Shared {
    /// Queue a session report (no-op unless `report_sessions`). Never blocks: a full queue
    /// drops the report.
    pub(super) fn report(
        &self,
        kind: ReportKind,
        provider: &str,
        stream_id: &str,
        to: Option<&str>,
        reason: Option<FailoverReason>,
    ) {
        let Some(tx) = &self.reports else { return };
        let report = SessionReport {
            kind,
            provider: provider.to_string(),
            stream_id: stream_id.to_string(),
            to_provider: to.map(str::to_string),
            reason: reason.map(|r| format!("{r:?}")),
            client_id: Some(self.client_id.clone()),
        };
        if tx.try_send(report).is_err() {
            debug!(stream_id, "session report dropped: queue full");
        }
    }

    /// Sends queued reports in order and, every `provider_refresh_interval` while sessions
    /// run, a keep-alive listing them, so the registry keeps counting this instance's streams
    /// and expires them if it dies without reporting their ends.
    pub(super) async fn reporter(
        self: Arc<Self>,
        mut rx: tokio::sync::mpsc::Receiver<SessionReport>,
    ) {
        let every = self.config.provider_refresh_interval;
        let mut next_alive = Instant::now() + every;
        loop {
            let report = tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => return,
                },
                _ = tokio::time::sleep_until(next_alive) => {
                    next_alive = Instant::now() + every;
                    self.send_alive(false).await;
                    continue;
                }
                _ = self.telemetry_done.cancelled() => {
                    // Shutdown queued the final "end" reports: send them, then stop.
                    while let Ok(r) = rx.try_recv() {
                        self.send_report(r).await;
                    }
                    return;
                }
            };
            self.send_report(report).await;
        }
    }

    /// Confirm live sessions to the registry, viewers with their player state (`placement_only`:
    /// just the sessions that take part in placement, the publishers' claims and the viewers
    /// that follow a placement, for an engine without session telemetry). Nothing is sent when
    /// there is nothing to confirm.
    pub(super) async fn send_alive(&self, placement_only: bool) {
        let live: Vec<LiveSession> = {
            let st = self.state();
            st.sessions
                .values()
                .filter(|s| matches!(s.info.state, SessionState::Live | SessionState::Migrating))
                .filter(|s| !placement_only || s.epoch > 0 || s.placement.is_some())
                .filter_map(|s| {
                    let viewer = s.info.role == Role::Viewer;
                    Some(LiveSession {
                        provider: s.info.provider.clone()?,
                        stream_id: s.info.stream_id.clone(),
                        role: viewer.then_some("viewer"),
                        audience: viewer.then(|| {
                            s.quality
                                .as_ref()
                                .and_then(|q| q.audience)
                                .unwrap_or(AudienceState::Ok)
                        }),
                    })
                })
                .collect()
        };
        for batch in live.chunks(ALIVE_BATCH) {
            let (client, batch) = (self.client_id.clone(), batch.to_vec());
            let sent = self
                .registry_call(|r| async move { r.alive(&client, &batch).await })
                .await;
            match sent {
                Ok(()) => debug!("sessions confirmed to the registry"),
                // An older registry without keep-alives: nothing to do about it.
                Err(BackendError::Status(404)) => {
                    debug!("registry has no keep-alive route");
                    return;
                }
                Err(e) => warn!(error = %e, "session keep-alive failed"),
            }
        }
    }

    pub(super) async fn send_report(&self, report: SessionReport) {
        let kind = report.kind;
        let sent = self
            .registry_call(|r| async move { r.report(&report).await })
            .await;
        match sent {
            Ok(()) => debug!(?kind, "session reported"),
            Err(e) => warn!(error = %e, ?kind, "session report failed"),
        }
    }
}
