//! Stream placement with real parts (issue 14): two nginx-rtmp providers ("primary" is the
//! preferred one, "agora" in the issue; "backup" is "zegocloud"), the reference registry with
//! its placement directory, a publisher engine with the RTMP publisher and a viewer engine with
//! the RTMP viewer (a supervised ffmpeg counting the frames it receives). Every wait is bounded
//! and woken by events or a bounded poll; servers are stopped by PID. Hot standby (scenario 4)
//! is not implemented and not tested.

use std::time::Duration;
use streamguard::{EventKind, SessionState, StreamguardError};
use streamguard_e2e::*;

const SEC: Duration = Duration::from_secs(1);

/// Scenario 1: primary is full for the publisher (its `maxStreams` reached by the publisher's
/// own other stream), so it publishes on backup. The viewer, for which primary is free and
/// preferred, joins backup at once (it never tries primary) and receives frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_joins_where_the_publisher_is_when_the_preferred_provider_is_full() {
    let _one = serial().await;
    let w = PlacementWorld::start(Some(1)).await;
    let other = w.publisher.manager.start_stream("other").await.unwrap();
    assert_eq!(other.provider.as_deref(), Some("primary"));
    let s = w.publisher.manager.start_stream(CAM).await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("backup"), "primary is full");
    assert_eq!(w.placement(CAM).await, Some(("backup".into(), 1, true)));
    let v = w.viewer(|_| {});
    // For the viewer, primary is preferred and has room: its own ledger is empty and the
    // registry counts no stream there (the publisher reports no sessions).
    let listed = v.manager.refresh_providers().await.unwrap();
    let primary = listed.iter().find(|p| p.name == "primary").unwrap();
    assert_eq!(
        (
            primary.priority,
            primary.max_streams,
            primary.active_streams
        ),
        (1, Some(1), Some(0))
    );
    let joined = v.manager.join_stream(CAM).await.unwrap();
    assert_eq!(joined.provider.as_deref(), Some("backup"));
    let stats = frames_arrive(&v.adapters[1], CAM, 15, 5 * SEC, "frames on backup").await;
    println!("viewer on backup: {stats:?}");
    assert!(
        v.adapters[0].viewer_stats(CAM).is_none(),
        "the viewer never tried primary"
    );
    assert_eq!(viewers_of(w.primary.port), 0);
    assert!(
        v.log
            .find(0, |e| matches!(e, EventKind::AttemptFailed { .. }))
            .is_none(),
        "{:#?}",
        v.log.since(0)
    );
    w.finish(v).await;
}

/// Scenario 2: primary is killed while publisher and viewer are live on it. The publisher
/// moves to backup and claims it; the viewer (which saw its own viewer die and stayed, since
/// the publisher was still placed on primary) follows the placement push, and frames resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_the_publisher_moves_and_the_viewer_follows() {
    let _one = serial().await;
    let f = scenario_follow(PublisherFault::Killed, Learns::Push).await;
    println!("primary killed: {f:?}");
    // Issue 14's target: the viewer is live on the new provider within 2 s of the publisher.
    assert!(f.follow < 2 * SEC && f.first_frame < 2 * SEC, "{f:?}");
    assert!(f.gap < 10 * SEC, "{f:?}");
}

/// Scenario 3: only the publisher's SDK reports a provider-fatal error on primary; primary
/// stays healthy for the viewer, which follows because the placement changed (without
/// placement it would have stayed on primary and seen nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_side_error_moves_the_publisher_and_the_viewer_follows() {
    let _one = serial().await;
    let f = scenario_follow(PublisherFault::LocalError, Learns::Push).await;
    println!("publisher-side error: {f:?}");
    // Issue 14's target, from the viewer's own frames: watching on backup within 2 s of the
    // publisher being live there.
    assert!(f.first_frame < 2 * SEC, "{f:?}");
    // The viewer engine's `MigrationFinished` comes later: leaving primary, where the
    // publisher is gone, waits for the old viewer ffmpeg, which is blocked on a stream without
    // a publisher, cannot read `q`, and is killed after `stop_grace` (2 s).
    assert!(f.follow < 5 * SEC, "{f:?}");
    assert!(f.gap < 5 * SEC, "{f:?}");
}

/// Scenario 3 with push off: the viewer learns the move from its placement poll (every
/// `provider_refresh_interval`, 1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_push_the_viewer_follows_at_its_next_placement_poll() {
    let _one = serial().await;
    let f = scenario_follow(PublisherFault::LocalError, Learns::Poll).await;
    println!("publisher-side error, polling viewer: {f:?}");
    assert!(f.first_frame < 3 * SEC, "{f:?}");
    assert!(f.follow < 6 * SEC, "{f:?}");
}

/// Scenario 4: `standby_providers` 1, primary killed: the viewer switches to the standby on
/// its own, the publisher promotes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_hot_standby_the_viewer_switches_on_its_own_and_the_publisher_promotes() {
    let _one = serial().await;
    let r = scenario_standby().await;
    println!("primary killed with a standby: {r:?}");
    // Issue 14's target is a gap under 1 s; asserted with headroom for a loaded CI machine
    // (the figure is measured by the benchmark, not here).
    assert!(r.gap < 3 * SEC, "{r:?}");
    assert!(r.viewer_moved < 5 * SEC, "{r:?}");
}

