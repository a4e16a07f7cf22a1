//! The placement scene: a publisher engine and a viewer engine (two managers in this process,
//! so two client ids, each with its own simulated adapters for the same three providers) on the
//! same registry. The publisher goes live where it can and claims the stream's placement; the
//! viewer joins there, not on its own preferred provider; the publisher moves and the viewer
//! follows (pushed `placement` event, `FailoverReason::PlacementChanged`); a failure only the
//! viewer sees does not make it wander to a provider the stream is not on.

use super::*;
use std::error::Error;
use streamguard::{FailoverReason, ProviderErrorKind, SessionState};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

/// The stream of the scene.
pub(crate) const STREAM: &str = "final";

/// How long a wait for one engine decision may take before the scene gives up.
const BOUND: Duration = Duration::from_secs(10);

/// What the scene saw, for the printed summary and the test.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// The publisher's provider: where it went live, then after each move.
    pub publisher_on: Vec<String>,
    /// The viewer's provider: where it joined, then after each follow.
    pub viewer_on: Vec<String>,
    /// Starts and joins the viewer asked of its preferred provider (agora).
    pub viewer_agora_connects: u32,
    /// The reasons of the viewer's failovers (its follows).
    pub viewer_follow_reasons: Vec<FailoverReason>,
    /// Where the viewer said it still was after its own provider failed.
    pub viewer_stayed_on: Option<String>,
    /// For each move: the viewer live on the new provider, measured from the publisher's
    /// move finishing (negative: before the publisher had left the old provider).
    pub follow_after_publisher_ms: Vec<i64>,
    /// The registry's placement while live, then after the publisher ended.
    pub placement_live: Value,
    pub placement_ended: Value,
}

struct Trio {
    agora: Arc<SimulatedProvider>,
}

fn register(m: &StreamingProviderManager) -> Result<Trio, Box<dyn Error>> {
    let agora = SimulatedProvider::new("agora", 120);
    m.register_adapter("agora", agora.clone())?;
    m.register_adapter("zegocloud", SimulatedProvider::new("zegocloud", 90))?;
    m.register_adapter("webrtc", SimulatedProvider::new("webrtc", 60))?;
    Ok(Trio { agora })
}

/// `GET {registry}/api/streaming/streams/{STREAM}`: the public placement (the body's `data`).
async fn placement(reg_url: &str) -> Result<Value, Box<dyn Error>> {
    let body = reqwest::get(format!("{reg_url}/api/streaming/streams/{STREAM}"))
        .await?
        .bytes()
        .await?;
    let mut v: Value = serde_json::from_slice(&body)?;
    Ok(v["data"].take())
}

fn placed(v: &Value) -> String {
    format!(
        "{} epoch {}{}",
        v["provider"].as_str().unwrap_or("?"),
        v["epoch"],
        if v["live"] == json!(true) {
            ""
        } else {
            " (not live)"
        }
    )
}

/// The next event matching `pred` (bounded); when it was received, and the event.
async fn wait_for(
    rx: &mut broadcast::Receiver<StreamEvent>,
    what: &str,
    pred: impl Fn(&EventKind) -> bool,
) -> Result<(Instant, EventKind), Box<dyn Error>> {
    let deadline = Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return Err(format!("no {what} within {BOUND:?}").into()),
            Ok(Ok(ev)) if pred(&ev.kind) => return Ok((Instant::now(), ev.kind)),
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => return Err(format!("no {what}: engine gone").into()),
        }
    }
}

fn finished(k: &EventKind) -> bool {
    matches!(k, EventKind::MigrationFinished { stream_id, .. } if stream_id == STREAM)
}

/// Milliseconds from `a` to `b`, negative if `b` came first.
fn signed_ms(a: Instant, b: Instant) -> i64 {
    if b >= a {
        (b - a).as_millis() as i64
    } else {
        -((a - b).as_millis() as i64)
    }
}

