//! Streamguard demo: the reference registry (`streamguard-registry`, in-process, on loopback)
//! with three SIMULATED providers ("agora", "zegocloud", "webrtc") and the real engine.
//!
//! Part 1, stream placement (`placement.rs`): a publisher engine and a viewer engine (two
//! clients) on the same registry. The publisher goes live on zegocloud (its agora account is
//! refused) and claims the stream's placement; the viewer joins zegocloud, not its preferred
//! agora; the publisher moves twice and the viewer follows each time (pushed placement
//! change); a failure only the viewer sees makes it stay, not wander.
//!
//! Part 2, one engine with two publishers: the preferred provider goes down part-way, an admin
//! changes priorities through the registry's admin API, an SDK reports a fatal error, and
//! capacity limits make a start queue for a slot; the timeline of detection, failover and
//! migration is printed with times, then the registry's own view (streams, failover history).
//!
//! No media flows: the adapters are in-process simulations with realistic latencies, and each
//! provider's "edge" is a loopback HTTP endpoint the registry probes.
//!
//! `--interactive` keeps part 2's sessions live after its script until Ctrl-C, so you can flip
//! providers with curl (the commands are printed) and watch the engine react.

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamguard::{
    EventKind, ManagerConfig, ProviderAdapter, ProviderError, ProviderInfo, StreamEvent,
    StreamingProviderManager,
};
use streamguard_registry::{Config as RegistryConfig, Secret, Seed};

mod placement;

/// The providers' simulated edges: `GET /edge/{name}` answers 200, or 503 while down.
#[derive(Default)]
struct Edges {
    down: Mutex<HashMap<String, bool>>,
}

