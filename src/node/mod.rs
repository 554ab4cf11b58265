//! The libp2p side: one swarm for the whole daemon, started lazily or at launch.
//!
//! [`swarm`] builds the node (transports, [`behaviour`], listeners, bootstrap) and
//! returns what the [`NodeHandle`] keeps together with the [`event_loop`], which the
//! handle spawns. That loop owns the `Swarm` and hands each event to its parts, one
//! file each: [`dials`] for Connects (and DHT lookups), [`relays`] for reservations
//! and circuits, [`reach`] for reachability, [`addresses`] for what Identify tells,
//! [`peers`] for presence. Everyone else holds a [`NodeHandle`] and sends the loop
//! [`Command`]s with a `oneshot` reply. Byte traffic never passes through that loop:
//! sessions open and accept streams with their own clone of
//! [`libp2p_stream::Control`]. Relay addresses have one home, [`relay_addr`].

mod addresses;
mod behaviour;
mod config;
mod dials;
mod event_loop;
pub mod keys;
pub mod peers;
mod reach;
pub mod relay_addr;
mod relays;
mod streams;
mod swarm;
pub mod topics;
pub mod yamux_frames;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use config::{NodeConfig, RelayLimits, DIAL_CONCURRENCY};
pub use dials::{DialFailure, Route};
pub use keys::{KeyError, NodeKey};
pub use peers::{Path, PeerEvent, PeerState, PeerTable};
pub use reach::Reachability;
pub use relay_addr::RelayAddr;
pub use streams::{PeerStreams, StreamSlot};
pub use swarm::NodeError;

use crate::{metrics::Metrics, protocol::ConnectTarget};
use event_loop::Command;

/// How long the event loop may take to answer a topic command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a Connect may take to dial a peer and open its stream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A relay's address as `--relay-via` takes it: a multiaddr that names the relay's
/// peer id at its end (and is not itself a circuit).
pub fn parse_relay_addr(text: &str) -> Result<Multiaddr, String> {
    RelayAddr::parse_multiaddr(text).map(|relay| relay.to_multiaddr()).map_err(|e| e.to_string())
}

/// Why a Connect did not get a stream; the text is what the browser is told.
#[derive(Debug, Clone, Error)]
pub enum ConnectError {
    #[error("cannot reach peer {peer}: {reason}")]
    Unreachable { peer: PeerId, reason: DialFailure },
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
    #[error("{0}")]
    Topics(String),
}

/// A stream a Connect opened.
pub struct Connected {
    pub stream: libp2p::Stream,
    /// Its share of the per-peer stream limit.
    pub slot: StreamSlot,
    /// The relay it goes through (base58 peer id, empty when unnamed), if relayed.
    pub relay: Option<String>,
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
    peer_streams: PeerStreams,
    peers: PeerTable,
    topics: topics::TopicHub,
    /// Cancelled when the last handle goes, which ends the event loop.
    _stop: tokio_util::sync::DropGuard,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("peer_id", &self.inner.peer_id).finish()
    }
}

