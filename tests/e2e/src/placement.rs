//! Stream placement with real parts (issue 14): two nginx-rtmp providers, the reference
//! registry with its placement directory, a publisher engine with the RTMP publisher and a
//! viewer engine with the RTMP viewer, each engine an app of its own (its own client id, its own
//! health view). Shared by `tests/rtmp_placement.rs` and the benchmark.

use super::*;
use streamguard::ProviderErrorKind;
use tokio::sync::Notify;

/// The stream every placement scenario publishes.
pub const CAM: &str = "cam";

/// Every event of one engine, with the instant it arrived (`StreamEvent::at` counts from each
/// manager's own start, so two engines' events cannot be compared by it).
pub struct EventLog {
    events: Arc<Mutex<Vec<(Instant, EventKind)>>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl EventLog {
    /// Record everything `manager` emits from now on.
    pub fn follow(manager: &StreamingProviderManager) -> Self {
        let mut rx = manager.subscribe();
        let events: Arc<Mutex<Vec<(Instant, EventKind)>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let (e, a) = (events.clone(), arrived.clone());
        let task = tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        e.lock().unwrap().push((Instant::now(), ev.kind));
                        a.notify_waiters();
                    }
                    Err(RecvError::Lagged(n)) => panic!("event log lagged by {n}"),
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Self {
            events,
            arrived,
            task,
        }
    }

    /// How many events arrived so far (a mark for [`EventLog::wait`] and [`EventLog::find`]).
    pub fn mark(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// The first event from `mark` on that matches `pred`, if one arrived.
    pub fn find(
        &self,
        mark: usize,
        pred: impl Fn(&EventKind) -> bool,
    ) -> Option<(Instant, EventKind)> {
        self.events.lock().unwrap()[mark..]
            .iter()
            .find(|(_, e)| pred(e))
            .cloned()
    }

    /// Every event from `mark` on.
    pub fn since(&self, mark: usize) -> Vec<EventKind> {
        self.events.lock().unwrap()[mark..]
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The first event from `mark` on that matches `pred`: woken by each arrival, bounded by
    /// `within`; panics with `what` and what did arrive.
    pub async fn wait(
        &self,
        mark: usize,
        within: Duration,
        what: &str,
        pred: impl Fn(&EventKind) -> bool,
    ) -> (Instant, EventKind) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(found) = self.find(mark, &pred) {
                return found;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "{what}: not within {within:?}; events: {:#?}",
                    self.since(mark)
                );
            }
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `MigrationFinished` onto `provider`.
pub fn finished_on(provider: &'static str) -> impl Fn(&EventKind) -> bool {
    move |e| matches!(e, EventKind::MigrationFinished { to, .. } if to == provider)
}

/// A viewer that stayed on `provider` after its own signals said it failed.
pub fn stayed_on(provider: &'static str) -> impl Fn(&EventKind) -> bool {
    move |e| matches!(e, EventKind::MigrationFailed { still_on: Some(p), .. } if p == provider)
}

/// A move (or the start of one) of any kind.
pub fn any_move(e: &EventKind) -> bool {
    matches!(
        e,
        EventKind::Failover { .. }
            | EventKind::MigrationStarted { .. }
            | EventKind::MigrationFinished { .. }
    )
}

/// Wait (bounded) until `adapter`'s viewer of `stream` has `more` frames beyond what it has
/// now; returns its stats then.
pub async fn frames_arrive(
    adapter: &RtmpAdapter,
    stream: &str,
    more: u64,
    within: Duration,
    what: &str,
) -> streamguard::rtmp::ViewerStats {
    let base = adapter.viewer_stats(stream).map_or(0, |s| s.frames);
    until(within, what, || {
        adapter
            .viewer_stats(stream)
            .is_some_and(|s| s.ended_at.is_none() && s.frames >= base + more)
    })
    .await;
    adapter.viewer_stats(stream).unwrap()
}

/// Wait (bounded) until `viewer` receives frames on backup; its viewer's stats there, and the
/// gap it saw: its last frame on primary to its first frame on backup, from its own frames.
pub async fn watching_on_backup(viewer: &App) -> (streamguard::rtmp::ViewerStats, Duration) {
    let new = frames_arrive(
        &viewer.adapters[1],
        CAM,
        15,
        Duration::from_secs(5),
        "frames on backup",
    )
    .await;
    let old = viewer.adapters[0]
        .viewer_stats(CAM)
        .expect("viewed on primary");
    let gap = new
        .first_frame_at
        .unwrap()
        .saturating_duration_since(old.last_frame_at.unwrap());
    (new, gap)
}

/// A provider-fatal error as an SDK's own callback would report it.
pub fn sdk_error(detail: &str) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Unauthorized, detail)
}

