//! The `streamguard check` binary end to end with the probe stub: report contents, profile
//! failover, limits (from the stub's own start/end stamps), phase 1 only, probe timeouts,
//! Ctrl-C, several processes sharing Redis, and Redis dying mid-run.

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const ACCOUNTS: &str = r#"{"accounts": [
  {"name": "prov", "url_prefix": "http://dead.primary/", "profiles": [
    {"name": "main", "max_streams": 2},
    {"name": "backup", "max_streams": 3, "replace_prefix": "http://ok.backup/"}]}
]}"#;

#[test]
fn a_run_fails_over_between_profiles_within_limits_and_reports_json_and_csv() {
    let dir = TempDir::new("report");
    let mut entries: Vec<(String, String)> = (0..12)
        .map(|i| {
            (
                format!("Channel {i}, HD"),
                format!("http://dead.primary/ch{i}"),
            )
        })
        .collect();
    entries.extend((0..3).map(|i| (format!("Fine {i}"), format!("http://fine.example/{i}"))));
    entries.extend((0..2).map(|i| (format!("Gone {i}"), format!("http://gone.example/dead{i}"))));
    let list = dir.write("list.m3u", &playlist(&entries));
    let accounts = dir.write("accounts.json", ACCOUNTS);
    let log = dir.path("stub.log");
    let out = dir.path("out");
    let mut cmd = checker(&[
        "--playlist",
        list.to_str().unwrap(),
        "--accounts",
        accounts.to_str().unwrap(),
        "--report",
        out.to_str().unwrap(),
        "--concurrency",
        "4",
        "--retries",
        "1",
        "--retry-delay",
        "50ms",
        "--probe-cmd",
        STUB,
    ]);
    cmd.env("STUB_DELAY", "0.05").env("STUB_LOG", &log);
    let started = Instant::now();
    let o = run_bounded(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("[streamguard]"), "progress line: {stderr}");

    let r = report_json(&out);
    assert_eq!(r["summary"]["checked"], 17);
    assert_eq!(r["summary"]["counts"]["ok"], 15);
    assert_eq!(r["summary"]["counts"]["dead"], 2);
    assert_eq!(r["summary"]["interrupted"], false);
    let s = by_index(&r);
    // Phase 1 sends a stream straight to `backup` while `main` is busy; the ones that found
    // `main` free failed there first (1 retry) and then moved on.
    let (&fi, failover) = s
        .iter()
        .find(|(_, v)| v["profiles_tried"].as_array().unwrap().len() == 2)
        .expect("some stream failed over from main to backup");
    assert!(fi < 12);
    assert_eq!(failover["name"], format!("Channel {fi}, HD"));
    assert_eq!(failover["status"], "ok");
    assert_eq!(failover["profile"], "prov/backup");
    assert_eq!(failover["probed_url"], format!("http://ok.backup/ch{fi}"));
    assert_eq!(failover["attempts"], 3, "2 on main (1 retry), 1 on backup");
    assert_eq!(
        failover["profiles_tried"],
        serde_json::json!(["prov/main", "prov/backup"])
    );
    assert_eq!(failover["video_codec"], "h264");
    assert_eq!(failover["resolution"], "1280x720");
    assert_eq!(failover["fps"], 25.0);
    assert_eq!(failover["bitrate"], 2_500_000);
    assert_eq!(failover["audio_codec"], "aac");
    let dead = &s[&15];
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["profile"], "unassigned/direct");
    assert!(dead["error"]
        .as_str()
        .unwrap()
        .contains("Connection refused"));
    assert!(
        (started.elapsed().as_millis() as u64) >= dead["elapsed_ms"].as_u64().unwrap(),
        "elapsed is per stream"
    );

    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 18);
    assert!(lines[0].starts_with("index,name,url,status,profile"));
    let line = lines[1 + fi as usize];
    assert!(
        line.starts_with(&format!(
            "{fi},\"Channel {fi}, HD\",http://dead.primary/ch{fi},ok,prov/backup,http://ok.backup/ch{fi},h264,1280x720,25,2500000,aac,3,prov/main;prov/backup,"
        )),
        "{line}"
    );

    let events = stub_log(&log);
    let attempts: u64 = s.values().map(|v| v["attempts"].as_u64().unwrap()).sum();
    assert_eq!(events.iter().filter(|e| e.start).count() as u64, attempts);
    assert!(peak_concurrency(&events, "http://dead.primary/") <= 2);
    assert!(peak_concurrency(&events, "http://ok.backup/") <= 3);
    let all = peak_concurrency(&events, "http");
    assert!(all <= 4, "global limit 4, saw {all}");
    assert!(all >= 3, "the run had parallelism: {all}");
}

