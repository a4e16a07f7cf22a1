//! Host calls racing slow SDKs and a slow or hung registry, on paused time (issue 12): late
//! completions never touch a newer session of the same stream id, a session exists from the
//! first instant of a start, sessions are reconciled with the list, registry reads are single
//! flight, no attempt starts at the deadline, every backoff wait ends on `network_changed()`,
//! and a half-open provider gets one trial at a time. Each test fails without its fix.

mod common;

use common::*;
use serde_json::json;
use streamguard::ProviderErrorKind::{Network, Timeout, Unauthorized};
use streamguard::{EventKind, FailoverReason, ProviderError, SessionState, StreamguardError};
use tokio::time::Instant;

fn keyed(t: &Trio) {
    for a in t.all() {
        a.set_keyed();
    }
}

fn migrated(ev: &EventKind) -> bool {
    matches!(ev, EventKind::MigrationFinished { .. })
}

// ----- 1. late completions and newer sessions of the same id --------------------------------

/// The caller gives up on a slow start, ends it and starts again at once: the first call's
/// late success must not stop the new live stream (an SDK keyed by stream id would). Calls on
/// one (provider, stream) pair run in order: the late success is left first, then the new
/// start runs.
#[tokio::test(start_paused = true)]
async fn a_late_start_never_stops_a_newer_session_of_the_same_id() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    keyed(&t);
    t.agora.script_connect(vec![Step::Delay(secs(5))]);
    let gave_up = tokio::time::timeout(secs(1), m.start_stream("S")).await;
    assert!(gave_up.is_err(), "the first start is still running at 1 s");
    m.end_stream("S").await.unwrap();
    let t0 = Instant::now();
    let again = m.start_stream("S").await.unwrap();
    assert_eq!(again.provider.as_deref(), Some("agora"));
    assert_eq!(
        t0.elapsed(),
        secs(4),
        "waited for the abandoned call (5 s) only"
    );
    tokio::time::sleep(secs(10)).await;
    assert_eq!(t.agora.calls.lock().unwrap().connect_ok, 2);
    let s = m.session("S").unwrap();
    assert_eq!(
        (s.state, s.provider.as_deref()),
        (SessionState::Live, Some("agora"))
    );
    assert!(
        t.agora.is_carrying("S"),
        "the new session's stream was stopped"
    );
    assert_eq!(
        t.agora.calls.lock().unwrap().log,
        ["start(S)", "leave(S)", "start(S)"],
        "the late success was left before the new start"
    );
    m.end_stream("S").await.unwrap();
    assert!(!t.agora.is_carrying("S"));
    m.shutdown().await.unwrap();
}

/// The same after `end_stream` during a migration whose start on the next provider is still
/// pending, and a restart that lands on that provider.
#[tokio::test(start_paused = true)]
async fn a_cancelled_migration_never_stops_the_restarted_session() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    keyed(&t);
    m.start_stream("S").await.unwrap();
    t.zego.script_connect(vec![Step::Delay(secs(5))]);
    let mut rx = m.subscribe();
    // agora fails for good: S moves break-before-make to zegocloud, whose start is slow.
    t.agora.set_down(true);
    m.record_error("S", ProviderError::new(Unauthorized, "revoked"))
        .unwrap();
    wait_for(
        &mut rx,
        secs(1),
        |e| matches!(e, EventKind::AttemptStarted { provider, .. } if provider == "zegocloud"),
    )
    .await;
    tokio::time::sleep(secs(1)).await;
    m.end_stream("S").await.unwrap();
    // agora is cooling down, so the restart lands on zegocloud, at once.
    let again = m.start_stream("S").await.unwrap();
    assert_eq!(again.provider.as_deref(), Some("zegocloud"));
    tokio::time::sleep(secs(10)).await;
    assert_eq!(t.zego.calls.lock().unwrap().connect_ok, 2);
    let s = m.session("S").unwrap();
    assert_eq!(
        (s.state, s.provider.as_deref()),
        (SessionState::Live, Some("zegocloud"))
    );
    assert!(t.zego.is_carrying("S"), "the restarted stream was stopped");
    assert_eq!(
        t.zego.calls.lock().unwrap().log,
        ["start(S)", "leave(S)", "start(S)"]
    );
    m.shutdown().await.unwrap();
    assert!(!t.zego.is_carrying("S"));
}

