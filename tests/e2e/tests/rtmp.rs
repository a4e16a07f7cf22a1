//! Real media end to end (issue 7): two nginx-rtmp servers as providers "primary" and
//! "backup", the reference registry, the engine publishing a test pattern through the RTMP
//! adapter (a supervised ffmpeg), and a viewer probe. Every wait is bounded; every process is
//! stopped by PID. The scenarios live in the crate's library so the benchmark
//! (`examples/rtmp_bench.rs`) measures exactly what is tested here.

use std::time::Duration;
use streamguard::{EventKind, MigrationStrategy, SessionState};
use streamguard_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_is_detected_and_the_stream_continues_on_backup() {
    let _one = serial().await;
    let r = scenario_killed().await;
    println!("killed: {r:?}");
    // The publisher's exit is an error report, confirmed by an immediate probe.
    assert!(r.detected < Duration::from_secs(2), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_primary_is_detected_by_the_probe() {
    let _one = serial().await;
    let r = scenario_frozen().await;
    println!("frozen: {r:?}");
    // 3 s checks; ffmpeg itself would not notice for 90+ s.
    assert!(r.detected < Duration::from_secs(10), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_priority_switch_migrates_make_before_break_without_a_gap() {
    let _one = serial().await;
    let p = scenario_planned(true).await;
    println!("make-before-break: {p:?}");
    assert_eq!(p.strategy, MigrationStrategy::MakeBeforeBreak);
    assert_eq!(p.gap, Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_before_make_has_a_measured_gap() {
    let _one = serial().await;
    let p = scenario_planned(false).await;
    println!("break-before-make: {p:?}");
    assert_eq!(p.strategy, MigrationStrategy::BreakBeforeMake);
    assert!(
        p.gap > Duration::ZERO && p.gap < Duration::from_secs(10),
        "{p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_down_fails_cleanly_then_recovers_when_a_provider_returns() {
    let _one = serial().await;
    let mut w = RtmpWorld::start(true).await;
    w.manager.start_stream("cam").await.unwrap();
    let mut rx = w.manager.subscribe();
    w.backup.kill();
    w.primary.kill();
    next(&mut rx, Duration::from_secs(60), |e| {
        matches!(
            e,
            EventKind::SessionStateChanged {
                to: SessionState::Failed,
                ..
            }
        )
    })
    .await;
    assert_eq!(
        w.manager.session("cam").unwrap().state,
        SessionState::Failed
    );
    assert!(w.adapters.iter().all(|a| a.publishing().is_empty()));
    assert_eq!(
        publishers_to(w.backup.port) + publishers_to(w.primary.port),
        0,
        "no ffmpeg left"
    );
    // Backup comes back on the same port; the app starts again.
    let port = w.backup.port;
    let revived = Nginx::start_on("backup", port);
    w.manager.network_changed();
    let s = w.manager.start_stream("cam").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("backup"));
    assert!(w.playable(&revived, "cam").await);
    w.manager.shutdown().await.unwrap();
    assert_eq!(publishers_to(port), 0, "no ffmpeg left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_manager_stops_the_publisher() {
    let _one = serial().await;
    let w = RtmpWorld::start(true).await;
    w.manager.start_stream("cam").await.unwrap();
    let port = w.primary.port;
    assert_eq!(publishers_to(port), 1);
    let RtmpWorld {
        primary: _primary,
        backup: _backup,
        registry: _registry,
        manager,
        adapters,
    } = w;
    drop(manager);
    drop(adapters);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while publishers_to(port) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "ffmpeg outlived the manager"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
