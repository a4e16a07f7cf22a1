//! Test harness: a real HTTP provider registry (axum on loopback, on its own real-time runtime)
//! and scripted in-process adapters.
//!
//! Engine tests run on paused tokio time. Real socket I/O on a paused runtime lets the clock
//! jump to the next timer while a response is still in flight, so registry calls are bridged:
//! the real `HttpRegistry` runs on the backend's real-time runtime inside `spawn_blocking`,
//! which holds the paused clock still until the HTTP exchange is done.

#![allow(dead_code)]

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamguard::{
    BackendError, EventKind, HttpRegistry, LiveSession, ManagerConfig, Placement, PlacementClaim,
    ProviderAdapter, ProviderError, ProviderErrorKind, ProviderInfo, ProviderList,
    ProviderRegistry, PushEvent, RegistryHealth, SessionReport, StreamEvent,
    StreamingProviderManager,
};
use tokio::sync::broadcast;

// ----- the backend ---------------------------------------------------------------------------

/// How the backend misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    ServerError,
    Garbage,
    Huge,
    WrongTypes,
}

#[derive(Default)]
struct BackendState {
    providers: Vec<Value>,
    unhealthy: HashMap<String, bool>,
    mode: Option<Mode>,
}

/// Called with (stream, provider, epoch) of each accepted placement claim.
pub type ClaimHook = Box<dyn Fn(&str, &str, u64) + Send>;

/// Shared, inspectable state of the loopback backend.
pub struct BackendCtl {
    state: Mutex<BackendState>,
    pub list_requests: AtomicU64,
    pub not_modified: AtomicU64,
    pub health_requests: Mutex<HashMap<String, u64>>,
    pub saw_token: Mutex<Option<String>>,
    pub list_down: AtomicBool,
    /// Serve the push channel (`/events`); when false it answers 404.
    pub push_enabled: AtomicBool,
    push: tokio::sync::broadcast::Sender<String>,
    /// Requests made to `/events`, and how many streams are open now.
    pub push_requests: AtomicU64,
    pub push_open: tokio::sync::watch::Sender<u64>,
    /// Session telemetry received, as JSON.
    pub reports: Mutex<Vec<Value>>,
    /// Keep-alive reports received, as JSON.
    pub alive: Mutex<Vec<Value>>,
    /// Serve the placement directory (off: answers 404 like an older registry).
    pub placement_enabled: AtomicBool,
    /// Stored placements by stream id: (provider, epoch, live, client id).
    pub placements: Mutex<HashMap<String, (String, u64, bool, String)>>,
    /// Every claim accepted, as (stream, provider, epoch).
    pub claims: Mutex<Vec<(String, String, u64)>>,
    /// The standby list of each stored placement.
    pub standbys: Mutex<HashMap<String, Vec<String>>>,
    /// Called with each accepted claim (tests look at the adapters at that instant).
    pub on_claim: Mutex<Option<ClaimHook>>,
}

impl BackendCtl {
    pub fn set_providers(&self, list: &[(&str, bool, u32)]) {
        self.state.lock().unwrap().providers = list
            .iter()
            .map(|(n, a, p)| json!({"name": n, "isActive": a, "priority": p, "config": {"appId": format!("{n}-app")}}))
            .collect();
    }
    pub fn set_raw_providers(&self, list: Vec<Value>) {
        self.state.lock().unwrap().providers = list;
    }
    pub fn set_healthy(&self, name: &str, healthy: bool) {
        self.state
            .lock()
            .unwrap()
            .unhealthy
            .insert(name.into(), !healthy);
    }
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }
    /// Announce an event on the push channel.
    pub fn push(&self, event: &str, data: &str) {
        let _ = self.push.send(format!("event: {event}\ndata: {data}\n\n"));
    }
    /// The publisher (some other client) moved `stream` to `provider` with `epoch`.
    pub fn set_placement(&self, stream: &str, provider: &str, epoch: u64) {
        self.placements.lock().unwrap().insert(
            stream.into(),
            (provider.into(), epoch, true, "another-client".into()),
        );
    }
    pub fn placement_of(&self, stream: &str) -> Option<(String, u64, bool)> {
        self.placements
            .lock()
            .unwrap()
            .get(stream)
            .map(|(p, e, l, _)| (p.clone(), *e, *l))
    }
    /// The standbys listed in `stream`'s placement.
    pub fn standby_of(&self, stream: &str) -> Vec<String> {
        self.standbys
            .lock()
            .unwrap()
            .get(stream)
            .cloned()
            .unwrap_or_default()
    }
    /// The publisher (some other client) placed `stream` on `provider` with `standby`.
    pub fn set_placement_with_standby(
        &self,
        stream: &str,
        provider: &str,
        epoch: u64,
        standby: &[&str],
    ) {
        self.set_placement(stream, provider, epoch);
        self.standbys.lock().unwrap().insert(
            stream.into(),
            standby.iter().map(|s| s.to_string()).collect(),
        );
    }
    pub fn health_count(&self, name: &str) -> u64 {
        *self.health_requests.lock().unwrap().get(name).unwrap_or(&0)
    }
}

