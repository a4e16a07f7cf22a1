//! Helpers for the checker's end-to-end tests: temporary directories, the `streamguard`
//! binary, the probe stub and its log, and a throwaway Redis (shared with streamguard-redis's
//! tests). Every process is stopped by PID and every wait is bounded.

#![allow(dead_code)]

#[path = "../../../capacity-redis/tests/common/mod.rs"]
mod redis_server;

#[allow(unused_imports)] // each test binary uses a different part
pub use redis_server::{free_port, LossyProxy, RedisServer};

pub mod media;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_streamguard");
pub const STUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ffprobe-stub.sh");

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "sg-checker-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, body: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, body).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An M3U playlist of (name, url) pairs.
pub fn playlist(entries: &[(String, String)]) -> String {
    let mut s = String::from("#EXTM3U\n");
    for (name, url) in entries {
        s.push_str(&format!("#EXTINF:-1 group-title=\"test\",{name}\n{url}\n"));
    }
    s
}

/// The binary under test, pinned when first asked for: a hard link (a copy across file
/// systems) taken once per test process, so a build in another worktree sharing the target
/// directory, which replaces `BIN`, cannot swap the binary in the middle of a test run.
pub fn bin() -> &'static Path {
    static PINNED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PINNED.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sg-checker-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pinned = dir.join("streamguard");
        let _ = std::fs::remove_file(&pinned);
        if std::fs::hard_link(BIN, &pinned).is_err() {
            std::fs::copy(BIN, &pinned).unwrap();
        }
        pinned
    })
}

/// `streamguard check` with the given extra arguments (not yet started).
pub fn checker(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("check").args(args).stdin(Stdio::null());
    c
}

/// `streamguard check` on Redis at `url` (run id `split-test`, global limit 3, probe stub with
/// a 50 ms delay logging to `log`, no progress line), writing report `name` in `dir`; `extra`
/// arguments come last. Not yet started; its output is piped.
pub fn redis_checker(
    dir: &TempDir,
    url: &str,
    list: &Path,
    accounts: &Path,
    name: &str,
    log: &Path,
    extra: &[&str],
) -> Command {
    let out = dir.path(name);
    let mut args = vec![
        "--playlist",
        list.to_str().unwrap(),
        "--accounts",
        accounts.to_str().unwrap(),
        "--report",
        out.to_str().unwrap(),
        "--redis",
        url,
        "--concurrency",
        "3",
        "--run-id",
        "split-test",
        "--no-progress",
        "--probe-cmd",
        STUB,
    ];
    args.extend_from_slice(extra);
    let mut c = checker(&args);
    c.env("STUB_DELAY", "0.05")
        .env("STUB_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs a command to the end, killing it if it takes longer than `bound`.
pub fn run_bounded(mut cmd: Command, bound: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, bound)
}

pub fn wait_bounded(child: Child, bound: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(bound) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            signal(pid, libc::SIGKILL);
            panic!("process {pid} did not finish within {bound:?}");
        }
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a PID we started; no memory is touched.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// The report's JSON.
pub fn report_json(base: &Path) -> serde_json::Value {
    let p = base.with_extension("json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn by_index(report: &serde_json::Value) -> HashMap<u64, serde_json::Value> {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["index"].as_u64().unwrap(), s.clone()))
        .collect()
}

/// One line of the stub's log.
#[derive(Debug, Clone)]
pub struct StubEvent {
    pub start: bool,
    pub url: String,
    pub nanos: u128,
    pub pid: u32,
}

pub fn stub_log(path: &Path) -> Vec<StubEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let kind = it.next()?;
            Some(StubEvent {
                start: kind == "start",
                url: it.next()?.to_string(),
                nanos: it.next()?.parse().ok()?,
                pid: it.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// The most probes whose URL starts with `prefix` that ran at the same time, from the stub's
/// start/end stamps (each probe's interval lies inside its lease).
pub fn peak_concurrency(events: &[StubEvent], prefix: &str) -> usize {
    let mut edges: Vec<(u128, i32)> = events
        .iter()
        .filter(|e| e.url.starts_with(prefix))
        .map(|e| (e.nanos, if e.start { 1 } else { -1 }))
        .collect();
    // Ends before starts at equal stamps: touching intervals do not overlap.
    edges.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

/// Polls `cond` (external processes' files) every 20 ms, at most `bound`.
pub fn wait_until(bound: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// True when the process is gone or a zombie.
pub fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The argument lists the probe stub was called with (one per probe, from `STUB_ARGV`).
pub fn stub_argv(dir: &Path) -> Vec<Vec<String>> {
    let mut calls: Vec<Vec<String>> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|f| std::fs::read(f.ok()?.path()).ok())
                .map(|bytes| {
                    bytes
                        .split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    calls.sort_by(|a: &Vec<String>, b| a.last().cmp(&b.last()));
    calls
}

/// The value after `flag` in one probe's arguments.
pub fn arg_after<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    let i = argv.iter().position(|a| a == flag)?;
    argv.get(i + 1).map(String::as_str)
}

/// `streamguard check --playlist LIST --report OUT` plus `extra` arguments (not yet started).
pub fn check_cmd(list: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = checker(&[
        "--playlist",
        list.to_str().unwrap(),
        "--report",
        out.to_str().unwrap(),
    ]);
    c.args(extra);
    c
}

/// A directory for [`stub_argv`] under `dir`, made.
pub fn argv_dir(dir: &TempDir) -> PathBuf {
    let p = dir.path("argv");
    std::fs::create_dir_all(&p).unwrap();
    p
}
