//! The swarm's behaviour: identify, ping, and `libp2p-stream` for the browsers' protocols.

use libp2p::{
    connection_limits, identify, identity::Keypair, memory_connection_limits, ping,
    swarm::NetworkBehaviour,
};

/// The identify protocol version this daemon announces.
pub const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so a connection over the limits is denied before others see it.
    pub limits: connection_limits::Behaviour,
    /// New connections are denied while the process uses more memory than this.
    pub memory: memory_connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub stream: libp2p_stream::Behaviour,
}

impl Behaviour {
    pub fn new(
        key: &Keypair,
        limits: connection_limits::ConnectionLimits,
        max_memory: usize,
    ) -> Self {
        let agent = format!("libp2p-websocket/{}", env!("CARGO_PKG_VERSION"));
        Self {
            limits: connection_limits::Behaviour::new(limits),
            memory: memory_connection_limits::Behaviour::with_max_bytes(max_memory),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(agent)
                    // Remembers the addresses peers announce, so a Connect by bare peer id
                    // can dial a peer met before.
                    .with_cache_size(1024),
            ),
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
        }
    }
}
