//! Authentication and CORS: every protected route refuses missing or wrong
//! tokens with one indistinguishable answer, and only configured origins get CORS headers.

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{expect, expect_error, Harness, ADMIN, SUPER};

const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/streaming/providers/admin"),
    ("GET", "/api/streaming/providers/agora"),
    ("PUT", "/api/streaming/providers/agora"),
    ("POST", "/api/streaming/providers/agora/health-check"),
    ("POST", "/api/streaming/providers/health-check-all"),
    ("GET", "/api/streaming/providers/health-check-all"),
    ("GET", "/api/streaming/providers/failovers"),
];

const SUPER_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/streaming/providers"),
    ("DELETE", "/api/streaming/providers/agora"),
];

#[tokio::test]
async fn protected_routes_refuse_missing_and_wrong_tokens() {
    let mut h = Harness::start().await;
    let mut messages = Vec::new();
    let all = ADMIN_ROUTES.iter().chain(SUPER_ROUTES);
    for &(method, path) in all {
        let method: Method = method.parse().unwrap();
        let attempts = [
            None,
            Some("Bearer wrong-token".to_owned()),
            Some(format!("Bearer {ADMIN}x")),
            Some(format!("Basic {ADMIN}")),
        ];
        for auth in attempts {
            let mut request = h
                .request(method.clone(), path)
                .json(&json!({"name": "new-one"}));
            if let Some(auth) = &auth {
                request = request.header(header::AUTHORIZATION, auth);
            }
            let body: Value = expect_error(
                request.send().await.unwrap(),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            )
            .await;
            messages.push(body["error"]["message"].clone());
        }
    }
    // The admin token does not open super-admin routes, and says so the same way.
    for &(method, path) in SUPER_ROUTES {
        let response = h
            .admin(method.parse().unwrap(), path)
            .json(&json!({"name": "new-one"}))
            .send()
            .await
            .unwrap();
        let body = expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        messages.push(body["error"]["message"].clone());
    }
    messages.dedup();
    assert_eq!(
        messages.len(),
        1,
        "one message for every failure: {messages:?}"
    );
    assert_eq!(
        h.public_names().await.len(),
        3,
        "nothing was created or deleted"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn super_admin_token_also_opens_admin_routes() {
    let mut h = Harness::start().await;
    let response = h
        .request(Method::GET, "/api/streaming/providers/admin")
        .bearer_auth(SUPER)
        .send()
        .await
        .unwrap();
    expect(response, StatusCode::OK).await;
    h.shutdown().await;
}

#[tokio::test]
async fn failed_authentication_is_rate_limited() {
    let mut h = Harness::start_with(|c| {
        c.rate_limit.per_second = 0.01;
        c.rate_limit.burst = 3;
    })
    .await;
    for _ in 0..3 {
        let response = h
            .request(Method::GET, "/api/streaming/providers/admin")
            .bearer_auth("guess")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = h
        .request(Method::GET, "/api/streaming/providers/admin")
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    h.shutdown().await;
}

#[tokio::test]
async fn admin_routes_are_closed_without_configured_tokens() {
    let mut h = Harness::start_with(|c| {
        c.admin_token = None;
        c.super_admin_token = None;
    })
    .await;
    let response = h
        .request(Method::GET, "/api/streaming/providers/admin")
        .header(header::AUTHORIZATION, "Bearer ")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = h
        .admin(Method::GET, "/api/streaming/providers/admin")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    h.shutdown().await;
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let allowed = "https://admin.example.com";
    let mut h = Harness::start_with(|c| c.cors_origins = vec![allowed.to_owned()]).await;

    let response = h
        .get("/api/streaming/providers")
        .header(header::ORIGIN, allowed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        allowed
    );
    assert!(response.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .contains("etag"));

    let refused = h
        .get("/api/streaming/providers")
        .header(header::ORIGIN, "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::OK);
    assert!(refused
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());

    let preflight = h
        .request(Method::OPTIONS, "/api/streaming/providers/agora")
        .header(header::ORIGIN, allowed)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "PUT")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let headers = preflight.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], allowed);
    assert!(headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap()
        .contains("PUT"));
    assert!(headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .contains("authorization"));

    let refused_preflight = h
        .request(Method::OPTIONS, "/api/streaming/providers/agora")
        .header(header::ORIGIN, "https://evil.example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "PUT")
        .send()
        .await
        .unwrap();
    assert!(refused_preflight
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    expect_error(
        refused_preflight,
        StatusCode::FORBIDDEN,
        "cors_origin_not_allowed",
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn no_cors_headers_by_default() {
    let mut h = Harness::start().await;
    let response = h
        .get("/api/streaming/providers")
        .header(header::ORIGIN, "https://admin.example.com")
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    h.shutdown().await;
}