/// A running loopback backend. Dropping it stops the server and its runtime.
pub struct Backend {
    pub ctl: Arc<BackendCtl>,
    pub base_url: String,
    rt: Option<tokio::runtime::Runtime>,
}

impl Backend {
    pub fn start(list: &[(&str, bool, u32)]) -> Self {
        let ctl = Arc::new(BackendCtl {
            state: Mutex::new(BackendState::default()),
            list_requests: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            health_requests: Mutex::new(HashMap::new()),
            saw_token: Mutex::new(None),
            list_down: AtomicBool::new(false),
            push_enabled: AtomicBool::new(true),
            push: tokio::sync::broadcast::channel(64).0,
            push_requests: AtomicU64::new(0),
            push_open: tokio::sync::watch::channel(0).0,
            reports: Mutex::new(Vec::new()),
            alive: Mutex::new(Vec::new()),
            placement_enabled: AtomicBool::new(false),
            placements: Mutex::new(HashMap::new()),
            standbys: Mutex::new(HashMap::new()),
            claims: Mutex::new(Vec::new()),
            on_claim: Mutex::new(None),
        });
        ctl.set_providers(list);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = Router::new()
            .route("/api/streaming/providers", get(list_handler))
            .route(
                "/api/streaming/providers/{name}/health",
                get(health_handler),
            )
            .route("/api/streaming/providers/events", get(events_handler))
            .route(
                "/api/streaming/sessions/events",
                axum::routing::post(report_handler),
            )
            .route(
                "/api/streaming/sessions/alive",
                axum::routing::post(alive_handler),
            )
            .route("/api/streaming/streams/{id}", get(placement_get))
            .route(
                "/api/streaming/streams/{id}/placement",
                axum::routing::put(placement_put).delete(placement_delete),
            )
            .with_state(ctl.clone());
        // Bound with std: tests construct the backend from inside their own runtime, where
        // `block_on` is not allowed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await
        });
        Self {
            ctl,
            base_url: format!("http://{addr}/api"),
            rt: Some(rt),
        }
    }

    /// The real HTTP client, bridged so paused time stands still during each exchange.
    pub fn registry(&self, config: &ManagerConfig) -> Arc<dyn ProviderRegistry> {
        let inner = Arc::new(
            HttpRegistry::new(
                &config.base_url,
                config.auth_token.clone(),
                config.request_timeout,
                config.max_response_bytes,
            )
            .unwrap(),
        );
        Arc::new(Bridged {
            inner,
            rt: self.rt.as_ref().unwrap().handle().clone(),
        })
    }

    /// A manager using the real HTTP client directly (for real-time tests).
    pub fn manager_http(&self, config: ManagerConfig) -> StreamingProviderManager {
        StreamingProviderManager::new(config).unwrap()
    }

    /// A default config pointing at this backend, with fast backoff.
    pub fn config(&self) -> ManagerConfig {
        ManagerConfig::new(&self.base_url)
    }

    /// A manager on this backend with a fixed jitter sample of 0.5.
    pub fn manager(&self, config: ManagerConfig) -> StreamingProviderManager {
        let registry = self.registry(&config);
        StreamingProviderManager::builder(config)
            .registry(registry)
            .jitter(Box::new(FixedJitter(0.5)))
            .build()
            .unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn etag_of(body: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:x}\"", h.finish())
}

async fn list_handler(State(ctl): State<Arc<BackendCtl>>, headers: HeaderMap) -> Response {
    ctl.list_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(auth) = headers.get("authorization") {
        *ctl.saw_token.lock().unwrap() = auth.to_str().ok().map(str::to_string);
    }
    if ctl.list_down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let (providers, mode) = {
        let s = ctl.state.lock().unwrap();
        (s.providers.clone(), s.mode.unwrap_or(Mode::Normal))
    };
    match mode {
        Mode::ServerError => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Mode::Garbage => return (StatusCode::OK, "<html>not json</html>").into_response(),
        Mode::Huge => {
            let big = "x".repeat(2 << 20);
            return (StatusCode::OK, format!("{{\"success\":true,\"pad\":\"{big}\"}}"))
                .into_response();
        }
        Mode::WrongTypes => {
            return (
                StatusCode::OK,
                r#"{"success":true,"data":{"providers":[{"name":"agora","isActive":"yes","priority":1}]}}"#,
            )
                .into_response()
        }
        Mode::Normal => {}
    }
    let body = json!({"success": true, "data": {"providers": providers}}).to_string();
    let tag = etag_of(&body);
    if headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == tag)
    {
        ctl.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [("etag", tag)]).into_response();
    }
    (
        StatusCode::OK,
        [("etag", tag), ("content-type", "application/json".into())],
        body,
    )
        .into_response()
}

