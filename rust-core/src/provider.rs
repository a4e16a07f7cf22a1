//! What a provider is ([`ProviderInfo`], as the registry lists it) and what the host app
//! implements once per vendor SDK ([`ProviderAdapter`]).

use crate::error::ProviderError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A callback receiving errors an adapter notices on its own, for a stream id. See
/// [`StreamingProviderManager::error_sink`](crate::StreamingProviderManager::error_sink).
pub type ErrorSink = std::sync::Arc<dyn Fn(&str, ProviderError) + Send + Sync>;

/// A streaming provider as listed by the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// Unique name, e.g. `"agora"`; also the key the adapter is registered under.
    pub name: String,
    /// Inactive providers are never chosen.
    pub is_active: bool,
    /// Lower number = preferred. Ties break by name.
    pub priority: u32,
    /// Raw provider configuration (app ids, regions...), passed through to the adapter.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Concurrent stream limit, if the registry declares one (`0` means unlimited).
    pub max_streams: Option<u32>,
    /// Streams currently running on the provider, if the registry reports it.
    pub active_streams: Option<u32>,
}

impl ProviderInfo {
    /// An active provider with an empty config and no capacity limit.
    pub fn new(name: impl Into<String>, priority: u32) -> Self {
        Self {
            name: name.into(),
            is_active: true,
            priority,
            config: serde_json::Map::new(),
            max_streams: None,
            active_streams: None,
        }
    }

    /// False when the registry reports the provider's stream limit as reached.
    pub fn has_free_slot(&self) -> bool {
        match (self.max_streams, self.active_streams) {
            (Some(max), Some(active)) if max > 0 => active < max,
            _ => true,
        }
    }
}

/// The host app's wrapper around one vendor SDK (Agora, ZegoCloud, LiveKit, RTMP...).
///
/// Streamguard decides *when* and *where*; the adapter only does what it is told. Every call
/// is bounded by `adapter_timeout`, and a panic inside an adapter becomes a
/// [`ProviderErrorKind::Internal`](crate::ProviderErrorKind::Internal) error, so a misbehaving
/// adapter cannot hang or crash the manager. The manager never holds a lock while calling it.
#[async_trait]
pub trait ProviderAdapter: Send + Sync + 'static {
    /// Prepare the SDK for this provider's config. Called before the first use of the provider
    /// and again whenever the registry's entry for it changed.
    async fn initialize(&self, provider: &ProviderInfo) -> Result<(), ProviderError>;

    /// Start publishing `stream_id` (the broadcaster side).
    async fn start_stream(&self, stream_id: &str) -> Result<(), ProviderError>;

    /// Start watching `stream_id` (the viewer side).
    async fn join_stream(&self, stream_id: &str) -> Result<(), ProviderError>;

    /// Leave `stream_id`. Called exactly once for every successful start or join.
    async fn leave_stream(&self, stream_id: &str) -> Result<(), ProviderError>;

    /// A local health check of the provider (e.g. a ping to its edge). The default says
    /// "not supported", and only the registry's health endpoint is used.
    async fn probe(&self) -> Result<(), ProviderError> {
        Err(ProviderError::not_supported("probe"))
    }

    /// True if the same stream can run on this provider and another one at once, which lets a
    /// planned migration start on the new provider before leaving the old (make-before-break).
    fn supports_parallel_sessions(&self) -> bool {
        false
    }

    /// Lower (or raise) the media quality of `stream_id` on this provider: the remedy for a
    /// device whose own link is the problem (a viewer stalling alone, a publisher whose uplink
    /// is bad on every provider), instead of moving. The default says "not supported".
    async fn set_quality(&self, stream_id: &str, level: QualityLevel) -> Result<(), ProviderError> {
        let _ = (stream_id, level);
        Err(ProviderError::not_supported("set_quality"))
    }
}

/// A media quality level asked of an adapter ([`ProviderAdapter::set_quality`]): what each
/// means (resolution, bitrate, simulcast layer, audio only) is the SDK's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum QualityLevel {
    /// The stream's normal quality (where every session starts).
    High,
    /// A lighter variant (e.g. a lower simulcast layer or half the bitrate).
    Medium,
    /// The lightest the SDK offers (e.g. the lowest layer, or audio only).
    Low,
}

impl QualityLevel {
    /// The level above `self` (`None` above `High`: back to "never lowered").
    pub fn raise_from(self) -> Option<Self> {
        match self {
            Self::High | Self::Medium => None,
            Self::Low => Some(Self::Medium),
        }
    }

    /// The next lower level, if any.
    pub fn lower(self) -> Option<Self> {
        match self {
            Self::High => Some(Self::Medium),
            Self::Medium => Some(Self::Low),
            Self::Low => None,
        }
    }
}

/// Where adapters that measure media themselves send their quality samples (the manager's
/// `quality_sink()`, which calls `record_quality`).
pub type QualitySink = std::sync::Arc<dyn Fn(&str, crate::quality::QualitySample) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slot_respects_limits_and_zero_means_unlimited() {
        let mut p = ProviderInfo::new("a", 1);
        assert!(p.has_free_slot());
        p.max_streams = Some(2);
        p.active_streams = Some(1);
        assert!(p.has_free_slot());
        p.active_streams = Some(2);
        assert!(!p.has_free_slot());
        p.max_streams = Some(0);
        assert!(p.has_free_slot());
        p.max_streams = Some(2);
        p.active_streams = None;
        assert!(p.has_free_slot());
    }
}
