//! The audience as a health signal, on paused time against the loopback registry (placement
//! directory on): quality samples score providers and order equal-priority choices; a
//! viewer's player state is reported at once and repeated while stalled; the registry's
//! `audience` outage moves the publisher (`AudienceStalled`), promoting a standby if it has
//! one; a viewer stalled alone lowers its quality instead of moving; a publisher whose uplink
//! is bad everywhere lowers its quality instead of hopping.

mod common;

use common::*;
use serde_json::Value;
use std::sync::atomic::Ordering;
use streamguard::{
    AudienceView, EventKind, FailoverReason, PushEvent, QualityBand, QualityLevel, QualitySample,
    StreamguardError,
};

fn sample(frames: u32, stall_ms: u64) -> QualitySample {
    QualitySample {
        interval: secs(1),
        frames,
        stall: ms(stall_ms),
        ..QualitySample::default()
    }
}

/// The registry's `audience` push event.
fn audience(stream: &str, provider: &str, viewers: u32, stalled: u32, outage: bool) -> PushEvent {
    PushEvent::Audience(AudienceView {
        stream_id: stream.into(),
        provider: provider.into(),
        viewers,
        stalled,
        degraded: 0,
        outage,
    })
}

/// A manager on `b` whose push channel the test drives.
fn pushed(
    b: &Backend,
    config: streamguard::ManagerConfig,
) -> (streamguard::StreamingProviderManager, std::sync::Arc<Wrap>) {
    let (m, w) = wrapped(b, config);
    w.push_on.store(true, Ordering::SeqCst);
    (m, w)
}

