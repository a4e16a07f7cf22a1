//! Errors of the engine. Host adapters report a [`ProviderError`] whose kind decides what the
//! engine does next; callers of the manager get one public enum, [`StreamguardError`].

use serde::Serialize;
use std::fmt;

/// What went wrong inside a provider call. The kind, not the message, drives retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ProviderErrorKind {
    /// The call did not finish in time (also used when an adapter hangs past `adapter_timeout`).
    Timeout,
    /// A network error between the device and the provider.
    Network,
    /// The provider answered but is temporarily unable to serve.
    Unavailable,
    /// Credentials were refused: retrying the same provider cannot help.
    Unauthorized,
    /// The provider's quota or capacity is exhausted.
    QuotaExceeded,
    /// The request itself is invalid (unknown or banned stream): no provider can serve it.
    InvalidStream,
    /// The adapter does not implement this operation (the default for `probe`).
    NotSupported,
    /// The adapter failed in an unexpected way: it panicked or threw an unknown exception.
    Internal,
}

/// How a [`ProviderErrorKind`] is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorClass {
    /// Retry the same provider after a jittered backoff.
    Transient,
    /// Skip to the next provider at once.
    ProviderFatal,
    /// Stop and return the error to the caller at once.
    RequestFatal,
}

impl ProviderErrorKind {
    /// The handling class of this kind.
    pub fn class(self) -> ErrorClass {
        match self {
            Self::Timeout | Self::Network | Self::Unavailable => ErrorClass::Transient,
            // A panicking or unimplemented adapter will not heal by itself within one operation.
            Self::Unauthorized | Self::QuotaExceeded | Self::NotSupported | Self::Internal => {
                ErrorClass::ProviderFatal
            }
            Self::InvalidStream => ErrorClass::RequestFatal,
        }
    }
}

/// An error reported by (or on behalf of) a host [`ProviderAdapter`](crate::ProviderAdapter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ProviderError {
    /// What kind of failure this is; decides retry, failover or stop.
    pub kind: ProviderErrorKind,
    /// Human-readable detail from the vendor SDK.
    pub message: String,
}

impl ProviderError {
    /// A new error of `kind`.
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// Shorthand for a [`ProviderErrorKind::Timeout`] error.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Timeout, message)
    }
    /// Shorthand for a [`ProviderErrorKind::Network`] error.
    pub fn network(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Network, message)
    }
    /// Shorthand for a [`ProviderErrorKind::Unavailable`] error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Unavailable, message)
    }
    /// Shorthand for a [`ProviderErrorKind::Unauthorized`] error.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Unauthorized, message)
    }
    /// Shorthand for a [`ProviderErrorKind::InvalidStream`] error.
    pub fn invalid_stream(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::InvalidStream, message)
    }
    /// Shorthand for a [`ProviderErrorKind::NotSupported`] error.
    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::NotSupported, message)
    }
    /// Shorthand for a [`ProviderErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Internal, message)
    }
    /// The handling class of this error.
    pub fn class(&self) -> ErrorClass {
        self.kind.class()
    }
}

/// One failed attempt of a start, join or migration, kept for the final error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The provider that was tried.
    pub provider: String,
    /// 1-based number of the attempt within its operation.
    pub number: u32,
    /// Why it failed.
    pub error: ProviderError,
}

/// Why the provider registry (backend) could not be used. Never ends a live stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum BackendError {
    /// Connection refused, DNS failure, TLS failure and the like.
    #[error("network error: {0}")]
    Network(String),
    /// No answer within `request_timeout`.
    #[error("request timed out")]
    Timeout,
    /// The backend answered with a non-success HTTP status.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// The body was larger than `max_response_bytes`.
    #[error("response larger than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body was not JSON.
    #[error("response is not JSON: {0}")]
    NotJson(String),
    /// The body was JSON of the wrong shape (missing fields, wrong types).
    #[error("response has the wrong shape: {0}")]
    Schema(String),
    /// Two providers in one list share a name.
    #[error("duplicate provider name {0:?}")]
    DuplicateProvider(String),
    /// The backend said `"success": false`.
    #[error("backend reported failure: {0}")]
    Unsuccessful(String),
    /// The backend has no push channel (polling is used instead).
    #[error("the registry has no push channel")]
    PushUnsupported,
    /// The backend does not know this provider (HTTP 404 on its health endpoint).
    #[error("backend does not know provider {0:?}")]
    UnknownProvider(String),
    /// The backend refused a write that conflicts with its state (HTTP 409), e.g. a placement
    /// claim with a stale epoch (`stale_epoch`) or of a stream another client owns
    /// (`owned_by_other`).
    #[error("refused by the registry ({code}): {message}")]
    Conflict {
        /// The registry's machine-readable error code.
        code: String,
        /// Its explanation.
        message: String,
    },
    /// The backend has no such feature (e.g. an older registry without the placement
    /// directory): the engine carries on without it.
    #[error("the registry has no {0}")]
    Unsupported(String),
}

