//! Review findings (races in placement): each test failed before its fix.

mod common;

use async_trait::async_trait;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use streamguard::ProviderErrorKind::Unauthorized;
use streamguard::{
    BackendError, EventKind, Placement, ProviderError, ProviderList, ProviderRegistry,
    RegistryHealth, SessionState, StreamguardError, StreamingProviderManager,
};

/// A viewer is following its publisher (a slow join on the new provider) when the publisher
/// moves again: the viewer must end up where the publisher is now, not where it was.
#[tokio::test(start_paused = true)]
async fn a_viewer_follows_a_placement_change_seen_while_it_was_moving() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "zegocloud", 1);
    let (m, w) = wrapped(&b, b.config());
    w.push_on.store(true, Ordering::SeqCst);
    let t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    let mut rx = m.subscribe();
    t.webrtc.script_connect(vec![Step::Delay(secs(5))]);
    b.ctl.set_placement("S", "webrtc", 2);
    w.push(placed("S", "webrtc", 2));
    wait_for(&mut rx, secs(2), |e| {
        matches!(e, EventKind::MigrationStarted { .. })
    })
    .await;
    // The publisher moves again while the viewer's join on webrtc is still running.
    tokio::time::sleep(secs(1)).await;
    b.ctl.set_placement("S", "agora", 3);
    w.push(placed("S", "agora", 3));
    wait_for(&mut rx, secs(10), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    // Plenty of time to follow (push, and polling every 30 s).
    tokio::time::sleep(secs(70)).await;
    let s = m.session("S").unwrap();
    assert_eq!(
        (s.state, s.provider.as_deref()),
        (SessionState::Live, Some("agora")),
        "the viewer stays where the publisher no longer is"
    );
    assert!(t.agora.is_carrying("S"));
    m.shutdown().await.unwrap();
}

/// A publisher whose first claim failed retries it with the keep-alive round; a move that
/// claims the new provider meanwhile must not be overtaken by that retry (the placement would
/// send viewers back to the provider the publisher left).
#[tokio::test(start_paused = true)]
async fn a_claim_retry_never_overtakes_a_move() {
    let b = Backend::with_placement(SEED_LIST);
    let (m, w) = wrapped(&b, b.config());
    let t = Trio::register(&m, false);
    w.claims_fail.store(true, Ordering::SeqCst);
    m.start_stream("S").await.unwrap();
    assert_eq!(b.ctl.placement_of("S"), None, "the first claim failed");
    w.claims_fail.store(false, Ordering::SeqCst);
    *w.slow_claims.lock().unwrap() = Some(("agora".into(), secs(3)));
    let asked = w.claim_count.load(Ordering::SeqCst);
    // The keep-alive round (every 30 s) retries the claim of agora...
    while w.claim_count.load(Ordering::SeqCst) == asked {
        tokio::time::sleep(ms(100)).await;
    }
    // ... and while it is on its way the publisher's provider fails: it moves to zegocloud.
    let mut rx = m.subscribe();
    m.record_error("S", ProviderError::new(Unauthorized, "revoked"))
        .unwrap();
    wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    tokio::time::sleep(secs(10)).await;
    assert_eq!(
        m.session("S").unwrap().provider.as_deref(),
        Some("zegocloud")
    );
    assert!(!t.agora.is_carrying("S"));
    let p = b.ctl.placement_of("S").map(|(p, _, live)| (p, live));
    assert_eq!(
        p,
        Some(("zegocloud".into(), true)),
        "the placement points where the publisher is"
    );
    m.shutdown().await.unwrap();
}

