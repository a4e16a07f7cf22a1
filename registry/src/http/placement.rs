//! Placement routes: the public read of a stream's placement (cached body, ETag), the
//! publisher's claim and release (authenticated like session telemetry), and the admin list.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::{AdminAuth, ApiJson, StreamId, TelemetryAuth};
use super::openapi::Failure;
use super::routes::{cached, ok, Success};
use super::AppState;
use crate::error::ApiError;
use crate::wire::{AdminStreams, PlacementView};
use crate::wire::{PlacementClaim, ReleaseQuery};

/// `GET /api/streaming/streams/{streamId}`: where the stream is published, with its audience
/// per provider while it has viewers (public, read-only).
#[utoipa::path(
    get,
    path = "/api/streaming/streams/{streamId}",
    operation_id = "stream_placement",
    tag = "public",
    params(("streamId" = String, Path, description = "Stream id")),
    responses(
        (status = 200, description = "Where the stream is published (with its audience while it has viewers)", body = Success<PlacementView>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    StreamId(stream_id): StreamId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (data, body) = state
        .registry
        .placements
        .public_data(&stream_id)
        .ok_or_else(|| ApiError::unknown_stream(&stream_id))?;
    Ok(
        match state.registry.audience.public_body(&stream_id, &data) {
            Some(with_audience) => cached(&headers, &with_audience),
            None => cached(&headers, &body),
        },
    )
}

/// `PUT /api/streaming/streams/{streamId}/placement`: a publisher's claim.
#[utoipa::path(
    put,
    operation_id = "claim_placement",
    path = "/api/streaming/streams/{streamId}/placement",
    tag = "telemetry",
    params(("streamId" = String, Path, description = "Stream id")),
    request_body = PlacementClaim,
    security(("telemetry" = [])),
    responses(
        (status = 200, description = "The claim was accepted", body = Success<PlacementView>),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 409, description = "Conflict (duplicate name, stale epoch, owned by another client)", body = Failure),
        (status = 413, description = "Body too large", body = Failure),
        (status = 415, description = "Body is not JSON", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn claim(
    _: TelemetryAuth,
    State(state): State<AppState>,
    StreamId(stream_id): StreamId,
    ApiJson(body): ApiJson<PlacementClaim>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(ok(state.registry.placements.claim(stream_id, body).await?))
}

/// `DELETE /api/streaming/streams/{streamId}/placement?clientId=`: the owner ends its stream.
#[utoipa::path(
    delete,
    operation_id = "release_placement",
    path = "/api/streaming/streams/{streamId}/placement",
    tag = "telemetry",
    params(("streamId" = String, Path, description = "Stream id"), ("clientId" = String, Query, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The owning client")),
    security(("telemetry" = [])),
    responses(
        (status = 204, description = "Released (or already ended)"),
        (status = 400, description = "Invalid input", body = Failure),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 404, description = "No such provider or stream", body = Failure),
        (status = 409, description = "Conflict (duplicate name, stale epoch, owned by another client)", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn release(
    _: TelemetryAuth,
    State(state): State<AppState>,
    StreamId(stream_id): StreamId,
    query: Result<Query<ReleaseQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    state.registry.placements.release(stream_id, query).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/admin/streams`: live placements with their owners (admin).
#[utoipa::path(
    get,
    path = "/api/admin/streams",
    operation_id = "admin_streams",
    tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Live placements with their owners", body = Success<AdminStreams>),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn admin_list(_: AdminAuth, State(state): State<AppState>) -> impl IntoResponse {
    ok(state.registry.placements.admin_list())
}

/// `GET /api/admin/audience`: every stream's audience per provider, while it has viewers (admin).
#[utoipa::path(
    get,
    path = "/api/admin/audience",
    operation_id = "admin_audience",
    tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Every stream's audience per provider", body = Success<crate::audience::AdminAudience>),
        (status = 401, description = "Missing or invalid bearer token", body = Failure),
        (status = 429, description = "Rate limited (see Retry-After)", body = Failure)
    )
)]
pub(crate) async fn admin_audience(
    _: AdminAuth,
    State(state): State<AppState>,
) -> impl IntoResponse {
    ok(state.registry.audience.admin_list())
}
