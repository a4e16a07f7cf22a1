//! Resource bounds under abuse, measured: a normal client's latency (p50, p99, max) for the
//! public provider list, on a new connection per request from its own address (127.0.0.2),
//! while one abusive client (127.0.0.1) runs each attack in turn; then whether the normal
//! client can still open an event stream of its own (`stream`: the status it got).
//!
//! ```text
//! cargo run --release -p streamguard-registry --example abuse_bench              # the limits
//! cargo run --release -p streamguard-registry --example abuse_bench -- --no-limits
//! ```
//!
//! `--no-limits` sets every new limit out of reach (header timeout of an hour, a million
//! connections and streams per client), which is how the registry behaved before them.
//! A benchmark, not a test: figures depend on the machine (see the registry README).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::json;
use streamguard_registry::{serve, Config, NewProvider, Seed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

const ADMIN: &str = "bench-admin-token-000001";
const SUPER: &str = "bench-super-token-000001";
const SAMPLES: usize = 300;
const ATTACKER: [u8; 4] = [127, 0, 0, 1];
const NORMAL: [u8; 4] = [127, 0, 0, 2];

#[tokio::main]
async fn main() {
    let no_limits = std::env::args().any(|a| a == "--no-limits");
    let mut config = Config::local_test(ADMIN, SUPER);
    config.seed = Seed::Providers(
        ["agora", "zegocloud", "webrtc"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                serde_json::from_value::<NewProvider>(
                    json!({"name": name, "priority": i, "config": {"appId": "x"}}),
                )
                .unwrap()
            })
            .collect(),
    );
    config.max_event_subscribers = 1000;
    if no_limits {
        config.header_read_timeout = Duration::from_secs(3600);
        config.max_connections = 1_000_000;
        config.max_connections_per_client = 1_000_000;
        config.max_event_subscribers_per_client = 1_000_000;
    }
    println!(
        "limits: {}; header timeout {:?}, {} connections ({} per client), {} event streams ({} per client), body {} bytes",
        if no_limits { "off" } else { "on" },
        config.header_read_timeout,
        config.max_connections,
        config.max_connections_per_client,
        config.max_event_subscribers,
        config.max_event_subscribers_per_client,
        config.max_body_bytes,
    );
    let registry = serve(config).await.expect("the registry starts");
    let addr = registry.addr();

    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "attack", "p50 ms", "p99 ms", "max ms", "failed", "stream"
    );
    scenario("none (baseline)", addr, |_| {}).await;
    scenario("slow-loris, 2000 connections", addr, |set| {
        for _ in 0..2000 {
            set.spawn(slow_loris(addr));
        }
    })
    .await;
    scenario("idle connections, 5000", addr, |set| {
        for _ in 0..5000 {
            set.spawn(idle(addr));
        }
    })
    .await;
    scenario("oversized bodies (8 MiB), 16 loops", addr, |set| {
        for _ in 0..16 {
            set.spawn(post_loop(addr, vec![b' '; 8 << 20]));
        }
    })
    .await;
    scenario("nested JSON (60k deep), 16 loops", addr, |set| {
        for _ in 0..16 {
            set.spawn(post_loop(addr, vec![b'['; 60_000]));
        }
    })
    .await;
    scenario("event streams, 2000 from one client", addr, |set| {
        for _ in 0..2000 {
            set.spawn(event_stream(addr));
        }
    })
    .await;
    registry.shutdown().await.expect("clean shutdown");
}

/// Runs `attack` (given a second to ramp up), measures the normal client, stops the attack.
async fn scenario(name: &str, addr: SocketAddr, attack: impl FnOnce(&mut JoinSet<()>)) {
    let mut set = JoinSet::new();
    attack(&mut set);
    if !set.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from(NORMAL))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://{addr}/api/streaming/providers");
    let mut took = Vec::with_capacity(SAMPLES);
    let mut failed = 0;
    for _ in 0..SAMPLES {
        let start = Instant::now();
        let ok = match client.get(&url).send().await {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        took.push(start.elapsed());
        failed += usize::from(!ok);
    }
    let stream = client
        .get(format!("http://{addr}/api/streaming/providers/events"))
        .send()
        .await
        .map(|r| r.status().as_u16().to_string())
        .unwrap_or_else(|_| "error".into());
    set.shutdown().await;
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    println!(
        "{name:<34} {:>9.2} {:>9.2} {:>9.2} {failed:>7} {stream:>7}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((ip, 0)))?;
    socket.connect(addr).await
}

/// Sends a request head one byte at a time, never finishing it; reconnects when closed.
async fn slow_loris(addr: SocketAddr) {
    loop {
        let Ok(mut s) = connect_from(ATTACKER, addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = s
            .write_all(b"GET /api/streaming/providers HTTP/1.1\r\n")
            .await;
        while s.write_all(b"X").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut buf = [0u8; 64];
            // A closed connection reads 0 (or fails): start over.
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens a connection and sends nothing; reconnects when closed.
async fn idle(addr: SocketAddr) {
    loop {
        if let Ok(mut s) = connect_from(ATTACKER, addr).await {
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts `body` to the telemetry route again and again.
async fn post_loop(addr: SocketAddr, body: Vec<u8>) {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from(ATTACKER))
        .build()
        .unwrap();
    let url = format!("http://{addr}/api/streaming/sessions/events");
    loop {
        let _ = client
            .post(&url)
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
    }
}

/// Opens an event stream and holds it; tries again when refused or closed.
async fn event_stream(addr: SocketAddr) {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from(ATTACKER))
        .build()
        .unwrap();
    let url = format!("http://{addr}/api/streaming/providers/events");
    loop {
        if let Ok(mut r) = client.get(&url).send().await {
            while let Ok(Some(_)) = r.chunk().await {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
