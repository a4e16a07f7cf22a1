//! Review findings (races in placement): each test failed before its fix.

mod common;

use async_trait::async_trait;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamguard::ProviderErrorKind::Unauthorized;
use streamguard::{
    BackendError, EventKind, LiveSession, Placement, PlacementClaim, ProviderError, ProviderList,
    ProviderRegistry, PushEvent, RegistryHealth, SessionReport, SessionState,
    StreamingProviderManager,
};

fn directory(list: &[(&str, bool, u32)]) -> Backend {
    let b = Backend::start(list);
    b.ctl.placement_enabled.store(true, Ordering::SeqCst);
    b
}

/// The loopback registry, with claims that fail or are slow on demand and a push channel the
/// test drives.
struct Wrap {
    inner: Arc<dyn ProviderRegistry>,
    /// Claims fail with a network error.
    claims_fail: AtomicBool,
    /// Claims of this provider wait this long before they are sent.
    slow_claims: Mutex<Option<(String, Duration)>>,
    /// Claims asked for, by provider.
    claims_asked: Mutex<Vec<String>>,
    claim_count: AtomicU64,
    push: tokio::sync::broadcast::Sender<Placement>,
    push_on: AtomicBool,
}

impl Wrap {
    fn new(inner: Arc<dyn ProviderRegistry>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            claims_fail: AtomicBool::new(false),
            slow_claims: Mutex::new(None),
            claims_asked: Mutex::new(Vec::new()),
            claim_count: AtomicU64::new(0),
            push: tokio::sync::broadcast::channel(16).0,
            push_on: AtomicBool::new(false),
        })
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
        let mut rx = self.push.subscribe();
        while let Ok(p) = rx.recv().await {
            on_event(PushEvent::Placement(p));
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
        self.inner.release_placement(stream_id, client_id).await
    }
    async fn report(&self, report: &SessionReport) -> Result<(), BackendError> {
        self.inner.report(report).await
    }
    async fn alive(&self, client_id: &str, sessions: &[LiveSession]) -> Result<(), BackendError> {
        self.inner.alive(client_id, sessions).await
    }
}

fn wrapped(
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

fn placed(stream: &str, provider: &str, epoch: u64) -> Placement {
    Placement {
        stream_id: stream.into(),
        provider: provider.into(),
        epoch,
        standby: Vec::new(),
        live: true,
    }
}

/// A viewer is following its publisher (a slow join on the new provider) when the publisher
/// moves again: the viewer must end up where the publisher is now, not where it was.
#[tokio::test(start_paused = true)]
async fn a_viewer_follows_a_placement_change_seen_while_it_was_moving() {
    let b = directory(SEED_LIST);
    b.ctl.set_placement("S", "zegocloud", 1);
    let (m, w) = wrapped(&b, b.config());
    w.push_on.store(true, Ordering::SeqCst);
    let t = Trio::register(&m, false);
    m.join_stream("S").await.unwrap();
    // Let the push channel connect.
    tokio::time::sleep(ms(100)).await;
    let mut rx = m.subscribe();
    t.webrtc.script_connect(vec![Step::Delay(secs(5))]);
    b.ctl.set_placement("S", "webrtc", 2);
    let _ = w.push.send(placed("S", "webrtc", 2));
    wait_for(&mut rx, secs(2), |e| {
        matches!(e, EventKind::MigrationStarted { .. })
    })
    .await;
    // The publisher moves again while the viewer's join on webrtc is still running.
    tokio::time::sleep(secs(1)).await;
    b.ctl.set_placement("S", "agora", 3);
    let _ = w.push.send(placed("S", "agora", 3));
    wait_for(&mut rx, secs(10), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    // Plenty of time to follow (push, and polling every 30 s).
    tokio::time::sleep(secs(70)).await;
    let s = m.session("S").unwrap();
    assert_eq!(
        (s.state, s.provider.as_deref()),
        (SessionState::Live, Some("agora")),
        "the viewer stays where the publisher no longer is"
    );
    assert!(t.agora.is_carrying("S"));
    m.shutdown().await.unwrap();
}

/// A publisher whose first claim failed retries it with the keep-alive round; a move that
/// claims the new provider meanwhile must not be overtaken by that retry (the placement would
/// send viewers back to the provider the publisher left).
#[tokio::test(start_paused = true)]
async fn a_claim_retry_never_overtakes_a_move() {
    let b = directory(SEED_LIST);
    let (m, w) = wrapped(&b, b.config());
    let t = Trio::register(&m, false);
    w.claims_fail.store(true, Ordering::SeqCst);
    m.start_stream("S").await.unwrap();
    assert_eq!(b.ctl.placement_of("S"), None, "the first claim failed");
    w.claims_fail.store(false, Ordering::SeqCst);
    *w.slow_claims.lock().unwrap() = Some(("agora".into(), secs(3)));
    let asked = w.claim_count.load(Ordering::SeqCst);
    // The keep-alive round (every 30 s) retries the claim of agora...
    while w.claim_count.load(Ordering::SeqCst) == asked {
        tokio::time::sleep(ms(100)).await;
    }
    // ... and while it is on its way the publisher's provider fails: it moves to zegocloud.
    let mut rx = m.subscribe();
    m.record_error("S", ProviderError::new(Unauthorized, "revoked"))
        .unwrap();
    wait_for(&mut rx, secs(5), |e| {
        matches!(e, EventKind::MigrationFinished { .. })
    })
    .await;
    tokio::time::sleep(secs(10)).await;
    assert_eq!(
        m.session("S").unwrap().provider.as_deref(),
        Some("zegocloud")
    );
    assert!(!t.agora.is_carrying("S"));
    let p = b.ctl.placement_of("S").map(|(p, _, live)| (p, live));
    assert_eq!(
        p,
        Some(("zegocloud".into(), true)),
        "the placement points where the publisher is"
    );
    m.shutdown().await.unwrap();
}

/// A claim retry still on its way when the stream ends must not leave a live placement (a
/// viewer would join a stream nobody publishes; another client could not take the id).
#[tokio::test(start_paused = true)]
async fn a_claim_retry_never_outlives_the_stream() {
    let b = directory(SEED_LIST);
    let (m, w) = wrapped(&b, b.config());
    let _t = Trio::register(&m, false);
    w.claims_fail.store(true, Ordering::SeqCst);
    m.start_stream("S").await.unwrap();
    w.claims_fail.store(false, Ordering::SeqCst);
    *w.slow_claims.lock().unwrap() = Some(("agora".into(), secs(3)));
    let asked = w.claim_count.load(Ordering::SeqCst);
    while w.claim_count.load(Ordering::SeqCst) == asked {
        tokio::time::sleep(ms(100)).await;
    }
    m.end_stream("S").await.unwrap();
    tokio::time::sleep(secs(10)).await;
    let live = b.ctl.placement_of("S").is_some_and(|(_, _, live)| live);
    assert!(
        !live,
        "the ended stream is still placed: {:?}",
        b.ctl.placement_of("S")
    );
    m.shutdown().await.unwrap();
}
