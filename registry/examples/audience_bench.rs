//! Measures the audience signal (issue 19): what aggregating 10,000 reporting viewers costs the
//! registry (time per report, memory) and what the reports cost each viewer on the wire.
//!
//! ```text
//! cargo run --release -p streamguard-registry --example audience_bench
//! ```
//!
//! Time is the registry's work per report as the keep-alive route does it: record the report,
//! then flush (decide and build what is pushed), plus the timer's expiry of stale reports every
//! 100 ms of simulated time. Simulated time is injected (no sleeping), so a minute of reports
//! runs as fast as the CPU allows. Memory is counted by a global allocator wrapper. HTTP, JSON
//! parsing, SQLite and the event fan-out are not in these numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use streamguard_registry::audience::{Audience, AudienceConfig};
use streamguard_registry::wire::AudienceState;
use tokio::time::Instant;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const VIEWERS: usize = 10_000;
const RUNS: usize = 5;

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Viewer `i`'s host: 10,000 viewers on 5,000 addresses (two per host, as behind a home NAT).
fn host(i: usize) -> IpAddr {
    let n = (i / 2) as u32;
    IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + n))
}

struct Run {
    ns_per_report: f64,
    reports: usize,
    pushes: usize,
    bytes_ok: isize,
    bytes_stalled: isize,
}

/// 10,000 viewers on `streams` streams join (ok), then `stalled_share` of them stall and repeat
/// their stall every second for a simulated minute, while the rest stay ok.
fn run(streams: usize, stalled_share: f64) -> Run {
    let base = live_bytes();
    let mut audience = Audience::new(AudienceConfig::default());
    let t0 = Instant::now();
    let clients: Vec<String> = (0..VIEWERS).map(|i| format!("sg-{i:032x}")).collect();
    let stream_ids: Vec<String> = (0..streams).map(|s| format!("match-{s}")).collect();
    let names_bytes: isize = clients.iter().map(|c| c.capacity() as isize).sum::<isize>()
        + stream_ids
            .iter()
            .map(|s| s.capacity() as isize)
            .sum::<isize>()
        + (clients.capacity() * std::mem::size_of::<String>()) as isize
        + (stream_ids.capacity() * std::mem::size_of::<String>()) as isize;
    let stalled = (VIEWERS as f64 * stalled_share) as usize;
    let started = std::time::Instant::now();
    let mut reports = 0;
    let mut pushes = 0;
    // Join: one ok report each, spread over the first second.
    for (i, client) in clients.iter().enumerate() {
        let now = t0 + Duration::from_micros((i * 100) as u64);
        audience.report(
            &stream_ids[i % streams],
            client,
            "agora",
            host(i),
            AudienceState::Ok,
            now,
        );
        pushes += audience.flush(now, 0).len();
        reports += 1;
    }
    let bytes_ok = live_bytes() - base - names_bytes;
    // A minute of stalls: every stalled viewer reports once a second, spread over the second;
    // the registry's timer expires stale reports every 100 ms.
    for second in 1..=60u64 {
        for tick in 0..10u64 {
            let slice = stalled / 10;
            for k in 0..slice {
                let i = (tick as usize) * slice + k;
                let now = t0
                    + Duration::from_secs(second)
                    + Duration::from_millis(tick * 100)
                    + Duration::from_micros(k as u64);
                audience.report(
                    &stream_ids[i % streams],
                    &clients[i],
                    "agora",
                    host(i),
                    AudienceState::Stalled,
                    now,
                );
                pushes += audience.flush(now, 0).len();
                reports += 1;
            }
            let now = t0 + Duration::from_secs(second) + Duration::from_millis(tick * 100 + 99);
            audience.expire(now);
            pushes += audience.flush(now, 0).len();
        }
    }
    let elapsed = started.elapsed();
    let bytes_stalled = live_bytes() - base - names_bytes;
    assert_eq!(audience.viewer_count(), VIEWERS);
    drop(audience);
    Run {
        ns_per_report: elapsed.as_nanos() as f64 / reports as f64,
        reports,
        pushes,
        bytes_ok,
        bytes_stalled,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One keep-alive request as a viewer engine sends it: headers as reqwest sends them with the
/// telemetry token, and the JSON body.
fn request_bytes(body: &str) -> usize {
    let token = "x".repeat(32);
    let head = format!(
        "POST /api/streaming/sessions/alive HTTP/1.1\r\nhost: registry.example.com\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/json\r\n\
         accept: */*\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    head.len() + body.len()
}

fn wire() {
    let client = format!("sg-{:032x}", u128::MAX / 3);
    let body = |session: &str| format!(r#"{{"clientId":"{client}","sessions":[{session}]}}"#);
    let publisher = body(r#"{"provider":"agora","streamId":"match-123"}"#);
    let ok = body(r#"{"provider":"agora","streamId":"match-123","role":"viewer"}"#);
    let stalled =
        body(r#"{"provider":"agora","streamId":"match-123","role":"viewer","audience":"stalled"}"#);
    println!("\n## Report size (one stream, engine client id, 32-byte token)");
    println!(
        "keep-alive body: publisher {} B, viewer ok {} B (+{}), viewer stalled {} B (+{})",
        publisher.len(),
        ok.len(),
        ok.len() - publisher.len(),
        stalled.len(),
        stalled.len() - publisher.len()
    );
    // The engine's keep-alive interval is 30 s (provider_refresh_interval): 2 a minute.
    let ok_minute = 2 * request_bytes(&ok);
    // Stalled: the keep-alives carry the state; the 1 s repeats fill the rest of the minute.
    let stalled_minute = 60 * request_bytes(&stalled);
    println!(
        "per viewer per minute (HTTP/1.1 request with headers, body): ok {} B ({} B body), \
         stalled the whole minute {} B ({} B body); a change of state adds one report",
        ok_minute,
        2 * ok.len(),
        stalled_minute,
        60 * stalled.len()
    );
    println!(
        "extra over today's keep-alive per viewer per minute: ok {} B, stalled {} B",
        ok_minute - 2 * request_bytes(&publisher),
        stalled_minute - 2 * request_bytes(&publisher)
    );
}

fn main() {
    println!("# Audience aggregation, {VIEWERS} reporting viewers, median of {RUNS} runs");
    println!("(release build: {})", !cfg!(debug_assertions));
    for (streams, share) in [(1, 0.6), (100, 0.6), (10_000, 0.6), (100, 0.0)] {
        let runs: Vec<Run> = (0..RUNS).map(|_| run(streams, share)).collect();
        let ns = median(runs.iter().map(|r| r.ns_per_report).collect());
        let ok_kib = median(runs.iter().map(|r| r.bytes_ok as f64).collect()) / 1024.0;
        let stalled_kib = median(runs.iter().map(|r| r.bytes_stalled as f64).collect()) / 1024.0;
        println!(
            "{streams:>6} streams, {:>3}% stalled: {ns:>7.0} ns per report ({} reports, {} pushes), \
             memory {ok_kib:.0} KiB all ok ({:.0} B per viewer), {stalled_kib:.0} KiB while stalling",
            (share * 100.0) as u32,
            runs[0].reports,
            runs[0].pushes,
            ok_kib * 1024.0 / VIEWERS as f64,
        );
        println!(
            "        = {:.1} ms of registry CPU per second for 10,000 viewers each reporting once a second",
            ns * VIEWERS as f64 / 1e6
        );
    }
    wire();
}
