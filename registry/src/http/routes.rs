//! Route handlers. Public handlers serve pre-serialised bodies from the cache
//! (with ETag revalidation) and never write; admin handlers go through the
//! registry's write path; the event stream relays the registry's broadcast.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::extract::client_ip;
use super::extract::{AdminAuth, ApiJson, ProviderName, SourceIp, SuperAdminAuth, TelemetryAuth};
use super::openapi::{
    AdminProviders, CheckResults, Deleted, Failovers, Failure, Liveness, PublicProviders,
    SessionCounts, Tracked,
};
use super::per_client::PerClient;
use super::AppState;
use crate::error::ApiError;
use crate::state::{CachedBody, Event};
use crate::wire::{parse_stream_list, AliveReport, NewProvider, ProviderUpdate, SessionEvent};
use crate::wire::{AdminProvider, CheckHistory, CheckReport, PublicHealth};
use axum::extract::ConnectInfo;
use axum::Extension;
use std::net::SocketAddr;

/// Interval of the comment line that keeps idle event streams (and proxies) alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The success envelope; a struct (not `json!`) so fields keep their declared order.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Success<T> {
    success: bool,
    data: T,
}

pub(super) fn ok<T: Serialize>(data: T) -> Json<Success<T>> {
    Json(Success {
        success: true,
        data,
    })
}

/// `{"<key>": value}` without detouring through `serde_json::Value`, which would sort fields.
fn field<T: Serialize>(key: &'static str, value: T) -> BTreeMap<&'static str, T> {
    BTreeMap::from([(key, value)])
}

/// Whether any entity tag in `If-None-Match` matches `etag` (weak comparison,
/// as RFC 9110 prescribes for `If-None-Match`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// `Cache-Control` of the public reads (list, health, placement): any cache (a CDN, a proxy,
/// the client) may serve a copy for one second, then revalidates it with its ETag (a 304).
/// One second bounds what a cache adds to the staleness of a change to what the instances
/// of one database already allow (notifications arrive within about a second); event-stream
/// clients get changes pushed anyway.
pub(super) const PUBLIC_CACHE_CONTROL: &str = "public, max-age=1";

pub(super) fn cached(headers: &HeaderMap, body: &CachedBody) -> Response {
    let etag = HeaderValue::from_str(&body.etag).expect("etag is hex in quotes");
    let cache_control = HeaderValue::from_static(PUBLIC_CACHE_CONTROL);
    if not_modified(headers, &body.etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache_control)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control),
        ],
        body.body.clone(),
    )
        .into_response()
}

/// `GET /api/streaming/providers`: active providers in failover order.
#[utoipa::path(
    get,
    path = "/api/streaming/providers",
    tag = "public",
    responses(
        (status = 200, description = "Active providers in failover order", body = Success<PublicProviders>),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn public_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    cached(&headers, &state.registry.public_list())
}