/// One app (engine + its RTMP adapters for "primary" and "backup" + its event log).
pub struct App {
    /// The engine.
    pub manager: StreamingProviderManager,
    /// Its adapters: primary, backup.
    pub adapters: [Arc<RtmpAdapter>; 2],
    /// Its events since it was created.
    pub log: EventLog,
}

impl App {
    /// An app on `registry`; `customize` adjusts its config.
    pub fn new(registry: &RunningRegistry, customize: impl FnOnce(&mut ManagerConfig)) -> Self {
        let (manager, adapters) = rtmp_engine_with(registry, true, customize);
        let log = EventLog::follow(&manager);
        Self {
            manager,
            adapters,
            log,
        }
    }

    /// The provider the session of `stream` is on.
    pub fn on(&self, stream: &str) -> Option<String> {
        self.manager.session(stream).and_then(|s| s.provider)
    }
}

/// Two RTMP providers ("primary" preferred, "backup"), the registry, and a publishing app.
pub struct PlacementWorld {
    /// Provider "primary" (priority 1: what "agora" is in issue 14).
    pub primary: Nginx,
    /// Provider "backup" (priority 2).
    pub backup: Nginx,
    /// The registry, with its placement directory.
    pub registry: RunningRegistry,
    /// The publishing app.
    pub publisher: App,
}

impl PlacementWorld {
    /// Start both servers, the registry (with `maxStreams` on primary if given) and the
    /// publishing app (nothing published yet).
    pub async fn start(primary_max_streams: Option<u32>) -> Self {
        Self::start_with(primary_max_streams, |_| {}).await
    }

    /// [`start`](Self::start) with the publisher's config adjusted by `publisher`.
    pub async fn start_with(
        primary_max_streams: Option<u32>,
        publisher: impl FnOnce(&mut ManagerConfig),
    ) -> Self {
        let primary = Nginx::start("primary");
        let backup = Nginx::start("backup");
        let mut first = serde_json::json!(
            {"name": "primary", "priority": 1, "config": {"ingestUrl": primary.url()}}
        );
        if let Some(n) = primary_max_streams {
            first["maxStreams"] = n.into();
        }
        let registry = registry(serde_json::json!([
            first,
            {"name": "backup", "priority": 2, "config": {"ingestUrl": backup.url()}}
        ]))
        .await;
        let publisher = App::new(&registry, publisher);
        Self {
            primary,
            backup,
            registry,
            publisher,
        }
    }

    /// A viewer app on this registry.
    pub fn viewer(&self, customize: impl FnOnce(&mut ManagerConfig)) -> App {
        App::new(&self.registry, customize)
    }

    /// The public placement of `stream`: (provider, epoch, live), `None` on 404.
    pub async fn placement(&self, stream: &str) -> Option<(String, u64, bool)> {
        let resp = reqwest::get(format!(
            "{}/api/streaming/streams/{stream}",
            self.registry.url()
        ))
        .await
        .unwrap();
        if resp.status() == 404 {
            return None;
        }
        assert!(resp.status().is_success(), "{}", resp.status());
        let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        let d = &v["data"];
        Some((
            d["provider"].as_str().unwrap().to_string(),
            d["epoch"].as_u64().unwrap(),
            d["live"].as_bool().unwrap(),
        ))
    }

