//! The task that owns the `Swarm`: listening, dialing on request, and keeping the
//! node's address list current for Identify.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::StreamExt as _;
use libp2p::{
    autonat,
    core::transport::ListenerId,
    core::ConnectedPoint,
    dcutr, identify, kad, mdns,
    multiaddr::Protocol,
    noise, relay,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        DialError, SwarmEvent,
    },
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, RELAY_HOP_PROTOCOL},
    peers::{self, PeerTable},
    Command, NodeConfig, NodeError, NodeKey, Reachability, Route, COMMAND_QUEUE, LISTEN_WAIT,
};

/// Incoming connections in their handshake at once.
const PENDING_INCOMING: u32 = 128;
/// Room yamux keeps above the daemon's own per-peer cap, for streams that are closing.
const YAMUX_HEADROOM: usize = 512;

/// How long a lost relay reservation waits before it is asked for again.
const RESERVATION_RETRY: Duration = Duration::from_secs(10);

/// What [`start`] hands to the [`NodeHandle`](super::NodeHandle).
pub(super) struct Started {
    pub commands: mpsc::Sender<Command>,
    pub control: libp2p_stream::Control,
    pub addresses: watch::Receiver<Vec<Multiaddr>>,
    pub reachability: watch::Receiver<Reachability>,
    pub settle_by: Option<Instant>,
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

    let relay_server = config.relay.is_some();
    if relay_server {
        // Whoever runs a relay says it is reachable; rust-libp2p's relay serves only
        // once the node has an external address.
        for addr in &addresses {
            swarm.add_external_address(addr.clone());
        }
    }
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (addresses_tx, addresses_rx) = watch::channel(addresses.clone());
    let initial = match config.public {
        Some(true) => Reachability::Public,
        Some(false) => Reachability::Private,
        None => Reachability::Unknown,
    };
    let (reachability_tx, reachability_rx) = watch::channel(initial);
    // Someone to ask (a bootstrap peer, a relay): Identify may wait a little for the
    // answer. Nobody to ask, or a forced answer: it never waits.
    let can_learn = !config.bootstrap.is_empty() || !config.relay_via.is_empty();
    let settle_by =
        (config.public.is_none() && can_learn).then(|| Instant::now() + super::REACHABILITY_WAIT);
    let peers = PeerTable::default();
    for addr in &config.bootstrap {
        if let Some((peer, at)) = split_peer(addr) {
            swarm.behaviour_mut().kad.add_address(&peer, at);
        }
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
        }
    }
    if !config.bootstrap.is_empty() {
        // Fails only when no bootstrap address named its peer id; nothing to do then.
        let _ = swarm.behaviour_mut().kad.bootstrap();
    }
    let mut event_loop = EventLoop {
        swarm,
        commands: command_rx,
        listen_addrs: addresses,
        addresses: addresses_tx,
        reachability: reachability_tx,
        forced: config.public.is_some(),
        relay_server,
        nat_status: Reachability::Unknown,
        confirmed_global: HashSet::new(),
        dialing: HashMap::new(),
        lookups: HashMap::new(),
        bootstrap: config.bootstrap.clone(),
        relay_via: config.relay_via.clone(),
        reservations: HashMap::new(),
        reservation_retries: Vec::new(),
        peers: peers.clone(),
    };
    for relay in config.relay_via.clone() {
        event_loop.reserve(relay);
    }
    tokio::spawn(event_loop.run(cancel));
    Ok(Started {
        commands,
        control,
        addresses: addresses_rx,
        reachability: reachability_rx,
        settle_by,
        peers,
    })
}

fn build_swarm(config: &NodeConfig, key: &NodeKey) -> Result<Swarm<Behaviour>, NodeError> {
    let build = |e: &dyn std::fmt::Display| NodeError::Build(e.to_string());
    let max_streams = config.max_streams_per_peer + YAMUX_HEADROOM;
    let yamux = move || {
        let mut yamux = yamux::Config::default();
        yamux.set_max_num_streams(max_streams);
        yamux
    };
    let idle_timeout = config.idle_timeout;
    let limits = libp2p::connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_pending_incoming(Some(PENDING_INCOMING))
        .with_max_pending_outgoing(Some(config.max_pending_dials));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key.keypair.clone())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux)
        .map_err(|e| build(&e))?
        .with_quic()
        .with_dns()
        .map_err(|e| build(&e))?
        .with_relay_client(noise::Config::new, yamux)
        .map_err(|e| build(&e))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, config, limits, relay_client)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(idle_timeout).with_dial_concurrency_factor(
                std::num::NonZeroU8::new(super::DIAL_CONCURRENCY).expect("not zero"),
            )
        })
        .build();
    Ok(swarm)
}

