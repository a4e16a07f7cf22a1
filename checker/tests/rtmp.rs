//! The checker against real RTMP streams: nginx with the rtmp module on a free loopback port
//! (its own prefix directory, stopped by SIGTERM to the master PID), ffmpeg publishing test
//! patterns, and the real ffprobe. Some streams are live, one only through the backup profile,
//! some dead; the report must say which.

mod common;

use common::media::{wait_live, Nginx, Publisher};
use common::*;
use std::time::Duration;

#[test]
fn live_dead_and_backup_only_rtmp_streams_are_reported_correctly() {
    let nginx = Nginx::start(
        "application live { live on; record off; }\n\
         application backup { live on; record off; }",
        "",
    );
    let _s1 = Publisher::start(&nginx.url("live", "s1"));
    let _s2 = Publisher::start(&nginx.url("live", "s2"));
    // s3 is only published through the backup profile's path.
    let _s3 = Publisher::start(&nginx.url("backup", "s3"));
    for url in [
        nginx.url("live", "s1"),
        nginx.url("live", "s2"),
        nginx.url("backup", "s3"),
    ] {
        wait_live(&url);
    }
    let refused = format!("rtmp://127.0.0.1:{}/live/x", free_port());
    let dir = TempDir::new("rtmp");
    let list = dir.write(
        "list.m3u",
        &playlist(&[
            ("Live one".into(), nginx.url("live", "s1")),
            ("Live two".into(), nginx.url("live", "s2")),
            ("Backup only".into(), nginx.url("live", "s3")),
            ("Nothing published".into(), nginx.url("live", "nothing")),
            ("Refused".into(), refused.clone()),
        ]),
    );
    let accounts = dir.write(
        "accounts.json",
        &format!(
            r#"{{"accounts":[{{"name":"iptv","url_prefix":"{}","profiles":[
                {{"name":"primary","max_streams":1}},
                {{"name":"backup","max_streams":1,"replace_prefix":"{}"}}]}}]}}"#,
            nginx.url("live", ""),
            nginx.url("backup", "")
        ),
    );
    let out = dir.path("report");
    let o = run_bounded(
        checker(&[
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
            "200ms",
            "--probe-timeout",
            "10s",
            "--probe-cmd",
            "ffprobe",
        ]),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let r = report_json(&out);
    let s = by_index(&r);
    assert_eq!(r["summary"]["counts"]["ok"], 3, "{r:#}");
    assert_eq!(r["summary"]["counts"]["dead"], 2, "{r:#}");
    for i in [0, 1] {
        let live = &s[&i];
        assert_eq!(live["status"], "ok", "{live:#}");
        // Whatever phase 1 tried first, the stream is only live through `primary`.
        assert_eq!(live["profile"], "iptv/primary", "{live:#}");
        assert_eq!(live["video_codec"], "h264");
        assert_eq!(live["resolution"], "320x240");
        assert_eq!(live["fps"], 15.0);
    }
    let backup = &s[&2];
    assert_eq!(backup["status"], "ok", "{backup:#}");
    assert_eq!(backup["profile"], "iptv/backup");
    assert_eq!(backup["probed_url"], nginx.url("backup", "s3"));
    assert_eq!(backup["width"], 320);
    let nothing = &s[&3];
    assert_eq!(nothing["status"], "dead", "{nothing:#}");
    assert_eq!(nothing["attempts"], 4, "2 attempts on each profile");
    assert_eq!(
        nothing["profiles_tried"].as_array().unwrap().len(),
        2,
        "{nothing:#}"
    );
    let gone = &s[&4];
    assert_eq!(gone["status"], "dead");
    assert_eq!(gone["profile"], "unassigned/direct");
    assert_eq!(gone["url"], refused);
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    assert_eq!(csv.lines().count(), 6);
    assert!(csv.contains(",ok,iptv/backup,"), "{csv}");
}
