//! Admin and super-admin routes: listing, updates with strict validation,
//! create/delete, and uniform errors for bad input and unknown routes.

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{expect, expect_error, Harness};

#[tokio::test]
async fn admin_list_shows_everything() {
    let mut h = Harness::start().await;
    h.update("zegocloud", json!({"monthlyCost": 12.5, "maxStreams": 3}))
        .await;
    let body = expect(
        h.admin(Method::GET, "/api/streaming/providers/admin")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let providers = body["data"]["providers"].as_array().unwrap();
    let names: Vec<&str> = providers
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["legacy", "agora", "zegocloud", "webrtc"]);
    let zego = &providers[2];
    assert_eq!(zego["config"]["secret"]["serverSecret"], "s");
    assert_eq!(zego["monthlyCost"], 12.5);
    assert_eq!(zego["maxStreams"], 3);
    assert_eq!(zego["status"], "UNKNOWN");
    assert_eq!(zego["publicStatus"], "unknown");
    assert_eq!(zego["statistics"]["totalChecks"], 0);
    assert_eq!(zego["statistics"]["activeStreams"], 0);
    assert!(zego["statistics"]["uptime"].is_null());
    assert_eq!(providers[0]["status"], "DISABLED");

    let one = expect(
        h.admin(Method::GET, "/api/streaming/providers/agora")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(one["data"]["config"]["_internal"], 1);
    assert_eq!(one["data"]["recentChecks"], json!([]));
    let missing = h
        .admin(Method::GET, "/api/streaming/providers/nope")
        .send()
        .await
        .unwrap();
    expect_error(missing, StatusCode::NOT_FOUND, "unknown_provider").await;
    h.shutdown().await;
}

#[tokio::test]
async fn updates_change_the_public_view() {
    let mut h = Harness::start().await;
    let updated = h
        .update(
            "agora",
            json!({"priority": 5, "config": {"appId": "new", "secret": {"k": 1}}}),
        )
        .await;
    assert_eq!(updated["data"]["priority"], 5);
    assert_eq!(h.public_names().await, ["zegocloud", "webrtc", "agora"]);
    h.update("zegocloud", json!({"isActive": false})).await;
    h.update("legacy", json!({"isActive": true})).await;
    assert_eq!(h.public_names().await, ["legacy", "webrtc", "agora"]);

    h.update("webrtc", json!({"maxStreams": 4})).await;
    let cleared = h.update("webrtc", json!({"maxStreams": null})).await;
    assert!(cleared["data"]["maxStreams"].is_null());
    // An empty update is a no-op that still answers with the provider.
    let same = h.update("webrtc", json!({})).await;
    assert_eq!(same["data"]["name"], "webrtc");
    h.shutdown().await;
}

#[tokio::test]
async fn bad_update_bodies_are_rejected_without_changes() {
    let mut h = Harness::start().await;
    let put = |body: String, content_type: &'static str| {
        h.admin(Method::PUT, "/api/streaming/providers/agora")
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
    };
    let json_type = "application/json";
    let cases: Vec<(String, &str, StatusCode, &str)> = vec![
        (
            r#"{"priority": -1}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid_priority",
        ),
        (
            r#"{"isActive": true, "colour": "red"}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            r#"{"isActive": "yes"}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            r#"{"priority": 1.5}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            r#"{"config": [1, 2]}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            r#"{"monthlyCost": -3}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid_monthly_cost",
        ),
        (
            r#"{"maxStreams": -3}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            r#"{"config": {"probe": {"type": "tcp", "address": "nope"}}}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid_probe",
        ),
        (
            r#"{"priority": 1"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "not json".into(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            r#"{"priority": 1}"#.into(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            format!(r#"{{"config": {{"blob": "{}"}}}}"#, "x".repeat(70 * 1024)),
            json_type,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    let before = h
        .admin(Method::GET, "/api/streaming/providers/agora")
        .send()
        .await
        .unwrap();
    let before: Value = expect(before, StatusCode::OK).await;
    for (body, content_type, status, code) in cases {
        let response = put(body, content_type).send().await.unwrap();
        expect_error(response, status, code).await;
    }
    let after = h
        .admin(Method::GET, "/api/streaming/providers/agora")
        .send()
        .await
        .unwrap();
    assert_eq!(expect(after, StatusCode::OK).await, before);

    let missing = h
        .admin(Method::PUT, "/api/streaming/providers/nope")
        .json(&json!({"priority": 1}))
        .send()
        .await
        .unwrap();
    expect_error(missing, StatusCode::NOT_FOUND, "unknown_provider").await;
    h.shutdown().await;
}

#[tokio::test]
async fn create_and_delete_providers() {
    let mut h = Harness::start().await;
    let created = h
        .create(
            json!({"name": "mux", "priority": 4, "maxStreams": 2, "monthlyCost": 5,
                       "config": {"probe": {"type": "http", "url": "http://127.0.0.1:9/x"}}}),
        )
        .await;
    assert_eq!(created["success"], true);
    assert_eq!(created["data"]["name"], "mux");
    assert_eq!(created["data"]["isActive"], true);
    assert_eq!(
        h.public_names().await,
        ["agora", "zegocloud", "webrtc", "mux"]
    );
    let public = expect(
        h.get("/api/streaming/providers").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        public["data"]["providers"][3]["config"],
        json!({}),
        "probe is private"
    );

    let post = |body: Value| {
        h.superadmin(Method::POST, "/api/streaming/providers")
            .json(&body)
            .send()
    };
    expect_error(
        post(json!({"name": "mux"})).await.unwrap(),
        StatusCode::CONFLICT,
        "duplicate_provider",
    )
    .await;
    expect_error(
        post(json!({"name": "Bad Name"})).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_name",
    )
    .await;
    expect_error(
        post(json!({"name": "x".repeat(65)})).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_name",
    )
    .await;
    expect_error(
        post(json!({"name": "admin"})).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "reserved_name",
    )
    .await;
    expect_error(
        post(json!({"name": "ok", "priority": -2})).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_priority",
    )
    .await;
    expect_error(
        post(json!({"name": "ok", "extra": 1})).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "unknown_field",
    )
    .await;
    expect_error(
        post(json!({"priority": 1})).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    )
    .await;

    let deleted = h
        .superadmin(Method::DELETE, "/api/streaming/providers/mux")
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect(deleted, StatusCode::OK).await["data"]["deleted"],
        "mux"
    );
    assert_eq!(h.public_names().await, ["agora", "zegocloud", "webrtc"]);
    let health = h
        .get("/api/streaming/providers/mux/health")
        .send()
        .await
        .unwrap();
    expect_error(health, StatusCode::NOT_FOUND, "unknown_provider").await;
    let again = h
        .superadmin(Method::DELETE, "/api/streaming/providers/mux")
        .send()
        .await
        .unwrap();
    expect_error(again, StatusCode::NOT_FOUND, "unknown_provider").await;
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let mut h = Harness::start().await;
    let response = h.get("/api/nothing").send().await.unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = h
        .request(Method::PATCH, "/api/streaming/providers")
        .send()
        .await
        .unwrap();
    expect_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let live = expect(h.get("/healthz").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(live["data"]["status"], "ok");
    h.shutdown().await;
}
