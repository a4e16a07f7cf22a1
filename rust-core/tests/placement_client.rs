//! The HTTP registry client's placement calls against a loopback server speaking the contract
//! (see `streamguard::placement`): answers, refusals and a registry without the routes.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use streamguard::{BackendError, HttpRegistry, PlacementClaim, ProviderRegistry};

fn error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({"success": false, "error": {"code": code, "message": format!("{code} here")}})),
    )
        .into_response()
}

async fn get_stream(Path(id): Path<String>) -> Response {
    match id.as_str() {
        "s1" => Json(json!({"success": true, "data": {"streamId": "s1", "provider": "agora", "epoch": 4, "standby": ["zegocloud"], "live": true}})).into_response(),
        _ => error(StatusCode::NOT_FOUND, "unknown_stream"),
    }
}

async fn put_placement(Path(id): Path<String>, Json(body): Json<Value>) -> Response {
    match (id.as_str(), body["epoch"].as_u64()) {
        ("taken", _) => error(StatusCode::CONFLICT, "owned_by_other"),
        (_, Some(e)) if e <= 4 => error(StatusCode::CONFLICT, "stale_epoch"),
        (_, Some(e)) => Json(json!({"success": true, "data": {"streamId": id, "provider": body["provider"], "epoch": e, "standby": body["standby"], "live": true}})).into_response(),
        _ => error(StatusCode::BAD_REQUEST, "invalid_body"),
    }
}

async fn delete_placement(
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match (id.as_str(), q.get("clientId").map(String::as_str)) {
        ("taken", _) => error(StatusCode::CONFLICT, "owned_by_other"),
        (_, Some("me")) => StatusCode::NO_CONTENT.into_response(),
        _ => error(StatusCode::BAD_REQUEST, "invalid_client"),
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api")
}

fn client(base: &str) -> HttpRegistry {
    HttpRegistry::new(base, None, Duration::from_secs(5), 1 << 20).unwrap()
}

fn claim(epoch: u64) -> PlacementClaim {
    PlacementClaim {
        provider: "zegocloud".into(),
        epoch,
        standby: vec![],
        client_id: "me".into(),
    }
}

#[tokio::test]
async fn placement_calls_follow_the_contract() {
    let app = Router::new()
        .route("/api/streaming/streams/{id}", get(get_stream))
        .route(
            "/api/streaming/streams/{id}/placement",
            put(put_placement).delete(delete_placement),
        );
    let r = client(&serve(app).await);
    let p = r.placement("s1").await.unwrap().unwrap();
    assert_eq!((p.provider.as_str(), p.epoch, p.live), ("agora", 4, true));
    assert_eq!(p.standby, ["zegocloud"]);
    assert_eq!(r.placement("nope").await.unwrap(), None, "never placed");
    let stored = r.claim_placement("s1", &claim(5)).await.unwrap();
    assert_eq!((stored.provider.as_str(), stored.epoch), ("zegocloud", 5));
    for (stream, epoch, code) in [("s1", 4, "stale_epoch"), ("taken", 9, "owned_by_other")] {
        match r.claim_placement(stream, &claim(epoch)).await {
            Err(BackendError::Conflict { code: c, message }) => {
                assert_eq!(c, code);
                assert_eq!(message, format!("{code} here"));
            }
            other => panic!("{stream}: {other:?}"),
        }
    }
    r.release_placement("s1", "me").await.unwrap();
    assert!(matches!(
        r.release_placement("taken", "me").await,
        Err(BackendError::Conflict { code, .. }) if code == "owned_by_other"
    ));
}

#[tokio::test]
async fn a_registry_without_the_directory_is_unsupported() {
    // An older reference registry answers unknown routes with its JSON `not_found`.
    let app = Router::new()
        .route(
            "/api/streaming/providers",
            get(|| async { Json(json!({"success": true, "data": {"providers": []}})) }),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found") });
    let r = client(&serve(app).await);
    assert!(matches!(
        r.placement("s1").await,
        Err(BackendError::Unsupported(_))
    ));
    assert!(matches!(
        r.claim_placement("s1", &claim(1)).await,
        Err(BackendError::Unsupported(_))
    ));
    assert!(matches!(
        r.release_placement("s1", "me").await,
        Err(BackendError::Unsupported(_))
    ));
}
