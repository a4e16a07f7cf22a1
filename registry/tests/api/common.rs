//! Shared test harness: a registry on a free loopback port over a temporary
//! SQLite file (or a fresh PostgreSQL database with `STREAMGUARD_TEST_DB=postgres`), an HTTP
//! client with the test tokens, and a small SSE reader whose every wait is bounded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use streamguard_registry::{serve, Config, NewProvider, RunningRegistry, Seed};
use tokio::time::{timeout, Instant};

pub const ADMIN: &str = "admin-token-for-tests-0001";
pub const SUPER: &str = "super-token-for-tests-0001";

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(5);

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "sg-registry-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A provider body for seeding or creating.
pub fn provider(name: &str, priority: i64, active: bool, config: Value) -> NewProvider {
    serde_json::from_value(json!({
        "name": name,
        "priority": priority,
        "isActive": active,
        "config": config,
    }))
    .unwrap()
}

/// Three providers like the demo seed, plus an inactive one.
pub fn demo_seed() -> Vec<NewProvider> {
    vec![
        provider(
            "zegocloud",
            2,
            true,
            json!({"appId": "z", "secret": {"serverSecret": "s"}}),
        ),
        provider("agora", 1, true, json!({"appId": "a", "_internal": 1})),
        provider("webrtc", 3, true, json!({})),
        provider("legacy", 0, false, json!({})),
    ]
}

/// Whether the tests run on PostgreSQL (`STREAMGUARD_TEST_DB=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("STREAMGUARD_TEST_DB").is_ok_and(|v| v == "postgres")
}

/// A new database for a test: a SQLite file in `dir`, or a fresh PostgreSQL database.
pub fn database(dir: &TempDir) -> PathBuf {
    if on_postgres() {
        PathBuf::from(crate::pg::shared().create_database())
    } else {
        dir.path().join("registry.db")
    }
}

pub struct Harness {
    pub registry: Option<RunningRegistry>,
    pub url: String,
    pub client: reqwest::Client,
    /// Holds the SQLite file (removed with the harness).
    _dir: TempDir,
    db: PathBuf,
}

impl Harness {
    /// Starts a registry on a fresh database seeded with [`demo_seed`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a registry after letting the test adjust the config.
    pub async fn start_with(customize: impl FnOnce(&mut Config)) -> Self {
        let dir = TempDir::new("h");
        let mut config = Config::local_test(ADMIN, SUPER);
        config.db_path = database(&dir);
        config.seed = Seed::Providers(demo_seed());
        customize(&mut config);
        Self::serve_in(dir, config).await
    }

    pub async fn serve_in(dir: TempDir, config: Config) -> Self {
        let db = config.db_path.clone();
        let registry = serve(config).await.expect("registry starts");
        let url = registry.url();
        Self {
            registry: Some(registry),
            url,
            client: reqwest::Client::new(),
            _dir: dir,
            db,
        }
    }

    /// The database this registry runs on (a SQLite path or a PostgreSQL URL).
    pub fn db_path(&self) -> PathBuf {
        self.db.clone()
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(ADMIN)
    }

    pub fn superadmin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(SUPER)
    }

    /// Creates a provider through the API and returns its admin view.
    pub async fn create(&self, body: Value) -> Value {
        let response = self
            .superadmin(Method::POST, "/api/streaming/providers")
            .json(&body)
            .send()
            .await
            .unwrap();
        expect(response, StatusCode::CREATED).await
    }

    pub async fn update(&self, name: &str, body: Value) -> Value {
        let response = self
            .admin(Method::PUT, &format!("/api/streaming/providers/{name}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        expect(response, StatusCode::OK).await
    }

    pub async fn check(&self, name: &str) -> Value {
        let response = self
            .admin(
                Method::POST,
                &format!("/api/streaming/providers/{name}/health-check"),
            )
            .send()
            .await
            .unwrap();
        expect(response, StatusCode::OK).await["data"].clone()
    }

    pub async fn public_names(&self) -> Vec<String> {
        let body = expect(
            self.get("/api/streaming/providers").send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        body["data"]["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn shutdown(&mut self) {
        if let Some(registry) = self.registry.take() {
            timeout(WAIT * 2, registry.shutdown())
                .await
                .expect("shutdown is bounded")
                .expect("clean shutdown");
        }
    }
}

/// Asserts the status and returns the JSON body.
pub async fn expect(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status, body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts an error envelope with the given status and code.
pub async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    let body = expect(response, status).await;
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body
}

/// Reads server-sent events from a streaming response.
pub struct SseClient {
    response: Response,
    buffer: String,
}

impl SseClient {
    pub async fn connect(harness: &Harness) -> Self {
        Self::connect_to(harness, "/api/streaming/providers/events").await
    }

    /// Connects to `path` (the event stream with a query, e.g. `?streams=a,b`).
    pub async fn connect_to(harness: &Harness, path: &str) -> Self {
        let response = harness.get(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (name, JSON data), `None` if the stream ended.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Waits (bounded) for the first event matching `predicate`.
    pub async fn wait_for(&mut self, predicate: impl Fn(&str, &Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.next())
                .await
                .expect("expected event did not arrive in time")
                .expect("event stream ended early");
            if predicate(&next.0, &next.1) {
                return next.1;
            }
        }
    }
}

/// Names in a `providers` event or list body.
pub fn names(data: &Value) -> Vec<&str> {
    data["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}
