//! Streamguard demo: a loopback provider registry, three SIMULATED providers ("agora",
//! "zegocloud", "webrtc") and the real engine. The preferred provider goes down part-way, an
//! admin later changes priorities, and a viewer's SDK reports a fatal error; the timeline of
//! detection, failover and migration is printed with times.
//!
//! No media flows: the adapters are in-process simulations with realistic latencies.

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamguard::{
    EventKind, ManagerConfig, ProviderAdapter, ProviderError, ProviderInfo, StreamEvent,
    StreamingProviderManager,
};

/// The registry's data: providers (name, active, priority) and health flags.
#[derive(Default)]
struct Registry {
    providers: Mutex<Vec<(String, bool, u32)>>,
    unhealthy: Mutex<HashMap<String, bool>>,
}

async fn list(State(r): State<Arc<Registry>>) -> Json<Value> {
    let providers: Vec<Value> = r
        .providers
        .lock()
        .unwrap()
        .iter()
        .map(|(n, a, p)| json!({"name": n, "isActive": a, "priority": p, "config": {"appId": format!("demo-{n}")}}))
        .collect();
    Json(json!({"success": true, "data": {"providers": providers}}))
}

async fn health(State(r): State<Arc<Registry>>, Path(name): Path<String>) -> Json<Value> {
    let down = r
        .unhealthy
        .lock()
        .unwrap()
        .get(&name)
        .copied()
        .unwrap_or(false);
    Json(
        json!({"success": true, "data": {"healthy": !down, "provider": name, "status": if down {"down"} else {"active"}}}),
    )
}

/// A simulated vendor SDK: connects after a short latency, fails while "down".
struct SimulatedProvider {
    name: &'static str,
    latency: Duration,
    down: AtomicBool,
}

impl SimulatedProvider {
    fn new(name: &'static str, latency_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            name,
            latency: Duration::from_millis(latency_ms),
            down: AtomicBool::new(false),
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
        self.call().await
    }
    async fn join_stream(&self, _stream_id: &str) -> Result<(), ProviderError> {
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
    let text = match &ev.kind {
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
            stream_id, error, ..
        } => format!("{stream_id}: migration failed: {error}"),
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
    };
    Some(format!("[{:>7.3}s] {text}", ev.at.as_secs_f64()))
}

fn say(start: tokio::time::Instant, text: &str) {
    println!("[{:>7.3}s] >>> {text}", start.elapsed().as_secs_f64());
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    println!("Streamguard demo: SIMULATED providers (no real media), real engine, real HTTP registry on loopback.\n");

    let registry = Arc::new(Registry::default());
    *registry.providers.lock().unwrap() = vec![
        ("agora".into(), true, 1),
        ("zegocloud".into(), true, 2),
        ("webrtc".into(), true, 3),
    ];
    let app = Router::new()
        .route("/api/streaming/providers", get(list))
        .route("/api/streaming/providers/{name}/health", get(health))
        .with_state(registry.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}/api", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("registry listening at {base_url}");

    // Shorter intervals than the defaults (30 s checks) so the demo takes seconds, not minutes.
    let mut config = ManagerConfig::new(&base_url);
    config.health_check_interval = Duration::from_secs(3);
    config.provider_refresh_interval = Duration::from_secs(2);
    config.suspect_recheck_delay = Duration::from_millis(500);
    println!(
        "health checks every {:?} (suspect re-checks after {:?}, then doubling), threshold {} failures, list polled every {:?}\n",
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
        while let Ok(ev) = events.recv().await {
            if let Some(line) = describe(&ev) {
                println!("{line}");
            }
        }
    });
    let start = tokio::time::Instant::now();

    say(
        start,
        "Go live: publisher of \"concert\", viewer of \"match\"",
    );
    let s = manager.start_stream("concert").await?;
    manager.join_stream("match").await?;
    say(
        start,
        &format!("live on {}", s.provider.unwrap_or_default()),
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    say(
        start,
        "OUTAGE: agora goes down (its edge stops answering; the registry marks it down)",
    );
    let outage = tokio::time::Instant::now();
    agora.down.store(true, Ordering::SeqCst);
    registry
        .unhealthy
        .lock()
        .unwrap()
        .insert("agora".into(), true);
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
        "ADMIN: makes webrtc the preferred provider in the registry",
    );
    *registry.providers.lock().unwrap() = vec![
        ("agora".into(), true, 3),
        ("zegocloud".into(), true, 2),
        ("webrtc".into(), true, 1),
    ];
    wait_until(&manager, "concert", "webrtc", Duration::from_secs(10)).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    say(
        start,
        "SDK: the viewer's webrtc SDK reports an auth failure (provider-fatal)",
    );
    manager.record_error("match", ProviderError::unauthorized("token expired"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    say(start, "End both streams and shut down");
    manager.end_stream("concert").await?;
    manager.end_stream("match").await?;
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