/// An abandoned start that succeeds late, and a newer session whose own attempt on the same
/// provider then fails: the stale stream is left (before the newer attempt), nothing is left
/// running.
#[tokio::test(start_paused = true)]
async fn a_stale_stream_is_left_when_the_newer_attempt_fails() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    keyed(&t);
    t.agora.script_connect(vec![
        Step::Delay(secs(5)),
        Step::FailAfter(secs(6), Unauthorized),
    ]);
    assert!(tokio::time::timeout(secs(1), m.start_stream("S"))
        .await
        .is_err());
    // The second start's attempt on agora runs from 1 s to 7 s; the first call succeeds at 5 s.
    let again = m.start_stream("S").await.unwrap();
    // It failed on agora (and the stale stream there was left), then failed over.
    assert_eq!(again.provider.as_deref(), Some("zegocloud"));
    assert!(!t.agora.is_carrying("S"), "a stale stream was left running");
    assert_eq!(t.agora.leaves(), 1);
    m.shutdown().await.unwrap();
}

// ----- 2. a session exists from the first instant -------------------------------------------

/// `end_stream` while the start waits for the provider list: it is accepted, the start is
/// cancelled, and the stream never goes live.
#[tokio::test(start_paused = true)]
async fn end_during_the_list_read_cancels_the_start() {
    let b = Backend::start(SEED_LIST);
    let (m, faulty) = b.faulty_manager(b.config());
    let t = Trio::register(&m, false);
    *faulty.list_delay.lock().unwrap() = secs(2);
    let m2 = m.clone();
    let op = tokio::spawn(async move { m2.start_stream("S").await });
    tokio::time::sleep(ms(500)).await;
    assert_eq!(m.session("S").unwrap().state, SessionState::Connecting);
    let t0 = Instant::now();
    m.end_stream("S").await.unwrap();
    assert_eq!(t0.elapsed(), ms(0), "end waits for nothing");
    assert!(matches!(
        op.await.unwrap(),
        Err(StreamguardError::Cancelled(_))
    ));
    tokio::time::sleep(secs(5)).await;
    assert_eq!(m.session("S").unwrap().state, SessionState::Ended);
    assert_eq!(t.agora.connects(), 0, "the start went on after the end");
    m.shutdown().await.unwrap();
}

/// `end_stream` during a retry's backoff wait returns at once and nothing is tried again.
#[tokio::test(start_paused = true)]
async fn end_during_a_backoff_cancels_the_retry() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.backoff_base = secs(5);
    let m = b.manager(c);
    let t = Trio::register(&m, false);
    t.agora.script_connect(vec![Step::Fail(Network)]);
    let m2 = m.clone();
    let op = tokio::spawn(async move { m2.start_stream("S").await });
    tokio::time::sleep(secs(1)).await;
    let t0 = Instant::now();
    m.end_stream("S").await.unwrap();
    assert_eq!(t0.elapsed(), ms(0));
    assert!(matches!(
        op.await.unwrap(),
        Err(StreamguardError::Cancelled(_))
    ));
    tokio::time::sleep(secs(10)).await;
    assert_eq!(t.agora.connects(), 1);
    m.shutdown().await.unwrap();
}

