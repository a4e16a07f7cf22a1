//! Stream placement in the engine, on paused time against the loopback registry with its
//! placement directory on: publishers claim where they publish (next epoch, after every move,
//! before leaving the old provider), a second client cannot take a live stream, viewers join
//! where the publisher is, follow it, and do not wander. Without the directory (the other test
//! files), the engine behaves as before.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use streamguard::ProviderErrorKind::Unauthorized;
use streamguard::{EventKind, FailoverReason, ProviderError, SessionState, StreamguardError};

#[tokio::test(start_paused = true)]
async fn a_publisher_claims_where_it_publishes_and_after_every_move() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    let mut claims = m.subscribe();
    m.start_stream("S").await.unwrap();
    assert_eq!(b.ctl.placement_of("S"), Some(("agora".into(), 1, true)));
    wait_for(&mut claims, secs(1), |e| {
        matches!(e, EventKind::PlacementChanged { provider, epoch: 1, live: true, .. } if provider == "agora")
    })
    .await;
    let mut rx = m.subscribe();
    m.record_error("S", ProviderError::new(Unauthorized, "revoked"))
        .unwrap();
    wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    assert_eq!(b.ctl.placement_of("S"), Some(("zegocloud".into(), 2, true)));
    m.end_stream("S").await.unwrap();
    // The release runs in the background.
    tokio::time::sleep(ms(10)).await;
    assert_eq!(
        b.ctl.placement_of("S"),
        Some(("zegocloud".into(), 2, false))
    );
    assert!(!t.zego.is_carrying("S"));
    m.shutdown().await.unwrap();
}

/// Make-before-break: the new provider is claimed while both carry the stream, so viewers
/// move before the old provider is left.
#[tokio::test(start_paused = true)]
async fn a_make_before_break_move_is_claimed_before_the_old_provider_is_left() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, true);
    m.start_stream("S").await.unwrap();
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    {
        let (seen, agora) = (seen.clone(), t.agora.clone());
        *b.ctl.on_claim.lock().unwrap() = Some(Box::new(move |_, provider, _| {
            seen.lock()
                .unwrap()
                .push((provider.to_string(), agora.is_carrying("S")));
        }));
    }
    let mut rx = m.subscribe();
    b.ctl.set_providers(&[
        ("agora", true, 3),
        ("zegocloud", true, 1),
        ("webrtc", true, 2),
    ]);
    m.refresh_providers().await.unwrap();
    wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        [("zegocloud".to_string(), true)],
        "claimed while agora still carried the stream"
    );
    assert!(!t.agora.is_carrying("S"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_second_client_publishing_a_live_stream_gets_a_typed_error() {
    let b = Backend::with_placement(SEED_LIST);
    let first = b.manager(b.config());
    let _t1 = Trio::register(&first, false);
    first.start_stream("S").await.unwrap();
    let second = b.manager(b.config());
    let t2 = Trio::register(&second, false);
    let r = second.start_stream("S").await;
    assert!(
        matches!(&r, Err(StreamguardError::StreamClaimedByOther { stream_id }) if stream_id == "S"),
        "{r:?}"
    );
    assert_eq!(second.session("S").unwrap().state, SessionState::Failed);
    assert!(
        t2.all().iter().all(|a| !a.is_carrying("S")),
        "nothing left running"
    );
    assert_eq!(b.ctl.placement_of("S"), Some(("agora".into(), 1, true)));
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

/// A publisher that starts again after an earlier run claims above that run's epoch.
#[tokio::test(start_paused = true)]
async fn a_new_run_claims_above_the_stored_epoch() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.placements.lock().unwrap().insert(
        "S".into(),
        ("webrtc".into(), 7, false, "an-earlier-run".into()),
    );
    let m = b.manager(b.config());
    let _t = Trio::register(&m, false);
    m.start_stream("S").await.unwrap();
    assert_eq!(b.ctl.placement_of("S"), Some(("agora".into(), 8, true)));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_viewer_joins_where_the_publisher_is() {
    let b = Backend::with_placement(SEED_LIST);
    // agora is preferred, but the publisher is on zegocloud (agora was full for it).
    b.ctl.set_placement("S", "zegocloud", 3);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    let v = m.join_stream("S").await.unwrap();
    assert_eq!(v.provider.as_deref(), Some("zegocloud"));
    assert_eq!(t.agora.connects(), 0);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_viewer_of_a_stream_that_is_not_live_or_not_reachable_gets_a_typed_error() {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    let r = m.join_stream("nobody-publishes").await;
    assert!(
        matches!(&r, Err(StreamguardError::StreamNotLive { stream_id }) if stream_id == "nobody-publishes"),
        "{r:?}"
    );
    b.ctl.set_placement("S", "livekit", 1);
    let r = m.join_stream("S").await;
    assert!(
        matches!(&r, Err(StreamguardError::NoAdapterForPlacement { providers, .. }) if providers == &["livekit"]),
        "{r:?}"
    );
    assert!(t.all().iter().all(|a| a.connects() == 0));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_live_viewer_follows_its_publisher() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "zegocloud", 1);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    let mut rx = m.subscribe();
    b.ctl.set_placement("S", "webrtc", 2);
    let mut seen = m.subscribe();
    // Push is off in this harness: the viewer polls every provider_refresh_interval (30 s).
    let moved = wait_for(&mut rx, secs(31), |e| {
        matches!(
            e,
            EventKind::Failover {
                reason: FailoverReason::PlacementChanged,
                ..
            }
        )
    })
    .await;
    assert!(moved.at <= secs(31));
    wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    assert_eq!(m.session("S").unwrap().provider.as_deref(), Some("webrtc"));
    assert!(t.webrtc.is_carrying("S") && !t.zego.is_carrying("S"));
    wait_for(&mut seen, secs(1), |e| {
        matches!(e, EventKind::PlacementChanged { provider, epoch: 2, .. } if provider == "webrtc")
    })
    .await;
    m.shutdown().await.unwrap();
}

/// The viewer's own provider fails while the publisher stays there: it does not wander to a
/// provider the stream is not on; it reports, stays, and follows the publisher's move.
#[tokio::test(start_paused = true)]
async fn a_viewer_does_not_wander_and_follows_the_move_when_it_comes() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "zegocloud", 1);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    let mut rx = m.subscribe();
    m.record_error("S", ProviderError::new(Unauthorized, "viewer-side failure"))
        .unwrap();
    wait_for(
        &mut rx,
        secs(5),
        |e| matches!(e, EventKind::MigrationFailed { still_on: Some(p), .. } if p == "zegocloud"),
    )
    .await;
    let s = m.session("S").unwrap();
    assert_eq!(
        (s.state, s.provider.as_deref()),
        (SessionState::Live, Some("zegocloud"))
    );
    assert_eq!(t.agora.connects() + t.webrtc.connects(), 0, "wandered");
    // The publisher moves: the viewer follows.
    b.ctl.set_placement("S", "agora", 2);
    wait_for(
        &mut rx,
        secs(31),
        |e| matches!(e, EventKind::MigrationFinished { to, .. } if to == "agora"),
    )
    .await;
    assert!(t.agora.is_carrying("S"));
    m.shutdown().await.unwrap();
}

/// The publisher moves again while the viewer is still moving after its first move (a push
/// event arrives mid-move): the second change is not lost (found by review: it was stored and
/// never acted on, since a moving session cannot start another move and no later event is
/// newer).
#[tokio::test(start_paused = true)]
async fn a_placement_change_seen_while_moving_is_followed_when_the_move_ends() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "zegocloud", 1);
    let (m, w) = wrapped(&b, b.config());
    w.push_on.store(true, Ordering::SeqCst);
    let t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    t.webrtc.script_connect(vec![Step::Delay(secs(8))]);
    let mut rx = m.subscribe();
    w.push(placed("S", "webrtc", 2));
    wait_for(
        &mut rx,
        secs(1),
        |e| matches!(e, EventKind::AttemptStarted { provider, .. } if provider == "webrtc"),
    )
    .await;
    // Mid-move (the join on webrtc takes 8 s), the publisher moves on.
    w.push(placed("S", "agora", 3));
    let moved = wait_for(
        &mut rx,
        secs(20),
        |e| matches!(e, EventKind::MigrationFinished { to, .. } if to == "agora"),
    )
    .await;
    assert!(
        moved.at < secs(10),
        "followed as soon as the first move ended"
    );
    assert_eq!(m.session("S").unwrap().provider.as_deref(), Some("agora"));
    assert!(t.agora.is_carrying("S") && !t.webrtc.is_carrying("S"));
    m.shutdown().await.unwrap();
}

