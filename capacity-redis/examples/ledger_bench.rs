//! Slot acquire/release throughput of the three ledgers under the same contention: N clients
//! (default 50) in a loop of try-acquire then release, over 5 accounts of 4 slots and a global
//! limit of 15, for a fixed time each. Run by `checker/bench.sh`, or by hand:
//!
//! ```sh
//! cargo run --release --example ledger_bench -- redis://127.0.0.1:6379/ [clients] [seconds]
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamguard::capacity::{Candidate, Grant, InMemoryLedger, SlotLedger, SlotRequest};
use streamguard_redis::{RedisLedger, RedisLedgerConfig, WatchMultiLedger};

const ACCOUNTS: usize = 5;
const PER_ACCOUNT: u32 = 4;
const GLOBAL: u32 = 15;

#[derive(Default)]
struct Stats {
    attempts: AtomicU64,
    granted: AtomicU64,
    failed: AtomicU64,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// try-acquire, release at once if granted: the cost of one atomic decision.
    Try,
    /// acquire (waiting for a free slot), hold it 1 ms, release: hand-over speed.
    Wait,
}

async fn bench(name: &str, ledger: Arc<dyn SlotLedger>, mode: Mode, clients: usize, secs: u64) {
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (ledger, stats, stop) = (ledger.clone(), stats.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let request = SlotRequest::new(
                format!("client{c}"),
                Duration::from_secs(30),
                vec![Candidate::new(
                    format!("acct{}", c % ACCOUNTS),
                    Some(PER_ACCOUNT),
                )],
            );
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // The in-memory ledger never waits on I/O: without this, its clients would
                // keep both worker threads and starve the timer that ends the run.
                tokio::task::consume_budget().await;
                let t = Instant::now();
                let got = match mode {
                    Mode::Try => ledger.try_acquire(&request).await.map(|g| match g {
                        Grant::Leased(lease) => Some(lease),
                        Grant::Full { .. } => None,
                    }),
                    Mode::Wait => ledger
                        .acquire(&request, Duration::from_secs(30))
                        .await
                        .map(Some),
                };
                latencies.push(t.elapsed().as_nanos() as u64);
                stats.attempts.fetch_add(1, Ordering::Relaxed);
                match got {
                    Ok(Some(lease)) => {
                        stats.granted.fetch_add(1, Ordering::Relaxed);
                        if mode == Mode::Wait {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        ledger.release(&lease).await.expect("release");
                    }
                    Ok(None) => {}
                    Err(_) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let attempts = stats.attempts.load(Ordering::Relaxed);
    let granted = stats.granted.load(Ordering::Relaxed);
    let what = match mode {
        Mode::Try => "try-acquires/s",
        Mode::Wait => "acquires/s    ",
    };
    println!(
        "{name:<18} {:>9.0} {what} {:>8.0} granted+released/s  acquire p50 {:>9.1} us  p99 {:>9.1} us  gave up {}",
        attempts as f64 / elapsed,
        granted as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        stats.failed.load(Ordering::Relaxed),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: ledger_bench REDIS_URL [clients] [seconds]");
    let clients: usize = args.next().map_or(50, |a| a.parse().expect("clients"));
    let secs: u64 = args.next().map_or(5, |a| a.parse().expect("seconds"));
    println!(
        "{clients} clients, {ACCOUNTS} accounts x {PER_ACCOUNT} slots, global limit {GLOBAL}, {secs} s each"
    );
    let memory: Arc<dyn SlotLedger> = Arc::new(InMemoryLedger::new(Some(GLOBAL)));
    let mut config = RedisLedgerConfig::new(url.clone());
    config.prefix = "{bench}:lua".into();
    config.global_limit = Some(GLOBAL);
    let lua: Arc<dyn SlotLedger> = Arc::new(RedisLedger::connect(config).await.expect("redis"));
    // The seed's scheme with bounded retries; waiters poll every 10 ms (the seed: 10 s).
    let watch = Arc::new(
        WatchMultiLedger::connect(
            &url,
            "{bench}:watch",
            Some(GLOBAL),
            20,
            Duration::from_millis(10),
        )
        .await
        .expect("redis"),
    );
    for (mode, title) in [
        (Mode::Try, "try-acquire then release at once"),
        (Mode::Wait, "acquire (wait for a slot), hold 1 ms, release"),
    ] {
        println!("-- {title}");
        bench("in-memory", memory.clone(), mode, clients, secs).await;
        bench("redis lua", lua.clone(), mode, clients, secs).await;
        let before = watch.conflicts();
        bench("redis watch/multi", watch.clone(), mode, clients, secs).await;
        println!(
            "   watch/multi transactions aborted by a concurrent write: {}",
            watch.conflicts() - before
        );
    }
}
