//! The Redis ledgers against a real `redis-server` on loopback: limits under contention from
//! many tasks and several processes, expiry of a killed holder's lease, wake-up by pub/sub,
//! and failing closed when Redis goes away.

mod common;

use common::{wait_for_subscriber, RedisServer};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamguard::capacity::{
    Candidate, CapacityError, Grant, Lease, SlotLedger, SlotRequest, Usage,
};
use streamguard_redis::{redis, RedisLedger, RedisLedgerConfig, WatchMultiLedger};

const TTL: Duration = Duration::from_secs(30);

fn req(holder: &str, cands: &[(&str, u32)]) -> SlotRequest {
    SlotRequest::new(
        holder,
        TTL,
        cands
            .iter()
            .map(|(a, m)| Candidate::new(*a, Some(*m)))
            .collect(),
    )
}

async fn ledger(url: &str, prefix: &str, global: Option<u32>) -> RedisLedger {
    let mut cfg = RedisLedgerConfig::new(url);
    cfg.prefix = prefix.to_string();
    cfg.global_limit = global;
    RedisLedger::connect(cfg).await.expect("connect")
}

async fn take(l: &dyn SlotLedger, r: &SlotRequest) -> Lease {
    match l.try_acquire(r).await.unwrap() {
        Grant::Leased(lease) => lease,
        g => panic!("expected a lease, got {g:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_usage_and_global_blocking_are_reported() {
    let redis = RedisServer::start();
    let l = ledger(&redis.url(), "{t1}", Some(3)).await;
    let a1 = take(&l, &req("h1", &[("a", 2)])).await;
    take(&l, &req("h2", &[("a", 2)])).await;
    let b = take(&l, &req("h3", &[("a", 2), ("b", 0)])).await;
    assert_eq!(b.account, "b");
    assert_eq!(
        l.try_acquire(&req("h4", &[("a", 2), ("c", 0)]))
            .await
            .unwrap(),
        Grant::Full { with_room: vec![1] }
    );
    assert_eq!(
        l.usage("a").await.unwrap(),
        Usage {
            global: 3,
            account: 2
        }
    );
    assert!(l.release(&a1).await.unwrap());
    assert!(!l.release(&a1).await.unwrap());
    assert_eq!(
        l.usage("a").await.unwrap(),
        Usage {
            global: 2,
            account: 1
        }
    );
    l.renew(&b).await.unwrap();
    assert!(matches!(
        l.renew(&a1).await,
        Err(CapacityError::LeaseLost { .. })
    ));
    assert!(matches!(
        l.try_acquire(&req("", &[("a", 1)])).await,
        Err(CapacityError::Invalid(_))
    ));
}

/// Many tasks take, hold and release slots; an in-process witness counts holders per account.
async fn contend(l: Arc<dyn SlotLedger>, tasks: usize, rounds: usize) -> (Vec<usize>, usize) {
    let limits = [("a", 2u32), ("b", 3), ("c", 0)];
    let held: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
    let peak: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
    let unavailable = Arc::new(AtomicUsize::new(0));
    let mut joins = Vec::new();
    for t in 0..tasks {
        let (l, held, peak, unavailable) =
            (l.clone(), held.clone(), peak.clone(), unavailable.clone());
        joins.push(tokio::spawn(async move {
            for r in 0..rounds {
                let first = (t + r) % 3;
                let cands: Vec<Candidate> = (0..3)
                    .map(|k| limits[(first + k) % 3])
                    .take(1 + (t * 7 + r) % 3)
                    .map(|(a, m)| Candidate::new(a, Some(m)))
                    .collect();
                let request = SlotRequest::new(format!("t{t}"), TTL, cands);
                let got = if r % 2 == 0 {
                    l.acquire(&request, Duration::from_secs(20)).await
                } else {
                    match l.try_acquire(&request).await {
                        Ok(Grant::Leased(lease)) => Ok(lease),
                        Ok(Grant::Full { .. }) => continue,
                        Err(e) => Err(e),
                    }
                };
                let lease = match got {
                    Ok(lease) => lease,
                    // Fail closed: no slot, no work.
                    Err(CapacityError::Unavailable(_)) => {
                        unavailable.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => panic!("{e}"),
                };
                let k = limits
                    .iter()
                    .position(|(a, _)| *a == lease.account)
                    .unwrap();
                for i in [k, 3] {
                    let now = held[i].fetch_add(1, Ordering::SeqCst) + 1;
                    peak[i].fetch_max(now, Ordering::SeqCst);
                }
                // The work the slot covers. Longer than a hand-off between waiters (one pub/sub
                // round trip), so that the limits are really contended.
                tokio::time::sleep(Duration::from_millis(2)).await;
                held[k].fetch_sub(1, Ordering::SeqCst);
                held[3].fetch_sub(1, Ordering::SeqCst);
                assert!(
                    l.release(&lease).await.unwrap(),
                    "lease lost under contention"
                );
            }
        }));
    }
    for j in joins {
        tokio::time::timeout(Duration::from_secs(60), j)
            .await
            .expect("contention finished in time")
            .unwrap();
    }
    (
        peak.iter().map(|p| p.load(Ordering::SeqCst)).collect(),
        unavailable.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_ledger_never_exceeds_limits_with_many_tasks() {
    let redis = RedisServer::start();
    let l = ledger(&redis.url(), "{t2}", Some(4)).await;
    let (peaks, unavailable) = contend(Arc::new(l.clone()), 50, 20).await;
    assert!(peaks[0] <= 2 && peaks[1] <= 3 && peaks[3] <= 4, "{peaks:?}");
    assert_eq!(
        peaks[3], 4,
        "the global limit was reached: there was contention"
    );
    assert_eq!(unavailable, 0);
    assert_eq!(l.usage("a").await.unwrap(), Usage::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_multi_ledger_never_exceeds_limits_and_gives_up_boundedly() {
    let redis = RedisServer::start();
    let l = WatchMultiLedger::connect(&redis.url(), "{t3}", Some(4), 5, Duration::from_millis(5))
        .await
        .unwrap();
    let l = Arc::new(l);
    let (peaks, _unavailable) = contend(l.clone(), 50, 10).await;
    assert!(peaks[0] <= 2 && peaks[1] <= 3 && peaks[3] <= 4, "{peaks:?}");
    assert!(l.conflicts() > 0, "50 clients on one key must conflict");
    assert_eq!(l.usage("a").await.unwrap(), Usage::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_in_another_process_wakes_a_waiter_without_polling() {
    let redis = RedisServer::start();
    let holder = ledger(&redis.url(), "{t4}", None).await;
    let mut cfg = RedisLedgerConfig::new(redis.url());
    cfg.prefix = "{t4}".into();
    // Only a pub/sub message can wake the waiter within this test's bound.
    cfg.poll_interval = Duration::from_secs(60);
    let waiter = RedisLedger::connect(cfg).await.unwrap();
    let held = take(&holder, &req("h", &[("a", 1)])).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let wait = tokio::spawn(async move {
        let _ = started_tx.send(());
        let lease = waiter
            .acquire(&req("w", &[("a", 1)]), Duration::from_secs(30))
            .await;
        (lease, Instant::now())
    });
    started_rx.await.unwrap();
    // Let the waiter subscribe (external state: Redis reports its subscriber).
    wait_for_subscriber(&redis.url(), "{t4}:released").await;
    let released_at = Instant::now();
    assert!(holder.release(&held).await.unwrap());
    let (lease, got_at) = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("woken in time")
        .unwrap();
    assert_eq!(lease.unwrap().holder, "w");
    let latency = got_at - released_at;
    assert!(
        latency < Duration::from_millis(500),
        "woke after {latency:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_fails_closed() {
    let mut redis = RedisServer::start();
    let mut cfg = RedisLedgerConfig::new(redis.url());
    cfg.prefix = "{t5}".into();
    cfg.op_timeout = Duration::from_millis(500);
    let l = RedisLedger::connect(cfg.clone()).await.unwrap();
    let held = take(&l, &req("h", &[("a", 1)])).await;
    redis.stop();
    let start = Instant::now();
    let e = l.try_acquire(&req("x", &[("b", 0)])).await.unwrap_err();
    assert!(matches!(e, CapacityError::Unavailable(_)), "{e:?}");
    // A waiter does not keep waiting on a dead backend, nor treat it as "free".
    let e = l
        .acquire(&req("y", &[("a", 1)]), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(e, CapacityError::Unavailable(_)), "{e:?}");
    assert!(matches!(
        l.renew(&held).await,
        Err(CapacityError::Unavailable(_))
    ));
    assert!(matches!(
        l.release(&held).await,
        Err(CapacityError::Unavailable(_))
    ));
    assert!(matches!(
        l.usage("a").await,
        Err(CapacityError::Unavailable(_))
    ));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "bounded retries: {:?}",
        start.elapsed()
    );
    // And a ledger cannot even be created without Redis.
    assert!(matches!(
        RedisLedger::connect(cfg).await,
        Err(CapacityError::Unavailable(_))
    ));
    let w =
        WatchMultiLedger::connect(&redis.url(), "{t5}", None, 3, Duration::from_millis(10)).await;
    assert!(matches!(w, Err(CapacityError::Unavailable(_))));
}

// ----- several OS processes: this test binary runs itself as the child.

const ROLE: &str = "STREAMGUARD_REDIS_TEST_ROLE";
const URL: &str = "STREAMGUARD_REDIS_TEST_URL";

fn spawn_child(role: &str, url: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_entry",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ROLE, role)
        .env(URL, url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Not a test of its own: the entry point of the child processes (a no-op without the env).
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let url = std::env::var(URL).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match role.as_str() {
            "contend" => child_contend(&url).await,
            "hold" => child_hold(&url).await,
            other => panic!("unknown role {other}"),
        }
    });
}

/// Takes and releases slots in a loop; a witness counter in Redis (separate from the ledger's
/// keys) counts holders across all processes, and the child reports the peaks it saw.
async fn child_contend(url: &str) {
    let l = Arc::new(ledger(url, "{mp}", Some(3)).await);
    let client = redis::Client::open(url).unwrap();
    let con = client.get_multiplexed_async_connection().await.unwrap();
    let peaks = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let mut joins = Vec::new();
    for t in 0..10 {
        let (l, mut con, peaks) = (l.clone(), con.clone(), peaks.clone());
        joins.push(tokio::spawn(async move {
            for _ in 0..15 {
                let lease = l
                    .acquire(
                        &req(&format!("t{t}"), &[("a", 2), ("b", 2)]),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
                let acct = format!("w:{}", lease.account);
                let (n_acct, n_all): (usize, usize) = redis::pipe()
                    .incr(&acct, 1)
                    .incr("w:all", 1)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                peaks.0.fetch_max(n_acct, Ordering::SeqCst);
                peaks.1.fetch_max(n_all, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                let _: (i64, i64) = redis::pipe()
                    .decr(&acct, 1)
                    .decr("w:all", 1)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                l.release(&lease).await.unwrap();
            }
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    println!(
        "RESULT account_peak={} global_peak={}",
        peaks.0.load(Ordering::SeqCst),
        peaks.1.load(Ordering::SeqCst)
    );
}

/// Takes a short lease, says so, and then hangs on to it until killed.
async fn child_hold(url: &str) {
    let l = ledger(url, "{kill}", None).await;
    let r = SlotRequest::new(
        "doomed",
        Duration::from_millis(3000),
        vec![Candidate::new("k", Some(1))],
    );
    let lease = take(&l, &r).await;
    println!("HELD {}", lease.id);
    // Killed by the parent long before this ends.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

fn results(child: std::process::Child) -> HashMap<String, usize> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "child failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    // libtest prints its own words around ours, on the same line.
    let line = text
        .split_once("RESULT ")
        .and_then(|(_, rest)| rest.lines().next())
        .unwrap_or_else(|| panic!("no RESULT in {text}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_never_exceed_the_shared_limits() {
    let redis = RedisServer::start();
    let children: Vec<_> = (0..4)
        .map(|_| spawn_child("contend", &redis.url()))
        .collect();
    let all =
        tokio::task::spawn_blocking(move || children.into_iter().map(results).collect::<Vec<_>>());
    let all = tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("children finished in time")
        .unwrap();
    let account_peak = all.iter().map(|r| r["account_peak"]).max().unwrap();
    let global_peak = all.iter().map(|r| r["global_peak"]).max().unwrap();
    assert!(account_peak <= 2, "account limit 2 exceeded: {all:?}");
    assert!(global_peak <= 3, "global limit 3 exceeded: {all:?}");
    assert!(
        global_peak >= 2,
        "there was contention across processes: {all:?}"
    );
    let l = ledger(&redis.url(), "{mp}", None).await;
    assert_eq!(l.usage("a").await.unwrap(), Usage::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holders_lease_expires_and_the_slot_goes_to_a_waiter() {
    let redis = RedisServer::start();
    let mut child = spawn_child("hold", &redis.url());
    let stdout = child.stdout.take().unwrap();
    let held = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains("HELD "))
        }),
    )
    .await;
    if !matches!(held, Ok(Ok(true))) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the holder did not take its lease: {held:?}");
    }
    child.kill().unwrap(); // SIGKILL: no chance to release
    child.wait().unwrap();
    let killed_at = Instant::now();

    let mut cfg = RedisLedgerConfig::new(redis.url());
    cfg.prefix = "{kill}".into();
    // No poll can help within the bound: only the expiry time reported by the script.
    cfg.poll_interval = Duration::from_secs(60);
    let l = RedisLedger::connect(cfg).await.unwrap();
    assert_eq!(
        l.usage("k").await.unwrap().account,
        1,
        "the dead holder still counts"
    );
    let lease = l
        .acquire(&req("next", &[("k", 1)]), Duration::from_secs(10))
        .await
        .unwrap();
    let after = killed_at.elapsed();
    assert_eq!(lease.holder, "next");
    assert!(after <= Duration::from_millis(3000 + 500), "took {after:?}");
    // The dead lease is gone; the new one is the only one.
    assert_eq!(l.usage("k").await.unwrap().account, 1);
}

// ----- first come, first served across processes ----------------------------------------------

/// Waits (bounded) until `n` waiters are queued in Redis: external state, read by polling.
async fn wait_for_queue(url: &str, prefix: &str, n: usize) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued: usize = redis::cmd("ZCARD")
            .arg(format!("{prefix}:queue"))
            .query_async(&mut con)
            .await
            .unwrap();
        if queued == n {
            return;
        }
        assert!(Instant::now() < deadline, "queue has {queued}, want {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Separate ledgers stand for separate processes (own connections, own release listeners):
/// every release wakes all of them at once, and still the slot goes to the earliest waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_in_different_processes_are_served_first_come_first_served() {
    let redis = RedisServer::start();
    let url = redis.url();
    let holder = ledger(&url, "{fifo}", None).await;
    let mut held = take(&holder, &req("h", &[("a", 1)])).await;
    let mut waiters = Vec::new();
    for i in 0..4 {
        // Waiters that also poll every 5 ms: all of them ask again right after each release,
        // so only the queue keeps the order.
        let mut cfg = RedisLedgerConfig::new(url.clone());
        cfg.prefix = "{fifo}".into();
        cfg.poll_interval = Duration::from_millis(5);
        let l = RedisLedger::connect(cfg).await.unwrap();
        let name = format!("w{i}");
        let task = tokio::spawn({
            let l = l.clone();
            async move {
                l.acquire(&req(&name, &[("a", 1)]), Duration::from_secs(30))
                    .await
            }
        });
        wait_for_queue(&url, "{fifo}", i + 1).await;
        waiters.push((l, task));
    }
    // A newcomer cannot take the slot a waiter is owed.
    let newcomer = ledger(&url, "{fifo}", None).await;
    assert!(matches!(
        newcomer.try_acquire(&req("n", &[("a", 1)])).await.unwrap(),
        Grant::Full { .. }
    ));
    let mut releaser = holder;
    for (i, (l, task)) in waiters.into_iter().enumerate() {
        assert!(releaser.release(&held).await.unwrap());
        let lease = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("served in time")
            .unwrap()
            .unwrap();
        assert_eq!(lease.holder, format!("w{i}"), "served out of order");
        wait_for_queue(&url, "{fifo}", 3 - i).await;
        (releaser, held) = (l, lease);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_gives_up_or_dies_stops_holding_back_the_others() {
    let redis = RedisServer::start();
    let url = redis.url();
    let l = ledger(&url, "{gone}", None).await;
    let held = take(&l, &req("h", &[("a", 1)])).await;
    // A waiter that gives up (its future is dropped) leaves the queue at once.
    let waiter = tokio::spawn({
        let l = l.clone();
        async move {
            l.acquire(&req("w", &[("a", 1)]), Duration::from_secs(30))
                .await
        }
    });
    wait_for_queue(&url, "{gone}", 1).await;
    waiter.abort();
    wait_for_queue(&url, "{gone}", 0).await;

    // A waiter whose process died (it no longer calls) is skipped once its liveness is over:
    // planted directly, first in line, alive for 500 ms.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
    let now_ms = secs * 1000 + micros / 1000;
    let ghost = serde_json::json!({"exp": now_ms + 500, "c": [["a", 1]]}).to_string();
    let _: () = redis::cmd("ZADD")
        .arg("{gone}:queue")
        .arg(0)
        .arg("ghost")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("{gone}:waiters")
        .arg("ghost")
        .arg(ghost)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(l.release(&held).await.unwrap());
    let planted = Instant::now();
    assert!(matches!(
        l.try_acquire(&req("n", &[("a", 1)])).await.unwrap(),
        Grant::Full { .. }
    ));
    // A real waiter behind the ghost gets the slot once the ghost has expired (its poll or a
    // wake-up makes it look again), without anyone releasing anything.
    let mut cfg = RedisLedgerConfig::new(url.clone());
    cfg.prefix = "{gone}".into();
    cfg.poll_interval = Duration::from_millis(100);
    let behind = RedisLedger::connect(cfg).await.unwrap();
    let lease = behind
        .acquire(&req("behind", &[("a", 1)]), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(lease.holder, "behind");
    assert!(
        planted.elapsed() >= Duration::from_millis(400),
        "{:?}",
        planted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_for_a_full_account_does_not_block_other_accounts() {
    let redis = RedisServer::start();
    let url = redis.url();
    let l = ledger(&url, "{other}", Some(2)).await;
    take(&l, &req("h", &[("a", 1)])).await;
    let waiter = tokio::spawn({
        let l = l.clone();
        async move {
            l.acquire(&req("w", &[("a", 1)]), Duration::from_secs(30))
                .await
        }
    });
    wait_for_queue(&url, "{other}", 1).await;
    // One global slot is left and the waiter cannot use it (its only account is full).
    let b = take(&l, &req("n", &[("b", 1)])).await;
    assert_eq!(b.account, "b");
    waiter.abort();
}
