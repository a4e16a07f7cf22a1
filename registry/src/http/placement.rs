//! Placement routes: the public read of a stream's placement (cached body, ETag), the
//! publisher's claim and release (authenticated like session telemetry), and the admin list.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::{AdminAuth, ApiJson, StreamId, TelemetryAuth};
use super::routes::{cached, ok};
use super::AppState;
use crate::error::ApiError;
use crate::wire::{PlacementClaim, ReleaseQuery};

/// `GET /api/streaming/streams/{streamId}`: where the stream is published, with its audience
/// per provider while it has viewers (public, read-only).
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
pub(crate) async fn claim(
    _: TelemetryAuth,
    State(state): State<AppState>,
    StreamId(stream_id): StreamId,
    ApiJson(body): ApiJson<PlacementClaim>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(ok(state.registry.placements.claim(stream_id, body).await?))
}

/// `DELETE /api/streaming/streams/{streamId}/placement?clientId=`: the owner ends its stream.
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
pub(crate) async fn admin_list(_: AdminAuth, State(state): State<AppState>) -> impl IntoResponse {
    ok(state.registry.placements.admin_list())
}

/// `GET /api/admin/audience`: every stream's audience per provider, while it has viewers (admin).
pub(crate) async fn admin_audience(
    _: AdminAuth,
    State(state): State<AppState>,
) -> impl IntoResponse {
    ok(state.registry.audience.admin_list())
}