    /// The client id holding `stream` (from the admin list; public answers never name it).
    pub async fn owner(&self, stream: &str) -> String {
        let v = admin_get(&self.registry, "streams").await;
        v["data"]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["streamId"] == stream)
            .and_then(|s| s["clientId"].as_str())
            .unwrap_or_else(|| panic!("{stream} not in the admin list: {v}"))
            .to_string()
    }

    /// A raw claim, as a publisher that was cut off (or another client) would send it:
    /// the status and the error code, if any.
    pub async fn claim_raw(
        &self,
        stream: &str,
        provider: &str,
        epoch: u64,
        client_id: &str,
    ) -> (u16, Option<String>) {
        let resp = reqwest::Client::new()
            .put(format!(
                "{}/api/streaming/streams/{stream}/placement",
                self.registry.url()
            ))
            .bearer_auth(TELEMETRY)
            .header("content-type", "application/json")
            .body(
                serde_json::json!({"provider": provider, "epoch": epoch, "clientId": client_id})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: serde_json::Value =
            serde_json::from_str(&resp.text().await.unwrap()).unwrap_or_default();
        (status, v["error"]["code"].as_str().map(str::to_string))
    }

    /// The publisher goes live on primary (its preferred provider) and the placement says so.
    pub async fn publish_on_primary(&self) {
        let s = self.publisher.manager.start_stream(CAM).await.unwrap();
        assert_eq!(s.provider.as_deref(), Some("primary"));
        assert_eq!(self.placement(CAM).await, Some(("primary".into(), 1, true)));
    }

    /// `fault` makes the publisher leave primary; waits (bounded, by events) until the
    /// publisher and then `viewer` are live on backup. Returns the viewer's event mark from
    /// before the fault, when the fault hit, and when each `MigrationFinished` arrived.
    pub async fn publisher_leaves_primary(
        &mut self,
        fault: PublisherFault,
        viewer: &App,
    ) -> (usize, Instant, Instant, Instant) {
        let (pm, vm) = (self.publisher.log.mark(), viewer.log.mark());
        let at = Instant::now();
        match fault {
            PublisherFault::Killed => self.primary.kill(),
            PublisherFault::LocalError => self
                .publisher
                .manager
                .record_error(CAM, sdk_error("publisher's SDK: token revoked on primary"))
                .unwrap(),
        }
        let within = Duration::from_secs(30);
        let (published, _) = self
            .publisher
            .log
            .wait(
                pm,
                within,
                "publisher live on backup",
                finished_on("backup"),
            )
            .await;
        let (viewing, _) = viewer
            .log
            .wait(vm, within, "viewer live on backup", finished_on("backup"))
            .await;
        assert_eq!(
            self.placement(CAM).await.map(|(p, _, live)| (p, live)),
            Some(("backup".into(), true)),
            "the publisher claimed backup"
        );
        (vm, at, published, viewing)
    }

    /// Shut both apps down and check that no ffmpeg is left on either server.
    pub async fn finish(self, viewer: App) {
        viewer.manager.shutdown().await.unwrap();
        self.publisher.manager.shutdown().await.unwrap();
        for port in [self.primary.port, self.backup.port] {
            assert_eq!(publishers_to(port) + viewers_of(port), 0, "no ffmpeg left");
        }
    }
}

/// How the publisher leaves primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublisherFault {
    /// Primary is killed (SIGKILL of master and worker): for everyone.
    Killed,
    /// Only the publisher's SDK reports a provider-fatal error on primary; primary stays
    /// healthy for everyone else.
    LocalError,
}

/// How the viewer learns that the placement changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learns {
    /// The registry's push channel (`placement` events for `?streams=cam`).
    Push,
    /// Push off: polling every `provider_refresh_interval` (1 s here).
    Poll,
}

/// What a viewer saw while following its publisher.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// The viewer's last frame on primary to its first frame on backup, from its own frames.
    pub gap: Duration,
    /// The publisher live on backup (its `MigrationFinished`) to the viewer live there (the
    /// viewer's `MigrationFinished`).
    pub follow: Duration,
    /// The publisher live on backup (its `MigrationFinished`) to the viewer's first frame
    /// there (its own frames: it is watching from then on, while its engine still leaves
    /// primary).
    pub first_frame: Duration,
    /// Fault to the publisher's `MigrationFinished`.
    pub publisher_moved: Duration,
    /// How the viewer's old ffmpeg (on primary) stopped.
    pub old_viewer: Option<StopReport>,
    /// Whether the viewer's own signals said primary failed and it stayed there (the
    /// `MigrationFailed { still_on }` of a viewer that does not wander) before following.
    pub viewer_stayed: bool,
}