async fn report_handler(
    State(ctl): State<Arc<BackendCtl>>,
    axum::Json(body): axum::Json<Value>,
) -> StatusCode {
    ctl.reports.lock().unwrap().push(body);
    StatusCode::NO_CONTENT
}

async fn alive_handler(
    State(ctl): State<Arc<BackendCtl>>,
    axum::Json(body): axum::Json<Value>,
) -> StatusCode {
    ctl.alive.lock().unwrap().push(body);
    StatusCode::NO_CONTENT
}

async fn events_handler(State(ctl): State<Arc<BackendCtl>>) -> Response {
    ctl.push_requests.fetch_add(1, Ordering::SeqCst);
    if !ctl.push_enabled.load(Ordering::SeqCst) {
        return (StatusCode::NOT_FOUND, "no push here").into_response();
    }
    let mut rx = ctl.push.subscribe();
    let (tx, out) = tokio::sync::mpsc::channel::<Result<String, std::convert::Infallible>>(16);
    let open = ctl.clone();
    tokio::spawn(async move {
        open.push_open.send_modify(|n| *n += 1);
        let _ = tx.send(Ok(": hello\n\n".into())).await;
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Ok(msg) = msg else { break };
                    if tx.send(Ok(msg)).await.is_err() {
                        break;
                    }
                }
                // The client went away (hyper dropped the body).
                _ = tx.closed() => break,
            }
        }
        open.push_open.send_modify(|n| *n -= 1);
    });
    (
        StatusCode::OK,
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(out)),
    )
        .into_response()
}

async fn health_handler(State(ctl): State<Arc<BackendCtl>>, Path(name): Path<String>) -> Response {
    *ctl.health_requests
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_default() += 1;
    let s = ctl.state.lock().unwrap();
    if s.mode == Some(Mode::ServerError) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let known = s.providers.iter().any(|p| p["name"] == name.as_str());
    if !known {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    let healthy = !s.unhealthy.get(&name).copied().unwrap_or(false);
    let body = json!({"success": true, "data": {"healthy": healthy, "provider": name, "status": if healthy {"active"} else {"down"}}});
    (StatusCode::OK, body.to_string()).into_response()
}

fn placement_json(ctl: &BackendCtl, id: &str, provider: &str, epoch: u64, live: bool) -> Value {
    let standby = ctl.standby_of(id);
    json!({"success": true, "data": {"streamId": id, "provider": provider, "epoch": epoch, "standby": standby, "live": live}})
}

fn api_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "error": {"code": code, "message": code}})),
    )
        .into_response()
}

async fn placement_get(State(ctl): State<Arc<BackendCtl>>, Path(id): Path<String>) -> Response {
    if !ctl.placement_enabled.load(Ordering::SeqCst) {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let stored = ctl.placements.lock().unwrap().get(&id).cloned();
    match stored {
        Some((p, e, live, _)) => axum::Json(placement_json(&ctl, &id, &p, e, live)).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "unknown_stream"),
    }
}

