//! The in-memory capacity ledger under real parallelism (a multi-thread runtime, no paused
//! clock): many tasks taking, holding across scheduling points, and releasing slots never
//! exceed a limit, every waiter is served, and nothing is left held. The paused-time unit tests
//! in `src/capacity.rs` cover the timing rules.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use streamguard::capacity::{
    Candidate, Grant, InMemoryLedger, Pick, SelectionPolicy, SlotLedger, SlotRequest,
    TwoPhaseSelection, Usage,
};

const LIMITS: [(&str, u32); 3] = [("a", 2), ("b", 3), ("c", 0)];
const GLOBAL: u32 = 6;

fn slot(account: &str) -> usize {
    LIMITS.iter().position(|(a, _)| *a == account).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_under_parallel_tasks() {
    let ledger = InMemoryLedger::new(Some(GLOBAL));
    let held: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
    let peak: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
    let mut tasks = Vec::new();
    for t in 0..64usize {
        let (ledger, held, peak) = (ledger.clone(), held.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            for r in 0..200usize {
                let first = (t + r) % 3;
                let candidates: Vec<Candidate> = (0..1 + (t * 5 + r) % 3)
                    .map(|k| LIMITS[(first + k) % 3])
                    .map(|(a, m)| Candidate::new(a, Some(m)))
                    .collect();
                let request =
                    SlotRequest::new(format!("t{t}"), Duration::from_secs(60), candidates);
                let lease = if r % 3 == 0 {
                    match ledger.try_acquire(&request).await.unwrap() {
                        Grant::Leased(lease) => lease,
                        Grant::Full { .. } => continue,
                    }
                } else {
                    ledger
                        .acquire(&request, Duration::from_secs(30))
                        .await
                        .unwrap()
                };
                let k = slot(&lease.account);
                for i in [k, 3] {
                    let now = held[i].fetch_add(1, Ordering::SeqCst) + 1;
                    peak[i].fetch_max(now, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                held[k].fetch_sub(1, Ordering::SeqCst);
                held[3].fetch_sub(1, Ordering::SeqCst);
                assert!(ledger.release(&lease).await.unwrap());
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("no task starved")
            .unwrap();
    }
    let peaks: Vec<usize> = peak.iter().map(|p| p.load(Ordering::SeqCst)).collect();
    assert!(
        peaks[0] <= 2 && peaks[1] <= 3 && peaks[3] <= GLOBAL as usize,
        "{peaks:?}"
    );
    assert!(peaks[3] >= 4, "there was contention: {peaks:?}");
    assert_eq!(ledger.usage("a").await.unwrap(), Usage::default());
    assert_eq!(ledger.waiters(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_selections_each_get_a_distinct_profile_in_turn() {
    // Ten streams fail over across two one-slot profiles: each selection hands out each
    // profile once, and no more than one stream holds a profile at a time.
    let ledger: Arc<dyn SlotLedger> = Arc::new(InMemoryLedger::new(None));
    let inside = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = Vec::new();
    for s in 0..10 {
        let (ledger, inside) = (ledger.clone(), inside.clone());
        tasks.push(tokio::spawn(async move {
            let mut sel = TwoPhaseSelection::new(
                format!("stream{s}"),
                Duration::from_secs(60),
                vec![Candidate::new("p1", Some(1)), Candidate::new("p2", Some(1))],
                SelectionPolicy::default(),
            )
            .unwrap();
            let mut tried = Vec::new();
            while let Pick::Leased { lease, .. } = sel.next(&*ledger).await.unwrap() {
                let k = usize::from(lease.account == "p2");
                assert_eq!(inside[k].fetch_add(1, Ordering::SeqCst), 0, "two holders");
                tokio::task::yield_now().await;
                inside[k].fetch_sub(1, Ordering::SeqCst);
                tried.push(lease.account.clone());
                ledger.release(&lease).await.unwrap();
            }
            tried.sort();
            assert_eq!(tried, ["p1", "p2"]);
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("every selection finished")
            .unwrap();
    }
}
