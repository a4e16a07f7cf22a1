//! The Flutter facade driven the way Dart drives it: the same `StreamingProviderManager`
//! methods the generated Dart calls, adapters registered as closures (standing in for the Dart
//! ones), events through the same forwarding task that feeds the Dart stream, against a real
//! HTTP registry on loopback, in real time (the engine runs on the plugin's own runtime).

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use streamguard_flutter::api::manager::{default_manager_config, StreamingProviderManager};
use streamguard_flutter::api::types::*;

const PROVIDERS: &[(&str, bool, u32)] = &[("agora", true, 1), ("zegocloud", true, 2)];

struct World {
    registry: Registry,
    manager: StreamingProviderManager,
    agora: FakeAdapter,
    zego: FakeAdapter,
    events: Events,
}

async fn world_with(config: impl FnOnce(&mut ManagerConfig), parallel: bool) -> World {
    let registry = Registry::start(PROVIDERS).await;
    let mut c = fast_config(&registry.base_url);
    config(&mut c);
    let manager = StreamingProviderManager::create(c).unwrap();
    let events = Events::subscribe(&manager);
    let (agora, zego) = (FakeAdapter::default(), FakeAdapter::default());
    agora.register(&manager, "agora", parallel);
    zego.register(&manager, "zegocloud", parallel);
    World {
        registry,
        manager,
        agora,
        zego,
        events,
    }
}

async fn world() -> World {
    world_with(|_| {}, false).await
}

