//! What the node knows of other peers, for the presence extension: a table the event
//! loop keeps and a broadcast of its changes.
//!
//! States follow ssb-conn-hub's: connecting, connected, disconnecting (never seen in
//! libp2p, where a close is immediate), disconnected, failed; `Updated` reports new
//! information about a connected peer.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio::sync::broadcast;

use super::relay_addr::circuit_relay;

/// Peers remembered at most; the longest-disconnected are forgotten first.
pub const MAX_PEERS: usize = 1024;
/// Addresses remembered per peer at most.
const MAX_ADDRS: usize = 16;
/// Changes buffered per subscriber; one that falls further behind gets the whole table.
const EVENT_BUFFER: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PeerState {
    Disconnected = 0,
    Connecting = 1,
    Connected = 2,
    Disconnecting = 3,
    Failed = 4,
    Updated = 5,
}

/// What is known of a peer, as Peer's INFO says it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerInfo {
    pub addrs: Vec<String>,
    pub protocols: Vec<String>,
    pub relayed: bool,
    pub agent: String,
}

/// One change, or one row of the table.
#[derive(Debug, Clone)]
pub struct PeerEvent {
    pub peer: PeerId,
    pub state: PeerState,
    pub info: PeerInfo,
}

#[derive(Default)]
struct Record {
    state: Option<PeerState>,
    info: PeerInfo,
    direct: usize,
    relayed: usize,
    /// The relay of each relayed connection (one entry per connection; `None` where the
    /// address did not name it).
    relays: Vec<Option<PeerId>>,
    /// Bumped on every change, to forget the stalest first.
    touched: u64,
}

/// The table and its broadcast; cloned into the event loop and every node handle.
#[derive(Clone)]
pub struct PeerTable {
    inner: Arc<Mutex<Table>>,
    events: broadcast::Sender<PeerEvent>,
}

#[derive(Default)]
struct Table {
    records: HashMap<PeerId, Record>,
    clock: u64,
}

impl Default for PeerTable {
    fn default() -> Self {
        Self { inner: Arc::default(), events: broadcast::channel(EVENT_BUFFER).0 }
    }
}

impl PeerTable {
    /// Every known peer in its current state (a connected one as `Connected`).
    pub fn snapshot(&self) -> Vec<PeerEvent> {
        let table = self.lock();
        let mut rows: Vec<PeerEvent> = table
            .records
            .iter()
            .filter_map(|(peer, r)| {
                let state = match r.state? {
                    PeerState::Updated => PeerState::Connected,
                    other => other,
                };
                Some(PeerEvent { peer: *peer, state, info: r.info.clone() })
            })
            .collect();
        rows.sort_by_key(|row| row.peer.to_bytes());
        rows
    }

    /// Open connections, all peers together, and the number of peers known.
    pub fn counts(&self) -> (usize, usize) {
        let table = self.lock();
        let connections = table.records.values().map(|r| r.direct + r.relayed).sum();
        (connections, table.records.len())
    }

    /// The relay a stream to `peer` goes through: `Some` when every connection to it is
    /// relayed (a stream opened now can only use one of those).
    /// The relay's base58 peer id, or an empty string when its address did not say.
    pub fn relay_of(&self, peer: &PeerId) -> Option<String> {
        let table = self.lock();
        let record = table.records.get(peer)?;
        let relay = record.relays.first().filter(|_| record.direct == 0)?;
        Some(relay.map(|r| r.to_base58()).unwrap_or_default())
    }

