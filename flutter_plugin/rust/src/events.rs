//! Events to Dart: one task per subscription reads the engine's event channel and hands each
//! event, flattened, to an [`EventOut`]. Dart's `StreamSink` is one implementation; tests use a
//! channel, because a `StreamSink` can only be made by the generated glue from a Dart port.

use crate::api::types::StreamEvent;
use crate::frb_generated::StreamSink;
use streamguard as sg;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use tokio_util::sync::CancellationToken;

/// Where a subscription's events go.
pub trait EventOut: Send + 'static {
    /// Deliver one event. `false` means the receiver is gone (the Dart stream was cancelled):
    /// the subscription ends.
    fn send(&self, event: StreamEvent) -> bool;
}

impl EventOut for StreamSink<StreamEvent> {
    fn send(&self, event: StreamEvent) -> bool {
        self.add(event).is_ok()
    }
}

impl EventOut for tokio::sync::mpsc::UnboundedSender<StreamEvent> {
    fn send(&self, event: StreamEvent) -> bool {
        tokio::sync::mpsc::UnboundedSender::send(self, event).is_ok()
    }
}

/// Forward `events` to `out` on the plugin's runtime until `out` refuses one or `shut_down` is
/// cancelled; events already buffered at shutdown are delivered first, so Dart sees the
/// sessions end. Dropping `out` when the task ends closes the Dart stream.
pub(crate) fn spawn_forwarder(
    events: Receiver<sg::StreamEvent>,
    out: impl EventOut,
    shut_down: CancellationToken,
) {
    crate::runtime::RUNTIME.spawn(forward(events, out, shut_down));
}

async fn forward(
    mut events: Receiver<sg::StreamEvent>,
    out: impl EventOut,
    shut_down: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            // Buffered events first, then the shutdown signal.
            biased;
            received = events.recv() => match received {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "Dart event stream fell behind; the oldest events were dropped");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
            _ = shut_down.cancelled() => return,
        };
        if !out.send(event.into()) {
            return;
        }
    }
}
