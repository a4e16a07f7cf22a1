//! Two engines (two app instances) sharing one real Redis ledger, reading providers and their
//! `maxStreams` from the real reference registry over HTTP: the limits hold across both, a
//! waiting start is woken by the other instance's release, and when Redis goes away the
//! engines fail closed: no new stream starts, and live streams stop once their leases lapse.

mod common;

use common::RedisServer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamguard::capacity::SlotLedger;
use streamguard::{
    EventKind, FailoverReason, ManagerConfig, SessionState, StreamguardError,
    StreamingProviderManager,
};
use streamguard_e2e::{next, Sim};
use streamguard_redis::{RedisLedger, RedisLedgerConfig};
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
    let mut lc = RedisLedgerConfig::new(redis.url());
    lc.prefix = "{apps}".into();
    lc.op_timeout = Duration::from_millis(500);
    lc.retries = 1;
    // Waiters are woken by pub/sub; a long poll proves it.
    lc.poll_interval = Duration::from_secs(60);
    let ledger: Arc<dyn SlotLedger> = Arc::new(RedisLedger::connect(lc).await.unwrap());
    let mut c = ManagerConfig::new(format!("{}/api", reg.url()));
    c.wait_for_capacity = wait;
    c.capacity_lease_ttl = Duration::from_millis(1500);
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
