//! The libp2p side: one swarm for the whole daemon, started lazily or at launch.
//!
//! The `Swarm` lives in one event-loop task ([`event_loop`]); everyone else holds a
//! [`NodeHandle`] and sends it [`Command`]s with a `oneshot` reply. Byte traffic never
//! passes through that loop: sessions open and accept streams with their own clone of
//! [`libp2p_stream::Control`].

mod behaviour;
mod event_loop;
pub mod keys;
pub mod peers;
mod streams;

use std::{sync::Arc, time::Duration};

use libp2p::{Multiaddr, PeerId, StreamProtocol};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use keys::{KeyError, NodeKey};
pub use peers::{Path, PeerEvent, PeerState, PeerTable};
pub use streams::{PeerStreams, StreamSlot};

use crate::protocol::ConnectTarget;

/// How long a Connect may take to dial a peer and open its stream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long after the node starts an Identify may wait for AutoNAT's verdict.
pub const REACHABILITY_WAIT: Duration = Duration::from_secs(10);
/// How long the node waits for its listeners to report their addresses at start.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// Addresses of one peer dialed at once.
pub const DIAL_CONCURRENCY: u8 = 4;
/// Commands queued for the event loop.
const COMMAND_QUEUE: usize = 256;

/// What the node is started with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Multiaddrs to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers dialed at start; failures are logged, never fatal.
    pub bootstrap: Vec<Multiaddr>,
    /// Streams per remote peer, both directions, all sessions together.
    pub max_streams_per_peer: usize,
    /// Forced reachability (`-fakenatpublic`/`-fakenatprivate`); `None` until AutoNAT says.
    pub public: Option<bool>,
    /// How long a connection with no stream stays open.
    pub idle_timeout: Duration,
    /// Established libp2p connections, all peers together.
    pub max_connections: u32,
    /// Established libp2p connections to one peer.
    pub max_connections_per_peer: u32,
    /// Outgoing connections being dialed at once, all sessions together (each may hold
    /// a socket per address, [`DIAL_CONCURRENCY`] at a time).
    pub max_pending_dials: u32,
    /// Bytes of memory the process may use before new connections are denied.
    pub max_memory: usize,
    /// Find peers on the LAN with mDNS.
    pub mdns: bool,
    /// Act as a circuit relay v2 with these limits.
    pub relay: Option<RelayLimits>,
    /// Relays to keep a reservation on (each ends in `/p2p/RELAY_ID`).
    pub relay_via: Vec<Multiaddr>,
}

/// What a relay run by this node allows.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    pub max_reservations: usize,
    pub max_circuits: usize,
    pub circuit_duration: Duration,
    pub circuit_bytes: u64,
}

impl Default for RelayLimits {
    /// The circuit relay v2 defaults: a relay helps peers meet (and hole-punch), it is not
    /// meant to carry their traffic for long.
    fn default() -> Self {
        Self {
            max_reservations: 128,
            max_circuits: 16,
            circuit_duration: Duration::from_secs(120),
            circuit_bytes: 1 << 17,
        }
    }
}

impl NodeConfig {
    /// TCP and QUIC on every interface, IPv4 and IPv6, ports chosen by the system.
    pub fn default_listen() -> Vec<Multiaddr> {
        [
            "/ip4/0.0.0.0/tcp/0",
            "/ip4/0.0.0.0/udp/0/quic-v1",
            "/ip6/::/tcp/0",
            "/ip6/::/udp/0/quic-v1",
        ]
        .iter()
        .map(|a| a.parse().expect("valid multiaddr"))
        .collect()
    }
}

/// Errors of the node layer.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("building the libp2p swarm: {0}")]
    Build(String),
    #[error("could not listen on any address: {0}")]
    Listen(String),
}

/// Why a Connect did not get a stream; the text is what the browser is told.
#[derive(Debug, Clone, Error)]
pub enum ConnectError {
    #[error("cannot reach peer {peer}: {reason}")]
    Unreachable { peer: PeerId, reason: String },
    #[error("peer {peer} does not support protocol {protocol}")]
    Unsupported { peer: PeerId, protocol: String },
    #[error("timed out after {secs} s connecting to peer {peer}")]
    Timeout { peer: PeerId, secs: u64 },
    #[error("opening a stream to {peer} failed: {reason}")]
    Stream { peer: PeerId, reason: String },
    #[error("too many streams to peer {peer} (limit {limit})")]
    TooManyStreams { peer: PeerId, limit: usize },
    #[error("the libp2p node has stopped")]
    Stopped,
}

