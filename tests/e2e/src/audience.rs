//! The audience as a health signal with real parts (issue 19): two nginx-rtmp providers, the
//! reference registry aggregating viewers' reports, a publisher engine with the RTMP publisher
//! and several viewer engines, each with its RTMP viewer sending quality samples of its own
//! frames. Shared by `tests/rtmp_audience.rs` and the benchmark.

use super::*;

/// Every viewer engine runs on 127.0.0.1, one source address: the registry's per-source cap
/// (default 2) would stop them confirming anything, so the test registry lifts it. What the
/// cap does is tested in the registry's own API tests.
const LOOPBACK_PER_SOURCE: usize = 64;

/// A publisher on primary, `viewers` viewer apps watching it there (frames arriving), all on
/// a registry that aggregates their reports; every engine checks providers every
/// `check_interval` (30 s is the default).
pub struct AudienceWorld {
    /// Provider "primary" (priority 1).
    pub primary: Nginx,
    /// Provider "backup" (priority 2).
    pub backup: Nginx,
    /// The registry.
    pub registry: RunningRegistry,
    /// The publishing app.
    pub publisher: App,
    /// The viewer apps.
    pub viewers: Vec<App>,
}

impl AudienceWorld {
    /// Start it all and wait until every viewer receives frames on primary.
    pub async fn start(viewers: usize, check_interval: Duration) -> Self {
        let primary = Nginx::start("primary");
        let backup = Nginx::start("backup");
        let registry = registry_with(
            serde_json::json!([
                {"name": "primary", "priority": 1, "config": {"ingestUrl": primary.url()}},
                {"name": "backup", "priority": 2, "config": {"ingestUrl": backup.url()}}
            ]),
            |c| c.audience.per_source = LOOPBACK_PER_SOURCE,
        )
        .await;
        let interval = |c: &mut ManagerConfig| c.health_check_interval = check_interval;
        let publisher = App::new(&registry, interval);
        let s = publisher.manager.start_stream(CAM).await.unwrap();
        assert_eq!(s.provider.as_deref(), Some("primary"));
        let mut apps = Vec::new();
        for _ in 0..viewers {
            let v = App::new(&registry, interval);
            let s = v.manager.join_stream(CAM).await.unwrap();
            assert_eq!(s.provider.as_deref(), Some("primary"));
            apps.push(v);
        }
        for v in &apps {
            frames_arrive(
                &v.adapters[0],
                CAM,
                15,
                Duration::from_secs(5),
                "frames on primary",
            )
            .await;
        }
        // The RTMP publisher and viewers sample their own frames: every engine scores primary.
        let scored = |app: &App| {
            app.manager
                .provider_stats()
                .iter()
                .any(|s| s.provider == "primary" && s.quality_score.is_some_and(|q| q > 80.0))
        };
        until(Duration::from_secs(5), "quality samples scored", || {
            scored(&publisher) && apps.iter().all(scored)
        })
        .await;
        Self {
            primary,
            backup,
            registry,
            publisher,
            viewers: apps,
        }
    }

    /// Shut every app down and check that no ffmpeg is left on either server.
    pub async fn finish(self) {
        for v in self.viewers {
            v.manager.shutdown().await.unwrap();
        }
        self.publisher.manager.shutdown().await.unwrap();
        for port in [self.primary.port, self.backup.port] {
            assert_eq!(publishers_to(port) + viewers_of(port), 0, "no ffmpeg left");
        }
    }

    /// The registry's audience of `stream` on `provider` as an admin sees it: (viewers,
    /// stalled, outage).
    pub async fn audience(&self, stream: &str, provider: &str) -> Option<(u64, u64, bool)> {
        let v = admin_get(&self.registry, "audience").await;
        v["data"]["audience"]
            .as_array()?
            .iter()
            .find(|a| a["streamId"] == stream && a["provider"] == provider)
            .map(|a| {
                (
                    a["viewers"].as_u64().unwrap_or(0),
                    a["stalled"].as_u64().unwrap_or(0),
                    a["outage"].as_bool().unwrap_or(false),
                )
            })
    }
}

