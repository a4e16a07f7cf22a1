//! Property tests over random fault schedules: which adapter calls fail, hang, panic or are
//! slow, when health flips, when the list changes, when the host reports errors, ends
//! sessions, restarts the same stream id at once, stops waiting for a start (drops its
//! future), and when the registry hangs or answers slowly. Whatever happens, the engine's
//! invariants hold, also with adapters keyed by stream id (like `RtmpAdapter`), where a late
//! leave of older work would stop a newer session's stream.
//!
//! 1,000 cases by default (a few seconds); `PROPTEST_CASES=N` for a longer run.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use streamguard::capacity::{InMemoryLedger, SlotLedger};
use streamguard::{
    EventKind, ProviderError, ProviderErrorKind, SessionState, StreamingProviderManager,
};

const PROVIDERS: [&str; 3] = ["agora", "zegocloud", "webrtc"];
const STREAMS: [&str; 3] = ["s1", "s2", "s3"];
const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
enum Action {
    Start(usize),
    Join(usize),
    End(usize),
    Healthy(usize, bool),
    Down(usize, bool),
    Report(usize, ProviderErrorKind),
    Priorities([u32; 3]),
    Disable(usize),
    NetworkChanged,
    /// `end_stream` then, at once, `start_stream` of the same id.
    Restart(usize),
    /// `start_stream` whose caller stops waiting after this many seconds.
    DropStart(usize, u64),
    /// `refresh_providers()` (a list read while starts may be in flight).
    Refresh,
    /// The registry's list and health requests hang (or stop hanging).
    RegistryHang(bool),
    /// The registry answers list reads this many seconds late.
    ListDelay(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Ok),
        2 => Just(Step::Fail(ProviderErrorKind::Network)),
        1 => Just(Step::Fail(ProviderErrorKind::Unauthorized)),
        1 => Just(Step::Hang),
        1 => Just(Step::Panic),
        3 => (1u64..4).prop_map(|s| Step::Delay(Duration::from_secs(s))),
    ]
}

fn kind() -> impl Strategy<Value = ProviderErrorKind> {
    prop_oneof![
        Just(ProviderErrorKind::Network),
        Just(ProviderErrorKind::Timeout),
        Just(ProviderErrorKind::Unauthorized),
        Just(ProviderErrorKind::InvalidStream),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..3usize).prop_map(Action::Start),
        2 => (0..3usize).prop_map(Action::Join),
        2 => (0..3usize).prop_map(Action::End),
        2 => (0..3usize, any::<bool>()).prop_map(|(p, h)| Action::Healthy(p, h)),
        2 => (0..3usize, any::<bool>()).prop_map(|(p, d)| Action::Down(p, d)),
        2 => (0..3usize, kind()).prop_map(|(s, k)| Action::Report(s, k)),
        1 => prop::array::uniform3(1u32..4).prop_map(Action::Priorities),
        1 => (0..3usize).prop_map(Action::Disable),
        1 => Just(Action::NetworkChanged),
        2 => (0..3usize).prop_map(Action::Restart),
        2 => (0..3usize, 0u64..4).prop_map(|(i, d)| Action::DropStart(i, d)),
        1 => Just(Action::Refresh),
        1 => any::<bool>().prop_map(Action::RegistryHang),
        1 => (0u64..3).prop_map(Action::ListDelay),
    ]
}

#[derive(Debug, Clone)]
struct Schedule {
    parallel: bool,
    /// Adapters keyed by stream id (a start of a carried stream is a no-op, one leave stops it).
    keyed: bool,
    /// `maxStreams` per provider (0 = unlimited), and whether full providers are waited for.
    limits: [u32; 3],
    wait: bool,
    scripts: [Vec<Step>; 3],
    actions: Vec<(u64, Action)>,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::array::uniform3(0u32..3),
        any::<bool>(),
        prop::array::uniform3(prop::collection::vec(step(), 0..6)),
        // Dense enough that host calls overlap slow adapter calls and each other.
        prop::collection::vec((0u64..30, action()), 1..25),
    )
        .prop_map(|(parallel, keyed, limits, wait, scripts, mut actions)| {
            actions.sort_by_key(|(t, _)| *t);
            Schedule {
                parallel,
                keyed,
                limits,
                wait,
                scripts,
                actions,
            }
        })
}

fn list(active: [bool; 3], prio: [u32; 3], limits: [u32; 3]) -> Vec<Value> {
    (0..3)
        .map(|i| {
            json!({"name": PROVIDERS[i], "isActive": active[i], "priority": prio[i],
                   "maxStreams": limits[i], "config": {"appId": "x"}})
        })
        .collect()
}

