//! Property test of stream placement over random schedules: publishers (another client) move
//! between providers or stop, viewers join, leave and report errors, adapters go down. A viewer
//! never joins a provider the stream is not placed on at that moment, and after things settle
//! every live viewer is on its publisher's provider.
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
    /// The publisher of a stream moves to a provider (next epoch).
    Move(usize, usize),
    /// The publisher stops (the placement is no longer live).
    Stop(usize),
    Join(usize),
    End(usize),
    /// The viewer's own SDK reports a provider-fatal error.
    ViewerError(usize),
    Down(usize, bool),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..2usize, 0..3usize).prop_map(|(s, p)| Action::Move(s, p)),
        1 => (0..2usize).prop_map(Action::Stop),
        3 => (0..2usize).prop_map(Action::Join),
        1 => (0..2usize).prop_map(Action::End),
        2 => (0..2usize).prop_map(Action::ViewerError),
        1 => (0..3usize, any::<bool>()).prop_map(|(p, d)| Action::Down(p, d)),
    ]
}

fn schedule() -> impl Strategy<Value = Vec<(u64, Action)>> {
    prop::collection::vec((0u64..120, action()), 1..20).prop_map(|mut v| {
        v.sort_by_key(|(t, _)| *t);
        v
    })
}

async fn run(actions: Vec<(u64, Action)>) -> Result<(), TestCaseError> {
    let b = Backend::with_placement(SEED_LIST);
    let m = b.manager(b.config());
    let t = Trio::register(&m, false);
    // Every successful join is checked against the directory at that instant.
    let wrong: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (ctl, wrong) = (b.ctl.clone(), wrong.clone());
        let hook: ConnectHook = Arc::new(move |provider, what, stream| {
            if what != "join" {
                return;
            }
            let placed = ctl.placement_of(stream);
            let ok = placed
                .as_ref()
                .is_some_and(|(p, _, live)| *live && p == provider);
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
            Action::Move(s, p) => {
                epochs[s] += 1;
                b.ctl.set_placement(STREAMS[s], PROVIDERS[p], epochs[s]);
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
            Action::ViewerError(s) => {
                let _ = m.record_error(
                    STREAMS[s],
                    ProviderError::new(ProviderErrorKind::Unauthorized, "viewer side"),
                );
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
        let placed = b.ctl.placement_of(&s.stream_id);
        if let Some((p, _, true)) = placed {
            prop_assert_eq!(
                s.provider.as_deref(),
                Some(p.as_str()),
                "{} did not follow its publisher",
                s.stream_id
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
    fn viewers_only_join_where_the_stream_is_placed(actions in schedule()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(actions))?;
    }
}
