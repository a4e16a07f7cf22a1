//! Events to the host: an [`EventListener`] implemented by the host, fed by one task per
//! listener that reads the engine's event channel, and the [`ListenerHandle`] that stops it.

use crate::runtime::HostWoken;
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

/// A subscription to a manager's events, read one at a time with `next()`. The language
/// glue turns it into the language's stream type; see `StreamingProviderManager.subscribe`.
#[derive(uniffi::Object)]
pub struct EventSubscription {
    events: tokio::sync::Mutex<Receiver<sg::StreamEvent>>,
    closed: CancellationToken,
    shut_down: CancellationToken,
}

impl EventSubscription {
    pub(crate) fn new(events: Receiver<sg::StreamEvent>, shut_down: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            events: tokio::sync::Mutex::new(events),
            closed: CancellationToken::new(),
            shut_down,
        })
    }
}

#[uniffi::export]
impl EventSubscription {
    /// The next event, waiting for one; `None` once the subscription is closed or the manager
    /// shut down (events emitted before the shutdown are still returned first). Cancelling the
    /// await (Python, Kotlin) loses no event. Concurrent calls take turns.
    pub async fn next(&self) -> Option<StreamEvent> {
        let mut events = self.events.lock().await;
        loop {
            let received = tokio::select! {
                biased;
                _ = self.closed.cancelled() => return None,
                received = HostWoken(Box::pin(events.recv())) => received,
                _ = self.shut_down.cancelled() => return None,
            };
            match received {
                Ok(event) => return Some(event.into()),
                Err(RecvError::Lagged(missed)) => {
                    warn!(missed, "event subscription fell behind; the oldest events were dropped");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// End the subscription: a pending and every later `next()` returns `None`. Idempotent.
    pub fn close(&self) {
        self.closed.cancel();
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