/// A claim retry still on its way when the stream ends must not leave a live placement (a
/// viewer would join a stream nobody publishes; another client could not take the id).
#[tokio::test(start_paused = true)]
async fn a_claim_retry_never_outlives_the_stream() {
    let b = Backend::with_placement(SEED_LIST);
    let (m, w) = wrapped(&b, b.config());
    let _t = Trio::register(&m, false);
    w.claims_fail.store(true, Ordering::SeqCst);
    m.start_stream("S").await.unwrap();
    w.claims_fail.store(false, Ordering::SeqCst);
    *w.slow_claims.lock().unwrap() = Some(("agora".into(), secs(3)));
    let asked = w.claim_count.load(Ordering::SeqCst);
    while w.claim_count.load(Ordering::SeqCst) == asked {
        tokio::time::sleep(ms(100)).await;
    }
    let t0 = tokio::time::Instant::now();
    m.end_stream("S").await.unwrap();
    assert!(
        t0.elapsed() < secs(1),
        "end_stream waited {:?}",
        t0.elapsed()
    );
    tokio::time::sleep(secs(10)).await;
    let live = b.ctl.placement_of("S").is_some_and(|(_, _, live)| live);
    assert!(
        !live,
        "the ended stream is still placed: {:?}",
        b.ctl.placement_of("S")
    );
    m.shutdown().await.unwrap();
}

/// `end_stream` while the publisher's placement claim is on its way: the start must not go
/// live (nor return `Ok`), and nothing may be left running or placed.
#[tokio::test(start_paused = true)]
async fn end_during_the_claim_never_goes_live() {
    let b = Backend::with_placement(SEED_LIST);
    let (m, w) = wrapped(&b, b.config());
    let t = Trio::register(&m, false);
    *w.slow_claims.lock().unwrap() = Some(("agora".into(), secs(3)));
    let mut rx = m.subscribe();
    let start = {
        let m = m.clone();
        tokio::spawn(async move { m.start_stream("S").await })
    };
    tokio::time::sleep(secs(1)).await;
    assert_eq!(m.session("S").unwrap().state, SessionState::Connecting);
    m.end_stream("S").await.unwrap();
    let r = start.await.unwrap();
    assert!(
        matches!(r, Err(StreamguardError::Cancelled(_))),
        "an ended start returned {r:?}"
    );
    let went_live = drain(&mut rx).iter().any(|e| {
        matches!(
            &e.kind,
            EventKind::SessionStateChanged {
                to: SessionState::Live,
                ..
            }
        )
    });
    assert!(!went_live, "the ended session went live");
    tokio::time::sleep(secs(10)).await;
    assert!(!t.agora.is_carrying("S"));
    let live = b.ctl.placement_of("S").is_some_and(|(_, _, live)| live);
    assert!(!live, "{:?}", b.ctl.placement_of("S"));
    m.shutdown().await.unwrap();
}

/// The release of an ended session's claim runs in the background; a restart of the same
/// stream id that claims first must not be released by it (the placement would say the
/// stream is not live while the new session publishes it).
#[tokio::test(start_paused = true)]
async fn an_ended_sessions_release_never_ends_the_restarted_claim() {
    let b = Backend::with_placement(SEED_LIST);
    let (m, w) = wrapped(&b, b.config());
    let t = Trio::register(&m, false);
    m.start_stream("S").await.unwrap();
    assert_eq!(b.ctl.placement_of("S"), Some(("agora".into(), 1, true)));
    *w.slow_release.lock().unwrap() = secs(2);
    m.end_stream("S").await.unwrap();
    m.start_stream("S").await.unwrap();
    tokio::time::sleep(secs(5)).await;
    assert!(t.agora.is_carrying("S"));
    let p = b.ctl.placement_of("S");
    assert!(
        p.as_ref()
            .is_some_and(|(_, epoch, live)| *live && *epoch == 2),
        "the restarted stream is placed: {p:?}"
    );
    m.shutdown().await.unwrap();
}

