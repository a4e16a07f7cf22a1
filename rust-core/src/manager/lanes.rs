//! Lanes in the engine: adapter calls for one (provider, stream) pair run one at a time, in
//! the order decided (see `crate::lane`), and an abandoned call is cleaned up in its lane.

use super::*;

/// A place in a (provider, stream) lane; its turn ends when it is dropped.
pub(super) struct LaneTicket {
    pub(super) shared: Arc<Shared>,
    pub(super) key: LaneKey,
    pub(super) ticket: u64,
}

impl LaneTicket {
    /// Wait for this ticket's turn (earlier calls on the pair are bounded by
    /// `adapter_timeout`, so this is too).
    pub(super) async fn turn(&self) {
        let mut turns = self.shared.lane_turn.subscribe();
        loop {
            if self.shared.state().lanes.is_turn(&self.key, self.ticket) {
                return;
            }
            if turns.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for LaneTicket {
    fn drop(&mut self) {
        debug!(key = ?self.key, ticket = self.ticket, "lane ticket released");
        self.shared.state().lanes.release(&self.key, self.ticket);
        self.shared
            .lane_turn
            .send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl Shared {
    /// Queue in the lane of (`provider`, `stream_id`). Taken under the state lock, together with
    /// the decision that needs the call, so the order of calls is the order of decisions.
    pub(super) fn ticket(
        self: &Arc<Self>,
        st: &mut State,
        provider: &str,
        stream_id: &str,
    ) -> LaneTicket {
        let key: LaneKey = (provider.to_string(), stream_id.to_string());
        let ticket = st.lanes.take(&key);
        debug!(?key, ticket, "lane ticket taken");
        LaneTicket {
            shared: self.clone(),
            key,
            ticket,
        }
    }

    /// An attempt whose operation ended (cancelled, deadline) while the adapter call ran: let
    /// the call finish on its own (bounded by `adapter_timeout`), leave if it succeeded (still
    /// in its lane, so before any newer session's call on the same pair), and only then give
    /// its slot back.
    pub(super) fn abandon(
        self: &Arc<Self>,
        call: tokio::task::JoinHandle<(Result<(), ProviderError>, LaneTicket)>,
        slot: Option<HeldSlot>,
        provider: &str,
        trial: bool,
    ) {
        let me = self.clone();
        let p = provider.to_string();
        self.tracker.spawn(async move {
            let finished = call.await;
            me.end_attempt(&p, trial);
            if let Ok((Ok(()), ticket)) = finished {
                info!(stream_id = %ticket.key.1, provider = %p, "abandoned call succeeded late; leaving");
                me.leave(&p, &ticket.key.1).await;
            }
            if let Some(slot) = slot {
                me.release_slot(slot).await;
            }
        });
    }
}
