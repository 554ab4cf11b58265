//! The task that owns the `Swarm`. It takes [`Command`]s from node handles and swarm
//! events, and hands each to the part it concerns: [`Dials`] (Connects), [`Relays`]
//! (reservations), [`Reach`] (reachability), [`Addresses`] (what Identify tells),
//! and the [`PeerTable`] (presence).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use libp2p::{
    autonat, core::ConnectedPoint, dcutr, gossipsub, identify, kad, mdns, relay, swarm::SwarmEvent,
    upnp, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{
    addresses::Addresses,
    behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL},
    config::NodeConfig,
    dials::{root_cause, DialFailure, Dials, Reply, Route},
    peers::{self, PeerTable},
    reach::{Reach, Reachability},
    relay_addr::split_peer,
    relays::{Relays, RESERVATION_RETRY},
    topics::{LastSeq, TopicHub},
};
use crate::metrics::Metrics;

/// Requests to the event loop.
pub(crate) enum Command {
    /// Make sure there is a connection to `peer`, dialing if not: `addrs` and known ones
    /// (or the DHT) on the direct route, a circuit through a relay otherwise.
    Dial { peer: PeerId, addrs: Vec<Multiaddr>, route: Route, reply: Reply },
    /// The protocols browsers listen on changed: tell connected peers (identify push).
    AnnounceProtocols,
    /// A session subscribed to `topic`: make the network subscription follow the
    /// sessions' (see `sync_topic`); answer with the peers known on it.
    Subscribe { topic: String, reply: oneshot::Sender<Vec<PeerId>> },
    /// The last session left `topic`: the same, without an answer.
    Unsubscribe { topic: String },
    /// Publish `data` on `topic` (to the network; the caller hands it to this
    /// daemon's sessions); the answer is its sequence number.
    Publish { topic: String, data: Bytes, reply: oneshot::Sender<Result<u64, String>> },
}

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    dials: Dials,
    relays: Relays,
    reach: Reach,
    addresses: Addresses,
    bootstrap: Vec<Multiaddr>,
    peers: PeerTable,
    topics: TopicHub,
    last_seq: LastSeq,
    /// Fed every swarm event and the protocols' events libp2p-metrics knows.
    metrics: Option<Arc<Metrics>>,
}

/// What the event loop tells the rest of the daemon through.
pub(super) struct Outlets {
    pub addresses: watch::Sender<Vec<Multiaddr>>,
    pub reachability: watch::Sender<Reachability>,
    pub peers: PeerTable,
    pub topics: TopicHub,
    pub last_seq: LastSeq,
}

impl EventLoop {
    pub(super) fn new(
        mut swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        config: &NodeConfig,
        listening: Vec<Multiaddr>,
        outlets: Outlets,
    ) -> Self {
        let Outlets { addresses, reachability, peers, topics, last_seq } = outlets;
        let relays = Relays::new(&mut swarm, &config.relay_via);
        Self {
            swarm,
            commands,
            dials: Dials::default(),
            relays,
            reach: Reach::new(config.public, reachability),
            addresses: Addresses::new(listening, config.relay.is_some(), addresses),
            bootstrap: config.bootstrap.clone(),
            peers,
            topics,
            last_seq,
            metrics: None,
        }
    }

