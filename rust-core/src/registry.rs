//! The provider registry (backend) client: reads the provider list and per-provider health.
//! Parsing is strict and size-bounded so a broken or hostile backend yields a typed
//! [`BackendError`], never a panic or an unbounded allocation.

use crate::error::BackendError;
use crate::placement::{error_code, parse_placement, placement_from, Placement, PlacementClaim};
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

/// A change announced on the registry's push channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// The provider list changed: re-read it.
    ProvidersChanged,
    /// A provider's health changed.
    HealthChanged {
        /// The provider.
        provider: String,
        /// Its new verdict.
        healthy: bool,
    },
    /// A stream this client follows was placed, moved, or ended (`event: placement`; sent only
    /// to clients that asked for the stream with `?streams=`).
    Placement(Placement),
    /// The registry's aggregate of a followed stream's viewers on one provider changed
    /// (`event: audience`, filtered like `placement`).
    Audience(crate::quality::AudienceView),
}

/// What a session report says happened (registry session telemetry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    /// A session went live on `provider`.
    Start,
    /// A session left `provider` for good (ended, failed, or shut down).
    End,
    /// A live session moved from `provider` to `to_provider`.
    Failover,
}

/// One session-telemetry report, as sent to `POST {base_url}/streaming/sessions/events`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionReport {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: ReportKind,
    /// The provider the session is (or was) on.
    pub provider: String,
    /// The session's stream id.
    pub stream_id: String,
    /// For failovers: where it went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_provider: Option<String>,
    /// For failovers: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The reporting engine instance (random per manager), so the registry can deduplicate
    /// reports and expire the streams of an instance that stopped confirming them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// One live session in a keep-alive report (`POST {base_url}/streaming/sessions/alive`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveSession {
    /// The provider carrying it.
    pub provider: String,
    /// Its stream id.
    pub stream_id: String,
    /// `"viewer"` for a viewer session; absent for a publisher (the registry's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// A viewer's player state (`ok`, `degraded`, `stalled`), which the registry aggregates
    /// per stream and provider into its `audience` signal; absent for publishers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<crate::quality::AudienceState>,
}

impl LiveSession {
    /// A publisher's entry.
    pub fn publisher(provider: &str, stream_id: &str) -> Self {
        Self {
            provider: provider.to_string(),
            stream_id: stream_id.to_string(),
            role: None,
            audience: None,
        }
    }
}

/// Most sessions per keep-alive request (the reference registry's limit).
pub const ALIVE_BATCH: usize = 500;