/// Dropping the `start_stream` future cancels the operation as `end_stream` would, and a
/// provider that comes up late is left.
#[tokio::test(start_paused = true)]
async fn dropping_the_start_future_cancels_the_start() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    keyed(&t);
    t.agora.script_connect(vec![Step::Delay(secs(5))]);
    assert!(tokio::time::timeout(secs(1), m.start_stream("S"))
        .await
        .is_err());
    tokio::time::sleep(ms(1)).await;
    assert_eq!(m.session("S").unwrap().state, SessionState::Ended);
    tokio::time::sleep(secs(10)).await;
    assert_eq!(t.agora.calls.lock().unwrap().connect_ok, 1);
    assert!(!t.agora.is_carrying("S"), "the late success was not left");
    m.shutdown().await.unwrap();
}

// ----- 3. reconciliation with the list -------------------------------------------------------

fn list_with_agora_max(agora: Option<(bool, u32)>) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    if let Some((active, max)) = agora {
        v.push(json!({"name": "agora", "isActive": active, "priority": 1, "maxStreams": max}));
    }
    v.push(json!({"name": "zegocloud", "isActive": true, "priority": 2}));
    v.push(json!({"name": "webrtc", "isActive": true, "priority": 3}));
    v
}

/// A provider removed (or disabled) while a start on it is in flight: when the start
/// succeeds, the session moves off it and its slot returns.
#[tokio::test(start_paused = true)]
async fn a_provider_removed_during_a_start_is_left_and_its_slot_returns() {
    for removed in [None, Some((false, 1))] {
        let b = Backend::start(&[]);
        b.ctl
            .set_raw_providers(list_with_agora_max(Some((true, 1))));
        let m = b.manager(b.config());
        let t = Trio::register(&m, false);
        keyed(&t);
        t.agora.script_connect(vec![Step::Delay(secs(2))]);
        let mut rx = m.subscribe();
        let m2 = m.clone();
        let op = tokio::spawn(async move { m2.start_stream("S").await });
        tokio::time::sleep(ms(500)).await;
        b.ctl.set_raw_providers(list_with_agora_max(removed));
        m.refresh_providers().await.unwrap();
        op.await.unwrap().unwrap();
        let moved = wait_for(&mut rx, secs(5), |e| {
            matches!(
                e,
                EventKind::Failover {
                    reason: FailoverReason::ProviderDisabled,
                    ..
                }
            )
        })
        .await;
        assert_eq!(moved.at, secs(2), "moved as soon as the start succeeded");
        wait_for(&mut rx, secs(5), migrated).await;
        let s = m.session("S").unwrap();
        assert_eq!(
            (s.state, s.provider.as_deref()),
            (SessionState::Live, Some("zegocloud")),
            "case {removed:?}"
        );
        assert!(!t.agora.is_carrying("S"));
        // Its one slot is free again: once agora is back (and preferred), S moves back into
        // it; a planned move into a full provider would stay put.
        b.ctl
            .set_raw_providers(list_with_agora_max(Some((true, 1))));
        m.refresh_providers().await.unwrap();
        wait_for(&mut rx, secs(5), migrated).await;
        assert_eq!(
            m.session("S").unwrap().provider.as_deref(),
            Some("agora"),
            "case {removed:?}"
        );
        let other = m.start_stream("T").await.unwrap();
        assert_eq!(
            other.provider.as_deref(),
            Some("zegocloud"),
            "agora is full"
        );
        m.shutdown().await.unwrap();
    }
}

/// A planned make-before-break move off a disabled provider that fails keeps the session
/// there; the next list read, although the list did not change, tries again.
#[tokio::test(start_paused = true)]
async fn every_list_read_reconciles_even_when_unchanged() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.provider_refresh_interval = secs(10);
    c.push_updates = false;
    let m = b.manager(c);
    let t = Trio::register(&m, true);
    m.start_stream("S").await.unwrap();
    t.zego.script_connect(vec![Step::Fail(Unauthorized)]);
    t.webrtc.script_connect(vec![Step::Fail(Unauthorized)]);
    let mut rx = m.subscribe();
    b.ctl.set_providers(&[
        ("agora", false, 1),
        ("zegocloud", true, 2),
        ("webrtc", true, 3),
    ]);
    m.refresh_providers().await.unwrap();
    wait_for(
        &mut rx,
        secs(1),
        |e| matches!(e, EventKind::MigrationFailed { still_on: Some(p), .. } if p == "agora"),
    )
    .await;
    // The cool-downs of the two failed providers run out; the list itself stays the same.
    let moved = wait_for(&mut rx, secs(120), migrated).await;
    assert!(matches!(&moved.kind, EventKind::MigrationFinished { to, .. } if to == "zegocloud"));
    assert_eq!(
        m.session("S").unwrap().provider.as_deref(),
        Some("zegocloud")
    );
    assert!(!t.agora.is_carrying("S"));
    m.shutdown().await.unwrap();
}

