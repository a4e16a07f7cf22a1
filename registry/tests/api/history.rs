//! `GET /api/streaming/providers/{name}/history`: the stored checks behind the
//! dashboard's charts; admin only, oldest first, bounded, filterable by time.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use streamguard_registry::{Config, Seed};
use tokio::net::TcpListener;

use crate::common::{demo_seed, expect, expect_error, Harness, TempDir, ADMIN, SUPER};

async fn history(h: &Harness, path: &str) -> Value {
    let response = h.admin(Method::GET, path).send().await.unwrap();
    expect(response, StatusCode::OK).await["data"].clone()
}

fn oks(data: &Value) -> Vec<bool> {
    data["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ok"].as_bool().unwrap())
        .collect()
}

fn ats(data: &Value) -> Vec<i64> {
    data["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["at"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn history_lists_checks_oldest_first_bounded_and_filtered() {
    let mut h = Harness::start_with(|c| c.history_limit = 4).await;
    let path = "/api/streaming/providers/agora/history";
    let empty = history(&h, path).await;
    assert_eq!(
        empty,
        json!({"provider": "agora", "historyLimit": 4, "checks": []})
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    h.update(
        "agora",
        json!({"config": {"probe": {"type": "tcp", "address": address}}}),
    )
    .await;
    for _ in 0..3 {
        h.check("agora").await;
    }
    drop(listener);
    for _ in 0..2 {
        h.check("agora").await;
    }

    // Five checks, four kept: the oldest success fell out.
    let all = history(&h, path).await;
    assert_eq!(oks(&all), [true, true, false, false]);
    let times = ats(&all);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let first = &all["checks"][0];
    assert!(first["latencyMs"].as_f64().unwrap() >= 0.0, "{first}");
    assert_eq!(
        first.as_object().unwrap().len(),
        3,
        "only at, ok, latencyMs: {first}"
    );

    // limit keeps the newest; larger limits are capped at the history limit.
    assert_eq!(
        oks(&history(&h, &format!("{path}?limit=2")).await),
        [false, false]
    );
    assert_eq!(
        oks(&history(&h, &format!("{path}?limit=1000")).await).len(),
        4
    );

    // since keeps checks at or after that time.
    let since = times[2];
    let recent = history(&h, &format!("{path}?since={since}")).await;
    assert!(ats(&recent).iter().all(|&at| at >= since));
    assert!(ats(&recent).len() >= 2 && ats(&recent).len() <= 4);
    let future = history(&h, &format!("{path}?since={}", times[3] + 60_000)).await;
    assert_eq!(future["checks"], json!([]));
    let both = history(&h, &format!("{path}?since={}&limit=1", times[0])).await;
    assert_eq!(ats(&both), [times[3]]);

    // The single-provider view holds the same samples.
    let detail = expect(
        h.admin(Method::GET, "/api/streaming/providers/agora")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(detail["data"]["recentChecks"], all["checks"]);
    h.shutdown().await;
}

#[tokio::test]
async fn history_needs_admin_and_a_valid_query() {
    let mut h = Harness::start().await;
    let path = "/api/streaming/providers/agora/history";
    let anonymous = h.get(path).send().await.unwrap();
    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let wrong = h
        .get(path)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    expect_error(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // The super-admin token works on admin routes.
    let sup = h.superadmin(Method::GET, path).send().await.unwrap();
    expect(sup, StatusCode::OK).await;

    for query in [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "since=yesterday",
        "bogus=1",
    ] {
        let response = h
            .admin(Method::GET, &format!("{path}?{query}"))
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    let missing = h
        .admin(Method::GET, "/api/streaming/providers/nope/history")
        .send()
        .await
        .unwrap();
    expect_error(missing, StatusCode::NOT_FOUND, "unknown_provider").await;
    let post = h.admin(Method::POST, path).send().await.unwrap();
    expect_error(post, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    h.shutdown().await;
}

#[tokio::test]
async fn history_survives_a_restart() {
    let dir = TempDir::new("history-restart");
    let db = crate::common::database(&dir);
    let config = || {
        let mut c = Config::local_test(ADMIN, SUPER);
        c.db_path = db.clone();
        c.seed = Seed::Providers(demo_seed());
        c
    };
    let path = "/api/streaming/providers/webrtc/history";
    let mut first = Harness::serve_in(TempDir::new("unused"), config()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    first
        .update(
            "webrtc",
            json!({"config": {"probe": {"type": "tcp", "address": address}}}),
        )
        .await;
    first.check("webrtc").await;
    first.check("webrtc").await;
    let before = history(&first, path).await;
    assert_eq!(oks(&before), [true, true]);
    first.shutdown().await;

    let mut second = Harness::serve_in(TempDir::new("unused"), config()).await;
    assert_eq!(history(&second, path).await, before);
    second.shutdown().await;
}