/// Where the provider list and health come from. [`HttpRegistry`] implements the documented
/// HTTP contract; apps with another backend implement this trait themselves.
#[async_trait]
pub trait ProviderRegistry: Send + Sync + 'static {
    /// Read the provider list; `etag` is the validator of the list the caller already has.
    async fn providers(&self, etag: Option<&str>) -> Result<ProviderList, BackendError>;
    /// Read the registry's health verdict for one provider.
    async fn health(&self, provider: &str) -> Result<RegistryHealth, BackendError>;
    /// Follow the registry's push channel, calling `on_event` for every change, until the
    /// channel closes (`Ok`) or fails. The default has no push channel: polling only.
    async fn follow(
        &self,
        _on_event: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<(), BackendError> {
        Err(BackendError::PushUnsupported)
    }
    /// Follow the push channel like [`follow`](Self::follow), also receiving the placement
    /// changes of `streams`. The default ignores `streams`.
    async fn follow_streams(
        &self,
        _streams: &[String],
        on_event: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<(), BackendError> {
        self.follow(on_event).await
    }
    /// Where `stream_id` is published; `Ok(None)` if it never was. The default has no
    /// placement directory: [`BackendError::Unsupported`].
    async fn placement(&self, _stream_id: &str) -> Result<Option<Placement>, BackendError> {
        Err(BackendError::Unsupported("placement directory".into()))
    }
    /// Claim `stream_id`'s placement for `claim.client_id`; the stored placement on success,
    /// [`BackendError::Conflict`] (`stale_epoch`, `owned_by_other`) when refused.
    async fn claim_placement(
        &self,
        _stream_id: &str,
        _claim: &PlacementClaim,
    ) -> Result<Placement, BackendError> {
        Err(BackendError::Unsupported("placement directory".into()))
    }
    /// End `client_id`'s claim of `stream_id` (the stream stopped).
    async fn release_placement(
        &self,
        _stream_id: &str,
        _client_id: &str,
    ) -> Result<(), BackendError> {
        Err(BackendError::Unsupported("placement directory".into()))
    }
    /// Send one session-telemetry report. The default drops it.
    async fn report(&self, _report: &SessionReport) -> Result<(), BackendError> {
        Ok(())
    }
    /// Confirm that `client_id` still runs `sessions` (at most [`ALIVE_BATCH`]), so the
    /// registry keeps counting them. The default drops it.
    async fn alive(&self, _client_id: &str, _sessions: &[LiveSession]) -> Result<(), BackendError> {
        Ok(())
    }
}

/// The HTTP registry client of the documented contract.
pub struct HttpRegistry {
    client: reqwest::Client,
    /// For the push channel: no whole-request timeout (the response never ends), only a
    /// connect timeout and an idle timeout enforced while reading.
    stream_client: reqwest::Client,
    request_timeout: Duration,
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
        let stream_client = reqwest::Client::builder()
            .connect_timeout(request_timeout)
            .build()
            .map_err(|e| BackendError::Network(e.to_string()))?;
        Ok(Self {
            client,
            stream_client,
            request_timeout,
            base: base_url.trim_end_matches('/').to_string(),
            token,
            max_bytes,
        })
    }

    /// `req` with the bearer token, if one is configured.
    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// GET `url`; `Ok(None)` on 304, else the ETag (if any) and the size-bounded body.
    async fn get(
        &self,
        url: String,
        etag: Option<&str>,
    ) -> Result<Option<(Option<String>, Vec<u8>)>, BackendError> {
        let mut req = self.authorized(self.client.get(url));
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
        Ok(Some((etag, self.read_bounded(&mut resp).await?)))
    }

    /// Read a body in chunks and stop at the limit: a lying or missing Content-Length must not
    /// let the backend make us buffer gigabytes.
    async fn read_bounded(&self, resp: &mut reqwest::Response) -> Result<Vec<u8>, BackendError> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_reqwest)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(BackendError::TooLarge {
                    limit: self.max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Send `req` with the token; the status and the size-bounded body, whatever the status
    /// (error answers carry a JSON code the caller may need).
    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), BackendError> {
        let mut resp = self.authorized(req).send().await.map_err(map_reqwest)?;
        let status = resp.status().as_u16();
        Ok((status, self.read_bounded(&mut resp).await?))
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

    async fn follow(
        &self,
        on_event: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<(), BackendError> {
        self.follow_sse(&[], on_event).await
    }

    async fn follow_streams(
        &self,
        streams: &[String],
        on_event: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<(), BackendError> {
        self.follow_sse(streams, on_event).await
    }

    async fn placement(&self, stream_id: &str) -> Result<Option<Placement>, BackendError> {
        let url = format!(
            "{}/streaming/streams/{}",
            self.base,
            encode_segment(stream_id)
        );
        let (status, body) = self.exchange(self.client.get(url)).await?;
        match status {
            200 => parse_placement(&body).map(Some),
            404 if error_code(&body).is_some_and(|(c, _)| c == "unknown_stream") => Ok(None),
            // Any other 404 (bare, or the JSON `not_found` of an older registry): no such route.
            404 | 405 | 501 => Err(BackendError::Unsupported("placement directory".into())),
            s => Err(BackendError::Status(s)),
        }
    }

    async fn claim_placement(
        &self,
        stream_id: &str,
        claim: &PlacementClaim,
    ) -> Result<Placement, BackendError> {
        let url = format!(
            "{}/streaming/streams/{}/placement",
            self.base,
            encode_segment(stream_id)
        );
        let json = serde_json::to_vec(claim).map_err(|e| BackendError::Schema(e.to_string()))?;
        let req = self
            .client
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json);
        let (status, body) = self.exchange(req).await?;
        match status {
            200 => parse_placement(&body),
            s => Err(write_refused(s, &body)),
        }
    }

    async fn release_placement(
        &self,
        stream_id: &str,
        client_id: &str,
    ) -> Result<(), BackendError> {
        let url = format!(
            "{}/streaming/streams/{}/placement",
            self.base,
            encode_segment(stream_id)
        );
        let req = self.client.delete(url).query(&[("clientId", client_id)]);
        let (status, body) = self.exchange(req).await?;
        match status {
            200 | 204 => Ok(()),
            s => Err(write_refused(s, &body)),
        }
    }

    async fn report(&self, report: &SessionReport) -> Result<(), BackendError> {
        self.post_json("sessions/events", report).await
    }

    async fn alive(&self, client_id: &str, sessions: &[LiveSession]) -> Result<(), BackendError> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Alive<'a> {
            client_id: &'a str,
            sessions: &'a [LiveSession],
        }
        self.post_json(
            "sessions/alive",
            &Alive {
                client_id,
                sessions,
            },
        )
        .await
    }
}

