//! The engine against the real reference registry over HTTP: an admin disables the live
//! provider and the client migrates within about a second through push; with push off it
//! migrates at the next poll.

use std::sync::Arc;
use std::time::{Duration, Instant};
use streamguard::{EventKind, ManagerConfig, StreamingProviderManager};
use streamguard_e2e::{admin_put, Sim, ADMIN, TELEMETRY};
use streamguard_registry::RunningRegistry;

async fn registry() -> RunningRegistry {
    streamguard_e2e::registry(serde_json::json!([
        {"name": "agora", "isActive": true, "priority": 1, "config": {"appId": "a"}},
        {"name": "zegocloud", "isActive": true, "priority": 2, "config": {"appId": "z"}},
        {"name": "webrtc", "isActive": true, "priority": 3}
    ]))
    .await
}

async fn manager(
    reg: &RunningRegistry,
    push: bool,
) -> (StreamingProviderManager, Arc<Sim>, Arc<Sim>) {
    let mut c = ManagerConfig::new(format!("{}/api", reg.url()));
    c.push_updates = push;
    c.provider_refresh_interval = Duration::from_secs(2);
    c.health_check_interval = Duration::from_secs(60);
    let m = StreamingProviderManager::new(c).unwrap();
    let (agora, zego) = (Arc::new(Sim::default()), Arc::new(Sim::default()));
    m.register_adapter("agora", agora.clone()).unwrap();
    m.register_adapter("zegocloud", zego.clone()).unwrap();
    m.register_adapter("webrtc", Arc::new(Sim::default()))
        .unwrap();
    (m, agora, zego)
}