    /// Whether the node has a connection (direct or relayed) to `peer` now.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.lock().records.get(peer).is_some_and(|r| r.direct + r.relayed > 0)
    }

    /// The direct addresses known for `peer` (dialed, announced by identify, found by
    /// mDNS), newest last.
    pub fn addresses(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let table = self.lock();
        let Some(record) = table.records.get(peer) else { return Vec::new() };
        record
            .info
            .addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .filter(|a| circuit_relay(a).is_none())
            .collect()
    }

    /// Connected peers that identified as circuit relays (serving `protocol`).
    pub fn connected_serving(&self, protocol: &str) -> Vec<PeerId> {
        let table = self.lock();
        let mut peers: Vec<PeerId> = table
            .records
            .iter()
            .filter(|(_, r)| r.direct > 0 && r.info.protocols.iter().any(|p| p == protocol))
            .map(|(peer, _)| *peer)
            .collect();
        peers.sort_by_key(|p| p.to_bytes());
        peers
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    pub(super) fn dialing(&self, peer: PeerId) {
        self.update(peer, |r| (r.direct + r.relayed == 0).then_some(PeerState::Connecting));
    }

    /// A connection to `peer` was established; `path` is its [`path`].
    pub(super) fn connected(&self, peer: PeerId, addr: &Multiaddr, dialer: bool, path: Path) {
        self.update(peer, |r| {
            if let Path::Relayed(relay) = path {
                r.relayed += 1;
                r.relays.push(relay);
            } else {
                r.direct += 1;
            }
            if dialer {
                remember(&mut r.info.addrs, addr);
            }
            r.info.relayed = r.direct == 0;
            Some(if r.direct + r.relayed == 1 { PeerState::Connected } else { PeerState::Updated })
        });
    }

    pub(super) fn disconnected(&self, peer: PeerId, path: Path) {
        self.update(peer, |r| {
            let count = if path.is_relayed() { &mut r.relayed } else { &mut r.direct };
            *count = count.saturating_sub(1);
            if let Path::Relayed(relay) = path {
                if let Some(at) = r.relays.iter().position(|p| *p == relay) {
                    r.relays.swap_remove(at);
                }
            }
            r.info.relayed = r.direct == 0 && r.relayed > 0;
            Some(if r.direct + r.relayed == 0 {
                PeerState::Disconnected
            } else {
                PeerState::Updated
            })
        });
    }

    pub(super) fn failed(&self, peer: PeerId) {
        self.update(peer, |r| (r.direct + r.relayed == 0).then_some(PeerState::Failed));
    }

    pub(super) fn identified(&self, peer: PeerId, info: &libp2p::identify::Info) {
        self.update(peer, |r| {
            r.info.protocols = info.protocols.iter().map(|p| p.to_string()).collect();
            r.info.protocols.sort();
            r.info.agent = info.agent_version.clone();
            for addr in &info.listen_addrs {
                remember(&mut r.info.addrs, addr);
            }
            Some(if r.direct + r.relayed > 0 {
                PeerState::Updated
            } else {
                PeerState::Disconnected
            })
        });
    }

    /// mDNS found `peer` at `addr` on the LAN.
    pub(super) fn discovered(&self, peer: PeerId, addr: &Multiaddr) {
        self.update(peer, |r| {
            let before = r.info.addrs.len();
            remember(&mut r.info.addrs, addr);
            let new = r.info.addrs.len() != before || r.state.is_none();
            let connected = r.direct + r.relayed > 0;
            new.then_some(if connected { PeerState::Updated } else { PeerState::Disconnected })
        });
    }

    /// Applies `change` to `peer`'s record; a returned state is recorded and broadcast.
    fn update(&self, peer: PeerId, change: impl FnOnce(&mut Record) -> Option<PeerState>) {
        let event = {
            let mut table = self.lock();
            table.clock += 1;
            let clock = table.clock;
            let record = table.records.entry(peer).or_default();
            let Some(state) = change(record) else { return };
            record.state = Some(state);
            record.touched = clock;
            let event = PeerEvent { peer, state, info: record.info.clone() };
            if table.records.len() > MAX_PEERS {
                forget_stalest(&mut table.records);
            }
            event
        };
        let _ = self.events.send(event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a connection reaches its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Direct,
    /// Through a circuit relay (named when its address says which).
    Relayed(Option<PeerId>),
}

impl Path {
    pub fn is_relayed(&self) -> bool {
        matches!(self, Path::Relayed(_))
    }
}

/// The path of a connection: a dialed circuit address names the relay in the remote
/// address, an accepted circuit in the local (listen) address.
pub fn path(endpoint: &libp2p::core::ConnectedPoint) -> Path {
    use libp2p::core::ConnectedPoint;
    let addr = match endpoint {
        ConnectedPoint::Dialer { address, .. } => address,
        ConnectedPoint::Listener { local_addr, .. } => local_addr,
    };
    circuit_relay(addr).map_or(Path::Direct, Path::Relayed)
}

fn remember(addrs: &mut Vec<String>, addr: &Multiaddr) {
    let text = addr.to_string();
    if !addrs.contains(&text) {
        if addrs.len() >= MAX_ADDRS {
            addrs.remove(0);
        }
        addrs.push(text);
    }
}

fn forget_stalest(records: &mut HashMap<PeerId, Record>) {
    let stalest = records
        .iter()
        .filter(|(_, r)| r.direct + r.relayed == 0)
        .min_by_key(|(_, r)| r.touched)
        .map(|(peer, _)| *peer);
    if let Some(peer) = stalest {
        records.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_connections() {
        let table = PeerTable::default();
        let mut events = table.subscribe();
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        table.dialing(peer);
        table.connected(peer, &addr, true, Path::Direct);
        table.connected(peer, &addr, true, Path::Direct);
        table.disconnected(peer, Path::Direct);
        table.disconnected(peer, Path::Direct);
        table.failed(peer);
        let states: Vec<PeerState> =
            std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.state).collect();
        use PeerState::*;
        assert_eq!(states, [Connecting, Connected, Updated, Updated, Disconnected, Failed]);
        let row = &table.snapshot()[0];
        assert_eq!(row.info.addrs, ["/ip4/127.0.0.1/tcp/1"]);
        assert!(!row.info.relayed);
        assert_eq!(table.relay_of(&peer), None);
    }

    #[test]
    fn a_peer_reached_only_through_a_relay_names_it() {
        let table = PeerTable::default();
        let (peer, relay) = (PeerId::random(), PeerId::random());
        let circuit: Multiaddr =
            format!("/ip4/10.0.0.1/tcp/1/p2p/{relay}/p2p-circuit/p2p/{peer}").parse().unwrap();
        assert_eq!(circuit_relay(&circuit), Some(Some(relay)));
        assert_eq!(circuit_relay(&"/ip4/10.0.0.1/tcp/1".parse().unwrap()), None);
        table.connected(peer, &circuit, true, Path::Relayed(Some(relay)));
        assert_eq!(table.relay_of(&peer), Some(relay.to_base58()));
        assert!(table.snapshot()[0].info.relayed);
        // Once there is a direct connection (a hole punched by DCUtR), a new stream is
        // not known to be relayed.
        let direct: Multiaddr = "/ip4/10.0.0.2/tcp/2".parse().unwrap();
        table.connected(peer, &direct, true, Path::Direct);
        assert_eq!(table.relay_of(&peer), None);
        assert!(!table.snapshot()[0].info.relayed);
        table.disconnected(peer, Path::Direct);
        assert_eq!(table.relay_of(&peer), Some(relay.to_base58()));
    }

    #[test]
    fn the_table_is_bounded() {
        let table = PeerTable::default();
        for _ in 0..MAX_PEERS + 10 {
            table.failed(PeerId::random());
        }
        assert_eq!(table.snapshot().len(), MAX_PEERS);
    }
}
