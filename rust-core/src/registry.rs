//! The provider registry (backend) client: reads the provider list and per-provider health.
//! Parsing is strict and size-bounded so a broken or hostile backend yields a typed
//! [`BackendError`], never a panic or an unbounded allocation.

use crate::error::BackendError;
use crate::provider::ProviderInfo;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// A provider list read from the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderList {
    /// The list is unchanged since the ETag the caller sent.
    NotModified,
    /// A fresh list, with the ETag to send next time if the registry gave one.
    Fresh {
        /// The providers, in registry order.
        providers: Vec<ProviderInfo>,
        /// Cache validator for the next request.
        etag: Option<String>,
    },
}

/// The registry's view of one provider's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHealth {
    /// Whether the registry considers the provider usable.
    pub healthy: bool,
    /// The registry's status word (e.g. `"active"`).
    pub status: String,
}

/// Where the provider list and health come from. [`HttpRegistry`] implements the documented
/// HTTP contract; apps with another backend implement this trait themselves.
#[async_trait]
pub trait ProviderRegistry: Send + Sync + 'static {
    /// Read the provider list; `etag` is the validator of the list the caller already has.
    async fn providers(&self, etag: Option<&str>) -> Result<ProviderList, BackendError>;
    /// Read the registry's health verdict for one provider.
    async fn health(&self, provider: &str) -> Result<RegistryHealth, BackendError>;
}

/// The HTTP registry client of the documented contract.
pub struct HttpRegistry {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    max_bytes: usize,
}

impl HttpRegistry {
    /// A client for `base_url` (the part before `/streaming/providers`).
    pub fn new(
        base_url: &str,
        token: Option<String>,
        request_timeout: Duration,
        max_bytes: usize,
    ) -> Result<Self, BackendError> {
        let client = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .build()
            .map_err(|e| BackendError::Network(e.to_string()))?;
        Ok(Self {
            client,
            base: base_url.trim_end_matches('/').to_string(),
            token,
            max_bytes,
        })
    }

    /// GET `url`; `Ok(None)` on 304, else the ETag (if any) and the size-bounded body.
    async fn get(
        &self,
        url: String,
        etag: Option<&str>,
    ) -> Result<Option<(Option<String>, Vec<u8>)>, BackendError> {
        let mut req = self.client.get(url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(e) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        let mut resp = req.send().await.map_err(map_reqwest)?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(BackendError::Status(status.as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(BackendError::TooLarge {
                limit: self.max_bytes,
            });
        }
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Read in chunks and stop at the limit: a lying or missing Content-Length must not let
        // the backend make us buffer gigabytes.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_reqwest)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(BackendError::TooLarge {
                    limit: self.max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some((etag, body)))
    }
}

fn map_reqwest(e: reqwest::Error) -> BackendError {
    if e.is_timeout() {
        BackendError::Timeout
    } else {
        // Without the URL: it may carry credentials in a query string.
        BackendError::Network(e.without_url().to_string())
    }
}

#[async_trait]
impl ProviderRegistry for HttpRegistry {
    async fn providers(&self, etag: Option<&str>) -> Result<ProviderList, BackendError> {
        let url = format!("{}/streaming/providers", self.base);
        match self.get(url, etag).await? {
            None => Ok(ProviderList::NotModified),
            Some((etag, body)) => {
                let providers = parse_provider_list(&body)?;
                Ok(ProviderList::Fresh { providers, etag })
            }
        }
    }

    async fn health(&self, provider: &str) -> Result<RegistryHealth, BackendError> {
        let url = format!(
            "{}/streaming/providers/{}/health",
            self.base,
            encode_segment(provider)
        );
        match self.get(url, None).await {
            Ok(Some((_, body))) => parse_health(&body),
            Ok(None) => Err(BackendError::Status(304)),
            Err(BackendError::Status(404)) => Err(BackendError::UnknownProvider(provider.into())),
            Err(e) => Err(e),
        }
    }
}

/// Percent-encode a path segment (names are usually plain, but the registry is not trusted).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn envelope(body: &[u8]) -> Result<Value, BackendError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| BackendError::NotJson(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| BackendError::Schema("top level is not an object".into()))?;
    match obj.get("success") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            let msg = obj
                .get("error")
                .or_else(|| obj.get("message"))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "no detail".into());
            return Err(BackendError::Unsuccessful(truncate(&msg, 200)));
        }
        _ => return Err(BackendError::Schema("`success` must be a boolean".into())),
    }
    obj.get("data")
        .cloned()
        .ok_or_else(|| BackendError::Schema("missing `data`".into()))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Parse a provider-list response body.
pub fn parse_provider_list(body: &[u8]) -> Result<Vec<ProviderInfo>, BackendError> {
    let data = envelope(body)?;
    let list = data
        .get("providers")
        .and_then(Value::as_array)
        .ok_or_else(|| BackendError::Schema("`data.providers` must be an array".into()))?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let p = parse_provider(i, item)?;
        if !seen.insert(p.name.clone()) {
            return Err(BackendError::DuplicateProvider(p.name));
        }
        out.push(p);
    }
    Ok(out)
}