// ----- 4. a hung registry -------------------------------------------------------------------

/// Five concurrent starts with a stale list and a hung registry: one read in flight, its
/// failure shared, every start done after one `request_timeout` on the last good list.
#[tokio::test(start_paused = true)]
async fn a_hung_registry_costs_every_start_one_request_timeout() {
    let b = Backend::start(SEED_LIST);
    let (m, faulty) = b.faulty_manager(b.config());
    let _t = Trio::register(&m, false);
    m.refresh_providers().await.unwrap();
    tokio::time::sleep(secs(10)).await; // older than provider_list_max_age (5 s)
    faulty
        .list_hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    faulty
        .health_hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let reads_before = faulty.list_reads();
    let t0 = Instant::now();
    let mut ops = Vec::new();
    for i in 0..5 {
        let m2 = m.clone();
        ops.push(tokio::spawn(async move {
            let r = m2.start_stream(&format!("s{i}")).await;
            (r, Instant::now())
        }));
    }
    for op in ops {
        let (r, done) = op.await.unwrap();
        assert_eq!(r.unwrap().provider.as_deref(), Some("agora"));
        assert_eq!(done - t0, secs(5), "one request_timeout, shared");
    }
    assert_eq!(faulty.list_reads() - reads_before, 1, "single flight");
    m.shutdown().await.unwrap();
}

/// `end_stream` while a viewer's join waits on a hung registry: the registry call is abandoned
/// with the join, so nothing is left for `shutdown()` to wait on (a detached call on a registry
/// that never answers would hold shutdown for ever).
#[tokio::test(start_paused = true)]
async fn an_abandoned_registry_call_does_not_outlive_its_operation() {
    let b = Backend::start(SEED_LIST);
    b.ctl
        .placement_enabled
        .store(true, std::sync::atomic::Ordering::SeqCst);
    b.ctl.set_placement("S", "agora", 1);
    let (m, faulty) = b.faulty_manager(b.config());
    let _t = Trio::register(&m, false);
    m.refresh_providers().await.unwrap();
    faulty
        .placement_hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let m2 = m.clone();
    let op = tokio::spawn(async move { m2.join_stream("S").await });
    tokio::time::sleep(ms(500)).await;
    m.end_stream("S").await.unwrap();
    assert!(matches!(
        op.await.unwrap(),
        Err(StreamguardError::Cancelled(_))
    ));
    tokio::time::timeout(secs(60), m.shutdown())
        .await
        .expect("shutdown waited on an abandoned registry call")
        .unwrap();
    assert_eq!(m.task_count(), 0);
}

