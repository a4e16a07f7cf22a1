//! The seed app's scenarios and test list (documents 001 and 002), run on paused time against
//! a real HTTP registry on loopback. Each `defect_*` test proves we do not have one of the
//! seed app's defects listed in ANCHORS.md.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use streamguard::ProviderErrorKind::{
    Internal, InvalidStream, Network, Timeout, Unauthorized, Unavailable,
};
use streamguard::{
    BackendError, EventKind, FailoverReason, HealthStatus, MigrationStrategy, ProviderError, Role,
    SessionState, StreamguardError,
};

fn is_failover(ev: &EventKind, reason: FailoverReason) -> bool {
    matches!(ev, EventKind::Failover { reason: r, .. } if *r == reason)
}

fn migration_finished(ev: &EventKind) -> bool {
    matches!(ev, EventKind::MigrationFinished { .. })
}

// ----- starting -------------------------------------------------------------------------------

/// Seed scenario 3 / test 2: A fails, A fails, B succeeds. The seed app documented this but
/// could not do it: its failover fired and then the loop threw "max retries".
#[tokio::test(start_paused = true)]
async fn defect_third_attempt_really_fails_over_and_succeeds() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora
        .script_connect(vec![Step::Fail(Timeout), Step::Fail(Timeout)]);
    let mut rx = m.subscribe();
    let s = m.start_stream("s1").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("zegocloud"));
    assert_eq!(s.state, SessionState::Live);
    assert_eq!(s.attempts, 3);
    assert_eq!((t.agora.connects(), t.zego.connects()), (2, 1));
    let evs = drain(&mut rx);
    let failed: Vec<_> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AttemptFailed {
                attempt, retry_in, ..
            } => Some((*attempt, *retry_in)),
            _ => None,
        })
        .collect();
    // Jitter is pinned at 0.5: the retry waits half of the 300 ms ceiling.
    assert_eq!(failed, vec![(1, Some(ms(150))), (2, None)]);
    assert!(evs.iter().any(|e| matches!(&e.kind,
        EventKind::Failover { from, to: Some(to), reason: FailoverReason::RetriesExhausted, .. }
        if from == "agora" && to == "zegocloud")));
    m.shutdown().await.unwrap();
}

/// Seed test 3: all providers down: a clear error after exactly 3 attempts, never a loop.
#[tokio::test(start_paused = true)]
async fn all_providers_down_fails_after_exactly_three_attempts() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    for a in t.all() {
        a.set_down(true);
    }
    let err = m.start_stream("s1").await.unwrap_err();
    let StreamguardError::AllAttemptsFailed { attempts } = &err else {
        panic!("unexpected {err:?}");
    };
    let tried: Vec<&str> = attempts.iter().map(|a| a.provider.as_str()).collect();
    assert_eq!(tried, vec!["agora", "agora", "zegocloud"]);
    assert!(err.to_string().contains("#3 zegocloud"), "{err}");
    let calls = || t.all().iter().map(|a| a.connects()).sum::<u64>();
    assert_eq!(calls(), 3);
    // Nothing keeps trying in the background.
    tokio::time::sleep(secs(600)).await;
    assert_eq!(calls(), 3);
    assert_eq!(m.session("s1").unwrap().state, SessionState::Failed);
    assert_eq!(
        m.task_count(),
        4,
        "only the idle monitor, push listener, lease keeper and audience reporter remain"
    );
    m.shutdown().await.unwrap();
}

