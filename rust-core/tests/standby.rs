//! Hot standby (`standby_providers`) and a join that waits for its stream to go live
//! (`wait_for_live`), on paused time against the loopback registry with its placement
//! directory on: a publisher keeps a copy of its stream on the next provider and lists it in
//! the placement, promotes it without a start when the primary fails, replaces standbys that
//! fail, leaves them all on end; a viewer moves to a standby on its own error at once.

mod common;

use common::*;
use streamguard::ProviderErrorKind::{Network, Unauthorized};
use streamguard::{EventKind, ManagerConfig, ProviderError, SessionState, StreamguardError};

fn standby_config(b: &Backend, n: u32) -> ManagerConfig {
    let mut c = b.config();
    c.standby_providers = n;
    c
}

/// Wait for a placement claim (of this engine) that lists `standby`.
async fn claimed_with(
    rx: &mut tokio::sync::broadcast::Receiver<streamguard::StreamEvent>,
    provider: &str,
    standby: &[&str],
) -> u64 {
    let e = wait_for(rx, secs(10), |e| {
        matches!(e, EventKind::PlacementChanged { provider: p, standby: s, .. } if p == provider && s == standby)
    })
    .await;
    match e.kind {
        EventKind::PlacementChanged { epoch, .. } => epoch,
        _ => unreachable!(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_publisher_keeps_a_standby_on_the_next_provider_and_lists_it() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(standby_config(&b, 1));
    let t = Trio::register(&m, true);
    let mut rx = m.subscribe();
    let info = m.start_stream("S").await.unwrap();
    assert_eq!(info.provider.as_deref(), Some("agora"));
    let epoch = claimed_with(&mut rx, "agora", &["zegocloud"]).await;
    assert_eq!(b.ctl.placement_of("S"), Some(("agora".into(), epoch, true)));
    assert_eq!(b.ctl.standby_of("S"), ["zegocloud"]);
    assert!(t.agora.is_carrying("S") && t.zego.is_carrying("S"));
    assert!(!t.webrtc.is_carrying("S"));
    assert_eq!(m.session("S").unwrap().standby, ["zegocloud"]);
    let stats = m.provider_stats();
    let zego = stats.iter().find(|s| s.provider == "zegocloud").unwrap();
    assert_eq!((zego.live_sessions, zego.standby_sessions), (0, 1));
    // A standby start is an attempt of its own kind, not a failover of the stream.
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_primary_promotes_the_standby_without_a_start_and_a_new_standby_follows() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(standby_config(&b, 1));
    let t = Trio::register(&m, true);
    let mut rx = m.subscribe();
    m.start_stream("S").await.unwrap();
    let first = claimed_with(&mut rx, "agora", &["zegocloud"]).await;
    let zego_starts = t.zego.connects();
    m.record_error("S", ProviderError::new(Unauthorized, "revoked"))
        .unwrap();
    let e = wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::StandbyPromoted { .. })
    })
    .await;
    let EventKind::StandbyPromoted {
        from, to, epoch, ..
    } = e.kind
    else {
        unreachable!()
    };
    assert_eq!((from.as_str(), to.as_str()), ("agora", "zegocloud"));
    assert!(epoch > first, "promotion claims the next epoch");
    assert_eq!(t.zego.connects(), zego_starts, "no start on the standby");
    assert!(!t.agora.is_carrying("S"), "the failed primary was left");
    let info = m.session("S").unwrap();
    assert_eq!(
        (info.state, info.provider.as_deref()),
        (SessionState::Live, Some("zegocloud"))
    );
    // The gap of a promotion is zero: the stream ran on zegocloud throughout.
    let mut rx2 = m.subscribe();
    claimed_with(&mut rx2, "zegocloud", &["webrtc"]).await;
    assert!(
        t.webrtc.is_carrying("S"),
        "a new standby replaced the promoted one"
    );
    assert_eq!(b.ctl.standby_of("S"), ["webrtc"]);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_standby_on_a_provider_that_leaves_the_list_is_replaced() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(standby_config(&b, 1));
    let t = Trio::register(&m, true);
    let mut rx = m.subscribe();
    m.start_stream("S").await.unwrap();
    claimed_with(&mut rx, "agora", &["zegocloud"]).await;
    b.ctl.set_providers(&[
        ("agora", true, 1),
        ("zegocloud", false, 2),
        ("webrtc", true, 3),
    ]);
    m.refresh_providers().await.unwrap();
    claimed_with(&mut rx, "agora", &["webrtc"]).await;
    assert!(!t.zego.is_carrying("S"), "the disabled standby was left");
    assert!(t.webrtc.is_carrying("S"));
    assert_eq!(m.session("S").unwrap().provider.as_deref(), Some("agora"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_standby_whose_provider_fails_its_checks_is_replaced() {
    let b = Backend::with_placement(SEED_LIST);
    let mut c = standby_config(&b, 1);
    c.health_check_interval = secs(2);
    let m = b.manager(c);
    let t = Trio::register(&m, true);
    let mut rx = m.subscribe();
    m.start_stream("S").await.unwrap();
    claimed_with(&mut rx, "agora", &["zegocloud"]).await;
    // The registry's health endpoint reports zegocloud down: standby providers are checked
    // like the primary, and a confirmed outage drops the standby.
    b.ctl.set_healthy("zegocloud", false);
    t.zego.set_down(true);
    claimed_with(&mut rx, "agora", &["webrtc"]).await;
    assert!(!t.zego.is_carrying("S"));
    assert!(t.webrtc.is_carrying("S"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn ending_leaves_the_primary_and_every_standby_and_frees_their_slots() {
    let b = Backend::with_placement(SEED_LIST);
    // One slot per provider: a slot not given back would refuse the second run.
    b.ctl.set_raw_providers(
        ["agora", "zegocloud", "webrtc"]
            .iter()
            .zip(1..)
            .map(|(n, p)| serde_json::json!({"name": n, "isActive": true, "priority": p, "maxStreams": 1, "config": {}}))
            .collect(),
    );
    let m = b.manager(standby_config(&b, 2));
    let t = Trio::register(&m, true);
    let mut rx = m.subscribe();
    m.start_stream("S").await.unwrap();
    claimed_with(&mut rx, "agora", &["zegocloud", "webrtc"]).await;
    assert!(t.all().iter().all(|a| a.is_carrying("S")));
    m.end_stream("S").await.unwrap();
    assert!(t.all().iter().all(|a| !a.is_carrying("S")));
    assert!(m.provider_stats().iter().all(|s| s.standby_sessions == 0));
    assert!(m.session("S").unwrap().standby.is_empty());
    m.start_stream("S").await.unwrap();
    claimed_with(&mut rx, "agora", &["zegocloud", "webrtc"]).await;
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_parallel_sessions_there_is_no_standby() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(standby_config(&b, 1));
    let t = Trio::register(&m, false);
    m.start_stream("S").await.unwrap();
    tokio::time::sleep(secs(5)).await;
    assert!(!t.zego.is_carrying("S") && !t.webrtc.is_carrying("S"));
    assert!(b.ctl.standby_of("S").is_empty());
    assert_eq!(t.zego.connects() + t.webrtc.connects(), 0);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_standby_start_that_fails_is_not_a_failover_of_the_stream() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(standby_config(&b, 1));
    let t = Trio::register(&m, true);
    t.zego.set_down(true);
    let mut rx = m.subscribe();
    m.start_stream("S").await.unwrap();
    claimed_with(&mut rx, "agora", &["webrtc"]).await;
    let events = drain(&mut rx);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Failover { .. })),
        "{events:?}"
    );
    assert_eq!(m.session("S").unwrap().provider.as_deref(), Some("agora"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_viewer_moves_to_a_standby_at_once_on_its_own_error() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl
        .set_placement_with_standby("S", "agora", 4, &["zegocloud"]);
    let m = b.manager(b.config());
    let t = Trio::register(&m, true);
    let v = m.join_stream("S").await.unwrap();
    assert_eq!(v.provider.as_deref(), Some("agora"));
    let mut rx = m.subscribe();
    let before = tokio::time::Instant::now();
    // A transient error: alone it would only start a confirmation check of agora.
    m.record_error("S", ProviderError::new(Network, "player stalled"))
        .unwrap();
    let e = wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    assert!(
        matches!(&e.kind, EventKind::MigrationFinished { to, .. } if to == "zegocloud"),
        "{e:?}"
    );
    assert!(
        tokio::time::Instant::now() - before < ms(100),
        "no wait for a confirmation"
    );
    assert!(!t.agora.is_carrying("S") && t.zego.is_carrying("S"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_viewer_without_a_standby_waits_for_confirmation_and_stays_with_its_publisher() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "agora", 4);
    let m = b.manager(b.config());
    let t = Trio::register(&m, true);
    m.join_stream("S").await.unwrap();
    let mut rx = m.subscribe();
    m.record_error("S", ProviderError::new(Network, "player stalled"))
        .unwrap();
    tokio::time::sleep(secs(5)).await;
    let events = drain(&mut rx);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::MigrationFinished { .. })),
        "{events:?}"
    );
    assert!(t.agora.is_carrying("S"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_join_waits_for_its_stream_to_go_live_up_to_wait_for_live() {
    let b = Backend::with_placement(SEED_LIST);
    let mut c = b.config();
    c.wait_for_live = secs(10);
    let (m, w) = wrapped(&b, c);
    w.push_on.store(true, std::sync::atomic::Ordering::SeqCst);
    let _t = Trio::register(&m, false);
    let join = tokio::spawn({
        let m = m.clone();
        async move { m.join_stream("S").await }
    });
    tokio::time::sleep(ms(3500)).await;
    assert!(!join.is_finished());
    assert_eq!(m.session("S").unwrap().state, SessionState::Connecting);
    let placed_at = tokio::time::Instant::now();
    b.ctl.set_placement("S", "zegocloud", 1);
    // Pushed: the join reads the placement at once, not at its next poll (at 4 s).
    w.push(placed("S", "zegocloud", 1));
    let v = join.await.unwrap().unwrap();
    assert_eq!(v.provider.as_deref(), Some("zegocloud"));
    assert!(tokio::time::Instant::now() - placed_at < ms(400));

    // Never live: the wait ends with a typed error after `wait_for_live`.
    let started = tokio::time::Instant::now();
    let r = m.join_stream("T").await;
    assert!(
        matches!(&r, Err(StreamguardError::StreamNotLive { stream_id }) if stream_id == "T"),
        "{r:?}"
    );
    let waited = tokio::time::Instant::now() - started;
    assert!(waited >= secs(10) && waited < secs(12), "{waited:?}");
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_join_waiting_for_live_is_cancelled_by_end_stream() {
    let b = Backend::with_placement(SEED_LIST);
    let mut c = b.config();
    c.wait_for_live = secs(30);
    let m = b.manager(c);
    let _t = Trio::register(&m, false);
    let join = tokio::spawn({
        let m = m.clone();
        async move { m.join_stream("S").await }
    });
    tokio::time::sleep(secs(2)).await;
    m.end_stream("S").await.unwrap();
    let r = join.await.unwrap();
    assert!(matches!(r, Err(StreamguardError::Cancelled(_))), "{r:?}");
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_planned_move_to_a_standby_promotes_it() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(standby_config(&b, 1));
    let t = Trio::register(&m, true);
    let mut rx = m.subscribe();
    m.start_stream("S").await.unwrap();
    claimed_with(&mut rx, "agora", &["zegocloud"]).await;
    let zego_starts = t.zego.connects();
    // zegocloud becomes the preferred provider.
    b.ctl.set_providers(&[
        ("agora", true, 2),
        ("zegocloud", true, 1),
        ("webrtc", true, 3),
    ]);
    m.refresh_providers().await.unwrap();
    let e = wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::StandbyPromoted { .. })
    })
    .await;
    assert!(matches!(&e.kind, EventKind::StandbyPromoted { to, .. } if to == "zegocloud"));
    assert_eq!(t.zego.connects(), zego_starts);
    assert_eq!(
        m.session("S").unwrap().provider.as_deref(),
        Some("zegocloud")
    );
    m.shutdown().await.unwrap();
}
