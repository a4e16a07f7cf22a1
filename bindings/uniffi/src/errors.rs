//! The two errors of the bindings: [`ProviderError`], which host adapters throw (and pass to
//! `record_error`), and [`StreamguardError`], which every manager call can throw. Both become
//! exceptions in the host language (`ProviderException`/`StreamguardException` in Kotlin).
//!
//! The text of an error is called `detail` rather than `message`: Kotlin exceptions already
//! have a `message` property, and a field of that name would not compile there.

use crate::types::ProviderErrorKind;
use streamguard as sg;

/// An error thrown by a host [`ProviderAdapter`](crate::ProviderAdapter), or reported through
/// `StreamingProviderManager.record_error`. One variant per kind, each with the vendor SDK's
/// `detail` text. Any other exception thrown by an adapter arrives as `Internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum ProviderError {
    /// The call did not finish in time. Transient: retried on the same provider.
    #[error("Timeout: {detail}")]
    Timeout {
        /// Text from the vendor SDK.
        detail: String,
    },
    /// A network error between the device and the provider. Transient.
    #[error("Network: {detail}")]
    Network {
        /// Text from the vendor SDK.
        detail: String,
    },
    /// The provider is temporarily unable to serve. Transient.
    #[error("Unavailable: {detail}")]
    Unavailable {
        /// Text from the vendor SDK.
        detail: String,
    },
    /// Credentials were refused. Provider-fatal: the next provider is tried at once.
    #[error("Unauthorized: {detail}")]
    Unauthorized {
        /// Text from the vendor SDK.
        detail: String,
    },
    /// Quota or capacity exhausted. Provider-fatal.
    #[error("QuotaExceeded: {detail}")]
    QuotaExceeded {
        /// Text from the vendor SDK.
        detail: String,
    },
    /// The request itself is invalid. Request-fatal: the operation stops at once.
    #[error("InvalidStream: {detail}")]
    InvalidStream {
        /// Text from the vendor SDK.
        detail: String,
    },
    /// The operation is not implemented by this adapter. Provider-fatal; from `probe` it means
    /// "no local health check" and only the registry's health endpoint is used.
    #[error("NotSupported: {detail}")]
    NotSupported {
        /// What is not supported.
        detail: String,
    },
    /// An unexpected failure. Provider-fatal.
    #[error("Internal: {detail}")]
    Internal {
        /// What happened.
        detail: String,
    },
}

impl ProviderError {
    /// The kind of this error.
    pub fn kind(&self) -> ProviderErrorKind {
        match self {
            Self::Timeout { .. } => ProviderErrorKind::Timeout,
            Self::Network { .. } => ProviderErrorKind::Network,
            Self::Unavailable { .. } => ProviderErrorKind::Unavailable,
            Self::Unauthorized { .. } => ProviderErrorKind::Unauthorized,
            Self::QuotaExceeded { .. } => ProviderErrorKind::QuotaExceeded,
            Self::InvalidStream { .. } => ProviderErrorKind::InvalidStream,
            Self::NotSupported { .. } => ProviderErrorKind::NotSupported,
            Self::Internal { .. } => ProviderErrorKind::Internal,
        }
    }

    fn into_detail(self) -> String {
        match self {
            Self::Timeout { detail }
            | Self::Network { detail }
            | Self::Unavailable { detail }
            | Self::Unauthorized { detail }
            | Self::QuotaExceeded { detail }
            | Self::InvalidStream { detail }
            | Self::NotSupported { detail }
            | Self::Internal { detail } => detail,
        }
    }

    fn from_parts(kind: ProviderErrorKind, detail: String) -> Self {
        match kind {
            ProviderErrorKind::Timeout => Self::Timeout { detail },
            ProviderErrorKind::Network => Self::Network { detail },
            ProviderErrorKind::Unavailable => Self::Unavailable { detail },
            ProviderErrorKind::Unauthorized => Self::Unauthorized { detail },
            ProviderErrorKind::QuotaExceeded => Self::QuotaExceeded { detail },
            ProviderErrorKind::InvalidStream => Self::InvalidStream { detail },
            ProviderErrorKind::NotSupported => Self::NotSupported { detail },
            ProviderErrorKind::Internal => Self::Internal { detail },
        }
    }
}

/// Any exception the host throws that is not a `ProviderError` (a bug in the adapter, a
/// `NotImplementedError`...) fails the call as `Internal`, so the engine fails over instead of
/// the process crashing.
impl From<uniffi::UnexpectedUniFFICallbackError> for ProviderError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Internal {
            detail: format!("adapter threw an unexpected exception: {}", e.reason),
        }
    }
}

impl From<ProviderError> for sg::ProviderError {
    fn from(e: ProviderError) -> Self {
        let kind = e.kind().into();
        sg::ProviderError::new(kind, e.into_detail())
    }
}