/// Seed test 2 variant: the registry lists the default provider as inactive.
#[tokio::test(start_paused = true)]
async fn disabled_default_provider_is_skipped() {
    let b = Backend::start(&[("agora", false, 1), ("zegocloud", true, 2)]);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    let s = m.start_stream("s1").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("zegocloud"));
    assert_eq!(t.agora.connects(), 0);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn provider_fatal_error_skips_to_the_next_provider_at_once() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.script_connect(vec![Step::Fail(Unauthorized)]);
    let mut rx = m.subscribe();
    let before = tokio::time::Instant::now();
    let s = m.join_stream("s1").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("zegocloud"));
    assert_eq!(s.role, Role::Viewer);
    assert_eq!(t.agora.connects(), 1, "auth errors are not retried");
    assert_eq!(
        before.elapsed(),
        ms(0),
        "no backoff before a different provider"
    );
    let evs = drain(&mut rx);
    assert!(evs
        .iter()
        .any(|e| is_failover(&e.kind, FailoverReason::ProviderRejected)));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn request_fatal_error_stops_at_once() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.script_connect(vec![Step::Fail(InvalidStream)]);
    let err = m.start_stream("banned").await.unwrap_err();
    assert!(
        matches!(&err, StreamguardError::RequestRejected { provider, error } if provider == "agora" && error.kind == InvalidStream),
        "{err:?}"
    );
    assert_eq!(
        t.agora.connects() + t.zego.connects() + t.webrtc.connects(),
        1
    );
    // The provider did nothing wrong.
    let agora = &m.provider_stats()[0];
    assert_eq!(agora.consecutive_failures, 0);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn transient_error_is_retried_on_the_same_provider_after_backoff() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.script_connect(vec![Step::Fail(Unavailable)]);
    let before = tokio::time::Instant::now();
    let s = m.start_stream("s1").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("agora"));
    assert_eq!(t.agora.connects(), 2);
    assert_eq!(before.elapsed(), ms(150));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_provider_cools_down_for_the_next_sessions() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora
        .script_connect(vec![Step::Fail(Network), Step::Fail(Network)]);
    m.start_stream("s1").await.unwrap();
    assert_eq!(t.agora.connects(), 2);
    // While agora cools down (30 s), new sessions go straight to zegocloud.
    let s2 = m.start_stream("s2").await.unwrap();
    assert_eq!(s2.provider.as_deref(), Some("zegocloud"));
    assert_eq!(t.agora.connects(), 2);
    let stats = m.provider_stats();
    assert!(stats[0].cooling_for.is_some());
    assert_eq!(stats[0].times_ejected, 1);
    // After the cool-down it is preferred again.
    tokio::time::sleep(secs(31)).await;
    let s3 = m.start_stream("s3").await.unwrap();
    assert_eq!(s3.provider.as_deref(), Some("agora"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn hanging_adapter_is_bounded_and_the_manager_keeps_working() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.script_connect(vec![Step::Hang, Step::Hang]);
    let m2 = m.clone();
    let op = tokio::spawn(async move { m2.start_stream("s1").await });
    // While the adapter hangs, the manager still answers.
    tokio::time::sleep(secs(1)).await;
    assert_eq!(m.session("s1").unwrap().state, SessionState::Connecting);
    assert_eq!(m.provider_stats().len(), 3);
    let s = op.await.unwrap().unwrap();
    assert_eq!(s.provider.as_deref(), Some("zegocloud"));
    let agora = &m.provider_stats()[0];
    assert_eq!(agora.failures, 2);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn panicking_adapter_becomes_a_typed_error() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.script_connect(vec![Step::Panic]);
    let mut rx = m.subscribe();
    let s = m.start_stream("s1").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("zegocloud"));
    let err = drain(&mut rx)
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::AttemptFailed { error, .. } => Some(error),
            _ => None,
        })
        .unwrap();
    assert_eq!(err.kind, Internal);
    assert!(err.message.contains("scripted adapter panic"), "{err:?}");
    // Still fully usable afterwards.
    m.end_stream("s1").await.unwrap();
    assert_eq!(
        m.start_stream("s2").await.unwrap().provider.as_deref(),
        Some("zegocloud")
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn operation_deadline_bounds_a_start() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.operation_deadline = secs(15);
    c.max_attempts = 10;
    let m = b.manager(c);
    let t = Trio::register(&m, false);
    for a in t.all() {
        a.script_connect(vec![Step::Hang; 10]);
    }
    let before = tokio::time::Instant::now();
    let err = m.start_stream("s1").await.unwrap_err();
    assert!(
        matches!(&err, StreamguardError::DeadlineExceeded { attempts } if attempts.len() == 2),
        "{err:?}"
    );
    assert_eq!(before.elapsed(), secs(15));
    m.shutdown().await.unwrap();
}

// ----- health monitoring -----------------------------------------------------------------------