/// The publisher moves again while its viewer is still joining the provider of the first move
/// (a slow SDK): the second move, seen meanwhile, cannot start a move then, and the viewer must
/// not stay where the publisher no longer is once it got there. (Failed before the fix: the
/// viewer stayed on webrtc for good, every later poll seeing an epoch it already knew.)
#[tokio::test(start_paused = true)]
async fn a_second_move_seen_while_following_the_first_is_followed_too() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "zegocloud", 1);
    // A second watched stream, live throughout, keeps the polls going while S is moving.
    b.ctl.set_placement("T", "agora", 1);
    let mut c = b.config();
    c.adapter_timeout = secs(60);
    let m = b.manager(c);
    let t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    m.join_stream("T").await.unwrap();
    let mut rx = m.subscribe();
    // Joining webrtc takes 40 s: the next poll (30 s later) comes while S is moving.
    t.webrtc.script_connect(vec![Step::Delay(secs(40))]);
    b.ctl.set_placement("S", "webrtc", 2);
    wait_for(
        &mut rx,
        secs(31),
        |e| matches!(e, EventKind::MigrationStarted { stream_id, .. } if stream_id == "S"),
    )
    .await;
    b.ctl.set_placement("S", "agora", 3);
    wait_for(
        &mut rx,
        secs(45),
        |e| matches!(e, EventKind::MigrationFinished { to, .. } if to == "webrtc"),
    )
    .await;
    wait_for(
        &mut rx,
        secs(31),
        |e| matches!(e, EventKind::MigrationFinished { stream_id, to, .. } if stream_id == "S" && to == "agora"),
    )
    .await;
    assert_eq!(m.session("S").unwrap().provider.as_deref(), Some("agora"));
    assert!(!t.webrtc.is_carrying("S"));
    m.shutdown().await.unwrap();
}
