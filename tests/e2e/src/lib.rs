//! Fixtures for the end-to-end tests and the RTMP benchmark: real nginx-rtmp servers on
//! loopback (started and stopped by PID), the reference registry in-process, and a manager
//! wired to RTMP adapters. Nothing here is shipped.

use async_trait::async_trait;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamguard::rtmp::{ProcessKind, RtmpAdapter, RtmpSettings, StopReport};
use streamguard::{
    EventKind, FailoverReason, ManagerConfig, MigrationStrategy, ProviderAdapter, ProviderError,
    ProviderInfo, StreamEvent, StreamingProviderManager,
};
use streamguard_registry::{serve, Config, RunningRegistry, Seed};
use tokio::sync::broadcast::Receiver;

mod audience;
mod placement;
pub use audience::*;
pub use placement::*;

/// The admin token of test registries.
pub const ADMIN: &str = "admin-token-e2e-0123456789";
/// The telemetry token of test registries (what an app would ship to report sessions).
pub const TELEMETRY: &str = "telemetry-token-e2e-0123456789";

/// Where Debian installs the RTMP module.
const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run a command to completion, ignoring its output.
fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One nginx-rtmp server on loopback, in its own prefix directory.
pub struct Nginx {
    /// Its RTMP port.
    pub port: u16,
    dir: PathBuf,
    master: Option<Child>,
}

impl Nginx {
    /// Start a server (master + one worker) on a free port.
    pub fn start(name: &str) -> Self {
        Self::start_on(name, free_port())
    }

