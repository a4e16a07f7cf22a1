//! The checker with the real ffprobe against real HTTP servers on loopback: nginx serving an
//! HLS stream (nginx-rtmp's `hls on;` fed by an ffmpeg publisher) and a plain MPEG-TS file, a
//! location that answers 403 without the right User-Agent and Referer (reached through
//! `#EXTVLCOPT` options and through the Kodi `URL|User-Agent=...&Referer=...` form), and two
//! servers of our own: one that accepts connections and never answers, one that sends response
//! headers and stalls. ffprobe runs through a wrapper that records its PID, so the tests can
//! tell that a probe past its timeout was killed.

mod common;

use common::media::{wait_live, write_ts_clip, Nginx, Publisher};
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const UA: &str = "StreamguardTest/1.0";
const REFERER: &str = "https://ref.example/";

/// nginx: RTMP `live` with HLS into `{root}/hls`, served over HTTP with `{root}/ts`, and
/// `{root}/protected` and the same HLS output as `/protected-hls/` (both 403 unless the
/// User-Agent and the Referer are right).
fn start_nginx() -> Nginx {
    let nginx = Nginx::start(
        "application live { live on; record off; hls on; hls_path {root}/hls; \
         hls_fragment 1s; hls_playlist_length 4s; }",
        &format!(
            "location /hls/ {{ root {{root}}; add_header Cache-Control no-cache; }}\n\
             location /ts/ {{ root {{root}}; }}\n\
             location /protected/ {{ root {{root}};\n\
               if ($http_user_agent != \"{UA}\") {{ return 403; }}\n\
               if ($http_referer != \"{REFERER}\") {{ return 403; }} }}\n\
             location /protected-hls/ {{ root {{root}}; add_header Cache-Control no-cache;\n\
               if ($http_user_agent != \"{UA}\") {{ return 403; }}\n\
               if ($http_referer != \"{REFERER}\") {{ return 403; }} }}\n"
        ),
    );
    for d in ["ts", "protected"] {
        std::fs::create_dir_all(nginx.dir.path(d)).unwrap();
    }
    // The same HLS stream (playlist and segments) behind the User-Agent and Referer check.
    std::os::unix::fs::symlink(nginx.dir.path("hls"), nginx.dir.path("protected-hls")).unwrap();
    write_ts_clip(&nginx.dir.path("ts/clip.ts"), 2);
    std::fs::copy(
        nginx.dir.path("ts/clip.ts"),
        nginx.dir.path("protected/clip.ts"),
    )
    .unwrap();
    nginx
}

/// A TCP server on a free loopback port that accepts connections and, if `headers`, reads the
/// request and sends a 200 response head, then never sends anything more. Connections stay
/// open until the test process ends. Returns the port and a count of accepted connections.
fn silent_server(headers: bool) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            if headers {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: 100000000\r\n\r\n",
                );
            }
            open.push(conn);
        }
    });
    (port, accepted)
}