/// `end_stream` during a capacity wait whose periodic list re-read hangs: accepted at once,
/// not after the read's `request_timeout`.
#[tokio::test(start_paused = true)]
async fn end_during_a_capacity_waits_list_reread_is_prompt() {
    let b = Backend::start(SEED_LIST);
    b.ctl.set_raw_providers(vec![
        serde_json::json!({"name": "agora", "isActive": true, "priority": 1, "config": {}, "maxStreams": 1, "activeStreams": 1}),
    ]);
    let mut cfg = b.config();
    cfg.wait_for_capacity = true;
    let (m, faulty) = b.faulty_manager(cfg);
    let _t = Trio::register(&m, false);
    let start = {
        let m = m.clone();
        tokio::spawn(async move { m.start_stream("S").await })
    };
    tokio::time::sleep(secs(1)).await;
    assert_eq!(m.session("S").unwrap().state, SessionState::Connecting);
    faulty.list_hang.store(true, Ordering::SeqCst);
    // The wait re-reads the list every provider_refresh_interval (30 s); that read hangs.
    let reads = faulty.list_reads();
    while faulty.list_reads() == reads {
        tokio::time::sleep(ms(100)).await;
    }
    tokio::time::sleep(secs(1)).await;
    let t0 = tokio::time::Instant::now();
    m.end_stream("S").await.unwrap();
    assert!(t0.elapsed() < secs(1), "end_stream took {:?}", t0.elapsed());
    let r = start.await.unwrap();
    assert!(matches!(r, Err(StreamguardError::Cancelled(_))), "{r:?}");
    m.shutdown().await.unwrap();
}

/// A ledger that answers after a millisecond, like a shared one (Redis) does.
struct SlowLedger(streamguard::capacity::InMemoryLedger);

#[async_trait]
impl streamguard::capacity::SlotLedger for SlowLedger {
    async fn try_acquire(
        &self,
        request: &streamguard::capacity::SlotRequest,
    ) -> Result<streamguard::capacity::Grant, streamguard::capacity::CapacityError> {
        tokio::time::sleep(ms(1)).await;
        self.0.try_acquire(request).await
    }
    async fn acquire(
        &self,
        request: &streamguard::capacity::SlotRequest,
        max_wait: Duration,
    ) -> Result<streamguard::capacity::Lease, streamguard::capacity::CapacityError> {
        tokio::time::sleep(ms(1)).await;
        self.0.acquire(request, max_wait).await
    }
    async fn release(
        &self,
        lease: &streamguard::capacity::Lease,
    ) -> Result<bool, streamguard::capacity::CapacityError> {
        tokio::time::sleep(ms(1)).await;
        self.0.release(lease).await
    }
    async fn renew(
        &self,
        lease: &streamguard::capacity::Lease,
    ) -> Result<(), streamguard::capacity::CapacityError> {
        self.0.renew(lease).await
    }
    async fn usage(
        &self,
        account: &str,
    ) -> Result<streamguard::capacity::Usage, streamguard::capacity::CapacityError> {
        self.0.usage(account).await
    }
    fn global_limit(&self) -> Option<u32> {
        self.0.global_limit()
    }
}

/// Half-open: one trial at a time also when the ledger takes a moment to answer (concurrent
/// starts all chose the half-open provider before the first of them counted its trial).
#[tokio::test(start_paused = true)]
async fn a_half_open_provider_gets_one_trial_with_a_shared_ledger() {
    use streamguard::ProviderErrorKind::Network;
    let b = Backend::start(SEED_LIST);
    let cfg = b.config();
    let registry = b.registry(&cfg);
    let m = StreamingProviderManager::builder(cfg)
        .registry(registry)
        .capacity(Arc::new(SlowLedger(
            streamguard::capacity::InMemoryLedger::new(None),
        )))
        .jitter(Box::new(FixedJitter(0.5)))
        .build()
        .unwrap();
    let t = Trio::register(&m, false);
    t.agora
        .script_connect(vec![Step::Fail(Network), Step::Fail(Network)]);
    assert_eq!(
        m.start_stream("s0").await.unwrap().provider.as_deref(),
        Some("zegocloud")
    );
    tokio::time::sleep(secs(31)).await; // agora's 30 s cool-down ran out
    t.agora.script_connect(vec![Step::Hang; 5]);
    let mut ops = Vec::new();
    for i in 1..=5 {
        let m2 = m.clone();
        ops.push(tokio::spawn(async move {
            m2.start_stream(&format!("s{i}")).await.unwrap()
        }));
    }
    for op in ops {
        op.await.unwrap();
    }
    assert_eq!(t.agora.connects(), 3, "one trial, not one per start");
    m.shutdown().await.unwrap();
}

