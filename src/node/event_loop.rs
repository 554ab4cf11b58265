//! The task that owns the `Swarm`: listening, dialing on request, and keeping the
//! node's address list current for Identify.

use std::collections::{HashMap, HashSet};

use futures::StreamExt as _;
use libp2p::{
    core::transport::ListenerId,
    core::ConnectedPoint,
    identify, noise,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        SwarmEvent,
    },
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{
    behaviour::Behaviour, peers::PeerTable, Command, NodeConfig, NodeError, NodeKey, COMMAND_QUEUE,
    LISTEN_WAIT,
};

/// Incoming connections in their handshake at once.
const PENDING_INCOMING: u32 = 128;
/// Room yamux keeps above the daemon's own per-peer cap, for streams that are closing.
const YAMUX_HEADROOM: usize = 512;

/// What [`start`] hands to the [`NodeHandle`](super::NodeHandle).
pub(super) struct Started {
    pub commands: mpsc::Sender<Command>,
    pub control: libp2p_stream::Control,
    pub addresses: watch::Receiver<Vec<Multiaddr>>,
    pub public: watch::Receiver<bool>,
    pub peers: PeerTable,
}

pub(super) async fn start(
    config: &NodeConfig,
    key: &NodeKey,
    cancel: CancellationToken,
) -> Result<Started, NodeError> {
    let mut swarm = build_swarm(config, key)?;
    let control = swarm.behaviour().stream.new_control();

    let mut pending: HashSet<ListenerId> = HashSet::new();
    let mut errors = Vec::new();
    for addr in &config.listen {
        match swarm.listen_on(addr.clone()) {
            Ok(id) => {
                pending.insert(id);
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot listen");
                errors.push(format!("{addr}: {e}"));
            }
        }
    }
    let mut addresses = Vec::new();
    // Wait until every listener has bound (or failed), so the first Identify is complete.
    let deadline = tokio::time::sleep(LISTEN_WAIT);
    tokio::pin!(deadline);
    while !pending.is_empty() {
        tokio::select! {
            _ = &mut deadline => break,
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    pending.remove(&listener_id);
                    addresses.push(address);
                }
                SwarmEvent::ListenerClosed { listener_id, reason, addresses: _ } => {
                    pending.remove(&listener_id);
                    if let Err(e) = reason {
                        errors.push(e.to_string());
                    }
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    pending.remove(&listener_id);
                    errors.push(error.to_string());
                }
                _ => {}
            },
        }
    }
    if addresses.is_empty() && !config.listen.is_empty() {
        return Err(NodeError::Listen(errors.join("; ")));
    }

    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (addresses_tx, addresses_rx) = watch::channel(addresses.clone());
    let (public_tx, public_rx) = watch::channel(config.public.unwrap_or(false));
    let peers = PeerTable::default();
    for addr in &config.bootstrap {
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
        }
    }
    let event_loop = EventLoop {
        swarm,
        commands: command_rx,
        listen_addrs: addresses,
        addresses: addresses_tx,
        _public: public_tx,
        dialing: HashMap::new(),
        bootstrap: config.bootstrap.clone(),
        peers: peers.clone(),
    };
    tokio::spawn(event_loop.run(cancel));
    Ok(Started { commands, control, addresses: addresses_rx, public: public_rx, peers })
}

fn build_swarm(config: &NodeConfig, key: &NodeKey) -> Result<Swarm<Behaviour>, NodeError> {
    let build = |e: &dyn std::fmt::Display| NodeError::Build(e.to_string());
    let max_streams = config.max_streams_per_peer + YAMUX_HEADROOM;
    let idle_timeout = config.idle_timeout;
    let max_memory = config.max_memory;
    let limits = libp2p::connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_pending_incoming(Some(PENDING_INCOMING));
    Ok(libp2p::SwarmBuilder::with_existing_identity(key.keypair.clone())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, move || {
            let mut yamux = yamux::Config::default();
            yamux.set_max_num_streams(max_streams);
            yamux
        })
        .map_err(|e| build(&e))?
        .with_quic()
        .with_dns()
        .map_err(|e| build(&e))?
        .with_behaviour(|key| Behaviour::new(key, limits, max_memory))
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
        .build())
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    listen_addrs: Vec<Multiaddr>,
    addresses: watch::Sender<Vec<Multiaddr>>,
    _public: watch::Sender<bool>,
    /// Connect requests waiting for a dial to their peer to finish.
    dialing: HashMap<PeerId, Vec<oneshot::Sender<Result<(), String>>>>,
    bootstrap: Vec<Multiaddr>,
    peers: PeerTable,
}

