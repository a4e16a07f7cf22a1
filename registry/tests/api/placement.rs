//! The placement directory: epoch fencing, ownership, keep-alive and expiry, release, the
//! public read (404, ETag, never writes), auth, validation, filtered push, concurrent claims,
//! restarts, tombstone retention and the admin list.

use std::future::Future;
use std::time::Duration;

use reqwest::{header, Method, Response, StatusCode};
use serde_json::{json, Value};
use streamguard_registry::Secret;
use tokio::time::Instant;

use crate::common::{expect, expect_error, names, Harness, SseClient, WAIT};

const TELEMETRY: &str = "telemetry-token-for-tests-01";

fn claim(provider: &str, epoch: i64, standby: &[&str], client: &str) -> Value {
    json!({"provider": provider, "epoch": epoch, "standby": standby, "clientId": client})
}

async fn put(h: &Harness, stream: &str, body: Value) -> Response {
    h.admin(
        Method::PUT,
        &format!("/api/streaming/streams/{stream}/placement"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

/// A claim that must be accepted; returns the response body.
async fn accept(h: &Harness, stream: &str, body: Value) -> Value {
    expect(put(h, stream, body).await, StatusCode::OK).await
}

/// A claim that must be refused with 409 `code`; returns the error body.
async fn refuse(h: &Harness, stream: &str, body: Value, code: &str) -> Value {
    expect_error(put(h, stream, body).await, StatusCode::CONFLICT, code).await
}

async fn release(h: &Harness, stream: &str, client: &str) -> Response {
    h.admin(
        Method::DELETE,
        &format!("/api/streaming/streams/{stream}/placement?clientId={client}"),
    )
    .send()
    .await
    .unwrap()
}

async fn get(h: &Harness, stream: &str) -> Response {
    h.get(&format!("/api/streaming/streams/{stream}"))
        .send()
        .await
        .unwrap()
}

/// The stored placement's public view.
async fn placement(h: &Harness, stream: &str) -> Value {
    expect(get(h, stream).await, StatusCode::OK).await["data"].clone()
}

async fn alive(h: &Harness, client: &str, streams: &[&str]) {
    let sessions: Vec<Value> = streams
        .iter()
        .map(|s| json!({"provider": "agora", "streamId": s}))
        .collect();
    let r = h
        .admin(Method::POST, "/api/streaming/sessions/alive")
        .json(&json!({"clientId": client, "sessions": sessions}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await;
}

fn view(stream: &str, provider: &str, epoch: i64, standby: &[&str], live: bool) -> Value {
    json!({"streamId": stream, "provider": provider, "epoch": epoch, "standby": standby, "live": live})
}

/// Polls `condition` every 50 ms until it holds; fails after `WAIT`.
async fn poll_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn epochs_fence_claims() {
    let mut h = Harness::start().await;
    let body = accept(&h, "match-1", claim("agora", 3, &["zegocloud"], "sg-a")).await;
    // The stored placement in the success envelope, never the client id.
    assert_eq!(
        body,
        json!({"success": true, "data": view("match-1", "agora", 3, &["zegocloud"], true)})
    );
    for epoch in [3, 2] {
        let refused = refuse(
            &h,
            "match-1",
            claim("webrtc", epoch, &[], "sg-a"),
            "stale_epoch",
        )
        .await;
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("epoch {epoch}")) && message.contains("epoch 3"),
            "{message}"
        );
    }
    assert_eq!(
        placement(&h, "match-1").await,
        view("match-1", "agora", 3, &["zegocloud"], true),
        "refused claims change nothing"
    );
    accept(&h, "match-1", claim("zegocloud", 4, &[], "sg-a")).await;
    assert_eq!(
        placement(&h, "match-1").await,
        view("match-1", "zegocloud", 4, &[], true)
    );
    // Epochs are per stream.
    accept(&h, "match-2", claim("agora", 1, &[], "sg-a")).await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_live_stream_belongs_to_its_client_until_the_claim_expires() {
    let mut h = Harness::start_with(|c| c.session_ttl = Duration::from_millis(1000)).await;
    let mut events = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=s").await;
    accept(&h, "s", claim("agora", 1, &["webrtc"], "sg-a")).await;
    let claimed = events.wait_for(|name, _| name == "placement").await;
    assert_eq!(claimed, view("s", "agora", 1, &["webrtc"], true));
    // Another client cannot take a live stream, whatever its epoch.
    refuse(
        &h,
        "s",
        claim("zegocloud", 9, &[], "sg-b"),
        "owned_by_other",
    )
    .await;
    // sg-a stops confirming: the claim expires, pushed as an event; the placement stays.
    let expired = events.wait_for(|name, _| name == "placement").await;
    assert_eq!(expired, view("s", "agora", 1, &["webrtc"], false));
    assert_eq!(
        placement(&h, "s").await,
        view("s", "agora", 1, &["webrtc"], false)
    );
    // Now sg-b may take over, still only above the stored epoch.
    refuse(&h, "s", claim("zegocloud", 1, &[], "sg-b"), "stale_epoch").await;
    accept(&h, "s", claim("zegocloud", 2, &[], "sg-b")).await;
    let taken = events.wait_for(|name, _| name == "placement").await;
    assert_eq!(taken, view("s", "zegocloud", 2, &[], true));
    // The old owner is now the other client.
    refuse(&h, "s", claim("agora", 3, &[], "sg-a"), "owned_by_other").await;
    h.shutdown().await;
}

#[tokio::test]
async fn the_session_keep_alive_holds_the_claim() {
    // Long enough that a slow request on a loaded machine does not let the claim lapse.
    let ttl = Duration::from_millis(1000);
    let mut h = Harness::start_with(|c| c.session_ttl = ttl).await;
    let mut events = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=s").await;
    accept(&h, "s", claim("agora", 1, &[], "sg-a")).await;
    events.wait_for(|name, _| name == "placement").await;
    // sg-a's keep-alives (external input, paced) hold the claim for three TTLs.
    let until = Instant::now() + ttl * 3;
    while Instant::now() < until {
        alive(&h, "sg-a", &["s"]).await;
        assert_eq!(placement(&h, "s").await["live"], true);
        refuse(
            &h,
            "s",
            claim("zegocloud", 2, &[], "sg-b"),
            "owned_by_other",
        )
        .await;
        tokio::time::sleep(ttl / 5).await;
    }
    // Keep-alives of another client for the same stream (a viewer) do not hold it.
    let viewer = async {
        loop {
            alive(&h, "sg-viewer", &["s"]).await;
            tokio::time::sleep(ttl / 6).await;
        }
    };
    let expired = tokio::select! {
        data = events.wait_for(|name, _| name == "placement") => data,
        _ = viewer => unreachable!(),
    };
    assert_eq!(expired, view("s", "agora", 1, &[], false));
    // An expired claim is not revived by a late keep-alive: the publisher claims again.
    alive(&h, "sg-a", &["s"]).await;
    assert_eq!(placement(&h, "s").await["live"], false);
    accept(&h, "s", claim("agora", 2, &[], "sg-a")).await;
    h.shutdown().await;
}

#[tokio::test]
async fn the_owner_ends_its_stream_and_the_epoch_stays() {
    let mut h = Harness::start().await;
    let mut events = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=s").await;
    accept(&h, "s", claim("agora", 5, &["webrtc"], "sg-a")).await;
    events.wait_for(|name, _| name == "placement").await;
    expect_error(
        release(&h, "s", "sg-b").await,
        StatusCode::CONFLICT,
        "owned_by_other",
    )
    .await;
    assert_eq!(placement(&h, "s").await["live"], true);
    let ended = release(&h, "s", "sg-a").await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    let event = events.wait_for(|name, _| name == "placement").await;
    assert_eq!(event, view("s", "agora", 5, &["webrtc"], false));
    assert_eq!(
        placement(&h, "s").await,
        view("s", "agora", 5, &["webrtc"], false)
    );
    // Idempotent: again, by anyone, or for a stream never placed.
    for (stream, client) in [("s", "sg-a"), ("s", "sg-b"), ("never-placed", "sg-a")] {
        assert_eq!(
            release(&h, stream, client).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    expect_error(
        get(&h, "never-placed").await,
        StatusCode::NOT_FOUND,
        "unknown_stream",
    )
    .await;
    // A stale publisher cannot come back with its old epoch; a new claim goes above it.
    refuse(&h, "s", claim("agora", 5, &[], "sg-a"), "stale_epoch").await;
    accept(&h, "s", claim("zegocloud", 6, &[], "sg-b")).await;
    // The client id is required and checked.
    let missing = h
        .admin(Method::DELETE, "/api/streaming/streams/s/placement")
        .send()
        .await
        .unwrap();
    expect_error(missing, StatusCode::BAD_REQUEST, "invalid_query").await;
    expect_error(
        release(&h, "s", "a%20b").await,
        StatusCode::BAD_REQUEST,
        "invalid_client_id",
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn the_public_read_is_a_cached_json_body() {
    let mut h = Harness::start().await;
    let unknown = expect_error(
        get(&h, "nope").await,
        StatusCode::NOT_FOUND,
        "unknown_stream",
    )
    .await;
    assert!(unknown["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nope"));
    accept(&h, "s", claim("agora", 1, &[], "sg-a")).await;
    let first = get(&h, "s").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[header::CONTENT_TYPE], "application/json");
    let etag = first.headers()[header::ETAG].clone();
    let revalidated = h
        .get("/api/streaming/streams/s")
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers()[header::ETAG], etag);
    accept(&h, "s", claim("zegocloud", 2, &[], "sg-a")).await;
    let changed = h
        .get("/api/streaming/streams/s")
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()[header::ETAG], etag);
    // Stream ids are checked like everywhere else.
    let long = "x".repeat(257);
    expect_error(
        get(&h, &long).await,
        StatusCode::BAD_REQUEST,
        "invalid_stream_id",
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn public_placement_reads_never_write() {
    let mut h = Harness::start().await;
    accept(&h, "s", claim("agora", 1, &[], "sg-a")).await;
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
    let etag = get(&h, "s").await.headers()[header::ETAG].clone();
    for i in 0..100 {
        let path = match i % 3 {
            0 => "/api/streaming/streams/s",
            1 => "/api/streaming/streams/unknown",
            _ => "/api/streaming/providers/events?streams=s,unknown",
        };
        let response = h
            .get(path)
            .header(header::IF_NONE_MATCH, etag.clone())
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500, "{path}");
    }
    assert_eq!(data_version(&observer), before, "a public read wrote");
    // The observer does see writes.
    release(&h, "s", "sg-a").await;
    assert_ne!(data_version(&observer), before);
    h.shutdown().await;
}

/// Claims move viewers: authenticated exactly like session telemetry.
#[tokio::test]
async fn claims_and_releases_need_the_telemetry_or_an_admin_token() {
    let mut h = Harness::start_with(|c| c.telemetry_token = Some(Secret::new(TELEMETRY))).await;
    let body = claim("agora", 1, &[], "sg-a");
    let path = "/api/streaming/streams/s/placement";
    let anonymous = h
        .request(Method::PUT, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let wrong = h
        .request(Method::PUT, path)
        .bearer_auth("not-the-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(get(&h, "s").await, StatusCode::NOT_FOUND, "unknown_stream").await;
    let with_token = h
        .request(Method::PUT, path)
        .bearer_auth(TELEMETRY)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect(with_token, StatusCode::OK).await;
    let release_path = format!("{path}?clientId=sg-a");
    let anonymous = h
        .request(Method::DELETE, &release_path)
        .send()
        .await
        .unwrap();
    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(placement(&h, "s").await["live"], true);
    let ended = h
        .request(Method::DELETE, &release_path)
        .bearer_auth(TELEMETRY)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    h.shutdown().await;

    // Opened explicitly: anonymous claims are accepted.
    let mut h = Harness::start_with(|c| c.open_telemetry = true).await;
    let anonymous = h
        .request(Method::PUT, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect(anonymous, StatusCode::OK).await;
    h.shutdown().await;
}

#[tokio::test]
async fn invalid_claims_are_rejected_and_change_nothing() {
    let mut h = Harness::start().await;
    let cases = [
        (claim("Agora", 1, &[], "sg-a"), "invalid_name"),
        (claim("agora", 0, &[], "sg-a"), "invalid_epoch"),
        (claim("agora", -1, &[], "sg-a"), "invalid_epoch"),
        (
            claim("agora", 1, &["a", "b", "c", "d", "e"], "sg-a"),
            "invalid_standby",
        ),
        (
            claim("agora", 1, &["webrtc", "webrtc"], "sg-a"),
            "invalid_standby",
        ),
        (claim("agora", 1, &["agora"], "sg-a"), "invalid_standby"),
        (claim("agora", 1, &["Bad"], "sg-a"), "invalid_name"),
        (claim("agora", 1, &[], "a b"), "invalid_client_id"),
        (json!({"provider": "agora", "epoch": 1}), "invalid_field"),
        (
            json!({"provider": "agora", "epoch": "1", "clientId": "c"}),
            "invalid_field",
        ),
        (
            json!({"provider": "agora", "epoch": 1, "clientId": "c", "x": 1}),
            "unknown_field",
        ),
    ];
    for (body, code) in cases {
        expect_error(put(&h, "s", body).await, StatusCode::BAD_REQUEST, code).await;
    }
    let long = "x".repeat(257);
    expect_error(
        put(&h, &long, claim("agora", 1, &[], "sg-a")).await,
        StatusCode::BAD_REQUEST,
        "invalid_stream_id",
    )
    .await;
    let not_json = h
        .admin(Method::PUT, "/api/streaming/streams/s/placement")
        .body(claim("agora", 1, &[], "sg-a").to_string())
        .send()
        .await
        .unwrap();
    expect_error(
        not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    expect_error(get(&h, "s").await, StatusCode::NOT_FOUND, "unknown_stream").await;
    // The full set of standby names is accepted (at most four).
    accept(&h, "s", claim("agora", 1, &["a", "b", "c", "d"], "sg-a")).await;
    h.shutdown().await;
}

#[tokio::test]
async fn placement_events_go_only_to_subscribers_of_the_stream() {
    let mut h = Harness::start().await;
    let mut of_a = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=a").await;
    let mut of_b = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=b,c").await;
    let mut of_none = SseClient::connect(&h).await;
    accept(&h, "b", claim("webrtc", 1, &[], "sg-b")).await;
    accept(&h, "a", claim("agora", 1, &["zegocloud"], "sg-a")).await;
    // b's claim came first: the first placement event a subscriber of a sees is a's.
    let first = of_a.wait_for(|name, _| name == "placement").await;
    assert_eq!(first, view("a", "agora", 1, &["zegocloud"], true));
    let first = of_b.wait_for(|name, _| name == "placement").await;
    assert_eq!(first, view("b", "webrtc", 1, &[], true));
    // Without `streams`, no placement events; the other events are unchanged.
    h.update("webrtc", json!({"priority": 0})).await;
    let list = of_none
        .wait_for(|name, data| {
            assert_ne!(name, "placement", "{data}");
            name == "providers" && names(data)[0] == "webrtc"
        })
        .await;
    assert_eq!(names(&list), ["webrtc", "agora", "zegocloud"]);
    // b's subscriber got no event of a either: its next placement event is b's end.
    release(&h, "b", "sg-b").await;
    let next = of_b.wait_for(|name, _| name == "placement").await;
    assert_eq!(next, view("b", "webrtc", 1, &[], false));
    // A new subscriber gets the current placement of its streams on connect.
    let mut late = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=a,zz").await;
    let current = late.wait_for(|name, _| name == "placement").await;
    assert_eq!(current, view("a", "agora", 1, &["zegocloud"], true));
    h.shutdown().await;
}

#[tokio::test]
async fn the_streams_filter_is_validated() {
    let mut h = Harness::start().await;
    let hundred: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
    let path = format!(
        "/api/streaming/providers/events?streams={}",
        hundred.join(",")
    );
    let ok = h.get(&path).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    drop(ok);
    let too_many = h.get(&format!("{path},s100")).send().await.unwrap();
    expect_error(too_many, StatusCode::BAD_REQUEST, "too_many_streams").await;
    for query in ["streams=", "streams=a,,b"] {
        let bad = h
            .get(&format!("/api/streaming/providers/events?{query}"))
            .send()
            .await
            .unwrap();
        expect_error(bad, StatusCode::BAD_REQUEST, "invalid_stream_id").await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn of_two_concurrent_claims_at_one_epoch_exactly_one_wins() {
    let mut h = Harness::start().await;
    for round in 0..20 {
        let stream = format!("race-{round}");
        let (a, b) = tokio::join!(
            put(&h, &stream, claim("agora", 1, &[], "sg-a")),
            put(&h, &stream, claim("zegocloud", 1, &[], "sg-b")),
        );
        let (sa, sb) = (a.status(), b.status());
        let (winner, loser) = match (sa, sb) {
            (StatusCode::OK, StatusCode::CONFLICT) => ("agora", b),
            (StatusCode::CONFLICT, StatusCode::OK) => ("zegocloud", a),
            other => panic!("round {round}: {other:?}, exactly one claim must win"),
        };
        let refused: Value = loser.json().await.unwrap();
        let code = refused["error"]["code"].as_str().unwrap();
        assert!(
            ["owned_by_other", "stale_epoch"].contains(&code),
            "{refused}"
        );
        assert_eq!(placement(&h, &stream).await["provider"], winner);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn placements_survive_a_restart_and_still_fence() {
    let mut first = Harness::start().await;
    accept(&first, "s", claim("agora", 7, &["webrtc"], "sg-a")).await;
    let path = first.db_path();
    first.shutdown().await;
    let mut config =
        streamguard_registry::Config::local_test(crate::common::ADMIN, crate::common::SUPER);
    config.db_path = path;
    let mut h = Harness::serve_in(crate::common::TempDir::new("placement2"), config).await;
    assert_eq!(
        placement(&h, "s").await,
        view("s", "agora", 7, &["webrtc"], true)
    );
    refuse(&h, "s", claim("zegocloud", 7, &[], "sg-a"), "stale_epoch").await;
    refuse(
        &h,
        "s",
        claim("zegocloud", 8, &[], "sg-b"),
        "owned_by_other",
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn ended_placements_are_dropped_after_the_retention() {
    let mut h = Harness::start_with(|c| {
        c.session_ttl = Duration::from_millis(1000);
        c.placement_retention = Duration::from_millis(1500);
    })
    .await;
    for stream in ["ended", "held"] {
        accept(&h, stream, claim("agora", 3, &[], "sg-a")).await;
    }
    release(&h, "ended", "sg-a").await;
    // Kept first (not live, still fencing)...
    assert_eq!(placement(&h, "ended").await["live"], false);
    refuse(&h, "ended", claim("agora", 3, &[], "sg-b"), "stale_epoch").await;
    // ...then dropped, while a claim kept alive stays.
    let h_ref = &h;
    poll_until("the tombstone is dropped", || async move {
        alive(h_ref, "sg-a", &["held"]).await;
        get(h_ref, "ended").await.status() == StatusCode::NOT_FOUND
    })
    .await;
    assert_eq!(placement(&h, "held").await["live"], true);
    h.shutdown().await;
}

#[tokio::test]
async fn the_admin_list_shows_live_streams_with_their_owner() {
    let mut h = Harness::start().await;
    accept(&h, "b-stream", claim("zegocloud", 2, &["agora"], "sg-b")).await;
    accept(&h, "a-stream", claim("agora", 1, &[], "sg-a")).await;
    accept(&h, "ended", claim("agora", 1, &[], "sg-a")).await;
    release(&h, "ended", "sg-a").await;
    let body = expect(
        h.admin(Method::GET, "/api/admin/streams")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let data = &body["data"];
    assert_eq!(data["total"], 2);
    let streams = data["streams"].as_array().unwrap();
    let ids: Vec<&str> = streams
        .iter()
        .map(|s| s["streamId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a-stream", "b-stream"]);
    assert_eq!(streams[1]["provider"], "zegocloud");
    assert_eq!(streams[1]["standby"], json!(["agora"]));
    assert_eq!(streams[1]["epoch"], 2);
    assert_eq!(streams[1]["clientId"], "sg-b");
    assert!(streams[1]["expiresAt"].as_i64().unwrap() > streams[1]["updatedAt"].as_i64().unwrap());
    let anonymous = h.get("/api/admin/streams").send().await.unwrap();
    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    h.shutdown().await;
}

/// Stream ids are any 1 to 256 bytes: in paths and in `streams` they are percent-encoded.
#[tokio::test]
async fn stream_ids_with_spaces_and_slashes_work_percent_encoded() {
    let mut h = Harness::start().await;
    let encoded = "match%201%2Fhalf%C3%A9";
    let mut events = SseClient::connect_to(
        &h,
        &format!("/api/streaming/providers/events?streams={encoded}%2Cother"),
    )
    .await;
    let body = accept(&h, encoded, claim("agora", 1, &[], "sg-a")).await;
    assert_eq!(body["data"]["streamId"], "match 1/halfé");
    let pushed = events.wait_for(|name, _| name == "placement").await;
    assert_eq!(pushed, view("match 1/halfé", "agora", 1, &[], true));
    assert_eq!(placement(&h, encoded).await, pushed);
    assert_eq!(
        release(&h, encoded, "sg-a").await.status(),
        StatusCode::NO_CONTENT
    );
    h.shutdown().await;
}
