//! The audience as a health signal with real parts (issue 19): two nginx-rtmp providers, the
//! registry aggregating viewers' reports, a publisher engine and several viewer engines with
//! real RTMP viewers. Serialized with the other real-media tests (ports, CPU).

use std::time::Duration;
use streamguard_e2e::*;

const SEC: Duration = Duration::from_secs(1);

/// Scenario 1: primary frozen at the default 30 s check interval: the viewers' stalls move
/// the publisher, and every viewer follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_is_noticed_by_the_audience_and_everyone_moves() {
    let _one = serial().await;
    let r = scenario_frozen_primary(3, 30 * SEC).await;
    println!("frozen primary, 3 viewers, 30 s checks: {r:?}");
    // Issue 19's target: the viewers' gap under 5 s (about 30 s before); asserted with
    // headroom for a loaded machine, the figure comes from the benchmark.
    assert!(r.worst_gap() < 10 * SEC, "{r:?}");
    assert!(r.decided < 8 * SEC, "{r:?}");
}

/// Scenario 2: one viewer's own player freezes; the publisher and the other viewers do not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_viewer_stalling_alone_moves_nobody() {
    let _one = serial().await;
    let r = scenario_one_viewer_stalls(4).await;
    println!("one viewer stalls: {r:?}");
    let (viewers, stalled, outage) = r.audience;
    assert_eq!((viewers, stalled, outage), (4, 1, false), "{r:?}");
    assert_eq!(r.moves, 0, "{r:?}");
}