/// The one public error of the manager.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
pub enum StreamguardError {
    /// The configuration was rejected by validation.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An argument was rejected (empty stream id, empty provider name...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No provider could even be tried: none is active with a registered adapter.
    #[error("no provider available: {reason}")]
    NoProviderAvailable {
        /// Why none was available.
        reason: String,
    },
    /// Every attempt failed; the list says which provider failed how.
    #[error("all {} attempts failed: {}", attempts.len(), AttemptList(attempts))]
    AllAttemptsFailed {
        /// Every attempt, in order.
        attempts: Vec<Attempt>,
    },
    /// A provider said the request itself is invalid; no other provider was tried.
    #[error("request rejected by {provider}: {error}")]
    RequestRejected {
        /// The provider that rejected the request.
        provider: String,
        /// Its error.
        error: ProviderError,
    },
    /// `operation_deadline` passed before any attempt succeeded.
    #[error("operation deadline exceeded after {} attempts: {}", attempts.len(), AttemptList(attempts))]
    DeadlineExceeded {
        /// The attempts made before the deadline.
        attempts: Vec<Attempt>,
    },
    /// Every provider that could take the stream is at its `max_streams` limit (or the global
    /// limit is reached), and waiting was off (`wait_for_capacity`) or ran out
    /// (`capacity_max_wait`).
    #[error(
        "no free stream slot on {providers:?} after waiting {waited:?}{}",
        EarlierAttempts(attempts)
    )]
    NoCapacity {
        /// The providers that were full, best first.
        providers: Vec<String>,
        /// How long this operation waited for a slot in all.
        waited: std::time::Duration,
        /// Attempts that failed before capacity ran out, in order (often none).
        attempts: Vec<Attempt>,
    },
    /// The capacity ledger (shared slot counts, e.g. Redis) could not be asked. Nothing was
    /// started: without the ledger no limit could be guaranteed (fail closed).
    #[error("capacity ledger unavailable: {0}")]
    CapacityUnavailable(String),
    /// The provider registry could not be read and no earlier list is known.
    #[error("provider registry unavailable: {0}")]
    Backend(BackendError),
    /// A viewer's stream is not live: the registry's placement directory has no live claim of
    /// a publisher for it (never published, or ended), and `wait_for_live` was zero or ran out.
    #[error("stream {stream_id:?} is not live (no publisher placement)")]
    StreamNotLive {
        /// The stream.
        stream_id: String,
    },
    /// A viewer's stream is published only on providers this manager has no adapter for.
    #[error(
        "stream {stream_id:?} is published on {providers:?}: no adapter registered for any of them"
    )]
    NoAdapterForPlacement {
        /// The stream.
        stream_id: String,
        /// Where it is published: the publisher's provider, then its standbys.
        providers: Vec<String>,
    },
    /// Another client publishes this stream (its placement claim is alive): a second publisher
    /// of the same stream id is refused until that claim ends or expires.
    #[error("stream {stream_id:?} is published by another client")]
    StreamClaimedByOther {
        /// The stream.
        stream_id: String,
    },
    /// No session with this stream id exists.
    #[error("unknown session {0:?}")]
    UnknownSession(String),
    /// The session is in a state that does not allow this call.
    #[error("session {stream_id:?} is busy ({state:?})")]
    SessionBusy {
        /// The session's stream id.
        stream_id: String,
        /// Its current state.
        state: crate::SessionState,
    },
    /// The operation was cancelled by `end_stream` while it ran.
    #[error("operation cancelled: session {0:?} was ended")]
    Cancelled(String),
    /// The manager was shut down.
    #[error("the manager is shut down")]
    ShutDown,
    /// A bug inside Streamguard (an engine task panicked). Please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

struct AttemptList<'a>(&'a [Attempt]);

impl fmt::Display for AttemptList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "#{} {}: {}", a.number, a.provider, a.error)?;
        }
        Ok(())
    }
}

struct EarlierAttempts<'a>(&'a [Attempt]);

impl fmt::Display for EarlierAttempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, "; earlier attempts: {}", AttemptList(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_documented_classes() {
        use ProviderErrorKind::*;
        for k in [Timeout, Network, Unavailable] {
            assert_eq!(k.class(), ErrorClass::Transient, "{k:?}");
        }
        for k in [Unauthorized, QuotaExceeded, NotSupported, Internal] {
            assert_eq!(k.class(), ErrorClass::ProviderFatal, "{k:?}");
        }
        assert_eq!(InvalidStream.class(), ErrorClass::RequestFatal);
    }

    #[test]
    fn all_attempts_failed_lists_every_attempt() {
        let e = StreamguardError::AllAttemptsFailed {
            attempts: vec![
                Attempt {
                    provider: "agora".into(),
                    number: 1,
                    error: ProviderError::timeout("t1"),
                },
                Attempt {
                    provider: "zegocloud".into(),
                    number: 2,
                    error: ProviderError::network("n2"),
                },
            ],
        };
        let s = e.to_string();
        assert!(s.contains("all 2 attempts failed"), "{s}");
        assert!(s.contains("#1 agora: Timeout: t1"), "{s}");
        assert!(s.contains("#2 zegocloud: Network: n2"), "{s}");
    }
}