/// The registry sends a keep-alive at least every 15 s; silence for this long means the
/// connection is dead even if TCP has not noticed.
const PUSH_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

impl HttpRegistry {
    /// POST `body` as JSON to `{base}/streaming/{path}`; any non-2xx status is an error.
    async fn post_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<(), BackendError> {
        let body = serde_json::to_vec(body).map_err(|e| BackendError::Schema(e.to_string()))?;
        let req = self.authorized(
            self.client
                .post(format!("{}/streaming/{path}", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        );
        let resp = req.send().await.map_err(map_reqwest)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(BackendError::Status(resp.status().as_u16()))
        }
    }

    async fn follow_sse(
        &self,
        streams: &[String],
        on_event: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<(), BackendError> {
        let url = format!("{}/streaming/providers/events", self.base);
        let mut req = self.stream_client.get(url);
        if !streams.is_empty() {
            req = req.query(&[("streams", streams.join(","))]);
        }
        let req = self.authorized(req.header(reqwest::header::ACCEPT, "text/event-stream"));
        let mut resp = tokio::time::timeout(self.request_timeout, req.send())
            .await
            .map_err(|_| BackendError::Timeout)?
            .map_err(map_reqwest)?;
        let status = resp.status();
        if matches!(status.as_u16(), 404 | 405 | 501) {
            return Err(BackendError::PushUnsupported);
        }
        if !status.is_success() {
            return Err(BackendError::Status(status.as_u16()));
        }
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Err(BackendError::PushUnsupported);
        }
        let mut parser = SseParser::new(self.max_bytes);
        loop {
            let chunk = tokio::time::timeout(PUSH_IDLE_TIMEOUT, resp.chunk())
                .await
                .map_err(|_| BackendError::Timeout)?
                .map_err(map_reqwest)?;
            let Some(chunk) = chunk else {
                return Ok(());
            };
            for ev in parser.push(&chunk)? {
                if let Some(p) = push_event(&ev) {
                    on_event(p);
                }
            }
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`"message"` when absent).
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// Incremental `text/event-stream` parser: bytes in, complete events out. Bounded: a line
/// longer than the limit is an error, not an ever-growing buffer.
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    /// The `data:` lines so far, joined by newlines; `None` before the first.
    data: Option<String>,
    max: usize,
}

impl SseParser {
    /// A parser that refuses lines longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            line: Vec::new(),
            event: None,
            data: None,
            max,
        }
    }

