//! The registry's push channel, in real time against the loopback registry: a change reaches
//! live sessions in about a second through Server-Sent Events, and at the next poll when the
//! registry has no push channel.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use streamguard::{EventKind, FailoverReason};

fn slow_polling(b: &Backend) -> streamguard::ManagerConfig {
    let mut c = b.config();
    c.provider_refresh_interval = Duration::from_secs(60);
    c.health_check_interval = Duration::from_secs(60);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_disabling_the_live_provider_migrates_within_a_second_through_push() {
    let b = Backend::start(SEED_LIST);
    let m = b.manager_http(slow_polling(&b));
    let t = Trio::register(&m, false);
    let mut open = b.ctl.push_open.subscribe();
    m.start_stream("s1").await.unwrap();
    // The listener connects once a session is live.
    tokio::time::timeout(Duration::from_secs(5), open.wait_for(|n| *n == 1))
        .await
        .expect("push channel opened")
        .unwrap();
    let mut rx = m.subscribe();
    let t0 = Instant::now();
    b.ctl.set_providers(&[
        ("agora", false, 1),
        ("zegocloud", true, 2),
        ("webrtc", true, 3),
    ]);
    b.ctl.push("providers", "{}");
    wait_for(&mut rx, Duration::from_secs(5), |e| {
        matches!(
            e,
            EventKind::Failover {
                reason: FailoverReason::ProviderDisabled,
                ..
            }
        )
    })
    .await;
    wait_for(&mut rx, Duration::from_secs(5), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    let took = t0.elapsed();
    println!("push: admin change -> migrated in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(t.zego.is_carrying("s1"));
    // Ending the last session closes the channel: an idle app holds no connection.
    m.end_stream("s1").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), open.wait_for(|n| *n == 0))
        .await
        .expect("push channel closed")
        .unwrap();
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_push_the_change_arrives_at_the_next_poll() {
    let b = Backend::start(SEED_LIST);
    b.ctl.push_enabled.store(false, Ordering::SeqCst);
    let mut c = slow_polling(&b);
    c.provider_refresh_interval = Duration::from_secs(2);
    let m = b.manager_http(c);
    let t = Trio::register(&m, false);
    m.start_stream("s1").await.unwrap();
    let mut rx = m.subscribe();
    let t0 = Instant::now();
    b.ctl.set_providers(&[
        ("agora", false, 1),
        ("zegocloud", true, 2),
        ("webrtc", true, 3),
    ]);
    wait_for(&mut rx, Duration::from_secs(10), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    let took = t0.elapsed();
    println!("poll: admin change -> migrated in {took:?}");
    assert!(took <= Duration::from_secs(3), "{took:?}");
    assert!(
        b.ctl.push_requests.load(Ordering::SeqCst) >= 1,
        "push was tried"
    );
    assert!(t.zego.is_carrying("s1"));
    m.shutdown().await.unwrap();
}