fn is(kind: EventType) -> impl Fn(&StreamEvent) -> bool {
    move |e| e.kind == kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_over_after_two_attempts_on_the_first_provider() {
    let mut w = world().await;
    w.agora
        .fail_always(ProviderErrorKind::Timeout, "join timed out");

    let session = w.manager.start_stream("s1".into()).await.unwrap();
    assert_eq!(session.provider.as_deref(), Some("zegocloud"));
    assert_eq!(session.state, SessionState::Live);
    assert_eq!(session.role, Role::Publisher);
    assert_eq!(session.attempts, 3);
    assert_eq!(w.agora.starts(), 2);
    assert_eq!(w.zego.starts(), 1);
    // The registry's config reached the Dart adapter as JSON.
    assert_eq!(
        w.zego.init_config().as_deref(),
        Some(r#"{"appId":"zegocloud-app"}"#)
    );

    let failover = w
        .events
        .wait_for(2, "failover", is(EventType::Failover))
        .await;
    assert_eq!(failover.stream_id.as_deref(), Some("s1"));
    assert_eq!(failover.from.as_deref(), Some("agora"));
    assert_eq!(failover.to.as_deref(), Some("zegocloud"));
    assert_eq!(failover.reason, Some(FailoverReason::RetriesExhausted));
    w.events
        .wait_for(2, "live", |e| {
            e.kind == EventType::SessionStateChanged
                && e.state_to == Some(SessionState::Live)
                && e.provider.as_deref() == Some("zegocloud")
        })
        .await;
    let failed = w.events.of(EventType::AttemptFailed);
    assert_eq!(failed.len(), 2, "two failed attempts on agora");
    let first = failed[0];
    assert_eq!(first.provider.as_deref(), Some("agora"));
    assert_eq!(first.attempt, Some(1));
    assert_eq!(first.operation, Some(Operation::Start));
    assert_eq!(
        first.error,
        Some(err(ProviderErrorKind::Timeout, "join timed out"))
    );
    assert!(first.retry_in_ms.is_some(), "the first failure is retried");
    // Events are stamped in order.
    let stamps: Vec<u64> = w.events.seen.iter().map(|e| e.at_ms).collect();
    assert!(stamps.windows(2).all(|p| p[0] <= p[1]), "{stamps:?}");

    w.manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_providers_down_fails_once_with_every_attempt() {
    let mut w = world().await;
    w.agora
        .fail_always(ProviderErrorKind::Network, "agora down");
    w.zego
        .fail_always(ProviderErrorKind::Unavailable, "zego down");

    let e = w.manager.join_stream("s1".into()).await.unwrap_err();
    assert_eq!(e.kind, StreamguardErrorKind::AllAttemptsFailed, "{e:?}");
    let tried: Vec<(&str, u32, ProviderErrorKind)> = e
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.number, a.error.kind))
        .collect();
    assert_eq!(
        tried,
        [
            ("agora", 1, ProviderErrorKind::Network),
            ("agora", 2, ProviderErrorKind::Network),
            ("zegocloud", 3, ProviderErrorKind::Unavailable),
        ]
    );
    assert!(e.message.contains("all 3 attempts failed"), "{}", e.message);
    // Nothing keeps retrying afterwards.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(w.agora.starts() + w.zego.starts(), 3);
    let session = w.manager.session("s1".into()).unwrap();
    assert_eq!(session.state, SessionState::Failed);
    assert_eq!(session.role, Role::Viewer);
    w.events
        .wait_for(1, "failed state", |e| {
            e.kind == EventType::SessionStateChanged && e.state_to == Some(SessionState::Failed)
        })
        .await;
    w.manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_outage_migrates_the_live_stream() {
    let mut w = world().await;
    let session = w.manager.start_stream("s1".into()).await.unwrap();
    assert_eq!(session.provider.as_deref(), Some("agora"));

    w.registry.set_healthy("agora", false);
    let done = w
        .events
        .wait_for(5, "migration", is(EventType::MigrationFinished))
        .await;
    assert_eq!(done.stream_id.as_deref(), Some("s1"));
    assert_eq!(done.from.as_deref(), Some("agora"));
    assert_eq!(done.to.as_deref(), Some("zegocloud"));
    assert_eq!(done.strategy, Some(MigrationStrategy::BreakBeforeMake));
    assert!(done.gap_ms.is_some() && done.duration_ms.is_some());
    let started = w.events.of(EventType::MigrationStarted);
    assert_eq!(started[0].reason, Some(FailoverReason::HealthCheckFailed));
    // Three failed checks confirmed it: healthy -> suspect -> unhealthy.
    let unhealthy = w
        .events
        .wait_for(1, "unhealthy", |e| {
            e.kind == EventType::HealthChanged && e.health_to == Some(HealthStatus::Unhealthy)
        })
        .await;
    assert_eq!(unhealthy.provider.as_deref(), Some("agora"));
    assert_eq!(unhealthy.consecutive_failures, Some(3));

    // The old provider was left through its own adapter, the stream id kept.
    assert_eq!(w.agora.leaves("s1"), 1);
    assert_eq!(w.zego.count(|c| *c == Call::Start("s1".into())), 1);
    let session = w.manager.session("s1".into()).unwrap();
    assert_eq!(session.provider.as_deref(), Some("zegocloud"));
    assert_eq!(session.migrations, 1);

    let stats = w.manager.provider_stats();
    let agora = stats.iter().find(|s| s.provider == "agora").unwrap();
    assert_eq!(agora.status, HealthStatus::Unhealthy);
    assert!(agora.failed_health_checks >= 3, "{agora:?}");
    assert_eq!(agora.times_ejected, 1);
    assert!(agora.cooling_for_ms.is_some());
    let zego = stats.iter().find(|s| s.provider == "zegocloud").unwrap();
    assert_eq!(zego.live_sessions, 1);
    // The adapters' probe (the Dart default: not supported) was asked alongside the registry.
    assert!(w.agora.count(|c| *c == Call::Probe) >= 1);

    w.manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_list_change_moves_sessions_off_a_disabled_provider() {
    let mut w = world().await;
    w.manager.start_stream("s1".into()).await.unwrap();
    w.manager.join_stream("s2".into()).await.unwrap();

    w.registry
        .set_providers(&[("agora", false, 1), ("zegocloud", true, 2)]);
    let list = w.manager.refresh_providers().await.unwrap();
    let agora = list.iter().find(|p| p.name == "agora").unwrap();
    assert!(!agora.is_active);
    // The first list change was the initial read; this one drops agora.
    w.events
        .wait_for(2, "agora dropped from the list", |e| {
            e.kind == EventType::ProviderListChanged && e.active == ["zegocloud"]
        })
        .await;

    for id in ["s1", "s2"] {
        w.events
            .wait_for(3, "both moved", |e| {
                e.kind == EventType::MigrationFinished && e.stream_id.as_deref() == Some(id)
            })
            .await;
    }
    let started = w.events.of(EventType::MigrationStarted);
    assert!(started
        .iter()
        .all(|e| e.reason == Some(FailoverReason::ProviderDisabled)));
    assert_eq!(w.agora.leaves("s1"), 1);
    assert_eq!(w.agora.leaves("s2"), 1);
    // The viewer rejoined as a viewer.
    assert_eq!(w.zego.count(|c| *c == Call::Join("s2".into())), 1);
    let sessions = w.manager.sessions();
    assert!(sessions
        .iter()
        .all(|s| s.provider.as_deref() == Some("zegocloud") && s.state == SessionState::Live));

    w.manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_priority_change_migrates_make_before_break_when_both_run_in_parallel() {
    let mut w = world_with(|_| {}, true).await;
    w.manager.start_stream("s1".into()).await.unwrap();

    // No refresh call: the next poll (300 ms) picks the change up.
    w.registry
        .set_providers(&[("agora", true, 2), ("zegocloud", true, 1)]);
    let done = w
        .events
        .wait_for(5, "migration", is(EventType::MigrationFinished))
        .await;
    assert_eq!(done.to.as_deref(), Some("zegocloud"));
    assert_eq!(done.strategy, Some(MigrationStrategy::MakeBeforeBreak));
    assert_eq!(done.gap_ms, Some(0));
    let started = w.events.of(EventType::MigrationStarted);
    assert_eq!(started[0].reason, Some(FailoverReason::PriorityChanged));
    assert_eq!(w.zego.count(|c| *c == Call::Start("s1".into())), 1);
    assert_eq!(w.agora.leaves("s1"), 1);

    w.manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_error_from_an_sdk_callback_moves_the_stream() {
    let mut w = world().await;
    w.manager.start_stream("s1".into()).await.unwrap();

    // What an Agora adapter does on onConnectionStateChanged(failed, tokenExpired).
    w.manager
        .record_error(
            "s1".into(),
            err(ProviderErrorKind::Unauthorized, "token expired"),
        )
        .unwrap();
    let done = w
        .events
        .wait_for(3, "migration", is(EventType::MigrationFinished))
        .await;
    assert_eq!(done.to.as_deref(), Some("zegocloud"));
    let started = w.events.of(EventType::MigrationStarted);
    assert_eq!(started[0].reason, Some(FailoverReason::ErrorReported));
    let stats = w.manager.provider_stats();
    let agora = stats.iter().find(|s| s.provider == "agora").unwrap();
    assert_eq!(agora.reported_errors, 1);

    let e = w
        .manager
        .record_error("nope".into(), err(ProviderErrorKind::Network, "x"))
        .unwrap_err();
    assert_eq!(e.kind, StreamguardErrorKind::UnknownSession);
    w.manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_every_provider_and_ends_the_event_stream() {
    let mut w = world().await;
    w.manager.start_stream("s1".into()).await.unwrap();
    w.manager.join_stream("s2".into()).await.unwrap();
    assert!(w.manager.task_count() >= 1);

    w.manager.shutdown().await.unwrap();
    assert_eq!(w.agora.leaves("s1"), 1);
    assert_eq!(w.agora.leaves("s2"), 1);
    assert_eq!(w.manager.task_count(), 0);
    // The Dart stream closes after the events emitted before the shutdown, so the timeline
    // sees both sessions end.
    w.events.wait_closed(2).await;
    let ended: Vec<_> = w
        .events
        .of(EventType::SessionStateChanged)
        .into_iter()
        .filter(|e| e.state_to == Some(SessionState::Ended))
        .filter_map(|e| e.stream_id.clone())
        .collect();
    assert_eq!(ended.len(), 2, "{ended:?}");

    let e = w.manager.start_stream("s3".into()).await.unwrap_err();
    assert_eq!(e.kind, StreamguardErrorKind::ShutDown);
    // Idempotent.
    w.manager.shutdown().await.unwrap();
    // Read-only calls still answer.
    assert_eq!(w.manager.sessions().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_manager_without_shutdown_still_leaves_providers() {
    let w = world().await;
    w.manager.start_stream("s1".into()).await.unwrap();
    let agora = w.agora.clone();
    // Dart's finalizer drops the object on a thread of its own, outside any runtime.
    let manager = w.manager;
    std::thread::spawn(move || drop(manager)).join().unwrap();
    eventually(3, "agora left after drop", || agora.leaves("s1") == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_fatal_error_from_dart_stops_at_once() {
    let w = world().await;
    w.agora
        .fail_next(ProviderErrorKind::InvalidStream, "stream is banned");
    let e = w.manager.start_stream("s1".into()).await.unwrap_err();
    assert_eq!(e.kind, StreamguardErrorKind::RequestRejected, "{e:?}");
    assert_eq!(e.attempts.len(), 1);
    assert_eq!(e.attempts[0].provider, "agora");
    assert_eq!(
        e.attempts[0].error,
        err(ProviderErrorKind::InvalidStream, "stream is banned")
    );
    assert_eq!(w.zego.starts(), 0);
    w.manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_dart_stream_ends_its_subscription_only() {
    let w = world().await;
    // A Dart listener that cancels after its first event: the sink refuses from then on.
    struct CancelAfterOne(std::sync::Mutex<u32>);
    impl streamguard_flutter::events::EventOut for CancelAfterOne {
        fn send(&self, _: StreamEvent) -> bool {
            let mut n = self.0.lock().unwrap();
            *n += 1;
            *n < 2
        }
    }
    w.manager
        .subscribe_to(CancelAfterOne(std::sync::Mutex::new(0)));
    let mut events = w.events;
    w.manager.start_stream("s1".into()).await.unwrap();
    w.manager.end_stream("s1".into()).await.unwrap();
    // The other subscription still gets everything.
    events
        .wait_for(2, "ended", |e| {
            e.kind == EventType::SessionStateChanged && e.state_to == Some(SessionState::Ended)
        })
        .await;
    w.manager.shutdown().await.unwrap();
}

/// A registry listing one provider with one stream slot (`maxStreams: 1`), and a manager on it
/// with agora's adapter registered.
async fn one_slot_world(
    config: impl FnOnce(&mut ManagerConfig),
) -> (Registry, StreamingProviderManager, FakeAdapter, Events) {
    let registry = Registry::start(&[]).await;
    registry.set_raw_providers(vec![json!({
        "name": "agora", "isActive": true, "priority": 1, "config": {}, "maxStreams": 1,
    })]);
    let mut c = fast_config(&registry.base_url);
    config(&mut c);
    let manager = StreamingProviderManager::create(c).unwrap();
    let events = Events::subscribe(&manager);
    let agora = FakeAdapter::default();
    agora.register(&manager, "agora", false);
    (registry, manager, agora, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_provider_fails_with_no_capacity_until_its_slot_is_freed() {
    // The default: wait_for_capacity off, so a full provider fails at once.
    let (_registry, manager, agora, _events) = one_slot_world(|c| {
        assert!(!c.wait_for_capacity);
    })
    .await;
    let a = manager.start_stream("a".into()).await.unwrap();
    assert_eq!(a.provider.as_deref(), Some("agora"));

    let e = manager.start_stream("b".into()).await.unwrap_err();
    assert_eq!(e.kind, StreamguardErrorKind::NoCapacity, "{e:?}");
    assert_eq!(e.providers, ["agora"]);
    assert_eq!(e.waited_ms, Some(0));
    assert!(e.attempts.is_empty(), "{:?}", e.attempts);
    assert!(e.message.contains("agora"), "{}", e.message);
    assert_eq!(agora.count(|c| *c == Call::Start("b".into())), 0);

    manager.end_stream("a".into()).await.unwrap();
    let b = manager.start_stream("b".into()).await.unwrap();
    assert_eq!(b.provider.as_deref(), Some("agora"));
    assert_eq!(b.state, SessionState::Live);
    manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_capacity_takes_the_slot_as_soon_as_it_is_freed() {
    let (_registry, manager, _agora, mut events) = one_slot_world(|c| {
        c.wait_for_capacity = true;
        c.capacity_max_wait_ms = 10_000;
    })
    .await;
    manager.start_stream("a".into()).await.unwrap();
    let manager = std::sync::Arc::new(manager);
    let waiting = {
        let m = manager.clone();
        tokio::spawn(async move { m.start_stream("b".into()).await })
    };
    let e = events
        .wait_for(3, "waiting for capacity", is(EventType::WaitingForCapacity))
        .await;
    assert_eq!(e.stream_id.as_deref(), Some("b"));
    assert_eq!(e.providers, ["agora"]);
    assert!(
        e.max_wait_ms.is_some_and(|ms| ms > 0 && ms <= 10_000),
        "{e:?}"
    );

    manager.end_stream("a".into()).await.unwrap();
    let b = waiting.await.unwrap().unwrap();
    assert_eq!(b.provider.as_deref(), Some("agora"));
    manager.shutdown().await.unwrap();
}

#[test]
fn invalid_config_is_rejected_naming_the_field() {
    let mut c = default_manager_config("https://api.example.com/api".into());
    c.health_check_interval_ms = 0;
    let e = StreamingProviderManager::create(c).err().unwrap();
    assert_eq!(e.kind, StreamguardErrorKind::InvalidConfig);
    assert!(e.message.contains("health_check_interval"), "{}", e.message);

    let e =
        StreamingProviderManager::create(default_manager_config("http://example.com/api".into()))
            .err()
            .unwrap();
    assert_eq!(e.kind, StreamguardErrorKind::InvalidConfig);

    let mut c = default_manager_config("https://api.example.com/api".into());
    c.max_total_streams = Some(0);
    let e = StreamingProviderManager::create(c).err().unwrap();
    assert_eq!(e.kind, StreamguardErrorKind::InvalidConfig);
    assert!(e.message.contains("max_total_streams"), "{}", e.message);
}

/// The defaults written into the generated Dart `ManagerConfig` constructor are the engine's.
#[test]
fn generated_dart_defaults_equal_the_engine_defaults() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lib/src/rust/api/types.dart"
    );
    let dart = std::fs::read_to_string(path).unwrap();
    let engine = default_manager_config("https://x.example/api".into());
    let expected: Vec<(&str, String)> = vec![
        ("maxAttempts", engine.max_attempts.to_string()),
        (
            "attemptsPerProvider",
            engine.attempts_per_provider.to_string(),
        ),
        (
            "healthCheckIntervalMs",
            engine.health_check_interval_ms.to_string(),
        ),
        ("failureThreshold", engine.failure_threshold.to_string()),
        (
            "suspectRecheckDelayMs",
            engine.suspect_recheck_delay_ms.to_string(),
        ),
        (
            "maxUnhealthyForMs",
            engine.max_unhealthy_for_ms.unwrap().to_string(),
        ),
        ("requestTimeoutMs", engine.request_timeout_ms.to_string()),
        ("adapterTimeoutMs", engine.adapter_timeout_ms.to_string()),
        ("backoffBaseMs", engine.backoff_base_ms.to_string()),
        ("backoffCapMs", engine.backoff_cap_ms.to_string()),
        (
            "operationDeadlineMs",
            engine.operation_deadline_ms.to_string(),
        ),
        (
            "providerRefreshIntervalMs",
            engine.provider_refresh_interval_ms.to_string(),
        ),
        (
            "providerListMaxAgeMs",
            engine.provider_list_max_age_ms.to_string(),
        ),
        ("cooldownBaseMs", engine.cooldown_base_ms.to_string()),
        ("cooldownMaxMs", engine.cooldown_max_ms.to_string()),
        ("failback", engine.failback.to_string()),
        (
            "failbackStabilityMs",
            engine.failback_stability_ms.to_string(),
        ),
        ("maxResponseBytes", engine.max_response_bytes.to_string()),
        ("allowInsecureHttp", engine.allow_insecure_http.to_string()),
        ("eventBuffer", engine.event_buffer.to_string()),
        ("pushUpdates", engine.push_updates.to_string()),
        ("reportSessions", engine.report_sessions.to_string()),
        ("waitForCapacity", engine.wait_for_capacity.to_string()),
        ("capacityMaxWaitMs", engine.capacity_max_wait_ms.to_string()),
        (
            "capacityLeaseTtlMs",
            engine.capacity_lease_ttl_ms.to_string(),
        ),
    ];
    for (field, value) in expected {
        let needle = format!("this.{field} = {value},");
        assert!(
            dart.contains(&needle),
            "generated Dart ManagerConfig lacks `{needle}`: regenerate or fix the #[frb(default)]"
        );
    }
    assert!(dart.contains("required this.baseUrl"));
    // No default: null, the engine's `None` (unlimited).
    assert_eq!(engine.max_total_streams, None);
    assert!(dart.contains("this.maxTotalStreams ,"));
}