/// A custom registry whose list call panics once: the engine keeps reading the list
/// afterwards (the panic is an error of that one read, like an adapter's panic).
#[tokio::test(start_paused = true)]
async fn a_list_read_that_panics_does_not_stop_list_reads_for_good() {
    struct Panicky {
        inner: Arc<dyn ProviderRegistry>,
        panic: AtomicBool,
    }
    #[async_trait]
    impl ProviderRegistry for Panicky {
        async fn providers(&self, etag: Option<&str>) -> Result<ProviderList, BackendError> {
            if self.panic.swap(false, Ordering::SeqCst) {
                panic!("registry bug");
            }
            self.inner.providers(etag).await
        }
        async fn health(&self, provider: &str) -> Result<RegistryHealth, BackendError> {
            self.inner.health(provider).await
        }
    }
    let b = Backend::start(SEED_LIST);
    let cfg = b.config();
    let reg = Arc::new(Panicky {
        inner: b.registry(&cfg),
        panic: AtomicBool::new(false),
    });
    let m = StreamingProviderManager::builder(cfg)
        .registry(reg.clone())
        .jitter(Box::new(FixedJitter(0.5)))
        .build()
        .unwrap();
    let _t = Trio::register(&m, false);
    assert_eq!(m.refresh_providers().await.unwrap().len(), 3);
    reg.panic.store(true, Ordering::SeqCst);
    assert!(m.refresh_providers().await.is_err());
    b.ctl
        .set_providers(&[("agora", true, 1), ("zegocloud", true, 2)]);
    let r = m.refresh_providers().await;
    assert_eq!(
        r.map(|l| l.len()).ok(),
        Some(2),
        "list reads stopped for good"
    );
    m.shutdown().await.unwrap();
}

/// A publisher whose move finds no provider fails; its claim must not stay live (viewers
/// would wait on a stream nobody publishes, another client could not take the id until the
/// claim expires).
#[tokio::test(start_paused = true)]
async fn a_publisher_that_fails_to_move_releases_its_claim() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.start_stream("S").await.unwrap();
    assert_eq!(b.ctl.placement_of("S"), Some(("agora".into(), 1, true)));
    t.zego.set_down(true);
    t.webrtc.set_down(true);
    let mut rx = m.subscribe();
    m.record_error("S", ProviderError::new(Unauthorized, "revoked"))
        .unwrap();
    wait_for(&mut rx, secs(60), |e| {
        matches!(e, EventKind::MigrationFailed { .. })
    })
    .await;
    assert_eq!(m.session("S").unwrap().state, SessionState::Failed);
    tokio::time::sleep(secs(5)).await;
    let p = b.ctl.placement_of("S");
    assert!(
        p.as_ref().is_some_and(|(_, _, live)| !live),
        "the failed publisher's claim is still live: {p:?}"
    );
    m.shutdown().await.unwrap();
}

/// A list change that makes another provider preferred is no failure for a viewer that must
/// stay with its publisher: no `MigrationFailed`, no "failed" error on the session.
#[tokio::test(start_paused = true)]
async fn a_preference_change_is_no_failure_for_a_viewer() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "zegocloud", 1);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    let mut rx = m.subscribe();
    b.ctl.set_providers(&[
        ("agora", true, 1),
        ("zegocloud", true, 2),
        ("webrtc", true, 0),
    ]);
    m.refresh_providers().await.unwrap();
    tokio::time::sleep(secs(1)).await;
    let failed: Vec<_> = drain(&mut rx)
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::MigrationFailed { .. }))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let s = m.session("S").unwrap();
    assert_eq!(
        (s.state, s.provider.as_deref(), s.last_error.as_deref()),
        (SessionState::Live, Some("zegocloud"), None)
    );
    assert!(t.zego.is_carrying("S"));
    m.shutdown().await.unwrap();
}