async fn edge(State(e): State<Arc<Edges>>, Path(name): Path<String>) -> StatusCode {
    if e.down.lock().unwrap().get(&name).copied().unwrap_or(false) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

const ADMIN_TOKEN: &str = "demo-admin-token-0123456789";
const TELEMETRY_TOKEN: &str = "demo-telemetry-token-0123456789";

/// One admin call to the registry.
async fn admin_put(
    registry: &str,
    provider: &str,
    body: Value,
) -> Result<(), Box<dyn std::error::Error>> {
    let resp = reqwest::Client::new()
        .put(format!("{registry}/api/streaming/providers/{provider}"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("admin PUT {provider}: {}", resp.status()).into());
    }
    Ok(())
}

async fn admin_get(registry: &str, path: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let body = reqwest::Client::new()
        .get(format!("{registry}/api/streaming/providers{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .bytes()
        .await?;
    Ok(serde_json::from_slice(&body)?)
}

/// A simulated vendor SDK: connects after a short latency, fails while "down".
struct SimulatedProvider {
    name: &'static str,
    latency: Duration,
    down: AtomicBool,
    /// This client's account is refused (e.g. over its publishing quota): starts fail with it.
    refusal: Mutex<Option<ProviderError>>,
    /// Starts and joins asked of it.
    connects: AtomicU32,
}

impl SimulatedProvider {
    fn new(name: &'static str, latency_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            name,
            latency: Duration::from_millis(latency_ms),
            down: AtomicBool::new(false),
            refusal: Mutex::new(None),
            connects: AtomicU32::new(0),
        })
    }
    async fn call(&self) -> Result<(), ProviderError> {
        tokio::time::sleep(self.latency).await;
        if self.down.load(Ordering::SeqCst) {
            Err(ProviderError::network(format!(
                "{} edge unreachable",
                self.name
            )))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ProviderAdapter for SimulatedProvider {
    async fn initialize(&self, _provider: &ProviderInfo) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn start_stream(&self, _stream_id: &str) -> Result<(), ProviderError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        self.call().await?;
        match self.refusal.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    async fn join_stream(&self, _stream_id: &str) -> Result<(), ProviderError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        self.call().await
    }
    async fn leave_stream(&self, _stream_id: &str) -> Result<(), ProviderError> {
        tokio::time::sleep(self.latency / 2).await;
        Ok(())
    }
    async fn probe(&self) -> Result<(), ProviderError> {
        self.call().await
    }
    fn supports_parallel_sessions(&self) -> bool {
        // zegocloud and webrtc can overlap, so moves between them are make-before-break.
        self.name != "agora"
    }
}

fn describe(ev: &StreamEvent) -> Option<String> {
    Some(format!(
        "[{:>7.3}s] {}",
        ev.at.as_secs_f64(),
        event_text(&ev.kind)
    ))
}

/// One event in words.
fn event_text(kind: &EventKind) -> String {
    match kind {
        EventKind::AttemptStarted {
            stream_id,
            provider,
            attempt,
            operation,
        } => format!("{stream_id}: attempt {attempt} ({operation:?}) on {provider}"),
        EventKind::AttemptFailed {
            stream_id,
            provider,
            error,
            retry_in,
            ..
        } => format!(
            "{stream_id}: {provider} failed: {}{}",
            error,
            retry_in.map_or(String::new(), |d| format!(", retry in {d:?}"))
        ),
        EventKind::Failover {
            stream_id,
            from,
            to,
            reason,
        } => format!(
            "{stream_id}: FAILOVER {from} -> {} ({reason:?})",
            to.as_deref().unwrap_or("nowhere")
        ),
        EventKind::MigrationStarted {
            stream_id,
            from,
            strategy,
            ..
        } => format!("{stream_id}: migration off {from} started ({strategy:?})"),
        EventKind::MigrationFinished {
            stream_id,
            from,
            to,
            gap,
            duration,
            ..
        } => format!(
            "{stream_id}: MIGRATED {from} -> {to} in {duration:.0?}, gap without a provider {gap:.0?}"
        ),
        EventKind::MigrationFailed {
            stream_id,
            error,
            still_on,
            ..
        } => format!(
            "{stream_id}: migration failed: {error}{}",
            still_on
                .as_deref()
                .map_or(String::new(), |p| format!(" (still on {p})"))
        ),
        EventKind::HealthChanged {
            provider,
            from,
            to,
            consecutive_failures,
            detail,
        } => format!(
            "{provider}: health {from:?} -> {to:?} ({consecutive_failures} consecutive failures; {detail})"
        ),
        EventKind::ProviderListChanged { active } => {
            format!("registry: provider order now {}", active.join(" > "))
        }
        EventKind::BackendError { error } => format!("registry error: {error}"),
        EventKind::PlacementChanged {
            stream_id,
            provider,
            epoch,
            live,
            standby,
        } => format!(
            "{stream_id}: published on {provider}{} (epoch {epoch}{})",
            if standby.is_empty() {
                String::new()
            } else {
                format!(", standby {}", standby.join(", "))
            },
            if *live { "" } else { ", ended" }
        ),
        EventKind::QualityChanged {
            provider,
            score,
            to,
            ..
        } => format!("{provider}: quality {score:.0} ({to:?})"),
        EventKind::QualityLowered {
            stream_id,
            provider,
            level,
        } => format!("{stream_id}: quality lowered to {level:?} on {provider}"),
        EventKind::AudienceChanged {
            stream_id,
            provider,
            viewers,
            stalled,
            outage,
        } => format!(
            "{stream_id}: {stalled}/{viewers} viewers stalled on {provider}{}",
            if *outage { " (outage)" } else { "" }
        ),
        EventKind::StandbyPromoted {
            stream_id,
            from,
            to,
            epoch,
        } => format!("{stream_id}: standby {to} promoted, {from} left (epoch {epoch})"),
        EventKind::WaitingForCapacity {
            stream_id,
            providers,
            max_wait,
        } => format!(
            "{stream_id}: all full ({}); waiting up to {max_wait:.0?} for a slot",
            providers.join(", ")
        ),
        EventKind::SessionStateChanged {
            stream_id,
            to,
            provider,
            ..
        } => format!(
            "{stream_id}: {to:?}{}",
            provider
                .as_deref()
                .map_or(String::new(), |p| format!(" on {p}"))
        ),
    }
}

fn say(start: tokio::time::Instant, text: &str) {
    println!("[{:>7.3}s] >>> {text}", start.elapsed().as_secs_f64());
}

/// The providers' simulated edges (probed by the registry's health checker) and the
/// reference registry, in-process on loopback, with three providers and 1 s background checks.
async fn start_registry(
) -> Result<(streamguard_registry::RunningRegistry, Arc<Edges>), Box<dyn std::error::Error>> {
    let edges = Arc::new(Edges::default());
    let app = Router::new()
        .route("/edge/{name}", get(edge))
        .with_state(edges.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let edge_base = format!("http://{}/edge", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut reg_config =
        RegistryConfig::local_test(ADMIN_TOKEN, "demo-super-admin-token-0123456789");
    reg_config.health_interval = Duration::from_secs(1);
    // Session telemetry moves the stream counts capacity decisions read, and placement claims
    // are authenticated like it: the app reports with its own token, never anonymously.
    reg_config.telemetry_token = Some(Secret::new(TELEMETRY_TOKEN));
    let seed = json!([
        {"name": "agora", "priority": 1, "monthlyCost": 49.0,
         "config": {"appId": "demo-agora", "probe": {"type": "http", "url": format!("{edge_base}/agora")}}},
        {"name": "zegocloud", "priority": 2, "monthlyCost": 39.0,
         "config": {"appId": "demo-zego", "probe": {"type": "http", "url": format!("{edge_base}/zegocloud")}}},
        {"name": "webrtc", "priority": 3, "monthlyCost": 0.0,
         "config": {"probe": {"type": "http", "url": format!("{edge_base}/webrtc")}}}
    ]);
    reg_config.seed = Seed::Providers(serde_json::from_value(seed)?);
    Ok((streamguard_registry::serve(reg_config).await?, edges))
}

/// The engine's configuration in the demo: shorter intervals than the defaults (30 s checks)
/// so the demo takes seconds, not minutes.
fn engine_config(base_url: &str) -> ManagerConfig {
    let mut config = ManagerConfig::new(base_url);
    config.health_check_interval = Duration::from_secs(3);
    config.provider_refresh_interval = Duration::from_secs(2);
    config.suspect_recheck_delay = Duration::from_millis(500);
    config.report_sessions = true;
    config.auth_token = Some(TELEMETRY_TOKEN.into());
    config
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    println!("Streamguard demo: SIMULATED providers (no real media), real engine, real HTTP registry on loopback.\n");

    let interactive = std::env::args().any(|a| a == "--interactive");

    let (registry, edges) = start_registry().await?;
    let reg_url = registry.url();
    let base_url = format!("{reg_url}/api");
    println!("registry (streamguard-registry) at {reg_url}, admin token {ADMIN_TOKEN}");
    println!("  try: curl -s {reg_url}/api/streaming/providers");
    println!("       curl -s -X PUT -H 'Authorization: Bearer {ADMIN_TOKEN}' -H 'content-type: application/json' \\");
    println!(
        "            -d '{{\"isActive\":false}}' {reg_url}/api/streaming/providers/zegocloud\n"
    );

    // Part 1: stream placement, two engines (publisher and viewer) on this registry.
    let facts = placement::scene(
        &reg_url,
        Duration::from_millis(700),
        engine_config(&base_url).provider_refresh_interval,
    )
    .await?;
    println!(
        "\nplacement summary: publisher on {}; viewer on {} (followed {} moves; stayed on {} when only its own SDK failed)\n",
        facts.publisher_on.join(" -> "),
        facts.viewer_on.join(" -> "),
        facts.viewer_follow_reasons.len(),
        facts.viewer_stayed_on.as_deref().unwrap_or("-")
    );

    // Part 2: one engine with two publishers through an outage, an admin change, an SDK error
    // and capacity limits.
    let mut config = engine_config(&base_url);
    // When every provider is full, queue for the first free slot (at most 30 s) instead of
    // failing at once.
    config.wait_for_capacity = true;
    config.capacity_max_wait = Duration::from_secs(30);
    println!(
        "engine: health checks every {:?} (suspect re-checks after {:?}, then doubling), threshold {} failures, list pushed by the registry (polled every {:?} as fallback)\n",
        config.health_check_interval,
        config.suspect_recheck_delay,
        config.failure_threshold,
        config.provider_refresh_interval
    );
    let manager = StreamingProviderManager::new(config)?;
    let agora = SimulatedProvider::new("agora", 120);
    let zego = SimulatedProvider::new("zegocloud", 90);
    let webrtc = SimulatedProvider::new("webrtc", 60);
    manager.register_adapter("agora", agora.clone())?;
    manager.register_adapter("zegocloud", zego.clone())?;
    manager.register_adapter("webrtc", webrtc.clone())?;

    let mut events = manager.subscribe();
    let printer = tokio::spawn(async move {
        // The registry re-announces its list whenever stream counts change; print the
        // provider order only when it really changes.
        let mut last_order: Option<Vec<String>> = None;
        while let Ok(ev) = events.recv().await {
            if let EventKind::ProviderListChanged { active } = &ev.kind {
                if last_order.as_ref() == Some(active) {
                    continue;
                }
                last_order = Some(active.clone());
            }
            if let Some(line) = describe(&ev) {
                println!("{line}");
            }
        }
    });
    let start = tokio::time::Instant::now();

    say(start, "Go live: publishers of \"concert\" and \"match\"");
    let s = manager.start_stream("concert").await?;
    manager.start_stream("match").await?;
    say(
        start,
        &format!("live on {}", s.provider.unwrap_or_default()),
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    say(
        start,
        "OUTAGE: agora goes down (its SDK and its edge stop answering)",
    );
    let outage = tokio::time::Instant::now();
    agora.down.store(true, Ordering::SeqCst);
    edges.down.lock().unwrap().insert("agora".into(), true);
    wait_until(&manager, "concert", "zegocloud", Duration::from_secs(20)).await;
    say(
        start,
        &format!(
            "both sessions moved off agora {:.1}s after the outage began",
            outage.elapsed().as_secs_f64()
        ),
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    say(
        start,
        "ADMIN: makes webrtc the preferred provider: PUT /api/streaming/providers/webrtc {\"priority\":0}",
    );
    admin_put(&reg_url, "webrtc", json!({"priority": 0})).await?;
    wait_until(&manager, "concert", "webrtc", Duration::from_secs(10)).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    say(
        start,
        "SDK: the webrtc SDK of \"match\"'s publisher reports an auth failure (provider-fatal)",
    );
    manager.record_error("match", ProviderError::unauthorized("token expired"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    say(
        start,
        "ADMIN: caps zegocloud at 2 streams (it carries both) and webrtc at 1 (maxStreams)",
    );
    admin_put(&reg_url, "zegocloud", json!({"maxStreams": 2})).await?;
    admin_put(&reg_url, "webrtc", json!({"maxStreams": 1})).await?;
    manager.refresh_providers().await?;
    say(
        start,
        "Go live: publisher of \"talk\" takes webrtc's only slot",
    );
    let s = manager.start_stream("talk").await?;
    say(
        start,
        &format!("talk live on {}", s.provider.unwrap_or_default()),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    say(
        start,
        "Go live: publisher of \"panel\": agora is still down, zegocloud and webrtc are full",
    );
    let panel = {
        let m = manager.clone();
        tokio::spawn(async move { m.start_stream("panel").await })
    };
    let mut rx = manager.subscribe();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(ev) = rx.recv().await {
            if matches!(ev.kind, EventKind::WaitingForCapacity { .. }) {
                return;
            }
        }
    })
    .await
    .map_err(|_| "panel never queued for a slot")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    say(start, "End \"match\": its zegocloud slot frees up");
    let freed = tokio::time::Instant::now();
    manager.end_stream("match").await?;
    let s = tokio::time::timeout(Duration::from_secs(20), panel)
        .await
        .map_err(|_| "panel did not get the freed slot")???;
    say(
        start,
        &format!(
            "\"panel\" live on {} {:.0?} after the slot freed (woken by the registry's push of the new count; the connect itself takes 90 ms)",
            s.provider.unwrap_or_default(),
            freed.elapsed()
        ),
    );

    if interactive {
        say(
            start,
            "INTERACTIVE: sessions stay live; flip providers with curl (see above). Ctrl-C to end.",
        );
        tokio::signal::ctrl_c().await?;
    }
    say(start, "End the streams and shut down");
    for stream in ["concert", "talk", "panel"] {
        manager.end_stream(stream).await?;
    }
    manager.shutdown().await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    printer.abort();

    println!("\nprovider statistics:");
    println!(
        "{:<10} {:<10} {:>8} {:>9} {:>9} {:>7} {:>8} {:>10}",
        "provider", "status", "attempts", "successes", "failures", "checks", "uptime%", "avg check"
    );
    for s in manager.provider_stats() {
        println!(
            "{:<10} {:<10} {:>8} {:>9} {:>9} {:>7} {:>8} {:>10}",
            s.provider,
            format!("{:?}", s.status),
            s.attempts,
            s.successes,
            s.failures,
            s.health_checks,
            s.uptime_percent.map_or("-".into(), |u| format!("{u:.0}")),
            s.avg_check_latency
                .map_or("-".into(), |d| format!("{:.0?}", d)),
        );
    }
    println!(
        "\nbackground tasks left after shutdown: {}",
        manager.task_count()
    );

    // The registry's own view, fed by its health checker and the engine's session reports.
    let list = admin_get(&reg_url, "/admin").await?;
    println!("\nregistry view (GET /api/streaming/providers/admin):");
    println!(
        "{:<10} {:<9} {:>8} {:>7} {:>7} {:>9}",
        "provider", "status", "priority", "active", "total", "uptime%"
    );
    for p in list["data"]["providers"].as_array().into_iter().flatten() {
        let s = &p["statistics"];
        println!(
            "{:<10} {:<9} {:>8} {:>7} {:>7} {:>9}",
            p["name"].as_str().unwrap_or("?"),
            p["status"].as_str().unwrap_or("?"),
            p["priority"].to_string(),
            s["activeStreams"].to_string(),
            s["totalStreams"].to_string(),
            s["uptime"]
                .as_f64()
                .map_or("-".into(), |u| format!("{u:.0}")),
        );
    }
    let failovers = admin_get(&reg_url, "/failovers").await?;
    println!("\nregistry failover history (GET /api/streaming/providers/failovers):");
    for f in failovers["data"]["failovers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  {} {} -> {} ({})",
            f["streamId"].as_str().unwrap_or("?"),
            f["from"].as_str().unwrap_or("?"),
            f["to"].as_str().unwrap_or("?"),
            f["reason"].as_str().unwrap_or("")
        );
    }
    registry.shutdown().await?;
    Ok(())
}

/// Wait (bounded) until `stream` is live on `provider`.
async fn wait_until(m: &StreamingProviderManager, stream: &str, provider: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut rx = m.subscribe();
    loop {
        if m.session(stream).is_some_and(|s| {
            s.provider.as_deref() == Some(provider) && s.state == streamguard::SessionState::Live
        }) {
            return;
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("demo: {stream} did not reach {provider} within {within:?}");
                std::process::exit(1);
            }
        }
    }
}