    /// Feed bytes; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, BackendError> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= self.max {
                    return Err(BackendError::TooLarge { limit: self.max });
                }
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            if line.is_empty() {
                if self.data.is_some() || self.event.is_some() {
                    out.push(SseEvent {
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        data: self.data.take().unwrap_or_default(),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // comment / keep-alive
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => self.event = Some(value.to_string()),
                "data" => {
                    // The whole event is bounded, not only each line: `data:` lines without
                    // the blank line that ends an event must not pile up for ever.
                    let len = self.data.as_ref().map_or(0, |d| d.len() + 1) + value.len();
                    if len > self.max {
                        return Err(BackendError::TooLarge { limit: self.max });
                    }
                    match &mut self.data {
                        Some(data) => {
                            data.push('\n');
                            data.push_str(value);
                        }
                        None => self.data = Some(value.to_string()),
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

fn push_event(ev: &SseEvent) -> Option<PushEvent> {
    match ev.event.as_str() {
        "providers" => Some(PushEvent::ProvidersChanged),
        "health" => {
            let v: Value = serde_json::from_str(&ev.data).ok()?;
            Some(PushEvent::HealthChanged {
                provider: v.get("provider")?.as_str()?.to_string(),
                healthy: v.get("healthy")?.as_bool()?,
            })
        }
        "placement" => {
            let v: Value = serde_json::from_str(&ev.data).ok()?;
            placement_from(&v).ok().map(PushEvent::Placement)
        }
        "audience" => {
            let v: Value = serde_json::from_str(&ev.data).ok()?;
            let name = |k: &str| {
                v.get(k)?
                    .as_str()
                    .filter(|s| !s.is_empty() && s.len() <= 128)
                    .map(str::to_string)
            };
            let count = |k: &str| v.get(k)?.as_u64().and_then(|n| u32::try_from(n).ok());
            Some(PushEvent::Audience(crate::quality::AudienceView {
                stream_id: name("streamId")?,
                provider: name("provider")?,
                viewers: count("viewers")?,
                stalled: count("stalled")?,
                degraded: count("degraded").unwrap_or(0),
                outage: v.get("outage")?.as_bool()?,
            }))
        }
        _ => None,
    }
}

/// Why the registry refused a write: a conflict (409 with its code), no such route (an older
/// registry), or another status.
fn write_refused(status: u16, body: &[u8]) -> BackendError {
    match status {
        409 => {
            let (code, message) =
                error_code(body).unwrap_or_else(|| ("conflict".into(), String::new()));
            BackendError::Conflict { code, message }
        }
        // An older registry: no such route (a bare 404, or its JSON `not_found`).
        404 | 405 | 501 if error_code(body).is_none_or(|(c, _)| c == "not_found") => {
            BackendError::Unsupported("placement directory".into())
        }
        s => BackendError::Status(s),
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

pub(crate) fn envelope(body: &[u8]) -> Result<Value, BackendError> {
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
    fn sse_parser_handles_split_chunks_crlf_comments_and_multiline_data() {
        let mut p = SseParser::new(1024);
        let mut got = Vec::new();
        let input = b": keep-alive\r\nevent: providers\r\ndata: {\"a\":1}\r\n\r\nevent: health\ndata: line1\ndata: line2\n\ndata: plain\n\n";
        // Feed one byte at a time: events must not depend on chunk boundaries.
        for b in input.iter() {
            got.extend(p.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(
            got,
            vec![
                SseEvent {
                    event: "providers".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "health".into(),
                    data: "line1\nline2".into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "plain".into()
                },
            ]
        );
    }

    /// Found while writing the `sse` fuzz target's bound on the parser's state: each line was
    /// bounded, but `data:` lines without the blank line that ends an event piled up without
    /// limit (a hostile registry could grow a client's memory for ever).
    #[test]
    fn sse_parser_bounds_an_event_without_its_blank_line() {
        let mut p = SseParser::new(64);
        let mut result = Ok(Vec::new());
        for _ in 0..1000 {
            result = p.push(b"data: x\n");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(BackendError::TooLarge { limit: 64 }));
        // Empty data lines count too (each adds a newline).
        let mut p = SseParser::new(64);
        assert!(p.push(&b"data:\n".repeat(100)).is_err());
        // An event within the limit still parses, empty lines and all.
        let mut p = SseParser::new(64);
        assert_eq!(
            p.push(b"data:\ndata:\ndata: a\n\n").unwrap(),
            vec![SseEvent {
                event: "message".into(),
                data: "\n\na".into()
            }]
        );
    }

    #[test]
    fn sse_parser_refuses_endless_lines() {
        let mut p = SseParser::new(16);
        assert_eq!(
            p.push(&[b'x'; 64]),
            Err(BackendError::TooLarge { limit: 16 })
        );
    }

    #[test]
    fn push_events_are_recognised() {
        let ev = |e: &str, d: &str| SseEvent {
            event: e.into(),
            data: d.into(),
        };
        assert_eq!(
            push_event(&ev("providers", "{}")),
            Some(PushEvent::ProvidersChanged)
        );
        assert_eq!(
            push_event(&ev(
                "health",
                r#"{"provider":"agora","healthy":false,"status":"down"}"#
            )),
            Some(PushEvent::HealthChanged {
                provider: "agora".into(),
                healthy: false
            })
        );
        assert_eq!(
            push_event(&ev(
                "placement",
                r#"{"streamId":"s1","provider":"zegocloud","epoch":2,"standby":[],"live":true}"#
            )),
            Some(PushEvent::Placement(Placement {
                stream_id: "s1".into(),
                provider: "zegocloud".into(),
                epoch: 2,
                standby: vec![],
                live: true,
            }))
        );
        assert_eq!(push_event(&ev("placement", r#"{"streamId":"s1"}"#)), None);
        assert_eq!(
            push_event(&ev(
                "audience",
                r#"{"streamId":"s1","provider":"agora","viewers":5,"stalled":3,"degraded":0,"stalledShare":0.6,"outage":true,"at":1}"#
            )),
            Some(PushEvent::Audience(crate::quality::AudienceView {
                stream_id: "s1".into(),
                provider: "agora".into(),
                viewers: 5,
                stalled: 3,
                degraded: 0,
                outage: true,
            }))
        );
        assert_eq!(
            push_event(&ev(
                "audience",
                r#"{"streamId":"s1","provider":"agora","viewers":-1,"stalled":0,"outage":false}"#
            )),
            None
        );
        assert_eq!(push_event(&ev("health", "not json")), None);
        assert_eq!(push_event(&ev("other", "{}")), None);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("agora"), "agora");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
