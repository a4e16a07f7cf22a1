//! Event-stream load for `scripts/bench-registry.sh` (not a test): opens N event-stream
//! connections to a registry, reports the registry's memory per connection (its RSS before and
//! after, from /proc), then makes admin changes and measures how long each change takes to
//! reach every connection (p50/p99).
//!
//! `sse_load EVENTS_URL ADMIN_URL TOKEN PID COUNT ROUNDS`, where EVENTS_URL is the event stream
//! (possibly through nginx), ADMIN_URL the provider to flip (`.../api/streaming/providers/NAME`)
//! and PID the registry process to measure (0: do not measure memory).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One connection: subscribes, says when the first list arrived, then reports the arrival
/// time of every later `providers` event.
async fn follow(
    host: String,
    path: String,
    ready: mpsc::Sender<()>,
    arrivals: mpsc::UnboundedSender<Instant>,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(&host).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut first = true;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        let lists =
            text.matches("event: providers").count() + text.matches("event:providers").count();
        if lists == 0 {
            continue;
        }
        if first {
            first = false;
            let _ = ready.send(()).await;
            if lists == 1 {
                continue;
            }
        }
        let _ = arrivals.send(Instant::now());
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, events, admin, token, pid, count, rounds] = &args[..] else {
        eprintln!("usage: sse_load EVENTS_URL ADMIN_URL TOKEN PID COUNT ROUNDS");
        std::process::exit(2);
    };
    let pid: u32 = pid.parse().unwrap();
    let count: usize = count.parse().unwrap();
    let rounds: usize = rounds.parse().unwrap();
    let rest = events.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap());

    let before = rss_kib(pid);
    let (ready_tx, mut ready_rx) = mpsc::channel(1024);
    let (arrive_tx, mut arrive_rx) = mpsc::unbounded_channel();
    let opened = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    let mut connected = 0;
    for i in 0..count {
        tasks.push(tokio::spawn(follow(
            host.to_owned(),
            path.to_owned(),
            ready_tx.clone(),
            arrive_tx.clone(),
        )));
        // At most 256 handshakes in flight.
        if i >= 256 {
            match tokio::time::timeout(Duration::from_secs(10), ready_rx.recv()).await {
                Ok(Some(())) => connected += 1,
                _ => break,
            }
        }
    }
    while connected < count {
        match tokio::time::timeout(Duration::from_secs(10), ready_rx.recv()).await {
            Ok(Some(())) => connected += 1,
            _ => break,
        }
    }
    let open_took = opened.elapsed();
    // Let the registry settle its buffers before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    println!("connections held: {connected} of {count} (opened in {open_took:.1?})");
    if let (Some(b), Some(a)) = (before, after) {
        let per = (a.saturating_sub(b)) as f64 * 1024.0 / connected.max(1) as f64;
        println!(
            "registry RSS: {b} KiB before, {a} KiB after: {:.1} KiB per connection",
            per / 1024.0
        );
    }

    let client = reqwest::Client::new();
    let mut all = Vec::new();
    let mut delivered_min = usize::MAX;
    for round in 0..rounds {
        while arrive_rx.try_recv().is_ok() {}
        let priority = if round % 2 == 0 { 7 } else { 1 };
        let t0 = Instant::now();
        let status = client
            .put(admin)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(format!("{{\"priority\":{priority}}}"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
        let mut got = Vec::with_capacity(connected);
        while got.len() < connected {
            match tokio::time::timeout(Duration::from_secs(10), arrive_rx.recv()).await {
                Ok(Some(at)) => got.push(at.saturating_duration_since(t0)),
                _ => break,
            }
        }
        delivered_min = delivered_min.min(got.len());
        all.extend(got);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    all.sort();
    println!(
        "admin change delivery over {rounds} rounds: p50 {:.1?}, p99 {:.1?}, max {:.1?} (fewest delivered in a round: {delivered_min} of {connected})",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or_default()
    );
    for t in tasks {
        t.abort();
    }
}
