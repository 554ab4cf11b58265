//! Building the node: the swarm with its transports and behaviour, its listeners
//! (waited for, so the first Identify is complete), the bootstrap peers and relays,
//! and the event loop that will own it all. The caller spawns the loop.

use std::{collections::HashSet, sync::Arc, time::Duration};

use super::yamux_frames::SplitLargeFrames;
use futures::StreamExt as _;
use libp2p::{core::transport::ListenerId, noise, swarm::SwarmEvent, tcp, yamux, Multiaddr, Swarm};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use super::{
    behaviour::Behaviour,
    config::{NodeConfig, DIAL_CONCURRENCY},
    event_loop::{Command, EventLoop, Outlets},
    keys::{KeyError, NodeKey},
    peers::PeerTable,
    reach::Reachability,
    relay_addr::split_peer,
    topics::{LastSeq, TopicHub},
};
use crate::metrics::Metrics;

/// Incoming connections in their handshake at once.
const PENDING_INCOMING: u32 = 128;
/// Room yamux keeps above the daemon's own per-peer cap, for streams that are closing.
const YAMUX_HEADROOM: usize = 512;
/// How long the node waits for its listeners to report their addresses at start.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// Commands queued for the event loop.
const COMMAND_QUEUE: usize = 256;

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

/// What the [`NodeHandle`](super::NodeHandle) keeps of a built node.
pub(super) struct Built {
    pub commands: mpsc::Sender<Command>,
    pub control: libp2p_stream::Control,
    pub addresses: watch::Receiver<Vec<Multiaddr>>,
    pub reachability: watch::Receiver<Reachability>,
    pub peers: PeerTable,
    pub topics: TopicHub,
}

/// Builds the swarm and starts listening; returns what the handle keeps and the
/// event loop, for the caller to spawn.
pub(super) async fn build(
    config: &NodeConfig,
    key: &NodeKey,
    metrics: Arc<Metrics>,
) -> Result<(Built, EventLoop), NodeError> {
    let last_seq = LastSeq::default();
    let mut bandwidth = metrics.transport_registry();
    let mut swarm = build_swarm(config, key, last_seq.clone(), bandwidth.as_mut())?;
    let control = swarm.behaviour().stream.new_control();
    let addresses = listen(&mut swarm, &config.listen).await?;
    // Only a node that started counts: a failed attempt's registry goes with it.
    metrics.node_started(bandwidth);
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
    let (reachability_tx, reachability_rx) = watch::channel(Reachability::forced(config.public));
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
    let peers = PeerTable::default();
    let topics = TopicHub::new(config.max_topics);
    let outlets = Outlets {
        addresses: addresses_tx,
        reachability: reachability_tx,
        peers: peers.clone(),
        topics: topics.clone(),
        last_seq,
    };
    let event_loop =
        EventLoop::new(swarm, command_rx, config, addresses, outlets).counting_into(metrics);
    let built = Built {
        commands,
        control,
        addresses: addresses_rx,
        reachability: reachability_rx,
        peers,
        topics,
    };
    Ok((built, event_loop))
}

/// Listens on `addrs` and waits until every listener has bound (or failed), so the
/// first Identify is complete; the addresses bound.
async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<Vec<Multiaddr>, NodeError> {
    let mut pending: HashSet<ListenerId> = HashSet::new();
    let mut errors = Vec::new();
    for addr in addrs {
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
    if addresses.is_empty() && !addrs.is_empty() {
        return Err(NodeError::Listen(errors.join("; ")));
    }
    Ok(addresses)
}

fn build_swarm(
    config: &NodeConfig,
    key: &NodeKey,
    last_seq: LastSeq,
    bandwidth: Option<&mut libp2p::metrics::Registry>,
) -> Result<Swarm<Behaviour>, NodeError> {
    let build = |e: &dyn std::fmt::Display| NodeError::Build(e.to_string());
    let max_streams = config.max_streams_per_peer + YAMUX_HEADROOM;
    // Inbound data frames cut to what rust-yamux reads (see `yamux_frames`).
    let yamux = move || {
        let mut yamux = yamux::Config::default();
        yamux.set_max_num_streams(max_streams);
        SplitLargeFrames(yamux)
    };
    let idle_timeout = config.idle_timeout;
    let limits = libp2p::connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_pending_incoming(Some(PENDING_INCOMING))
        .with_max_pending_outgoing(Some(config.max_pending_dials));
    let transport = libp2p::SwarmBuilder::with_existing_identity(key.keypair.clone())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux)
        .map_err(|e| build(&e))?
        .with_quic()
        .with_dns()
        .map_err(|e| build(&e))?
        .with_relay_client(noise::Config::new, yamux)
        .map_err(|e| build(&e))?;
    let behaviour = |key: &libp2p::identity::Keypair, relay_client| {
        Behaviour::new(key, config, limits, relay_client, last_seq.clone())
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    };
    let swarm_config = |c: libp2p::swarm::Config| {
        c.with_idle_connection_timeout(idle_timeout).with_dial_concurrency_factor(
            std::num::NonZeroU8::new(DIAL_CONCURRENCY).expect("not zero"),
        )
    };
    // The builder's types differ with and without the counting transport: the same
    // steps, twice.
    let swarm = match bandwidth {
        Some(registry) => transport
            .with_bandwidth_metrics(registry)
            .with_behaviour(behaviour)
            .map_err(|e| build(&e))?
            .with_swarm_config(swarm_config)
            .build(),
        None => transport
            .with_behaviour(behaviour)
            .map_err(|e| build(&e))?
            .with_swarm_config(swarm_config)
            .build(),
    };
    Ok(swarm)
}
