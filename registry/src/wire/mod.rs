//! The JSON the API reads and writes: request bodies with their validation, and the views each
//! audience sees. Plain serde types that know nothing of the server (no HTTP, store or state);
//! a body that fails validation is an [`Invalid`], which the HTTP layer answers with a 400.

mod placement;
mod provider;
mod telemetry;
mod views;

pub use placement::{
    parse_stream_list, AdminPlacement, AdminStreams, PlacementClaim, PlacementView, ReleaseQuery,
    MAX_STANDBY, MAX_SUBSCRIBED_STREAMS,
};
pub use provider::{
    public_config, validate_cost, validate_name, validate_priority, NewProvider, Probe,
    ProviderUpdate, SeedFile, MAX_NAME_LEN, RESERVED_NAMES,
};
pub use telemetry::{
    validate_client_id, validate_stream_id, AliveReport, AliveSession, AudienceState, Role,
    SessionEvent, SessionEventKind, MAX_ALIVE_SESSIONS, MAX_CLIENT_ID_LEN, MAX_REASON_LEN,
    MAX_STREAM_ID_LEN,
};
pub use views::{
    AdminProvider, CheckHistory, CheckReport, CheckSample, FailoverEntry, PublicHealth,
    PublicProvider, Statistics, StreamCounts,
};

/// Why a request body was refused: a stable machine-readable code (e.g. `invalid_name`) and
/// a message for people. The API answers it as `400 {"code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Invalid {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl Invalid {
    /// A refusal with the given code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
