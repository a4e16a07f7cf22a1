//! Test harness: a real HTTP provider registry (axum on loopback) and adapters made of Rust
//! closures, registered through the same `register_adapter` call the Dart wrapper makes, with
//! closures standing in for the Dart ones.

#![allow(dead_code)]

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use flutter_rust_bridge::DartFnFuture;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamguard_flutter::api::manager::{default_manager_config, StreamingProviderManager};
use streamguard_flutter::api::types::{
    EventType, ManagerConfig, ProviderError, ProviderErrorKind, ProviderInfo, StreamEvent,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

// ----- the registry ----------------------------------------------------------------------------

#[derive(Default)]
struct RegistryState {
    providers: Vec<Value>,
    unhealthy: HashMap<String, bool>,
}

/// A provider registry on 127.0.0.1 speaking the backend contract of the seed app.
#[derive(Clone)]
pub struct Registry {
    state: Arc<Mutex<RegistryState>>,
    pub base_url: String,
}

impl Registry {
    /// Serve `(name, is_active, priority)` providers on a free loopback port.
    pub async fn start(list: &[(&str, bool, u32)]) -> Self {
        let state = Arc::new(Mutex::new(RegistryState::default()));
        let app = Router::new()
            .route("/api/streaming/providers", get(list_handler))
            .route(
                "/api/streaming/providers/{name}/health",
                get(health_handler),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let registry = Self {
            state,
            base_url: format!("http://{addr}/api"),
        };
        registry.set_providers(list);
        registry
    }

    pub fn set_providers(&self, list: &[(&str, bool, u32)]) {
        self.state.lock().unwrap().providers = list
            .iter()
            .map(|(n, a, p)| {
                json!({"name": n, "isActive": a, "priority": p, "config": {"appId": format!("{n}-app")}})
            })
            .collect();
    }

    /// Serve these provider objects as they are (for fields `set_providers` does not write,
    /// such as `maxStreams`).
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
}

async fn list_handler(State(state): State<Arc<Mutex<RegistryState>>>) -> Json<Value> {
    let providers = state.lock().unwrap().providers.clone();
    Json(json!({"success": true, "data": {"providers": providers}}))
}

async fn health_handler(
    State(state): State<Arc<Mutex<RegistryState>>>,
    Path(name): Path<String>,
) -> Json<Value> {
    let unhealthy = *state.lock().unwrap().unhealthy.get(&name).unwrap_or(&false);
    Json(json!({"success": true, "data": {
        "healthy": !unhealthy,
        "provider": name,
        "status": if unhealthy { "down" } else { "active" },
    }}))
}

// ----- adapters --------------------------------------------------------------------------------

/// One call an adapter received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Initialize(String),
    Start(String),
    Join(String),
    Leave(String),
    Probe,
}

#[derive(Default)]
struct AdapterState {
    calls: Vec<Call>,
    /// Scripted outcomes of the next start/join calls; empty = success.
    script: VecDeque<Option<ProviderError>>,
    /// Every start/join fails with this, when set.
    always_fail: Option<ProviderError>,
    init_config: Option<String>,
}

/// What a Dart `ProviderAdapter` would be, as the closures the Dart wrapper hands over.
#[derive(Clone, Default)]
pub struct FakeAdapter {
    state: Arc<Mutex<AdapterState>>,
}

impl FakeAdapter {
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }
    pub fn count(&self, pred: impl Fn(&Call) -> bool) -> usize {
        self.calls().iter().filter(|c| pred(c)).count()
    }
    pub fn starts(&self) -> usize {
        self.count(|c| matches!(c, Call::Start(_) | Call::Join(_)))
    }
    pub fn leaves(&self, id: &str) -> usize {
        self.count(|c| *c == Call::Leave(id.into()))
    }
    pub fn fail_always(&self, kind: ProviderErrorKind, message: &str) {
        self.state.lock().unwrap().always_fail = Some(err(kind, message));
    }
    pub fn heal(&self) {
        self.state.lock().unwrap().always_fail = None;
    }
    pub fn fail_next(&self, kind: ProviderErrorKind, message: &str) {
        self.state
            .lock()
            .unwrap()
            .script
            .push_back(Some(err(kind, message)));
    }
    pub fn init_config(&self) -> Option<String> {
        self.state.lock().unwrap().init_config.clone()
    }

    fn open(&self, call: Call) -> Option<ProviderError> {
        let mut st = self.state.lock().unwrap();
        st.calls.push(call);
        if let Some(e) = st.always_fail.clone() {
            return Some(e);
        }
        st.script.pop_front().flatten()
    }

    /// Register on `manager` as provider `name`, exactly as the Dart wrapper does.
    pub fn register(&self, manager: &StreamingProviderManager, name: &str, parallel: bool) {
        let (a, b, c, d, e) = (
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
        );
        manager
            .register_adapter(
                name.into(),
                parallel,
                move |info: ProviderInfo| -> DartFnFuture<Option<ProviderError>> {
                    let a = a.clone();
                    Box::pin(async move {
                        let mut st = a.state.lock().unwrap();
                        st.calls.push(Call::Initialize(info.name.clone()));
                        st.init_config = Some(info.config_json);
                        None
                    })
                },
                move |id: String| -> DartFnFuture<Option<ProviderError>> {
                    let b = b.clone();
                    // Like a real SDK, answer from a later turn of the event loop.
                    Box::pin(async move {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        b.open(Call::Start(id))
                    })
                },
                move |id: String| -> DartFnFuture<Option<ProviderError>> {
                    let c = c.clone();
                    Box::pin(async move {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        c.open(Call::Join(id))
                    })
                },
                move |id: String| -> DartFnFuture<Option<ProviderError>> {
                    let d = d.clone();
                    Box::pin(async move {
                        d.state.lock().unwrap().calls.push(Call::Leave(id));
                        None
                    })
                },
                move || -> DartFnFuture<Option<ProviderError>> {
                    let e = e.clone();
                    Box::pin(async move {
                        e.state.lock().unwrap().calls.push(Call::Probe);
                        // What the Dart base class's default probe() resolves to.
                        Some(err(ProviderErrorKind::NotSupported, "probe"))
                    })
                },
            )
            .unwrap();
    }
}