/// Seed test 1 / scenario 2: the provider fails during a stream. The seed app needed 90 s and
/// then only marked the provider unhealthy; we fail over 3 s after the first failed check.
#[tokio::test(start_paused = true)]
async fn defect_failed_health_check_really_fails_over_within_seconds() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    let outage = tokio::time::Instant::now();
    b.ctl.set_healthy("agora", false);
    let suspect = wait_for(&mut rx, secs(60), |e| {
        matches!(e, EventKind::HealthChanged { provider, to: HealthStatus::Suspect, .. } if provider == "agora")
    })
    .await;
    let decision = wait_for(&mut rx, secs(60), |e| {
        is_failover(e, FailoverReason::HealthCheckFailed)
    })
    .await;
    let done = wait_for(&mut rx, secs(60), migration_finished).await;
    // The first check is one interval after going live; then 1 s and 2 s re-checks.
    assert!(suspect.at <= secs(30) + outage.elapsed());
    assert_eq!(decision.at - suspect.at, secs(3));
    let EventKind::MigrationFinished { from, to, .. } = &done.kind else {
        unreachable!()
    };
    assert_eq!((from.as_str(), to.as_str()), ("agora", "zegocloud"));
    // Defect: the seed app left the old stream through the *new* service after disposing
    // the old one. We leave through agora's own adapter, exactly once.
    assert_eq!(t.agora.leaves(), 1);
    assert!(!t.agora.is_carrying("s1"));
    assert!(t.zego.is_carrying("s1"));
    let s = m.session("s1").unwrap();
    assert_eq!(
        (s.state, s.provider.as_deref(), s.migrations),
        (SessionState::Live, Some("zegocloud"), 1)
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn healthy_provider_is_checked_only_every_interval_once_for_all_sessions() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let _t = Trio::register(&m, false);
    for i in 0..4 {
        m.join_stream(&format!("watch-{i}")).await.unwrap();
    }
    m.start_stream("mine").await.unwrap();
    tokio::time::sleep(secs(301)).await;
    // 5 sessions on one provider cost one check per 30 s, not five.
    assert_eq!(b.ctl.health_count("agora"), 10);
    assert_eq!(b.ctl.health_count("zegocloud"), 0);
    let agora = &m.provider_stats()[0];
    assert_eq!(agora.health_checks, 10);
    assert_eq!(agora.uptime_percent, Some(100.0));
    assert_eq!(agora.live_sessions, 5);
    m.shutdown().await.unwrap();
}