async fn disable(reg: &RunningRegistry, name: &str) {
    admin_put(reg, name, r#"{"isActive":false}"#).await;
}

async fn migrated(m: &StreamingProviderManager, within: Duration) -> Duration {
    let mut rx = m.subscribe();
    let t0 = Instant::now();
    tokio::time::timeout(within, async {
        loop {
            if let Ok(ev) = rx.recv().await {
                if matches!(ev.kind, EventKind::MigrationFinished { .. }) {
                    return;
                }
            }
        }
    })
    .await
    .expect("migration finished in time");
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_disables_live_provider_client_migrates_through_push() {
    let reg = registry().await;
    let (m, agora, zego) = manager(&reg, true).await;
    assert_eq!(
        m.start_stream("s1").await.unwrap().provider.as_deref(),
        Some("agora")
    );
    // If the push channel is still connecting, the registry's greeting (the current list)
    // carries the change instead: either way it arrives without waiting for a poll.
    let waiter = tokio::spawn({
        let m = m.clone();
        async move { migrated(&m, Duration::from_secs(5)).await }
    });
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    disable(&reg, "agora").await;
    waiter.await.unwrap();
    let took = t0.elapsed();
    println!("registry push: disable -> migrated in {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(zego.carrying("s1"));
    assert!(!agora.carrying("s1"));
    m.shutdown().await.unwrap();
    reg.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_push_the_client_migrates_at_the_next_poll() {
    let reg = registry().await;
    let (m, _agora, zego) = manager(&reg, false).await;
    m.start_stream("s1").await.unwrap();
    let waiter = tokio::spawn({
        let m = m.clone();
        async move { migrated(&m, Duration::from_secs(10)).await }
    });
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    disable(&reg, "agora").await;
    waiter.await.unwrap();
    let took = t0.elapsed();
    println!("registry poll: disable -> migrated in {took:?}");
    assert!(took <= Duration::from_secs(3), "{took:?}");
    assert!(zego.carrying("s1"));
    m.shutdown().await.unwrap();
    reg.shutdown().await.unwrap();
}

async fn admin_get(reg: &RunningRegistry, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}/api/streaming/providers{path}", reg.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap()
}

fn streams(list: &serde_json::Value, name: &str) -> (u64, u64) {
    let p = list["data"]["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap();
    let s = &p["statistics"];
    (
        s["activeStreams"].as_u64().unwrap(),
        s["totalStreams"].as_u64().unwrap(),
    )
}

/// An engine with simulated adapters for the three providers.
fn simulated(c: ManagerConfig) -> StreamingProviderManager {
    let m = StreamingProviderManager::new(c).unwrap();
    for name in ["agora", "zegocloud", "webrtc"] {
        m.register_adapter(name, Arc::new(Sim::default())).unwrap();
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reports_sessions_and_failovers_to_the_registry() {
    let reg = registry().await;
    let mut c = ManagerConfig::new(format!("{}/api", reg.url()));
    c.report_sessions = true;
    c.auth_token = Some(TELEMETRY.into());
    let m = simulated(c);
    // A viewer joins where the stream's publisher is (placement): another app, not reporting,
    // publishes s2 (its claim needs the telemetry token).
    let mut pc = ManagerConfig::new(format!("{}/api", reg.url()));
    pc.auth_token = Some(TELEMETRY.into());
    let publisher = simulated(pc);
    publisher.start_stream("s2").await.unwrap();
    m.start_stream("s1").await.unwrap();
    m.join_stream("s2").await.unwrap();
    let waiter = tokio::spawn({
        let m = m.clone();
        async move { migrated(&m, Duration::from_secs(5)).await }
    });
    tokio::task::yield_now().await;
    disable(&reg, "agora").await;
    waiter.await.unwrap();
    m.end_stream("s2").await.unwrap();
    // Reports travel on a background queue: shutdown flushes it (and ends s1).
    m.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
    let list = admin_get(&reg, "/admin").await;
    assert_eq!(
        streams(&list, "agora"),
        (0, 2),
        "two started on agora, none left"
    );
    let (active, total) = streams(&list, "zegocloud");
    assert_eq!(active, 0, "all ended");
    assert!(total >= 1, "at least one failed over to zegocloud");
    let failovers = admin_get(&reg, "/failovers").await;
    let entries = failovers["data"]["failovers"].as_array().unwrap();
    assert!(
        entries.iter().any(|f| f["from"] == "agora"
            && f["to"] == "zegocloud"
            && f["reason"] == "ProviderDisabled"),
        "{failovers}"
    );
    reg.shutdown().await.unwrap();
}

/// A client that dies without reporting its ends must not hold a provider's slots for ever:
/// the registry forgets its streams once they go unconfirmed for the session TTL, while a live
/// client's keep-alives keep its own counted; then the freed slot can be taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_clients_streams_stop_counting_and_free_the_provider() {
    let reg = streamguard_e2e::registry_with(
        serde_json::json!([
            {"name": "agora", "isActive": true, "priority": 1, "maxStreams": 2, "config": {"appId": "a"}},
            {"name": "zegocloud", "isActive": true, "priority": 2, "config": {"appId": "z"}}
        ]),
        |c| c.session_ttl = Duration::from_secs(1),
    )
    .await;
    let app = |reg: &RunningRegistry| {
        let mut c = ManagerConfig::new(format!("{}/api", reg.url()));
        c.report_sessions = true;
        c.auth_token = Some(TELEMETRY.into());
        // Keep-alives (and list reads) every 300 ms, well inside the 1 s TTL.
        c.provider_refresh_interval = Duration::from_millis(300);
        c.provider_list_max_age = Duration::from_millis(100);
        let m = StreamingProviderManager::new(c).unwrap();
        for name in ["agora", "zegocloud"] {
            m.register_adapter(name, Arc::new(Sim::default())).unwrap();
        }
        m
    };
    let agora_active = |reg: &RunningRegistry| {
        let reg_url = reg.url();
        async move {
            let body = reqwest::get(format!("{reg_url}/api/streaming/providers"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let r: serde_json::Value = serde_json::from_slice(&body).unwrap();
            r["data"]["providers"][0]["activeStreams"].as_u64().unwrap()
        }
    };
    let until = |want: u64, what: &'static str| {
        let reg = &reg;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            // The registry's count is external state: read it until it matches, bounded.
            while agora_active(reg).await != want {
                assert!(Instant::now() < deadline, "{what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let live = app(&reg);
    live.start_stream("a").await.unwrap();
    // The other app runs on its own runtime, which is torn down: no end report is ever sent.
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = reg.url();
    let s = doomed
        .spawn(async move {
            let mut c = ManagerConfig::new(format!("{url}/api"));
            c.report_sessions = true;
            c.auth_token = Some(TELEMETRY.into());
            let m = StreamingProviderManager::new(c).unwrap();
            m.register_adapter("agora", Arc::new(Sim::default()))
                .unwrap();
            let s = m.start_stream("c").await.unwrap();
            std::mem::forget(m);
            s
        })
        .await
        .unwrap();
    assert_eq!(s.provider.as_deref(), Some("agora"));
    until(2, "both starts counted").await;
    let died = Instant::now();
    doomed.shutdown_background();

    // agora is full in the registry's view: a third app goes elsewhere.
    let third = app(&reg);
    let b = third.start_stream("b").await.unwrap();
    assert_eq!(b.provider.as_deref(), Some("zegocloud"));

    until(1, "the dead app's stream never expired").await;
    let freed_after = died.elapsed();
    println!("dead client's stream stopped counting after {freed_after:?} (TTL 1 s)");
    assert!(freed_after >= Duration::from_millis(900), "{freed_after:?}");
    let b2 = third.start_stream("b2").await.unwrap();
    assert_eq!(b2.provider.as_deref(), Some("agora"));
    // The live app's stream stayed counted throughout (its keep-alives).
    until(2, "live streams counted").await;
    live.shutdown().await.unwrap();
    third.shutdown().await.unwrap();
}
