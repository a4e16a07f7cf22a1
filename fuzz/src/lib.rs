//! The fuzz targets' bodies: each takes arbitrary bytes, feeds them to one parser of outside
//! input and checks a property of the result (never only "does not panic" where there is more to
//! say). The binaries in `fuzz_targets/` are one-line libFuzzer wrappers around these functions,
//! and `tests/replay.rs` runs the committed corpora through them with plain `cargo test`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use streamguard::registry::{parse_health, parse_provider_list, SseEvent, SseParser};
use streamguard_checker::{accounts::Accounts, m3u, probe};
use streamguard_registry::model::ProviderRecord;
use streamguard_registry::wire::{
    parse_stream_list, AliveReport, NewProvider, PlacementClaim, ProviderUpdate, SessionEvent,
    MAX_ALIVE_SESSIONS, MAX_SUBSCRIBED_STREAMS,
};

/// Heap bytes live now and the most seen since [`reset_peak`]: what "never allocates beyond the
/// size limit" is measured with.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a measurement; returns the bytes live now (the baseline).
fn reset_peak() -> usize {
    let now = live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Heap growth since `baseline` at its highest.
fn peak_since(baseline: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(baseline)
}

/// What a JSON parse may hold at its peak: a `serde_json::Value` costs up to about 100 bytes per
/// input byte (`[{"":0},...]`: a map node per 7 bytes), so 128 per byte plus a fixed 64 KiB.
/// Linear in the input, which the clients and the registry already cap.
fn json_budget(len: usize) -> usize {
    128 * len + 64 * 1024
}

fn assert_linear(what: &str, len: usize, peak: usize) {
    assert!(
        peak <= json_budget(len),
        "{what}: {peak} heap bytes for {len} input bytes (budget {})",
        json_budget(len)
    );
}

/// The engine's provider-list reader: a typed result; on success unique, non-empty names of at
/// most 128 bytes, and no more providers than the body has bytes; memory linear in the input.
pub fn provider_list(data: &[u8]) {
    let base = reset_peak();
    let parsed = parse_provider_list(data);
    assert_linear("parse_provider_list", data.len(), peak_since(base));
    if let Ok(list) = parsed {
        assert!(list.len() <= data.len());
        let mut names = std::collections::HashSet::new();
        for p in &list {
            assert!(!p.name.trim().is_empty() && p.name.len() <= 128);
            assert!(names.insert(p.name.clone()), "duplicate {:?}", p.name);
        }
    }
}

/// The engine's health reader: a typed result; the status kept is at most 64 characters.
pub fn health(data: &[u8]) {
    let base = reset_peak();
    let parsed = parse_health(data);
    assert_linear("parse_health", data.len(), peak_since(base));
    if let Ok(h) = parsed {
        assert!(h.status.chars().count() <= 64);
    }
}

/// Line limit of the event-stream parser under test: small, so the fuzzer reaches it.
const SSE_MAX: usize = 256;

/// Feeds `chunks` to a fresh parser; the events until the first error, and whether one came.
/// After every push the parser's own heap (what it keeps between pushes) must stay within a
/// few times its limit, however many bytes went in.
fn sse_run<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<SseEvent>, bool) {
    let mut events = Vec::new();
    let before = live();
    let mut parser = SseParser::new(SSE_MAX);
    for chunk in chunks {
        let pushed = parser.push(chunk);
        let kept = live().saturating_sub(before);
        let out_bytes: usize = match &pushed {
            Ok(evs) => evs
                .iter()
                .map(|e| e.event.capacity() + e.data.capacity() + std::mem::size_of::<SseEvent>())
                .sum::<usize>()
                .saturating_add(evs.capacity() * std::mem::size_of::<SseEvent>()),
            Err(_) => 0,
        };
        let events_bytes: usize = events
            .iter()
            .map(|e: &SseEvent| e.event.capacity() + e.data.capacity())
            .sum::<usize>()
            + events.capacity() * std::mem::size_of::<SseEvent>();
        let state = kept.saturating_sub(out_bytes + events_bytes);
        assert!(
            state <= 8 * SSE_MAX + 1024,
            "the SSE parser keeps {state} bytes with a {SSE_MAX}-byte limit"
        );
        match pushed {
            Ok(evs) => events.extend(evs),
            Err(_) => return (events, true),
        }
    }
    (events, false)
}

/// The engine's event-stream parser: the same events however the stream is cut into chunks
/// (the first two bytes choose the cut points, the rest is the stream), and its state bounded by
/// its limit.
pub fn sse(data: &[u8]) {
    let (seed, stream) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    let (whole, whole_failed) = sse_run(std::iter::once(stream));
    let step = usize::from(seed % 17) + 1;
    let mut cuts = Vec::new();
    let mut at = 0;
    let mut s = seed;
    while at < stream.len() {
        // A small xorshift varies the chunk sizes from 1 to `step` bytes.
        s ^= s << 7;
        s ^= s >> 9;
        let len = (usize::from(s) % step + 1).min(stream.len() - at);
        cuts.push(&stream[at..at + len]);
        at += len;
    }
    let (chunked, chunked_failed) = sse_run(cuts.into_iter());
    let (bytewise, bytewise_failed) = sse_run(stream.chunks(1));
    assert_eq!(whole_failed, chunked_failed, "an error depends on chunking");
    assert_eq!(
        whole_failed, bytewise_failed,
        "an error depends on chunking"
    );
    if !whole_failed {
        assert_eq!(whole, chunked, "events depend on chunking");
        assert_eq!(whole, bytewise, "events depend on chunking (byte by byte)");
    } else {
        // A push that fails returns none of its events, so smaller chunks return more of the
        // events completed before the error: byte by byte gives them all.
        assert!(whole.is_empty());
        assert!(bytewise.starts_with(&chunked), "events depend on chunking");
    }
}