pub fn err(kind: ProviderErrorKind, message: &str) -> ProviderError {
    ProviderError {
        kind,
        message: message.into(),
    }
}

// ----- manager and events ----------------------------------------------------------------------

/// Short real-time intervals: the engine runs on the plugin's own runtime, as under Dart, so
/// the test clock cannot be paused; every wait below is bounded.
pub fn fast_config(base_url: &str) -> ManagerConfig {
    ManagerConfig {
        health_check_interval_ms: 300,
        suspect_recheck_delay_ms: 50,
        backoff_base_ms: 10,
        backoff_cap_ms: 40,
        provider_refresh_interval_ms: 300,
        provider_list_max_age_ms: 50,
        request_timeout_ms: 2_000,
        adapter_timeout_ms: 2_000,
        operation_deadline_ms: 10_000,
        push_updates: false,
        ..default_manager_config(base_url.into())
    }
}

/// The events of one subscription, as the Dart stream would see them.
pub struct Events {
    rx: UnboundedReceiver<StreamEvent>,
    pub seen: Vec<StreamEvent>,
}

impl Events {
    pub fn subscribe(manager: &StreamingProviderManager) -> Self {
        let (tx, rx) = unbounded_channel();
        manager.subscribe_to(tx);
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait (at most `secs`) for an event matching `pred`; returns it.
    pub async fn wait_for(
        &mut self,
        secs: u64,
        what: &str,
        pred: impl Fn(&StreamEvent) -> bool,
    ) -> StreamEvent {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(e)) => {
                    self.seen.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                Ok(None) => panic!(
                    "event stream closed while waiting for {what}; saw {:#?}",
                    self.kinds()
                ),
                Err(_) => panic!("no {what} within {secs} s; saw {:#?}", self.kinds()),
            }
        }
    }

    /// Collect whatever arrives within `ms`.
    pub async fn drain_for(&mut self, ms: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.seen.push(e);
        }
    }

    /// Wait (bounded) until the stream closes, collecting what comes before.
    pub async fn wait_closed(&mut self, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(e)) => self.seen.push(e),
                Ok(None) => return,
                Err(_) => panic!("event stream still open after {secs} s"),
            }
        }
    }

    pub fn of(&self, kind: EventType) -> Vec<&StreamEvent> {
        self.seen.iter().filter(|e| e.kind == kind).collect()
    }

    fn kinds(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|e| {
                format!(
                    "{:?} stream={:?} provider={:?} from={:?} to={:?} reason={:?} state={:?}",
                    e.kind, e.stream_id, e.provider, e.from, e.to, e.reason, e.state_to
                )
            })
            .collect()
    }
}

/// Poll `cond` every 10 ms for at most `secs`.
pub async fn eventually(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