/// Defect: the seed app's health timer kept running after the stream ended.
#[tokio::test(start_paused = true)]
async fn defect_health_timer_stops_when_the_stream_ends() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.support_probe();
    m.start_stream("s1").await.unwrap();
    tokio::time::sleep(secs(65)).await;
    assert_eq!(b.ctl.health_count("agora"), 2);
    let lists = b.ctl.list_requests.load(Ordering::SeqCst);
    m.end_stream("s1").await.unwrap();
    let probes = t.agora.probes();
    tokio::time::sleep(secs(600)).await;
    assert_eq!(b.ctl.health_count("agora"), 2, "no checks after the end");
    assert_eq!(t.agora.probes(), probes, "no probes after the end");
    assert_eq!(
        b.ctl.list_requests.load(Ordering::SeqCst),
        lists,
        "no list polling after the end"
    );
    assert_eq!(t.agora.leaves(), 1);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_good_check_between_failures_prevents_failover() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.script_probe(vec![
        Step::Fail(Network),
        Step::Fail(Network),
        Step::Ok,
        Step::Fail(Network),
        Step::Fail(Network),
    ]);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    tokio::time::sleep(secs(300)).await;
    assert!(!drain(&mut rx)
        .iter()
        .any(|e| matches!(e.kind, EventKind::Failover { .. })));
    assert_eq!(m.session("s1").unwrap().provider.as_deref(), Some("agora"));
    assert!(t.agora.probes() >= 5);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reported_error_confirmed_by_a_probe_fails_over_in_under_a_second() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.support_probe();
    m.start_stream("s1").await.unwrap();
    tokio::time::sleep(secs(10)).await;
    let mut rx = m.subscribe();
    t.agora.set_down(true);
    let reported = tokio::time::Instant::now();
    m.record_error("s1", ProviderError::network("connection lost"))
        .unwrap();
    wait_for(&mut rx, secs(60), |e| {
        is_failover(e, FailoverReason::ErrorReported)
    })
    .await;
    // Report to decision: one immediate confirming probe, no waiting for three checks.
    assert!(reported.elapsed() < secs(1), "{:?}", reported.elapsed());
    wait_for(&mut rx, secs(60), migration_finished).await;
    assert!(t.zego.is_carrying("s1"));
    assert_eq!(m.provider_stats()[0].reported_errors, 1);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reported_error_contradicted_by_checks_is_a_blip() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.support_probe();
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    m.record_error("s1", ProviderError::timeout("hiccup"))
        .unwrap();
    wait_for(&mut rx, secs(5), |e| {
        matches!(
            e,
            EventKind::HealthChanged {
                to: HealthStatus::Healthy,
                ..
            }
        )
    })
    .await;
    tokio::time::sleep(secs(120)).await;
    assert!(!drain(&mut rx)
        .iter()
        .any(|e| matches!(e.kind, EventKind::Failover { .. })));
    assert!(t.agora.is_carrying("s1"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn provider_fatal_report_moves_every_session_at_once() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    m.join_stream("s2").await.unwrap();
    let mut rx = m.subscribe();
    let t0 = tokio::time::Instant::now();
    m.record_error("s1", ProviderError::unauthorized("token revoked"))
        .unwrap();
    wait_for(&mut rx, secs(5), migration_finished).await;
    wait_for(&mut rx, secs(5), migration_finished).await;
    assert_eq!(t0.elapsed(), ms(0));
    assert!(t.zego.is_carrying("s1") && t.zego.is_carrying("s2"));
    assert_eq!(t.agora.active_streams(), 0);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn request_fatal_report_fails_the_session_and_leaves() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    m.record_error("s1", ProviderError::invalid_stream("stream banned"))
        .unwrap();
    wait_for(&mut rx, secs(5), |e| {
        matches!(
            e,
            EventKind::SessionStateChanged {
                to: SessionState::Failed,
                ..
            }
        )
    })
    .await;
    assert_eq!(t.agora.leaves(), 1);
    assert_eq!(t.agora.active_streams(), 0);
    assert_eq!(t.zego.connects(), 0);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn migration_with_no_provider_left_fails_cleanly() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    t.zego.set_down(true);
    t.webrtc.set_down(true);
    let mut rx = m.subscribe();
    b.ctl.set_healthy("agora", false);
    let failed = wait_for(&mut rx, secs(120), |e| {
        matches!(e, EventKind::MigrationFailed { .. })
    })
    .await;
    let EventKind::MigrationFailed { still_on, .. } = failed.kind else {
        unreachable!()
    };
    assert_eq!(still_on, None);
    let s = m.session("s1").unwrap();
    assert_eq!((s.state, s.provider), (SessionState::Failed, None));
    assert_eq!(t.agora.leaves(), 1, "old provider left cleanly, once");
    for a in t.all() {
        assert_eq!(a.active_streams(), 0, "{}", a.name);
    }
    // Checks stop with the session.
    let n = b.ctl.health_count("agora");
    tokio::time::sleep(secs(300)).await;
    assert_eq!(b.ctl.health_count("agora"), n);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn backend_outage_never_ends_a_live_stream() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    b.ctl.set_mode(Mode::ServerError);
    tokio::time::sleep(secs(600)).await;
    let evs = drain(&mut rx);
    assert!(evs
        .iter()
        .any(|e| matches!(&e.kind, EventKind::BackendError { .. })));
    assert!(!evs
        .iter()
        .any(|e| matches!(e.kind, EventKind::Failover { .. })));
    assert!(t.agora.is_carrying("s1"));
    assert_eq!(m.session("s1").unwrap().state, SessionState::Live);
    // The last good list is still used for new sessions.
    assert_eq!(
        m.start_stream("s2").await.unwrap().provider.as_deref(),
        Some("agora")
    );
    m.shutdown().await.unwrap();
}

// ----- list changes and migration ---------------------------------------------------------

/// Seed test 4 / scenario 1: the backend switches the default provider while live.
#[tokio::test(start_paused = true)]
async fn backend_priority_switch_migrates_live_sessions_at_the_next_poll() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    b.ctl.set_providers(&[
        ("agora", true, 2),
        ("zegocloud", true, 1),
        ("webrtc", true, 3),
    ]);
    let started = wait_for(&mut rx, secs(31), |e| {
        matches!(e, EventKind::MigrationStarted { .. })
    })
    .await;
    assert!(matches!(
        started.kind,
        EventKind::MigrationStarted {
            reason: FailoverReason::PriorityChanged,
            strategy: MigrationStrategy::BreakBeforeMake,
            ..
        }
    ));
    wait_for(&mut rx, secs(5), migration_finished).await;
    assert!(t.zego.is_carrying("s1"));
    assert_eq!(t.agora.leaves(), 1);
    // Break-before-make: the old provider is left before the new one starts.
    let log = t.log.lock().unwrap().clone();
    let leave = log.iter().position(|l| l == "agora:leave(s1)").unwrap();
    let start = log.iter().position(|l| l == "zegocloud:start(s1)").unwrap();
    assert!(leave < start, "{log:?}");
    // New sessions use the new default at once.
    assert_eq!(
        m.start_stream("s2").await.unwrap().provider.as_deref(),
        Some("zegocloud")
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn disabling_the_live_provider_migrates_on_refresh() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.join_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    b.ctl.set_providers(&[
        ("agora", false, 1),
        ("zegocloud", true, 2),
        ("webrtc", true, 3),
    ]);
    m.refresh_providers().await.unwrap();
    wait_for(&mut rx, secs(1), |e| {
        is_failover(e, FailoverReason::ProviderDisabled)
    })
    .await;
    wait_for(&mut rx, secs(5), migration_finished).await;
    assert!(t.zego.is_carrying("s1"));
    assert_eq!(t.zego.calls.lock().unwrap().log, vec!["join(s1)"]);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn make_before_break_when_adapters_run_in_parallel() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, true);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    b.ctl.set_providers(&[
        ("agora", true, 2),
        ("zegocloud", true, 1),
        ("webrtc", true, 3),
    ]);
    m.refresh_providers().await.unwrap();
    let done = wait_for(&mut rx, secs(5), migration_finished).await;
    let EventKind::MigrationFinished { gap, strategy, .. } = done.kind else {
        unreachable!()
    };
    assert_eq!(strategy, MigrationStrategy::MakeBeforeBreak);
    assert_eq!(gap, ms(0));
    let log = t.log.lock().unwrap().clone();
    let start = log.iter().position(|l| l == "zegocloud:start(s1)").unwrap();
    let leave = log.iter().position(|l| l == "agora:leave(s1)").unwrap();
    assert!(start < leave, "{log:?}");
    m.shutdown().await.unwrap();
}

