//! Per-client caps (by address): on open connections, so one client cannot take every
//! connection slot, and on open event streams, so one client cannot take every one of the
//! `max_event_subscribers` slots and leave every other client with 503s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Open things (connections, event streams) per client address.
#[derive(Debug)]
pub(crate) struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open thing of a client; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    owner: Arc<PerClient>,
    client: IpAddr,
}

impl PerClient {
    /// At most `max` per client.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `client`, or `None` when it already holds `max`.
    pub(crate) fn try_open(self: &Arc<Self>, client: IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            owner: Arc::clone(self),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_freed_on_drop() {
        let streams = PerClient::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = streams.try_open(a).unwrap();
        let _second = streams.try_open(a).unwrap();
        assert!(streams.try_open(a).is_none());
        assert!(streams.try_open(b).is_some());
        drop(first);
        assert!(streams.try_open(a).is_some());
    }
}