async fn placement_put(
    State(ctl): State<Arc<BackendCtl>>,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !ctl.placement_enabled.load(Ordering::SeqCst) {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let provider = body["provider"].as_str().unwrap_or_default().to_string();
    let epoch = body["epoch"].as_u64().unwrap_or(0);
    let client = body["clientId"].as_str().unwrap_or_default().to_string();
    {
        let mut all = ctl.placements.lock().unwrap();
        if let Some((_, stored, live, owner)) = all.get(&id) {
            if *live && *owner != client {
                return api_error(StatusCode::CONFLICT, "owned_by_other");
            }
            if epoch <= *stored {
                return api_error(StatusCode::CONFLICT, "stale_epoch");
            }
        }
        all.insert(id.clone(), (provider.clone(), epoch, true, client));
    }
    let standby: Vec<String> = body["standby"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ctl.standbys.lock().unwrap().insert(id.clone(), standby);
    ctl.claims
        .lock()
        .unwrap()
        .push((id.clone(), provider.clone(), epoch));
    if let Some(hook) = ctl.on_claim.lock().unwrap().as_ref() {
        hook(&id, &provider, epoch);
    }
    axum::Json(placement_json(&ctl, &id, &provider, epoch, true)).into_response()
}

async fn placement_delete(
    State(ctl): State<Arc<BackendCtl>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    if !ctl.placement_enabled.load(Ordering::SeqCst) {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let mut all = ctl.placements.lock().unwrap();
    if let Some(entry) = all.get_mut(&id) {
        if q.get("clientId") != Some(&entry.3) && entry.2 {
            return api_error(StatusCode::CONFLICT, "owned_by_other");
        }
        entry.2 = false;
    }
    StatusCode::NO_CONTENT.into_response()
}

struct Bridged {
    inner: Arc<HttpRegistry>,
    rt: tokio::runtime::Handle,
}

#[async_trait]
impl ProviderRegistry for Bridged {
    async fn providers(&self, etag: Option<&str>) -> Result<ProviderList, BackendError> {
        let inner = self.inner.clone();
        let rt = self.rt.clone();
        let etag = etag.map(str::to_string);
        tokio::task::spawn_blocking(move || rt.block_on(inner.providers(etag.as_deref())))
            .await
            .unwrap()
    }
    async fn health(&self, provider: &str) -> Result<RegistryHealth, BackendError> {
        let inner = self.inner.clone();
        let rt = self.rt.clone();
        let p = provider.to_string();
        tokio::task::spawn_blocking(move || rt.block_on(inner.health(&p)))
            .await
            .unwrap()
    }
    async fn alive(&self, client_id: &str, sessions: &[LiveSession]) -> Result<(), BackendError> {
        let inner = self.inner.clone();
        let rt = self.rt.clone();
        let (c, s) = (client_id.to_string(), sessions.to_vec());
        tokio::task::spawn_blocking(move || rt.block_on(inner.alive(&c, &s)))
            .await
            .unwrap()
    }
    async fn placement(
        &self,
        stream_id: &str,
    ) -> Result<Option<streamguard::Placement>, BackendError> {
        let inner = self.inner.clone();
        let rt = self.rt.clone();
        let id = stream_id.to_string();
        tokio::task::spawn_blocking(move || rt.block_on(inner.placement(&id)))
            .await
            .unwrap()
    }
    async fn claim_placement(
        &self,
        stream_id: &str,
        claim: &streamguard::PlacementClaim,
    ) -> Result<streamguard::Placement, BackendError> {
        let inner = self.inner.clone();
        let rt = self.rt.clone();
        let (id, c) = (stream_id.to_string(), claim.clone());
        tokio::task::spawn_blocking(move || rt.block_on(inner.claim_placement(&id, &c)))
            .await
            .unwrap()
    }
    async fn release_placement(
        &self,
        stream_id: &str,
        client_id: &str,
    ) -> Result<(), BackendError> {
        let inner = self.inner.clone();
        let rt = self.rt.clone();
        let (id, c) = (stream_id.to_string(), client_id.to_string());
        tokio::task::spawn_blocking(move || rt.block_on(inner.release_placement(&id, &c)))
            .await
            .unwrap()
    }
    async fn report(&self, report: &SessionReport) -> Result<(), BackendError> {
        let inner = self.inner.clone();
        let rt = self.rt.clone();
        let r = report.clone();
        tokio::task::spawn_blocking(move || rt.block_on(inner.report(&r)))
            .await
            .unwrap()
    }
}

/// A registry that misbehaves on demand in virtual time (delays, hangs, a failing push
/// channel) around a real one: what a slow or hung backend looks like to the engine.
pub struct Faulty {
    inner: Arc<dyn ProviderRegistry>,
    /// Every list read waits this long first.
    pub list_delay: Mutex<Duration>,
    /// List reads never answer (the engine's `request_timeout` ends them).
    pub list_hang: AtomicBool,
    pub health_hang: AtomicBool,
    /// Placement reads never answer.
    pub placement_hang: AtomicBool,
    /// The push channel fails at once (connection refused).
    pub follow_fails: AtomicBool,
    /// When each list read and each push connection was asked for.
    pub list_at: Mutex<Vec<tokio::time::Instant>>,
    pub follow_at: Mutex<Vec<tokio::time::Instant>>,
}

impl Faulty {
    pub fn new(inner: Arc<dyn ProviderRegistry>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            list_delay: Mutex::new(Duration::ZERO),
            list_hang: AtomicBool::new(false),
            health_hang: AtomicBool::new(false),
            placement_hang: AtomicBool::new(false),
            follow_fails: AtomicBool::new(false),
            list_at: Mutex::new(Vec::new()),
            follow_at: Mutex::new(Vec::new()),
        })
    }
    pub fn list_reads(&self) -> usize {
        self.list_at.lock().unwrap().len()
    }
    pub fn follows(&self) -> Vec<tokio::time::Instant> {
        self.follow_at.lock().unwrap().clone()
    }
}

#[async_trait]
impl ProviderRegistry for Faulty {
    async fn providers(&self, etag: Option<&str>) -> Result<ProviderList, BackendError> {
        self.list_at
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        if self.list_hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let delay = *self.list_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        self.inner.providers(etag).await
    }
    async fn health(&self, provider: &str) -> Result<RegistryHealth, BackendError> {
        if self.health_hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.health(provider).await
    }
    async fn placement(
        &self,
        stream_id: &str,
    ) -> Result<Option<streamguard::Placement>, BackendError> {
        if self.placement_hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.placement(stream_id).await
    }
    async fn follow(
        &self,
        on_event: &(dyn Fn(streamguard::PushEvent) + Send + Sync),
    ) -> Result<(), BackendError> {
        self.follow_at
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        if self.follow_fails.load(Ordering::SeqCst) {
            return Err(BackendError::Network("connection refused".into()));
        }
        self.inner.follow(on_event).await
    }
}

impl Backend {
    /// A manager (fixed jitter 0.5) on this backend through a [`Faulty`] registry.
    pub fn faulty_manager(&self, config: ManagerConfig) -> (StreamingProviderManager, Arc<Faulty>) {
        let faulty = Faulty::new(self.registry(&config));
        let m = StreamingProviderManager::builder(config)
            .registry(faulty.clone())
            .jitter(Box::new(FixedJitter(0.5)))
            .build()
            .unwrap();
        (m, faulty)
    }
}

// ----- the placement directory ---------------------------------------------------------

impl Backend {
    /// A backend with its placement directory on.
    pub fn with_placement(list: &[(&str, bool, u32)]) -> Self {
        let b = Self::start(list);
        b.ctl.placement_enabled.store(true, Ordering::SeqCst);
        b
    }
}

/// The loopback registry, with claims that fail or are slow on demand and a push channel the
/// test drives (placement events queued with [`Wrap::push`]).
pub struct Wrap {
    inner: Arc<dyn ProviderRegistry>,
    /// Claims fail with a network error.
    pub claims_fail: AtomicBool,
    /// Claims of this provider wait this long before they are sent.
    pub slow_claims: Mutex<Option<(String, Duration)>>,
    /// Claims asked for, by provider.
    pub claims_asked: Mutex<Vec<String>>,
    pub claim_count: AtomicU64,
    /// Events for the push channel, queued until the engine follows it.
    push: tokio::sync::mpsc::UnboundedSender<PushEvent>,
    pushed: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<PushEvent>>,
    /// Serve the push channel (off: `PushUnsupported`).
    pub push_on: AtomicBool,
    /// Releases wait this long before they are sent.
    pub slow_release: Mutex<Duration>,
}

impl Wrap {
    pub fn new(inner: Arc<dyn ProviderRegistry>) -> Arc<Self> {
        let (push, pushed) = tokio::sync::mpsc::unbounded_channel();
        Arc::new(Self {
            inner,
            claims_fail: AtomicBool::new(false),
            slow_claims: Mutex::new(None),
            claims_asked: Mutex::new(Vec::new()),
            claim_count: AtomicU64::new(0),
            push,
            pushed: tokio::sync::Mutex::new(pushed),
            push_on: AtomicBool::new(false),
            slow_release: Mutex::new(Duration::ZERO),
        })
    }
    /// Send a placement event on the push channel (delivered once the engine follows it).
    pub fn push(&self, p: Placement) {
        let _ = self.push.send(PushEvent::Placement(p));
    }
    /// Send any event on the push channel (delivered once the engine follows it).
    pub fn push_event(&self, ev: PushEvent) {
        let _ = self.push.send(ev);
    }
}

#[async_trait]
impl ProviderRegistry for Wrap {
    async fn providers(&self, etag: Option<&str>) -> Result<ProviderList, BackendError> {
        self.inner.providers(etag).await
    }
    async fn health(&self, provider: &str) -> Result<RegistryHealth, BackendError> {
        self.inner.health(provider).await
    }
    async fn follow_streams(
        &self,
        _streams: &[String],
        on_event: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<(), BackendError> {
        if !self.push_on.load(Ordering::SeqCst) {
            return Err(BackendError::PushUnsupported);
        }
        let mut rx = self.pushed.lock().await;
        while let Some(ev) = rx.recv().await {
            on_event(ev);
        }
        Ok(())
    }
    async fn placement(&self, stream_id: &str) -> Result<Option<Placement>, BackendError> {
        self.inner.placement(stream_id).await
    }
    async fn claim_placement(
        &self,
        stream_id: &str,
        claim: &PlacementClaim,
    ) -> Result<Placement, BackendError> {
        self.claims_asked
            .lock()
            .unwrap()
            .push(claim.provider.clone());
        self.claim_count.fetch_add(1, Ordering::SeqCst);
        if self.claims_fail.load(Ordering::SeqCst) {
            return Err(BackendError::Network("connection refused".into()));
        }
        let slow = self.slow_claims.lock().unwrap().clone();
        if let Some((p, d)) = slow {
            if p == claim.provider {
                tokio::time::sleep(d).await;
            }
        }
        self.inner.claim_placement(stream_id, claim).await
    }
    async fn release_placement(
        &self,
        stream_id: &str,
        client_id: &str,
    ) -> Result<(), BackendError> {
        let slow = *self.slow_release.lock().unwrap();
        tokio::time::sleep(slow).await;
        self.inner.release_placement(stream_id, client_id).await
    }
    async fn report(&self, report: &SessionReport) -> Result<(), BackendError> {
        self.inner.report(report).await
    }
    async fn alive(&self, client_id: &str, sessions: &[LiveSession]) -> Result<(), BackendError> {
        self.inner.alive(client_id, sessions).await
    }
}

pub fn wrapped(
    b: &Backend,
    config: streamguard::ManagerConfig,
) -> (StreamingProviderManager, Arc<Wrap>) {
    let w = Wrap::new(b.registry(&config));
    let m = StreamingProviderManager::builder(config)
        .registry(w.clone())
        .jitter(Box::new(FixedJitter(0.5)))
        .build()
        .unwrap();
    (m, w)
}

pub fn placed(stream: &str, provider: &str, epoch: u64) -> Placement {
    Placement {
        stream_id: stream.into(),
        provider: provider.into(),
        epoch,
        standby: Vec::new(),
        live: true,
    }
}

/// A jitter source that always returns the same sample.
pub struct FixedJitter(pub f64);

impl streamguard::JitterSource for FixedJitter {
    fn next_unit(&mut self) -> f64 {
        self.0
    }
}

// ----- scripted adapters ---------------------------------------------------------------------

/// What one adapter call does.
#[derive(Debug, Clone)]
pub enum Step {
    Ok,
    Fail(ProviderErrorKind),
    Hang,
    Panic,
    /// Succeed after a delay (a slow SDK).
    Delay(Duration),
    /// Fail with this kind after a delay.
    FailAfter(Duration, ProviderErrorKind),
}

#[derive(Default)]
struct Script {
    connect: Vec<Step>,
    probe: Vec<Step>,
    down: bool,
    probe_supported: bool,
}

/// Counters and a call log of one fake adapter.
#[derive(Default)]
pub struct Calls {
    pub initialize: u64,
    pub connects: u64,
    pub connect_ok: u64,
    pub leaves: u64,
    pub probes: u64,
    /// Levels asked with `set_quality`, in order (only when `quality_supported`).
    pub quality: Vec<(String, streamguard::QualityLevel)>,
    /// Answer `set_quality` (off: the trait's default, "not supported").
    pub quality_supported: bool,
    /// Streams currently carried (successful start/join minus leaves).
    pub active: HashMap<String, i64>,
    /// The most streams carried at once.
    pub max_active: i64,
    pub log: Vec<String>,
}

/// An in-process adapter with a scripted outcome for each call.
pub struct FakeAdapter {
    pub name: String,
    script: Mutex<Script>,
    pub calls: Mutex<Calls>,
    parallel: bool,
    /// Shared log across adapters, to check ordering (make-before-break).
    pub global_log: Arc<Mutex<Vec<String>>>,
    /// Shared across adapters: how many providers carry each stream now, and the most ever.
    pub carriers: Arc<Mutex<Carriers>>,
    /// Keyed by stream id, like `RtmpAdapter` and most vendor SDKs: a start of a stream already
    /// carried changes nothing, and one leave stops it, however many starts there were.
    keyed: AtomicBool,
    /// Called with (provider, operation, stream) when a start or join succeeds.
    pub on_connected: Mutex<Option<ConnectHook>>,
}

/// See [`FakeAdapter::on_connected`].
pub type ConnectHook = Arc<dyn Fn(&str, &str, &str) + Send + Sync>;

/// How many providers carry each stream.
#[derive(Default)]
pub struct Carriers {
    pub now: HashMap<String, i64>,
    pub max: i64,
    /// Every change: (when, stream, providers carrying it afterwards).
    pub history: Vec<(tokio::time::Instant, String, i64)>,
}

impl Carriers {
    fn changed(&mut self, stream: &str, delta: i64) {
        let n = self.now.entry(stream.to_string()).or_default();
        *n += delta;
        let n = *n;
        self.max = self.max.max(n);
        self.history
            .push((tokio::time::Instant::now(), stream.to_string(), n));
    }

    /// The longest time any stream was carried by more than `allowed` providers at once.
    pub fn longest_over(&self, allowed: i64) -> Duration {
        let mut since: HashMap<&str, tokio::time::Instant> = HashMap::new();
        let mut longest = Duration::ZERO;
        for (at, stream, n) in &self.history {
            if *n > allowed {
                since.entry(stream.as_str()).or_insert(*at);
            } else if let Some(t) = since.remove(stream.as_str()) {
                longest = longest.max(*at - t);
            }
        }
        if !since.is_empty() {
            longest = Duration::MAX;
        }
        longest
    }
}

impl FakeAdapter {
    pub fn new(name: &str, global_log: Arc<Mutex<Vec<String>>>) -> Arc<Self> {
        Self::with_parallel(name, false, global_log)
    }
    pub fn with_parallel(
        name: &str,
        parallel: bool,
        global_log: Arc<Mutex<Vec<String>>>,
    ) -> Arc<Self> {
        Self::shared(name, parallel, global_log, Arc::default())
    }
    pub fn shared(
        name: &str,
        parallel: bool,
        global_log: Arc<Mutex<Vec<String>>>,
        carriers: Arc<Mutex<Carriers>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            script: Mutex::new(Script::default()),
            calls: Mutex::new(Calls::default()),
            parallel,
            global_log,
            carriers,
            keyed: AtomicBool::new(false),
            on_connected: Mutex::new(None),
        })
    }
    /// Make this adapter keyed by stream id (see `keyed`).
    pub fn set_keyed(&self) {
        self.keyed.store(true, Ordering::SeqCst);
    }
    /// Outcomes of the next start/join calls, in order; afterwards calls succeed (or fail if down).
    pub fn script_connect(&self, steps: Vec<Step>) {
        self.script.lock().unwrap().connect = steps;
    }
    pub fn script_probe(&self, steps: Vec<Step>) {
        let mut s = self.script.lock().unwrap();
        s.probe = steps;
        s.probe_supported = true;
    }
    pub fn support_probe(&self) {
        self.script.lock().unwrap().probe_supported = true;
    }
    /// While down, every start/join and probe fails with a network error.
    pub fn set_down(&self, down: bool) {
        self.script.lock().unwrap().down = down;
    }
    pub fn active_streams(&self) -> i64 {
        self.calls.lock().unwrap().active.values().sum()
    }
    pub fn is_carrying(&self, stream: &str) -> bool {
        self.calls
            .lock()
            .unwrap()
            .active
            .get(stream)
            .copied()
            .unwrap_or(0)
            > 0
    }
    pub fn connects(&self) -> u64 {
        self.calls.lock().unwrap().connects
    }
    pub fn leaves(&self) -> u64 {
        self.calls.lock().unwrap().leaves
    }
    pub fn probes(&self) -> u64 {
        self.calls.lock().unwrap().probes
    }
    fn log(&self, what: String) {
        self.calls.lock().unwrap().log.push(what.clone());
        self.global_log
            .lock()
            .unwrap()
            .push(format!("{}:{}", self.name, what));
    }

    async fn run(step: Step, down: bool) -> Result<(), ProviderError> {
        match step {
            _ if down => Err(ProviderError::network("provider down")),
            Step::Ok => Ok(()),
            Step::Fail(kind) => Err(ProviderError::new(kind, "scripted failure")),
            Step::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            Step::Panic => panic!("scripted adapter panic"),
            Step::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Step::FailAfter(d, kind) => {
                tokio::time::sleep(d).await;
                Err(ProviderError::new(kind, "scripted failure"))
            }
        }
    }

    async fn connect(&self, stream_id: &str, what: &str) -> Result<(), ProviderError> {
        let (step, down) = {
            let mut s = self.script.lock().unwrap();
            let step = if s.connect.is_empty() {
                Step::Ok
            } else {
                s.connect.remove(0)
            };
            (step, s.down)
        };
        self.calls.lock().unwrap().connects += 1;
        self.log(format!("{what}({stream_id})"));
        let r = Self::run(step, down).await;
        if r.is_ok() {
            let hook = self.on_connected.lock().unwrap().clone();
            if let Some(hook) = hook {
                hook(&self.name, what, stream_id);
            }
            let mut c = self.calls.lock().unwrap();
            c.connect_ok += 1;
            let keyed = self.keyed.load(Ordering::SeqCst);
            if keyed && c.active.get(stream_id).copied().unwrap_or(0) > 0 {
                return r;
            }
            *c.active.entry(stream_id.to_string()).or_default() += 1;
            let carried: i64 = c.active.values().sum();
            c.max_active = c.max_active.max(carried);
            self.carriers.lock().unwrap().changed(stream_id, 1);
        }
        r
    }
}

