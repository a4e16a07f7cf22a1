//! Health checks against real loopback targets that are started and stopped:
//! HTTP, TCP, timeouts, the background checker, and the RTMP (ffprobe) path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::common::{expect, Harness, SseClient, TempDir, WAIT};

/// A minimal HTTP server answering every request with `status` and closing the
/// connection, so stopping it leaves no pooled connection behind.
struct HttpTarget {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpTarget {
    async fn start(status: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A port nothing listens on (bound once, then released).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

async fn set_probe(h: &Harness, name: &str, probe: Value) {
    h.update(name, json!({"config": {"appId": "a", "probe": probe}}))
        .await;
}

async fn public_health(h: &Harness, name: &str) -> Value {
    let body = expect(
        h.get(&format!("/api/streaming/providers/{name}/health"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    body["data"].clone()
}

#[tokio::test]
async fn http_probe_goes_critical_after_three_failed_checks() {
    let mut h = Harness::start().await;
    let target = HttpTarget::start("200 OK").await;
    set_probe(&h, "agora", json!({"type": "http", "url": target.url()})).await;

    let report = h.check("agora").await;
    assert_eq!(report["probe"], "http");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["status"], "EXCELLENT");
    assert_eq!(report["publicStatus"], "active");
    assert!(report["latencyMs"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        public_health(&h, "agora").await,
        json!({"healthy": true, "provider": "agora", "status": "active"})
    );

    target.stop().await;
    let expected = [
        ("WARNING", "degraded", true),
        ("WARNING", "degraded", true),
        ("CRITICAL", "down", false),
    ];
    for (i, (status, public, healthy)) in expected.into_iter().enumerate() {
        let report = h.check("agora").await;
        assert_eq!(report["ok"], false, "{report}");
        assert!(!report["error"].as_str().unwrap().is_empty());
        assert_eq!(report["consecutiveFailures"], i + 1);
        assert_eq!(report["status"], status, "after {} failures", i + 1);
        assert_eq!(report["publicStatus"], public);
        assert_eq!(report["healthy"], healthy);
    }
    assert_eq!(
        public_health(&h, "agora").await,
        json!({"healthy": false, "provider": "agora", "status": "down"})
    );

    let detail = expect(
        h.admin(Method::GET, "/api/streaming/providers/agora")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let stats = &detail["data"]["statistics"];
    assert_eq!(stats["totalChecks"], 4);
    assert_eq!(stats["failedChecks"], 3);
    assert_eq!(stats["consecutiveFailures"], 3);
    assert_eq!(stats["uptime"], 25.0);
    assert_eq!(stats["errorRate"], 75.0);
    assert!(stats["averageLatencyMs"].is_number());
    assert!(stats["lastCheck"].as_i64().unwrap() > 0);
    let oks: Vec<bool> = detail["data"]["recentChecks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(oks, [true, false, false, false]);

    // One success ends the failure streak.
    let target = HttpTarget::start("204 No Content").await;
    set_probe(&h, "agora", json!({"type": "http", "url": target.url()})).await;
    let report = h.check("agora").await;
    assert_eq!(report["ok"], true);
    assert_eq!(report["consecutiveFailures"], 0);
    assert_eq!(report["healthy"], true);
    target.stop().await;
    h.shutdown().await;
}

#[tokio::test]
async fn http_error_status_is_a_failure() {
    let mut h = Harness::start().await;
    let target = HttpTarget::start("503 Service Unavailable").await;
    set_probe(&h, "agora", json!({"type": "http", "url": target.url()})).await;
    let report = h.check("agora").await;
    assert_eq!(report["ok"], false);
    assert!(
        report["error"].as_str().unwrap().contains("503"),
        "{report}"
    );
    target.stop().await;
    h.shutdown().await;
}

#[tokio::test]
async fn tcp_probe_follows_the_listener() {
    let mut h = Harness::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    set_probe(&h, "webrtc", json!({"type": "tcp", "address": address})).await;
    let report = h.check("webrtc").await;
    assert_eq!(report["probe"], "tcp");
    assert_eq!(report["ok"], true, "{report}");

    drop(listener);
    for _ in 0..3 {
        let report = h.check("webrtc").await;
        assert_eq!(report["ok"], false, "{report}");
    }
    assert_eq!(public_health(&h, "webrtc").await["status"], "down");
    h.shutdown().await;
}

#[tokio::test]
async fn a_hanging_target_times_out() {
    let mut h = Harness::start_with(|c| c.health_timeout = Duration::from_millis(300)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts connections and never answers.
    let holder = tokio::spawn(async move {
        let mut held: Vec<TcpStream> = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    set_probe(
        &h,
        "agora",
        json!({"type": "http", "url": format!("http://{addr}/")}),
    )
    .await;
    let started = Instant::now();
    let report = h.check("agora").await;
    assert_eq!(report["ok"], false);
    assert!(started.elapsed() < Duration::from_secs(3));
    let latency = report["latencyMs"].as_f64().unwrap();
    assert!((250.0..3000.0).contains(&latency), "{latency}");
    holder.abort();
    h.shutdown().await;
}

#[tokio::test]
async fn check_all_runs_every_provider_and_keeps_latest_results() {
    let mut h = Harness::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    set_probe(&h, "agora", json!({"type": "tcp", "address": address})).await;
    let closed = closed_port().await.to_string();
    set_probe(&h, "legacy", json!({"type": "tcp", "address": closed})).await;

    let body = expect(
        h.admin(Method::POST, "/api/streaming/providers/health-check-all")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let results = body["data"]["results"].as_array().unwrap();
    let by_name = |name: &str| {
        results
            .iter()
            .find(|r| r["provider"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(results.len(), 4);
    assert_eq!(by_name("agora")["ok"], true);
    assert_eq!(
        by_name("legacy")["ok"],
        false,
        "inactive providers are checked on demand"
    );
    assert_eq!(by_name("legacy")["status"], "DISABLED");
    assert!(by_name("webrtc")["probe"].is_null());
    assert!(by_name("webrtc")["lastCheck"].is_null());
    assert_eq!(by_name("webrtc")["status"], "UNKNOWN");

    let latest = expect(
        h.admin(Method::GET, "/api/streaming/providers/health-check-all")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(latest["data"]["results"], body["data"]["results"]);
    drop(listener);
    h.shutdown().await;
}

#[tokio::test]
async fn background_checker_pushes_health_changes() {
    let closed = closed_port().await.to_string();
    let mut h = Harness::start_with(|c| {
        c.health_interval = Duration::from_millis(50);
        c.health_timeout = Duration::from_millis(500);
    })
    .await;
    let mut events = SseClient::connect(&h).await;
    set_probe(&h, "zegocloud", json!({"type": "tcp", "address": closed})).await;
    let event = events
        .wait_for(|name, data| {
            name == "health" && data["provider"] == "zegocloud" && data["status"] == "down"
        })
        .await;
    assert_eq!(event["healthy"], false);
    // Providers without a probe are never checked, so they stay unknown.
    assert_eq!(public_health(&h, "agora").await["status"], "unknown");
    h.shutdown().await;
}

#[tokio::test]
async fn rtmp_probe_reports_missing_ffprobe() {
    let mut h = Harness::start_with(|c| {
        c.ffprobe_path = PathBuf::from("/nonexistent/streamguard/ffprobe");
    })
    .await;
    set_probe(
        &h,
        "agora",
        json!({"type": "rtmp", "url": "rtmp://127.0.0.1:1/live/x"}),
    )
    .await;
    let report = h.check("agora").await;
    assert_eq!(report["probe"], "rtmp");
    assert_eq!(report["ok"], false);
    assert_eq!(report["error"], "ffprobe not found");
    h.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn rtmp_probe_kills_ffprobe_on_timeout() {
    let dir = TempDir::new("fake-ffprobe");
    let script = dir.path().join("ffprobe");
    let fifo = dir.path().join("alive");
    // The fake ffprobe holds the FIFO's write end until it dies, so EOF on the
    // read end is the event "the child is gone". It is written by a child shell so
    // this multi-threaded process never holds it open for writing (ETXTBSY).
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mkfifo {fifo} && printf '#!/bin/sh\\nexec 3>{fifo}\\necho $$ >&3\\nexec sleep 30\\n' > {script} && chmod 755 {script}",
            fifo = fifo.display(),
            script = script.display()
        ))
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let (alive_tx, alive_rx) = tokio::sync::oneshot::channel();
    let reader_fifo = fifo.clone();
    // A plain thread: it must not keep the runtime from shutting down if the test fails.
    std::thread::spawn(move || {
        use std::io::Read;
        let mut pid = String::new();
        let result = std::fs::File::open(&reader_fifo).and_then(|mut f| f.read_to_string(&mut pid));
        let _ = alive_tx.send(result.map(|_| pid));
    });

    let mut h = Harness::start_with(|c| {
        c.ffprobe_path = script.clone();
        // Long enough for the fake to start and open the FIFO on a busy machine.
        c.health_timeout = Duration::from_millis(1500);
    })
    .await;
    set_probe(
        &h,
        "agora",
        json!({"type": "rtmp", "url": "rtmp://127.0.0.1:1/live/x"}),
    )
    .await;
    let report = h.check("agora").await;
    assert_eq!(report["ok"], false);
    assert!(
        report["error"].as_str().unwrap().contains("timed out"),
        "{report}"
    );

    let pid = tokio::time::timeout(WAIT, alive_rx)
        .await
        .expect("the timed-out ffprobe was not killed")
        .unwrap()
        .unwrap();
    assert!(
        pid.trim().parse::<u32>().is_ok(),
        "fake ffprobe ran: {pid:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn rtmp_probe_with_real_ffprobe() {
    let installed = tokio::process::Command::new("ffprobe")
        .arg("-version")
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !installed {
        // Written to the stream itself: the test harness would swallow eprintln!.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED rtmp_probe_with_real_ffprobe: ffprobe is not installed (apt-get install ffmpeg)"
        );
        return;
    }
    let closed = closed_port().await;
    let mut h = Harness::start().await;
    set_probe(
        &h,
        "agora",
        json!({"type": "rtmp", "url": format!("rtmp://{closed}/live/test")}),
    )
    .await;
    let report = h.check("agora").await;
    assert_eq!(report["ok"], false, "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.to_lowercase().contains("refused"), "{error}");
    h.shutdown().await;
}
