//! The registry's push channel (SSE), followed while sessions are live, with jittered
//! reconnects that `network_changed()` cuts short.

use super::*;

impl Shared {
    pub(super) fn any_live(&self) -> bool {
        self.state().sessions.values().any(|s| {
            s.awaiting_live || matches!(s.info.state, SessionState::Live | SessionState::Migrating)
        })
    }

    /// Follow the registry's push channel while any session is live (an idle app holds no
    /// connection open), reconnecting with jittered backoff. Polling goes on regardless, so a
    /// registry without push, or a broken channel, only costs latency.
    pub(super) async fn push_loop(self: Arc<Self>) {
        let mut failures: u32 = 0;
        let mut retry_rx = self.retry_now.subscribe();
        loop {
            while !self.any_live() {
                tokio::select! {
                    _ = self.push_wake.notified() => {}
                    _ = self.cancel.cancelled() => return,
                }
            }
            let me = self.clone();
            let on_event = move |ev: PushEvent| me.on_push(ev);
            // Placement changes come only for the streams asked for: reconnect when the set of
            // watched streams changes.
            let streams = self.viewed_streams();
            let idle = async {
                loop {
                    self.push_wake.notified().await;
                    if !self.any_live() || self.viewed_streams() != streams {
                        break;
                    }
                }
            };
            // On a task of its own: a registry whose push channel panics fails this connection
            // only (reconnected with backoff), not the push loop.
            let mut follow = {
                let (registry, streams) = (self.registry.clone(), streams.clone());
                self.tracker
                    .spawn(async move { registry.follow_streams(&streams, &on_event).await })
            };
            let outcome = tokio::select! {
                r = &mut follow => Some(r.unwrap_or_else(|e| {
                    Err(BackendError::Network(format!("push channel failed: {}", panic_message(e))))
                })),
                _ = idle => None,
                _ = self.cancel.cancelled() => {
                    follow.abort();
                    return;
                }
            };
            follow.abort();
            let delay = match outcome {
                None => continue,
                Some(Err(BackendError::PushUnsupported)) => {
                    debug!("registry has no push channel; polling only");
                    // The registry may be upgraded while we run: ask again now and then.
                    Duration::from_secs(300)
                }
                Some(Ok(())) => {
                    failures = 0;
                    Duration::from_secs(1)
                }
                Some(Err(e)) => {
                    failures = failures.saturating_add(1);
                    debug!(error = %e, failures, "push channel failed; polling meanwhile");
                    let unit = self
                        .jitter
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .next_unit();
                    Backoff {
                        base: Duration::from_secs(1),
                        cap: Duration::from_secs(30),
                    }
                    .delay(failures, unit)
                }
            };
            // Like every backoff wait in the engine, this one ends on `network_changed()`
            // (the loop then connects once).
            retry_rx.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = retry_rx.changed() => debug!("network changed: reconnecting the push channel now"),
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    pub(super) fn on_push(self: &Arc<Self>, ev: PushEvent) {
        debug!(?ev, "push");
        match ev {
            PushEvent::ProvidersChanged => {
                let me = self.clone();
                self.tracker.spawn(async move {
                    let _ = me.refresh(true).await;
                });
            }
            PushEvent::HealthChanged {
                provider,
                healthy: false,
            } => {
                // Check our own view now instead of at the next interval.
                let now = Instant::now();
                let mut st = self.state();
                if let Some(rec) = st.records.get_mut(&provider) {
                    if rec.next_check.is_some() {
                        rec.next_check = Some(now);
                    }
                }
                drop(st);
                self.wake.notify_one();
            }
            PushEvent::HealthChanged { .. } => {}
            PushEvent::Placement(p) => self.placement_seen(p),
            PushEvent::Audience(v) => self.audience_seen(v),
        }
    }
}
