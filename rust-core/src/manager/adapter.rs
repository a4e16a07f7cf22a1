//! Calls into host code: every adapter call on its own task, bounded by `adapter_timeout`;
//! a panic or a hang becomes a typed error.

use super::*;

impl Shared {
    /// Call into host code on its own task, bounded by `adapter_timeout`. A panic or a hang
    /// becomes a typed error; the engine never waits longer than the timeout.
    pub(super) async fn call_adapter<F, Fut>(
        &self,
        what: &str,
        adapter: Arc<dyn ProviderAdapter>,
        f: F,
    ) -> Result<(), ProviderError>
    where
        F: FnOnce(Arc<dyn ProviderAdapter>) -> Fut,
        Fut: Future<Output = Result<(), ProviderError>> + Send + 'static,
    {
        let mut handle = self.tracker.spawn(f(adapter));
        match tokio::time::timeout(self.config.adapter_timeout, &mut handle).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(ProviderError::internal(format!(
                "adapter {what} failed: {}",
                panic_message(e)
            ))),
            Err(_) => {
                handle.abort();
                Err(ProviderError::timeout(format!(
                    "adapter {what} did not finish within {:?}",
                    self.config.adapter_timeout
                )))
            }
        }
    }

    pub(super) async fn ensure_initialized(
        &self,
        slot: &AdapterSlot,
        info: &ProviderInfo,
    ) -> Result<(), ProviderError> {
        let mut done = slot.initialized.lock().await;
        if done.as_ref() == Some(info) {
            return Ok(());
        }
        let owned = info.clone();
        self.call_adapter(
            "initialize",
            slot.adapter.clone(),
            move |a: Arc<dyn ProviderAdapter>| async move { a.initialize(&owned).await },
        )
        .await?;
        *done = Some(info.clone());
        Ok(())
    }

    pub(super) async fn adapter_connect(
        &self,
        slot: &AdapterSlot,
        info: &ProviderInfo,
        stream_id: &str,
        role: Role,
    ) -> Result<(), ProviderError> {
        self.ensure_initialized(slot, info).await?;
        let id = stream_id.to_string();
        match role {
            Role::Publisher => {
                self.call_adapter(
                    "start_stream",
                    slot.adapter.clone(),
                    move |a: Arc<dyn ProviderAdapter>| async move { a.start_stream(&id).await },
                )
                .await
            }
            Role::Viewer => {
                self.call_adapter(
                    "join_stream",
                    slot.adapter.clone(),
                    move |a: Arc<dyn ProviderAdapter>| async move { a.join_stream(&id).await },
                )
                .await
            }
        }
    }

    /// Leave `stream_id` on `provider` through that provider's own adapter.
    pub(super) async fn leave(&self, provider: &str, stream_id: &str) {
        let slot = self.state().adapters.get(provider).cloned();
        let Some(slot) = slot else {
            warn!(provider, stream_id, "no adapter to leave through");
            return;
        };
        let id = stream_id.to_string();
        let r = self
            .call_adapter(
                "leave_stream",
                slot.adapter.clone(),
                move |a: Arc<dyn ProviderAdapter>| async move { a.leave_stream(&id).await },
            )
            .await;
        match r {
            Ok(()) => debug!(provider, stream_id, "left"),
            Err(e) => warn!(provider, stream_id, error = %e, "leave failed"),
        }
    }
}
