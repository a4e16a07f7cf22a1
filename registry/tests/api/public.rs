//! Public routes: the client contract, ETag revalidation, rate limiting, and
//! proof that reads never write to the database.

use reqwest::{header, Method, StatusCode};
use serde_json::json;

use crate::common::{expect, expect_error, names, Harness};

#[tokio::test]
async fn provider_list_matches_the_client_contract() {
    let mut h = Harness::start().await;
    h.update("webrtc", json!({"maxStreams": 10})).await;
    h.create(json!({"name": "alpha", "priority": 2, "config": {"appId": "x"}}))
        .await;
    let body = expect(
        h.get("/api/streaming/providers").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["success"], true);
    let data = &body["data"];
    // Inactive "legacy" is left out; ties on priority are broken by name.
    assert_eq!(names(data), ["agora", "alpha", "zegocloud", "webrtc"]);
    assert_eq!(
        data["providers"][0],
        json!({"name": "agora", "isActive": true, "priority": 1,
               "config": {"appId": "a"}, "activeStreams": 0})
    );
    // Secrets never leave the server.
    assert_eq!(data["providers"][2]["config"], json!({"appId": "z"}));
    assert_eq!(data["providers"][3]["maxStreams"], 10);
    assert!(data["providers"][0].get("maxStreams").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn health_route_serves_cached_status() {
    let mut h = Harness::start().await;
    let body = expect(
        h.get("/api/streaming/providers/agora/health")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        body,
        json!({"success": true, "data": {"healthy": true, "provider": "agora", "status": "unknown"}})
    );
    let body = expect(
        h.get("/api/streaming/providers/legacy/health")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        body["data"],
        json!({"healthy": false, "provider": "legacy", "status": "disabled"})
    );
    let response = h
        .get("/api/streaming/providers/nope/health")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "unknown_provider").await;
    h.shutdown().await;
}

#[tokio::test]
async fn etag_revalidation_returns_304_until_content_changes() {
    let mut h = Harness::start().await;
    for path in [
        "/api/streaming/providers",
        "/api/streaming/providers/agora/health",
    ] {
        let first = h.get(path).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"'), "{etag}");

        let again = h.get(path).send().await.unwrap();
        assert_eq!(again.headers()[header::ETAG], etag.as_str(), "stable etag");

        let cached = h
            .get(path)
            .header(header::IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(cached.headers()[header::ETAG], etag.as_str());
        assert!(cached.bytes().await.unwrap().is_empty());

        let other = h
            .get(path)
            .header(header::IF_NONE_MATCH, "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }

    let list_etag = h
        .get("/api/streaming/providers")
        .send()
        .await
        .unwrap()
        .headers()[header::ETAG]
        .clone();
    let health_etag = h
        .get("/api/streaming/providers/agora/health")
        .send()
        .await
        .unwrap()
        .headers()[header::ETAG]
        .clone();
    h.update("agora", json!({"isActive": false})).await;
    for (path, old) in [
        ("/api/streaming/providers", list_etag),
        ("/api/streaming/providers/agora/health", health_etag),
    ] {
        let changed = h
            .get(path)
            .header(header::IF_NONE_MATCH, old.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::OK, "{path}");
        assert_ne!(changed.headers()[header::ETAG], old, "{path}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn public_routes_are_rate_limited_per_client() {
    let mut h = Harness::start_with(|c| {
        // Slow enough that no token comes back while the test runs, even on a busy machine.
        c.rate_limit.per_second = 0.05;
        c.rate_limit.burst = 5;
    })
    .await;
    for i in 0..5 {
        let path = if i % 2 == 0 {
            "/api/streaming/providers"
        } else {
            "/api/streaming/providers/agora/health"
        };
        let response = h.get(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
    }
    let limited = h.get("/api/streaming/providers").send().await.unwrap();
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    expect_error(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // Authenticated admin calls do not spend the public budget.
    let admin = h
        .admin(Method::GET, "/api/streaming/providers/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn public_reads_never_write_to_the_database() {
    let mut h = Harness::start().await;
    if crate::common::on_postgres() {
        // The observer reads SQLite's data_version; reads are served from memory on both
        // backends by the same code.
        return h.shutdown().await;
    }
    let observer = rusqlite::Connection::open(h.db_path()).unwrap();
    let data_version = |c: &rusqlite::Connection| -> i64 {
        c.query_row("PRAGMA data_version", [], |r| r.get(0))
            .unwrap()
    };
    let before = data_version(&observer);
    let etag = h
        .get("/api/streaming/providers")
        .send()
        .await
        .unwrap()
        .headers()[header::ETAG]
        .clone();
    for i in 0..100 {
        let path = match i % 4 {
            0 => "/api/streaming/providers",
            1 => "/api/streaming/providers/agora/health",
            2 => "/api/streaming/providers/legacy/health",
            _ => "/api/streaming/providers/missing/health",
        };
        let response = h
            .get(path)
            .header(header::IF_NONE_MATCH, etag.clone())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success() || response.status().as_u16() < 500);
    }
    assert_eq!(data_version(&observer), before, "a public read wrote");

    // The probe is sensitive: one admin write does change it.
    h.update("agora", json!({"priority": 7})).await;
    assert_ne!(data_version(&observer), before);
    h.shutdown().await;
}