/// A well-formed entry the playlist property puts before the fuzzer's bytes.
const KNOWN_ENTRY: &str =
    "#EXTM3U\n#EXTINF:-1 tvg-id=\"known\" group-title=\"News\",Known channel\nhttp://example.com/known.m3u8\n";

/// The checker's playlist reader: a typed result on any bytes, memory linear in the input, and a
/// well-formed entry followed by junk is still found, first and intact.
pub fn playlist(data: &[u8]) {
    let base = reset_peak();
    let _ = m3u::read(data);
    // Decoding alone may quadruple (UTF-16 → UTF-8 → `String`s of every part of a line).
    assert_linear("m3u::read", data.len(), peak_since(base));

    let mut bytes = KNOWN_ENTRY.as_bytes().to_vec();
    bytes.extend_from_slice(data);
    match m3u::read(&bytes) {
        Ok(p) => {
            let first = p.entries.first().expect("the known entry is found");
            assert_eq!(first.url, "http://example.com/known.m3u8");
            assert_eq!(first.name, "Known channel");
            assert_eq!(first.attribute("tvg-id"), Some("known"));
        }
        // Junk that makes it an HLS media playlist refuses the whole file, as documented.
        Err(m3u::PlaylistError::HlsMediaPlaylist { .. }) => {}
    }
}

/// The checker's accounts file: a typed result; when accepted, every stream URL has at least
/// one route, each keyed `account/profile`.
pub fn accounts(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(accounts) = Accounts::from_json(text) else {
        return;
    };
    for url in ["http://a.example/live/1", "", text] {
        let routes = accounts.routes(url);
        assert!(!routes.is_empty());
        for r in routes {
            assert!(r.key.contains('/'), "route key {:?}", r.key);
        }
    }
}

/// The checker's ffprobe-output reader: no panic, and what it reports is plausible: a frame rate
/// that is finite and positive, never infinity or NaN.
pub fn ffprobe(data: &[u8]) {
    if let Some(info) = probe::parse(data) {
        if let Some(fps) = info.fps {
            assert!(fps.is_finite() && fps > 0.0, "fps {fps}");
        }
    }
}

fn record() -> ProviderRecord {
    serde_json::from_slice::<NewProvider>(br#"{"name":"agora","config":{"appId":"x"}}"#)
        .expect("a valid body")
        .into_record(1)
        .expect("a valid record")
}

/// The registry's request bodies, read and validated as its handlers do; the first byte picks
/// the body (provider create, provider update, session event, keep-alive, placement claim, the
/// event stream's `streams` list). What validation accepts keeps its limits, and views of it
/// serialise.
pub fn registry_body(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let base = reset_peak();
    match kind % 6 {
        0 => {
            if let Ok(Ok(record)) =
                serde_json::from_slice::<NewProvider>(body).map(|b| b.into_record(1))
            {
                let public = serde_json::to_value(record.public_view()).expect("serialises");
                serde_json::to_vec(&record.admin_view(true)).expect("serialises");
                let config = public["config"].as_object().expect("config is an object");
                for private in ["secret", "private", "probe"] {
                    assert!(
                        !config.contains_key(private),
                        "public config shows {private}"
                    );
                }
            }
        }
        1 => {
            if let Ok(update) = serde_json::from_slice::<ProviderUpdate>(body) {
                let mut r = record();
                let before = r.clone();
                match update.apply(&mut r, 2) {
                    Ok(()) => {
                        assert!(r.monthly_cost.is_finite() && r.monthly_cost >= 0.0);
                        serde_json::to_vec(&r.admin_view(true)).expect("serialises");
                    }
                    // Validation comes before any change.
                    Err(_) => assert_eq!(r, before, "a refused update changed the record"),
                }
            }
        }
        2 => {
            if let Ok(event) = serde_json::from_slice::<SessionEvent>(body) {
                let _ = event.validate();
            }
        }
        3 => {
            if let Ok(report) = serde_json::from_slice::<AliveReport>(body) {
                if report.validate().is_ok() {
                    assert!(report.sessions.len() <= MAX_ALIVE_SESSIONS);
                }
            }
        }
        4 => {
            if let Ok(claim) = serde_json::from_slice::<PlacementClaim>(body) {
                if claim.validate().is_ok() {
                    assert!(claim.epoch >= 1);
                    assert!(!claim.standby.contains(&claim.provider));
                }
            }
        }
        _ => {
            if let Ok(Ok(ids)) = std::str::from_utf8(body).map(parse_stream_list) {
                assert!(!ids.is_empty() && ids.len() <= MAX_SUBSCRIBED_STREAMS);
            }
        }
    }
    assert_linear("registry body", body.len(), peak_since(base));
}