/// An outage where the only other parallel-capable provider is down too: the stream still
/// reaches the provider that cannot overlap, break-before-make, instead of failing.
#[tokio::test(start_paused = true)]
async fn health_driven_make_before_break_falls_back_to_the_others() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let log = Arc::new(Mutex::new(Vec::new()));
    let carriers: Arc<Mutex<Carriers>> = Arc::default();
    let agora = FakeAdapter::shared("agora", true, log.clone(), carriers.clone());
    let zego = FakeAdapter::shared("zegocloud", true, log.clone(), carriers.clone());
    let webrtc = FakeAdapter::shared("webrtc", false, log.clone(), carriers.clone());
    m.register_adapter("agora", agora.clone()).unwrap();
    m.register_adapter("zegocloud", zego.clone()).unwrap();
    m.register_adapter("webrtc", webrtc.clone()).unwrap();
    m.start_stream("s1").await.unwrap();
    zego.set_down(true);
    let mut rx = m.subscribe();
    m.record_error("s1", ProviderError::unauthorized("kicked"))
        .unwrap();
    let done = wait_for(&mut rx, secs(60), |e| {
        matches!(
            e,
            EventKind::MigrationFinished { .. } | EventKind::MigrationFailed { .. }
        )
    })
    .await;
    let EventKind::MigrationFinished {
        to, strategy, gap, ..
    } = &done.kind
    else {
        panic!("the session was dropped: {done:?}");
    };
    assert_eq!(to, "webrtc");
    assert_eq!(*strategy, MigrationStrategy::BreakBeforeMake);
    assert_eq!(
        zego.connects(),
        2,
        "the parallel-capable provider was tried first"
    );
    // Break-before-make: agora was left before webrtc started (instant adapters: no gap on
    // the paused clock).
    let log = log.lock().unwrap().clone();
    let left = log.iter().position(|l| l == "agora:leave(s1)").unwrap();
    let started = log.iter().position(|l| l == "webrtc:start(s1)").unwrap();
    assert!(left < started, "{log:?}");
    assert_eq!(*gap, ms(0));
    assert!(webrtc.is_carrying("s1") && !agora.is_carrying("s1"));
    assert_eq!(carriers.lock().unwrap().max, 1);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn planned_make_before_break_that_fails_stays_on_the_old_provider() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, true);
    m.start_stream("s1").await.unwrap();
    t.zego.set_down(true);
    t.webrtc.set_down(true);
    let mut rx = m.subscribe();
    b.ctl.set_providers(&[
        ("agora", true, 2),
        ("zegocloud", true, 1),
        ("webrtc", true, 3),
    ]);
    m.refresh_providers().await.unwrap();
    let ev = wait_for(&mut rx, secs(60), |e| {
        matches!(e, EventKind::MigrationFailed { .. })
    })
    .await;
    assert!(
        matches!(ev.kind, EventKind::MigrationFailed { still_on: Some(ref p), .. } if p == "agora")
    );
    assert!(t.agora.is_carrying("s1"));
    assert_eq!(t.agora.leaves(), 0);
    assert_eq!(m.session("s1").unwrap().state, SessionState::Live);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn unrelated_list_change_does_not_pull_sessions_back() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    b.ctl.set_healthy("agora", false);
    wait_for(&mut rx, secs(60), migration_finished).await;
    b.ctl.set_healthy("agora", true);
    tokio::time::sleep(secs(400)).await;
    // Only webrtc's priority changes; agora is still preferred as before.
    b.ctl.set_providers(&[
        ("agora", true, 1),
        ("zegocloud", true, 2),
        ("webrtc", true, 9),
    ]);
    m.refresh_providers().await.unwrap();
    tokio::time::sleep(secs(60)).await;
    assert!(t.zego.is_carrying("s1"), "failback is off by default");
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failback_after_the_preferred_provider_is_stable() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.failback = true;
    c.failback_stability = secs(120);
    let m = b.manager(c);
    let t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    b.ctl.set_healthy("agora", false);
    let out = wait_for(&mut rx, secs(60), migration_finished).await;
    b.ctl.set_healthy("agora", true);
    let back = wait_for(&mut rx, secs(600), |e| {
        is_failover(e, FailoverReason::Failback)
    })
    .await;
    wait_for(&mut rx, secs(5), migration_finished).await;
    // Cool-down (30 s) plus stability (120 s) plus at most one check interval.
    let waited = back.at - out.at;
    assert!(waited >= secs(150) && waited <= secs(190), "{waited:?}");
    assert!(t.agora.is_carrying("s1"));
    m.shutdown().await.unwrap();
}

