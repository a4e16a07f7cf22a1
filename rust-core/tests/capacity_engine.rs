//! Capacity-aware provider selection in the manager, on paused time against the real loopback
//! registry: `max_streams` per provider and a global limit enforced through a slot ledger,
//! phase 1 (free providers in priority order) and phase 2 (wait for the first slot to free up,
//! first come first served, bounded), leases kept across retries, given back on failover, end,
//! migration and shutdown, shared between managers, and failing closed when the ledger cannot
//! be asked or a lease is lost.

mod common;

use async_trait::async_trait;
use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use streamguard::capacity::{
    CapacityError, Grant, InMemoryLedger, Lease, SlotLedger, SlotRequest, Usage,
};
use streamguard::ProviderErrorKind::Unavailable;
use streamguard::{
    EventKind, FailoverReason, ManagerConfig, MigrationStrategy, SessionState, StreamguardError,
    StreamingProviderManager,
};
use tokio::time::Instant;

/// The seed trio with a `maxStreams` each (0 = unlimited) and `activeStreams` as the registry
/// reports them.
fn limited(limits: &[(&str, u32, u32, u32)]) -> Vec<Value> {
    limits
        .iter()
        .map(|(n, prio, max, active)| {
            json!({"name": n, "isActive": true, "priority": prio, "maxStreams": max,
                   "activeStreams": active, "config": {"appId": format!("{n}-app")}})
        })
        .collect()
}

fn one_slot_each() -> Vec<Value> {
    limited(&[
        ("agora", 1, 1, 0),
        ("zegocloud", 2, 1, 0),
        ("webrtc", 3, 1, 0),
    ])
}

fn backend(list: Vec<Value>) -> Backend {
    let b = Backend::start(SEED_LIST);
    b.ctl.set_raw_providers(list);
    b
}

fn manager_on(
    b: &Backend,
    cfg: ManagerConfig,
    ledger: Arc<dyn SlotLedger>,
) -> StreamingProviderManager {
    StreamingProviderManager::builder(cfg.clone())
        .registry(b.registry(&cfg))
        .jitter(Box::new(FixedJitter(0.5)))
        .capacity(ledger)
        .build()
        .unwrap()
}

/// The seed trio with one slot each, on a ledger the test can inspect. `tune` adjusts the
/// config first.
fn on_own_ledger(
    tune: impl FnOnce(&mut ManagerConfig),
    parallel: bool,
) -> (Backend, InMemoryLedger, StreamingProviderManager, Trio) {
    let b = backend(one_slot_each());
    let ledger = InMemoryLedger::new(None);
    let mut cfg = b.config();
    tune(&mut cfg);
    let m = manager_on(&b, cfg, Arc::new(ledger.clone()));
    let t = Trio::register(&m, parallel);
    (b, ledger, m, t)
}

fn waiting() -> impl Fn(&EventKind) -> bool {
    |e| matches!(e, EventKind::WaitingForCapacity { .. })
}

async fn usage(l: &InMemoryLedger, account: &str) -> Usage {
    l.usage(account).await.unwrap()
}