/// `GET /api/streaming/providers/{name}/health`: cached result of the last check.
#[utoipa::path(
    get,
    path = "/api/streaming/providers/{name}/health",
    tag = "public",
    params(("name" = String, Path, description = "Provider name")),
    responses(
        (status = 200, description = "Cached result of the last check", body = Success<PublicHealth>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn public_health(
    State(state): State<AppState>,
    ProviderName(name): ProviderName,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let body = state
        .registry
        .public_health(&name)
        .ok_or_else(|| ApiError::unknown_provider(&name))?;
    Ok(cached(&headers, &body))
}

/// The SSE form of `event`, if this subscriber (following `streams`) gets it.
fn sse_event(event: Event, streams: &HashSet<String>) -> Option<SseEvent> {
    match event {
        Event::Providers(data) => Some(SseEvent::default().event("providers").data(&*data)),
        Event::Health(data) => Some(SseEvent::default().event("health").data(&*data)),
        Event::Placement { stream_id, data } => streams
            .contains(&*stream_id)
            .then(|| SseEvent::default().event("placement").data(&*data)),
        Event::Audience { stream_id, data } => streams
            .contains(&*stream_id)
            .then(|| SseEvent::default().event("audience").data(&*data)),
        Event::Shutdown => None,
    }
}

/// Query of the event stream. Other parameters are ignored, as they always were.
#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    /// Comma-separated stream ids whose `placement` and `audience` events this subscriber gets.
    streams: Option<String>,
}

/// `GET /api/streaming/providers/events[?streams=a,b]`: current state, then every change;
/// `placement` and `audience` events only for the streams named.
#[utoipa::path(
    get,
    path = "/api/streaming/providers/events",
    tag = "public",
    params(("streams" = Option<String>, Query, description = "Comma-separated stream ids whose placement and audience events to receive (at most 100)")),
    responses(
        (status = 200, description = "Server-sent events: `providers`, `health` and (for the streams named) `placement` and `audience`, each with a JSON `data` line", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure),
        (status = 503, description = "Too many open event streams", body = Failure)
    )
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    Extension(per_client): Extension<Arc<PerClient>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let streams: HashSet<String> = match query.streams {
        Some(raw) => parse_stream_list(&raw)?.into_iter().collect(),
        None => HashSet::new(),
    };
    let streams = Arc::new(streams);
    // Each stream holds a connection and a buffer, so their number is capped.
    if state.registry.subscriber_count() >= state.config.max_event_subscribers {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            "too many open event streams, retry later",
        ));
    }
    let client = client_ip(
        &headers,
        connect.map(|Extension(ConnectInfo(peer))| peer),
        state.config.trust_forwarded_for,
    );
    let slot = per_client.try_open(client).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_event_streams",
            "this client has too many open event streams",
        )
    })?;
    let (receiver, initial) = state.registry.subscribe(&streams);
    let registry = state.registry;
    let followed = Arc::clone(&streams);
    let live = BroadcastStream::new(receiver)
        .take_while(|item| !matches!(item, Ok(Event::Shutdown)))
        .map(move |item| match item {
            Ok(event) => vec![event],
            // Missed events are replaced by the full current list and placements.
            Err(BroadcastStreamRecvError::Lagged(_)) => registry.resync(&followed),
        });
    let live = futures_util::StreamExt::flat_map(live, tokio_stream::iter);
    let stream = tokio_stream::iter(initial)
        .chain(live)
        // The stream owns the client's slot: it is freed when the stream ends.
        .filter_map(move |event| {
            let _owned = &slot;
            sse_event(event, &streams)
        })
        .map(Ok::<_, Infallible>);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"));
    // Never stored; and a proxy (nginx) must pass each event on at once, not buffer it.
    Ok((
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        sse,
    ))
}

/// `GET /api/streaming/providers/admin`: every provider with full config and statistics.
#[utoipa::path(
    get,
    path = "/api/streaming/providers/admin",
    tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Every provider with config and statistics", body = Success<AdminProviders>),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn admin_list(_: AdminAuth, State(state): State<AppState>) -> impl IntoResponse {
    ok(field("providers", state.registry.admin_list()))
}

/// `GET /api/streaming/providers/{name}`: one provider with its recent checks.
#[utoipa::path(
    get,
    path = "/api/streaming/providers/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "Provider name")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "One provider with its recent checks", body = Success<AdminProvider>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn admin_get(
    _: AdminAuth,
    State(state): State<AppState>,
    ProviderName(name): ProviderName,
) -> Result<impl IntoResponse, ApiError> {
    let provider = state
        .registry
        .admin_get(&name)
        .ok_or_else(|| ApiError::unknown_provider(&name))?;
    Ok(ok(provider))
}

/// Query of the history route; unknown parameters are rejected like unknown body fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    /// Only checks at or after this time (unix milliseconds).
    since: Option<i64>,
    /// At most this many of the newest checks; capped at the history limit.
    limit: Option<usize>,
}

/// `GET /api/streaming/providers/{name}/history`: stored checks, oldest first (admin).
#[utoipa::path(
    get,
    path = "/api/streaming/providers/{name}/history",
    tag = "admin",
    params(("name" = String, Path, description = "Provider name"), ("since" = Option<i64>, Query, description = "Only checks at or after this time (unix milliseconds)"), ("limit" = Option<u64>, Query, minimum = 1, description = "At most this many of the newest checks")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Stored checks, oldest first", body = Success<CheckHistory>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn history(
    _: AdminAuth,
    State(state): State<AppState>,
    ProviderName(name): ProviderName,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let cap = state.config.history_limit;
    let limit = match query.limit {
        Some(0) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "limit must be at least 1",
            ))
        }
        Some(n) => n.min(cap),
        None => cap,
    };
    let history = state
        .registry
        .history(&name, query.since, limit)
        .ok_or_else(|| ApiError::unknown_provider(&name))?;
    Ok(ok(history))
}

