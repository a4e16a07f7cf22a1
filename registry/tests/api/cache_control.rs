//! What caches may do with each answer: public reads may be served by any cache for one
//! second and then revalidated with their ETag; the event stream is never stored and never
//! buffered by a proxy; admin reads are not marked cacheable.

use reqwest::{header, Method, StatusCode};
use serde_json::json;

use crate::common::Harness;

const PUBLIC: &str = "public, max-age=1";

#[tokio::test]
async fn public_reads_are_cacheable_for_a_second_and_revalidated() {
    let mut h = Harness::start().await;
    h.admin(Method::PUT, "/api/streaming/streams/s/placement")
        .json(&json!({"provider": "agora", "epoch": 1, "standby": [], "clientId": "c"}))
        .send()
        .await
        .unwrap();
    for path in [
        "/api/streaming/providers",
        "/api/streaming/providers/agora/health",
        "/api/streaming/streams/s",
    ] {
        let r = h.get(path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], PUBLIC, "{path}");
        let etag = r.headers()[header::ETAG].clone();
        let again = h
            .get(path)
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[header::CACHE_CONTROL], PUBLIC, "{path}");
    }
    let admin = h
        .admin(Method::GET, "/api/streaming/providers/admin")
        .send()
        .await
        .unwrap();
    let admin_cache = admin.headers().get(header::CACHE_CONTROL);
    assert!(
        admin_cache.is_none_or(|v| !v.to_str().unwrap().contains("public")),
        "{admin_cache:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn the_event_stream_is_never_stored_nor_buffered() {
    let mut h = Harness::start().await;
    let r = h
        .get("/api/streaming/providers/events")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    drop(r);
    h.shutdown().await;
}
