//! `RedisLedger` through Redis hiccups, against a real `redis-server` on loopback: a release
//! or an acquire whose reply is lost, a stall (SIGSTOP/SIGCONT) longer than a lease, a restart
//! that loses every key, and `CLIENT KILL` under a waiter.

mod common;

use common::{wait_for_subscriber, LossyProxy, RedisServer};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use streamguard::capacity::{
    Candidate, CapacityError, Grant, Lease, SlotLedger, SlotRequest, Usage,
};
use streamguard_redis::{RedisLedger, RedisLedgerConfig};

fn req(holder: &str, ttl: Duration, cands: &[(&str, u32)]) -> SlotRequest {
    SlotRequest::new(
        holder,
        ttl,
        cands
            .iter()
            .map(|(a, m)| Candidate::new(*a, Some(*m)))
            .collect(),
    )
}

fn config(url: &str, prefix: &str) -> RedisLedgerConfig {
    let mut cfg = RedisLedgerConfig::new(url);
    cfg.prefix = prefix.to_string();
    cfg.op_timeout = Duration::from_millis(500);
    cfg.retries = 2;
    cfg
}

async fn ledger(cfg: RedisLedgerConfig) -> RedisLedger {
    RedisLedger::connect(cfg).await.expect("connect")
}

async fn take(l: &dyn SlotLedger, r: &SlotRequest) -> Lease {
    match l.try_acquire(r).await.unwrap() {
        Grant::Leased(lease) => lease,
        g => panic!("expected a lease, got {g:?}"),
    }
}