    /// Feeds `metrics` the swarm's and the protocols' events.
    pub(super) fn counting_into(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs until `cancel` fires.
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        let mut retry = tokio::time::interval(RESERVATION_RETRY / 2);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                // Local work before new remote work.
                Some(command) = self.commands.recv() => self.on_command(command),
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = retry.tick(), if self.relays.has_retries() => self.relays.retry(&mut self.swarm),
            }
        }
        tracing::debug!("libp2p event loop ended");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { peer, addrs, route, reply } => {
                let through = match &route {
                    Route::Direct => None,
                    Route::AnyRelay => Some(self.relays.circuits(None, peer, &self.peers)),
                    Route::Relay(relay) => {
                        Some(self.relays.circuits(Some(relay), peer, &self.peers))
                    }
                };
                self.dials.dial(&mut self.swarm, &self.peers, peer, through, addrs, reply);
            }
            Command::AnnounceProtocols => {
                // Waking each connection makes it notice the changed protocols, and
                // identify pushes them to the peer.
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                self.swarm.behaviour_mut().identify.push(peers);
            }
            Command::Subscribe { topic, reply } => {
                let hash = self.sync_topic(&topic);
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(peer, _)| *peer)
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Unsubscribe { topic } => {
                self.sync_topic(&topic);
            }
            Command::Publish { topic, data, reply } => {
                let ident = gossipsub::IdentTopic::new(topic);
                let result = match self.swarm.behaviour_mut().gossipsub.publish(ident, data) {
                    // No peer on the topic yet: the network has nothing to hear, this
                    // daemon's sessions still do.
                    Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                        Ok(self.last_seq.get())
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(metrics) = &self.metrics {
            metrics.record(&event);
        }
        let swarm = &mut self.swarm;
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.addresses.on_new_listen(swarm, address)
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.addresses.on_gone(swarm, &[address])
            }
            SwarmEvent::ListenerClosed { listener_id, reason, addresses } => {
                self.addresses.on_gone(swarm, &addresses);
                self.relays.on_listener_closed(listener_id, reason.err().map(|e| root_cause(&e)));
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
                self.addresses.publish(swarm);
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                self.reach.on_external_expired(swarm, &address);
                self.addresses.publish(swarm);
            }
            SwarmEvent::Dialing { peer_id: Some(peer), .. } => self.peers.dialing(peer),
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                self.on_connected(peer_id, &endpoint)
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, endpoint, .. } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                self.peers.disconnected(peer_id, peers::path(&endpoint));
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                self.on_dial_error(peer_id, DialFailure::from(&error))
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_connected(&mut self, peer: PeerId, endpoint: &ConnectedPoint) {
        let path = peers::path(endpoint);
        let remote = endpoint.get_remote_address();
        tracing::debug!(%peer, addr = %remote, ?path, "connected");
        self.peers.connected(peer, remote, endpoint.is_dialer(), path);
        self.dials.on_connected(peer);
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            if self.bootstrap.iter().any(|b| b == address) {
                tracing::info!(%peer, "connected to bootstrap peer");
            }
        }
    }

    fn on_dial_error(&mut self, peer: Option<PeerId>, failure: DialFailure) {
        let Some(peer) = peer else {
            return tracing::debug!(reason = %failure, "dial failed");
        };
        if self.dials.on_dial_error(&self.peers, peer, failure.clone()) {
            return;
        }
        self.peers.failed(peer);
        let bootstrap =
            self.bootstrap.iter().any(|b| split_peer(b).is_some_and(|(p, _)| p == peer));
        if bootstrap {
            tracing::warn!(%peer, reason = %failure, "cannot reach bootstrap peer; dial failed");
        } else {
            tracing::debug!(%peer, reason = %failure, "dial failed");
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        if let Some(metrics) = &self.metrics {
            record(metrics, &event);
        }
        let swarm = &mut self.swarm;
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                tracing::debug!(peer = %peer_id, agent = ?info.agent_version, "identified");
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in &info.listen_addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                    }
                }
                self.peers.identified(peer_id, &info);
                let private = self.reach.now() == Reachability::Private;
                self.relays.auto_relay(swarm, private, &self.peers);
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                tracing::info!(?old, ?new, "AutoNAT status");
                self.reach.on_nat_status(swarm, new);
                let private = self.reach.now() == Reachability::Private;
                self.relays.auto_relay(swarm, private, &self.peers);
            }
            BehaviourEvent::AutonatClient(event) => {
                let (addr, ok) = (event.tested_addr, event.result.is_ok());
                tracing::debug!(%addr, server = %event.server, ok, "AutoNAT v2 test");
                self.reach.on_address_tested(swarm, addr, ok);
                let private = self.reach.now() == Reachability::Private;
                self.relays.auto_relay(swarm, private, &self.peers);
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                step,
                ..
            }) => self.dials.on_lookup(swarm, &self.peers, id, result, step.last),
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
            BehaviourEvent::Gossipsub(event) => self.on_gossipsub(event),
            // The mapped address is confirmed external by the behaviour itself (and so
            // told in Identify); this says what happened.
            BehaviourEvent::Upnp(event) => match event {
                upnp::Event::NewExternalAddr { local_addr, external_addr } => {
                    tracing::info!(%local_addr, %external_addr, "UPnP: port mapped on the router")
                }
                upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                    tracing::info!(%external_addr, "UPnP: port mapping expired")
                }
                upnp::Event::GatewayNotFound => tracing::debug!("UPnP: no gateway on the LAN"),
                upnp::Event::NonRoutableGateway => {
                    tracing::info!("UPnP: the router is not on the public internet (double NAT)")
                }
            },
            _ => {}
        }
    }

    /// Subscribes the node to `topic` on the network while some session subscribes to
    /// it, and unsubscribes it otherwise: commands about one topic may arrive in any
    /// order (a session that leaves and comes back at once), the sessions' state
    /// decides. The topic's hash.
    fn sync_topic(&mut self, topic: &str) -> gossipsub::TopicHash {
        let ident = gossipsub::IdentTopic::new(topic);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        if self.topics.has(topic) {
            if let Err(e) = gossipsub.subscribe(&ident) {
                tracing::warn!(error = %e, "gossipsub subscribe failed");
            }
        } else {
            gossipsub.unsubscribe(&ident);
        }
        ident.hash()
    }

    /// Topic messages and peers, handed to the sessions subscribed (never waiting).
    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message { message, .. } => {
                let Some(from) = message.source else { return }; // strict: always signed
                let seq = message.sequence_number.unwrap_or(0);
                let data = Bytes::from(message.data);
                self.topics.message(message.topic.as_str(), from, seq, data, None);
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                self.topics.peer(topic.as_str(), peer_id, true)
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.topics.peer(topic.as_str(), peer_id, false)
            }
            _ => {}
        }
    }
}

/// Hands the protocol events libp2p-metrics knows to it (relay client events have no
/// recorder).
fn record(metrics: &Metrics, event: &BehaviourEvent) {
    match event {
        BehaviourEvent::Gossipsub(event) => metrics.record(event),
        BehaviourEvent::Identify(event) => metrics.record(event),
        BehaviourEvent::Kad(event) => metrics.record(event),
        BehaviourEvent::Ping(event) => metrics.record(event),
        BehaviourEvent::Relay(event) => metrics.record(event),
        BehaviourEvent::Dcutr(event) => metrics.record(event),
        _ => {}
    }
}