/// Whether the node can be reached from the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    Unknown,
    Public,
    Private,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// How a Connect reaches its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Directly: the given addresses, those the node knows, or a DHT lookup.
    Direct,
    /// Through any relay the node knows (its `--relay-via` relays, connected relays).
    AnyRelay,
    /// Through this relay (its address, ending in `/p2p/RELAY`; may be just that).
    Relay(Multiaddr),
}

/// A stream a Connect opened.
pub struct Connected {
    pub stream: libp2p::Stream,
    /// Its share of the per-peer stream limit.
    pub slot: StreamSlot,
    /// The relay it goes through (base58 peer id, empty when unnamed), if relayed.
    pub relay: Option<String>,
}

/// A relay's address as `--relay-via` and a Connect's RELAY take it: a multiaddr that
/// names the relay's peer id at its end (and is not itself a circuit).
pub fn parse_relay_addr(text: &str) -> Result<Multiaddr, String> {
    use libp2p::multiaddr::Protocol;
    let bad = || {
        let text = crate::protocol::text::quote(text);
        format!("{text} is not a relay's multiaddr ending in /p2p/RELAY_ID")
    };
    let addr = crate::protocol::addrs::parse_addr(text).map_err(|_| bad())?;
    match addr.iter().last() {
        Some(Protocol::P2p(_)) if !addr.iter().any(|p| p == Protocol::P2pCircuit) => Ok(addr),
        _ => Err(bad()),
    }
}

/// Requests to the event loop.
pub(crate) enum Command {
    /// Make sure there is a connection to `peer`, dialing if not: `addrs` and known ones
    /// (or the DHT) on the direct route, a circuit through a relay otherwise.
    Dial {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        route: Route,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The protocols browsers listen on changed: tell connected peers (identify push).
    AnnounceProtocols,
}

/// A cheap, cloneable handle on the running node.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

struct Inner {
    peer_id: PeerId,
    key: NodeKey,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    addresses: watch::Receiver<Vec<Multiaddr>>,
    reachability: watch::Receiver<Reachability>,
    /// Until when an Identify waits for reachability to be known (`None`: no waiting,
    /// the node has no one to ask).
    settle_by: Option<tokio::time::Instant>,
    peer_streams: PeerStreams,
    peers: PeerTable,
    /// Cancelled when the last handle goes, which ends the event loop.
    _stop: tokio_util::sync::DropGuard,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("peer_id", &self.inner.peer_id).finish()
    }
}