// ----- hints, cancellation, shutdown and misuse ----------------------------------------------

#[tokio::test(start_paused = true)]
async fn network_changed_cuts_the_backoff_wait_short() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.backoff_base = secs(5);
    let m = b.manager(c);
    let t = Trio::register(&m, false);
    t.agora.script_connect(vec![Step::Fail(Network)]);
    let mut rx = m.subscribe();
    let m2 = m.clone();
    let op = tokio::spawn(async move { m2.start_stream("s1").await });
    let failed = wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::AttemptFailed { .. })
    })
    .await;
    assert!(
        matches!(failed.kind, EventKind::AttemptFailed { retry_in: Some(d), .. } if d == ms(2500))
    );
    m.network_changed();
    let retried = wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::AttemptStarted { attempt: 2, .. })
    })
    .await;
    assert_eq!(retried.at, failed.at, "retried at once, not after 2.5 s");
    assert_eq!(
        op.await.unwrap().unwrap().provider.as_deref(),
        Some("agora")
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn end_during_a_slow_start_returns_at_once_and_leaves_nothing_running() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.agora.script_connect(vec![Step::Delay(secs(5))]);
    let mut rx = m.subscribe();
    let m2 = m.clone();
    let op = tokio::spawn(async move { m2.start_stream("s1").await });
    wait_for(&mut rx, secs(1), |e| {
        matches!(e, EventKind::AttemptStarted { .. })
    })
    .await;
    let t0 = tokio::time::Instant::now();
    m.end_stream("s1").await.unwrap();
    assert_eq!(t0.elapsed(), ms(0));
    assert!(matches!(
        op.await.unwrap(),
        Err(StreamguardError::Cancelled(_))
    ));
    assert_eq!(m.session("s1").unwrap().state, SessionState::Ended);
    // The slow SDK call finishes later; it is left at once.
    tokio::time::sleep(secs(6)).await;
    assert_eq!(t.agora.calls.lock().unwrap().connect_ok, 1);
    assert_eq!(t.agora.active_streams(), 0);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_leaves_every_provider_and_stops_every_task() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    t.zego.script_connect(vec![]);
    m.start_stream("a").await.unwrap();
    m.join_stream("b").await.unwrap();
    t.agora.set_down(true);
    m.join_stream("c").await.unwrap(); // lands on zegocloud
    t.agora.set_down(false);
    m.shutdown().await.unwrap();
    for a in t.all() {
        assert_eq!(a.active_streams(), 0, "{}", a.name);
    }
    assert_eq!(t.agora.leaves() + t.zego.leaves(), 3);
    assert_eq!(m.task_count(), 0);
    assert!(m.sessions().iter().all(|s| s.state == SessionState::Ended));
    assert_eq!(m.start_stream("d").await, Err(StreamguardError::ShutDown));
    assert_eq!(
        m.record_error("a", ProviderError::network("x")),
        Err(StreamguardError::ShutDown)
    );
    m.shutdown().await.unwrap();
    // Nothing polls any more.
    let n = b.ctl.list_requests.load(Ordering::SeqCst);
    tokio::time::sleep(secs(600)).await;
    assert_eq!(b.ctl.list_requests.load(Ordering::SeqCst), n);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_manager_leaves_providers_in_the_background() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.start_stream("a").await.unwrap();
    drop(m);
    tokio::time::sleep(secs(1)).await;
    assert_eq!(t.agora.active_streams(), 0);
}