impl From<sg::ProviderError> for ProviderError {
    fn from(e: sg::ProviderError) -> Self {
        Self::from_parts(e.kind.into(), e.message)
    }
}

/// One failed attempt of a start, join or migration.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Attempt {
    /// The provider that was tried.
    pub provider: String,
    /// 1-based number of the attempt within its operation.
    pub number: u32,
    /// The kind of the adapter's error.
    pub kind: ProviderErrorKind,
    /// The adapter's error text.
    pub detail: String,
}

impl From<sg::Attempt> for Attempt {
    fn from(a: sg::Attempt) -> Self {
        // Destructured without `..`: a field added to the engine's Attempt fails to compile here.
        let sg::Attempt {
            provider,
            number,
            error,
        } = a;
        Self {
            provider,
            number,
            kind: error.kind.into(),
            detail: error.message,
        }
    }
}

/// The error of every manager call (the engine's `StreamguardError`, variant for variant).
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum StreamguardError {
    /// The configuration was rejected; `detail` names the field.
    #[error("invalid configuration: {detail}")]
    InvalidConfig {
        /// Which field and why.
        detail: String,
    },
    /// An argument was rejected (empty stream id, empty provider name...).
    #[error("invalid argument: {detail}")]
    InvalidArgument {
        /// Which argument and why.
        detail: String,
    },
    /// No provider could even be tried: none is active with a registered adapter.
    #[error("no provider available: {reason}")]
    NoProviderAvailable {
        /// Why none was available.
        reason: String,
    },
    /// Every attempt failed (never more than `max_attempts`); the list says which provider
    /// failed how.
    #[error("all {} attempts failed", attempts.len())]
    AllAttemptsFailed {
        /// Every attempt, in order.
        attempts: Vec<Attempt>,
    },
    /// A provider said the request itself is invalid; no other provider was tried.
    #[error("request rejected by {provider}: {kind:?}: {detail}")]
    RequestRejected {
        /// The provider that rejected the request.
        provider: String,
        /// The kind of its error (`InvalidStream`).
        kind: ProviderErrorKind,
        /// Its error text.
        detail: String,
    },
    /// `operation_deadline_ms` passed before any attempt succeeded.
    #[error("operation deadline exceeded after {} attempts", attempts.len())]
    DeadlineExceeded {
        /// The attempts made before the deadline.
        attempts: Vec<Attempt>,
    },
    /// Every provider that could take the stream is at its `max_streams` limit (or the global
    /// limit `max_total_streams` is reached), and waiting was off (`wait_for_capacity`) or ran
    /// out (`capacity_max_wait_ms`).
    #[error("no free stream slot on {providers:?} after waiting {waited_ms} ms")]
    NoCapacity {
        /// The providers that were full, best first.
        providers: Vec<String>,
        /// How long this operation waited for a slot in all, in milliseconds.
        waited_ms: u64,
        /// Attempts that failed before capacity ran out, in order (often none).
        attempts: Vec<Attempt>,
    },
    /// The capacity ledger (shared slot counts, e.g. Redis) could not be asked. Nothing was
    /// started: without the ledger no limit could be guaranteed (fail closed).
    #[error("capacity ledger unavailable: {detail}")]
    CapacityUnavailable {
        /// What failed.
        detail: String,
    },
    /// The provider registry could not be read and no earlier list is known.
    #[error("provider registry unavailable: {detail}")]
    Backend {
        /// What failed.
        detail: String,
    },
    /// A viewer's stream is not live (no live publisher placement), and `wait_for_live_ms`
    /// was 0 or ran out.
    #[error("stream {stream_id:?} is not live (no publisher placement)")]
    StreamNotLive {
        /// The stream.
        stream_id: String,
    },
    /// A viewer's stream is published only on providers without a registered adapter.
    #[error(
        "stream {stream_id:?} is published on {providers:?}: no adapter registered for any of them"
    )]
    NoAdapterForPlacement {
        /// The stream.
        stream_id: String,
        /// Where it is published: the publisher's provider, then its standbys.
        providers: Vec<String>,
    },
    /// Another client publishes this stream (its placement claim is alive).
    #[error("stream {stream_id:?} is published by another client")]
    StreamClaimedByOther {
        /// The stream.
        stream_id: String,
    },
    /// No session with this stream id exists.
    #[error("unknown session {stream_id:?}")]
    UnknownSession {
        /// The stream id asked for.
        stream_id: String,
    },
    /// The session is in a state that does not allow this call.
    #[error("session {stream_id:?} is busy ({state:?})")]
    SessionBusy {
        /// The session's stream id.
        stream_id: String,
        /// Its current state.
        state: crate::SessionState,
    },
    /// The operation was cancelled by `end_stream` while it ran.
    #[error("operation cancelled: session {stream_id:?} was ended")]
    Cancelled {
        /// The session that was ended.
        stream_id: String,
    },
    /// The manager was shut down.
    #[error("the manager is shut down")]
    ShutDown,
    /// A bug inside Streamguard (a panic). Please report it.
    #[error("internal error: {detail}")]
    Internal {
        /// What happened.
        detail: String,
    },
}

