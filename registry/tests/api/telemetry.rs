//! Session telemetry: stream counters, failover history and validation.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{expect, expect_error, Harness};

async fn report(h: &Harness, body: Value) -> reqwest::Response {
    h.admin(Method::POST, "/api/streaming/sessions/events")
        .json(&body)
        .send()
        .await
        .unwrap()
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

#[tokio::test]
async fn counts_streams_and_records_failovers() {
    let mut h = Harness::start().await;
    for id in ["s1", "s2"] {
        let r = report(
            &h,
            json!({"type": "start", "provider": "agora", "streamId": id}),
        )
        .await;
        expect(r, StatusCode::OK).await;
    }
    let r = report(
        &h,
        json!({"type": "end", "provider": "agora", "streamId": "s2"}),
    )
    .await;
    let body = expect(r, StatusCode::OK).await;
    assert_eq!(
        body["data"]["providers"],
        json!([{"name": "agora", "activeStreams": 1, "totalStreams": 2}])
    );
    // Ending more streams than were started never goes below zero.
    for _ in 0..2 {
        let r = report(
            &h,
            json!({"type": "end", "provider": "zegocloud", "streamId": "x"}),
        )
        .await;
        expect(r, StatusCode::OK).await;
    }
    assert_eq!(stats(&h, "zegocloud").await["activeStreams"], 0);

    let r = report(
        &h,
        json!({"type": "failover", "provider": "agora", "streamId": "s1",
               "toProvider": "zegocloud", "reason": "3 failed health checks"}),
    )
    .await;
    expect(r, StatusCode::OK).await;
    assert_eq!(stats(&h, "agora").await["activeStreams"], 0);
    assert_eq!(stats(&h, "agora").await["totalStreams"], 2);
    assert_eq!(stats(&h, "zegocloud").await["activeStreams"], 1);
    assert_eq!(stats(&h, "zegocloud").await["totalStreams"], 1);

    let public = expect(
        h.get("/api/streaming/providers").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(public["data"]["providers"][1]["name"], "zegocloud");
    assert_eq!(public["data"]["providers"][1]["activeStreams"], 1);

    let failovers = expect(
        h.admin(Method::GET, "/api/streaming/providers/failovers")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let list = failovers["data"]["failovers"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["from"], "agora");
    assert_eq!(list[0]["to"], "zegocloud");
    assert_eq!(list[0]["streamId"], "s1");
    assert_eq!(list[0]["reason"], "3 failed health checks");
    assert!(list[0]["at"].as_i64().unwrap() > 0);
    h.shutdown().await;
}

#[tokio::test]
async fn failover_history_is_bounded_newest_first() {
    let mut h = Harness::start_with(|c| c.failover_history_limit = 3).await;
    for i in 0..5 {
        let r = report(
            &h,
            json!({"type": "failover", "provider": "agora", "streamId": format!("s{i}"),
                   "toProvider": "webrtc"}),
        )
        .await;
        expect(r, StatusCode::OK).await;
    }
    let body = expect(
        h.admin(Method::GET, "/api/streaming/providers/failovers")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let ids: Vec<&str> = body["data"]["failovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["streamId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s4", "s3", "s2"]);
    h.shutdown().await;
}

#[tokio::test]
async fn invalid_session_events_are_rejected() {
    let mut h = Harness::start().await;
    let cases = [
        (
            json!({"type": "failover", "provider": "agora", "streamId": "s"}),
            StatusCode::BAD_REQUEST,
            "missing_to_provider",
        ),
        (
            json!({"type": "failover", "provider": "agora", "streamId": "s", "toProvider": "agora"}),
            StatusCode::BAD_REQUEST,
            "invalid_to_provider",
        ),
        (
            json!({"type": "start", "provider": "agora", "streamId": "s", "toProvider": "webrtc"}),
            StatusCode::BAD_REQUEST,
            "unexpected_to_provider",
        ),
        (
            json!({"type": "pause", "provider": "agora", "streamId": "s"}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            json!({"type": "start", "provider": "agora"}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            json!({"type": "start", "provider": "agora", "streamId": ""}),
            StatusCode::BAD_REQUEST,
            "invalid_stream_id",
        ),
        (
            json!({"type": "start", "provider": "agora", "streamId": "s", "x": 1}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            json!({"type": "start", "provider": "nope", "streamId": "s"}),
            StatusCode::NOT_FOUND,
            "unknown_provider",
        ),
        (
            json!({"type": "failover", "provider": "agora", "streamId": "s", "toProvider": "nope"}),
            StatusCode::NOT_FOUND,
            "unknown_provider",
        ),
    ];
    for (body, status, code) in cases {
        expect_error(report(&h, body).await, status, code).await;
    }
    assert_eq!(
        json!({"a": stats(&h, "agora").await["totalStreams"], "b": stats(&h, "webrtc").await["totalStreams"]}),
        json!({"a": 0, "b": 0}),
        "rejected events change nothing"
    );
    h.shutdown().await;
}

/// Telemetry moves the stream counts every client's capacity decisions read: never anonymous
/// unless the operator opts in.
#[tokio::test]
async fn telemetry_needs_a_token_unless_opened() {
    let mut h = Harness::start_with(|c| {
        c.telemetry_token = Some(streamguard_registry::Secret::new("telemetry-token-000001"));
    })
    .await;
    let body = json!({"type": "start", "provider": "agora", "streamId": "s"});
    let anonymous = |h: &Harness| {
        h.request(Method::POST, "/api/streaming/sessions/events")
            .json(&body)
            .send()
    };
    expect_error(
        anonymous(&h).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let wrong = h
        .request(Method::POST, "/api/streaming/sessions/events")
        .bearer_auth("not-the-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(stats(&h, "agora").await["activeStreams"], 0);
    h.shutdown().await;

    // No telemetry token configured: still not anonymous (admin tokens only).
    let mut h = Harness::start().await;
    expect_error(
        anonymous(&h).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    h.shutdown().await;

    // Opened explicitly: anonymous reports count (rate-limited like every public route).
    let mut h = Harness::start_with(|c| c.open_telemetry = true).await;
    expect(anonymous(&h).await.unwrap(), StatusCode::OK).await;
    assert_eq!(stats(&h, "agora").await["activeStreams"], 1);
    h.shutdown().await;

    let mut h = Harness::start_with(|c| {
        c.telemetry_token = Some(streamguard_registry::Secret::new("telemetry-token-000001"));
    })
    .await;
    let ok = h
        .request(Method::POST, "/api/streaming/sessions/events")
        .bearer_auth("telemetry-token-000001")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect(ok, StatusCode::OK).await;
    h.shutdown().await;
}