fn parse_provider(i: usize, v: &Value) -> Result<ProviderInfo, BackendError> {
    let schema = |field: &str, want: &str| {
        BackendError::Schema(format!("providers[{i}].{field} must be {want}"))
    };
    let o = v
        .as_object()
        .ok_or_else(|| BackendError::Schema(format!("providers[{i}] must be an object")))?;
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty() && s.len() <= 128)
        .ok_or_else(|| schema("name", "a non-empty string of at most 128 bytes"))?
        .to_string();
    let is_active = o
        .get("isActive")
        .and_then(Value::as_bool)
        .ok_or_else(|| schema("isActive", "a boolean"))?;
    let priority = o
        .get("priority")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| schema("priority", "a non-negative integer"))?;
    let config = match o.get("config") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(schema("config", "an object")),
    };
    let opt_u32 = |field: &str| -> Result<Option<u32>, BackendError> {
        match o.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| schema(field, "a non-negative integer or null")),
        }
    };
    Ok(ProviderInfo {
        name,
        is_active,
        priority,
        config,
        max_streams: opt_u32("maxStreams")?,
        active_streams: opt_u32("activeStreams")?,
    })
}

/// Parse a health response body.
pub fn parse_health(body: &[u8]) -> Result<RegistryHealth, BackendError> {
    let data = envelope(body)?;
    let healthy = data
        .get("healthy")
        .and_then(Value::as_bool)
        .ok_or_else(|| BackendError::Schema("`data.healthy` must be a boolean".into()))?;
    let status = match data.get("status") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => truncate(s, 64),
        Some(_) => {
            return Err(BackendError::Schema(
                "`data.status` must be a string".into(),
            ))
        }
    };
    Ok(RegistryHealth { healthy, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_contract() {
        let body = br#"{"success":true,"data":{"providers":[
            {"name":"agora","isActive":true,"priority":1,"config":{"appId":"x"}},
            {"name":"zegocloud","isActive":false,"priority":2,"config":{},"maxStreams":5,"activeStreams":1,"extra":"ignored"}]}}"#;
        let l = parse_provider_list(body).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, "agora");
        assert_eq!(l[0].config["appId"], "x");
        assert!(!l[1].is_active);
        assert_eq!(l[1].max_streams, Some(5));
        assert_eq!(l[1].active_streams, Some(1));
    }

    #[test]
    fn rejects_bad_shapes_with_typed_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"<html>", "NotJson"),
            (b"[]", "Schema"),
            (br#"{"success":true}"#, "Schema"),
            (br#"{"success":"yes","data":{}}"#, "Schema"),
            (br#"{"success":true,"data":{"providers":{}}}"#, "Schema"),
            (br#"{"success":true,"data":{"providers":[{"isActive":true,"priority":1}]}}"#, "Schema"),
            (br#"{"success":true,"data":{"providers":[{"name":"a","isActive":"yes","priority":1}]}}"#, "Schema"),
            (br#"{"success":true,"data":{"providers":[{"name":"a","isActive":true,"priority":-1}]}}"#, "Schema"),
            (br#"{"success":true,"data":{"providers":[{"name":"a","isActive":true,"priority":1.5}]}}"#, "Schema"),
            (br#"{"success":true,"data":{"providers":[{"name":"a","isActive":true,"priority":1,"config":[]}]}}"#, "Schema"),
            (br#"{"success":true,"data":{"providers":[{"name":"a","isActive":true,"priority":1,"maxStreams":"3"}]}}"#, "Schema"),
            (br#"{"success":true,"data":{"providers":[{"name":"a","isActive":true,"priority":1},{"name":"a","isActive":true,"priority":2}]}}"#, "DuplicateProvider"),
            (br#"{"success":false,"error":"db down"}"#, "Unsuccessful"),
        ];
        for (body, want) in cases {
            let e = parse_provider_list(body).unwrap_err();
            assert!(
                format!("{e:?}").starts_with(want),
                "{} gave {e:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn schema_errors_name_the_field() {
        let e = parse_provider_list(
            br#"{"success":true,"data":{"providers":[{"name":"a","isActive":true,"priority":1},{"name":"b","isActive":true}]}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            BackendError::Schema("providers[1].priority must be a non-negative integer".into())
        );
    }

    #[test]
    fn parses_health() {
        let h = parse_health(
            br#"{"success":true,"data":{"healthy":false,"provider":"agora","status":"down"}}"#,
        )
        .unwrap();
        assert_eq!(
            h,
            RegistryHealth {
                healthy: false,
                status: "down".into()
            }
        );
        assert!(parse_health(br#"{"success":true,"data":{"healthy":"no"}}"#).is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("agora"), "agora");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
