//! Data survives a restart on the same SQLite file, and the seed is applied once.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use streamguard_registry::{Config, Seed};
use tokio::net::TcpListener;

use crate::common::{demo_seed, expect, Harness, TempDir, ADMIN, SUPER};

async fn admin_list(h: &Harness) -> Value {
    let body = expect(
        h.admin(Method::GET, "/api/streaming/providers/admin")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    body["data"]["providers"].clone()
}

#[tokio::test]
async fn restart_keeps_providers_metrics_and_history() {
    let dir = TempDir::new("restart");
    let db = crate::common::database(&dir);
    let config = || {
        let mut c = Config::local_test(ADMIN, SUPER);
        c.db_path = db.clone();
        c.seed = Seed::Providers(demo_seed());
        c
    };

    let mut first = Harness::serve_in(TempDir::new("unused"), config()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    first
        .update(
            "agora",
            json!({"priority": 9, "monthlyCost": 3.5,
                   "config": {"appId": "kept", "probe": {"type": "tcp", "address": address}}}),
        )
        .await;
    first.create(json!({"name": "extra", "priority": 4})).await;
    let deleted = first
        .superadmin(Method::DELETE, "/api/streaming/providers/webrtc")
        .send()
        .await
        .unwrap();
    expect(deleted, StatusCode::OK).await;
    first.check("agora").await;
    let started = first
        .admin(Method::POST, "/api/streaming/sessions/events")
        .json(&json!({"type": "failover", "provider": "zegocloud", "streamId": "s", "toProvider": "agora"}))
        .send()
        .await
        .unwrap();
    expect(started, StatusCode::OK).await;
    let before = admin_list(&first).await;
    first.shutdown().await;

    // Same file, same seed: nothing is re-seeded and every change is still there.
    let mut second = Harness::serve_in(TempDir::new("unused"), config()).await;
    let after = admin_list(&second).await;
    assert_eq!(after, before);
    let names: Vec<&str> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["legacy", "zegocloud", "extra", "agora"]);
    let agora = &after[3];
    assert_eq!(agora["statistics"]["totalChecks"], 1);
    assert_eq!(agora["statistics"]["activeStreams"], 1);
    let detail = expect(
        second
            .admin(Method::GET, "/api/streaming/providers/agora")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(detail["data"]["recentChecks"].as_array().unwrap().len(), 1);
    let failovers = expect(
        second
            .admin(Method::GET, "/api/streaming/providers/failovers")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(failovers["data"]["failovers"].as_array().unwrap().len(), 1);
    assert_eq!(
        second.public_names().await,
        ["zegocloud", "extra", "agora"],
        "public list rebuilt from the file"
    );
    second.shutdown().await;
    drop(listener);
}