/// `POST /api/streaming/providers`: create (super admin).
#[utoipa::path(
    post,
    path = "/api/streaming/providers",
    tag = "admin",
    request_body = NewProvider,
    security(("super_admin" = [])),
    responses(
        (status = 201, description = "Created", body = Success<AdminProvider>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 409, description = "Conflict (duplicate name, stale epoch, owned by another client)", body = Failure),
        (status = 413, description = "Body too large", body = Failure),
        (status = 415, description = "Body is not JSON", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn create(
    _: SuperAdminAuth,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewProvider>,
) -> Result<impl IntoResponse, ApiError> {
    let provider = state.registry.create(body).await?;
    Ok((StatusCode::CREATED, ok(provider)))
}

/// `PUT /api/streaming/providers/{name}`: partial update (admin).
#[utoipa::path(
    put,
    path = "/api/streaming/providers/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "Provider name")),
    request_body = ProviderUpdate,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Updated", body = Success<AdminProvider>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 413, description = "Body too large", body = Failure),
        (status = 415, description = "Body is not JSON", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn update(
    _: AdminAuth,
    State(state): State<AppState>,
    ProviderName(name): ProviderName,
    ApiJson(body): ApiJson<ProviderUpdate>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(ok(state.registry.update(&name, body).await?))
}

/// `DELETE /api/streaming/providers/{name}` (super admin).
#[utoipa::path(
    delete,
    path = "/api/streaming/providers/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "Provider name")),
    security(("super_admin" = [])),
    responses(
        (status = 200, description = "Deleted with its history", body = Success<Deleted>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn delete(
    _: SuperAdminAuth,
    State(state): State<AppState>,
    ProviderName(name): ProviderName,
) -> Result<impl IntoResponse, ApiError> {
    state.registry.delete(&name).await?;
    Ok(ok(field("deleted", name)))
}

/// `POST /api/streaming/providers/{name}/health-check`: probe now (admin).
#[utoipa::path(
    post,
    path = "/api/streaming/providers/{name}/health-check",
    tag = "admin",
    params(("name" = String, Path, description = "Provider name")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The check just made", body = Success<CheckReport>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn check_one(
    _: AdminAuth,
    State(state): State<AppState>,
    ProviderName(name): ProviderName,
) -> Result<impl IntoResponse, ApiError> {
    Ok(ok(state.registry.check(&name).await?))
}

/// `POST /api/streaming/providers/health-check-all`: probe every provider now (admin).
#[utoipa::path(
    post,
    path = "/api/streaming/providers/health-check-all",
    tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The checks just made", body = Success<CheckResults>),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn check_all(_: AdminAuth, State(state): State<AppState>) -> impl IntoResponse {
    ok(field("results", state.registry.check_all(false).await))
}

/// `GET /api/streaming/providers/health-check-all`: latest results (admin).
#[utoipa::path(
    get,
    path = "/api/streaming/providers/health-check-all",
    tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Latest check of every provider", body = Success<CheckResults>),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn latest_checks(
    _: AdminAuth,
    State(state): State<AppState>,
) -> impl IntoResponse {
    ok(field("results", state.registry.latest_checks()))
}

/// `GET /api/streaming/providers/failovers`: reported failovers, newest first (admin).
#[utoipa::path(
    get,
    path = "/api/streaming/providers/failovers",
    tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Reported failovers, newest first", body = Success<Failovers>),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn failovers(
    _: AdminAuth,
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(ok(field("failovers", state.registry.failovers().await?)))
}

/// `POST /api/streaming/sessions/events`: client session telemetry.
#[utoipa::path(
    post,
    path = "/api/streaming/sessions/events",
    tag = "telemetry",
    request_body = SessionEvent,
    security(("telemetry" = [])),
    responses(
        (status = 200, description = "Recorded; the stream counts of the providers named", body = Success<SessionCounts>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 413, description = "Body too large", body = Failure),
        (status = 415, description = "Body is not JSON", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn session_event(
    _: TelemetryAuth,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SessionEvent>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(ok(field(
        "providers",
        state.registry.session_event(body).await?,
    )))
}

/// `POST /api/streaming/sessions/alive`: a client's keep-alive listing its live streams.
/// Viewers' audience reports are counted under the sender's address (`SourceIp`).
#[utoipa::path(
    post,
    path = "/api/streaming/sessions/alive",
    tag = "telemetry",
    request_body = AliveReport,
    security(("telemetry" = [])),
    responses(
        (status = 200, description = "Recorded", body = Success<Tracked>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 413, description = "Body too large", body = Failure),
        (status = 415, description = "Body is not JSON", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn sessions_alive(
    _: TelemetryAuth,
    SourceIp(ip): SourceIp,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AliveReport>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(ok(field(
        "tracked",
        state.registry.sessions_alive(body, ip).await?,
    )))
}

/// `GET /healthz`: the registry process itself is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "public",
    responses(
        (status = 200, description = "The registry process is up", body = Success<Liveness>)
    )
)]
pub(crate) async fn liveness() -> impl IntoResponse {
    ok(field("status", "ok"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_variants() {
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "\"x\", W/\"abc\"".parse().unwrap());
        assert!(not_modified(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(not_modified(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "\"abd\"".parse().unwrap());
        assert!(!not_modified(&h, "\"abc\""));
    }
}
