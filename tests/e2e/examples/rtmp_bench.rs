//! RTMP failover benchmark: runs the real-media scenarios of `tests/rtmp.rs` and
//! `tests/rtmp_viewer.rs` several times and prints detection time, recovery time, migration
//! durations, planned-migration gaps and the gap a viewer sees (median and range).
//! Then the placement scenarios of `tests/rtmp_placement.rs` (issue 14): a viewer engine
//! following its publisher when primary is killed and when only the publisher's SDK fails, and
//! a viewer switching to its publisher's hot standby when primary is killed.
//! Then issue 19: primary frozen, the audience's stalls move the publisher.
//! `cargo run --release -p streamguard-e2e --example rtmp_bench -- [runs] [placement|audience]`
//! (default 5 runs; `placement` or `audience` runs only those scenarios).

use std::time::Duration;
use streamguard_e2e::*;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let only = std::env::args().nth(2);
    if only.as_deref() == Some("audience") {
        return audience(runs).await;
    }
    if only.is_none() {
        failover(runs).await;
        println!();
    }
    placement(runs).await;
    if only.is_none() {
        println!();
        audience(runs).await;
    }
}

/// Issue 19, scenario 1: primary frozen; three viewers' stalls move the publisher.
async fn audience(runs: usize) {
    let secs = Duration::from_secs;
    println!("| primary frozen (SIGSTOP), 3 viewer engines ({runs} runs, median (min–max)) | freeze → publisher decides (`AudienceStalled`) | freeze → publisher live on backup | worst viewer gap (own frames) | target |");
    println!("|---|---|---|---|---|");
    for interval in [secs(30), secs(3)] {
        let mut r = Vec::new();
        for i in 0..runs {
            eprintln!("audience run {}/{runs}: checks every {interval:?}", i + 1);
            let f = scenario_frozen_primary(3, interval).await;
            eprintln!("  {f:?}");
            r.push(f);
        }
        println!(
            "| checks every {} s | {} | {} | {} | viewers' gap < 5 s (about 30 s before) |",
            interval.as_secs(),
            median_ms(r.iter().map(|f| f.decided).collect()),
            median_ms(r.iter().map(|f| f.publisher_moved).collect()),
            median_ms(r.iter().map(|f| f.worst_gap()).collect()),
        );
    }
}

/// The publisher moves off primary; the viewer follows (push), measured from its frames.
async fn placement(runs: usize) {
    let faults = [PublisherFault::Killed, PublisherFault::LocalError];
    let mut results = [vec![], vec![]];
    for i in 0..runs {
        for (f, r) in faults.iter().zip(results.iter_mut()) {
            eprintln!("placement run {}/{runs}: {f:?}", i + 1);
            let follow = scenario_follow(*f, Learns::Push).await;
            eprintln!("  {follow:?}");
            r.push(follow);
        }
    }
    println!("| publisher leaves primary ({runs} runs, median (min–max)); viewer follows by push | fault → publisher live on backup | publisher live → viewer's first frame on backup | publisher live → viewer `MigrationFinished` | gap the viewer saw (last frame on primary → first on backup) | viewer stayed first | target |");
    println!("|---|---|---|---|---|---|---|");
    for (f, r) in faults.iter().zip(&results) {
        let name = match f {
            PublisherFault::Killed => "primary killed (SIGKILL)",
            PublisherFault::LocalError => "publisher's SDK error on primary only",
        };
        println!(
            "| {name} | {} | {} | {} | {} | {}/{runs} | viewer live < 2 s after the publisher |",
            median_ms(r.iter().map(|f| f.publisher_moved).collect()),
            median_ms(r.iter().map(|f| f.first_frame).collect()),
            median_ms(r.iter().map(|f| f.follow).collect()),
            median_ms(r.iter().map(|f| f.gap).collect()),
            r.iter().filter(|f| f.viewer_stayed).count(),
        );
    }
    let mut standby = vec![];
    for i in 0..runs {
        eprintln!(
            "placement run {}/{runs}: primary killed with a hot standby",
            i + 1
        );
        let r = scenario_standby().await;
        eprintln!("  {r:?}");
        standby.push(r);
    }
    println!();
    println!("| primary killed, `standby_providers` 1 ({runs} runs, median (min–max)) | kill → viewer live on the standby | kill → publisher promotes the standby | gap the viewer saw (last frame on primary → first on the standby) | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| hot standby on backup | {} | {} | {} | viewer gap < 1 s |",
        median_ms(standby.iter().map(|r| r.viewer_moved).collect()),
        median_ms(standby.iter().map(|r| r.promoted).collect()),
        median_ms(standby.iter().map(|r| r.gap).collect()),
    );
}

async fn failover(runs: usize) {
    let mut killed = vec![];
    let mut frozen = vec![];
    let (mut bbb, mut mbb) = (vec![], vec![]);
    let mut viewer = [vec![], vec![], vec![]];
    let faults = [Fault::Planned, Fault::Killed, Fault::Frozen];
    for i in 0..runs {
        eprintln!("run {}/{runs}", i + 1);
        killed.push(scenario_killed().await);
        frozen.push(scenario_frozen().await);
        bbb.push(scenario_planned(false).await);
        mbb.push(scenario_planned(true).await);
        for (f, v) in faults.iter().zip(viewer.iter_mut()) {
            v.push(scenario_viewer(*f, true).await);
        }
    }
    println!("| scenario ({runs} runs, median (min–max)) | detection (fault → failover decision) | recovery (fault → playable on backup) | migration (`MigrationFinished.duration`) | target |");
    println!("|---|---|---|---|---|");
    for (name, r, target) in [
        ("primary killed (SIGKILL)", &killed, "detected < 2 s"),
        (
            "primary frozen (SIGSTOP), 3 s checks",
            &frozen,
            "detected < 10 s",
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} | {target} |",
            median_ms(r.iter().map(|r| r.detected).collect()),
            median_ms(r.iter().map(|r| r.playable).collect()),
            median_ms(r.iter().map(|r| r.migration).collect()),
        );
    }
    println!();
    println!("| planned migration (admin priority switch) | gap without a provider | migration (`MigrationFinished.duration`) | target |");
    println!("|---|---|---|---|");
    for (name, p, target) in [
        ("break-before-make", &bbb, ""),
        ("make-before-break", &mbb, "gap < 1 s"),
    ] {
        println!(
            "| {name} | {} | {} | {target} |",
            median_ms(p.iter().map(|p| p.gap).collect()),
            median_ms(p.iter().map(|p| p.duration).collect()),
        );
    }
    println!();
    println!("| viewer engine (make-before-break), fault on primary | viewer's failover decision | gap the viewer saw (last frame on primary → first on backup) | fault → first frame on backup |");
    println!("|---|---|---|---|");
    for (f, v) in faults.iter().zip(viewer) {
        println!(
            "| {f:?} | {} | {} | {} |",
            median_ms(v.iter().map(|g| g.viewer_detected).collect()),
            median_ms(v.iter().map(|g| g.gap).collect()),
            median_ms(v.iter().map(|g| g.recovered).collect()),
        );
    }
}