#[async_trait]
impl ProviderAdapter for FakeAdapter {
    async fn initialize(&self, _provider: &ProviderInfo) -> Result<(), ProviderError> {
        self.calls.lock().unwrap().initialize += 1;
        Ok(())
    }
    async fn start_stream(&self, stream_id: &str) -> Result<(), ProviderError> {
        self.connect(stream_id, "start").await
    }
    async fn join_stream(&self, stream_id: &str) -> Result<(), ProviderError> {
        self.connect(stream_id, "join").await
    }
    async fn leave_stream(&self, stream_id: &str) -> Result<(), ProviderError> {
        {
            let mut c = self.calls.lock().unwrap();
            c.leaves += 1;
            if self.keyed.load(Ordering::SeqCst)
                && c.active.get(stream_id).copied().unwrap_or(0) <= 0
            {
                drop(c);
                self.log(format!("leave({stream_id})"));
                return Ok(());
            }
            *c.active.entry(stream_id.to_string()).or_default() -= 1;
            self.carriers.lock().unwrap().changed(stream_id, -1);
        }
        self.log(format!("leave({stream_id})"));
        Ok(())
    }
    async fn probe(&self) -> Result<(), ProviderError> {
        let (step, down, supported) = {
            let mut s = self.script.lock().unwrap();
            let step = if s.probe.is_empty() {
                Step::Ok
            } else {
                s.probe.remove(0)
            };
            (step, s.down, s.probe_supported)
        };
        if !supported {
            return Err(ProviderError::not_supported("probe"));
        }
        self.calls.lock().unwrap().probes += 1;
        Self::run(step, down).await
    }
    fn supports_parallel_sessions(&self) -> bool {
        self.parallel
    }
    async fn set_quality(
        &self,
        stream_id: &str,
        level: streamguard::QualityLevel,
    ) -> Result<(), ProviderError> {
        let mut c = self.calls.lock().unwrap();
        if !c.quality_supported {
            return Err(ProviderError::not_supported("set_quality"));
        }
        c.quality.push((stream_id.to_string(), level));
        Ok(())
    }
}

