//! Riding out a Redis hiccup, end to end: one and three `streamguard check` processes on a
//! real Redis that stalls (SIGSTOP/SIGCONT) for less and for more than the backend grace,
//! restarts empty on the same port, drops every client (`CLIENT KILL`), or loses replies
//! (a proxy that drops the connection instead of passing a reply on). Every run finishes
//! every stream exactly once (or stops after the grace with a correct partial report), and
//! the limits hold throughout, measured from the probe stub's own start/end stamps.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

const ACCOUNTS: &str = r#"{"accounts":[{"name":"shared","url_prefix":"http://shared.example/","profiles":[{"name":"main","max_streams":2},{"name":"alt","max_streams":2,"replace_prefix":"http://alt.example/"}]}]}"#;

struct Scenario {
    redis: RedisServer,
    dir: TempDir,
    list: std::path::PathBuf,
    accounts: std::path::PathBuf,
    log: std::path::PathBuf,
    n: usize,
}

impl Scenario {
    fn new(tag: &str, n: usize) -> Self {
        let dir = TempDir::new(tag);
        let entries: Vec<(String, String)> = (0..n)
            .map(|i| (format!("c{i}"), format!("http://shared.example/c{i}")))
            .collect();
        Self {
            redis: RedisServer::start(),
            list: dir.write("list.m3u", &playlist(&entries)),
            accounts: dir.write("accounts.json", ACCOUNTS),
            log: dir.path("stub.log"),
            dir,
            n,
        }
    }

    /// `procs` checker processes of one run on `url`, probes taking 0.1 s.
    fn start(&self, procs: usize, url: &str, extra: &[&str]) -> Vec<Child> {
        (0..procs)
            .map(|i| {
                let mut c = redis_checker(
                    &self.dir,
                    url,
                    &self.list,
                    &self.accounts,
                    &format!("out{i}"),
                    &self.log,
                    extra,
                );
                c.env("STUB_DELAY", "0.1");
                c.spawn().unwrap()
            })
            .collect()
    }

    fn probes_ended(&self) -> usize {
        stub_log(&self.log).iter().filter(|e| !e.start).count()
    }

    fn wait_probes_ended(&self, n: usize) {
        wait_until(
            Duration::from_secs(30),
            &format!("{n} probes ended"),
            || self.probes_ended() >= n,
        );
    }

    /// Stream index -> report it is in; panics on a stream reported twice.
    fn reported(&self, procs: usize) -> BTreeMap<usize, usize> {
        let mut seen = BTreeMap::new();
        for i in 0..procs {
            let r = report_json(&self.dir.path(&format!("out{i}")));
            for s in r["streams"].as_array().unwrap() {
                let index = s["index"].as_u64().unwrap() as usize;
                assert_eq!(s["status"], "ok", "{s}");
                let prev = seen.insert(index, i);
                assert!(prev.is_none(), "stream {index} reported twice");
            }
        }
        seen
    }

    /// Stream index -> probes of it that ran to their end (killed ones have no end stamp).
    fn probe_ends(&self) -> BTreeMap<usize, usize> {
        let mut ends = BTreeMap::new();
        for e in stub_log(&self.log).iter().filter(|e| !e.start) {
            // The hanging stream never ends on its own.
            if let Some(index) = e.url.rsplit_once("/c").and_then(|(_, i)| i.parse().ok()) {
                *ends.entry(index).or_insert(0) += 1;
            }
        }
        ends
    }

    fn check_limits(&self) {
        let events = stub_log(&self.log);
        let main = peak_concurrency(&events, "http://shared.example/");
        let alt = peak_concurrency(&events, "http://alt.example/");
        let all = peak_concurrency(&events, "http");
        assert!(
            main <= 2,
            "profile main (limit 2) ran {main} probes at once"
        );
        assert!(alt <= 2, "profile alt (limit 2) ran {alt} probes at once");
        assert!(all <= 3, "global limit 3, saw {all}");
    }

