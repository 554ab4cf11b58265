//! The node's own addresses as Identify tells them: where it listens, and the
//! external addresses confirmed for it, kept current in a watch.

use libp2p::{Multiaddr, Swarm};
use tokio::sync::watch;

use super::{
    behaviour::Behaviour,
    relay_addr::{circuit_relay, split_peer},
};

/// The event loop's part that publishes the node's addresses.
pub(super) struct Addresses {
    listen: Vec<Multiaddr>,
    /// This node is a relay: its listen addresses are announced as external.
    relay_server: bool,
    published: watch::Sender<Vec<Multiaddr>>,
}

impl Addresses {
    pub fn new(
        listen: Vec<Multiaddr>,
        relay_server: bool,
        published: watch::Sender<Vec<Multiaddr>>,
    ) -> Self {
        Self { listen, relay_server, published }
    }

    pub fn on_new_listen(&mut self, swarm: &mut Swarm<Behaviour>, address: Multiaddr) {
        tracing::info!(%address, "listening");
        if self.relay_server && circuit_relay(&address).is_none() {
            swarm.add_external_address(address.clone());
        }
        self.listen.push(address);
        self.publish(swarm);
    }

    /// Listen addresses gone (expired, or their listener closed).
    pub fn on_gone(&mut self, swarm: &Swarm<Behaviour>, gone: &[Multiaddr]) {
        if !gone.is_empty() {
            self.listen.retain(|a| !gone.contains(a));
            self.publish(swarm);
        }
    }

    /// Listen addresses, then external ones, each once and without a `/p2p/<own id>`
    /// at its end (a relayed listen address has one, the same address confirmed
    /// external may not).
    pub fn publish(&mut self, swarm: &Swarm<Behaviour>) {
        let me = *swarm.local_peer_id();
        let mut all: Vec<Multiaddr> = Vec::new();
        for addr in self.listen.iter().chain(swarm.external_addresses()) {
            let bare = match split_peer(addr) {
                Some((peer, bare)) if peer == me => bare,
                _ => addr.clone(),
            };
            if !all.contains(&bare) {
                all.push(bare);
            }
        }
        self.published.send_replace(all);
    }
}