#[tokio::test(start_paused = true)]
async fn calls_in_the_wrong_order_get_typed_errors() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    assert_eq!(
        m.end_stream("nope").await,
        Err(StreamguardError::UnknownSession("nope".into()))
    );
    assert!(matches!(
        m.record_error("nope", ProviderError::network("x")),
        Err(StreamguardError::UnknownSession(_))
    ));
    assert!(matches!(
        m.start_stream("").await,
        Err(StreamguardError::InvalidArgument(_))
    ));
    assert!(matches!(
        m.register_adapter(" ", t.agora.clone()),
        Err(StreamguardError::InvalidArgument(_))
    ));
    let first = m.start_stream("s1").await.unwrap();
    // Idempotent start.
    assert_eq!(m.start_stream("s1").await.unwrap(), first);
    assert_eq!(t.agora.connects(), 1);
    assert!(matches!(
        m.join_stream("s1").await,
        Err(StreamguardError::SessionBusy { .. })
    ));
    m.end_stream("s1").await.unwrap();
    m.end_stream("s1").await.unwrap();
    assert_eq!(t.agora.leaves(), 1);
    // A finished session can be started again.
    assert_eq!(m.join_stream("s1").await.unwrap().role, Role::Viewer);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn no_adapter_for_any_active_provider_is_a_clear_error() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let err = m.start_stream("s1").await.unwrap_err();
    assert!(
        matches!(err, StreamguardError::NoProviderAvailable { .. }),
        "{err:?}"
    );
    m.shutdown().await.unwrap();
}