    /// Every process exited 0; every stream was reported once and probed to its end once.
    fn check_exactly_once(&self, outputs: &[Output]) {
        for o in outputs {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let reported = self.reported(outputs.len());
        assert_eq!(reported.len(), self.n, "every stream reported");
        let ends = self.probe_ends();
        let twice: Vec<_> = ends.iter().filter(|(_, &c)| c > 1).collect();
        assert!(twice.is_empty(), "streams checked twice: {twice:?}");
        assert_eq!(ends.len(), self.n);
        self.check_limits();
    }

    /// Probes that started between `from` and `to` (unix nanos).
    fn starts_between(&self, from: u128, to: u128) -> usize {
        stub_log(&self.log)
            .iter()
            .filter(|e| e.start && e.nanos > from && e.nanos < to)
            .count()
    }
}

fn finish(children: Vec<Child>, bound: Duration) -> Vec<Output> {
    children
        .into_iter()
        .map(|c| wait_bounded(c, bound))
        .collect()
}

/// Redis stalls for `stall` (the fault itself lasts this long; nothing is waited for).
fn stall(s: &Scenario, stall: Duration) -> (u128, u128) {
    s.redis.pause();
    let paused = unix_nanos();
    std::thread::sleep(stall);
    s.redis.resume();
    (paused, unix_nanos())
}

fn stall_shorter_than_the_grace(procs: usize) {
    let s = Scenario::new("stall-short", 36);
    let kids = s.start(
        procs,
        &s.redis.url(),
        &["--backend-grace", "8s", "--lease-ttl", "10s"],
    );
    s.wait_probes_ended(8);
    let (paused, resumed) = stall(&s, Duration::from_secs(3));
    let out = finish(kids, Duration::from_secs(60));
    s.check_exactly_once(&out);
    // Nothing new starts while Redis does not answer (a slot granted just before may).
    let during = s.starts_between(paused + 500_000_000, resumed);
    assert_eq!(during, 0, "probes started during the stall");
}

#[test]
fn a_stall_shorter_than_the_grace_pauses_one_process_and_the_run_finishes() {
    stall_shorter_than_the_grace(1);
}

#[test]
fn a_stall_shorter_than_the_grace_pauses_three_processes_and_the_run_finishes() {
    stall_shorter_than_the_grace(3);
}

#[test]
fn a_stall_longer_than_the_grace_stops_every_process_with_a_correct_partial_report() {
    let procs = 3;
    let s = Scenario::new("stall-long", 60);
    let kids = s.start(
        procs,
        &s.redis.url(),
        &["--backend-grace", "2s", "--lease-ttl", "10s"],
    );
    s.wait_probes_ended(8);
    s.redis.pause();
    let paused = Instant::now();
    let paused_nanos = unix_nanos();
    let out = finish(kids, Duration::from_secs(30));
    let stopped_after = paused.elapsed();
    s.redis.resume();
    for o in &out {
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("backend grace"), "{stderr}");
        assert_eq!(
            stderr.matches("capacity backend").count(),
            1,
            "the operation is named once: {stderr}"
        );
    }
    // Detection (~2 s: one bounded call) plus the 2 s grace, then the report.
    assert!(
        stopped_after >= Duration::from_secs(2) && stopped_after < Duration::from_secs(20),
        "stopped {stopped_after:?} after the stall began"
    );
    let reported: BTreeSet<usize> = s.reported(procs).into_keys().collect();
    assert!(reported.len() < s.n, "partial");
    let ended: BTreeSet<usize> = s.probe_ends().into_keys().collect();
    // Every stream reported was probed to its end; every probe that ended is reported, but
    // for at most one per slot whose worker was stopped before it saw its probe end.
    assert!(reported.is_subset(&ended), "{reported:?} vs {ended:?}");
    let unreported = ended.difference(&reported).count();
    assert!(unreported <= 3, "{unreported} finished probes missing");
    for i in 0..procs {
        let r = report_json(&s.dir.path(&format!("out{i}")));
        assert!(r["summary"]["error"]
            .as_str()
            .unwrap()
            .contains("backend grace"));
    }
    assert_eq!(s.starts_between(paused_nanos + 500_000_000, u128::MAX), 0);
    s.check_limits();
}