type Reply = oneshot::Sender<Result<(), String>>;

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    listen_addrs: Vec<Multiaddr>,
    addresses: watch::Sender<Vec<Multiaddr>>,
    reachability: watch::Sender<Reachability>,
    /// `-fakenatpublic`/`-fakenatprivate`: AutoNAT is not listened to.
    forced: bool,
    /// This node is a relay: its listen addresses are announced as external.
    relay_server: bool,
    /// AutoNAT v1's verdict.
    nat_status: Reachability,
    /// Public addresses AutoNAT v2 confirmed reach this node.
    confirmed_global: HashSet<Multiaddr>,
    /// Connect requests waiting for a dial (or a DHT lookup) to their peer to finish.
    dialing: HashMap<PeerId, Vec<Reply>>,
    /// DHT lookups for peers Connect named by bare id, with no address known.
    lookups: HashMap<kad::QueryId, PeerId>,
    bootstrap: Vec<Multiaddr>,
    relay_via: Vec<Multiaddr>,
    /// Listeners that hold a reservation on a relay, and that relay's address.
    reservations: HashMap<ListenerId, Multiaddr>,
    /// Relays whose reservation was lost, and when to ask again.
    reservation_retries: Vec<(Instant, Multiaddr)>,
    peers: PeerTable,
}

