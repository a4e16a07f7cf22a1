//! The admin dashboard: three static files compiled into the binary and served
//! with a strict Content-Security-Policy. The files hold no data: the page asks
//! for the admin token and calls the admin routes with it (see `dashboard/app.js`).

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLESHEET: &str = include_str!("dashboard/app.css");

/// Only same-origin files and connections; no inline script or style, no
/// plugins, no framing, no `<base>` rewriting, and no form submissions (the
/// login form is handled by script, so a failed script cannot post the token anywhere).
pub(crate) const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 7] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        // Revalidate on each load so a new binary's files are picked up at once.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, body)
}

/// `GET /admin`: the dashboard page.
pub(crate) async fn page() -> impl IntoResponse {
    file("text/html; charset=utf-8", PAGE)
}

/// `GET /admin/app.js`: the dashboard's script.
pub(crate) async fn script() -> impl IntoResponse {
    file("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /admin/app.css`: the dashboard's stylesheet.
pub(crate) async fn stylesheet() -> impl IntoResponse {
    file("text/css; charset=utf-8", STYLESHEET)
}