/// With no list yet and a hung registry, the list read counts against the deadline.
#[tokio::test(start_paused = true)]
async fn list_reads_count_against_the_operation_deadline() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.operation_deadline = secs(3);
    let (m, faulty) = b.faulty_manager(c);
    let _t = Trio::register(&m, false);
    faulty
        .list_hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let t0 = Instant::now();
    let r = m.start_stream("S").await;
    assert!(
        matches!(r, Err(StreamguardError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    assert_eq!(t0.elapsed(), secs(3));
    m.shutdown().await.unwrap();
}

/// A forced refresh (push, `refresh_providers`) never takes the answer of a read that started
/// before it was asked for: that read may predate the change it was asked to see.
#[tokio::test(start_paused = true)]
async fn a_forced_refresh_does_not_reuse_an_older_read() {
    let b = Backend::start(SEED_LIST);
    let (m, faulty) = b.faulty_manager(b.config());
    let _t = Trio::register(&m, false);
    *faulty.list_delay.lock().unwrap() = secs(1);
    let m2 = m.clone();
    let first = tokio::spawn(async move { m2.refresh_providers().await });
    tokio::time::sleep(ms(100)).await;
    // The change lands after the first read was sent, before it was answered.
    b.ctl
        .set_providers(&[("agora", false, 1), ("zegocloud", true, 2)]);
    let seen = m.refresh_providers().await.unwrap();
    first.await.unwrap().unwrap();
    assert!(seen.iter().any(|p| p.name == "agora" && !p.is_active));
    assert_eq!(faulty.list_reads(), 2);
    m.shutdown().await.unwrap();
}

// ----- 5. no attempt at the deadline ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_at_or_after_the_deadline() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.operation_deadline = secs(10);
    c.backoff_base = secs(5);
    c.attempts_per_provider = 3;
    let m = b.manager(c);
    let t = Trio::register(&m, false);
    // Fails after 8 s; the retry would wait 2.5 s (jitter 0.5 of 5 s): past the deadline.
    t.agora
        .script_connect(vec![Step::FailAfter(secs(8), Timeout)]);
    let t0 = Instant::now();
    let r = m.start_stream("S").await;
    assert!(
        matches!(&r, Err(StreamguardError::DeadlineExceeded { attempts }) if attempts.len() == 1),
        "{r:?}"
    );
    assert_eq!(t0.elapsed(), secs(8), "no pointless wait for the deadline");
    assert_eq!(t.agora.connects(), 1, "no attempt at the deadline");
    m.shutdown().await.unwrap();
}

// ----- 6. network_changed ends every backoff wait -------------------------------------------

#[tokio::test(start_paused = true)]
async fn network_changed_cuts_the_push_reconnect_wait() {
    let b = Backend::start(SEED_LIST);
    let (m, faulty) = b.faulty_manager(b.config());
    let _t = Trio::register(&m, false);
    faulty
        .follow_fails
        .store(true, std::sync::atomic::Ordering::SeqCst);
    m.start_stream("S").await.unwrap();
    // Refused reconnects wait 0.5, 1, 2, 4 s (jitter 0.5, base 1 s).
    while faulty.follows().len() < 4 {
        tokio::time::sleep(ms(10)).await;
    }
    let fourth = faulty.follows()[3];
    tokio::time::sleep_until(fourth + secs(1)).await;
    m.network_changed();
    tokio::time::sleep(ms(1)).await;
    let follows = faulty.follows();
    assert_eq!(follows.len(), 5, "one reconnect at once, not two");
    assert_eq!(follows[4] - fourth, secs(1), "not 4 s later");
    // The next wait (8 s) runs normally.
    tokio::time::sleep(secs(7)).await;
    assert_eq!(faulty.follows().len(), 5);
    m.shutdown().await.unwrap();
}

// ----- 7. half-open ------------------------------------------------------------------------

/// After its cool-down a provider that failed gets one trial at a time; other starts go to the
/// next provider meanwhile, without waiting; it is preferred again once a trial passes.
#[tokio::test(start_paused = true)]
async fn a_half_open_provider_gets_one_trial_at_a_time() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora
        .script_connect(vec![Step::Fail(Network), Step::Fail(Network)]);
    assert_eq!(
        m.start_stream("s0").await.unwrap().provider.as_deref(),
        Some("zegocloud")
    );
    tokio::time::sleep(secs(31)).await; // agora's 30 s cool-down ran out
    t.agora.script_connect(vec![Step::Hang]);
    let t0 = Instant::now();
    let mut ops = Vec::new();
    for i in 1..=5 {
        let m2 = m.clone();
        ops.push(tokio::spawn(async move {
            let r = m2.start_stream(&format!("s{i}")).await.unwrap();
            (r.provider.unwrap(), Instant::now() - t0)
        }));
    }
    let mut results = Vec::new();
    for op in ops {
        results.push(op.await.unwrap());
    }
    let waited: Vec<_> = results.iter().filter(|(_, d)| !d.is_zero()).collect();
    assert_eq!(waited.len(), 1, "only the trial waited: {results:?}");
    assert_eq!(
        waited[0].1,
        secs(10),
        "the trial hung until adapter_timeout"
    );
    assert!(results.iter().all(|(p, _)| p == "zegocloud"));
    assert_eq!(t.agora.connects(), 3, "one trial, one attempt");
    // Cooling again; then a trial that passes makes it preferred for everyone.
    let cooling = m
        .provider_stats()
        .into_iter()
        .find(|p| p.provider == "agora")
        .and_then(|p| p.cooling_for)
        .expect("cooling again after the failed trial");
    tokio::time::sleep(cooling).await;
    let trial = m.start_stream("s6").await.unwrap();
    assert_eq!(trial.provider.as_deref(), Some("agora"));
    let next = m.start_stream("s7").await.unwrap();
    assert_eq!(next.provider.as_deref(), Some("agora"));
    m.shutdown().await.unwrap();
}