impl NodeHandle {
    /// Builds the swarm, starts listening and spawns the event loop.
    pub async fn start(
        config: &NodeConfig,
        key: NodeKey,
        cancel: CancellationToken,
    ) -> Result<Self, NodeError> {
        let stop = cancel.child_token();
        let started = event_loop::start(config, &key, stop.clone()).await?;
        let peer_id = key.keypair.public().to_peer_id();
        tracing::info!(%peer_id, addresses = ?*started.addresses.borrow(), "libp2p node started");
        Ok(Self {
            inner: Arc::new(Inner {
                peer_id,
                key,
                commands: started.commands,
                control: started.control,
                addresses: started.addresses,
                reachability: started.reachability,
                settle_by: started.settle_by,
                peer_streams: PeerStreams::new(config.max_streams_per_peer),
                peers: started.peers,
                _stop: stop.drop_guard(),
            }),
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    pub fn key(&self) -> &NodeKey {
        &self.inner.key
    }

    /// Whether the node is reachable from the public internet, as far as it knows.
    pub fn is_public(&self) -> bool {
        self.reachability() == Reachability::Public
    }

    pub fn reachability(&self) -> Reachability {
        *self.inner.reachability.borrow()
    }

    /// Watches reachability changes.
    pub fn watch_reachability(&self) -> watch::Receiver<Reachability> {
        self.inner.reachability.clone()
    }

    /// Waits until reachability is known, or until [`REACHABILITY_WAIT`] after the node
    /// started, whichever is first; at once when the node has no peers to ask (no
    /// bootstrap peer, no relay) or reachability was forced.
    pub async fn settled_reachability(&self) -> Reachability {
        let mut watch = self.inner.reachability.clone();
        if let Some(deadline) = self.inner.settle_by {
            let known = watch.wait_for(|r| *r != Reachability::Unknown);
            let _ = tokio::time::timeout_at(deadline, known).await;
        }
        let now = *watch.borrow();
        now
    }

    /// The node's listen addresses and confirmed external addresses.
    pub fn addresses(&self) -> Vec<Multiaddr> {
        self.inner.addresses.borrow().clone()
    }

    /// The JSON array of [`NodeHandle::addresses`] that Identify carries.
    pub fn addresses_json(&self) -> String {
        let addrs: Vec<String> = self.addresses().iter().map(|a| a.to_string()).collect();
        serde_json::to_string(&addrs).expect("strings serialize")
    }

    /// This node's own `/addrs/` connect string.
    pub fn connect_string(&self) -> String {
        ConnectTarget { peer: self.peer_id(), addrs: self.addresses() }.to_connect_string()
    }

    /// A control for accepting streams of a protocol.
    pub fn control(&self) -> libp2p_stream::Control {
        self.inner.control.clone()
    }

    pub fn peer_streams(&self) -> &PeerStreams {
        &self.inner.peer_streams
    }

    /// What the node knows of other peers (presence).
    pub fn peers(&self) -> &PeerTable {
        &self.inner.peers
    }

    /// Tells connected peers that the protocols this node accepts changed.
    pub fn announce_protocols(&self) {
        let _ = self.inner.commands.try_send(Command::AnnounceProtocols);
    }

    /// Dials `target` unless connected, then opens a stream on `protocol`.
    pub async fn connect(
        &self,
        target: &ConnectTarget,
        route: Route,
        protocol: StreamProtocol,
    ) -> Result<Connected, ConnectError> {
        let peer = target.peer;
        let work = async {
            let (reply, answer) = oneshot::channel();
            let dial = Command::Dial { peer, addrs: target.addrs.clone(), route, reply };
            self.inner.commands.send(dial).await.map_err(|_| ConnectError::Stopped)?;
            answer
                .await
                .map_err(|_| ConnectError::Stopped)?
                .map_err(|reason| ConnectError::Unreachable { peer, reason })?;
            let slot =
                self.inner.peer_streams.try_acquire(peer).ok_or(ConnectError::TooManyStreams {
                    peer,
                    limit: self.inner.peer_streams.limit(),
                })?;
            // With only relayed connections to the peer, the stream can only go over one
            // of them; looked at right before the stream picks its connection.
            let relay = self.inner.peers.relay_of(&peer);
            let stream =
                self.control().open_stream(peer, protocol.clone()).await.map_err(|e| match e {
                    libp2p_stream::OpenStreamError::UnsupportedProtocol(p) => {
                        ConnectError::Unsupported { peer, protocol: p.to_string() }
                    }
                    other => ConnectError::Stream { peer, reason: other.to_string() },
                })?;
            Ok(Connected { stream, slot, relay })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, work)
            .await
            .unwrap_or(Err(ConnectError::Timeout { peer, secs: CONNECT_TIMEOUT.as_secs() }))
    }
}

/// The daemon's one node, which may start after the daemon does (on the first Start).
pub struct NodeSlot {
    config: NodeConfig,
    cancel: CancellationToken,
    current: watch::Sender<Option<NodeHandle>>,
    starting: tokio::sync::Mutex<()>,
}

impl NodeSlot {
    pub fn new(config: NodeConfig, cancel: CancellationToken) -> Self {
        Self { config, cancel, current: watch::channel(None).0, starting: Default::default() }
    }

    /// The running node, if it has started.
    pub fn current(&self) -> Option<NodeHandle> {
        self.current.borrow().clone()
    }

    /// Watches for the node to start.
    pub fn subscribe(&self) -> watch::Receiver<Option<NodeHandle>> {
        self.current.subscribe()
    }

    /// Starts the node with `key` (a fresh one if `None`); a running node is returned as
    /// it is, whatever key was asked for.
    pub async fn start(&self, key: Option<NodeKey>) -> Result<NodeHandle, NodeError> {
        let _one_at_a_time = self.starting.lock().await;
        if let Some(node) = self.current() {
            return Ok(node);
        }
        let key = key.unwrap_or_else(NodeKey::generate);
        let node = NodeHandle::start(&self.config, key, self.cancel.clone()).await?;
        self.current.send_replace(Some(node.clone()));
        Ok(node)
    }

    /// Drops the daemon's handle so the event loop can end once sessions let go.
    pub fn stop(&self) {
        self.current.send_replace(None);
        self.cancel.cancel();
    }
}
