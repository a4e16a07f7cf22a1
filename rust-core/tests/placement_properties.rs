//! Property test of stream placement over random schedules: publishers (another client) move
//! between providers (with or without a hot standby) or stop, viewers join, leave and report
//! errors (provider-fatal, or transient ones that move a viewer to a standby at once), adapters
//! go down. A viewer never joins a provider the stream is not placed on (as publisher or
//! standby) at that moment, and after things settle every live viewer is on its publisher's
//! provider or one of its standbys.
//!
//! 300 cases by default; `PROPTEST_CASES=N` for a longer run.

mod common;

use common::*;
use proptest::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamguard::{ProviderError, ProviderErrorKind, SessionState};

const PROVIDERS: [&str; 3] = ["agora", "zegocloud", "webrtc"];
const STREAMS: [&str; 2] = ["s1", "s2"];

#[derive(Debug, Clone)]
enum Action {
    /// The publisher of a stream moves to a provider (next epoch), maybe with a standby.
    Move(usize, usize, Option<usize>),
    /// The publisher stops (the placement is no longer live).
    Stop(usize),
    Join(usize),
    End(usize),
    /// The viewer's own SDK reports an error: provider-fatal, or transient.
    ViewerError(usize, bool),
    Down(usize, bool),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..2usize, 0..3usize, prop::option::of(1..3usize))
            .prop_map(|(s, p, sb)| Action::Move(s, p, sb.map(|d| (p + d) % 3))),
        1 => (0..2usize).prop_map(Action::Stop),
        3 => (0..2usize).prop_map(Action::Join),
        1 => (0..2usize).prop_map(Action::End),
        2 => (0..2usize, any::<bool>()).prop_map(|(s, f)| Action::ViewerError(s, f)),
        1 => (0..3usize, any::<bool>()).prop_map(|(p, d)| Action::Down(p, d)),
    ]
}

fn schedule() -> impl Strategy<Value = Vec<(u64, Action)>> {
    prop::collection::vec((0u64..120, action()), 1..20).prop_map(|mut v| {
        v.sort_by_key(|(t, _)| *t);
        v
    })
}

/// Where `stream` may be watched now: its live publisher's provider and standbys.
fn allowed(ctl: &BackendCtl, stream: &str) -> Option<Vec<String>> {
    let (p, _, live) = ctl.placement_of(stream)?;
    live.then(|| std::iter::once(p).chain(ctl.standby_of(stream)).collect())
}

async fn run(actions: Vec<(u64, Action)>, parallel: bool) -> Result<(), TestCaseError> {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, parallel);
    // Every successful join is checked against the directory at that instant.
    let wrong: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (ctl, wrong) = (b.ctl.clone(), wrong.clone());
        let hook: ConnectHook = Arc::new(move |provider, what, stream| {
            if what != "join" {
                return;
            }
            let placed = allowed(&ctl, stream);
            let ok = placed
                .as_ref()
                .is_some_and(|a| a.iter().any(|p| p == provider));
            if !ok {
                wrong
                    .lock()
                    .unwrap()
                    .push(format!("{stream} joined on {provider}, placed {placed:?}"));
            }
        });
        for a in t.all() {
            *a.on_connected.lock().unwrap() = Some(hook.clone());
        }
    }
    let start = tokio::time::Instant::now();
    let mut epochs = [0u64; 2];
    for (at, action) in actions {
        tokio::time::sleep_until(start + Duration::from_secs(at)).await;
        match action {
            Action::Move(s, p, standby) => {
                epochs[s] += 1;
                let standby: Vec<&str> = standby.map(|i| PROVIDERS[i]).into_iter().collect();
                b.ctl
                    .set_placement_with_standby(STREAMS[s], PROVIDERS[p], epochs[s], &standby);
            }
            Action::Stop(s) => {
                if let Some(entry) = b.ctl.placements.lock().unwrap().get_mut(STREAMS[s]) {
                    entry.2 = false;
                }
            }
            Action::Join(s) => {
                let m2 = m.clone();
                tokio::spawn(async move {
                    let _ = m2.join_stream(STREAMS[s]).await;
                });
            }
            Action::End(s) => {
                let m2 = m.clone();
                tokio::spawn(async move {
                    let _ = m2.end_stream(STREAMS[s]).await;
                });
            }
            Action::ViewerError(s, fatal) => {
                let kind = if fatal {
                    ProviderErrorKind::Unauthorized
                } else {
                    ProviderErrorKind::Network
                };
                let _ = m.record_error(STREAMS[s], ProviderError::new(kind, "viewer side"));
            }
            Action::Down(p, d) => t.all()[p].set_down(d),
        }
    }
    for a in t.all() {
        a.set_down(false);
    }
    // Two polls of the placement (every 30 s) and any migration in between.
    tokio::time::sleep(Duration::from_secs(90)).await;
    let wrong = wrong.lock().unwrap().clone();
    prop_assert!(wrong.is_empty(), "joins off the placement: {wrong:?}");
    for s in m.sessions() {
        if s.state != SessionState::Live {
            continue;
        }
        if let Some(a) = allowed(&b.ctl, &s.stream_id) {
            prop_assert!(
                s.provider.as_ref().is_some_and(|p| a.contains(p)),
                "{} on {:?} did not follow its publisher ({a:?})",
                s.stream_id,
                s.provider
            );
        }
    }
    m.shutdown().await.unwrap();
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn viewers_only_join_where_the_stream_is_placed(actions in schedule(), parallel in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(actions, parallel))?;
    }
}