impl NodeHandle {
    /// Builds the swarm, starts listening and spawns the event loop, which feeds
    /// `metrics` the swarm's events.
    pub async fn start(
        config: &NodeConfig,
        key: NodeKey,
        cancel: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Result<Self, NodeError> {
        let stop = cancel.child_token();
        let (started, event_loop) = swarm::build(config, &key, metrics).await?;
        tokio::spawn(event_loop.run(stop.clone()));
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
                peer_streams: PeerStreams::new(config.max_streams_per_peer),
                peers: started.peers,
                topics: started.topics,
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

    /// Identify's PUBLIC: 1 unless the node is known to be private (the original's
    /// mapping of an unknown verdict, which its pages rely on to host).
    pub fn identify_public(&self) -> bool {
        self.reachability() != Reachability::Private
    }

    pub fn reachability(&self) -> Reachability {
        *self.inner.reachability.borrow()
    }

    /// Watches reachability changes.
    pub fn watch_reachability(&self) -> watch::Receiver<Reachability> {
        self.inner.reachability.clone()
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

    /// Subscribes `session` to `topic` (the node subscribes on the network while some
    /// session does); the peers known on the topic.
    pub async fn subscribe(
        &self,
        topic: &str,
        session: u64,
        inbox: topics::TopicInbox,
    ) -> Result<Vec<PeerId>, ConnectError> {
        self.inner
            .topics
            .join(topic, session, inbox)
            .map_err(|full| ConnectError::Topics(full.to_string()))?;
        let (reply, answer) = oneshot::channel();
        let command = Command::Subscribe { topic: topic.into(), reply };
        let work = async {
            self.inner.commands.send(command).await.map_err(|_| ConnectError::Stopped)?;
            answer.await.map_err(|_| ConnectError::Stopped)
        };
        let result =
            tokio::time::timeout(COMMAND_TIMEOUT, work).await.unwrap_or(Err(ConnectError::Stopped));
        if result.is_err() {
            self.unsubscribe(topic, session);
        }
        result
    }

    /// Unsubscribes `session` from `topic` (the node leaves it with its last session).
    pub fn unsubscribe(&self, topic: &str, session: u64) {
        if self.inner.topics.leave(topic, session) {
            let command = Command::Unsubscribe { topic: topic.into() };
            let commands = self.inner.commands.clone();
            tokio::spawn(async move {
                let _ = commands.send(command).await;
            });
        }
    }

    /// Publishes `data` on `topic`: to the network once, and to this daemon's other
    /// sessions on it in-process. The message's sequence number.
    pub async fn publish(&self, topic: &str, data: Bytes, session: u64) -> Result<u64, String> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Publish { topic: topic.into(), data: data.clone(), reply };
        let stopped = || ConnectError::Stopped.to_string();
        let work = async {
            self.inner.commands.send(command).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        };
        let seq = tokio::time::timeout(COMMAND_TIMEOUT, work).await.unwrap_or_else(|_| {
            Err(format!("the node did not answer within {} s", COMMAND_TIMEOUT.as_secs()))
        })?;
        self.inner.topics.message(topic, self.inner.peer_id, seq, data, Some(session));
        Ok(seq)
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
    metrics: Arc<Metrics>,
    current: watch::Sender<Option<NodeHandle>>,
    starting: tokio::sync::Mutex<()>,
}

impl NodeSlot {
    pub fn new(config: NodeConfig, cancel: CancellationToken) -> Self {
        Self::with_metrics(config, cancel, Arc::default())
    }

    /// [`NodeSlot::new`], its node counting into the daemon's `metrics`.
    pub fn with_metrics(
        config: NodeConfig,
        cancel: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        let current = watch::channel(None).0;
        Self { config, cancel, metrics, current, starting: Default::default() }
    }

    /// The running node, if it has started.
    /// The configuration nodes start with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

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
        self.start_on_port(key, None).await
    }

    /// [`NodeSlot::start`], with its TCP listeners on `port` when one is given (the
    /// original's July 2020 Start; see [`NodeConfig::with_tcp_port`]).
    pub async fn start_on_port(
        &self,
        key: Option<NodeKey>,
        port: Option<u16>,
    ) -> Result<NodeHandle, NodeError> {
        let _one_at_a_time = self.starting.lock().await;
        if let Some(node) = self.current() {
            return Ok(node);
        }
        let key = key.unwrap_or_else(NodeKey::generate);
        let config = match port {
            Some(port) => self.config.with_tcp_port(port),
            None => self.config.clone(),
        };
        let node =
            NodeHandle::start(&config, key, self.cancel.clone(), self.metrics.clone()).await?;
        self.current.send_replace(Some(node.clone()));
        Ok(node)
    }

    /// Drops the daemon's handle so the event loop can end once sessions let go.
    pub fn stop(&self) {
        self.current.send_replace(None);
        self.cancel.cancel();
    }
}
