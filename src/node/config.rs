//! What the node is started with.

use std::time::Duration;

use libp2p::{multiaddr::Protocol, Multiaddr};

/// Addresses of one peer dialed at once.
pub const DIAL_CONCURRENCY: u8 = 4;

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
    /// Map the node's TCP and QUIC ports on the LAN's router (UPnP IGD), as the
    /// original did; only when it listens beyond loopback (see [`NodeConfig::upnp_on`]).
    pub upnp: bool,
    /// Act as a circuit relay v2 with these limits.
    pub relay: Option<RelayLimits>,
    /// Relays to keep a reservation on (each ends in `/p2p/RELAY_ID`).
    pub relay_via: Vec<Multiaddr>,
    /// The largest topic message (pubsub extension) published or accepted, in bytes.
    pub max_topic_message: usize,
    /// Topics the node subscribes to for its sessions, all together.
    pub max_topics: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upnp_runs_only_when_asked_and_listening_beyond_loopback() {
        let config = |listen: &[&str], upnp| NodeConfig {
            listen: listen.iter().map(|a| a.parse().unwrap()).collect(),
            upnp,
            ..NodeConfig::default()
        };
        assert!(NodeConfig::default().upnp_on());
        assert!(config(&["/ip4/0.0.0.0/tcp/0", "/ip4/127.0.0.1/tcp/1"], true).upnp_on());
        assert!(config(&["/ip4/10.1.0.2/tcp/4001"], true).upnp_on());
        assert!(!config(&["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"], true).upnp_on());
        assert!(!config(&["/ip4/0.0.0.0/tcp/0"], false).upnp_on());
        let moved = config(&["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"], false)
            .with_tcp_port(4001);
        assert_eq!(moved.listen[0], "/ip4/127.0.0.1/tcp/4001".parse().unwrap());
        assert_eq!(moved.listen[1], "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap());
        let added = config(&["/ip4/127.0.0.1/udp/0/quic-v1"], false).with_tcp_port(4001);
        assert_eq!(added.listen[1], "/ip4/0.0.0.0/tcp/4001".parse().unwrap());
    }
}

impl NodeConfig {
    /// Whether UPnP runs: asked for, and some listen address is not loopback (a node
    /// on loopback alone has nothing a router could map, and must not search the LAN).
    pub fn upnp_on(&self) -> bool {
        let beyond_loopback = |addr: &Multiaddr| match addr.iter().next() {
            Some(Protocol::Ip4(ip)) => !ip.is_loopback(),
            Some(Protocol::Ip6(ip)) => !ip.is_loopback(),
            _ => false,
        };
        self.upnp && self.listen.iter().any(beyond_loopback)
    }

    /// This configuration with every TCP listen address on `port` (the original's July
    /// 2020 Start carried the port its node listened on; its hosts are kept), or, with
    /// no TCP listen address, one on every IPv4 interface.
    pub fn with_tcp_port(&self, port: u16) -> Self {
        let mut config = self.clone();
        let mut any = false;
        for addr in &mut config.listen {
            let mut changed = Multiaddr::empty();
            for part in addr.iter() {
                changed.push(match part {
                    Protocol::Tcp(_) => {
                        any = true;
                        Protocol::Tcp(port)
                    }
                    other => other,
                });
            }
            *addr = changed;
        }
        if !any {
            config.listen.push(
                Multiaddr::empty()
                    .with(Protocol::Ip4([0, 0, 0, 0].into()))
                    .with(Protocol::Tcp(port)),
            );
        }
        config
    }
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

impl Default for NodeConfig {
    /// The daemon's defaults (the CLI's): every interface, mDNS on, no bootstrap peer
    /// (the CLI adds the public list).
    fn default() -> Self {
        Self {
            listen: Self::default_listen(),
            bootstrap: Vec::new(),
            max_streams_per_peer: 400,
            public: None,
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_peer: 8,
            max_pending_dials: 64,
            max_memory: 1024 << 20,
            mdns: true,
            upnp: true,
            relay: None,
            relay_via: Vec::new(),
            max_topic_message: 64 * 1024,
            max_topics: 1024,
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
