//! Two registry instances on one PostgreSQL database behind a real nginx
//! (`registry/deploy/nginx-lb.conf`, as shipped), with live engines reporting sessions and
//! following the event stream through nginx. One instance is killed (SIGKILL): the engines'
//! streams stay up, their event streams reconnect through nginx to the other instance (an
//! admin change made after the kill reaches every engine by push, with polling far away), and
//! no session count is lost.
//!
//! Each instance is this test binary run again as a child process (the `instance_process`
//! test below does nothing unless started that way), so it can be killed for real; it exits
//! when its stdin (this process's pipe) closes.

#[path = "../../../registry/tests/support/postgres.rs"]
mod pg;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streamguard::{EventKind, ManagerConfig, SessionState, StreamingProviderManager};
use streamguard_e2e::{free_port, Sim, ADMIN, TELEMETRY};

/// Set in the environment of an instance process: its database URL.
const INSTANCE_DB: &str = "SG_E2E_INSTANCE_DB";
/// What an instance process prints once it serves, followed by its URL.
const LISTENING: &str = "SG-INSTANCE-LISTENING ";
/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(15);

fn providers() -> Value {
    json!([
        {"name": "agora", "isActive": true, "priority": 1, "config": {"appId": "a"}},
        {"name": "zegocloud", "isActive": true, "priority": 2, "config": {"appId": "z"}}
    ])
}

/// Not a test of its own: the body of an instance process.
#[test]
fn instance_process() {
    let Ok(db) = std::env::var(INSTANCE_DB) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let registry = streamguard_e2e::registry_with(providers(), |c| {
            c.db_path = db.into();
            c.trust_forwarded_for = true;
        })
        .await;
        println!("{LISTENING}{}", registry.url());
        // Serve until the parent's pipe closes (the parent ended) or we are killed.
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await
        .unwrap();
        drop(registry);
    });
}

/// A registry instance process; killed (SIGKILL) by PID when dropped.
struct Instance {
    child: Child,
    port: u16,
}

