//! Two engines (two app instances) sharing one real Redis ledger, reading providers and their
//! `maxStreams` from the real reference registry over HTTP: the limits hold across both, a
//! waiting start is woken by the other instance's release, and when Redis goes away the
//! engines fail closed: no new stream starts, and live streams stop once their leases lapse.
//! A stall shorter than the lease changes nothing for live streams, and a restart that loses
//! every lease lets live streams keep theirs (reclaimed) without exceeding any limit.

mod common;

use common::{LossyProxy, RedisServer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamguard::capacity::SlotLedger;
use streamguard::{
    EventKind, FailoverReason, ManagerConfig, SessionState, StreamguardError,
    StreamingProviderManager,
};
use streamguard_e2e::{next, Sim};
use streamguard_redis::{redis, RedisLedger, RedisLedgerConfig};
use streamguard_registry::RunningRegistry;

async fn registry() -> RunningRegistry {
    streamguard_e2e::registry(serde_json::json!([
        {"name": "agora", "isActive": true, "priority": 1, "maxStreams": 1, "config": {"appId": "a"}},
        {"name": "zegocloud", "isActive": true, "priority": 2, "maxStreams": 1, "config": {"appId": "z"}}
    ]))
    .await
}

struct App {
    m: StreamingProviderManager,
    agora: Arc<Sim>,
    zego: Arc<Sim>,
}

async fn app(reg: &RunningRegistry, redis: &RedisServer, wait: bool) -> App {
    app_with(reg, redis, wait, Duration::from_millis(1500), |_| {}).await
}

/// An app instance with leases of `ttl` whose ledger reaches Redis through `url` (a proxy).
async fn app_via(reg: &RunningRegistry, redis: &RedisServer, url: String, ttl: Duration) -> App {
    app_with(reg, redis, false, ttl, |lc| lc.url = url).await
}

/// An app instance with leases of `ttl`; `tweak` adjusts the ledger's settings.
async fn app_with(
    reg: &RunningRegistry,
    redis: &RedisServer,
    wait: bool,
    ttl: Duration,
    tweak: impl FnOnce(&mut RedisLedgerConfig),
) -> App {
    let mut lc = RedisLedgerConfig::new(redis.url());
    lc.prefix = "{apps}".into();
    lc.op_timeout = Duration::from_millis(500);
    lc.retries = 1;
    // Waiters are woken by pub/sub; a long poll proves it.
    lc.poll_interval = Duration::from_secs(60);
    tweak(&mut lc);
    let ledger: Arc<dyn SlotLedger> = Arc::new(RedisLedger::connect(lc).await.unwrap());
    let mut c = ManagerConfig::new(format!("{}/api", reg.url()));
    c.wait_for_capacity = wait;
    c.capacity_lease_ttl = ttl;
    c.request_timeout = Duration::from_secs(2);
    let m = StreamingProviderManager::builder(c)
        .capacity(ledger)
        .build()
        .unwrap();
    let (agora, zego) = (Arc::new(Sim::default()), Arc::new(Sim::default()));
    m.register_adapter("agora", agora.clone()).unwrap();
    m.register_adapter("zegocloud", zego.clone()).unwrap();
    App { m, agora, zego }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_limits_through_redis() {
    let redis = RedisServer::start();
    let reg = registry().await;
    let app1 = app(&reg, &redis, false).await;
    let app2 = app(&reg, &redis, true).await;

    let a = app1.m.start_stream("a").await.unwrap();
    assert_eq!(a.provider.as_deref(), Some("agora"));
    // app2 has never seen agora busy; the shared ledger has.
    let b = app2.m.start_stream("b").await.unwrap();
    assert_eq!(b.provider.as_deref(), Some("zegocloud"));
    assert!(!app2.agora.carrying("b"));
    // Both providers full everywhere: app1 (not waiting) is refused at once.
    let err = app1.m.start_stream("x").await.unwrap_err();
    assert!(
        matches!(&err, StreamguardError::NoCapacity { providers, .. } if providers == &["agora", "zegocloud"]),
        "{err:?}"
    );

    // app2 waits; app1's release wakes it through Redis pub/sub, not the 60 s poll.
    let mut rx = app2.m.subscribe();
    let m2 = app2.m.clone();
    let c = tokio::spawn(async move { m2.start_stream("c").await });
    next(&mut rx, Duration::from_secs(5), |e| {
        matches!(e, EventKind::WaitingForCapacity { .. })
    })
    .await;
    let released = Instant::now();
    app1.m.end_stream("a").await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(10), c)
        .await
        .expect("woken in time")
        .unwrap()
        .unwrap();
    let latency = released.elapsed();
    assert_eq!(c.provider.as_deref(), Some("agora"));
    assert!(app2.agora.carrying("c"));
    assert!(latency < Duration::from_secs(2), "took {latency:?}");
    println!("cross-instance hand-off through Redis: {latency:?}");

    app1.m.shutdown().await.unwrap();
    app2.m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_stops_live_streams_once_their_leases_lapse() {
    let mut redis = RedisServer::start();
    let reg = registry().await;
    let app1 = app(&reg, &redis, false).await;
    app1.m.start_stream("a").await.unwrap();
    assert!(app1.agora.carrying("a"));
    let mut rx = app1.m.subscribe();
    let killed = Instant::now();
    redis.stop();
    next(&mut rx, Duration::from_secs(10), |e| {
        matches!(
            e,
            EventKind::Failover {
                reason: FailoverReason::CapacityLost,
                ..
            }
        )
    })
    .await;
    let lost_after = killed.elapsed();
    next(&mut rx, Duration::from_secs(10), |e| {
        matches!(e, EventKind::MigrationFailed { .. })
    })
    .await;
    assert!(!app1.agora.carrying("a") && !app1.zego.carrying("a"));
    assert_eq!(app1.m.session("a").unwrap().state, SessionState::Failed);
    // The lease (1.5 s) was valid until at most 1.5 s after the last renewal.
    assert!(
        lost_after < Duration::from_secs(3),
        "stopped after {lost_after:?}"
    );
    println!("stream stopped {lost_after:?} after Redis went away");
    // And nothing new starts without the ledger.
    let err = app1.m.start_stream("b").await.unwrap_err();
    assert!(
        matches!(err, StreamguardError::CapacityUnavailable(_)),
        "{err:?}"
    );
    assert!(!app1.agora.carrying("b") && !app1.zego.carrying("b"));
    app1.m.shutdown().await.unwrap();
}

/// Raw access to the shared ledger's keys, independent of the code under test.
async fn raw(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Polls Redis (external state) every 20 ms until `cond` holds for the leases' expiry scores
/// (ms, Redis time), at most `bound`.
async fn wait_for_leases(
    redis: &RedisServer,
    bound: Duration,
    cond: impl Fn(&[(String, i64)]) -> bool,
) {
    let mut con = raw(redis).await;
    let deadline = Instant::now() + bound;
    loop {
        let leases: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg("{apps}:global")
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut con)
            .await
            .unwrap_or_default();
        if cond(&leases) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "leases never got there: {leases:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn redis_now_ms(redis: &RedisServer) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME")
        .query_async(&mut raw(redis).await)
        .await
        .unwrap();
    s * 1000 + us / 1000
}

/// No failover or failure happened to any stream so far.
fn no_failover(rx: &mut tokio::sync::broadcast::Receiver<streamguard::StreamEvent>) {
    while let Ok(e) = rx.try_recv() {
        assert!(
            !matches!(
                e.kind,
                EventKind::Failover { .. } | EventKind::MigrationStarted { .. }
            ),
            "{e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stall_shorter_than_the_lease_changes_nothing_for_live_streams() {
    let redis = RedisServer::start();
    let reg = registry().await;
    let ttl = Duration::from_secs(3);
    // A renewal keeps trying (op_timeout x (retries + 1)) for the engine's whole request
    // timeout (2 s), so a stalled Redis is waited for rather than given up on.
    let longer = |lc: &mut RedisLedgerConfig| lc.retries = 4;
    let app1 = app_with(&reg, &redis, false, ttl, longer).await;
    let app2 = app_with(&reg, &redis, false, ttl, longer).await;
    let (mut rx1, mut rx2) = (app1.m.subscribe(), app2.m.subscribe());
    app1.m.start_stream("a").await.unwrap();
    app2.m.start_stream("b").await.unwrap();
    wait_for_leases(&redis, Duration::from_secs(5), |l| l.len() == 2).await;

    redis.pause();
    tokio::time::sleep(Duration::from_millis(1500)).await; // the stall itself
    redis.resume();
    let resumed = redis_now_ms(&redis).await;
    // Both leases renewed after the stall (a renewal before it left them expiring by
    // resumed + 1.5 s at the latest).
    wait_for_leases(&redis, Duration::from_secs(5), |l| {
        l.len() == 2 && l.iter().all(|(_, exp)| *exp > resumed + 2000)
    })
    .await;
    no_failover(&mut rx1);
    no_failover(&mut rx2);
    for (app, id, sim) in [(&app1, "a", &app1.agora), (&app2, "b", &app2.zego)] {
        assert_eq!(app.m.session(id).unwrap().state, SessionState::Live);
        assert!(sim.carrying(id));
    }
    app1.m.shutdown().await.unwrap();
    app2.m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_that_loses_the_leases_keeps_live_streams_within_the_limits() {
    let mut redis = RedisServer::start();
    let reg = registry().await;
    let ttl = Duration::from_millis(1500);
    let window = |lc: &mut RedisLedgerConfig| lc.rebuild_window = Duration::from_millis(1500);
    let app1 = app_with(&reg, &redis, false, ttl, window).await;
    let app2 = app_with(&reg, &redis, true, ttl, window).await;
    let (mut rx1, mut rx2) = (app1.m.subscribe(), app2.m.subscribe());
    app1.m.start_stream("a").await.unwrap();
    app2.m.start_stream("b").await.unwrap();
    assert!(app1.agora.carrying("a") && app2.zego.carrying("b"));

    redis.restart();
    // A start during the rebuild finds nothing it may take (both providers are in use,
    // though the empty Redis does not know it yet) and waits.
    let m2 = app2.m.clone();
    let mut waiting = app2.m.subscribe();
    let c = tokio::spawn(async move { m2.start_stream("c").await });
    next(&mut waiting, Duration::from_secs(5), |e| {
        matches!(e, EventKind::WaitingForCapacity { .. })
    })
    .await;
    // The live streams' leases come back under their ids.
    wait_for_leases(&redis, Duration::from_secs(5), |l| l.len() == 2).await;
    // And the rebuild window ends with both providers still full: c keeps waiting.
    let mut con = raw(&redis).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: i64 = redis::cmd("PTTL")
            .arg("{apps}:rebuild")
            .query_async(&mut con)
            .await
            .unwrap();
        if left < 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the rebuild window never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_leases(&redis, Duration::from_secs(5), |l| l.len() == 2).await;
    assert!(!c.is_finished(), "c started over a full provider");
    assert!(!app2.agora.carrying("c") && !app2.zego.carrying("c"));
    no_failover(&mut rx1);
    no_failover(&mut rx2);
    assert!(app1.agora.carrying("a") && app2.zego.carrying("b"));

    // The first slot to free goes to c.
    app1.m.end_stream("a").await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(10), c)
        .await
        .expect("woken in time")
        .unwrap()
        .unwrap();
    assert_eq!(c.provider.as_deref(), Some("agora"));
    assert!(app2.agora.carrying("c") && !app1.agora.carrying("a"));
    app1.m.shutdown().await.unwrap();
    app2.m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engines_release_whose_reply_was_lost_frees_exactly_its_slot() {
    let redis = RedisServer::start();
    let proxy = LossyProxy::start(redis.port);
    let reg = registry().await;
    // Long leases: no renewal shares app1's connection during the test, so the one reply
    // dropped is the release's.
    let app1 = app_via(&reg, &redis, proxy.url(), Duration::from_secs(30)).await;
    let app2 = app_with(&reg, &redis, false, Duration::from_secs(30), |_| {}).await;
    app1.m.start_stream("a").await.unwrap();
    app2.m.start_stream("b").await.unwrap();
    assert!(app1.agora.carrying("a") && app2.zego.carrying("b"));

    proxy
        .drop_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    app1.m.end_stream("a").await.unwrap();
    assert_eq!(proxy.dropped.load(std::sync::atomic::Ordering::SeqCst), 1);
    // agora's slot is free (once), zegocloud's is still b's.
    let c = app2.m.start_stream("c").await.unwrap();
    assert_eq!(c.provider.as_deref(), Some("agora"));
    let err = app1.m.start_stream("d").await.unwrap_err();
    assert!(
        matches!(&err, StreamguardError::NoCapacity { .. }),
        "{err:?}"
    );
    wait_for_leases(&redis, Duration::from_secs(5), |l| l.len() == 2).await;
    app1.m.shutdown().await.unwrap();
    app2.m.shutdown().await.unwrap();
}