/// What the audience saw when primary froze.
#[derive(Debug, Clone)]
pub struct FrozenPrimary {
    /// Freeze to the publisher's `MigrationStarted` (reason `AudienceStalled`).
    pub decided: Duration,
    /// Freeze to the publisher's `MigrationFinished` on backup.
    pub publisher_moved: Duration,
    /// Each viewer's gap: its last frame on primary to its first frame on backup, from its
    /// own frames.
    pub gaps: Vec<Duration>,
}

impl FrozenPrimary {
    /// The largest viewer gap.
    pub fn worst_gap(&self) -> Duration {
        self.gaps.iter().copied().max().unwrap_or_default()
    }
}

/// Scenario 1 of issue 19: primary freezes (SIGSTOP) while a publisher and `viewers` viewers
/// are live on it. The viewers' players stall, their engines report it, the registry confirms
/// an outage and pushes it to the publisher, which moves (`AudienceStalled`); the viewers
/// follow the placement.
pub async fn scenario_frozen_primary(viewers: usize, check_interval: Duration) -> FrozenPrimary {
    let w = AudienceWorld::start(viewers, check_interval).await;
    let pm = w.publisher.log.mark();
    let marks: Vec<usize> = w.viewers.iter().map(|v| v.log.mark()).collect();
    let at = Instant::now();
    w.primary.freeze();
    let within = Duration::from_secs(40);
    let (decided, _) = w
        .publisher
        .log
        .wait(pm, within, "publisher moves for its audience", |e| {
            matches!(
                e,
                EventKind::MigrationStarted {
                    reason: FailoverReason::AudienceStalled,
                    ..
                }
            )
        })
        .await;
    let (moved, _) = w
        .publisher
        .log
        .wait(
            pm,
            within,
            "publisher live on backup",
            finished_on("backup"),
        )
        .await;
    let mut gaps = Vec::new();
    for (v, mark) in w.viewers.iter().zip(marks) {
        v.log
            .wait(mark, within, "viewer live on backup", finished_on("backup"))
            .await;
        gaps.push(watching_on_backup(v).await.1);
    }
    let r = FrozenPrimary {
        decided: decided - at,
        publisher_moved: moved - at,
        gaps,
    };
    w.finish().await;
    r
}

/// What happened when one viewer's own link broke.
#[derive(Debug, Clone)]
pub struct LocalStall {
    /// The registry's view of primary once that viewer was stalled: (viewers, stalled, outage).
    pub audience: (u64, u64, bool),
    /// Moves (or starts of moves) by the publisher or the other viewers (expected none).
    pub moves: usize,
}

/// Scenario 2 of issue 19: one viewer's player freezes (its ffmpeg is SIGSTOPped: its own
/// link, not the provider). It reports the stall; the registry sees one stalled viewer among
/// many, no outage; the publisher does not move and the other viewers see nothing change.
pub async fn scenario_one_viewer_stalls(viewers: usize) -> LocalStall {
    let w = AudienceWorld::start(viewers, Duration::from_secs(30)).await;
    let pm = w.publisher.log.mark();
    let marks: Vec<usize> = w.viewers.iter().map(|v| v.log.mark()).collect();
    let pid = w.viewers[0].adapters[0]
        .viewer_pid(CAM)
        .expect("a viewer process");
    run_kill("-STOP", pid);
    let stalled = &w.viewers[0];
    // Its RTMP viewer reports the stall after `stall_timeout` (2 s) and its samples say so.
    stalled
        .log
        .wait(
            marks[0],
            Duration::from_secs(10),
            "the stalled viewer's own stall",
            |e| matches!(e, EventKind::AudienceChanged { stalled, .. } if *stalled >= 1),
        )
        .await;
    let audience = w
        .audience(CAM, "primary")
        .await
        .expect("audience of primary");
    // Long enough for a wrong decision: several stall repeats and keep-alive windows.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut moves = w
        .publisher
        .log
        .since(pm)
        .iter()
        .filter(|e| any_move(e))
        .count();
    for (v, mark) in w.viewers.iter().zip(&marks).skip(1) {
        moves += v.log.since(*mark).iter().filter(|e| any_move(e)).count();
        assert!(v.adapters[0].viewer_stats(CAM).is_some_and(|s| !s.stalled));
    }
    run_kill("-CONT", pid);
    let r = LocalStall { audience, moves };
    w.finish().await;
    r
}

fn run_kill(sig: &str, pid: u32) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}
