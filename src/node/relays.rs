//! Relays this node uses: the reservations it keeps (`--relay-via`, or, without it,
//! AutoRelay's: while the node is private, a few relays found among the peers it is
//! connected to), asked for again when lost, and the circuits a Connect through a
//! relay may take.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use libp2p::{core::transport::ListenerId, Multiaddr, PeerId, Swarm};
use tokio::time::Instant;

use super::{
    behaviour::{Behaviour, RELAY_HOP_PROTOCOL},
    dials::DialFailure,
    peers::PeerTable,
    relay_addr::{split_peer, RelayAddr},
};

/// How long a lost relay reservation waits before it is asked for again.
pub(super) const RESERVATION_RETRY: Duration = Duration::from_secs(10);
/// Relays AutoRelay keeps a reservation on at once.
pub(super) const AUTO_RELAYS: usize = 2;

/// The event loop's part that keeps reservations.
pub(super) struct Relays {
    /// `--relay-via`.
    via: Vec<RelayAddr>,
    /// Listeners that hold a reservation on a relay, and that relay.
    reservations: HashMap<ListenerId, RelayAddr>,
    /// Relays whose reservation was lost, and when to ask again.
    retries: Vec<(Instant, RelayAddr)>,
    /// AutoRelay's relays (no `--relay-via`), while the node is private.
    auto: HashSet<PeerId>,
}

impl Relays {
    /// Asks each relay in `via` for a reservation.
    pub fn new(swarm: &mut Swarm<Behaviour>, via: &[Multiaddr]) -> Self {
        let via: Vec<RelayAddr> = via.iter().filter_map(RelayAddr::from_multiaddr).collect();
        let mut relays = Self {
            via: via.clone(),
            reservations: HashMap::new(),
            retries: Vec::new(),
            auto: HashSet::new(),
        };
        for relay in via {
            relays.reserve(swarm, relay);
        }
        relays
    }

    pub fn has_retries(&self) -> bool {
        !self.retries.is_empty()
    }

    /// Listens through `relay`, which makes a reservation on it.
    fn reserve(&mut self, swarm: &mut Swarm<Behaviour>, relay: RelayAddr) {
        if let Some(at) = relay.at() {
            swarm.add_peer_address(relay.peer(), at.clone());
        }
        match swarm.listen_on(relay.reservation()) {
            Ok(id) => {
                tracing::info!(%relay, "asking the relay for a reservation");
                self.reservations.insert(id, relay);
            }
            Err(e) => {
                tracing::warn!(%relay, error = %e, "cannot listen through the relay");
                self.retries.push((Instant::now() + RESERVATION_RETRY, relay));
            }
        }
    }

    /// AutoRelay, after anything that may change its choice (reachability, a peer
    /// identified): while the node is private and no `--relay-via` was given, keep
    /// reservations on up to [`AUTO_RELAYS`] connected peers that serve circuit relay
    /// v2, so that peers reach the node through them (their circuit addresses join its
    /// addresses); once it is not private, give them up.
    pub fn auto_relay(&mut self, swarm: &mut Swarm<Behaviour>, private: bool, peers: &PeerTable) {
        if !self.via.is_empty() {
            return;
        }
        if !private {
            let ours: Vec<ListenerId> = self
                .reservations
                .iter()
                .filter(|(_, relay)| self.auto.contains(&relay.peer()))
                .map(|(id, _)| *id)
                .collect();
            for id in ours {
                if let Some(relay) = self.reservations.remove(&id) {
                    tracing::info!(%relay, "reachable without a relay: reservation given up");
                }
                swarm.remove_listener(id);
            }
            self.retries.retain(|(_, relay)| !self.auto.contains(&relay.peer()));
            self.auto.clear();
            return;
        }
        for peer in peers.connected_serving(RELAY_HOP_PROTOCOL) {
            if self.auto.len() >= AUTO_RELAYS {
                break;
            }
            if self.auto.contains(&peer) {
                continue;
            }
            let Some(relay) = addresses_of(RelayAddr::of_peer(peer), peers).into_iter().next()
            else {
                continue;
            };
            tracing::info!(%relay, "private: AutoRelay picks a relay");
            self.auto.insert(peer);
            self.reserve(swarm, relay);
        }
    }

    pub fn retry(&mut self, swarm: &mut Swarm<Behaviour>) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.retries.drain(..).partition(|(at, _)| *at <= now);
        self.retries = later;
        for (_, relay) in due {
            self.reserve(swarm, relay);
        }
    }

    /// A listener closed: if it held a reservation, ask again soon.
    pub fn on_listener_closed(&mut self, listener: ListenerId, reason: Option<String>) {
        if let Some(relay) = self.reservations.remove(&listener) {
            if self.auto.remove(&relay.peer()) {
                // AutoRelay picks again (maybe another) when something next changes.
                tracing::info!(%relay, ?reason, "AutoRelay's reservation lost");
                return;
            }
            tracing::warn!(%relay, ?reason, "relay reservation lost; asking again soon");
            self.retries.push((Instant::now() + RESERVATION_RETRY, relay));
        }
    }

    /// The circuit addresses to `target` through `relay`, or through any relay known
    /// (`None`): the `--relay-via` relays, then connected peers serving as relays. A
    /// relay named by its bare id gets each address the node knows for it.
    pub fn circuits(
        &self,
        relay: Option<&RelayAddr>,
        target: PeerId,
        peers: &PeerTable,
    ) -> Result<Vec<Multiaddr>, DialFailure> {
        let (relays, none) = match relay {
            Some(relay) => (vec![relay.clone()], DialFailure::RelayAddressUnknown),
            None => (self.known(peers), DialFailure::NoRelayKnown),
        };
        let circuits: Vec<Multiaddr> = relays
            .into_iter()
            .filter(|relay| relay.peer() != target)
            .flat_map(|relay| addresses_of(relay, peers))
            .map(|relay| relay.circuit_to(target))
            .collect();
        if circuits.is_empty() {
            return Err(none);
        }
        Ok(circuits)
    }

    fn known(&self, peers: &PeerTable) -> Vec<RelayAddr> {
        let mut relays = self.via.clone();
        for peer in peers.connected_serving(RELAY_HOP_PROTOCOL) {
            if !relays.iter().any(|r| r.peer() == peer) {
                relays.push(RelayAddr::of_peer(peer));
            }
        }
        relays
    }
}

/// The relay transport dials the relay by the address in front of `/p2p/RELAY`.
fn addresses_of(relay: RelayAddr, peers: &PeerTable) -> Vec<RelayAddr> {
    if relay.at().is_some() {
        return vec![relay];
    }
    peers
        .addresses(&relay.peer())
        .into_iter()
        .map(|addr| match split_peer(&addr) {
            Some((_, at)) => relay.with_address(at),
            None => relay.with_address(addr),
        })
        .collect()
}
