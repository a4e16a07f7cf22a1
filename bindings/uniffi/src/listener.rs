//! Events to the host: an [`EventListener`] implemented by the host, fed by one task per
//! listener that reads the engine's event channel, and the [`ListenerHandle`] that stops it.

use crate::types::StreamEvent;
use std::sync::Arc;
use streamguard as sg;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// Receives every [`StreamEvent`] of a manager, in order, from a Streamguard thread (never the
/// thread that called `add_listener`, never while the engine holds a lock). A slow listener
/// does not slow the engine down; one that falls more than `event_buffer` events behind loses
/// the oldest.
#[uniffi::export(foreign)]
pub trait EventListener: Send + Sync {
    /// Called once per event.
    fn on_event(&self, event: StreamEvent);
}

/// Keeps a listener subscribed. Call `close()` (Kotlin: `close()`/`use {}`, which also frees
/// it) or drop the handle to stop deliveries; keep it for as long as events are wanted.
#[derive(uniffi::Object)]
pub struct ListenerHandle {
    closed: CancellationToken,
}

#[uniffi::export]
impl ListenerHandle {
    /// Stop delivering events. Idempotent; an `on_event` already running finishes.
    pub fn close(&self) {
        self.closed.cancel();
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl ListenerHandle {
    /// Start forwarding `events` to `listener` on the bindings' runtime until the handle is
    /// closed or dropped, or `shut_down` is cancelled (events already buffered are delivered
    /// first, so a listener sees the sessions end).
    pub(crate) fn spawn(
        tasks: &TaskTracker,
        events: Receiver<sg::StreamEvent>,
        listener: Arc<dyn EventListener>,
        shut_down: CancellationToken,
    ) -> Arc<Self> {
        let closed = CancellationToken::new();
        let task = forward(events, listener, closed.clone(), shut_down);
        tasks.spawn_on(task, crate::runtime::RUNTIME.handle());
        Arc::new(Self { closed })
    }
}

async fn forward(
    mut events: Receiver<sg::StreamEvent>,
    listener: Arc<dyn EventListener>,
    closed: CancellationToken,
    shut_down: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            // Order matters: a closed handle stops at once; a shut-down manager first drains
            // what is buffered.
            biased;
            _ = closed.cancelled() => return,
            received = events.recv() => match received {
                Ok(event) => StreamEvent::from(event),
                Err(RecvError::Lagged(missed)) => {
                    warn!(missed, "event listener fell behind; the oldest events were dropped");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
            _ = shut_down.cancelled() => return,
        };
        let listener = listener.clone();
        // Host code may block (or wait for a lock such as Python's GIL): run it on a blocking
        // thread so it never occupies one of the engine's workers. Awaiting it keeps the order.
        let delivered = tokio::task::spawn_blocking(move || listener.on_event(event)).await;
        if let Err(e) = delivered {
            // The host threw from on_event: UniFFI reports that as a panic. Keep delivering.
            warn!(error = %e, "event listener failed; later events are still delivered");
        }
    }
}