/// While a half-open provider's health re-check is in flight (and hangs), starts go elsewhere.
#[tokio::test(start_paused = true)]
async fn a_hanging_recheck_of_a_half_open_provider_does_not_hold_starts() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.failback = true; // agora, the preferred provider, is checked while others carry streams
    let (m, faulty) = b.faulty_manager(c);
    let t = Trio::register(&m, false);
    t.agora
        .script_connect(vec![Step::Fail(Network), Step::Fail(Network)]);
    m.start_stream("s0").await.unwrap();
    faulty
        .health_hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    t.agora.script_probe(vec![Step::Hang; 10]);
    // Once its cool-down is over, agora is preferred again, so failback checks it: wait for
    // that check (its trial) to be in flight.
    tokio::time::timeout(secs(120), async {
        while t.agora.probes() == 0 {
            tokio::time::sleep(ms(100)).await;
        }
    })
    .await
    .expect("agora is checked");
    let t0 = Instant::now();
    let s = m.start_stream("s1").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("zegocloud"));
    assert_eq!(t0.elapsed(), ms(0));
    assert_eq!(
        t.agora.connects(),
        2,
        "not tried while its check is the trial"
    );
    m.shutdown().await.unwrap();
}

/// Found by the property test: a start whose caller stops waiting at once, and an end plus
/// restart of the same id at the same instant (keyed adapters).
#[tokio::test(start_paused = true)]
async fn a_dropped_start_and_an_immediate_restart_leave_the_restart_live() {
    let b = Backend::start(&[]);
    b.ctl
        .set_raw_providers(list_with_agora_max(Some((true, 1))));
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    keyed(&t);
    m.start_stream("s1").await.unwrap();
    tokio::time::sleep(secs(4)).await;
    let m1 = m.clone();
    let dropped = tokio::spawn(async move {
        let _ = tokio::time::timeout(ms(0), m1.start_stream("s3")).await;
    });
    let m2 = m.clone();
    let restart = tokio::spawn(async move {
        let _ = m2.end_stream("s3").await;
        m2.start_stream("s3").await
    });
    dropped.await.unwrap();
    let r = restart.await.unwrap();
    tokio::time::sleep(secs(5)).await;
    // Either start may win the session; whichever is Live is carried.
    if let Some(s) = m.session("s3").filter(|s| s.state == SessionState::Live) {
        assert_eq!(s.provider.as_deref(), Some("zegocloud"), "{r:?}");
        assert!(t.zego.is_carrying("s3"), "{:?}", t.log.lock().unwrap());
    }
    m.shutdown().await.unwrap();
}