impl Instance {
    fn start(db: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "instance_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INSTANCE_DB, db)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest prints the test's name first, on the same line.
                if let Some((_, url)) = line.split_once(LISTENING) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx.recv_timeout(WAIT).expect("instance started");
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Self { child, port }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx with the shipped load-balancer config; stopped by its master's PID.
struct Balancer {
    master: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Balancer {
    fn start(upstreams: &[u16]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sg-nginx-lb-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let template = include_str!("../../../registry/deploy/nginx-lb.conf");
        let servers: String = upstreams
            .iter()
            .map(|p| format!("server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n        "))
            .collect();
        let conf = template
            .replace("@PREFIX@", &dir.display().to_string())
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@UPSTREAMS@", &servers)
            .replace("worker_processes auto;", "worker_processes 1;");
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let nginx = if std::path::Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let mut master = Command::new(nginx)
            .args(["-p", &dir.display().to_string(), "-c", "nginx.conf"])
            .args(["-e", &dir.join("error.log").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx runs (apt-get install nginx-light)");
        // Bounded: nginx says nothing when it is ready, so its port is tried.
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = master.try_wait().unwrap() {
                let mut err = String::new();
                master
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("nginx exited ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { master, port, dir }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // SIGTERM to the master stops its worker too.
        let _ = Command::new("kill")
            .args(["-TERM", &self.master.id().to_string()])
            .status();
        let _ = self.master.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn admin(method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(status.is_success(), "{status} {body}");
    body
}

async fn active(base: &str, name: &str) -> u64 {
    let body = admin(
        reqwest::Method::GET,
        format!("{base}/api/streaming/providers/{name}"),
        None,
    )
    .await;
    body["data"]["statistics"]["activeStreams"]
        .as_u64()
        .unwrap()
}

/// Waits (bounded) until `name` counts `want` live streams: reads the event stream through
/// `base` (the current list first, then every change) until a list says so.
async fn until_active(base: &str, name: &str, want: u64) {
    let mut response = reqwest::get(format!("{base}/api/streaming/providers/events"))
        .await
        .unwrap();
    assert!(response.status().is_success());
    let mut buffer = String::new();
    let mut last = None;
    let found = tokio::time::timeout(WAIT, async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if !block.contains("event: providers") && !block.contains("event:providers") {
                    continue;
                }
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                let list: Value = serde_json::from_str(&data).unwrap();
                let count = list["providers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == name)
                    .map_or(0, |p| p["activeStreams"].as_u64().unwrap());
                if count == want {
                    return;
                }
                last = Some(count);
            }
            let chunk = response.chunk().await.unwrap().expect("event stream open");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "{name}: {last:?} live streams, expected {want}"
    );
}

fn engine(base: &str) -> (StreamingProviderManager, Arc<Sim>, Arc<Sim>) {
    let mut c = ManagerConfig::new(format!("{base}/api"));
    c.auth_token = Some(TELEMETRY.into());
    c.report_sessions = true;
    c.push_updates = true;
    // Far away: whatever arrives within the test's bounds came by push.
    c.provider_refresh_interval = Duration::from_secs(120);
    c.health_check_interval = Duration::from_secs(120);
    let m = StreamingProviderManager::new(c).unwrap();
    let (agora, zego) = (Arc::new(Sim::default()), Arc::new(Sim::default()));
    m.register_adapter("agora", agora.clone()).unwrap();
    m.register_adapter("zegocloud", zego.clone()).unwrap();
    (m, agora, zego)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_instance_behind_nginx_loses_no_stream_and_no_count() {
    let db = pg::shared().create_database();
    let mut first = Instance::start(&db);
    let second = Instance::start(&db);
    let lb = Balancer::start(&[first.port, second.port]);
    let base = lb.url();

    // Six engines, each with one live stream on agora, following the event stream through
    // nginx (round robin: some on each instance).
    let mut engines = Vec::new();
    for i in 0..6 {
        let (m, agora, zego) = engine(&base);
        let stream = format!("s{i}");
        let session = m.start_stream(&stream).await.unwrap();
        assert_eq!(session.provider.as_deref(), Some("agora"));
        engines.push((m, agora, zego, stream));
    }
    until_active(&base, "agora", 6).await;
    // The instance that will survive has them too (written by either, told by notification).
    until_active(&format!("http://127.0.0.1:{}", second.port), "agora", 6).await;

    first.kill();

    // Reads and writes go on through nginx (the dead instance is skipped).
    until_active(&base, "agora", 6).await;
    for (m, agora, _, stream) in &engines {
        assert_eq!(m.session(stream).unwrap().state, SessionState::Live);
        assert!(agora.carrying(stream));
    }

    // An admin change after the kill reaches every engine by push: the event streams that
    // went through the dead instance reconnected to the live one.
    let mut waiting = Vec::new();
    for (m, ..) in &engines {
        let mut rx = m.subscribe();
        waiting.push(tokio::spawn(async move {
            tokio::time::timeout(WAIT, async {
                loop {
                    if let Ok(ev) = rx.recv().await {
                        if matches!(ev.kind, EventKind::MigrationFinished { .. }) {
                            return;
                        }
                    }
                }
            })
            .await
            .expect("the engine migrated by push within the bound");
        }));
    }
    admin(
        reqwest::Method::PUT,
        format!("{base}/api/streaming/providers/agora"),
        Some(json!({"isActive": false})),
    )
    .await;
    for w in waiting {
        w.await.unwrap();
    }
    for (m, agora, zego, stream) in &engines {
        assert_eq!(
            m.session(stream).unwrap().provider.as_deref(),
            Some("zegocloud")
        );
        assert!(zego.carrying(stream) && !agora.carrying(stream));
    }
    // Every failover report arrived: no count lost or doubled (a failover moves both counts
    // in one transaction).
    until_active(&base, "zegocloud", 6).await;
    assert_eq!(active(&base, "agora").await, 0);

    for (m, ..) in engines {
        m.shutdown().await.unwrap();
    }
    until_active(&base, "zegocloud", 0).await;
}
