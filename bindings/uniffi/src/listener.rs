//! Events to the host: an [`EventListener`] implemented by the host, fed by one task per
//! listener that reads the engine's event channel, and the [`ListenerHandle`] that stops it.

use crate::runtime::HostWoken;
use crate::types::StreamEvent;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Called once per event. An exception thrown here is caught at the boundary: it is counted
    /// (`ListenerHandle.failures()`), the first one is logged with its message, and the
    /// listener keeps receiving later events.
    fn on_event(&self, event: StreamEvent) -> Result<(), ListenerError>;
}

/// An exception thrown by a host `EventListener.on_event` (Kotlin `ListenerException`). Hosts
/// never need to throw it: any exception is turned into it at the boundary, where it would
/// otherwise become a panic in UniFFI's callback glue (a backtrace on stderr per event).
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ListenerError {
    /// The listener threw; `detail` is the exception's text.
    #[error("event listener failed: {detail}")]
    Failed {
        /// The exception as the host printed it.
        detail: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for ListenerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed { detail: e.reason }
    }
}

/// Keeps a listener subscribed. Call `close()` (Kotlin: `close()`/`use {}`, which also frees
/// it) or drop the handle to stop deliveries; keep it for as long as events are wanted.
#[derive(uniffi::Object)]
pub struct ListenerHandle {
    closed: CancellationToken,
    failures: Arc<AtomicU64>,
}

#[uniffi::export]
impl ListenerHandle {
    /// Stop delivering events. Idempotent; an `on_event` already running finishes.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// How many `on_event` calls threw so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
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
        let failures = Arc::new(AtomicU64::new(0));
        let task = forward(
            events,
            listener,
            closed.clone(),
            shut_down,
            failures.clone(),
        );
        tasks.spawn_on(task, crate::runtime::RUNTIME.handle());
        Arc::new(Self { closed, failures })
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
    pub(crate) fn new(
        events: Receiver<sg::StreamEvent>,
        shut_down: CancellationToken,
    ) -> Arc<Self> {
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
                    warn!(
                        missed,
                        "event subscription fell behind; the oldest events were dropped"
                    );
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
    failures: Arc<AtomicU64>,
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
        let failure = match delivered {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("event listener panicked: {e}"),
        };
        // Logged once per listener (a failing listener usually fails on every event).
        if failures.fetch_add(1, Ordering::Relaxed) == 0 {
            warn!(error = %failure, "event listener failed; later events are still delivered and further failures are only counted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EventKind;
    use std::time::Duration;
    use tokio::sync::broadcast;

    fn event(n: usize) -> sg::StreamEvent {
        sg::StreamEvent {
            at: Duration::from_millis(n as u64),
            kind: sg::EventKind::ProviderListChanged {
                active: vec![format!("p{n}")],
            },
        }
    }

    fn label(e: Option<StreamEvent>) -> Option<String> {
        e.map(|e| match e.kind {
            EventKind::ProviderListChanged { active } => active.join(","),
            other => format!("{other:?}"),
        })
    }

    #[tokio::test]
    async fn a_slow_reader_loses_the_oldest_and_keeps_the_order() {
        let (tx, rx) = broadcast::channel(2);
        let sub = EventSubscription::new(rx, CancellationToken::new());
        for n in 1..=5 {
            tx.send(event(n)).unwrap();
        }
        // Bounded like the core: only the newest `event_buffer` (here 2) are left.
        assert_eq!(label(sub.next().await).as_deref(), Some("p4"));
        assert_eq!(label(sub.next().await).as_deref(), Some("p5"));
        sub.close();
        tx.send(event(6)).unwrap();
        assert_eq!(label(sub.next().await), None, "closed");
    }

    #[tokio::test]
    async fn shutdown_ends_it_after_the_buffered_events() {
        let (tx, rx) = broadcast::channel(8);
        let shut_down = CancellationToken::new();
        let sub = EventSubscription::new(rx, shut_down.clone());
        tx.send(event(1)).unwrap();
        shut_down.cancel();
        assert_eq!(label(sub.next().await).as_deref(), Some("p1"));
        // Pending, then ended: returns at once although the sender is still alive.
        assert_eq!(label(sub.next().await), None);
        drop(tx);
    }
}