async fn usage(l: &dyn SlotLedger, account: &str) -> Usage {
    l.usage(account).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_reply_was_lost_frees_exactly_one_slot() {
    let redis = RedisServer::start();
    let proxy = LossyProxy::start(redis.port);
    let lossy = ledger(config(&proxy.url(), "{r1}")).await;
    let observer = ledger(config(&redis.url(), "{r1}")).await;
    let ttl = Duration::from_secs(30);
    let one = take(&lossy, &req("one", ttl, &[("a", 2)])).await;
    let two = take(&lossy, &req("two", ttl, &[("a", 2)])).await;
    assert_eq!(usage(&observer, "a").await.account, 2);

    // Redis removes the lease, the answer never arrives, the ledger asks again.
    proxy.drop_next.store(true, Ordering::SeqCst);
    lossy
        .release(&one)
        .await
        .expect("retried after the lost reply");
    assert_eq!(proxy.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(usage(&observer, "a").await.account, 1, "exactly one freed");
    // A caller retrying on its own frees nothing more.
    assert!(!lossy.release(&one).await.unwrap());
    assert_eq!(usage(&observer, "a").await.account, 1);
    lossy
        .renew(&two)
        .await
        .expect("the other lease is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_whose_reply_was_lost_is_retried_under_its_id_or_given_back() {
    let redis = RedisServer::start();
    let proxy = LossyProxy::start(redis.port);
    let observer = ledger(config(&redis.url(), "{r2}")).await;
    let ttl = Duration::from_secs(1);

    // Retried: the second try finds the lease the first one took.
    let lossy = ledger(config(&proxy.url(), "{r2}")).await;
    proxy.drop_next.store(true, Ordering::SeqCst);
    let lease = take(&lossy, &req("h", ttl, &[("a", 2)])).await;
    assert_eq!(usage(&observer, "a").await.account, 1, "one slot, not two");
    lossy.release(&lease).await.unwrap();

    // Not retried (the caller gave up): the slot it took is given back in the background as
    // soon as Redis answers, long before its TTL (30 s) would free it.
    let mut cfg = config(&proxy.url(), "{r2}");
    cfg.retries = 0;
    let no_retry = ledger(cfg).await;
    proxy.drop_next.store(true, Ordering::SeqCst);
    let asked = Instant::now();
    let e = no_retry
        .try_acquire(&req("g", Duration::from_secs(30), &[("a", 2)]))
        .await
        .unwrap_err();
    assert!(matches!(e, CapacityError::Unavailable(_)), "{e:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while usage(&observer, "a").await.account > 0 {
        assert!(
            Instant::now() < deadline,
            "the orphan lease was never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let freed = asked.elapsed();
    assert!(freed < Duration::from_secs(2), "{freed:?}");
}

/// Redis stalls for `d` (the fault lasts this long; nothing is waited for).
async fn stall(redis: &RedisServer, d: Duration) {
    redis.pause();
    tokio::time::sleep(d).await;
    redis.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_stall_longer_than_a_lease_its_holder_reclaims_it_unless_the_slot_was_taken() {
    let redis = RedisServer::start();
    let a = ledger(config(&redis.url(), "{r3}")).await;
    let b = ledger(config(&redis.url(), "{r3}")).await;
    let ttl = Duration::from_secs(1);
    let kept = take(&a, &req("kept", ttl, &[("x", 1)])).await;
    let taken = take(&a, &req("taken", ttl, &[("y", 1)])).await;
    stall(&redis, Duration::from_millis(1500)).await;
    // Both leases expired in Redis time. Another holder takes y's slot before a renews.
    let other = take(&b, &req("other", ttl, &[("y", 1)])).await;
    a.renew(&kept).await.expect("nobody took x: reclaimed");
    assert_eq!(usage(&b, "x").await.account, 1);
    let e = a.renew(&taken).await.unwrap_err();
    assert!(matches!(e, CapacityError::LeaseLost { .. }), "{e:?}");
    assert_eq!(usage(&b, "y").await.account, 1, "y's limit holds");
    b.release(&other).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_holders_reclaim_their_leases_and_nothing_new_is_granted_meanwhile() {
    let mut redis = RedisServer::start();
    let window = Duration::from_millis(1500);
    let mut cfg = config(&redis.url(), "{r4}");
    cfg.global_limit = Some(3);
    cfg.rebuild_window = window;
    let (a, b) = (ledger(cfg.clone()).await, ledger(cfg).await);
    let ttl = Duration::from_secs(30);
    let x1 = take(&a, &req("x1", ttl, &[("x", 2)])).await;
    let x2 = take(&a, &req("x2", ttl, &[("x", 2)])).await;
    let y1 = take(&b, &req("y1", ttl, &[("y", 2)])).await;

    redis.restart();
    let restarted = Instant::now();
    // y has room of its own and the global count shows none taken, but the leases held
    // before are not known yet: nothing is granted.
    let first = b.try_acquire(&req("new", ttl, &[("y", 2)])).await.unwrap();
    assert_eq!(first, Grant::Full { with_room: vec![0] });
    for (l, lease) in [(&a, &x1), (&a, &x2), (&b, &y1)] {
        l.renew(lease).await.expect("reclaimed");
    }
    assert_eq!(
        usage(&a, "x").await,
        Usage {
            global: 3,
            account: 2
        }
    );
    // A waiter gets nothing until the window ends, then only what the limits allow.
    a.release(&x2).await.unwrap();
    let got = b
        .acquire(&req("w", ttl, &[("y", 2)]), Duration::from_secs(10))
        .await
        .unwrap();
    let waited = restarted.elapsed();
    assert!(waited >= window, "granted {waited:?} after the restart");
    assert_eq!(got.account, "y");
    assert_eq!(
        usage(&a, "y").await,
        Usage {
            global: 3,
            account: 2
        }
    );
    assert_eq!(
        b.try_acquire(&req("late", ttl, &[("y", 5)])).await.unwrap(),
        Grant::Full { with_room: vec![0] },
        "global limit 3 holds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_is_ridden_out_and_a_waiter_is_still_woken_by_pubsub() {
    let redis = RedisServer::start();
    let holder = ledger(config(&redis.url(), "{r5}")).await;
    let mut cfg = config(&redis.url(), "{r5}");
    // Only a pub/sub message (on a re-established subscription) can wake the waiter in time.
    cfg.poll_interval = Duration::from_secs(60);
    let waiter = ledger(cfg).await;
    let ttl = Duration::from_secs(30);
    let held = take(&holder, &req("h", ttl, &[("a", 1)])).await;
    let w = tokio::spawn(async move {
        waiter
            .acquire(&req("w", ttl, &[("a", 1)]), Duration::from_secs(30))
            .await
    });
    wait_for_subscriber(&redis.url(), "{r5}:released").await;
    assert!(redis.kill_clients() >= 2);
    holder.renew(&held).await.expect("reconnected");
    wait_for_subscriber(&redis.url(), "{r5}:released").await;
    let released = Instant::now();
    holder.release(&held).await.unwrap();
    let lease = tokio::time::timeout(Duration::from_secs(10), w)
        .await
        .expect("woken in time")
        .unwrap()
        .unwrap();
    assert_eq!(lease.holder, "w");
    let latency = released.elapsed();
    assert!(latency < Duration::from_secs(2), "woken after {latency:?}");
}
