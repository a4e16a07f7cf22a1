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

    let failovers = failover_history(&h).await;
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

async fn failover_history(h: &Harness) -> Value {
    let response = h
        .admin(Method::GET, "/api/streaming/providers/failovers")
        .send()
        .await
        .unwrap();
    expect(response, StatusCode::OK).await
}

async fn alive(h: &Harness, client: &str, sessions: Value) -> reqwest::Response {
    h.admin(Method::POST, "/api/streaming/sessions/alive")
        .json(&json!({"clientId": client, "sessions": sessions}))
        .send()
        .await
        .unwrap()
}

async fn active(h: &Harness, name: &str) -> u64 {
    stats(h, name).await["activeStreams"].as_u64().unwrap()
}

#[tokio::test]
async fn reports_with_a_client_id_are_counted_once() {
    let mut h = Harness::start().await;
    let start = |client: &str, id: &str| json!({"type": "start", "provider": "agora", "streamId": id, "clientId": client});
    for _ in 0..3 {
        expect(report(&h, start("phone-1", "match")).await, StatusCode::OK).await;
    }
    // Another phone watching the same stream is another session.
    expect(report(&h, start("phone-2", "match")).await, StatusCode::OK).await;
    assert_eq!(
        (
            active(&h, "agora").await,
            stats(&h, "agora").await["totalStreams"].as_u64()
        ),
        (2, Some(2))
    );
    // Ends for streams that are not live there change nothing; a repeated end neither.
    let end = |client: &str, provider: &str| json!({"type": "end", "provider": provider, "streamId": "match", "clientId": client});
    expect(report(&h, end("phone-3", "agora")).await, StatusCode::OK).await;
    expect(
        report(&h, end("phone-1", "zegocloud")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(active(&h, "agora").await, 2);
    for _ in 0..2 {
        expect(report(&h, end("phone-1", "agora")).await, StatusCode::OK).await;
    }
    assert_eq!(active(&h, "agora").await, 1);
    // A repeated failover report moves the stream once and is in the history once.
    let failover = json!({"type": "failover", "provider": "agora", "streamId": "match",
                          "toProvider": "zegocloud", "clientId": "phone-2"});
    for _ in 0..2 {
        expect(report(&h, failover.clone()).await, StatusCode::OK).await;
    }
    assert_eq!(
        (active(&h, "agora").await, active(&h, "zegocloud").await),
        (0, 1)
    );
    let history = failover_history(&h).await;
    assert_eq!(history["data"]["failovers"].as_array().unwrap().len(), 1);
    // Bad client ids are refused.
    let bad = json!({"type": "start", "provider": "agora", "streamId": "s", "clientId": "a b"});
    expect_error(
        report(&h, bad).await,
        StatusCode::BAD_REQUEST,
        "invalid_client_id",
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn streams_of_a_client_that_stops_confirming_them_expire() {
    let mut h =
        Harness::start_with(|c| c.session_ttl = std::time::Duration::from_millis(400)).await;
    for (client, id) in [("dead-app", "s1"), ("dead-app", "s2"), ("live-app", "s3")] {
        let body =
            json!({"type": "start", "provider": "agora", "streamId": id, "clientId": client});
        expect(report(&h, body).await, StatusCode::OK).await;
    }
    // A legacy report (no client id) is counted but never expires.
    let legacy = json!({"type": "start", "provider": "webrtc", "streamId": "old"});
    expect(report(&h, legacy).await, StatusCode::OK).await;
    assert_eq!(active(&h, "agora").await, 3);
    // live-app keeps confirming s3 (and reports s4, which the registry missed); dead-app is
    // silent. Keep-alives are external input, sent while we wait for the expiry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = alive(
            &h,
            "live-app",
            json!([{"provider": "agora", "streamId": "s3"},
                   {"provider": "agora", "streamId": "s4"},
                   {"provider": "no-such-provider", "streamId": "s5"}]),
        )
        .await;
        let body = expect(body, StatusCode::OK).await;
        assert_eq!(body["data"]["tracked"], 2, "unknown providers are skipped");
        if active(&h, "agora").await == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dead-app's streams never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(active(&h, "webrtc").await, 1);
    // A keep-alive is bounded and validated.
    let many: Vec<Value> = (0..501)
        .map(|i| json!({"provider": "agora", "streamId": format!("x{i}")}))
        .collect();
    expect_error(
        alive(&h, "live-app", Value::Array(many)).await,
        StatusCode::BAD_REQUEST,
        "too_many_sessions",
    )
    .await;
    let anonymous = h
        .request(Method::POST, "/api/streaming/sessions/alive")
        .json(&json!({"clientId": "x", "sessions": []}))
        .send()
        .await
        .unwrap();
    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    h.shutdown().await;
}

#[tokio::test]
async fn tracked_sessions_survive_a_restart() {
    let mut first = Harness::start().await;
    let start = json!({"type": "start", "provider": "agora", "streamId": "s", "clientId": "app"});
    expect(report(&first, start.clone()).await, StatusCode::OK).await;
    let path = first.db_path();
    // Stopped, but kept (its directory holds the database).
    first.shutdown().await;
    let mut config =
        streamguard_registry::Config::local_test(crate::common::ADMIN, crate::common::SUPER);
    config.db_path = path;
    let mut h = Harness::serve_in(crate::common::TempDir::new("restart2"), config).await;
    // The client repeats its start after the restart: still one stream, and its end ends it.
    expect(report(&h, start).await, StatusCode::OK).await;
    assert_eq!(active(&h, "agora").await, 1);
    let end = json!({"type": "end", "provider": "agora", "streamId": "s", "clientId": "app"});
    expect(report(&h, end).await, StatusCode::OK).await;
    assert_eq!(active(&h, "agora").await, 0);
    h.shutdown().await;
}
