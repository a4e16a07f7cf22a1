//! Stream placement (issue 14) through the Flutter facade, driven the way Dart drives it
//! (adapters as closures, events through the Dart stream's forwarding task), against the
//! workspace's real registry binary on loopback: a publisher manager and a viewer manager. The
//! Dart side of the same scenarios is `test/placement_test.dart` (not run here: no Dart SDK).
//!
//! `tool/check.sh` builds `streamguard-registry` and passes its path in
//! `STREAMGUARD_REGISTRY_BIN`; without it these tests say so and pass without running.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use streamguard_flutter::api::manager::StreamingProviderManager;
use streamguard_flutter::api::types::*;

const TELEMETRY: &str = "placement-telemetry-token-0001";
const PREFIX: &str = "streamguard-registry listening on ";

/// The registry binary as a child process: a port the OS picks (it prints its address), a
/// temporary SQLite file, admin and telemetry tokens; stopped by its PID when dropped.
struct RealRegistry {
    child: Child,
    dir: std::path::PathBuf,
    base_url: String,
}

impl RealRegistry {
    fn start() -> Option<Self> {
        let Ok(bin) = std::env::var("STREAMGUARD_REGISTRY_BIN") else {
            eprintln!("STREAMGUARD_REGISTRY_BIN is not set: placement tests not run");
            return None;
        };
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sg-placement-frb-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let seed = dir.join("seed.json");
        std::fs::write(
            &seed,
            r#"{"providers": [
                {"name": "agora", "priority": 1, "config": {}},
                {"name": "zegocloud", "priority": 2, "config": {}},
                {"name": "webrtc", "priority": 3, "config": {}}]}"#,
        )
        .unwrap();
        let mut child = Command::new(bin)
            .env_clear()
            .env("STREAMGUARD_REGISTRY_ADDR", "127.0.0.1:0")
            .env("STREAMGUARD_REGISTRY_DB", dir.join("registry.db"))
            .env("STREAMGUARD_REGISTRY_SEED", &seed)
            .env("STREAMGUARD_ADMIN_TOKEN", "placement-admin-token-0001")
            .env(
                "STREAMGUARD_SUPER_ADMIN_TOKEN",
                "placement-super-token-0001",
            )
            .env("STREAMGUARD_TELEMETRY_TOKEN", TELEMETRY)
            .env("STREAMGUARD_RATE_LIMIT_PER_SEC", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the registry binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            // Drain the rest: the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(15)).ok().flatten();
        let mut registry = Self {
            child,
            dir,
            base_url: String::new(),
        };
        match line.as_deref().and_then(|l| l.strip_prefix(PREFIX)) {
            Some(url) => registry.base_url = format!("{url}/api"),
            None => panic!("the registry printed no address: {line:?}"),
        }
        Some(registry)
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One app on the registry: a manager with a closure adapter per name, and its events.
struct Engine {
    manager: StreamingProviderManager,
    adapters: Vec<(&'static str, FakeAdapter)>,
    events: Events,
}

impl Engine {
    fn start(
        registry: &RealRegistry,
        names: &[&'static str],
        parallel: bool,
        config: impl FnOnce(&mut ManagerConfig),
    ) -> Self {
        let mut c = fast_config(&registry.base_url);
        c.auth_token = Some(TELEMETRY.into());
        config(&mut c);
        let manager = StreamingProviderManager::create(c).unwrap();
        let events = Events::subscribe(&manager);
        let adapters: Vec<(&'static str, FakeAdapter)> = names
            .iter()
            .map(|&n| {
                let a = FakeAdapter::default();
                a.register(&manager, n, parallel);
                (n, a)
            })
            .collect();
        Self {
            manager,
            adapters,
            events,
        }
    }

    fn adapter(&self, name: &str) -> &FakeAdapter {
        &self.adapters.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Providers whose adapter carries `id` now (started or joined, not left).
    fn carrying(&self, id: &str) -> Vec<&'static str> {
        self.adapters
            .iter()
            .filter(|(_, a)| {
                let opened =
                    a.count(|c| *c == Call::Start(id.into()) || *c == Call::Join(id.into()));
                opened > a.leaves(id)
            })
            .map(|(n, _)| *n)
            .collect()
    }
}

const ALL: &[&str] = &["agora", "zegocloud", "webrtc"];

fn placement_of(provider: &str) -> impl Fn(&StreamEvent) -> bool + '_ {
    move |e| e.kind == EventType::PlacementChanged && e.provider.as_deref() == Some(provider)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_joins_where_the_publisher_is_and_follows_its_move() {
    let Some(registry) = RealRegistry::start() else {
        return;
    };
    let mut publisher = Engine::start(&registry, ALL, false, |_| {});
    let mut viewer = Engine::start(&registry, ALL, false, |_| {});
    // agora refuses the publisher; it stays everyone's preferred provider.
    publisher
        .adapter("agora")
        .fail_next(ProviderErrorKind::Unauthorized, "refused");
    let s = publisher.manager.start_stream("cam".into()).await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("zegocloud"));
    let claim = publisher
        .events
        .wait_for(5, "claim", placement_of("zegocloud"))
        .await;
    assert_eq!((claim.epoch, claim.live), (Some(1), Some(true)));
    assert!(claim.providers.is_empty(), "no standby");

    let v = viewer.manager.join_stream("cam".into()).await.unwrap();
    assert_eq!(v.provider.as_deref(), Some("zegocloud"));
    assert_eq!(viewer.adapter("agora").starts(), 0);

    // Only the publisher's SDK fails on zegocloud: the publisher moves, the viewer follows.
    publisher
        .manager
        .record_error(
            "cam".into(),
            err(ProviderErrorKind::Unauthorized, "token revoked"),
        )
        .unwrap();
    let moved = publisher
        .events
        .wait_for(5, "publisher moved", |e| {
            e.kind == EventType::MigrationFinished
        })
        .await;
    let to = moved.to.clone().unwrap();
    assert_ne!(to, "zegocloud");
    let seen = viewer
        .events
        .wait_for(10, "viewer sees the move", placement_of(&to))
        .await;
    assert_eq!(seen.epoch, Some(2));
    let followed = viewer
        .events
        .wait_for(10, "viewer follows", |e| {
            e.kind == EventType::MigrationFinished
        })
        .await;
    assert_eq!(followed.from.as_deref(), Some("zegocloud"));
    assert_eq!(followed.to.as_deref(), Some(to.as_str()));
    let reasons: Vec<_> = viewer
        .events
        .of(EventType::Failover)
        .iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, [Some(FailoverReason::PlacementChanged)]);
    assert_eq!(viewer.carrying("cam"), [to.as_str()]);

    publisher.manager.shutdown().await.unwrap();
    viewer.manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_errors_cross_with_their_kind_and_providers() {
    let Some(registry) = RealRegistry::start() else {
        return;
    };
    let first = Engine::start(&registry, &["webrtc"], false, |_| {});
    let second = Engine::start(&registry, ALL, false, |_| {});
    let viewer = Engine::start(&registry, &["agora", "zegocloud"], false, |_| {});

    let e = viewer.manager.join_stream("cam".into()).await.unwrap_err();
    assert_eq!(e.kind, StreamguardErrorKind::StreamNotLive, "{e:?}");
    assert!(e.message.contains("\"cam\" is not live"), "{}", e.message);

    first.manager.start_stream("cam".into()).await.unwrap();
    let e = second.manager.start_stream("cam".into()).await.unwrap_err();
    assert_eq!(e.kind, StreamguardErrorKind::StreamClaimedByOther, "{e:?}");
    assert!(
        e.message.contains("published by another client"),
        "{}",
        e.message
    );
    assert!(second.carrying("cam").is_empty());

    let e = viewer.manager.join_stream("cam".into()).await.unwrap_err();
    assert_eq!(e.kind, StreamguardErrorKind::NoAdapterForPlacement, "{e:?}");
    assert_eq!(e.providers, ["webrtc"]);

    for engine in [first, second, viewer] {
        engine.manager.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_standby_is_listed_and_promoted_when_the_primary_fails() {
    let Some(registry) = RealRegistry::start() else {
        return;
    };
    let mut publisher = Engine::start(&registry, ALL, true, |c| c.standby_providers = 1);
    let mut viewer = Engine::start(&registry, ALL, true, |c| c.wait_for_live_ms = 5_000);

    // The viewer joins as the publisher starts (wait_for_live: it waits if it comes first),
    // and joins where the stream is published.
    let (joined, started) = tokio::join!(
        viewer.manager.join_stream("cam".into()),
        publisher.manager.start_stream("cam".into())
    );
    assert_eq!(started.unwrap().provider.as_deref(), Some("agora"));
    assert_eq!(joined.unwrap().provider.as_deref(), Some("agora"));
    let listed = publisher
        .events
        .wait_for(5, "standby listed", |e| {
            e.kind == EventType::PlacementChanged && e.providers == ["zegocloud"]
        })
        .await;
    assert_eq!(listed.provider.as_deref(), Some("agora"));
    let session = publisher.manager.session("cam".into()).unwrap();
    assert_eq!(session.standby, ["zegocloud"]);
    let stats = publisher.manager.provider_stats();
    let zego = stats.iter().find(|s| s.provider == "zegocloud").unwrap();
    assert_eq!(zego.standby_sessions, 1);

    publisher
        .manager
        .record_error(
            "cam".into(),
            err(ProviderErrorKind::Unauthorized, "primary lost"),
        )
        .unwrap();
    let promoted = publisher
        .events
        .wait_for(5, "standby promoted", |e| {
            e.kind == EventType::StandbyPromoted
        })
        .await;
    assert_eq!(promoted.from.as_deref(), Some("agora"));
    assert_eq!(promoted.to.as_deref(), Some("zegocloud"));
    assert!(promoted.epoch > listed.epoch, "{promoted:?}");
    assert_eq!(
        publisher
            .adapter("zegocloud")
            .count(|c| *c == Call::Start("cam".into())),
        1,
        "promoted without a second start"
    );
    let followed = viewer
        .events
        .wait_for(10, "viewer follows", |e| {
            e.kind == EventType::MigrationFinished
        })
        .await;
    assert_eq!(followed.to.as_deref(), Some("zegocloud"));

    publisher.manager.shutdown().await.unwrap();
    viewer.manager.shutdown().await.unwrap();
}