/// The three providers of the seed app, registered on `manager`.
pub struct Trio {
    pub agora: Arc<FakeAdapter>,
    pub zego: Arc<FakeAdapter>,
    pub webrtc: Arc<FakeAdapter>,
    pub log: Arc<Mutex<Vec<String>>>,
    pub carriers: Arc<Mutex<Carriers>>,
}

impl Trio {
    pub fn register(manager: &StreamingProviderManager, parallel: bool) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let carriers: Arc<Mutex<Carriers>> = Arc::default();
        let t = Self {
            agora: FakeAdapter::shared("agora", parallel, log.clone(), carriers.clone()),
            zego: FakeAdapter::shared("zegocloud", parallel, log.clone(), carriers.clone()),
            webrtc: FakeAdapter::shared("webrtc", parallel, log.clone(), carriers.clone()),
            log,
            carriers,
        };
        manager.register_adapter("agora", t.agora.clone()).unwrap();
        manager
            .register_adapter("zegocloud", t.zego.clone())
            .unwrap();
        manager
            .register_adapter("webrtc", t.webrtc.clone())
            .unwrap();
        t
    }
    pub fn all(&self) -> [&Arc<FakeAdapter>; 3] {
        [&self.agora, &self.zego, &self.webrtc]
    }
}

pub const SEED_LIST: &[(&str, bool, u32)] = &[
    ("agora", true, 1),
    ("zegocloud", true, 2),
    ("webrtc", true, 3),
];

// ----- waiting on events ---------------------------------------------------------------------

/// Wait (in virtual time, bounded) for the first event matching `pred`.
pub async fn wait_for(
    rx: &mut broadcast::Receiver<StreamEvent>,
    within: Duration,
    pred: impl Fn(&EventKind) -> bool,
) -> StreamEvent {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev.kind) => return ev,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream closed: {e}"),
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

/// Every event received so far (non-blocking).
pub fn drain(rx: &mut broadcast::Receiver<StreamEvent>) -> Vec<StreamEvent> {
    let mut v = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        v.push(ev);
    }
    v
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(s: u64) -> Duration {
    Duration::from_millis(s)
}
