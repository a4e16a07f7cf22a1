//! The server-sent event stream: current state on connect, then pushed changes.

use std::time::Duration;

use serde_json::json;
use tokio::time::{timeout, Instant};

use reqwest::StatusCode;

use crate::common::{expect_error, names, Harness, SseClient, WAIT};

#[tokio::test]
async fn changes_are_pushed_within_a_second() {
    let mut h = Harness::start().await;
    let mut events = SseClient::connect(&h).await;
    let initial = events.wait_for(|name, _| name == "providers").await;
    assert_eq!(names(&initial), ["agora", "zegocloud", "webrtc"]);
    let health = events
        .wait_for(|name, data| name == "health" && data["provider"] == "agora")
        .await;
    assert_eq!(
        health,
        json!({"healthy": true, "provider": "agora", "status": "unknown"})
    );

    let changed_at = Instant::now();
    h.update("webrtc", json!({"priority": 0})).await;
    let list = events.wait_for(|name, _| name == "providers").await;
    assert!(changed_at.elapsed() < Duration::from_secs(1));
    assert_eq!(names(&list), ["webrtc", "agora", "zegocloud"]);
    // The event carries the same data as the public list.
    let public = h.get("/api/streaming/providers").send().await.unwrap();
    let public: serde_json::Value = public.json().await.unwrap();
    assert_eq!(public["data"], list);

    // Disabling changes both the list and the provider's health: two events.
    h.update("agora", json!({"isActive": false})).await;
    let (mut list, mut health) = (None, None);
    while list.is_none() || health.is_none() {
        let (name, data) = timeout(WAIT, events.next())
            .await
            .expect("events in time")
            .expect("stream open");
        match name.as_str() {
            "providers" => list = Some(data),
            "health" => health = Some(data),
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(names(&list.unwrap()), ["webrtc", "zegocloud"]);
    assert_eq!(
        health.unwrap(),
        json!({"healthy": false, "provider": "agora", "status": "disabled"})
    );
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_event_streams() {
    let mut h = Harness::start().await;
    let mut events = SseClient::connect(&h).await;
    events.wait_for(|name, _| name == "providers").await;
    timeout(WAIT, h.shutdown())
        .await
        .expect("shutdown is not held up by the stream");
    let end = timeout(WAIT, async { while events.next().await.is_some() {} }).await;
    assert!(end.is_ok(), "stream should end after shutdown");
}

#[tokio::test]
async fn open_event_streams_are_capped() {
    let mut h = Harness::start_with(|c| c.max_event_subscribers = 1).await;
    let mut first = SseClient::connect(&h).await;
    first.wait_for(|name, _| name == "providers").await;
    let second = h
        .get("/api/streaming/providers/events")
        .send()
        .await
        .unwrap();
    expect_error(
        second,
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_subscribers",
    )
    .await;
    drop(first);
    h.shutdown().await;
}
