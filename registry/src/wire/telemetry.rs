//! Session telemetry bodies (`POST /api/streaming/sessions/events` and `/alive`) and their
//! size and id checks.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Kind of session telemetry event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionEventKind {
    /// A stream started on `provider`.
    Start,
    /// A stream on `provider` ended.
    End,
    /// A stream moved from `provider` to `toProvider`.
    Failover,
}

/// Body of `POST /api/streaming/sessions/events`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: SessionEventKind,
    /// Provider the stream is (or was) on.
    pub provider: String,
    /// Client's stream id.
    #[schema(min_length = 1, max_length = 256)]
    pub stream_id: String,
    /// Failover target; required for failovers, refused otherwise.
    #[serde(default)]
    pub to_provider: Option<String>,
    /// Free-text reason, at most 512 bytes.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub reason: Option<String>,
    /// The reporting client (one engine instance). With it, reports are deduplicated per
    /// `(clientId, streamId)` and streams expire when the client stops confirming them;
    /// without it every report is counted as sent.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    pub client_id: Option<String>,
}

/// Body of `POST /api/streaming/sessions/alive`: every stream a client still runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AliveReport {
    /// The reporting client.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    pub client_id: String,
    /// Its live streams.
    #[schema(max_items = 500)]
    pub sessions: Vec<AliveSession>,
}

/// One live stream in an [`AliveReport`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AliveSession {
    /// Provider carrying it.
    pub provider: String,
    /// Client's stream id.
    #[schema(min_length = 1, max_length = 256)]
    pub stream_id: String,
    /// Whether the client publishes or watches the stream; absent: publisher (as before
    /// viewers reported). Both count as a live session of the provider alike.
    #[serde(default)]
    pub role: Role,
    /// A viewer's player state (audience report); absent: `ok`. Refused for publishers.
    #[serde(default)]
    pub audience: Option<AudienceState>,
}

/// What a client does with a stream it reports alive.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// It publishes the stream (the default).
    #[default]
    Publisher,
    /// It watches the stream.
    Viewer,
}

/// A viewer's player state, as its engine reports it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AudienceState {
    /// Frames arrive normally (the default).
    #[default]
    Ok,
    /// Frames arrive, but worse (lower quality, stutters).
    Degraded,
    /// No frames arrive: the picture is frozen.
    Stalled,
}

/// Most streams in one keep-alive report (clients send several when they run more).
pub const MAX_ALIVE_SESSIONS: usize = 500;

/// Longest accepted `clientId`.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Checks a `clientId`: 1 to 128 of `A-Za-z0-9-_.` (telemetry and placement claims).
pub fn validate_client_id(id: &str) -> Result<(), Invalid> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "invalid_client_id",
            "clientId must be 1 to 128 of A-Z a-z 0-9 - _ .",
        ))
    }
}

/// Checks a `streamId`: 1 to 256 bytes.
pub fn validate_stream_id(id: &str) -> Result<(), Invalid> {
    if id.is_empty() || id.len() > MAX_STREAM_ID_LEN {
        return Err(Invalid::new(
            "invalid_stream_id",
            "streamId must be 1 to 256 bytes",
        ));
    }
    Ok(())
}

impl AliveReport {
    /// Checks sizes and ids.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_client_id(&self.client_id)?;
        if self.sessions.len() > MAX_ALIVE_SESSIONS {
            return Err(Invalid::new(
                "too_many_sessions",
                "at most 500 sessions per keep-alive report",
            ));
        }
        for s in &self.sessions {
            validate_stream_id(&s.stream_id)?;
            if s.role == Role::Publisher && s.audience.is_some() {
                return Err(Invalid::new(
                    "unexpected_audience",
                    "audience is only allowed on viewer sessions (role \"viewer\")",
                ));
            }
        }
        Ok(())
    }
}

/// Longest accepted `streamId`.
pub const MAX_STREAM_ID_LEN: usize = 256;

/// Longest accepted failover `reason`.
pub const MAX_REASON_LEN: usize = 512;

impl SessionEvent {
    /// Checks field combinations serde cannot express.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_stream_id(&self.stream_id)?;
        if let Some(id) = &self.client_id {
            validate_client_id(id)?;
        }
        if self
            .reason
            .as_ref()
            .is_some_and(|r| r.len() > MAX_REASON_LEN)
        {
            return Err(Invalid::new(
                "invalid_reason",
                "reason must be at most 512 bytes",
            ));
        }
        match (self.kind, &self.to_provider) {
            (SessionEventKind::Failover, None) => Err(Invalid::new(
                "missing_to_provider",
                "a failover needs toProvider",
            )),
            (SessionEventKind::Failover, Some(to)) if *to == self.provider => Err(Invalid::new(
                "invalid_to_provider",
                "toProvider must differ from provider",
            )),
            (SessionEventKind::Start | SessionEventKind::End, Some(_)) => Err(Invalid::new(
                "unexpected_to_provider",
                "toProvider is only allowed on failover events",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> Result<AliveReport, String> {
        let r: AliveReport = serde_json::from_str(json).map_err(|e| e.to_string())?;
        r.validate().map_err(|e| e.code.to_string())?;
        Ok(r)
    }

    #[test]
    fn role_and_audience_are_optional_and_checked() {
        let r = report(r#"{"clientId":"c","sessions":[{"provider":"a","streamId":"s"}]}"#).unwrap();
        assert_eq!(
            (r.sessions[0].role, r.sessions[0].audience),
            (Role::Publisher, None)
        );
        let r = report(
            r#"{"clientId":"c","sessions":[{"provider":"a","streamId":"s","role":"viewer","audience":"stalled"}]}"#,
        )
        .unwrap();
        assert_eq!(
            (r.sessions[0].role, r.sessions[0].audience),
            (Role::Viewer, Some(AudienceState::Stalled))
        );
        assert_eq!(
            report(
                r#"{"clientId":"c","sessions":[{"provider":"a","streamId":"s","audience":"ok"}]}"#
            ),
            Err("unexpected_audience".into())
        );
        assert!(report(r#"{"clientId":"c","sessions":[{"provider":"a","streamId":"s","role":"viewer","audience":"frozen"}]}"#).is_err());
        assert!(report(
            r#"{"clientId":"c","sessions":[{"provider":"a","streamId":"s","role":"watcher"}]}"#
        )
        .is_err());
    }
}
