//! The audience signal over HTTP: viewers' stall reports in keep-alives, the window, the minimum
//! count and share, the per-source cap, `audience` events filtered by stream (at once for a
//! verdict, paced for counts), the poll body and its ETag, the `AudienceStalled` history entry,
//! the admin list, validation and auth. The window's arithmetic is tested on injected instants
//! in `audience.rs`; here the registry's own timer is awaited through the event it sends.

use std::time::Duration;

use reqwest::{header, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::common::{expect, expect_error, Harness, SseClient};

/// A registry that counts reports under `X-Forwarded-For`, so one test can play many hosts.
async fn start() -> Harness {
    Harness::start_with(|c| c.trust_forwarded_for = true).await
}

fn viewer(stream: &str, provider: &str, state: &str) -> Value {
    json!({"provider": provider, "streamId": stream, "role": "viewer", "audience": state})
}

async fn send(h: &Harness, client: &str, ip: &str, sessions: Vec<Value>) -> Response {
    h.admin(Method::POST, "/api/streaming/sessions/alive")
        .header("x-forwarded-for", ip)
        .json(&json!({"clientId": client, "sessions": sessions}))
        .send()
        .await
        .unwrap()
}

/// Viewer `client` (from host `ip`) watches `stream` on `provider` in `state`.
async fn watch(h: &Harness, client: &str, ip: &str, stream: &str, provider: &str, state: &str) {
    let r = send(h, client, ip, vec![viewer(stream, provider, state)]).await;
    expect(r, StatusCode::OK).await;
}

/// Viewer `v{i}`, from host `10.0.0.{i + 1}`, watches `stream` on agora in `state`.
async fn nth(h: &Harness, i: usize, stream: &str, state: &str) {
    watch(
        h,
        &format!("v{i}"),
        &format!("10.0.0.{}", i + 1),
        stream,
        "agora",
        state,
    )
    .await;
}

/// Viewers `v0..` from hosts `10.0.0.1..` watch `stream` on agora, the last `stalled` of them
/// stalled (joining after the others, so no smaller audience confirms an outage on the way).
async fn audience(h: &Harness, stream: &str, viewers: usize, stalled: usize) {
    for i in 0..viewers {
        let state = if i >= viewers - stalled {
            "stalled"
        } else {
            "ok"
        };
        nth(h, i, stream, state).await;
    }
}

async fn claim(h: &Harness, stream: &str) {
    let r = h
        .admin(
            Method::PUT,
            &format!("/api/streaming/streams/{stream}/placement"),
        )
        .json(&json!({"provider": "agora", "epoch": 1, "clientId": "publisher"}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await;
}

async fn get(h: &Harness, stream: &str) -> Response {
    h.get(&format!("/api/streaming/streams/{stream}"))
        .send()
        .await
        .unwrap()
}

/// The poll read of `stream` with `If-None-Match: tag`.
async fn revalidate(h: &Harness, stream: &str, tag: &header::HeaderValue) -> Response {
    h.get(&format!("/api/streaming/streams/{stream}"))
        .header(header::IF_NONE_MATCH, tag.clone())
        .send()
        .await
        .unwrap()
}

/// `client` reports the end of its session of `stream` on `provider`.
async fn end(h: &Harness, client: &str, provider: &str, stream: &str) {
    let r = h
        .admin(Method::POST, "/api/streaming/sessions/events")
        .json(&json!({"type": "end", "provider": provider, "streamId": stream, "clientId": client}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await;
}

/// The body of `GET /api/admin/audience`.
async fn admin_audience(h: &Harness) -> Value {
    let r = h.admin(Method::GET, "/api/admin/audience").send().await;
    expect(r.unwrap(), StatusCode::OK).await
}

/// The poll body's `audience` array (`null` when absent).
async fn polled(h: &Harness, stream: &str) -> Value {
    expect(get(h, stream).await, StatusCode::OK).await["data"]["audience"].clone()
}

/// An audience event's data without its timestamp.
fn numbers(mut data: Value) -> Value {
    assert!(data["at"].as_i64().unwrap() > 0, "{data}");
    data.as_object_mut().unwrap().remove("at");
    data
}

fn tally(stream: &str, viewers: u64, stalled: u64, share: f64, outage: bool) -> Value {
    json!({"streamId": stream, "provider": "agora", "viewers": viewers, "stalled": stalled,
           "degraded": 0, "stalledShare": share, "outage": outage})
}

async fn failovers(h: &Harness) -> Vec<Value> {
    let body = expect(
        h.admin(Method::GET, "/api/streaming/providers/failovers")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    body["data"]["failovers"].as_array().unwrap().clone()
}

/// Makes a `placement` event on stream `marker`, so a subscriber of it can prove it got nothing
/// before that event.
async fn mark(h: &Harness, marker: &str) {
    claim(h, marker).await;
}

#[tokio::test]
async fn stalled_viewers_confirm_an_outage_pushed_only_to_the_streams_subscribers() {
    let mut h = start().await;
    claim(&h, "s1").await;
    let mut publisher =
        SseClient::connect_to(&h, "/api/streaming/providers/events?streams=s1").await;
    let mut other = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=s2").await;
    // Five viewers join: their count is pushed; then three stall.
    audience(&h, "s1", 5, 0).await;
    let first = publisher.wait_for(|n, _| n == "audience").await;
    assert_eq!(numbers(first)["outage"], false);
    for i in 0..3 {
        nth(&h, i, "s1", "stalled").await;
    }
    let down = publisher
        .wait_for(|n, d| n == "audience" && d["outage"] == true)
        .await;
    assert_eq!(numbers(down), tally("s1", 5, 3, 0.6, true));
    // The admin sees why the publisher is about to move.
    let history = failovers(&h).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["from"], "agora");
    assert_eq!(history[0]["to"], "");
    assert_eq!(history[0]["streamId"], "s1");
    assert_eq!(
        history[0]["reason"],
        "AudienceStalled viewers=5 stalled=3 degraded=0 share=0.6"
    );
    // A subscriber connecting now gets the current audience with the initial state.
    let mut late = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=s1").await;
    let current = late.wait_for(|n, _| n == "audience").await;
    assert_eq!(numbers(current), tally("s1", 5, 3, 0.6, true));
    // They recover: the outage ends at once, and no second history entry is made.
    for i in 0..3 {
        nth(&h, i, "s1", "ok").await;
    }
    // The first to recover ends the outage at once (2 of 5 stalled).
    let up = publisher
        .wait_for(|n, d| n == "audience" && d["outage"] == false)
        .await;
    assert_eq!(numbers(up), tally("s1", 5, 2, 0.4, false));
    assert_eq!(polled(&h, "s1").await[0]["stalled"], 0);
    assert_eq!(failovers(&h).await.len(), 1);
    // The subscriber of s2 got none of it: its first event after connecting is s2's placement.
    mark(&h, "s2").await;
    let next = other
        .wait_for(|n, d| {
            assert_ne!(n, "audience", "{d}");
            n == "placement"
        })
        .await;
    assert_eq!(next["streamId"], "s2");
    h.shutdown().await;
}

#[tokio::test]
async fn stall_reports_count_for_the_window_only() {
    let window = Duration::from_millis(300);
    let mut h = Harness::start_with(|c| {
        c.trust_forwarded_for = true;
        c.audience.window = window;
    })
    .await;
    claim(&h, "s").await;
    let mut events = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=s").await;
    let start = tokio::time::Instant::now();
    audience(&h, "s", 4, 3).await;
    let down = events
        .wait_for(|n, d| n == "audience" && d["outage"] == true)
        .await;
    assert_eq!(numbers(down), tally("s", 4, 3, 0.75, true));
    // Nobody repeats the stall: after the window the three reports are stale, so unknown, and
    // the one ok viewer is all that is known. The registry notices by itself (no report
    // arrives) and pushes the end.
    let up = events
        .wait_for(|n, d| n == "audience" && d["outage"] == false)
        .await;
    assert!(start.elapsed() >= window, "{:?}", start.elapsed());
    assert!(up["stalled"].as_u64().unwrap() < 3, "{up}");
    // The reports went stale a few milliseconds apart, in one tick of the registry's timer or
    // in several; the rest follows within a second.
    let last = if up["viewers"] == 1 {
        up
    } else {
        events
            .wait_for(|n, d| n == "audience" && d["viewers"] == 1)
            .await
    };
    assert_eq!(numbers(last), tally("s", 1, 0, 0.0, false));
    assert_eq!(polled(&h, "s").await[0]["viewers"], 1);
    // A fresh stall counts again.
    watch(&h, "v3", "10.0.0.4", "s", "agora", "stalled").await;
    assert_eq!(polled(&h, "s").await[0]["stalled"], 1);
    h.shutdown().await;
}

#[tokio::test]
async fn count_changes_are_pushed_at_most_once_a_second() {
    let mut h = start().await;
    claim(&h, "s").await;
    let mut events = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=s").await;
    watch(&h, "v0", "10.0.0.1", "s", "agora", "ok").await;
    let first = events.wait_for(|n, _| n == "audience").await;
    assert_eq!(first["viewers"], 1);
    // Four more join within the second: nothing is pushed until it has passed, then the
    // latest count at once (the registry's own timer, no report needed).
    for i in 1..5 {
        nth(&h, i, "s", "ok").await;
    }
    assert_eq!(
        polled(&h, "s").await[0]["viewers"],
        5,
        "the poll is current"
    );
    let before = tokio::time::Instant::now();
    let next = events.wait_for(|n, _| n == "audience").await;
    assert_eq!(
        next["viewers"], 5,
        "the held-back counts are pushed as one: {next}"
    );
    assert!(
        before.elapsed() >= Duration::from_millis(900),
        "{:?}",
        before.elapsed()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn one_host_or_one_client_cannot_move_a_stream() {
    let mut h = start().await;
    let streams = ["s1", "s2", "s3"];
    for s in streams {
        claim(&h, s).await;
    }
    // A token holder fakes ten stalled viewers on every stream from one address...
    for i in 0..10 {
        let sessions = streams
            .iter()
            .map(|s| viewer(s, "agora", "stalled"))
            .collect();
        expect(
            send(&h, &format!("fake{i}"), "203.0.113.9", sessions).await,
            StatusCode::OK,
        )
        .await;
    }
    // ...and one client repeats its stall for every stream in a burst.
    for _ in 0..20 {
        let sessions = streams
            .iter()
            .map(|s| viewer(s, "agora", "stalled"))
            .collect();
        expect(
            send(&h, "loud", "198.51.100.7", sessions).await,
            StatusCode::OK,
        )
        .await;
    }
    for s in streams {
        // Eleven viewers known; the fake host counts two stalls, the loud client one.
        let a = polled(&h, s).await;
        assert_eq!(a[0]["viewers"], 11, "{a}");
        assert_eq!(a[0]["stalled"], 3, "{a}");
        assert_eq!(a[0]["outage"], false, "{a}");
    }
    assert!(failovers(&h).await.is_empty());
    // Two stalled viewers alone on a stream (all of its audience) are not enough either.
    claim(&h, "small").await;
    watch(&h, "a", "192.0.2.1", "small", "agora", "stalled").await;
    watch(&h, "b", "192.0.2.2", "small", "agora", "stalled").await;
    let a = polled(&h, "small").await;
    assert_eq!(
        (a[0]["stalled"].clone(), a[0]["outage"].clone()),
        (json!(2), json!(false))
    );
    // Three hosts are.
    watch(&h, "c", "192.0.2.3", "small", "agora", "stalled").await;
    assert_eq!(polled(&h, "small").await[0]["outage"], true);
    h.shutdown().await;
}

#[tokio::test]
async fn the_share_of_stalled_viewers_must_reach_the_minimum() {
    let mut h = start().await;
    claim(&h, "s").await;
    audience(&h, "s", 7, 3).await;
    assert_eq!(
        polled(&h, "s").await[0]["outage"],
        false,
        "3 of 7 is under half"
    );
    // An ok viewer leaves (its session ends): 3 of 6 is half.
    end(&h, "v0", "agora", "s").await;
    let a = polled(&h, "s").await;
    assert_eq!(a[0]["viewers"], 6, "{a}");
    assert_eq!(a[0]["outage"], true, "{a}");
    assert_eq!(failovers(&h).await.len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn the_poll_read_carries_the_audience_per_provider_and_its_etag_follows_it() {
    let mut h = start().await;
    claim(&h, "s").await;
    let plain = get(&h, "s").await;
    let plain_tag = plain.headers()[header::ETAG].clone();
    assert!(expect(plain, StatusCode::OK).await["data"]
        .get("audience")
        .is_none());
    // Viewers on two providers (one still on the old one) and a degraded one.
    watch(&h, "v0", "10.0.0.1", "s", "agora", "ok").await;
    watch(&h, "v1", "10.0.0.2", "s", "agora", "degraded").await;
    watch(&h, "v2", "10.0.0.3", "s", "zegocloud", "stalled").await;
    let r = get(&h, "s").await;
    let tag = r.headers()[header::ETAG].clone();
    assert_ne!(tag, plain_tag);
    let body = expect(r, StatusCode::OK).await["data"].clone();
    assert_eq!(
        body["provider"], "agora",
        "the placement is still there: {body}"
    );
    let a = body["audience"].as_array().unwrap();
    assert_eq!(a.len(), 2, "{body}");
    assert_eq!(
        (
            a[0]["provider"].clone(),
            a[0]["viewers"].clone(),
            a[0]["degraded"].clone()
        ),
        (json!("agora"), json!(2), json!(1))
    );
    assert_eq!(
        (
            a[1]["provider"].clone(),
            a[1]["stalled"].clone(),
            a[1]["stalledShare"].clone()
        ),
        (json!("zegocloud"), json!(1), json!(1.0))
    );
    // Unchanged: 304 on the tag. A repeated report that changes nothing keeps it.
    watch(&h, "v0", "10.0.0.1", "s", "agora", "ok").await;
    let r = revalidate(&h, "s", &tag).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // Changed: a new tag.
    watch(&h, "v1", "10.0.0.2", "s", "agora", "ok").await;
    let r = revalidate(&h, "s", &tag).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()[header::ETAG], tag);
    // Every viewer leaves: the body and its tag are the placement's alone again.
    for (client, provider) in [("v0", "agora"), ("v1", "agora"), ("v2", "zegocloud")] {
        end(&h, client, provider, "s").await;
    }
    let r = get(&h, "s").await;
    assert_eq!(r.headers()[header::ETAG], plain_tag);
    // No placement: 404 as before, whatever the audience.
    watch(&h, "v9", "10.0.0.9", "unclaimed", "agora", "stalled").await;
    expect_error(
        get(&h, "unclaimed").await,
        StatusCode::NOT_FOUND,
        "unknown_stream",
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn viewer_sessions_count_like_publisher_sessions() {
    let mut h = start().await;
    let active = |h: &Harness| {
        let r = h.admin(Method::GET, "/api/streaming/providers/agora");
        async move {
            let body = expect(r.send().await.unwrap(), StatusCode::OK).await;
            body["data"]["statistics"]["activeStreams"].clone()
        }
    };
    assert_eq!(active(&h).await, 0);
    // A publisher (no role: as before) and a viewer of the same stream: two sessions.
    let r = send(
        &h,
        "pub",
        "10.0.0.1",
        vec![json!({"provider": "agora", "streamId": "s"})],
    )
    .await;
    assert_eq!(expect(r, StatusCode::OK).await["data"]["tracked"], 1);
    watch(&h, "v0", "10.0.0.2", "s", "agora", "stalled").await;
    assert_eq!(active(&h).await, 2);
    // The publisher is not part of the audience.
    let list = admin_audience(&h).await;
    assert_eq!(list["data"]["total"], 1);
    assert_eq!(list["data"]["audience"][0]["viewers"], 1);
    h.shutdown().await;
}

#[tokio::test]
async fn the_admin_list_shows_every_streams_audience() {
    let mut h = start().await;
    expect_error(
        h.get("/api/admin/audience").send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    audience(&h, "b", 3, 3).await;
    watch(&h, "x", "10.0.1.1", "a", "webrtc", "ok").await;
    let body = admin_audience(&h).await;
    let list = body["data"]["audience"].as_array().unwrap();
    assert_eq!(body["data"]["total"], 2);
    assert_eq!(list[0]["streamId"], "a");
    assert_eq!(numbers(list[1].clone()), tally("b", 3, 3, 1.0, true));
    h.shutdown().await;
}

#[tokio::test]
async fn audience_reports_are_validated_and_authenticated() {
    let mut h = start().await;
    let post = |body: Value| {
        h.admin(Method::POST, "/api/streaming/sessions/alive")
            .json(&body)
            .send()
    };
    let publisher_with_state = json!({"clientId": "c", "sessions": [{"provider": "agora", "streamId": "s", "audience": "stalled"}]});
    expect_error(
        post(publisher_with_state).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "unexpected_audience",
    )
    .await;
    let bad_state = json!({"clientId": "c", "sessions": [viewer("s", "agora", "frozen")]});
    expect_error(
        post(bad_state).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    )
    .await;
    let bad_role = json!({"clientId": "c", "sessions": [{"provider": "agora", "streamId": "s", "role": "lurker"}]});
    expect_error(
        post(bad_role).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    )
    .await;
    let r = h
        .request(Method::POST, "/api/streaming/sessions/alive")
        .json(&json!({"clientId": "c", "sessions": [viewer("s", "agora", "stalled")]}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Nothing of it was counted.
    let body = admin_audience(&h).await;
    assert_eq!(body["data"]["total"], 0);
    h.shutdown().await;
}

#[tokio::test]
async fn viewers_leave_when_their_session_expires_or_they_publish_the_stream() {
    let mut h = Harness::start_with(|c| {
        c.trust_forwarded_for = true;
        c.session_ttl = Duration::from_millis(400);
    })
    .await;
    claim(&h, "s").await;
    let mut events = SseClient::connect_to(&h, "/api/streaming/providers/events?streams=s").await;
    watch(&h, "v0", "10.0.0.1", "s", "agora", "stalled").await;
    let joined = events.wait_for(|n, _| n == "audience").await;
    assert_eq!(joined["viewers"], 1);
    // v0 stops confirming its session: when it expires, v0 leaves the audience (pushed).
    let left = events
        .wait_for(|n, d| n == "audience" && d["viewers"] == 0)
        .await;
    assert_eq!(numbers(left), tally("s", 0, 0, 0.0, false));
    assert_eq!(
        polled(&h, "s").await,
        Value::Null,
        "no viewers: no audience"
    );
    // A client that watched a stream and now reports it as its publisher is no viewer of it.
    watch(&h, "v1", "10.0.0.2", "s", "agora", "ok").await;
    assert_eq!(polled(&h, "s").await[0]["viewers"], 1);
    let publisher = json!({"provider": "agora", "streamId": "s"});
    expect(
        send(&h, "v1", "10.0.0.2", vec![publisher]).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(polled(&h, "s").await, Value::Null);
    h.shutdown().await;
}
