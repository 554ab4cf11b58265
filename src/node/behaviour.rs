//! The swarm's behaviour: the browsers' streams (`libp2p-stream`), and everything that
//! lets the node reach and be reached: identify, ping, AutoNAT (v1 for the NAT status,
//! v2 to confirm addresses), Kademlia, mDNS, circuit relay v2 (client, and server when
//! asked) and DCUtR hole punching; and gossipsub, for the pages' topics.

use std::time::Duration;

use libp2p::{
    autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair,
    kad, mdns, memory_connection_limits, ping, relay,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour},
    upnp, StreamProtocol,
};

use super::{config::NodeConfig, swarm::NodeError, topics};

/// The identify protocol version this daemon announces.
pub const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";
/// The DHT this node joins: the IPFS one, as the original did.
pub const KAD_PROTOCOL: StreamProtocol = kad::PROTOCOL_NAME;
/// How long a Kademlia lookup may run; below [`super::CONNECT_TIMEOUT`] so a Connect
/// can still dial what it finds.
pub const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(12);
/// The protocol a circuit relay v2 serves reservations and circuits on.
pub const RELAY_HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so a connection over the limits is denied before others see it.
    pub limits: connection_limits::Behaviour,
    /// New connections are denied while the process uses more memory than this.
    pub memory: memory_connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub stream: libp2p_stream::Behaviour,
    /// AutoNAT v1: asks peers to dial back, and answers them; gives the NAT status.
    pub autonat: autonat::Behaviour,
    /// AutoNAT v2 client: confirms (or not) each candidate external address.
    pub autonat_client: autonat::v2::client::Behaviour,
    /// AutoNAT v2 server: tests other peers' addresses.
    pub autonat_server: autonat::v2::server::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Port mapping on the LAN's router (UPnP IGD), when on.
    pub upnp: Toggle<upnp::tokio::Behaviour>,
    pub relay_client: relay::client::Behaviour,
    pub relay: Toggle<relay::Behaviour>,
    pub dcutr: dcutr::Behaviour,
    /// The pages' topics (see `topics`).
    pub gossipsub: gossipsub::Behaviour,
}

impl Behaviour {
    pub fn new(
        key: &Keypair,
        config: &NodeConfig,
        limits: connection_limits::ConnectionLimits,
        relay_client: relay::client::Behaviour,
        last_seq: topics::LastSeq,
    ) -> Result<Self, NodeError> {
        let peer_id = key.public().to_peer_id();
        let agent = crate::AGENT.to_string();

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(KAD_QUERY_TIMEOUT);
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // The node serves the DHT only while it is public (told so, or AutoNAT found it:
        // the event loop switches the mode). Not on any confirmed address, as Kademlia
        // would by itself: a NATed node's relayed address would make it a server whose
        // every DHT request spends a relay circuit.
        let mode = if config.public == Some(true) { kad::Mode::Server } else { kad::Mode::Client };
        kad.set_mode(Some(mode));

        let mdns = if config.mdns {
            let mdns_config =
                mdns::Config { query_interval: Duration::from_secs(60), ..Default::default() };
            let behaviour = mdns::tokio::Behaviour::new(mdns_config, peer_id)
                .map_err(|e| NodeError::Build(format!("mDNS: {e}")))?;
            Some(behaviour)
        } else {
            None
        };

        let relay = config.relay.as_ref().map(|limits| {
            let relay_config = relay::Config {
                max_reservations: limits.max_reservations,
                max_circuits: limits.max_circuits,
                max_circuit_duration: limits.circuit_duration,
                max_circuit_bytes: limits.circuit_bytes,
                ..Default::default()
            };
            relay::Behaviour::new(peer_id, relay_config)
        });

        let upnp = config.upnp_on().then(upnp::tokio::Behaviour::default);
        let gossipsub = topics::behaviour(key, config.max_topic_message, last_seq)
            .map_err(|e| NodeError::Build(format!("gossipsub: {e}")))?;

        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            memory: memory_connection_limits::Behaviour::with_max_bytes(config.max_memory),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(agent)
                    // Remembers the addresses peers announce, so a Connect by bare peer id
                    // can dial a peer met before.
                    .with_cache_size(1024),
            ),
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
            autonat: autonat::Behaviour::new(peer_id, autonat_config()),
            autonat_client: autonat::v2::client::Behaviour::default(),
            autonat_server: autonat::v2::server::Behaviour::default(),
            kad,
            mdns: mdns.into(),
            upnp: upnp.into(),
            relay_client,
            relay: relay.into(),
            dcutr: dcutr::Behaviour::new(peer_id),
            gossipsub,
        })
    }
}

/// AutoNAT v1, tuned so a fresh node knows its status within seconds of meeting a
/// public peer (the defaults wait 15 s to start and 90 s between retries).
fn autonat_config() -> autonat::Config {
    autonat::Config {
        boot_delay: Duration::from_secs(1),
        retry_interval: Duration::from_secs(10),
        refresh_interval: Duration::from_secs(5 * 60),
        throttle_server_period: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        ..Default::default()
    }
}