/// Scenario 5: after the publisher moved (epoch 2 on backup), a stale claim for primary is
/// refused with 409 (an old epoch, the same epoch, another client), the placement and the
/// viewer stay on backup, and a second app publishing the same stream id gets the typed
/// `owned_by_other` conflict without disturbing the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_claim_is_refused_and_a_second_publisher_gets_a_typed_error() {
    let _one = serial().await;
    let mut w = PlacementWorld::start(None).await;
    w.publish_on_primary().await;
    let v = w.viewer(|c| c.provider_refresh_interval = SEC);
    v.manager.join_stream(CAM).await.unwrap();
    w.publisher_leaves_primary(PublisherFault::LocalError, &v)
        .await;
    assert_eq!(w.placement(CAM).await, Some(("backup".into(), 2, true)));
    let owner = w.owner(CAM).await;

    // The publisher, cut off and back with its old epoch (and a retry of epoch 2).
    let vm = v.log.mark();
    for epoch in [1, 2] {
        assert_eq!(
            w.claim_raw(CAM, "primary", epoch, &owner).await,
            (409, Some("stale_epoch".into())),
            "epoch {epoch}"
        );
    }
    // Another client, even with a higher epoch, while the owner keeps its claim alive.
    assert_eq!(
        w.claim_raw(CAM, "primary", 9, "someone-else").await,
        (409, Some("owned_by_other".into()))
    );
    assert_eq!(w.placement(CAM).await, Some(("backup".into(), 2, true)));

    // A second app publishing the same stream id.
    let second = App::new(&w.registry, |_| {});
    let r = second.manager.start_stream(CAM).await;
    assert!(
        matches!(&r, Err(StreamguardError::StreamClaimedByOther { .. })),
        "{r:?}"
    );
    assert_eq!(
        second.manager.session(CAM).unwrap().state,
        SessionState::Failed
    );
    assert!(second.adapters.iter().all(|a| a.publishing().is_empty()));
    second.manager.shutdown().await.unwrap();
    until(5 * SEC, "the second app's ffmpeg stopped", || {
        publishers_to(w.primary.port) == 0
    })
    .await;
    assert_eq!(publishers_to(w.backup.port), 1, "the owner still publishes");
    assert_eq!(w.placement(CAM).await, Some(("backup".into(), 2, true)));

    // The viewer stays on backup and keeps receiving frames over two placement polls (1 s) and
    // whatever was pushed: a bounded observation, since the claim is expected to change nothing.
    frames_arrive(&v.adapters[1], CAM, 40, 6 * SEC, "frames on backup").await;
    assert!(
        v.log.find(vm, any_move).is_none(),
        "the viewer moved: {:#?}",
        v.log.since(vm)
    );
    assert_eq!(v.on(CAM).as_deref(), Some("backup"));
    w.finish(v).await;
}

/// Scenario 6: the viewer's own SDK reports a provider-fatal error on primary while the
/// publisher stays there: the viewer does not wander to backup (where the stream is not); it
/// reports (`MigrationFailed { still_on: primary }`), keeps its viewer running, and follows the
/// publisher when it later moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_side_failure_stays_and_follows_the_later_move() {
    let _one = serial().await;
    let mut w = PlacementWorld::start(None).await;
    w.publish_on_primary().await;
    let v = w.viewer(|_| {});
    v.manager.join_stream(CAM).await.unwrap();
    let vm = v.log.mark();
    v.manager
        .record_error(CAM, sdk_error("viewer's SDK: token revoked on primary"))
        .unwrap();
    let (_, stayed) = v
        .log
        .wait(
            vm,
            10 * SEC,
            "viewer stays on primary",
            stayed_on("primary"),
        )
        .await;
    println!("{stayed:?}");
    let s = v.manager.session(CAM).unwrap();
    assert_eq!(
        (s.state, s.provider.as_deref()),
        (SessionState::Live, Some("primary"))
    );
    assert!(
        v.log
            .find(
                vm,
                |e| matches!(e, EventKind::HealthChanged { provider, .. } if provider == "primary")
            )
            .is_some(),
        "the outage is reported: {:#?}",
        v.log.since(vm)
    );
    assert!(
        v.adapters[1].viewer_stats(CAM).is_none(),
        "wandered to backup"
    );
    assert_eq!(viewers_of(w.backup.port), 0);
    // Still watching: its viewer on primary keeps receiving frames.
    frames_arrive(&v.adapters[0], CAM, 15, 5 * SEC, "frames on primary").await;
    assert_eq!(w.placement(CAM).await, Some(("primary".into(), 1, true)));

    // The publisher moves: the viewer follows.
    let (_, _, published, viewing) = w
        .publisher_leaves_primary(PublisherFault::LocalError, &v)
        .await;
    println!(
        "publisher live on backup → viewer live there: {:?}",
        viewing.saturating_duration_since(published)
    );
    frames_arrive(&v.adapters[1], CAM, 15, 5 * SEC, "frames on backup").await;
    assert_eq!(v.on(CAM).as_deref(), Some("backup"));
    w.finish(v).await;
}