// ----- phase 1 -------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn full_provider_is_skipped_in_priority_order_and_taken_again_when_free() {
    let b = backend(one_slot_each());
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    let s1 = m.start_stream("s1").await.unwrap();
    let s2 = m.start_stream("s2").await.unwrap();
    let s3 = m.join_stream("s3").await.unwrap();
    assert_eq!(
        [s1.provider, s2.provider, s3.provider].map(|p| p.unwrap()),
        ["agora", "zegocloud", "webrtc"]
    );
    // Every provider was asked once: a full one is skipped without an attempt.
    assert_eq!(
        [t.agora.connects(), t.zego.connects(), t.webrtc.connects()],
        [1, 1, 1]
    );
    m.end_stream("s1").await.unwrap();
    let s4 = m.start_stream("s4").await.unwrap();
    assert_eq!(s4.provider.as_deref(), Some("agora"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn all_full_fails_at_once_with_no_capacity_when_waiting_is_off() {
    let b = backend(one_slot_each());
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    for s in ["s1", "s2", "s3"] {
        m.start_stream(s).await.unwrap();
    }
    let before = Instant::now();
    let err = m.start_stream("s4").await.unwrap_err();
    let StreamguardError::NoCapacity {
        providers,
        waited,
        attempts,
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(providers, &["agora", "zegocloud", "webrtc"]);
    assert_eq!((*waited, attempts.len()), (Duration::ZERO, 0));
    assert_eq!(before.elapsed(), Duration::ZERO);
    assert!(err.to_string().contains("no free stream slot"), "{err}");
    let calls: u64 = t.all().iter().map(|a| a.connects()).sum();
    assert_eq!(calls, 3, "no adapter was called for s4");
    assert_eq!(m.session("s4").unwrap().state, SessionState::Failed);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn global_limit_holds_across_providers() {
    let b = Backend::start(SEED_LIST);
    let mut cfg = b.config();
    cfg.max_total_streams = Some(2);
    let m = b.manager(cfg);
    Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    m.start_stream("s2").await.unwrap();
    let err = m.start_stream("s3").await.unwrap_err();
    assert!(
        matches!(err, StreamguardError::NoCapacity { .. }),
        "{err:?}"
    );
    m.end_stream("s1").await.unwrap();
    m.start_stream("s3").await.unwrap();
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn max_total_streams_with_a_custom_ledger_is_rejected() {
    let b = Backend::start(SEED_LIST);
    let mut cfg = b.config();
    cfg.max_total_streams = Some(5);
    let err = StreamingProviderManager::builder(cfg)
        .capacity(Arc::new(InMemoryLedger::new(None)))
        .build()
        .err()
        .unwrap();
    assert!(
        matches!(err, StreamguardError::InvalidConfig(ref m) if m.contains("max_total_streams")),
        "{err:?}"
    );
}

// ----- leases through retries, failover, end and shutdown ------------------------------------

#[tokio::test(start_paused = true)]
async fn the_slot_is_kept_across_retries_so_nobody_takes_it_during_backoff() {
    let (_b, ledger, m, t) = on_own_ledger(|_| {}, false);
    t.agora.script_connect(vec![Step::Fail(Unavailable)]);
    let mut rx = m.subscribe();
    let m1 = m.clone();
    let s1 = tokio::spawn(async move { m1.start_stream("s1").await });
    // s1 failed once on agora and backs off for 150 ms, still holding agora's slot.
    wait_for(&mut rx, secs(1), |e| {
        matches!(e, EventKind::AttemptFailed { .. })
    })
    .await;
    assert_eq!(usage(&ledger, "agora").await.account, 1);
    let s2 = m.start_stream("s2").await.unwrap();
    assert_eq!(s2.provider.as_deref(), Some("zegocloud"));
    let s1 = s1.await.unwrap().unwrap();
    assert_eq!(s1.provider.as_deref(), Some("agora"));
    assert_eq!(t.agora.connects(), 2);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failover_gives_the_slot_back_and_end_and_shutdown_release_the_rest() {
    let (_b, ledger, m, t) = on_own_ledger(|_| {}, false);
    t.agora
        .script_connect(vec![Step::Fail(Unavailable), Step::Fail(Unavailable)]);
    let s1 = m.start_stream("s1").await.unwrap();
    assert_eq!(s1.provider.as_deref(), Some("zegocloud"));
    assert_eq!(
        usage(&ledger, "agora").await.account,
        0,
        "agora's slot went back on failover"
    );
    assert_eq!(
        usage(&ledger, "zegocloud").await,
        Usage {
            global: 1,
            account: 1
        }
    );
    m.start_stream("s2").await.unwrap();
    assert_eq!(usage(&ledger, "x").await.global, 2);
    m.end_stream("s1").await.unwrap();
    assert_eq!(usage(&ledger, "zegocloud").await.account, 0);
    m.shutdown().await.unwrap();
    assert_eq!(
        usage(&ledger, "x").await.global,
        0,
        "shutdown released every slot"
    );
    assert_eq!(m.task_count(), 0, "no lease keeper outlives shutdown");
}

#[tokio::test(start_paused = true)]
async fn leases_are_renewed_while_a_stream_runs_longer_than_their_ttl() {
    let (_b, ledger, m, _t) = on_own_ledger(|c| c.capacity_lease_ttl = secs(3), false);
    m.start_stream("s1").await.unwrap();
    tokio::time::sleep(secs(600)).await;
    assert_eq!(usage(&ledger, "agora").await.account, 1);
    let s = m.session("s1").unwrap();
    assert_eq!(
        (s.state, s.provider.as_deref(), s.migrations),
        (SessionState::Live, Some("agora"), 0)
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn planned_make_before_break_holds_both_slots_then_frees_the_old_one() {
    let (b, ledger, m, _t) = on_own_ledger(|_| {}, true);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    // The admin makes webrtc preferred: s1 moves make-before-break.
    b.ctl.set_raw_providers(limited(&[
        ("agora", 2, 1, 0),
        ("zegocloud", 3, 1, 0),
        ("webrtc", 1, 1, 0),
    ]));
    m.refresh_providers().await.unwrap();
    let ev = wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    assert!(
        matches!(&ev.kind, EventKind::MigrationFinished { to, strategy: MigrationStrategy::MakeBeforeBreak, .. } if to == "webrtc"),
        "{ev:?}"
    );
    assert_eq!(usage(&ledger, "agora").await.account, 0);
    assert_eq!(
        usage(&ledger, "webrtc").await,
        Usage {
            global: 1,
            account: 1
        }
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn planned_move_to_a_full_provider_stays_where_it_is() {
    let (b, ledger, m, _t) = on_own_ledger(|_| {}, true);
    m.start_stream("s1").await.unwrap(); // agora
    m.start_stream("s2").await.unwrap(); // zegocloud
    m.start_stream("s3").await.unwrap(); // webrtc
    let mut rx = m.subscribe();
    b.ctl.set_raw_providers(limited(&[
        ("agora", 2, 1, 0),
        ("zegocloud", 3, 1, 0),
        ("webrtc", 1, 1, 0),
    ]));
    m.refresh_providers().await.unwrap();
    // s1 (agora) and s2 (zegocloud) both want to move to webrtc, which is full.
    let ev = wait_for(
        &mut rx,
        secs(5),
        |e| matches!(e, EventKind::MigrationFailed { stream_id, .. } if stream_id == "s1"),
    )
    .await;
    let EventKind::MigrationFailed {
        still_on, error, ..
    } = &ev.kind
    else {
        unreachable!()
    };
    assert_eq!(still_on.as_deref(), Some("agora"));
    assert!(error.contains("no free stream slot"), "{error}");
    let s1 = m.session("s1").unwrap();
    assert_eq!(
        (s1.state, s1.provider.as_deref()),
        (SessionState::Live, Some("agora"))
    );
    assert_eq!(usage(&ledger, "x").await.global, 3);
    m.shutdown().await.unwrap();
}

// ----- phase 2: waiting for a slot -----------------------------------------------------------

fn waiting_config(b: &Backend) -> ManagerConfig {
    let mut cfg = b.config();
    cfg.wait_for_capacity = true;
    cfg
}

#[tokio::test(start_paused = true)]
async fn a_waiting_start_takes_the_slot_the_moment_it_frees() {
    let b = backend(one_slot_each());
    let m = b.manager(waiting_config(&b));
    let t = Trio::register(&m, false);
    for s in ["s1", "s2", "s3"] {
        m.start_stream(s).await.unwrap();
    }
    let mut rx = m.subscribe();
    let m4 = m.clone();
    let s4 = tokio::spawn(async move { m4.start_stream("s4").await });
    let ev = wait_for(&mut rx, secs(1), waiting()).await;
    let EventKind::WaitingForCapacity {
        providers,
        max_wait,
        ..
    } = &ev.kind
    else {
        unreachable!()
    };
    assert_eq!(providers, &["agora", "zegocloud", "webrtc"]);
    assert_eq!(*max_wait, secs(600));
    tokio::time::sleep(secs(100)).await;
    assert_eq!(m.session("s4").unwrap().state, SessionState::Connecting);
    let freed_at = Instant::now();
    m.end_stream("s2").await.unwrap();
    let s4 = s4.await.unwrap().unwrap();
    assert_eq!(s4.provider.as_deref(), Some("zegocloud"));
    assert_eq!(
        freed_at.elapsed(),
        Duration::ZERO,
        "handed over at once, not at a poll"
    );
    assert_eq!(t.zego.connects(), 2);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served() {
    let b = backend(one_slot_each());
    let m = b.manager(waiting_config(&b));
    Trio::register(&m, false);
    for s in ["s1", "s2", "s3"] {
        m.start_stream(s).await.unwrap();
    }
    let mut rx = m.subscribe();
    let mut waiters = Vec::new();
    for id in ["w1", "w2", "w3"] {
        let mm = m.clone();
        waiters.push(tokio::spawn(async move { mm.start_stream(id).await }));
        wait_for(&mut rx, secs(1), waiting()).await;
        tokio::time::sleep(secs(1)).await;
    }
    m.end_stream("s3").await.unwrap();
    let w1 = waiters.remove(0).await.unwrap().unwrap();
    assert_eq!(
        (w1.stream_id.as_str(), w1.provider.as_deref()),
        ("w1", Some("webrtc"))
    );
    assert_eq!(m.session("w2").unwrap().state, SessionState::Connecting);
    m.end_stream("s1").await.unwrap();
    let w2 = waiters.remove(0).await.unwrap().unwrap();
    assert_eq!(w2.provider.as_deref(), Some("agora"));
    assert_eq!(m.session("w3").unwrap().state, SessionState::Connecting);
    m.end_stream("w1").await.unwrap();
    let w3 = waiters.remove(0).await.unwrap().unwrap();
    assert_eq!(w3.provider.as_deref(), Some("webrtc"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_bounded_by_capacity_max_wait_not_the_operation_deadline() {
    let b = backend(one_slot_each());
    let mut cfg = waiting_config(&b);
    cfg.capacity_max_wait = secs(120);
    let m = b.manager(cfg);
    Trio::register(&m, false);
    for s in ["s1", "s2", "s3"] {
        m.start_stream(s).await.unwrap();
    }
    let before = Instant::now();
    let err = m.start_stream("s4").await.unwrap_err();
    assert_eq!(
        before.elapsed(),
        secs(120),
        "well past the 45 s operation deadline"
    );
    assert!(
        matches!(&err, StreamguardError::NoCapacity { waited, .. } if *waited == secs(120)),
        "{err:?}"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_wait_after_failed_attempts_still_gets_its_own_deadline() {
    // agora fails twice, then the only other provider is full: wait, then connect when it frees.
    let b = backend(limited(&[("agora", 1, 0, 0), ("zegocloud", 2, 1, 0)]));
    let m = b.manager(waiting_config(&b));
    let t = Trio::register(&m, false);
    // Fill zegocloud through a first session while agora is in a cool-down.
    t.agora
        .script_connect(vec![Step::Fail(Unavailable), Step::Fail(Unavailable)]);
    let s1 = m.start_stream("s1").await.unwrap();
    assert_eq!(s1.provider.as_deref(), Some("zegocloud"));
    t.agora.set_down(true);
    let mut rx = m.subscribe();
    let m2 = m.clone();
    let s2 = tokio::spawn(async move { m2.start_stream("s2").await });
    wait_for(&mut rx, secs(60), waiting()).await;
    // Much longer than the 45 s deadline since the first attempt.
    tokio::time::sleep(secs(300)).await;
    m.end_stream("s1").await.unwrap();
    let s2 = s2.await.unwrap().unwrap();
    assert_eq!(s2.provider.as_deref(), Some("zegocloud"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn ending_a_waiting_stream_gives_up_its_place() {
    let (_b, ledger, m, _t) = on_own_ledger(|c| c.wait_for_capacity = true, false);
    for s in ["s1", "s2", "s3"] {
        m.start_stream(s).await.unwrap();
    }
    let mut rx = m.subscribe();
    let m4 = m.clone();
    let s4 = tokio::spawn(async move { m4.start_stream("s4").await });
    wait_for(&mut rx, secs(1), waiting()).await;
    assert_eq!(ledger.waiters(), 1);
    m.end_stream("s4").await.unwrap();
    let err = s4.await.unwrap().unwrap_err();
    assert!(matches!(err, StreamguardError::Cancelled(_)), "{err:?}");
    assert_eq!(ledger.waiters(), 0);
    m.end_stream("s1").await.unwrap();
    assert_eq!(
        usage(&ledger, "x").await.global,
        2,
        "nobody took the slot for s4"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_provider_the_registry_reports_full_is_taken_at_the_next_list_read() {
    // The registry counts streams of every client: agora is full there, not in our ledger.
    let b = backend(limited(&[("agora", 1, 5, 5)]));
    let mut cfg = waiting_config(&b);
    cfg.provider_refresh_interval = secs(10);
    let m = b.manager(cfg);
    Trio::register(&m, false);
    let mut rx = m.subscribe();
    let m1 = m.clone();
    let s1 = tokio::spawn(async move { m1.start_stream("s1").await });
    let ev = wait_for(&mut rx, secs(1), waiting()).await;
    let started = Instant::now();
    assert!(
        matches!(&ev.kind, EventKind::WaitingForCapacity { providers, .. } if providers == &["agora"])
    );
    tokio::time::sleep(secs(25)).await;
    assert_eq!(m.session("s1").unwrap().state, SessionState::Connecting);
    b.ctl.set_raw_providers(limited(&[("agora", 1, 5, 4)]));
    let s1 = s1.await.unwrap().unwrap();
    assert_eq!(s1.provider.as_deref(), Some("agora"));
    // Read every 10 s while waiting: the change is seen at the 30 s read.
    assert_eq!(started.elapsed(), secs(30));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn managers_sharing_a_ledger_share_the_limits() {
    let b = backend(limited(&[("agora", 1, 1, 0), ("zegocloud", 2, 0, 0)]));
    let ledger: Arc<dyn SlotLedger> = Arc::new(InMemoryLedger::new(None));
    let app1 = manager_on(&b, waiting_config(&b), ledger.clone());
    let app2 = manager_on(&b, waiting_config(&b), ledger.clone());
    Trio::register(&app1, false);
    let t2 = Trio::register(&app2, false);
    app1.start_stream("a").await.unwrap();
    // app2 never saw agora busy, but the shared ledger did.
    let s = app2.start_stream("b").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("zegocloud"));
    assert_eq!(t2.agora.connects(), 0);
    app1.end_stream("a").await.unwrap();
    let s = app2.start_stream("c").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("agora"));
    app1.shutdown().await.unwrap();
    app2.shutdown().await.unwrap();
}

// ----- failing closed ------------------------------------------------------------------------

/// An in-memory ledger whose backend can be cut off (every call `Unavailable`) or made to
/// report leases as expired.
#[derive(Clone)]
struct Flaky {
    inner: InMemoryLedger,
    down: Arc<AtomicBool>,
    expire_next_renewals: Arc<AtomicU32>,
}

impl Flaky {
    fn new() -> Self {
        Self {
            inner: InMemoryLedger::new(None),
            down: Arc::default(),
            expire_next_renewals: Arc::default(),
        }
    }
    fn check(&self) -> Result<(), CapacityError> {
        if self.down.load(Ordering::SeqCst) {
            Err(CapacityError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SlotLedger for Flaky {
    async fn try_acquire(&self, request: &SlotRequest) -> Result<Grant, CapacityError> {
        self.check()?;
        self.inner.try_acquire(request).await
    }
    async fn acquire(
        &self,
        request: &SlotRequest,
        max_wait: Duration,
    ) -> Result<Lease, CapacityError> {
        self.check()?;
        self.inner.acquire(request, max_wait).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool, CapacityError> {
        self.check()?;
        self.inner.release(lease).await
    }
    async fn renew(&self, lease: &Lease) -> Result<(), CapacityError> {
        self.check()?;
        if self
            .expire_next_renewals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            // As if the lease had expired: the slot is gone from the ledger.
            self.inner.release(lease).await?;
            return Err(CapacityError::LeaseLost {
                account: lease.account.clone(),
                lease: lease.id.clone(),
            });
        }
        self.inner.renew(lease).await
    }
    async fn usage(&self, account: &str) -> Result<Usage, CapacityError> {
        self.check()?;
        self.inner.usage(account).await
    }
    fn global_limit(&self) -> Option<u32> {
        self.inner.global_limit()
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_ledger_fails_the_start_closed_without_calling_a_provider() {
    let b = backend(one_slot_each());
    let flaky = Flaky::new();
    flaky.down.store(true, Ordering::SeqCst);
    let m = manager_on(&b, b.config(), Arc::new(flaky.clone()));
    let t = Trio::register(&m, false);
    let err = m.start_stream("s1").await.unwrap_err();
    assert!(
        matches!(&err, StreamguardError::CapacityUnavailable(m) if m.contains("connection refused")),
        "{err:?}"
    );
    // The operation is named once (it was "capacity ledger unavailable: capacity backend
    // unavailable: ...").
    assert_eq!(
        err.to_string(),
        "capacity ledger unavailable: connection refused"
    );
    assert_eq!(t.all().iter().map(|a| a.connects()).sum::<u64>(), 0);
    m.shutdown().await.unwrap();
}

/// "s1" live on agora, its lease (3 s) on a ledger the test can break.
async fn live_on_flaky_ledger(parallel: bool) -> (Backend, Flaky, StreamingProviderManager, Trio) {
    let b = backend(one_slot_each());
    let flaky = Flaky::new();
    let mut cfg = b.config();
    cfg.capacity_lease_ttl = secs(3);
    let m = manager_on(&b, cfg, Arc::new(flaky.clone()));
    let t = Trio::register(&m, parallel);
    m.start_stream("s1").await.unwrap();
    (b, flaky, m, t)
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_moves_the_stream_and_takes_a_new_slot() {
    let (_b, flaky, m, t) = live_on_flaky_ledger(true).await;
    let mut rx = m.subscribe();
    flaky.expire_next_renewals.store(1, Ordering::SeqCst);
    let ev = wait_for(&mut rx, secs(2), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    let EventKind::MigrationFinished {
        from, to, strategy, ..
    } = &ev.kind
    else {
        unreachable!()
    };
    // Break-before-make even though both sides could overlap: the old slot may be taken.
    assert_eq!(
        (from.as_str(), *strategy),
        ("agora", MigrationStrategy::BreakBeforeMake)
    );
    // The provider itself is fine, so the stream may take a fresh slot on it again.
    assert_eq!(to, "agora");
    assert_eq!(flaky.inner.usage("agora").await.unwrap().account, 1);
    assert_eq!(t.agora.leaves(), 1);
    assert!(t.agora.is_carrying("s1"));
    m.shutdown().await.unwrap();
    assert_eq!(flaky.inner.usage("agora").await.unwrap().global, 0);
}

#[tokio::test(start_paused = true)]
async fn a_ledger_outage_longer_than_the_lease_stops_the_stream() {
    let (_b, flaky, m, t) = live_on_flaky_ledger(false).await;
    let mut rx = m.subscribe();
    let cut_at = Instant::now();
    flaky.down.store(true, Ordering::SeqCst);
    let ev = wait_for(&mut rx, secs(10), |e| {
        matches!(
            e,
            EventKind::Failover {
                reason: FailoverReason::CapacityLost,
                ..
            }
        )
    })
    .await;
    // Renewals are retried while the last good one lasts (3 s), and not a moment longer.
    assert!(
        cut_at.elapsed() <= secs(3),
        "gave up after {:?}",
        cut_at.elapsed()
    );
    assert!(ev.at > Duration::ZERO);
    let ev = wait_for(&mut rx, secs(10), |e| {
        matches!(e, EventKind::MigrationFailed { .. })
    })
    .await;
    assert!(
        matches!(&ev.kind, EventKind::MigrationFailed { error, still_on: None, .. } if error.contains("capacity ledger unavailable")),
        "{ev:?}"
    );
    assert!(
        !t.agora.is_carrying("s1"),
        "fail closed: the stream stopped"
    );
    assert_eq!(m.session("s1").unwrap().state, SessionState::Failed);
    // A short blip inside the lease's lifetime changes nothing.
    flaky.down.store(false, Ordering::SeqCst);
    m.start_stream("s2").await.unwrap();
    // Renewals run every second: the blip covers the first one.
    tokio::time::sleep(ms(800)).await;
    flaky.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(ms(500)).await;
    flaky.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(secs(60)).await;
    assert_eq!(m.session("s2").unwrap().state, SessionState::Live);
    m.shutdown().await.unwrap();
}

/// After a renewal that could not reach the ledger, the next try comes after a third of the
/// renewal period, not a whole one, so a stall that ends shortly before the lease would lapse
/// is ridden out (3 s lease, renewals every 1 s: a stall from 2.1 s to 4.5 s; with the old
/// period the 4 s try was the last one before expiry and failed).
#[tokio::test(start_paused = true)]
async fn a_stall_ending_just_before_the_lease_lapses_is_ridden_out() {
    let (_b, flaky, m, t) = live_on_flaky_ledger(false).await;
    let mut rx = m.subscribe();
    tokio::time::sleep(ms(2100)).await;
    flaky.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(ms(2400)).await;
    flaky.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(secs(10)).await;
    let lost = drain(&mut rx).into_iter().any(|e| {
        matches!(
            e.kind,
            EventKind::Failover {
                reason: FailoverReason::CapacityLost,
                ..
            }
        )
    });
    assert!(
        !lost,
        "the lease was given up during a stall it could outlast"
    );
    assert_eq!(m.session("s1").unwrap().state, SessionState::Live);
    assert!(t.agora.is_carrying("s1"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_slow_start_keeps_its_slot_until_it_is_left() {
    let (_b, ledger, m, t) = on_own_ledger(|_| {}, false);
    t.agora.script_connect(vec![Step::Delay(secs(5))]);
    let mut rx = m.subscribe();
    let m1 = m.clone();
    let s1 = tokio::spawn(async move { m1.start_stream("s1").await });
    wait_for(&mut rx, secs(1), |e| {
        matches!(e, EventKind::AttemptStarted { .. })
    })
    .await;
    m.end_stream("s1").await.unwrap();
    assert!(matches!(
        s1.await.unwrap(),
        Err(StreamguardError::Cancelled(_))
    ));
    // The SDK call is still running and may still start the stream: the slot stays taken.
    assert_eq!(usage(&ledger, "agora").await.account, 1);
    tokio::time::sleep(secs(6)).await;
    assert_eq!(t.agora.leaves(), 1, "the late success was left");
    assert_eq!(usage(&ledger, "agora").await.account, 0);
    m.shutdown().await.unwrap();
}
