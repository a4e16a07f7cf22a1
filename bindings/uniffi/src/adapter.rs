//! The host's side of a provider: [`ProviderAdapter`], implemented in Python/Kotlin/Swift once
//! per vendor SDK, and the private wrapper that lets the engine call it as its own
//! `streamguard::ProviderAdapter`.

use crate::errors::ProviderError;
use crate::types::{ProviderInfo, QualityLevel};
use std::sync::Arc;
use streamguard as sg;

/// The host app's wrapper around one vendor SDK (Agora, ZegoCloud, LiveKit, RTMP...).
///
/// Streamguard decides when and where; the adapter only does what it is told. Throw a
/// `ProviderError` whose kind says what went wrong: `Timeout`, `Network` and `Unavailable` are
/// retried, `Unauthorized`, `QuotaExceeded`, `NotSupported` and `Internal` move on to the next
/// provider, `InvalidStream` stops the operation. Any other exception counts as `Internal`.
/// Every call is bounded by `adapter_timeout_ms`, and the engine calls it from its own threads,
/// never while holding a lock.
#[uniffi::export(foreign)]
#[async_trait::async_trait]
pub trait ProviderAdapter: Send + Sync {
    /// Prepare the SDK for this provider's config (`provider.config_json`). Called before the
    /// first use of the provider and again whenever the registry's entry for it changed.
    async fn initialize(&self, provider: ProviderInfo) -> Result<(), ProviderError>;

    /// Start publishing `stream_id` (the broadcaster side).
    async fn start_stream(&self, stream_id: String) -> Result<(), ProviderError>;

    /// Start watching `stream_id` (the viewer side).
    async fn join_stream(&self, stream_id: String) -> Result<(), ProviderError>;

    /// Leave `stream_id`. Called exactly once for every successful start or join.
    async fn leave_stream(&self, stream_id: String) -> Result<(), ProviderError>;

    /// A local health check of the provider (e.g. a ping to its edge). Throw
    /// `ProviderError.NotSupported` when there is none: only the registry's health endpoint is
    /// then used.
    async fn probe(&self) -> Result<(), ProviderError>;

    /// True if the same stream can run on this provider and another one at once, which lets a
    /// planned migration start on the new provider before leaving the old (make-before-break).
    fn supports_parallel_sessions(&self) -> bool;

    /// Lower (or raise) the media quality of `stream_id` (a lower simulcast layer, a lower
    /// bitrate, audio only): what the engine asks instead of moving when this device's own
    /// link is the problem (a viewer stalling while the rest of the audience watches fine, a
    /// publisher whose uplink is bad on every provider). Throw `ProviderError.NotSupported`
    /// when the SDK cannot (the default in the Python, Kotlin and Swift glue): never asked
    /// again for that session.
    async fn set_quality(
        &self,
        stream_id: String,
        level: QualityLevel,
    ) -> Result<(), ProviderError>;
}

/// The engine's view of a host adapter: converts arguments and errors, nothing else.
pub(crate) struct HostAdapter(pub(crate) Arc<dyn ProviderAdapter>);

#[async_trait::async_trait]
impl sg::ProviderAdapter for HostAdapter {
    async fn initialize(&self, provider: &sg::ProviderInfo) -> Result<(), sg::ProviderError> {
        let info = ProviderInfo::from(provider.clone());
        Ok(self.0.initialize(info).await?)
    }

    async fn start_stream(&self, stream_id: &str) -> Result<(), sg::ProviderError> {
        Ok(self.0.start_stream(stream_id.to_owned()).await?)
    }

    async fn join_stream(&self, stream_id: &str) -> Result<(), sg::ProviderError> {
        Ok(self.0.join_stream(stream_id.to_owned()).await?)
    }

    async fn leave_stream(&self, stream_id: &str) -> Result<(), sg::ProviderError> {
        Ok(self.0.leave_stream(stream_id.to_owned()).await?)
    }

    async fn probe(&self) -> Result<(), sg::ProviderError> {
        Ok(self.0.probe().await?)
    }

    async fn set_quality(
        &self,
        stream_id: &str,
        level: sg::QualityLevel,
    ) -> Result<(), sg::ProviderError> {
        Ok(self
            .0
            .set_quality(stream_id.to_owned(), level.into())
            .await?)
    }

    fn supports_parallel_sessions(&self) -> bool {
        // A host exception here arrives as a panic (the method cannot return an error); the
        // safe answer is "no", which only costs a make-before-break migration.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.0.supports_parallel_sessions()
        }))
        .unwrap_or(false)
    }
}
