//! Streams per remote peer, counted across every session, capped below yamux's limit.
//!
//! yamux resets a whole connection when a stream beyond its limit is opened (512 by
//! default, both directions and half-closed streams counted), which would kill every
//! stream to that peer. The daemon refuses the excess itself instead.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use libp2p::PeerId;

/// The shared count of open streams per peer.
#[derive(Clone)]
pub struct PeerStreams {
    inner: Arc<Counts>,
}

struct Counts {
    limit: usize,
    open: Mutex<HashMap<PeerId, usize>>,
}

/// One counted stream; dropping it frees the place.
pub struct StreamSlot {
    peer: PeerId,
    inner: Arc<Counts>,
}

impl PeerStreams {
    pub fn new(limit: usize) -> Self {
        Self { inner: Arc::new(Counts { limit, open: Mutex::default() }) }
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Takes a place for a stream to `peer`, or `None` at the limit.
    pub fn try_acquire(&self, peer: PeerId) -> Option<StreamSlot> {
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(peer).or_default();
        if *count >= self.inner.limit {
            return None;
        }
        *count += 1;
        Some(StreamSlot { peer, inner: self.inner.clone() })
    }

    /// Open streams to `peer`.
    pub fn count(&self, peer: &PeerId) -> usize {
        let open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(peer).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_freed() {
        let streams = PeerStreams::new(2);
        let peer = PeerId::random();
        let a = streams.try_acquire(peer).unwrap();
        let _b = streams.try_acquire(peer).unwrap();
        assert!(streams.try_acquire(peer).is_none());
        assert!(streams.try_acquire(PeerId::random()).is_some());
        drop(a);
        assert_eq!(streams.count(&peer), 1);
        assert!(streams.try_acquire(peer).is_some());
    }
}