/// Both engines' events on one timeline, labelled (the provider-list echoes left out).
fn print_events(
    start: Instant,
    publisher: &StreamingProviderManager,
    viewer: &StreamingProviderManager,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (label, m) in [("publisher", publisher), ("viewer   ", viewer)] {
        let (tx, mut events) = (tx.clone(), m.subscribe());
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        if tx.send((label, Instant::now(), ev.kind)).is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(async move {
        while let Some((label, at, kind)) = rx.recv().await {
            if matches!(kind, EventKind::ProviderListChanged { .. }) {
                continue;
            }
            println!(
                "[{:>7.3}s] {label} | {}",
                (at - start).as_secs_f64(),
                event_text(&kind)
            );
        }
    })
}

/// Run the scene against the registry at `reg_url`, pausing `pace` between steps so a reader
/// can follow (zero in the test: every wait is on an engine event, bounded). The viewer polls
/// placements every `viewer_poll` as the fallback to push (the test makes it longer than every
/// wait, so a follow can only come from push).
pub(crate) async fn scene(
    reg_url: &str,
    pace: Duration,
    viewer_poll: Duration,
) -> Result<Facts, Box<dyn Error>> {
    let base_url = format!("{reg_url}/api");
    let start = Instant::now();
    let say = |text: &str| say(start, text);
    let mut facts = Facts::default();

    let publisher = StreamingProviderManager::new(engine_config(&base_url))?;
    let mut viewer_config = engine_config(&base_url);
    viewer_config.provider_refresh_interval = viewer_poll;
    let viewer = StreamingProviderManager::new(viewer_config)?;
    let pub_adapters = register(&publisher)?;
    let view_adapters = register(&viewer)?;
    let printer = print_events(start, &publisher, &viewer);
    let (mut prx, mut vrx) = (publisher.subscribe(), viewer.subscribe());

    say("PLACEMENT: a publisher engine and a viewer engine (two clients, each with its own adapters for agora > zegocloud > webrtc) on the same registry");
    say("the publisher's agora account is over its publishing quota: its agora SDK refuses to publish (agora works for everyone else)");
    *pub_adapters.agora.refusal.lock().unwrap() = Some(ProviderError::new(
        ProviderErrorKind::QuotaExceeded,
        "publishing quota of this app id used up",
    ));
    say(&format!("Go live: publisher of {STREAM:?}"));
    let s = publisher.start_stream(STREAM).await?;
    let on = s.provider.unwrap_or_default();
    let p = placement(reg_url).await?;
    say(&format!(
        "publisher live on {on}; the registry's placement of {STREAM:?}: {}",
        placed(&p)
    ));
    facts.publisher_on.push(on);

    tokio::time::sleep(pace).await;
    say(&format!(
        "Join: viewer of {STREAM:?} (agora, its preferred provider, is healthy for it)"
    ));
    let s = viewer.join_stream(STREAM).await?;
    let on = s.provider.unwrap_or_default();
    facts.viewer_agora_connects = view_adapters.agora.connects.load(Ordering::SeqCst);
    say(&format!(
        "viewer joined {on}, where the publisher is ({} connects on agora)",
        facts.viewer_agora_connects
    ));
    facts.viewer_on.push(on);

    // Two moves of the publisher; between them, a failure only the viewer sees.
    for n in 1..=2 {
        tokio::time::sleep(pace).await;
        let from = facts.publisher_on.last().cloned().unwrap_or_default();
        say(&format!(
            "SDK: the publisher's {from} SDK reports a fatal error (its token was revoked); {from} stays healthy for the viewer"
        ));
        let began = Instant::now();
        publisher.record_error(
            STREAM,
            ProviderError::unauthorized("publisher token revoked"),
        )?;
        let (p_done, p_ev) = wait_for(&mut prx, "publisher move", finished).await?;
        let (_, v_failover) = wait_for(
            &mut vrx,
            "viewer failover",
            |k| matches!(k, EventKind::Failover { stream_id, .. } if stream_id == STREAM),
        )
        .await?;
        let (v_done, v_ev) = wait_for(&mut vrx, "viewer follow", finished).await?;
        if let EventKind::Failover { reason, .. } = v_failover {
            facts.viewer_follow_reasons.push(reason);
        }
        let (
            EventKind::MigrationFinished { to: p_to, .. },
            EventKind::MigrationFinished { to: v_to, .. },
        ) = (p_ev, v_ev)
        else {
            unreachable!("matched by `finished`");
        };
        let after = signed_ms(p_done, v_done);
        say(&format!(
            "viewer followed to {v_to} (publisher on {p_to}, placement {}): live there {after} ms after the publisher's move finished, {} ms after the publisher's SDK error; told by the registry's push (polling every {viewer_poll:?} is only the fallback)",
            placed(&placement(reg_url).await?),
            (v_done - began).as_millis()
        ));
        facts.publisher_on.push(p_to);
        facts.viewer_on.push(v_to);
        facts.follow_after_publisher_ms.push(after);

        if n == 1 {
            tokio::time::sleep(pace).await;
            say(&format!(
                "SDK: the viewer's {v} SDK reports a fatal error (viewer side only: the publisher stays on {v})",
                v = facts.viewer_on.last().cloned().unwrap_or_default()
            ));
            viewer.record_error(STREAM, ProviderError::unauthorized("viewer token expired"))?;
            let (_, ev) = wait_for(&mut vrx, "viewer decision", |k| {
                matches!(k, EventKind::MigrationFailed { stream_id, .. } | EventKind::MigrationFinished { stream_id, .. } if stream_id == STREAM)
            })
            .await?;
            if let EventKind::MigrationFailed { still_on, .. } = ev {
                facts.viewer_stayed_on = still_on;
            }
            let s = viewer.session(STREAM);
            say(&format!(
                "viewer stays: {:?} on {} (the stream is nowhere else; it follows when the publisher moves)",
                s.as_ref().map(|s| s.state).unwrap_or(SessionState::Idle),
                s.and_then(|s| s.provider).unwrap_or_default()
            ));
        }
    }

    tokio::time::sleep(pace).await;
    facts.placement_live = placement(reg_url).await?;
    say(&format!(
        "registry: GET /api/streaming/streams/{STREAM} -> {}",
        facts.placement_live
    ));
    say("End: the viewer leaves, the publisher ends its stream (its claim is released)");
    viewer.end_stream(STREAM).await?;
    publisher.end_stream(STREAM).await?;
    viewer.shutdown().await?;
    publisher.shutdown().await?;
    facts.placement_ended = placement(reg_url).await?;
    say(&format!(
        "registry: GET /api/streaming/streams/{STREAM} -> {} (ended: live false, the epoch still fences old claims)",
        facts.placement_ended
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    printer.abort();
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scene on a fresh in-process registry (127.0.0.1, free ports), without pauses. The
    /// viewer's placement polling (10 min) is far beyond every bounded wait (10 s): it follows
    /// by push.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_viewer_joins_follows_and_stays_with_its_publisher() {
        let (registry, _edges) = start_registry().await.unwrap();
        let f = scene(&registry.url(), Duration::ZERO, Duration::from_secs(600))
            .await
            .unwrap();
        println!("{f:#?}");
        // Not on agora, the preferred provider: the publisher's agora refuses it.
        assert_ne!(f.publisher_on[0], "agora");
        assert_eq!(
            f.viewer_on[0], f.publisher_on[0],
            "joined where the publisher is"
        );
        assert_eq!(
            f.viewer_agora_connects, 0,
            "never tried its preferred provider"
        );
        assert_eq!(f.publisher_on.len(), 3, "{f:?}");
        assert_eq!(f.viewer_on, f.publisher_on, "followed every move");
        assert_ne!(f.publisher_on[1], f.publisher_on[0]);
        assert_ne!(f.publisher_on[2], f.publisher_on[1]);
        assert_eq!(
            f.viewer_follow_reasons,
            [FailoverReason::PlacementChanged; 2]
        );
        assert_eq!(
            f.viewer_stayed_on.as_deref(),
            Some(f.publisher_on[1].as_str()),
            "stayed with the publisher on its own failure"
        );
        let last = f.publisher_on[2].as_str();
        assert_eq!(f.placement_live["provider"], last);
        assert_eq!(f.placement_live["epoch"], 3);
        assert_eq!(f.placement_live["live"], true);
        assert_eq!(f.placement_ended["live"], false);
        assert_eq!(f.placement_ended["epoch"], 3);
        registry.shutdown().await.unwrap();
    }
}