async fn run(s: Schedule) -> Result<(), TestCaseError> {
    let b = Backend::start(SEED_LIST);
    b.ctl
        .set_raw_providers(list([true; 3], [1, 2, 3], s.limits));
    let mut cfg = b.config();
    cfg.wait_for_capacity = s.wait;
    cfg.capacity_max_wait = Duration::from_secs(90);
    let ledger = InMemoryLedger::new(None);
    let faulty = Faulty::new(b.registry(&cfg));
    let m = StreamingProviderManager::builder(cfg.clone())
        .registry(faulty.clone())
        .jitter(Box::new(FixedJitter(0.5)))
        .capacity(Arc::new(ledger.clone()))
        .build()
        .unwrap();
    let t = Trio::register(&m, s.parallel);
    for (a, script) in t.all().iter().zip(s.scripts.iter()) {
        a.support_probe();
        a.script_connect(script.clone());
        if s.keyed {
            a.set_keyed();
        }
    }
    let mut rx = m.subscribe();
    let start = tokio::time::Instant::now();
    let mut prio = [1u32, 2, 3];
    let mut active = [true; 3];
    for (at, action) in s.actions {
        tokio::time::sleep_until(start + Duration::from_secs(at)).await;
        live_means_carried(&m, &t)?;
        match action {
            Action::Start(i) | Action::Join(i) => {
                let m2 = m.clone();
                let publisher = matches!(action, Action::Start(_));
                tokio::spawn(async move {
                    let _ = if publisher {
                        m2.start_stream(STREAMS[i]).await
                    } else {
                        m2.join_stream(STREAMS[i]).await
                    };
                });
            }
            Action::End(i) => {
                let m2 = m.clone();
                tokio::spawn(async move {
                    let _ = m2.end_stream(STREAMS[i]).await;
                });
            }
            Action::Healthy(p, h) => b.ctl.set_healthy(PROVIDERS[p], h),
            Action::Down(p, d) => t.all()[p].set_down(d),
            Action::Report(i, k) => {
                let _ = m.record_error(STREAMS[i], ProviderError::new(k, "reported"));
            }
            Action::Priorities(p) => {
                prio = p;
                b.ctl.set_raw_providers(list(active, prio, s.limits));
            }
            Action::Disable(p) => {
                active[p] = !active[p];
                b.ctl.set_raw_providers(list(active, prio, s.limits));
            }
            Action::NetworkChanged => m.network_changed(),
            Action::Restart(i) => {
                let m2 = m.clone();
                tokio::spawn(async move {
                    let _ = m2.end_stream(STREAMS[i]).await;
                    let _ = m2.start_stream(STREAMS[i]).await;
                });
            }
            Action::DropStart(i, after) => {
                let m2 = m.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(after),
                        m2.start_stream(STREAMS[i]),
                    )
                    .await;
                });
            }
            Action::Refresh => {
                let m2 = m.clone();
                tokio::spawn(async move {
                    let _ = m2.refresh_providers().await;
                });
            }
            Action::RegistryHang(h) => {
                use std::sync::atomic::Ordering::SeqCst;
                faulty.list_hang.store(h, SeqCst);
                faulty.health_hang.store(h, SeqCst);
            }
            Action::ListDelay(d) => *faulty.list_delay.lock().unwrap() = Duration::from_secs(d),
        }
    }
    // Let everything settle (hangs end, waits run out), then check again.
    {
        use std::sync::atomic::Ordering::SeqCst;
        faulty.list_hang.store(false, SeqCst);
        faulty.health_hang.store(false, SeqCst);
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    live_means_carried(&m, &t)?;
    m.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;

    // Never more attempts per operation than configured.
    for ev in drain(&mut rx) {
        if let EventKind::AttemptStarted { attempt, .. } = ev.kind {
            prop_assert!(attempt <= MAX_ATTEMPTS, "attempt {attempt}");
        }
    }
    // At most one provider carries a stream, two only during make-before-break; beyond that
    // only for an instant: an abandoned call that succeeds late elsewhere is left as soon as
    // it returns (host calls cannot be taken back).
    let allowed = if s.parallel { 2 } else { 1 };
    let longest = t.carriers.lock().unwrap().longest_over(allowed);
    prop_assert!(
        longest.is_zero(),
        "more than {allowed} providers carried one stream for {longest:?}; calls: {:?}",
        t.log.lock().unwrap()
    );
    // Every started provider session was left exactly once (keyed: nothing runs any more).
    for a in t.all() {
        for (stream, n) in a.calls.lock().unwrap().active.iter() {
            prop_assert_eq!(*n, 0, "{} {} left {} times too few", a.name, stream, n);
        }
    }
    // No provider ever carried more streams than its `maxStreams`, and every slot came back.
    for (a, limit) in t.all().iter().zip(s.limits) {
        let most = a.calls.lock().unwrap().max_active;
        prop_assert!(
            limit == 0 || most <= i64::from(limit),
            "{} carried {most} streams at once, limit {limit}",
            a.name
        );
    }
    prop_assert_eq!(ledger.usage("agora").await.unwrap().global, 0);
    // No task survives shutdown, and every session is finished.
    prop_assert_eq!(m.task_count(), 0);
    for sess in m.sessions() {
        prop_assert!(
            matches!(sess.state, SessionState::Ended | SessionState::Failed),
            "{sess:?}"
        );
    }
    Ok(())
}

/// A session the engine reports Live is being carried by its provider (with a keyed adapter, a
/// late leave from older work of the same id would break this).
fn live_means_carried(m: &StreamingProviderManager, t: &Trio) -> Result<(), TestCaseError> {
    for sess in m.sessions() {
        if sess.state != SessionState::Live {
            continue;
        }
        let p = sess.provider.as_deref().unwrap_or_default();
        let adapter = t.all().into_iter().find(|a| a.name == p);
        prop_assert!(
            adapter.is_some_and(|a| a.is_carrying(&sess.stream_id)),
            "{} is Live on {p} but {p} does not carry it; calls: {:?}",
            sess.stream_id,
            t.log.lock().unwrap()
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_fault_schedules(s in schedule()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(s))?;
    }
}
