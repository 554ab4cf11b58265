//! Dials on behalf of Connects: to given and known addresses, through relays, or
//! after a DHT lookup for a peer named by its bare id; each waiting Connect is
//! answered when its peer is connected or the dial has failed.

use std::collections::HashMap;

use libp2p::{
    kad,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        DialError,
    },
    Multiaddr, PeerId, Swarm,
};
use tokio::sync::oneshot;

use super::{behaviour::Behaviour, peers::PeerTable, relay_addr::RelayAddr};

/// How a Connect reaches its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Directly: the given addresses, those the node knows, or a DHT lookup.
    Direct,
    /// Through any relay the node knows (its `--relay-via` relays, connected relays).
    AnyRelay,
    /// Through this relay.
    Relay(Box<RelayAddr>),
}

/// Why a dial did not connect; the text is what the browser is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialFailure {
    #[error("no known address for this peer (connect with an /addrs/ connect string)")]
    NoAddresses,
    #[error(
        "no address known for this peer, and no DHT peer to ask (add a bootstrap peer with \
         -peer, or connect with an /addrs/ connect string)"
    )]
    NoDhtPeer,
    #[error(
        "peer not found: no address known, and the DHT did not know it either ({closest} \
         closest peers found{})",
        if *.timed_out { ", timed out" } else { "" }
    )]
    NotFound { closest: usize, timed_out: bool },
    #[error("that is this daemon's own peer id")]
    OwnPeerId,
    #[error("the address answered as a different peer ({0})")]
    WrongPeer(PeerId),
    #[error("connection denied: {0}")]
    Denied(String),
    #[error("dial aborted")]
    Aborted,
    #[error("already dialing")]
    AlreadyDialing,
    /// Each address tried, with its error.
    #[error("unreachable ({})", .0.iter().map(|(a, e)| format!("{a}: {e}")).collect::<Vec<_>>().join("; "))]
    Unreachable(Vec<(Multiaddr, String)>),
    #[error("no relay known (start the daemon with --relay-via, or connect to a relay first)")]
    NoRelayKnown,
    #[error(
        "the relay's address is not known (name it by its full multiaddr, or connect to it \
         first)"
    )]
    RelayAddressUnknown,
}

impl From<&DialError> for DialFailure {
    fn from(error: &DialError) -> Self {
        match error {
            DialError::NoAddresses => Self::NoAddresses,
            DialError::LocalPeerId { .. } => Self::OwnPeerId,
            DialError::WrongPeerId { obtained, .. } => Self::WrongPeer(*obtained),
            DialError::Denied { cause } => Self::Denied(root_cause(cause)),
            DialError::Aborted => Self::Aborted,
            DialError::DialPeerConditionFalse(_) => Self::AlreadyDialing,
            DialError::Transport(errors) => Self::Unreachable(
                errors.iter().map(|(addr, e)| (addr.clone(), root_cause(e))).collect(),
            ),
        }
    }
}

/// The innermost error's text.
pub(super) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

pub(super) type Reply = oneshot::Sender<Result<(), DialFailure>>;

/// The event loop's part that dials for Connects.
#[derive(Default)]
pub(super) struct Dials {
    /// Connects waiting for a dial (or a DHT lookup) to their peer to finish.
    waiting: HashMap<PeerId, Vec<Reply>>,
    /// DHT lookups for peers Connect named by bare id, with no address known.
    lookups: HashMap<kad::QueryId, PeerId>,
}

impl Dials {
    /// Dials `peer` at `addrs` (plus what the behaviours know), or at the circuit
    /// addresses `through` relays; answers `reply` once connected or failed.
    pub fn dial(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peers: &PeerTable,
        peer: PeerId,
        through: Option<Result<Vec<Multiaddr>, DialFailure>>,
        addrs: Vec<Multiaddr>,
        reply: Reply,
    ) {
        if swarm.is_connected(&peer) {
            let _ = reply.send(Ok(()));
            return;
        }
        if let Some(waiting) = self.waiting.get_mut(&peer) {
            waiting.push(reply);
            return;
        }
        let direct = through.is_none();
        let opts = match through {
            // Addresses given with the Connect, plus whatever the behaviours know
            // (identify's cache, mDNS, the Kademlia routing table).
            None => DialOpts::peer_id(peer)
                .condition(PeerCondition::Always)
                .addresses(addrs)
                .extend_addresses_through_behaviour()
                .build(),
            Some(Ok(circuits)) => {
                DialOpts::peer_id(peer).condition(PeerCondition::Always).addresses(circuits).build()
            }
            Some(Err(failure)) => {
                let _ = reply.send(Err(failure));
                return;
            }
        };
        match swarm.dial(opts) {
            Ok(()) => {
                self.waiting.insert(peer, vec![reply]);
            }
            Err(DialError::NoAddresses) if direct => self.look_up(swarm, peers, peer, reply),
            Err(e) => {
                let _ = reply.send(Err((&e).into()));
            }
        }
    }

    /// Asks the DHT for `peer`'s addresses; the Connect is answered when it is dialed,
    /// or when the lookup ends without it.
    fn look_up(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peers: &PeerTable,
        peer: PeerId,
        reply: Reply,
    ) {
        let kad = &mut swarm.behaviour_mut().kad;
        let known: usize = kad.kbuckets().map(|bucket| bucket.num_entries()).sum();
        if known == 0 {
            let _ = reply.send(Err(DialFailure::NoDhtPeer));
            return;
        }
        tracing::debug!(%peer, known, "looking the peer up in the DHT");
        let query = kad.get_closest_peers(peer);
        self.lookups.insert(query, peer);
        self.waiting.insert(peer, vec![reply]);
        peers.dialing(peer);
    }

    pub fn on_lookup(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peers: &PeerTable,
        query: kad::QueryId,
        result: kad::GetClosestPeersResult,
        last: bool,
    ) {
        let Some(&peer) = self.lookups.get(&query) else { return };
        let found = match &result {
            Ok(ok) => &ok.peers,
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        if let Some(info) = found.iter().find(|info| info.peer_id == peer) {
            tracing::debug!(%peer, addrs = ?info.addrs, "found in the DHT");
            self.lookups.remove(&query);
            if let Some(mut running) = swarm.behaviour_mut().kad.query_mut(&query) {
                running.finish();
            }
            if !self.waiting.contains_key(&peer) {
                return; // connected meanwhile, or given up
            }
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::Always)
                .addresses(info.addrs.clone())
                .extend_addresses_through_behaviour()
                .build();
            if let Err(e) = swarm.dial(opts) {
                self.failed(peers, peer, (&e).into());
            }
        } else if last {
            self.lookups.remove(&query);
            let failure =
                DialFailure::NotFound { closest: found.len(), timed_out: result.is_err() };
            self.failed(peers, peer, failure);
        }
    }

    /// `peer` is connected: every Connect waiting for it goes on.
    pub fn on_connected(&mut self, peer: PeerId) {
        for reply in self.waiting.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Ok(()));
        }
    }

    /// A dial failed; `false` when no Connect was waiting for it (nor a lookup that
    /// may yet find a better address).
    pub fn on_dial_error(&mut self, peers: &PeerTable, peer: PeerId, failure: DialFailure) -> bool {
        if self.lookups.values().any(|p| *p == peer) {
            return true;
        }
        if !self.waiting.contains_key(&peer) {
            return false;
        }
        self.failed(peers, peer, failure);
        true
    }

    fn failed(&mut self, peers: &PeerTable, peer: PeerId, failure: DialFailure) {
        peers.failed(peer);
        for reply in self.waiting.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Err(failure.clone()));
        }
    }
}