/// Scenarios 2 and 3 of issue 14: publisher and viewer live on primary; `fault` makes the
/// publisher move to backup; the viewer follows. Measured from the viewer's own frames.
pub async fn scenario_follow(fault: PublisherFault, learns: Learns) -> Follow {
    let mut w = PlacementWorld::start(None).await;
    w.publish_on_primary().await;
    let v = w.viewer(|c| {
        if learns == Learns::Poll {
            c.push_updates = false;
            c.provider_refresh_interval = Duration::from_secs(1);
        }
    });
    let s = v.manager.join_stream(CAM).await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("primary"));
    frames_arrive(
        &v.adapters[0],
        CAM,
        15,
        Duration::from_secs(5),
        "frames on primary",
    )
    .await;
    let (vm, at, published, viewing) = w.publisher_leaves_primary(fault, &v).await;
    assert_eq!(
        w.placement(CAM).await,
        Some(("backup".into(), 2, true)),
        "the next epoch"
    );
    if fault == PublisherFault::LocalError {
        // Primary is fine for the viewer: it moved because the placement did.
        assert!(
            v.log
                .find(vm, |e| matches!(
                    e,
                    EventKind::Failover {
                        reason: FailoverReason::PlacementChanged,
                        ..
                    }
                ))
                .is_some(),
            "{:#?}",
            v.log.since(vm)
        );
    }
    let (new, gap) = watching_on_backup(&v).await;
    let old = v.adapters[0].viewer_stats(CAM).expect("viewed on primary");
    assert!(old.ended_at.is_some(), "left primary: {old:?}");
    assert_eq!(v.on(CAM).as_deref(), Some("backup"));
    let viewer_stayed = v.log.find(vm, stayed_on("primary")).is_some();
    let follow = Follow {
        gap,
        follow: viewing.saturating_duration_since(published),
        first_frame: new
            .first_frame_at
            .unwrap()
            .saturating_duration_since(published),
        publisher_moved: published - at,
        old_viewer: v.adapters[0].last_stop(CAM, ProcessKind::Viewer),
        viewer_stayed,
    };
    w.finish(v).await;
    follow
}

/// What a viewer saw when its publisher's primary was killed while a hot standby ran.
#[derive(Debug, Clone, Copy)]
pub struct StandbyFailover {
    /// The viewer's last frame on primary to its first frame on backup (the standby), from its
    /// own frames.
    pub gap: Duration,
    /// Kill to the viewer's `MigrationFinished` on backup (it moved on its own signal).
    pub viewer_moved: Duration,
    /// Kill to the publisher's `StandbyPromoted` (backup is its primary now).
    pub promoted: Duration,
}

/// Scenario 4 of issue 14: the publisher (`standby_providers` 1) publishes on primary with a
/// hot standby on backup; a viewer watches on primary; primary is killed. The viewer switches
/// to the standby on its own signal, without waiting for the publisher, which promotes the
/// standby (next epoch). Measured from the viewer's own frames.
pub async fn scenario_standby() -> StandbyFailover {
    let mut w = PlacementWorld::start_with(None, |c| c.standby_providers = 1).await;
    let pm = w.publisher.log.mark();
    let s = w.publisher.manager.start_stream(CAM).await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("primary"));
    w.publisher
        .log
        .wait(
            pm,
            Duration::from_secs(30),
            "standby on backup claimed",
            |e| matches!(e, EventKind::PlacementChanged { standby, .. } if standby == &["backup"]),
        )
        .await;
    let v = w.viewer(|_| {});
    let s = v.manager.join_stream(CAM).await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("primary"));
    frames_arrive(
        &v.adapters[0],
        CAM,
        15,
        Duration::from_secs(5),
        "frames on primary",
    )
    .await;
    let (pm, vm) = (w.publisher.log.mark(), v.log.mark());
    let at = Instant::now();
    w.primary.kill();
    let within = Duration::from_secs(30);
    let (viewing, _) = v
        .log
        .wait(
            vm,
            within,
            "viewer live on the standby",
            finished_on("backup"),
        )
        .await;
    let (promoted, _) = w
        .publisher
        .log
        .wait(
            pm,
            within,
            "standby promoted",
            |e| matches!(e, EventKind::StandbyPromoted { to, .. } if to == "backup"),
        )
        .await;
    let (_, gap) = watching_on_backup(&v).await;
    assert_eq!(
        w.placement(CAM).await.map(|(p, _, live)| (p, live)),
        Some(("backup".into(), true)),
        "the publisher claimed the promoted standby"
    );
    let r = StandbyFailover {
        gap,
        viewer_moved: viewing - at,
        promoted: promoted - at,
    };
    w.finish(v).await;
    r
}