fn restart_empty(procs: usize) {
    let mut s = Scenario::new("restart", 45);
    let kids = s.start(
        procs,
        &s.redis.url(),
        &["--backend-grace", "10s", "--lease-ttl", "3s"],
    );
    s.wait_probes_ended(12);
    s.redis.restart();
    let out = finish(kids, Duration::from_secs(90));
    // Nobody checked again a stream that was finished before the restart, and the leases
    // rebuilt never exceeded a limit.
    s.check_exactly_once(&out);
}

#[test]
fn a_redis_restarted_empty_is_rebuilt_by_one_process_without_checking_twice() {
    restart_empty(1);
}

#[test]
fn a_redis_restarted_empty_is_rebuilt_by_three_processes_without_checking_twice() {
    restart_empty(3);
}

fn clients_killed(procs: usize) {
    let s = Scenario::new("client-kill", 36);
    let kids = s.start(procs, &s.redis.url(), &["--backend-grace", "10s"]);
    for done in [6, 14, 22] {
        s.wait_probes_ended(done);
        assert!(s.redis.kill_clients() > 0);
    }
    let out = finish(kids, Duration::from_secs(60));
    s.check_exactly_once(&out);
}

#[test]
fn client_kill_is_ridden_out_by_one_process() {
    clients_killed(1);
}

#[test]
fn client_kill_is_ridden_out_by_three_processes() {
    clients_killed(3);
}

fn lost_replies(procs: usize) {
    let s = Scenario::new("lossy", 36);
    let proxy = LossyProxy::start(s.redis.port);
    let kids = s.start(procs, &proxy.url(), &["--backend-grace", "10s"]);
    s.wait_probes_ended(3);
    // From now on every 30th reply (releases, renewals, pops, acquires...) is lost with its
    // connection, after Redis executed the request.
    proxy
        .drop_every
        .store(30, std::sync::atomic::Ordering::SeqCst);
    let out = finish(kids, Duration::from_secs(90));
    let dropped = proxy.dropped.load(std::sync::atomic::Ordering::SeqCst);
    assert!(dropped >= 3, "only {dropped} replies dropped");
    s.check_exactly_once(&out);
    println!("{dropped} replies lost");
}

#[test]
fn lost_replies_are_ridden_out_by_one_process() {
    lost_replies(1);
}

#[test]
fn lost_replies_are_ridden_out_by_three_processes() {
    lost_replies(3);
}

#[test]
fn a_process_whose_share_is_done_stays_to_register_its_streams_after_a_restart() {
    // 12 quick streams and one that hangs (killed after 2 s on each of its two profiles):
    // one process is still checking it while the other has finished its share.
    let dir = TempDir::new("linger");
    let mut entries: Vec<(String, String)> = (0..12)
        .map(|i| (format!("c{i}"), format!("http://shared.example/c{i}")))
        .collect();
    entries.push(("hangs".into(), "http://shared.example/slow".into()));
    let n = entries.len();
    let mut s = Scenario {
        redis: RedisServer::start(),
        list: dir.write("list.m3u", &playlist(&entries)),
        accounts: dir.write("accounts.json", ACCOUNTS),
        log: dir.path("stub.log"),
        dir,
        n,
    };
    let kids = s.start(
        2,
        &s.redis.url(),
        &[
            "--backend-grace",
            "10s",
            "--lease-ttl",
            "3s",
            "--retries",
            "0",
            "--probe-timeout",
            "2s",
        ],
    );
    wait_until(Duration::from_secs(30), "the quick streams checked", || {
        stub_log(&s.log)
            .iter()
            .filter(|e| !e.start && !e.url.contains("slow"))
            .count()
            >= 12
    });
    s.redis.restart();
    let out = finish(kids, Duration::from_secs(60));
    for o in &out {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut seen = BTreeMap::new();
    for i in 0..2 {
        let r = report_json(&s.dir.path(&format!("out{i}")));
        for st in r["streams"].as_array().unwrap() {
            let index = st["index"].as_u64().unwrap();
            assert!(
                seen.insert(index, i).is_none(),
                "stream {index} checked twice"
            );
        }
    }
    assert_eq!(seen.len(), n, "every stream reported once");
    let twice: Vec<_> = s.probe_ends().into_iter().filter(|(_, c)| *c > 1).collect();
    assert!(twice.is_empty(), "probed to the end twice: {twice:?}");
    s.check_limits();
}
