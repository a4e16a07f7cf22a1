//! Detection times on virtual (paused) time with the default config: how long from a
//! provider outage to the failover decision, against the seed app's numbers. Deterministic:
//! no wall-clock noise, the numbers are what the engine's schedule produces.

mod support;

use std::time::Duration;
use streamguard::{EventKind, FailoverReason, HealthStatus, ProviderError, StreamEvent};
use tokio::sync::broadcast::Receiver;
use tokio::time::Instant;

async fn next(rx: &mut Receiver<StreamEvent>, pred: impl Fn(&EventKind) -> bool) -> StreamEvent {
    loop {
        let ev = rx.recv().await.unwrap();
        if pred(&ev.kind) {
            return ev;
        }
    }
}

fn is_decision(e: &EventKind) -> bool {
    matches!(
        e,
        EventKind::Failover {
            reason: FailoverReason::HealthCheckFailed | FailoverReason::ErrorReported,
            ..
        }
    )
}

/// Outage `offset` after going live: (first failed check -> decision, outage -> decision, checks of the healthy provider in 5 min).
async fn outage_at(offset: Duration) -> (Duration, Duration) {
    let (m, r, a) = support::manager(support::config());
    m.start_stream("s").await.unwrap();
    let mut rx = m.subscribe();
    tokio::time::sleep(offset).await;
    let outage = Instant::now();
    r.unhealthy.lock().unwrap().push("a".into());
    a[0].down.store(true, std::sync::atomic::Ordering::Relaxed);
    let first = next(&mut rx, |e| {
        matches!(
            e,
            EventKind::HealthChanged {
                to: HealthStatus::Suspect,
                ..
            }
        )
    })
    .await;
    let decision = next(&mut rx, is_decision).await;
    let from_outage = outage.elapsed();
    m.shutdown().await.unwrap();
    (decision.at - first.at, from_outage)
}

async fn reported() -> Duration {
    let (m, _r, a) = support::manager(support::config());
    m.start_stream("s").await.unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut rx = m.subscribe();
    a[0].down.store(true, std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    m.record_error("s", ProviderError::network("connection lost"))
        .unwrap();
    next(&mut rx, is_decision).await;
    let d = t.elapsed();
    m.shutdown().await.unwrap();
    d
}

async fn healthy_checks() -> u64 {
    let (m, _r, _a) = support::manager(support::config());
    m.start_stream("s").await.unwrap();
    // Just past 5 minutes, so the check due at 300 s has completed.
    tokio::time::sleep(Duration::from_millis(300_500)).await;
    let n = m.provider_stats()[0].health_checks;
    m.shutdown().await.unwrap();
    n
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut first = Vec::new();
        let mut total = Vec::new();
        // Outages spread over one 30 s interval.
        for tenth in 0..10u64 {
            let (f, t) = outage_at(Duration::from_millis(tenth * 3_000 + 1)).await;
            first.push(f);
            total.push(t);
        }
        let max = |v: &[Duration]| v.iter().max().copied().unwrap();
        let min = |v: &[Duration]| v.iter().min().copied().unwrap();
        let rep = reported().await;
        let checks = healthy_checks().await;
        println!("| measure (default config, virtual time) | seed app | target | Streamguard |");
        println!("|---|---|---|---|");
        println!("| first failed check -> failover decision | 60 s (3 x 30 s), then no failover at all | < 5 s | {:.1} s (all 10 runs) |", max(&first).as_secs_f64());
        println!("| outage -> failover decision | up to 120 s | <= 30 s + that | {:.1} s to {:.1} s |", min(&total).as_secs_f64(), max(&total).as_secs_f64());
        println!("| adapter-reported error -> decision | never (errors only counted) | < 1 s | {:.3} s |", rep.as_secs_f64());
        println!("| checks of a healthy provider in 5 min | 10 | 10 | {checks} |");
    });
}