/// A probe program that records its PID in `dir/pids` and becomes ffprobe.
fn ffprobe_wrapper(dir: &TempDir) -> PathBuf {
    let pids = dir.path("pids");
    let script = dir.write(
        "ffprobe-wrapper.sh",
        &format!(
            "#!/bin/sh\necho $$ >> '{}'\nexec ffprobe \"$@\"\n",
            pids.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn probe_pids(dir: &TempDir) -> Vec<u32> {
    std::fs::read_to_string(dir.path("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn run_check(
    dir: &TempDir,
    playlist: &str,
    extra: &[&str],
) -> (serde_json::Value, String, PathBuf) {
    let list = dir.write("list.m3u", playlist);
    let out = dir.path("out");
    let wrapper = ffprobe_wrapper(dir);
    let mut args = vec!["--no-progress", "--probe-cmd", wrapper.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run_bounded(check_cmd(&list, &out, &args), Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    (report_json(&out), stderr, out)
}

fn entry(name: &str, options: &str, url: &str) -> String {
    format!("#EXTINF:-1 group-title=\"Test\",{name}\n{options}{url}\n")
}

#[test]
fn hls_ts_and_header_protected_http_streams_are_checked_with_their_options() {
    let nginx = start_nginx();
    let _publisher = Publisher::start(&nginx.url("live", "s1"));
    let hls = nginx.http_url("hls/s1.m3u8");
    wait_live(&hls);
    let ts = nginx.http_url("ts/clip.ts");
    let protected = nginx.http_url("protected/clip.ts");
    let protected_hls = nginx.http_url("protected-hls/s1.m3u8");
    let vlc = format!("#EXTVLCOPT:http-user-agent={UA}\n#EXTVLCOPT:http-referrer={REFERER}\n");
    let playlist = [
        "#EXTM3U\n".to_string(),
        entry("HLS", "", &hls),
        entry("TS", "", &ts),
        entry("Protected, VLC options", &vlc, &format!("{protected}?via=vlc")),
        entry(
            "Protected, Kodi form",
            "",
            &format!("{protected}?via=kodi|User-Agent=StreamguardTest%2F1.0&Referer=https%3A%2F%2Fref.example%2F"),
        ),
        entry("Protected, no options", "", &format!("{protected}?token=SECRET")),
        entry(
            "Protected, user agent only",
            &format!("#EXTVLCOPT:http-user-agent={UA}\n"),
            &format!("{protected}?via=ua"),
        ),
        // The playlist and every segment need the headers.
        entry("Protected HLS, VLC options", &vlc, &protected_hls),
        entry("Protected HLS, no options", "", &protected_hls),
    ]
    .concat();
    let dir = TempDir::new("http");
    let (r, stderr, out) = run_check(
        &dir,
        &playlist,
        // One retry, as by default: a live HLS stream on a loaded machine may drop a probe.
        &[
            "--concurrency",
            "3",
            "--retries",
            "1",
            "--retry-delay",
            "200ms",
            "--probe-timeout",
            "20s",
        ],
    );
    let s = by_index(&r);
    for i in [0, 1, 2, 3, 6] {
        let v = &s[&i];
        assert_eq!(v["status"], "ok", "{v:#}");
        assert_eq!(v["video_codec"], "h264", "{v:#}");
        assert_eq!(v["resolution"], "320x240", "{v:#}");
    }
    assert_eq!(
        s[&3]["url"],
        format!("{protected}?via=kodi"),
        "no |options in the URL"
    );
    for i in [4, 5, 7] {
        let v = &s[&i];
        assert_eq!(v["status"], "dead", "{v:#}");
        assert!(v["error"].as_str().unwrap().contains("403"), "{v:#}");
        assert_eq!(v["attempts"], 2, "{v:#}");
    }
    let error = s[&4]["error"].as_str().unwrap();
    assert!(!error.contains("SECRET"), "{error}");
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    assert!(!csv.contains("|User-Agent"), "{csv}");
    assert!(
        !stderr.contains("SECRET") && !stderr.contains(UA),
        "{stderr}"
    );
    assert_eq!(r["summary"]["groups"]["Test"]["ok"], 5);
    let attempts: u64 = s.values().map(|v| v["attempts"].as_u64().unwrap()).sum();
    assert_eq!(probe_pids(&dir).len() as u64, attempts);
}

/// Checks one stream on a [`silent_server`] with `--probe-timeout timeout` and no retry;
/// returns its report line after checking that ffprobe connected and no probe survived.
fn check_silent(headers: bool, timeout: &str) -> serde_json::Value {
    let (port, accepted) = silent_server(headers);
    let dir = TempDir::new("silent");
    let url = format!("http://127.0.0.1:{port}/live.ts");
    let (r, _, _) = run_check(
        &dir,
        &format!("#EXTM3U\n{}", entry("Silent", "", &url)),
        &["--retries", "0", "--probe-timeout", timeout],
    );
    assert!(accepted.load(Ordering::SeqCst) >= 1, "ffprobe connected");
    let pids = probe_pids(&dir);
    assert_eq!(pids.len(), 1);
    assert!(is_dead(pids[0]), "ffprobe {} still running", pids[0]);
    r["streams"][0].clone()
}

#[test]
fn a_server_that_never_answers_is_bounded_by_the_probe_timeout_and_ffprobe_is_killed() {
    // Shorter than ffprobe's own 1 s I/O timeout, so the checker's kill is what ends it.
    let v = check_silent(false, "400ms");
    assert_eq!(v["status"], "timeout", "{v:#}");
    assert!(v["elapsed_ms"].as_u64().unwrap() < 3000, "{v:#}");
}

#[test]
fn a_server_that_sends_headers_and_stalls_ends_within_ffprobes_io_timeout() {
    let v = check_silent(true, "20s");
    // ffprobe's -rw_timeout (1 s) gives up on the silent body long before the probe timeout;
    // that is a timeout too, with ffprobe's own words.
    assert_eq!(v["status"], "timeout", "{v:#}");
    assert!(v["error"].as_str().unwrap().contains("timed out"), "{v:#}");
    assert!(v["elapsed_ms"].as_u64().unwrap() < 10_000, "{v:#}");
}
