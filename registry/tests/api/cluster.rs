//! Several instances on one PostgreSQL database (always PostgreSQL): a change made through
//! one instance reaches the event-stream clients of the other (admin edit, health verdict,
//! session counts, placement); placement epochs and owners, and session counts, are decided
//! by the database whichever instance is asked; rate limits stay per instance.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use streamguard_registry::{Config, RateLimitConfig, Seed};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::common::{
    demo_seed, expect, expect_error, names, Harness, SseClient, TempDir, ADMIN, SUPER,
};

/// Two instances on one fresh PostgreSQL database.
async fn pair(customize: impl Fn(&mut Config)) -> (Harness, Harness) {
    let db = crate::pg::shared().create_database();
    let config = || {
        let mut c = Config::local_test(ADMIN, SUPER);
        c.db_path = db.clone().into();
        c.seed = Seed::Providers(demo_seed());
        customize(&mut c);
        c
    };
    let a = Harness::serve_in(TempDir::new("cluster-a"), config()).await;
    let b = Harness::serve_in(TempDir::new("cluster-b"), config()).await;
    (a, b)
}

async fn stats(h: &Harness, name: &str) -> Value {
    let body = expect(
        h.admin(Method::GET, &format!("/api/streaming/providers/{name}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    body["data"]["statistics"].clone()
}

fn active_in(list: &Value, name: &str) -> Option<u64> {
    list["providers"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["activeStreams"]
        .as_u64()
}

async fn claim(h: &Harness, stream: &str, epoch: i64, client: &str) -> reqwest::Response {
    h.admin(
        Method::PUT,
        &format!("/api/streaming/streams/{stream}/placement"),
    )
    .json(&json!({"provider": "agora", "epoch": epoch, "standby": [], "clientId": client}))
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn changes_through_one_instance_reach_the_event_streams_of_the_other() {
    let (mut a, mut b) = pair(|_| {}).await;
    let mut events = SseClient::connect_to(&b, "/api/streaming/providers/events?streams=s1").await;
    events.wait_for(|name, _| name == "providers").await;

    // An admin edit.
    let changed = Instant::now();
    a.update("webrtc", json!({"priority": 0})).await;
    let list = events
        .wait_for(|name, data| name == "providers" && names(data)[0] == "webrtc")
        .await;
    assert!(
        changed.elapsed() < Duration::from_secs(1),
        "{:?}",
        changed.elapsed()
    );
    assert_eq!(names(&list), ["webrtc", "agora", "zegocloud"]);
    assert_eq!(b.public_names().await, ["webrtc", "agora", "zegocloud"]);

    // Session counts.
    let start = json!({"type": "start", "provider": "agora", "streamId": "s1", "clientId": "app"});
    expect(
        a.admin(Method::POST, "/api/streaming/sessions/events")
            .json(&start)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    events
        .wait_for(|name, data| name == "providers" && active_in(data, "agora") == Some(1))
        .await;
    assert_eq!(stats(&b, "agora").await["activeStreams"], 1);

    // A placement.
    expect(claim(&a, "s1", 1, "app").await, StatusCode::OK).await;
    let placed = events.wait_for(|name, _| name == "placement").await;
    assert_eq!(placed["provider"], "agora");
    assert_eq!(placed["epoch"], 1);

    // A health verdict: a probe that fails three times makes the provider critical.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    a.update(
        "zegocloud",
        json!({"config": {"appId": "z", "probe": {"type": "tcp", "address": address}}}),
    )
    .await;
    for _ in 0..3 {
        a.check("zegocloud").await;
    }
    let health = events
        .wait_for(|name, data| {
            name == "health" && data["provider"] == "zegocloud" && data["healthy"] == false
        })
        .await;
    assert_eq!(health["status"], "down");

    // A deletion.
    expect(
        a.superadmin(Method::DELETE, "/api/streaming/providers/webrtc")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let list = events
        .wait_for(|name, data| name == "providers" && !names(data).contains(&"webrtc"))
        .await;
    assert_eq!(names(&list), ["agora", "zegocloud"]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn epochs_and_owners_are_decided_by_the_database_across_instances() {
    let (mut a, mut b) = pair(|_| {}).await;
    expect(claim(&a, "s", 5, "phone-1").await, StatusCode::OK).await;
    expect_error(
        claim(&b, "s", 6, "phone-2").await,
        StatusCode::CONFLICT,
        "owned_by_other",
    )
    .await;
    expect_error(
        claim(&b, "s", 5, "phone-1").await,
        StatusCode::CONFLICT,
        "stale_epoch",
    )
    .await;
    expect(claim(&b, "s", 6, "phone-1").await, StatusCode::OK).await;

    // Racing claims at one epoch through both instances: exactly one wins each stream.
    for round in 0..10 {
        let stream = format!("race-{round}");
        let (x, y) = tokio::join!(
            claim(&a, &stream, 1, "phone-a"),
            claim(&b, &stream, 1, "phone-b")
        );
        let mut codes = [x.status(), y.status()];
        codes.sort();
        assert_eq!(codes, [StatusCode::OK, StatusCode::CONFLICT], "{stream}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_stream_reported_to_both_instances_at_once_is_counted_once() {
    let (mut a, mut b) = pair(|_| {}).await;
    let start = |id: String| json!({"type": "start", "provider": "agora", "streamId": id, "clientId": "app"});
    let alive = |id: String| json!({"clientId": "app", "sessions": [{"provider": "agora", "streamId": id}]});
    for i in 0..20 {
        let (h1, h2) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (x, y) = tokio::join!(
            h1.admin(Method::POST, "/api/streaming/sessions/events")
                .json(&start(format!("s{i}")))
                .send(),
            h2.admin(Method::POST, "/api/streaming/sessions/alive")
                .json(&alive(format!("s{i}")))
                .send()
        );
        assert_eq!(x.unwrap().status(), StatusCode::OK);
        assert_eq!(y.unwrap().status(), StatusCode::OK);
    }
    // Both instances' event streams (the current list first, then changes) come to 20,
    // and their admin views agree.
    for h in [&a, &b] {
        let mut events = SseClient::connect(h).await;
        events
            .wait_for(|name, data| name == "providers" && active_in(data, "agora") == Some(20))
            .await;
        assert_eq!(stats(h, "agora").await["activeStreams"], 20);
        assert_eq!(stats(h, "agora").await["totalStreams"], 20);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_per_instance() {
    let (mut a, mut b) = pair(|c| {
        c.rate_limit = RateLimitConfig {
            per_second: 0.001,
            burst: 3,
        }
    })
    .await;
    for h in [&a, &b] {
        for _ in 0..3 {
            let r = h.get("/api/streaming/providers").send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let r = h.get("/api/streaming/providers").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    a.shutdown().await;
    b.shutdown().await;
}