/// The audience states of `stream` in the keep-alives received so far.
fn reported(b: &Backend, stream: &str) -> Vec<String> {
    b.ctl
        .alive
        .lock()
        .unwrap()
        .iter()
        .flat_map(|a| a["sessions"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["streamId"] == stream)
        .map(|s: Value| s["audience"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn samples_score_the_provider_and_bad_samples_are_refused() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "agora", 1);
    let m = b.manager(b.config());
    let _t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    let mut rx = m.subscribe();
    m.record_quality("S", sample(15, 0)).unwrap();
    wait_for(&mut rx, secs(1), |e| {
        matches!(e, EventKind::QualityChanged { provider, to: QualityBand::Good, from: None, .. } if provider == "agora")
    })
    .await;
    m.record_quality("S", sample(0, 1000)).unwrap();
    let e = wait_for(&mut rx, secs(1), |e| {
        matches!(e, EventKind::QualityChanged { .. })
    })
    .await;
    assert!(
        matches!(e.kind, EventKind::QualityChanged { score, to: QualityBand::Degraded, .. } if (score - 70.0).abs() < 1e-9),
        "{e:?}"
    );
    let stats = m.provider_stats();
    let agora = stats.iter().find(|s| s.provider == "agora").unwrap();
    assert!((agora.quality_score.unwrap() - 70.0).abs() < 1e-9);
    let bad = QualitySample {
        interval: secs(1),
        stall: secs(2),
        ..QualitySample::default()
    };
    let r = m.record_quality("S", bad);
    assert!(
        matches!(&r, Err(StreamguardError::InvalidArgument(m)) if m.contains("stall")),
        "{r:?}"
    );
    assert!(matches!(
        m.record_quality("nobody", sample(1, 0)),
        Err(StreamguardError::UnknownSession(_))
    ));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_viewer_reports_its_stall_at_once_and_repeats_it_while_stalled() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl.set_placement("S", "agora", 1);
    let m = b.manager(b.config());
    let _t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    // The first sample is reported at once, so the registry counts viewers that watch fine.
    m.record_quality("S", sample(15, 0)).unwrap();
    tokio::time::sleep(ms(100)).await;
    assert_eq!(reported(&b, "S"), ["ok"]);
    m.record_quality("S", sample(0, 1000)).unwrap();
    tokio::time::sleep(ms(100)).await;
    assert_eq!(
        reported(&b, "S"),
        ["ok", "stalled"],
        "sent at once, not at the next keep-alive"
    );
    let alive = b.ctl.alive.lock().unwrap().last().cloned().unwrap();
    assert_eq!(alive["sessions"][0]["role"], "viewer");
    // Repeated every second while stalled.
    tokio::time::sleep(ms(2050)).await;
    assert_eq!(reported(&b, "S"), ["ok", "stalled", "stalled", "stalled"]);
    // Recovered: said once, then quiet until the next keep-alive round.
    m.record_quality("S", sample(15, 0)).unwrap();
    tokio::time::sleep(secs(3)).await;
    assert_eq!(reported(&b, "S").last().map(String::as_str), Some("ok"));
    assert_eq!(reported(&b, "S").len(), 5);
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_confirmed_audience_outage_moves_the_publisher() {
    let b = Backend::with_placement(SEED_LIST);
    let (m, w) = pushed(&b, b.config());
    let t = Trio::register(&m, false);
    m.start_stream("S").await.unwrap();
    let mut rx = m.subscribe();
    // Not an outage, or another provider's: nothing moves.
    w.push_event(audience("S", "agora", 5, 1, false));
    w.push_event(audience("S", "zegocloud", 5, 5, true));
    wait_for(
        &mut rx,
        secs(2),
        |e| matches!(e, EventKind::AudienceChanged { provider, .. } if provider == "zegocloud"),
    )
    .await;
    assert_eq!(m.session("S").unwrap().provider.as_deref(), Some("agora"));
    w.push_event(audience("S", "agora", 5, 4, true));
    let e = wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::MigrationStarted { .. })
    })
    .await;
    assert!(
        matches!(e.kind, EventKind::MigrationStarted { reason: FailoverReason::AudienceStalled, ref from, .. } if from == "agora"),
        "{e:?}"
    );
    wait_for(
        &mut rx,
        secs(10),
        |e| matches!(e, EventKind::MigrationFinished { to, .. } if to == "zegocloud"),
    )
    .await;
    assert!(!t.agora.is_carrying("S"));
    assert_eq!(
        b.ctl.placement_of("S").map(|(p, _, _)| p).as_deref(),
        Some("zegocloud"),
        "the viewers follow the new placement"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_audience_outage_promotes_a_hot_standby() {
    let b = Backend::with_placement(SEED_LIST);
    let mut c = b.config();
    c.standby_providers = 1;
    let (m, w) = pushed(&b, c);
    let _t = Trio::register(&m, true);
    let mut rx = m.subscribe();
    m.start_stream("S").await.unwrap();
    wait_for(
        &mut rx,
        secs(10),
        |e| matches!(e, EventKind::PlacementChanged { standby, .. } if !standby.is_empty()),
    )
    .await;
    w.push_event(audience("S", "agora", 5, 4, true));
    let e = wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::StandbyPromoted { .. })
    })
    .await;
    assert!(matches!(e.kind, EventKind::StandbyPromoted { ref to, .. } if to == "zegocloud"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_viewer_stalled_alone_lowers_its_quality_and_does_not_move() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl
        .set_placement_with_standby("S", "agora", 1, &["zegocloud"]);
    let (m, w) = pushed(&b, b.config());
    let t = Trio::register(&m, true);
    t.agora.calls.lock().unwrap().quality_supported = true;
    m.join_stream("S").await.unwrap();
    let mut rx = m.subscribe();
    // The rest of the audience on agora watches fine (this viewer is the one stalled).
    w.push_event(audience("S", "agora", 10, 1, false));
    wait_for(&mut rx, secs(2), |e| {
        matches!(e, EventKind::AudienceChanged { .. })
    })
    .await;
    m.record_quality("S", sample(0, 1000)).unwrap();
    let e = wait_for(&mut rx, secs(2), |e| {
        matches!(e, EventKind::QualityLowered { .. })
    })
    .await;
    assert!(matches!(
        e.kind,
        EventKind::QualityLowered {
            level: QualityLevel::Medium,
            ..
        }
    ));
    // Its SDK's stall error does not move it either (a standby exists).
    m.record_error(
        "S",
        streamguard::ProviderError::new(streamguard::ProviderErrorKind::Timeout, "stalled"),
    )
    .unwrap();
    // One step per hold time.
    m.record_quality("S", sample(0, 1000)).unwrap();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(t.agora.calls.lock().unwrap().quality.len(), 1);
    tokio::time::sleep(secs(5)).await;
    m.record_quality("S", sample(0, 1000)).unwrap();
    wait_for(&mut rx, secs(2), |e| {
        matches!(
            e,
            EventKind::QualityLowered {
                level: QualityLevel::Low,
                ..
            }
        )
    })
    .await;
    assert_eq!(m.session("S").unwrap().provider.as_deref(), Some("agora"));
    assert!(!t.zego.is_carrying("S"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stalled_viewer_whose_provider_failed_for_everyone_moves_to_the_standby() {
    let b = Backend::with_placement(SEED_LIST);
    b.ctl
        .set_placement_with_standby("S", "agora", 1, &["zegocloud"]);
    let (m, w) = pushed(&b, b.config());
    let t = Trio::register(&m, true);
    m.join_stream("S").await.unwrap();
    let mut rx = m.subscribe();
    m.record_quality("S", sample(0, 1000)).unwrap();
    w.push_event(audience("S", "agora", 10, 7, true));
    wait_for(
        &mut rx,
        secs(5),
        |e| matches!(e, EventKind::MigrationFinished { to, .. } if to == "zegocloud"),
    )
    .await;
    assert!(t.zego.is_carrying("S"));
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_publisher_whose_uplink_is_bad_everywhere_lowers_its_quality_instead_of_hopping() {
    let b = Backend::with_placement(SEED_LIST);
    let (m, w) = pushed(&b, b.config());
    let t = Trio::register(&m, false);
    for a in t.all() {
        a.calls.lock().unwrap().quality_supported = true;
    }
    let mut rx = m.subscribe();
    m.start_stream("S").await.unwrap();
    for _ in 0..3 {
        m.record_quality("S", sample(0, 1000)).unwrap();
    }
    // Its viewers stall on agora: it moves (its own quality was bad on one provider only).
    w.push_event(audience("S", "agora", 5, 5, true));
    wait_for(
        &mut rx,
        secs(10),
        |e| matches!(e, EventKind::MigrationFinished { to, .. } if to == "zegocloud"),
    )
    .await;
    // Bad on zegocloud too: its uplink, not the providers. It lowers its quality, stays.
    for _ in 0..3 {
        m.record_quality("S", sample(0, 1000)).unwrap();
    }
    let e = wait_for(&mut rx, secs(2), |e| {
        matches!(e, EventKind::QualityLowered { .. })
    })
    .await;
    assert!(
        matches!(e.kind, EventKind::QualityLowered { ref provider, .. } if provider == "zegocloud")
    );
    w.push_event(audience("S", "zegocloud", 5, 5, true));
    wait_for(
        &mut rx,
        secs(2),
        |e| matches!(e, EventKind::AudienceChanged { provider, .. } if provider == "zegocloud"),
    )
    .await;
    tokio::time::sleep(secs(2)).await;
    assert_eq!(
        m.session("S").unwrap().provider.as_deref(),
        Some("zegocloud")
    );
    assert_eq!(t.webrtc.connects(), 0, "no hop to a third provider");
    m.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_clearly_better_score_chooses_between_equal_priorities() {
    let b = Backend::with_placement(&[
        ("agora", true, 1),
        ("zegocloud", true, 1),
        ("webrtc", true, 3),
    ]);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    // A viewer on agora saw it stall (three samples: the score is held).
    b.ctl.set_placement("V", "agora", 1);
    m.join_stream("V").await.unwrap();
    for _ in 0..3 {
        m.record_quality("V", sample(0, 1000)).unwrap();
    }
    b.ctl.set_placement("W", "zegocloud", 1);
    m.join_stream("W").await.unwrap();
    for _ in 0..3 {
        m.record_quality("W", sample(15, 0)).unwrap();
    }
    // A new publisher among equal priorities takes zegocloud (agora by name otherwise).
    let s = m.start_stream("P").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("zegocloud"));
    assert_eq!(t.agora.calls.lock().unwrap().connects, 1, "only V's join");
    m.shutdown().await.unwrap();
}