impl EventLoop {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                // Local work before new remote work.
                Some(command) = self.commands.recv() => self.on_command(command),
                event = self.swarm.select_next_some() => self.on_event(event),
            }
        }
        tracing::debug!("libp2p event loop ended");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { peer, addrs, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                if let Some(waiting) = self.dialing.get_mut(&peer) {
                    waiting.push(reply);
                    return;
                }
                // Addresses given with the Connect, plus whatever identify remembers
                // (the swarm asks the behaviours for those itself).
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::Always)
                    .addresses(addrs)
                    .extend_addresses_through_behaviour()
                    .build();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dialing.insert(peer, vec![reply]);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(describe_dial_error(&e)));
                    }
                }
            }
            Command::AnnounceProtocols => {
                // Waking each connection makes it notice the changed protocols, and
                // identify pushes them to the peer.
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                self.swarm.behaviour_mut().identify.push(peers);
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<super::behaviour::BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen_addrs.push(address);
                self.publish_addresses();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
                self.publish_addresses();
            }
            SwarmEvent::ExternalAddrConfirmed { .. } | SwarmEvent::ExternalAddrExpired { .. } => {
                self.publish_addresses();
            }
            SwarmEvent::Dialing { peer_id: Some(peer), .. } => self.peers.dialing(peer),
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.peers.connected(peer_id, endpoint.get_remote_address(), endpoint.is_dialer());
                if let Some(waiting) = self.dialing.remove(&peer_id) {
                    for reply in waiting {
                        let _ = reply.send(Ok(()));
                    }
                }
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    if self.bootstrap.iter().any(|b| b == address) {
                        tracing::info!(peer = %peer_id, "connected to bootstrap peer");
                    }
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, endpoint, .. } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                self.peers.disconnected(peer_id, endpoint.get_remote_address());
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                let reason = describe_dial_error(&error);
                if let Some(peer) = peer_id {
                    self.peers.failed(peer);
                }
                match peer_id.and_then(|p| self.dialing.remove(&p)) {
                    Some(waiting) => {
                        for reply in waiting {
                            let _ = reply.send(Err(reason.clone()));
                        }
                    }
                    None => tracing::warn!(peer = ?peer_id, %reason, "dial failed"),
                }
            }
            SwarmEvent::Behaviour(super::behaviour::BehaviourEvent::Identify(
                identify::Event::Received { peer_id, info, .. },
            )) => {
                tracing::debug!(peer = %peer_id, agent = %info.agent_version, "identified");
                self.peers.identified(peer_id, &info);
            }
            _ => {}
        }
    }

    fn publish_addresses(&mut self) {
        let mut all = self.listen_addrs.clone();
        for external in self.swarm.external_addresses() {
            if !all.contains(external) {
                all.push(external.clone());
            }
        }
        self.addresses.send_replace(all);
    }
}

/// A dial error in words a person can act on.
fn describe_dial_error(error: &libp2p::swarm::DialError) -> String {
    use libp2p::swarm::DialError;
    match error {
        DialError::NoAddresses => {
            "no known address for this peer (connect with an /addrs/ connect string)".into()
        }
        DialError::LocalPeerId { .. } => "that is this daemon's own peer id".into(),
        DialError::WrongPeerId { obtained, .. } => {
            format!("the address answered as a different peer ({obtained})")
        }
        DialError::Denied { cause } => format!("connection denied: {}", root_cause(cause)),
        DialError::Aborted => "dial aborted".into(),
        DialError::DialPeerConditionFalse(_) => "already dialing".into(),
        DialError::Transport(errors) => {
            let parts: Vec<String> =
                errors.iter().map(|(addr, e)| format!("{addr}: {}", root_cause(e))).collect();
            format!("unreachable ({})", parts.join("; "))
        }
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
