//! Error types: [`ApiError`] is what HTTP clients see, [`StoreError`] what a database
//! operation fails with, [`RegistryError`] what starting the server can fail with. Every API
//! failure becomes the same `{"success":false,"error":{"code","message"}}` envelope.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::wire::Invalid;

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `unknown_provider`.
    pub code: &'static str,
    /// Human-readable explanation; never contains secrets.
    pub message: String,
    /// Seconds for a `Retry-After` header (rate limiting).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with a specific code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 for a provider that does not exist.
    pub fn unknown_provider(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!("no provider named '{}'", truncate(name, 64)),
        )
    }

    /// 404 for a stream without a stored placement.
    pub fn unknown_stream(stream_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            format!("no placement for stream '{}'", truncate(stream_id, 64)),
        )
    }

    /// 401 with one message for every cause, so callers learn nothing about
    /// which tokens exist or which one they came close to.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }

    /// 429 telling the client how long to wait.
    pub fn rate_limited(wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests, slow down",
            )
        }
    }

    /// 500 that hides the internal cause (it is logged instead).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        )
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        Self::bad_request(e.code, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(name) => Self::new(
                StatusCode::CONFLICT,
                "duplicate_provider",
                format!("a provider named '{name}' already exists"),
            ),
            StoreError::NotFound(name) => Self::unknown_provider(&name),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(serde::Serialize)]
        struct Failure<'a> {
            success: bool,
            error: Detail<'a>,
        }
        #[derive(serde::Serialize)]
        struct Detail<'a> {
            code: &'a str,
            message: &'a str,
        }
        let body = Failure {
            success: false,
            error: Detail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A provider with this name already exists.
    #[error("provider '{0}' already exists")]
    Duplicate(String),
    /// No provider with this name.
    #[error("provider '{0}' not found")]
    NotFound(String),
    /// The database was written by a newer version of the registry.
    #[error("database schema version {found} is newer than supported version {supported}")]
    TooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had (pool exhausted, server unreachable, bad URL).
    #[error("postgres pool: {0}")]
    Pool(String),
    /// A stored JSON column could not be read back.
    #[error("corrupt stored json: {0}")]
    Json(#[from] serde_json::Error),
    /// The blocking task running the query panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be opened, migrated or read.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The seed file could not be read or is invalid.
    #[error("seed: {0}")]
    Seed(String),
    /// Binding the listener or another socket operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(
            ApiError::rate_limited(Duration::from_millis(1)).retry_after,
            Some(1)
        );
        assert_eq!(
            ApiError::rate_limited(Duration::from_millis(2500)).retry_after,
            Some(3)
        );
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("ääää", 2), "ää");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
