//! Request extractors: bearer-token roles compared in constant time, strict JSON
//! bodies that map every failure to the API's error envelope, provider names
//! from the path, and the client address used for rate limiting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::config::Secret;
use crate::error::ApiError;

/// Compares two byte strings in time that depends only on their lengths'
/// maximum, never on where they first differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    // black_box keeps the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether `presented` equals any configured token; every configured token is
/// compared so timing does not reveal which one exists.
fn matches_any(presented: &str, tokens: &[&Option<Secret>]) -> bool {
    tokens.iter().fold(false, |found, token| {
        let hit = token
            .as_ref()
            .is_some_and(|t| constant_time_eq(presented.as_bytes(), t.expose().as_bytes()));
        found | hit
    })
}

/// The address a request is rate-limited under.
pub(crate) fn client_ip(
    parts_headers: &HeaderMap,
    connect: Option<SocketAddr>,
    trust_xff: bool,
) -> IpAddr {
    if trust_xff {
        // The proxy appends the peer it saw, so the last entry is the one it vouches for.
        // Entries before it are whatever the client sent, so a bad last entry
        // falls back to the peer address rather than to those.
        let forwarded = parts_headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|s| !s.is_empty())
            .and_then(|s| s.parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    connect
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn parts_ip(parts: &Parts, state: &AppState) -> IpAddr {
    let connect = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    client_ip(&parts.headers, connect, state.config.trust_forwarded_for)
}

/// Failed authentication costs a rate-limit token, which throttles token guessing.
fn reject(parts: &Parts, state: &AppState) -> ApiError {
    match state.limiter.check(parts_ip(parts, state)) {
        Ok(()) => ApiError::unauthorized(),
        Err(wait) => ApiError::rate_limited(wait),
    }
}

/// Proof that the request carries the admin or super-admin token.
#[derive(Debug)]
pub(crate) struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let c = &state.config;
        match bearer(&parts.headers) {
            Some(t) if matches_any(t, &[&c.admin_token, &c.super_admin_token]) => Ok(AdminAuth),
            _ => Err(reject(parts, state)),
        }
    }
}

/// Proof that the request carries the super-admin token.
#[derive(Debug)]
pub(crate) struct SuperAdminAuth;

impl FromRequestParts<AppState> for SuperAdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(t) if matches_any(t, &[&state.config.super_admin_token]) => Ok(SuperAdminAuth),
            _ => Err(reject(parts, state)),
        }
    }
}

/// Telemetry needs the telemetry token or an admin one, unless `open_telemetry` is set.
#[derive(Debug)]
pub(crate) struct TelemetryAuth;

impl FromRequestParts<AppState> for TelemetryAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let c = &state.config;
        if c.open_telemetry {
            return Ok(TelemetryAuth);
        }
        let tokens = [&c.telemetry_token, &c.admin_token, &c.super_admin_token];
        match bearer(&parts.headers) {
            Some(t) if matches_any(t, &tokens) => Ok(TelemetryAuth),
            _ => Err(reject(parts, state)),
        }
    }
}

/// The address a request came from (as rate limiting sees it: the peer, or the proxy's
/// `X-Forwarded-For` entry when trusted).
#[derive(Debug)]
pub(crate) struct SourceIp(pub IpAddr);

impl FromRequestParts<AppState> for SourceIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(SourceIp(parts_ip(parts, state)))
    }
}

/// The `{name}` path segment.
#[derive(Debug)]
pub(crate) struct ProviderName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ProviderName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(name)| ProviderName(name))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// The `{streamId}` path segment, checked like every stream id.
#[derive(Debug)]
pub(crate) struct StreamId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for StreamId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ProviderName(id) = ProviderName::from_request_parts(parts, state).await?;
        crate::wire::validate_stream_id(&id)?;
        Ok(StreamId(id))
    }
}

/// A JSON body parsed strictly into `T`, with JSON errors for every failure.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        // Requiring a JSON content type also keeps cross-site "simple" form
        // posts from reaching the open telemetry route.
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is too large",
                )
            } else {
                ApiError::bad_request("invalid_body", e.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            use serde_json::error::Category;
            let message = e.to_string();
            let code = match e.classify() {
                Category::Data if message.starts_with("unknown field") => "unknown_field",
                Category::Data => "invalid_field",
                Category::Syntax | Category::Eof | Category::Io => "invalid_json",
            };
            ApiError::bad_request(code, message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_semantics() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
        // A prefix padded with zero bytes must not match.
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn forwarded_for_is_used_only_when_trusted() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        let peer: SocketAddr = "127.0.0.1:5".parse().unwrap();
        assert_eq!(client_ip(&h, Some(peer), false), peer.ip());
        assert_eq!(
            client_ip(&h, Some(peer), true),
            "2.2.2.2".parse::<IpAddr>().unwrap()
        );
    }
}