impl EventLoop {
    async fn run(mut self, cancel: CancellationToken) {
        let mut retry = tokio::time::interval(RESERVATION_RETRY / 2);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                // Local work before new remote work.
                Some(command) = self.commands.recv() => self.on_command(command),
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = retry.tick(), if !self.reservation_retries.is_empty() => {
                    self.retry_reservations()
                }
            }
        }
        tracing::debug!("libp2p event loop ended");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { peer, addrs, route, reply } => self.dial(peer, addrs, route, reply),
            Command::AnnounceProtocols => {
                // Waking each connection makes it notice the changed protocols, and
                // identify pushes them to the peer.
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                self.swarm.behaviour_mut().identify.push(peers);
            }
        }
    }

    fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, route: Route, reply: Reply) {
        if self.swarm.is_connected(&peer) {
            let _ = reply.send(Ok(()));
            return;
        }
        if let Some(waiting) = self.dialing.get_mut(&peer) {
            waiting.push(reply);
            return;
        }
        let opts = match &route {
            // Addresses given with the Connect, plus whatever the behaviours know
            // (identify's cache, mDNS, the Kademlia routing table).
            Route::Direct => DialOpts::peer_id(peer)
                .condition(PeerCondition::Always)
                .addresses(addrs)
                .extend_addresses_through_behaviour()
                .build(),
            Route::AnyRelay | Route::Relay(_) => {
                let (relays, none) = match &route {
                    Route::Relay(relay) => (
                        vec![relay.clone()],
                        "the relay's address is not known (name it by its full multiaddr, \
                         or connect to it first)",
                    ),
                    _ => (
                        self.known_relays(),
                        "no relay known (start the daemon with --relay-via, or connect to a \
                         relay first)",
                    ),
                };
                let circuits: Vec<Multiaddr> = relays
                    .into_iter()
                    .filter(|relay| split_peer(relay).is_none_or(|(id, _)| id != peer))
                    .flat_map(|relay| self.relay_addresses(relay))
                    .map(|relay| circuit(relay, peer))
                    .collect();
                if circuits.is_empty() {
                    let _ = reply.send(Err(none.into()));
                    return;
                }
                DialOpts::peer_id(peer).condition(PeerCondition::Always).addresses(circuits).build()
            }
        };
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dialing.insert(peer, vec![reply]);
            }
            Err(DialError::NoAddresses) if route == Route::Direct => self.look_up(peer, reply),
            Err(e) => {
                let _ = reply.send(Err(describe_dial_error(&e)));
            }
        }
    }

    /// Relays a Connect with RELAY=1 may go through: the `--relay-via` relays, then
    /// connected peers that serve as relays.
    fn known_relays(&self) -> Vec<Multiaddr> {
        let mut relays = self.relay_via.clone();
        for peer in self.peers.connected_serving(RELAY_HOP_PROTOCOL) {
            if !relays.iter().any(|r| split_peer(r).is_some_and(|(id, _)| id == peer)) {
                relays.push(Multiaddr::empty().with(Protocol::P2p(peer)));
            }
        }
        relays
    }

    /// The relay transport dials the relay by the address in front of `/p2p/RELAY`: a
    /// relay named by its bare id gets each address the node knows for it.
    fn relay_addresses(&self, relay: Multiaddr) -> Vec<Multiaddr> {
        match (relay.iter().next(), split_peer(&relay)) {
            (Some(Protocol::P2p(_)), Some((id, _))) => self
                .peers
                .addresses(&id)
                .into_iter()
                .map(|addr| match split_peer(&addr) {
                    Some(_) => addr,
                    None => addr.with(Protocol::P2p(id)),
                })
                .collect(),
            _ => vec![relay],
        }
    }

    /// Asks the DHT for `peer`'s addresses; the Connect is answered when it is dialed,
    /// or when the lookup ends without it.
    fn look_up(&mut self, peer: PeerId, reply: Reply) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let known: usize = kad.kbuckets().map(|bucket| bucket.num_entries()).sum();
        if known == 0 {
            let _ = reply.send(Err("no address known for this peer, and no DHT peer to ask \
                                    (add a bootstrap peer with -peer, or connect with an \
                                    /addrs/ connect string)"
                .into()));
            return;
        }
        tracing::debug!(%peer, known, "looking the peer up in the DHT");
        let query = kad.get_closest_peers(peer);
        self.lookups.insert(query, peer);
        self.dialing.insert(peer, vec![reply]);
        self.peers.dialing(peer);
    }

    fn on_lookup(&mut self, query: kad::QueryId, result: kad::GetClosestPeersResult, last: bool) {
        let Some(&peer) = self.lookups.get(&query) else { return };
        let peers = match &result {
            Ok(ok) => &ok.peers,
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        if let Some(found) = peers.iter().find(|info| info.peer_id == peer) {
            tracing::debug!(%peer, addrs = ?found.addrs, "found in the DHT");
            self.lookups.remove(&query);
            if let Some(mut running) = self.swarm.behaviour_mut().kad.query_mut(&query) {
                running.finish();
            }
            if !self.dialing.contains_key(&peer) {
                return; // connected meanwhile, or given up
            }
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::Always)
                .addresses(found.addrs.clone())
                .extend_addresses_through_behaviour()
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                self.dial_failed(peer, describe_dial_error(&e));
            }
        } else if last {
            self.lookups.remove(&query);
            let timed_out = if result.is_err() { ", timed out" } else { "" };
            let reason = format!(
                "peer not found: no address known, and the DHT did not know it either \
                 ({} closest peers found{timed_out})",
                peers.len()
            );
            self.dial_failed(peer, reason);
        }
    }

    fn dial_failed(&mut self, peer: PeerId, reason: String) {
        self.peers.failed(peer);
        for reply in self.dialing.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Err(reason.clone()));
        }
    }

    /// Listens through `relay`, which makes a reservation on it.
    fn reserve(&mut self, relay: Multiaddr) {
        if let Some((peer, at)) = split_peer(&relay) {
            self.swarm.add_peer_address(peer, at);
        }
        match self.swarm.listen_on(relay.clone().with(Protocol::P2pCircuit)) {
            Ok(id) => {
                tracing::info!(%relay, "asking the relay for a reservation");
                self.reservations.insert(id, relay);
            }
            Err(e) => {
                tracing::warn!(%relay, error = %e, "cannot listen through the relay");
                self.reservation_retries.push((Instant::now() + RESERVATION_RETRY, relay));
            }
        }
    }

    fn retry_reservations(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.reservation_retries.drain(..).partition(|(at, _)| *at <= now);
        self.reservation_retries = later;
        for (_, relay) in due {
            self.reserve(relay);
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if self.relay_server && peers::circuit_relay(&address).is_none() {
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.push(address);
                self.publish_addresses();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
                self.publish_addresses();
            }
            SwarmEvent::ListenerClosed { listener_id, reason, addresses } => {
                if !addresses.is_empty() {
                    self.listen_addrs.retain(|a| !addresses.contains(a));
                    self.publish_addresses();
                }
                if let Some(relay) = self.reservations.remove(&listener_id) {
                    let reason = reason.err().map(|e| root_cause(&e));
                    tracing::warn!(%relay, ?reason, "relay reservation lost; asking again soon");
                    self.reservation_retries.push((Instant::now() + RESERVATION_RETRY, relay));
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
                self.publish_addresses();
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                self.confirmed_global.remove(&address);
                self.update_reachability();
                self.publish_addresses();
            }
            SwarmEvent::Dialing { peer_id: Some(peer), .. } => self.peers.dialing(peer),
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                let path = peers::path(&endpoint);
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), ?path, "connected");
                self.peers.connected(
                    peer_id,
                    endpoint.get_remote_address(),
                    endpoint.is_dialer(),
                    path,
                );
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
                self.peers.disconnected(peer_id, peers::path(&endpoint));
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                let reason = describe_dial_error(&error);
                match peer_id {
                    // A lookup still running may yet find a better address.
                    Some(peer) if self.lookups.values().any(|p| *p == peer) => {}
                    Some(peer) if self.dialing.contains_key(&peer) => {
                        self.dial_failed(peer, reason)
                    }
                    Some(peer) => {
                        self.peers.failed(peer);
                        let bootstrap = self
                            .bootstrap
                            .iter()
                            .any(|b| split_peer(b).is_some_and(|(p, _)| p == peer));
                        if bootstrap {
                            tracing::warn!(%peer, %reason, "cannot reach bootstrap peer; dial failed");
                        } else {
                            tracing::debug!(%peer, %reason, "dial failed");
                        }
                    }
                    None => tracing::debug!(%reason, "dial failed"),
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                tracing::debug!(peer = %peer_id, agent = ?info.agent_version, "identified");
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in &info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                    }
                }
                self.peers.identified(peer_id, &info);
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                tracing::info!(?old, ?new, "AutoNAT status");
                self.nat_status = match new {
                    autonat::NatStatus::Public(_) => Reachability::Public,
                    autonat::NatStatus::Private => Reachability::Private,
                    autonat::NatStatus::Unknown => Reachability::Unknown,
                };
                self.update_reachability();
            }
            BehaviourEvent::AutonatClient(event) => {
                let addr = event.tested_addr;
                tracing::debug!(%addr, server = %event.server, ok = event.result.is_ok(), "AutoNAT v2 test");
                if !is_global(&addr) {
                    return;
                }
                if event.result.is_ok() {
                    self.confirmed_global.insert(addr);
                } else {
                    self.confirmed_global.remove(&addr);
                }
                self.update_reachability();
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                step,
                ..
            }) => self.on_lookup(id, result, step.last),
            BehaviourEvent::Kad(kad::Event::ModeChanged { new_mode }) => {
                tracing::info!(mode = %new_mode, "Kademlia mode");
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    tracing::debug!(%peer, %addr, "found on the LAN (mDNS)");
                    self.peers.discovered(peer, &addr);
                }
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => tracing::info!(relay = %relay_peer_id, "relay reservation accepted"),
            BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => match result {
                Ok(_) => tracing::info!(peer = %remote_peer_id, "hole punched: direct connection"),
                Err(e) => tracing::info!(peer = %remote_peer_id, error = %e, "hole punch failed"),
            },
            _ => {}
        }
    }

    /// Public when AutoNAT v1 says so or v2 confirmed a public address; private when
    /// v1 says so; unknown otherwise. A forced answer never changes.
    fn update_reachability(&mut self) {
        if self.forced {
            return;
        }
        let now = if self.nat_status == Reachability::Public || !self.confirmed_global.is_empty() {
            Reachability::Public
        } else {
            self.nat_status
        };
        self.reachability.send_if_modified(|current| {
            let changed = *current != now;
            if changed {
                tracing::info!(reachability = now.as_str(), "reachability changed");
                *current = now;
            }
            changed
        });
        let mode = if now == Reachability::Public { kad::Mode::Server } else { kad::Mode::Client };
        self.swarm.behaviour_mut().kad.set_mode(Some(mode));
    }

    fn publish_addresses(&mut self) {
        let mut all = self.listen_addrs.clone();
        let me = *self.swarm.local_peer_id();
        for external in self.swarm.external_addresses() {
            // The same address as a listen address, but for a `/p2p/<own id>` at its end.
            let bare = match split_peer(external) {
                Some((peer, bare)) if peer == me => bare,
                _ => external.clone(),
            };
            if !all.contains(&bare) {
                all.push(bare);
            }
        }
        self.addresses.send_replace(all);
    }
}

/// `addr` without its trailing `/p2p/ID`, and that id.
fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut at = addr.clone();
    match at.pop()? {
        Protocol::P2p(peer) => Some((peer, at)),
        _ => None,
    }
}

/// The circuit address that reaches `peer` through `relay`.
fn circuit(relay: Multiaddr, peer: PeerId) -> Multiaddr {
    relay.with(Protocol::P2pCircuit).with(Protocol::P2p(peer))
}

/// Whether `addr` is on the public internet (not loopback, private, link-local, shared,
/// documentation or otherwise reserved), so that a peer confirming it means the node
/// is publicly reachable.
pub(crate) fn is_global(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => is_global_v4(ip),
        Some(Protocol::Ip6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => is_global_v4(v4),
            None => {
                let first = ip.segments()[0];
                !(ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_multicast()
                    || (first & 0xfe00) == 0xfc00 // unique local
                    || (first & 0xffc0) == 0xfe80 // link-local
                    || (first == 0x2001 && ip.segments()[1] == 0x0db8)) // documentation
            }
        },
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)) => true,
        _ => false,
    }
}

fn is_global_v4(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared (carrier-grade NAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 0 && c == 0)) // IETF protocol assignments
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
