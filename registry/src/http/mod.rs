//! The HTTP surface: route table, CORS and rate-limit middleware.
//! Handlers live in [`routes`]; authentication and body parsing in [`extract`];
//! the admin dashboard's static files in [`dashboard`].

mod dashboard;
mod extract;
pub(crate) mod openapi;
mod per_client;
mod placement;
mod routes;
mod server;

pub(crate) use server::{serve as serve_connections, ConnectionLimits};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;

use crate::config::Config;
use crate::error::ApiError;
use crate::rate_limit::RateLimiter;
use crate::state::Registry;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub registry: Arc<Registry>,
    pub config: Arc<Config>,
    pub limiter: Arc<RateLimiter>,
}

/// Builds the complete application.
pub(crate) fn router(state: AppState) -> Router {
    let limited = middleware::from_fn_with_state(state.clone(), rate_limit);
    let api = "/api/streaming/providers";
    Router::new()
        .route(
            api,
            get(routes::public_list)
                .layer(limited.clone())
                .post(routes::create),
        )
        .route(&format!("{api}/admin"), get(routes::admin_list))
        .route(
            &format!("{api}/events"),
            get(routes::events).layer(limited.clone()),
        )
        .route(&format!("{api}/failovers"), get(routes::failovers))
        .route(
            &format!("{api}/health-check-all"),
            get(routes::latest_checks).post(routes::check_all),
        )
        .route(
            &format!("{api}/{{name}}"),
            get(routes::admin_get)
                .put(routes::update)
                .delete(routes::delete),
        )
        .route(
            &format!("{api}/{{name}}/health"),
            get(routes::public_health).layer(limited.clone()),
        )
        .route(&format!("{api}/{{name}}/history"), get(routes::history))
        .route(
            &format!("{api}/{{name}}/health-check"),
            post(routes::check_one),
        )
        .route(
            "/api/streaming/sessions/events",
            post(routes::session_event).layer(limited.clone()),
        )
        .route(
            "/api/streaming/sessions/alive",
            post(routes::sessions_alive).layer(limited.clone()),
        )
        .route(
            "/api/streaming/streams/{stream_id}",
            get(placement::get).layer(limited.clone()),
        )
        .route(
            "/api/streaming/streams/{stream_id}/placement",
            put(placement::claim)
                .delete(placement::release)
                .layer(limited.clone()),
        )
        .route("/api/admin/streams", get(placement::admin_list))
        .route("/api/admin/audience", get(placement::admin_audience))
        // The dashboard: public static files (no data); everything it shows comes
        // from the admin routes above, called with the token the user types in.
        .route("/admin", get(dashboard::page).layer(limited.clone()))
        .route("/admin/", get(dashboard::page).layer(limited.clone()))
        .route(
            "/admin/app.js",
            get(dashboard::script).layer(limited.clone()),
        )
        .route("/admin/app.css", get(dashboard::stylesheet).layer(limited))
        .route("/healthz", get(routes::liveness))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        // The event stream's per-client cap (one per server).
        .layer(axum::Extension(per_client::PerClient::new(
            state.config.max_event_subscribers_per_client,
        )))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let connect = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = extract::client_ip(request.headers(), connect, state.config.trust_forwarded_for);
    match state.limiter.check(ip) {
        Ok(()) => next.run(request).await,
        Err(wait) => ApiError::rate_limited(wait).into_response(),
    }
}

/// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
fn allowed_origin(config: &Config, origin: &str) -> Option<HeaderValue> {
    if config.cors_origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    config
        .cors_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
        .then(|| HeaderValue::from_str(origin).ok())
        .flatten()
}

/// Answers preflights and adds CORS headers for configured origins only.
async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allowed = origin
        .as_deref()
        .and_then(|o| allowed_origin(&state.config, o));
    let preflight = request.method() == Method::OPTIONS
        && origin.is_some()
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        match &allowed {
            Some(_) => {
                let mut r = StatusCode::NO_CONTENT.into_response();
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("authorization, content-type, if-none-match"),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                );
                r
            }
            None => ApiError::new(
                StatusCode::FORBIDDEN,
                "cors_origin_not_allowed",
                "origin not allowed",
            )
            .into_response(),
        }
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    if let Some(value) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("etag, retry-after"),
        );
    }
    if !state.config.cors_origins.is_empty() {
        // Answers differ per origin, so shared caches must key on it.
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}