/// The publisher stopped (its release keeps the epoch, `live` false): a viewer whose own
/// provider then fails goes nowhere, not to a standby of the stopped stream.
#[tokio::test(start_paused = true)]
async fn a_viewer_learns_that_its_publisher_stopped() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "zegocloud", 1);
    let (m, w) = wrapped(&b, b.config());
    w.push_on.store(true, Ordering::SeqCst);
    let t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    tokio::time::sleep(ms(100)).await;
    let mut with_standby = placed("S", "zegocloud", 2);
    with_standby.standby = vec!["webrtc".into()];
    w.push(with_standby.clone());
    tokio::time::sleep(ms(100)).await;
    // The publisher ends: the registry publishes the same epoch, not live.
    let stopped = Placement {
        live: false,
        ..with_standby
    };
    w.push(stopped);
    tokio::time::sleep(ms(100)).await;
    let mut rx = m.subscribe();
    m.record_error("S", ProviderError::new(Unauthorized, "viewer-side failure"))
        .unwrap();
    wait_for(&mut rx, secs(5), |e| {
        matches!(
            e,
            EventKind::MigrationFailed { .. } | EventKind::MigrationFinished { .. }
        )
    })
    .await;
    assert_eq!(
        t.webrtc.connects(),
        0,
        "joined a standby of a stopped stream"
    );
    m.shutdown().await.unwrap();
}

/// The same kind as a panicking list read, for every other registry call: a custom registry
/// whose health check, session report and push channel panic (once each) fails that call only;
/// checks, reports and the push channel go on (they used to stop for good: the check flag stayed
/// set, the reporter and the push loop died with the panic).
#[tokio::test(start_paused = true)]
async fn registry_calls_that_panic_fail_that_call_only() {
    struct Panicky {
        inner: Arc<dyn ProviderRegistry>,
        health: AtomicBool,
        report: AtomicBool,
        follow: AtomicBool,
        follows: AtomicU64,
        reports: AtomicU64,
        checks: AtomicU64,
    }
    #[async_trait]
    impl ProviderRegistry for Panicky {
        async fn providers(&self, etag: Option<&str>) -> Result<ProviderList, BackendError> {
            self.inner.providers(etag).await
        }
        async fn health(&self, provider: &str) -> Result<RegistryHealth, BackendError> {
            self.checks.fetch_add(1, Ordering::SeqCst);
            if self.health.swap(false, Ordering::SeqCst) {
                panic!("registry bug in health");
            }
            self.inner.health(provider).await
        }
        async fn report(&self, _report: &streamguard::SessionReport) -> Result<(), BackendError> {
            self.reports.fetch_add(1, Ordering::SeqCst);
            if self.report.swap(false, Ordering::SeqCst) {
                panic!("registry bug in report");
            }
            Ok(())
        }
        async fn follow(
            &self,
            _on_event: &(dyn Fn(streamguard::PushEvent) + Send + Sync),
        ) -> Result<(), BackendError> {
            self.follows.fetch_add(1, Ordering::SeqCst);
            if self.follow.swap(false, Ordering::SeqCst) {
                panic!("registry bug in follow");
            }
            std::future::pending().await
        }
    }
    let b = Backend::start(SEED_LIST);
    let mut cfg = b.config();
    cfg.report_sessions = true;
    let reg = Arc::new(Panicky {
        inner: b.registry(&cfg),
        health: AtomicBool::new(true),
        report: AtomicBool::new(true),
        follow: AtomicBool::new(true),
        follows: AtomicU64::new(0),
        reports: AtomicU64::new(0),
        checks: AtomicU64::new(0),
    });
    let m = StreamingProviderManager::builder(cfg)
        .registry(reg.clone())
        .jitter(Box::new(FixedJitter(0.5)))
        .build()
        .unwrap();
    let _t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap(); // its report panics
    m.start_stream("s2").await.unwrap();
    // Checks every 30 s: the first one panics, the next ones still run.
    tokio::time::sleep(Duration::from_secs(95)).await;
    assert!(
        reg.checks.load(Ordering::SeqCst) >= 3,
        "checks stopped after the panic"
    );
    assert!(
        reg.reports.load(Ordering::SeqCst) >= 2,
        "reports stopped after the panic"
    );
    assert!(
        reg.follows.load(Ordering::SeqCst) >= 2,
        "the push channel was not reconnected after the panic"
    );
    assert_eq!(
        m.session("s1").unwrap().state,
        streamguard::SessionState::Live
    );
    m.shutdown().await.unwrap();
    assert_eq!(m.task_count(), 0);
}