// ----- registry contract -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn malformed_or_huge_registry_answers_are_typed_errors() {
    for (mode, check) in [
        (
            Mode::Garbage,
            (|e: &BackendError| matches!(e, BackendError::NotJson(_))) as fn(&BackendError) -> bool,
        ),
        (Mode::Huge, |e| matches!(e, BackendError::TooLarge { .. })),
        (Mode::WrongTypes, |e| matches!(e, BackendError::Schema(_))),
        (Mode::ServerError, |e| {
            matches!(e, BackendError::Status(500))
        }),
    ] {
        let b = Backend::start(SEED_LIST);
        b.ctl.set_mode(mode);
        let m = b.manager(b.config());
        let _t = Trio::register(&m, false);
        match m.start_stream("s1").await {
            Err(StreamguardError::Backend(e)) => assert!(check(&e), "{mode:?}: {e:?}"),
            other => panic!("{mode:?}: {other:?}"),
        }
        m.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn polling_uses_etags_and_sends_the_token() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.auth_token = Some("tkn-123".into());
    let m = b.manager(c);
    let _t = Trio::register(&m, false);
    m.refresh_providers().await.unwrap();
    m.refresh_providers().await.unwrap();
    assert_eq!(b.ctl.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(
        b.ctl.saw_token.lock().unwrap().as_deref(),
        Some("Bearer tkn-123")
    );
    assert_eq!(m.providers().len(), 3);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn several_sessions_on_a_failing_provider_all_migrate() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.join_stream("w1").await.unwrap();
    m.join_stream("w2").await.unwrap();
    m.start_stream("p1").await.unwrap();
    let mut rx = m.subscribe();
    b.ctl.set_healthy("agora", false);
    for _ in 0..3 {
        wait_for(&mut rx, secs(60), migration_finished).await;
    }
    assert_eq!(t.agora.active_streams(), 0);
    assert_eq!(t.zego.active_streams(), 3);
    let log = t.zego.calls.lock().unwrap().log.clone();
    assert_eq!(log.iter().filter(|l| l.starts_with("join")).count(), 2);
    assert_eq!(log.iter().filter(|l| l.starts_with("start")).count(), 1);
    m.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_config_is_rejected_on_construction() {
    let mut c = streamguard::ManagerConfig::new("http://127.0.0.1:1/api");
    c.failure_threshold = 0;
    let err = streamguard::StreamingProviderManager::new(c).err().unwrap();
    assert!(
        matches!(err, StreamguardError::InvalidConfig(ref m) if m.contains("failure_threshold"))
    );
}

// ----- session telemetry -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn sessions_are_reported_to_the_registry_when_configured() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.report_sessions = true;
    let m = b.manager(c);
    let t = Trio::register(&m, false);
    t.agora
        .script_connect(vec![Step::Fail(Timeout), Step::Fail(Timeout)]);
    m.start_stream("s1").await.unwrap(); // on zegocloud after two agora failures
    let mut rx = m.subscribe();
    b.ctl.set_healthy("zegocloud", false);
    // Detected 33 s later, when agora's 30 s cool-down is over: back to agora.
    wait_for(&mut rx, secs(60), migration_finished).await;
    m.join_stream("s2").await.unwrap();
    m.end_stream("s1").await.unwrap();
    m.shutdown().await.unwrap(); // ends s2, flushes the queue
    let got: Vec<String> = b
        .ctl
        .reports
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}{}",
                r["type"].as_str().unwrap(),
                r["streamId"].as_str().unwrap(),
                r["provider"].as_str().unwrap(),
                r.get("toProvider")
                    .and_then(|v| v.as_str())
                    .map(|to| format!(" -> {to} ({})", r["reason"].as_str().unwrap()))
                    .unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            "start s1 zegocloud",
            "failover s1 zegocloud -> agora (HealthCheckFailed)",
            "start s2 agora",
            "end s1 agora",
            "end s2 agora",
        ]
    );
    let reports = b.ctl.reports.lock().unwrap().clone();
    let client = reports[0]["clientId"].as_str().unwrap().to_string();
    assert!(client.starts_with("sg-") && client.len() > 20, "{client}");
    assert!(reports.iter().all(|r| r["clientId"] == client.as_str()));
}

/// Every 30 s (the list refresh interval) the engine confirms the streams it runs, so the
/// registry can expire the streams of an instance that died without reporting their ends.
#[tokio::test(start_paused = true)]
async fn live_sessions_are_confirmed_to_the_registry_periodically() {
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.report_sessions = true;
    let m = b.manager(c);
    Trio::register(&m, false);
    let started = tokio::time::Instant::now();
    m.start_stream("s1").await.unwrap();
    m.join_stream("s2").await.unwrap();
    tokio::time::sleep(secs(29)).await;
    assert!(b.ctl.alive.lock().unwrap().is_empty());
    tokio::time::sleep(secs(2)).await;
    let first = b.ctl.alive.lock().unwrap().clone();
    assert_eq!(first.len(), 1, "one keep-alive after 30 s: {first:?}");
    let mut listed: Vec<String> = first[0]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["streamId"].as_str().unwrap(),
                s["provider"].as_str().unwrap()
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed, ["s1 agora", "s2 agora"]);
    let client = first[0]["clientId"].as_str().unwrap().to_string();
    m.end_stream("s1").await.unwrap();
    m.end_stream("s2").await.unwrap();
    tokio::time::sleep(secs(90)).await;
    // Nothing live: no more keep-alives (three intervals passed).
    assert_eq!(b.ctl.alive.lock().unwrap().len(), 1);
    let reports = b.ctl.reports.lock().unwrap().clone();
    assert!(reports.iter().all(|r| r["clientId"] == client.as_str()));
    assert!(started.elapsed() >= secs(120));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn sessions_are_not_reported_by_default() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager(b.config());
    let _t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    m.end_stream("s1").await.unwrap();
    m.shutdown().await.unwrap();
    assert!(b.ctl.reports.lock().unwrap().is_empty());
}