#[test]
fn phase_1_only_reports_full_profiles_instead_of_waiting() {
    let dir = TempDir::new("phase1");
    let entries: Vec<(String, String)> = (0..3)
        .map(|i| (format!("c{i}"), format!("http://one.slot/c{i}")))
        .collect();
    let list = dir.write("list.m3u", &playlist(&entries));
    let accounts = dir.write(
        "accounts.json",
        r#"{"accounts":[{"name":"solo","url_prefix":"http://one.slot/","profiles":[{"name":"only","max_streams":1}]}]}"#,
    );
    let out = dir.path("out");
    let mut cmd = checker(&[
        "--playlist",
        list.to_str().unwrap(),
        "--accounts",
        accounts.to_str().unwrap(),
        "--report",
        out.to_str().unwrap(),
        "--concurrency",
        "3",
        "--no-wait-for-full",
        "--no-progress",
        "--probe-cmd",
        STUB,
    ]);
    cmd.env("STUB_DELAY", "0.5");
    let o = run_bounded(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report_json(&out);
    let counts = &r["summary"]["counts"];
    assert_eq!(
        counts["ok"].as_u64().unwrap() + counts["no_slot"].as_u64().unwrap(),
        3
    );
    assert!(counts["no_slot"].as_u64().unwrap() >= 1, "{r}");
    let full = r["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] == "no_slot")
        .unwrap();
    assert_eq!(full["attempts"], 0);
    assert!(full["error"].as_str().unwrap().contains("solo/only"));
}

#[test]
fn a_hanging_probe_is_killed_at_its_timeout() {
    let dir = TempDir::new("timeout");
    let list = dir.write(
        "list.m3u",
        &playlist(&[("Hangs".into(), "http://x/slow".into())]),
    );
    let log = dir.path("stub.log");
    let out = dir.path("out");
    let mut cmd = checker(&[
        "--playlist",
        list.to_str().unwrap(),
        "--report",
        out.to_str().unwrap(),
        "--probe-timeout",
        "300ms",
        "--retry-delay",
        "10ms",
        "--no-progress",
        "--probe-cmd",
        STUB,
    ]);
    cmd.env("STUB_LOG", &log);
    let o = run_bounded(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report_json(&out);
    let s = &r["streams"][0];
    assert_eq!(s["status"], "timeout");
    assert_eq!(s["attempts"], 2);
    assert!(s["elapsed_ms"].as_u64().unwrap() < 5000);
    for e in stub_log(&log) {
        assert!(is_dead(e.pid), "probe {} still running", e.pid);
    }
}

#[test]
fn a_missing_probe_program_stops_the_run_with_a_clear_error() {
    let dir = TempDir::new("noprobe");
    let list = dir.write("list.m3u", &playlist(&[("a".into(), "http://x/1".into())]));
    let out = dir.path("out");
    let o = run_bounded(
        checker(&[
            "--playlist",
            list.to_str().unwrap(),
            "--report",
            out.to_str().unwrap(),
            "--no-progress",
            "--probe-cmd",
            "/nonexistent/ffprobe",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cannot run probe program"), "{stderr}");
    let r = report_json(&out);
    assert_eq!(r["summary"]["checked"], 0);
}

#[test]
fn ctrl_c_stops_cleanly_and_keeps_the_partial_report() {
    let dir = TempDir::new("ctrlc");
    let entries = vec![
        ("fast 0".to_string(), "http://x/fast0".to_string()),
        ("fast 1".to_string(), "http://x/fast1".to_string()),
        ("slow 0".to_string(), "http://x/slow0".to_string()),
        ("slow 1".to_string(), "http://x/slow1".to_string()),
        ("slow 2".to_string(), "http://x/slow2".to_string()),
    ];
    let list = dir.write("list.m3u", &playlist(&entries));
    let log = dir.path("stub.log");
    let out = dir.path("out");
    let child = checker(&[
        "--playlist",
        list.to_str().unwrap(),
        "--report",
        out.to_str().unwrap(),
        "--concurrency",
        "5",
        "--no-progress",
        "--probe-timeout",
        "60s",
        "--probe-cmd",
        STUB,
    ])
    .env("STUB_LOG", &log)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id();
    wait_until(
        Duration::from_secs(20),
        "2 fast probes done, 3 slow ones running",
        || {
            let ev = stub_log(&log);
            ev.iter().filter(|e| !e.start).count() == 2
                && ev
                    .iter()
                    .filter(|e| e.start && e.url.contains("slow"))
                    .count()
                    == 3
        },
    );
    let sent = Instant::now();
    signal(pid, libc::SIGINT);
    let o = wait_bounded(child, Duration::from_secs(10));
    assert!(sent.elapsed() < Duration::from_secs(5), "stopped promptly");
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = report_json(&out);
    assert_eq!(r["summary"]["interrupted"], true);
    assert_eq!(r["summary"]["checked"], 2);
    assert_eq!(r["summary"]["counts"]["ok"], 2);
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    for e in stub_log(&log).iter().filter(|e| e.url.contains("slow")) {
        assert!(is_dead(e.pid), "slow probe {} survived Ctrl-C", e.pid);
    }
}

fn redis_run(
    dir: &TempDir,
    redis: &RedisServer,
    list: &std::path::Path,
    accounts: &std::path::Path,
    name: &str,
    log: &std::path::Path,
) -> std::process::Child {
    // A short backend grace: the Redis-dies test waits for the run to give up.
    redis_checker(
        dir,
        &redis.url(),
        list,
        accounts,
        name,
        log,
        &["--backend-grace", "2s"],
    )
    .spawn()
    .unwrap()
}

#[test]
fn several_processes_split_the_playlist_and_share_limits_through_redis() {
    let redis = RedisServer::start();
    let dir = TempDir::new("split");
    let entries: Vec<(String, String)> = (0..60)
        .map(|i| (format!("c{i}"), format!("http://shared.example/c{i}")))
        .collect();
    let list = dir.write("list.m3u", &playlist(&entries));
    let accounts = dir.write(
        "accounts.json",
        r#"{"accounts":[{"name":"shared","url_prefix":"http://shared.example/","profiles":[{"name":"main","max_streams":2},{"name":"alt","max_streams":2,"replace_prefix":"http://alt.example/"}]}]}"#,
    );
    let log = dir.path("stub.log");
    let children: Vec<_> = (0..3)
        .map(|i| redis_run(&dir, &redis, &list, &accounts, &format!("out{i}"), &log))
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| wait_bounded(c, Duration::from_secs(90)))
        .collect();
    let mut seen = std::collections::BTreeMap::new();
    for (i, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = report_json(&dir.path(&format!("out{i}")));
        assert_eq!(r["summary"]["run_id"], "split-test");
        for s in r["streams"].as_array().unwrap() {
            assert_eq!(s["status"], "ok");
            let prev = seen.insert(s["index"].as_u64().unwrap(), i);
            assert!(prev.is_none(), "stream {} checked twice", s["index"]);
        }
    }
    assert_eq!(seen.len(), 60, "every stream checked once");
    let events = stub_log(&log);
    assert_eq!(events.iter().filter(|e| e.start).count(), 60);
    assert!(peak_concurrency(&events, "http://shared.example/") <= 2);
    assert!(peak_concurrency(&events, "http://alt.example/") <= 2);
    let all = peak_concurrency(&events, "http");
    assert!(all <= 3, "global limit 3 across processes, saw {all}");

    // The same run id again finds nothing left to do, and says how to start over.
    let again = wait_bounded(
        redis_run(&dir, &redis, &list, &accounts, "again", &log),
        Duration::from_secs(30),
    );
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("new --run-id"));
    assert_eq!(report_json(&dir.path("again"))["summary"]["checked"], 0);
}

#[test]
fn redis_dying_mid_run_fails_closed_and_keeps_the_partial_report() {
    let mut redis = RedisServer::start();
    let dir = TempDir::new("redisdown");
    let entries: Vec<(String, String)> = (0..40)
        .map(|i| (format!("c{i}"), format!("http://shared.example/c{i}")))
        .collect();
    let list = dir.write("list.m3u", &playlist(&entries));
    let accounts = dir.write(
        "accounts.json",
        r#"{"accounts":[{"name":"shared","url_prefix":"http://shared.example/","profiles":[{"name":"main","max_streams":2}]}]}"#,
    );
    let log = dir.path("stub.log");
    let child = redis_run(&dir, &redis, &list, &accounts, "out", &log);
    wait_until(Duration::from_secs(20), "a few probes done", || {
        stub_log(&log).iter().filter(|e| !e.start).count() >= 4
    });
    redis.stop();
    let killed_at = unix_nanos();
    let done_before = stub_log(&log).iter().filter(|e| !e.start).count() as u64;
    let o = wait_bounded(child, Duration::from_secs(30));
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = report_json(&dir.path("out"));
    let error = r["summary"]["error"].as_str().unwrap();
    assert!(error.contains("backend grace (2s)"), "{error}");
    assert_eq!(error.matches("capacity backend").count(), 1, "{error}");
    let checked = r["summary"]["checked"].as_u64().unwrap();
    // Every probe that finished is in the report, except at most the two (max_streams) whose
    // workers were stopped by the failure before they saw their probe end.
    assert!(
        checked + 2 >= done_before && checked < 40,
        "partial: {checked} of {done_before} finished before Redis died"
    );
    // No probe starts once Redis is gone (a slot granted just before may still start).
    let late = stub_log(&log)
        .iter()
        .filter(|e| e.start && e.nanos > killed_at + 500_000_000)
        .count();
    assert_eq!(late, 0, "probes started without a slot");
}