    /// Start a server on `port` and wait until it accepts connections.
    pub fn start_on(name: &str, port: u16) -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "sg-nginx-{name}-{port}-{}-{seq}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let conf = format!(
            "load_module {RTMP_MODULE};\n\
             daemon off;\nmaster_process on;\nworker_processes 1;\n\
             error_log {dir}/logs/error.log warn;\npid {dir}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on; record off; }} }} }}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        // Debian puts nginx in /usr/sbin, which is not on every PATH.
        let nginx = if std::path::Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let master = Command::new(nginx)
            .args(["-p", &dir.display().to_string(), "-c", "nginx.conf"])
            .args(["-e", &dir.join("logs/error.log").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs (apt-get install nginx-light libnginx-mod-rtmp)");
        let mut me = Self {
            port,
            dir,
            master: Some(master),
        };
        me.wait_listening(true);
        me
    }

    fn wait_listening(&mut self, up: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() != up {
            assert!(
                Instant::now() < deadline,
                "nginx on {} did not settle",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master's PID.
    pub fn master_pid(&self) -> u32 {
        self.master.as_ref().expect("running").id()
    }

    /// Master and worker PIDs, master first: signalled in this order, a dying worker cannot
    /// make the master spawn a replacement (which would survive, orphaned, still serving).
    pub fn pids(&self) -> Vec<String> {
        let master = self.master_pid().to_string();
        let out = Command::new("pgrep")
            .args(["-P", &master])
            .output()
            .unwrap();
        let mut pids = vec![master];
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string),
        );
        pids
    }

    fn signal(&self, sig: &str) {
        let pids = self.pids();
        let mut args = vec![sig];
        args.extend(pids.iter().map(String::as_str));
        run("kill", &args);
    }

    /// SIGKILL master and worker: connections are reset at once.
    pub fn kill(&mut self) {
        self.signal("-KILL");
        if let Some(mut m) = self.master.take() {
            let _ = m.wait();
        }
        self.wait_listening(false);
    }

    /// SIGSTOP master and worker: the socket stays open but nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// The ingest/playback base URL.
    pub fn url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if self.master.is_some() {
            self.signal("-CONT");
            // SIGTERM to the master stops its worker too; SIGKILL to the master alone would not.
            self.signal("-TERM");
            if let Some(mut m) = self.master.take() {
                let deadline = Instant::now() + Duration::from_secs(5);
                while m.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = m.kill();
                let _ = m.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// ffmpeg processes publishing to `port` right now.
pub fn publishers_to(port: u16) -> usize {
    ffmpegs_matching(&format!("ffmpeg .*-f flv rtmp://127.0.0.1:{port}/"))
}

/// ffmpeg processes pulling a stream from `port` right now (RTMP viewers).
pub fn viewers_of(port: u16) -> usize {
    ffmpegs_matching(&format!("ffmpeg .*-i rtmp://127.0.0.1:{port}/"))
}

fn ffmpegs_matching(pattern: &str) -> usize {
    let out = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .count()
}

/// An RTMP adapter initialized for `server` alone (no manager): for tests of the adapter's
/// own processes.
pub async fn adapter_for(server: &Nginx, settings: RtmpSettings) -> Arc<RtmpAdapter> {
    let a = RtmpAdapter::new(settings);
    let mut p = ProviderInfo::new("primary", 1);
    p.config.insert("ingestUrl".into(), server.url().into());
    a.initialize(&p).await.unwrap();
    a
}

/// An error sink that records what adapters report, with when.
#[derive(Default)]
pub struct Reports(Mutex<Vec<(Instant, String, ProviderError)>>);

impl Reports {
    /// A sink into `self`.
    pub fn sink(self: &Arc<Self>) -> streamguard::ErrorSink {
        let me = self.clone();
        Arc::new(move |stream: &str, e: ProviderError| {
            me.0.lock()
                .unwrap()
                .push((Instant::now(), stream.to_string(), e));
        })
    }

    /// Everything reported so far.
    pub fn all(&self) -> Vec<(Instant, String, ProviderError)> {
        self.0.lock().unwrap().clone()
    }

    /// The first report (bounded wait, polled every 10 ms).
    pub async fn first(&self, within: Duration) -> (Instant, String, ProviderError) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.0.lock().unwrap().first().cloned() {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "nothing reported within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Poll `cond` every 20 ms until it holds; panics with `what` after `within`.
pub async fn until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Median and range of `v`, in milliseconds: "153 ms (146–218)".
pub fn median_ms(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{:.0} ms ({:.0}–{:.0})",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1])
    )
}

/// A registry with the given `(name, priority, config)` providers.
pub async fn registry(providers: serde_json::Value) -> RunningRegistry {
    registry_with(providers, |_| {}).await
}

/// [`registry`] with a config adjusted by `customize`.
pub async fn registry_with(
    providers: serde_json::Value,
    customize: impl FnOnce(&mut Config),
) -> RunningRegistry {
    let mut config = Config::local_test(ADMIN, "super-token-e2e-0123456789");
    config.telemetry_token = Some(streamguard_registry::Secret::new(TELEMETRY));
    config.seed = Seed::Providers(serde_json::from_value(providers).unwrap());
    customize(&mut config);
    serve(config).await.expect("registry starts")
}

/// GET an admin route of the registry (`/api/admin/{path}`) as JSON.
pub async fn admin_get(reg: &RunningRegistry, path: &str) -> serde_json::Value {
    let text = reqwest::Client::new()
        .get(format!("{}/api/admin/{path}", reg.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// PUT an admin change to the registry.
pub async fn admin_put(reg: &RunningRegistry, name: &str, body: &str) {
    let resp = reqwest::Client::new()
        .put(format!("{}/api/streaming/providers/{name}", reg.url()))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// Two RTMP providers, "primary" and "backup", behind a registry, with a manager whose RTMP
/// adapters report publisher exits to it.
pub struct RtmpWorld {
    /// Provider "primary".
    pub primary: Nginx,
    /// Provider "backup".
    pub backup: Nginx,
    /// The registry.
    pub registry: RunningRegistry,
    /// The engine.
    pub manager: StreamingProviderManager,
    /// The adapters, by provider: primary, backup.
    pub adapters: [Arc<RtmpAdapter>; 2],
}

impl RtmpWorld {
    /// Start everything. `parallel` = whether adapters allow make-before-break.
    pub async fn start(parallel: bool) -> Self {
        let primary = Nginx::start("primary");
        let backup = Nginx::start("backup");
        let registry = registry(serde_json::json!([
            {"name": "primary", "priority": 1, "config": {"ingestUrl": primary.url()}},
            {"name": "backup", "priority": 2, "config": {"ingestUrl": backup.url()}}
        ]))
        .await;
        let (manager, adapters) = rtmp_engine(&registry, parallel);
        Self {
            primary,
            backup,
            registry,
            manager,
            adapters,
        }
    }

    /// A viewer-side check: is `stream` playable on `server` right now?
    pub async fn playable(&self, server: &Nginx, stream: &str) -> bool {
        self.adapters[0]
            .probe_url(&format!("{}/{stream}", server.url()))
            .await
            .is_ok()
    }

    /// Wait (bounded) until `stream` is playable on `server`; returns when it was.
    pub async fn wait_playable(&self, server: &Nginx, stream: &str, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if self.playable(server, stream).await {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{stream} never playable on {}",
                server.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An engine on `registry` with RTMP adapters for "primary" and "backup" (in that order) that
/// report to it; health checks every 3 s, like seed 003's RTMP monitor.
pub fn rtmp_engine(
    registry: &RunningRegistry,
    parallel: bool,
) -> (StreamingProviderManager, [Arc<RtmpAdapter>; 2]) {
    rtmp_engine_with(registry, parallel, |_| {})
}

/// [`rtmp_engine`] with its config adjusted by `customize`. Engines send the registry's
/// telemetry token: the placement directory (publisher claims) is authenticated like session
/// telemetry, and without it a publisher's claim is refused and its viewers find nothing.
pub fn rtmp_engine_with(
    registry: &RunningRegistry,
    parallel: bool,
    customize: impl FnOnce(&mut ManagerConfig),
) -> (StreamingProviderManager, [Arc<RtmpAdapter>; 2]) {
    let mut c = ManagerConfig::new(format!("{}/api", registry.url()));
    c.auth_token = Some(TELEMETRY.to_string());
    c.health_check_interval = Duration::from_secs(3);
    c.suspect_recheck_delay = Duration::from_millis(500);
    c.adapter_timeout = Duration::from_secs(15);
    c.cooldown_base = Duration::from_secs(5);
    customize(&mut c);
    let manager = StreamingProviderManager::new(c).unwrap();
    let settings = RtmpSettings {
        parallel,
        ..RtmpSettings::default()
    };
    let adapters = [
        RtmpAdapter::new(settings.clone()),
        RtmpAdapter::new(settings),
    ];
    for (name, a) in ["primary", "backup"].iter().zip(adapters.iter()) {
        a.set_error_sink(manager.error_sink());
        a.set_quality_sink(manager.quality_sink());
        manager.register_adapter(name, a.clone()).unwrap();
    }
    (manager, adapters)
}

/// A simulated SDK (no media) that records which streams it carries.
#[derive(Default)]
pub struct Sim(Mutex<HashSet<String>>);

impl Sim {
    /// Whether it carries `stream` now.
    pub fn carrying(&self, stream: &str) -> bool {
        self.0.lock().unwrap().contains(stream)
    }
}

#[async_trait]
impl ProviderAdapter for Sim {
    async fn initialize(&self, _p: &ProviderInfo) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn start_stream(&self, s: &str) -> Result<(), ProviderError> {
        self.0.lock().unwrap().insert(s.into());
        Ok(())
    }
    async fn join_stream(&self, s: &str) -> Result<(), ProviderError> {
        self.start_stream(s).await
    }
    async fn leave_stream(&self, s: &str) -> Result<(), ProviderError> {
        self.0.lock().unwrap().remove(s);
        Ok(())
    }
}

// ----- scenarios (shared by the tests and the benchmark) ------------------------------------

/// The first event matching `pred`, within a bound.
pub async fn next(
    rx: &mut Receiver<StreamEvent>,
    within: Duration,
    pred: impl Fn(&EventKind) -> bool,
) -> StreamEvent {
    tokio::time::timeout(within, async {
        loop {
            if let Ok(ev) = rx.recv().await {
                if pred(&ev.kind) {
                    return ev;
                }
            }
        }
    })
    .await
    .expect("event in time")
}

/// A failover decided by health checks or a confirmed error report.
pub fn health_failover(e: &EventKind) -> bool {
    matches!(
        e,
        EventKind::Failover {
            reason: FailoverReason::HealthCheckFailed | FailoverReason::ErrorReported,
            ..
        }
    )
}

/// Real-media tests share two cores with ffmpeg encoders: run them one at a time so timings
/// measure the engine, not CPU contention.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// What one fault scenario measured.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// Fault to failover decision.
    pub detected: Duration,
    /// Fault to the stream playable on the backup.
    pub playable: Duration,
    /// The migration as the engine timed it (`MigrationFinished::duration`): starting and
    /// verifying the new publisher, and stopping the old one.
    pub migration: Duration,
    /// How the old publisher on primary stopped.
    pub old_publisher: Option<StopReport>,
}

/// What a planned migration measured.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    /// Time without a provider, as measured by the engine.
    pub gap: Duration,
    /// How it migrated.
    pub strategy: MigrationStrategy,
    /// The whole migration (`MigrationFinished::duration`).
    pub duration: Duration,
}

fn migration_duration(e: &StreamEvent) -> Duration {
    match e.kind {
        EventKind::MigrationFinished { duration, .. } => duration,
        _ => unreachable!("not a MigrationFinished"),
    }
}

/// Primary killed (SIGKILL of master and worker) while publishing.
pub async fn scenario_killed() -> Recovery {
    let mut w = RtmpWorld::start(true).await;
    let s = w.manager.start_stream("cam").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("primary"));
    assert!(w.playable(&w.primary, "cam").await);
    let mut rx = w.manager.subscribe();
    let fault = Instant::now();
    w.primary.kill();
    next(&mut rx, Duration::from_secs(20), health_failover).await;
    let detected = fault.elapsed();
    let done = next(&mut rx, Duration::from_secs(20), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    let playable = w
        .wait_playable(&w.backup, "cam", Duration::from_secs(10))
        .await
        - fault;
    assert_eq!(w.adapters[1].publishing(), vec!["cam"]);
    assert!(w.adapters[0].publishing().is_empty());
    w.manager.shutdown().await.unwrap();
    assert_eq!(
        publishers_to(w.backup.port) + publishers_to(w.primary.port),
        0,
        "no ffmpeg left"
    );
    Recovery {
        detected,
        playable,
        migration: migration_duration(&done),
        old_publisher: w.adapters[0].last_stop("cam", ProcessKind::Publisher),
    }
}

/// Primary frozen (SIGSTOP): only the probe can tell.
pub async fn scenario_frozen() -> Recovery {
    let w = RtmpWorld::start(true).await;
    w.manager.start_stream("cam").await.unwrap();
    let mut rx = w.manager.subscribe();
    let fault = Instant::now();
    w.primary.freeze();
    next(&mut rx, Duration::from_secs(30), health_failover).await;
    let detected = fault.elapsed();
    let done = next(&mut rx, Duration::from_secs(30), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    let playable = w
        .wait_playable(&w.backup, "cam", Duration::from_secs(10))
        .await
        - fault;
    w.manager.shutdown().await.unwrap();
    assert_eq!(
        publishers_to(w.backup.port) + publishers_to(w.primary.port),
        0,
        "no ffmpeg left"
    );
    Recovery {
        detected,
        playable,
        migration: migration_duration(&done),
        old_publisher: w.adapters[0].last_stop("cam", ProcessKind::Publisher),
    }
}

/// Admin makes backup preferred: a planned migration.
pub async fn scenario_planned(parallel: bool) -> Planned {
    let w = RtmpWorld::start(parallel).await;
    w.manager.start_stream("cam").await.unwrap();
    let mut rx = w.manager.subscribe();
    admin_put(&w.registry, "backup", r#"{"priority":0}"#).await;
    let done = next(&mut rx, Duration::from_secs(30), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    let duration = migration_duration(&done);
    let EventKind::MigrationFinished {
        gap, strategy, to, ..
    } = done.kind
    else {
        unreachable!()
    };
    assert_eq!(to, "backup");
    // The viewer finds the stream on the new provider at once, and no longer on the old.
    assert!(w.playable(&w.backup, "cam").await);
    assert!(
        !w.playable(&w.primary, "cam").await,
        "old publisher stopped"
    );
    w.manager.shutdown().await.unwrap();
    assert_eq!(
        publishers_to(w.backup.port) + publishers_to(w.primary.port),
        0,
        "no ffmpeg left"
    );
    Planned {
        gap,
        strategy,
        duration,
    }
}

/// The fault of a viewer scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Admin makes backup preferred (a planned migration of publisher and viewer).
    Planned,
    /// Primary killed (SIGKILL of master and worker).
    Killed,
    /// Primary frozen (SIGSTOP).
    Frozen,
}

/// What a viewer saw across a provider switch, from its own frames.
#[derive(Debug, Clone, Copy)]
pub struct ViewerGap {
    /// Last frame on the old provider to first frame on the new one (zero if they overlap).
    pub gap: Duration,
    /// Fault (or admin change) to the viewer engine's own decision: a move, or (placement)
    /// staying on primary while its publisher is still placed there.
    pub viewer_detected: Duration,
    /// Fault (or admin change) to the first frame on the new provider.
    pub recovered: Duration,
}

/// The publishing engine of [`RtmpWorld`] and a second engine watching the stream (a viewer
/// app: RTMP adapters whose `join_stream` runs a real viewer) on the same registry; `fault`
/// hits primary; returns the gap the viewer saw, measured from its own frames.
pub async fn scenario_viewer(fault: Fault, parallel: bool) -> ViewerGap {
    let mut w = RtmpWorld::start(parallel).await;
    w.manager.start_stream("cam").await.unwrap();
    let (viewer, viewers) = rtmp_engine(&w.registry, parallel);
    let s = viewer.join_stream("cam").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("primary"));
    let mut rx = viewer.subscribe();
    let at = Instant::now();
    match fault {
        Fault::Planned => admin_put(&w.registry, "backup", r#"{"priority":0}"#).await,
        Fault::Killed => w.primary.kill(),
        Fault::Frozen => w.primary.freeze(),
    }
    // The viewer's own decision: a move, or (its publisher still placed on primary) staying
    // there until the placement changes.
    let failover = |e: &EventKind| {
        matches!(
            e,
            EventKind::MigrationStarted { .. }
                | EventKind::MigrationFailed {
                    still_on: Some(_),
                    ..
                }
        ) || health_failover(e)
    };
    next(&mut rx, Duration::from_secs(60), failover).await;
    let viewer_detected = at.elapsed();
    let done = next(&mut rx, Duration::from_secs(60), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    let EventKind::MigrationFinished { to, .. } = done.kind else {
        unreachable!()
    };
    assert_eq!(to, "backup");
    let old = viewers[0].viewer_stats("cam").expect("viewed on primary");
    let new = viewers[1].viewer_stats("cam").expect("viewing on backup");
    assert!(
        old.ended_at.is_some() && new.ended_at.is_none(),
        "{old:?} {new:?}"
    );
    let (last, first) = (old.last_frame_at.unwrap(), new.first_frame_at.unwrap());
    let gap = first.saturating_duration_since(last);
    viewer.shutdown().await.unwrap();
    w.manager.shutdown().await.unwrap();
    assert_eq!(
        viewers_of(w.backup.port) + viewers_of(w.primary.port),
        0,
        "no viewer ffmpeg left"
    );
    ViewerGap {
        gap,
        viewer_detected,
        recovered: first.saturating_duration_since(at),
    }
}