impl From<sg::StreamguardError> for StreamguardError {
    fn from(e: sg::StreamguardError) -> Self {
        use sg::StreamguardError as E;
        let attempts = |v: Vec<sg::Attempt>| v.into_iter().map(Attempt::from).collect();
        match e {
            E::InvalidConfig(detail) => Self::InvalidConfig { detail },
            E::InvalidArgument(detail) => Self::InvalidArgument { detail },
            E::NoProviderAvailable { reason } => Self::NoProviderAvailable { reason },
            E::AllAttemptsFailed { attempts: a } => Self::AllAttemptsFailed {
                attempts: attempts(a),
            },
            E::RequestRejected { provider, error } => Self::RequestRejected {
                provider,
                kind: error.kind.into(),
                detail: error.message,
            },
            E::DeadlineExceeded { attempts: a } => Self::DeadlineExceeded {
                attempts: attempts(a),
            },
            E::NoCapacity {
                providers,
                waited,
                attempts: a,
            } => Self::NoCapacity {
                providers,
                waited_ms: streamguard_mirror::ms(waited),
                attempts: attempts(a),
            },
            E::CapacityUnavailable(detail) => Self::CapacityUnavailable { detail },
            E::Backend(b) => Self::Backend {
                detail: b.to_string(),
            },
            E::StreamNotLive { stream_id } => Self::StreamNotLive { stream_id },
            E::NoAdapterForPlacement {
                stream_id,
                providers,
            } => Self::NoAdapterForPlacement {
                stream_id,
                providers,
            },
            E::StreamClaimedByOther { stream_id } => Self::StreamClaimedByOther { stream_id },
            E::UnknownSession(stream_id) => Self::UnknownSession { stream_id },
            E::SessionBusy { stream_id, state } => Self::SessionBusy {
                stream_id,
                state: state.into(),
            },
            E::Cancelled(stream_id) => Self::Cancelled { stream_id },
            E::ShutDown => Self::ShutDown,
            E::Internal(detail) => Self::Internal { detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_round_trip_with_their_kind() {
        for kind in [
            ProviderErrorKind::Timeout,
            ProviderErrorKind::Network,
            ProviderErrorKind::Unavailable,
            ProviderErrorKind::Unauthorized,
            ProviderErrorKind::QuotaExceeded,
            ProviderErrorKind::InvalidStream,
            ProviderErrorKind::NotSupported,
            ProviderErrorKind::Internal,
        ] {
            let host = ProviderError::from_parts(kind, "x".into());
            let core: sg::ProviderError = host.clone().into();
            assert_eq!(ProviderErrorKind::from(core.kind), kind);
            assert_eq!(core.message, "x");
            assert_eq!(ProviderError::from(core), host);
        }
    }

    #[test]
    fn an_unexpected_host_exception_is_internal() {
        let e = ProviderError::from(uniffi::UnexpectedUniFFICallbackError::new("KeyError('x')"));
        assert_eq!(e.kind(), ProviderErrorKind::Internal);
        assert!(e.to_string().contains("KeyError"), "{e}");
    }

    #[test]
    fn all_attempts_failed_keeps_every_attempt() {
        let core = sg::StreamguardError::AllAttemptsFailed {
            attempts: vec![sg::Attempt {
                provider: "agora".into(),
                number: 1,
                error: sg::ProviderError::timeout("t1"),
            }],
        };
        let StreamguardError::AllAttemptsFailed { attempts } = core.into() else {
            panic!("wrong variant");
        };
        assert_eq!(
            attempts,
            vec![Attempt {
                provider: "agora".into(),
                number: 1,
                kind: ProviderErrorKind::Timeout,
                detail: "t1".into(),
            }]
        );
    }

    #[test]
    fn no_capacity_names_the_full_providers_in_milliseconds() {
        let core = sg::StreamguardError::NoCapacity {
            providers: vec!["agora".into(), "zegocloud".into()],
            waited: std::time::Duration::from_micros(1_500_900),
            attempts: vec![sg::Attempt {
                provider: "agora".into(),
                number: 1,
                error: sg::ProviderError::timeout("t1"),
            }],
        };
        let e = StreamguardError::from(core);
        assert!(e.to_string().contains("\"agora\", \"zegocloud\""), "{e}");
        let StreamguardError::NoCapacity {
            providers,
            waited_ms,
            attempts,
        } = e
        else {
            panic!("wrong variant");
        };
        assert_eq!(providers, ["agora", "zegocloud"]);
        assert_eq!(waited_ms, 1500);
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            StreamguardError::from(sg::StreamguardError::CapacityUnavailable(
                "redis down".into()
            )),
            StreamguardError::CapacityUnavailable {
                detail: "redis down".into()
            }
        );
    }
}
