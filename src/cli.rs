//! The command line: the original's Go-style flags (`-port 8888`, single dash) and their
//! `--` forms, parsed with clap.

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use libp2p::Multiaddr;

use crate::{
    config::{Config, Limits},
    node::{NodeConfig, NodeKey, RelayLimits},
};

/// The public IPFS bootstrap peers, as the original used by default.
pub const DEFAULT_BOOTSTRAP: [&str; 5] = [
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnrQAwfJAtvUdwt2sJ7zDRZYTnf",
];

/// Puts browsers on the libp2p network: a WebSocket at /libp2p drives a libp2p node.
#[derive(Debug, Parser)]
#[command(
    name = "libp2p-websocket",
    disable_version_flag = true,
    max_term_width = 100,
    after_help = "Flags may be written with one dash, as the original's were (-port 8888), or two.\n\
                  RUST_LOG sets the log filter (default: info)."
)]
pub struct Cli {
    /// Host address for the HTTP/WebSocket server (0.0.0.0 serves the LAN)
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub addr: String,
    /// Port for the HTTP/WebSocket server
    #[arg(long, default_value_t = 8888)]
    pub port: u16,
    /// Serve pages live from DIR instead of the embedded ones (repeatable; first match wins)
    #[arg(long, value_name = "DIR")]
    pub files: Vec<PathBuf>,
    /// Open http://localhost:PORT/PAGE in the default browser once listening (also
    /// -browser, as the original's README spelled it)
    #[arg(long, visible_alias = "browser", value_name = "PAGE")]
    pub browse: Option<String>,
    /// Never open a browser (overrides -browse)
    #[arg(long)]
    pub nobrowse: bool,
    /// Start the libp2p node at launch with this key (base64 protobuf, as Identify gives)
    #[arg(long, value_name = "KEY", conflicts_with = "key_file")]
    pub key: Option<String>,
    /// Start the node at launch with the key in PATH, creating it (mode 0600) if missing
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// libp2p address to listen on (repeatable; default TCP and QUIC on all interfaces)
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Add a bootstrap peer to dial at start (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    pub peer: Vec<Multiaddr>,
    /// Clear the default bootstrap list (the public IPFS bootstrap peers)
    #[arg(long)]
    pub nopeers: bool,
    /// Report this node as publicly reachable (Identify's PUBLIC=1; also makes it a
    /// Kademlia server) instead of asking AutoNAT
    #[arg(long, conflicts_with = "fakenatprivate")]
    pub fakenatpublic: bool,
    /// Report this node as behind a NAT (Identify's PUBLIC=0) instead of asking AutoNAT
    #[arg(long)]
    pub fakenatprivate: bool,
    /// Turn off mDNS (on by default: daemons on one LAN find each other with no flags)
    #[arg(long)]
    pub nomdns: bool,
    /// Turn off UPnP port mapping on the LAN's router (on by default, as in the
    /// original, when libp2p listens beyond loopback)
    #[arg(long)]
    pub noupnp: bool,
    /// Act as a circuit relay v2 for other peers, within the --relay-max-* and
    /// --relay-circuit-* limits
    #[arg(long)]
    pub relay: bool,
    /// Relay: reservations held at once (peers reachable through this relay)
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_reservations)]
    pub relay_max_reservations: usize,
    /// Relay: circuits (relayed connections) open at once
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_circuits)]
    pub relay_max_circuits: usize,
    /// Relay: seconds a circuit may last before the relay closes it
    #[arg(long, value_name = "SECS", default_value_t = RelayLimits::default().circuit_duration.as_secs())]
    pub relay_circuit_secs: u64,
    /// Relay: bytes a circuit may carry, both directions together, before the relay closes
    /// it (0: no limit)
    #[arg(long, value_name = "BYTES", default_value_t = RelayLimits::default().circuit_bytes)]
    pub relay_circuit_bytes: u64,
    /// Keep a reservation on this relay (MULTIADDR ending in /p2p/RELAY_ID), so peers can
    /// reach this node through it when it is behind a NAT (repeatable)
    #[arg(long, value_name = "MULTIADDR", value_parser = crate::node::parse_relay_addr)]
    pub relay_via: Vec<Multiaddr>,
    /// Serve /metrics (Prometheus) on HOST:PORT of its own instead of beside /status on
    /// the HTTP port (e.g. 0.0.0.0:9464 for a Prometheus on another machine)
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "nometrics")]
    pub metrics_addr: Option<String>,
    /// Count nothing: no /metrics, and the dashboard shows no traffic
    #[arg(long)]
    pub nometrics: bool,
    /// Admit WebSocket connections from pages of this origin too (repeatable)
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// HTTP connections served at once (upgraded WebSockets leave the count); more wait
    /// in the backlog. Keep it well under the file descriptor limit (ulimit -n)
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_http_connections)]
    pub max_http_connections: usize,
    /// Seconds a connection may take to send a request header, or stay idle between
    /// requests, before it is closed
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().http_header_timeout.as_secs())]
    pub http_header_timeout: u64,
    /// Seconds a response may go unread (no byte taken by the client) before its
    /// connection is closed
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().http_idle_timeout.as_secs())]
    pub http_idle_timeout: u64,
    /// Longest frame on a FRAMES=1 stream, in bytes (longer ones close the stream; at
    /// most 1 GiB)
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_frame,
          value_parser = parse_max_frame)]
    pub max_frame: usize,
    /// Streams per remote peer, all sessions together (kept below yamux's limit)
    #[arg(long, value_name = "N", default_value_t = NodeConfig::default().max_streams_per_peer)]
    pub max_streams_per_peer: usize,
    /// Streams per browser session
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_streams_per_session)]
    pub max_streams_per_session: usize,
    /// Listened protocols per browser session
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_listeners_per_session)]
    pub max_listeners_per_session: usize,
    /// Pubsub extension: topics one session may subscribe to
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_topics_per_session)]
    pub max_topics_per_session: usize,
    /// Pubsub extension: topics all sessions together may subscribe to
    #[arg(long, value_name = "N", default_value_t = NodeConfig::default().max_topics)]
    pub max_topics: usize,
    /// Pubsub extension: the largest topic message published or accepted, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = NodeConfig::default().max_topic_message)]
    pub max_topic_message: usize,
    /// WebSocket sessions the daemon serves at once
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_sessions)]
    pub max_sessions: usize,
    /// Established libp2p connections, all peers together
    #[arg(long, value_name = "N", default_value_t = NodeConfig::default().max_connections)]
    pub max_connections: u32,
    /// Established libp2p connections to one peer
    #[arg(long, value_name = "N", default_value_t = NodeConfig::default().max_connections_per_peer)]
    pub max_connections_per_peer: u32,
    /// Outgoing libp2p connections being dialed at once, all sessions together (each
    /// holds up to 4 sockets; lowered to fit the process's file descriptor limit)
    #[arg(long, value_name = "N", default_value_t = NodeConfig::default().max_pending_dials)]
    pub max_pending_dials: u32,
    /// Peers one browser session may be dialing at once (Connects to connected peers,
    /// or to a peer being dialed already, do not count)
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_dials_per_session)]
    pub max_dials_per_session: usize,
    /// Let browsers on other machines Connect to this machine's loopback and link-local
    /// addresses (refused by default, so LAN pages cannot probe this machine's ports)
    #[arg(long)]
    pub allow_loopback_dials: bool,
    /// Deny new libp2p connections while the daemon uses more memory than this (MiB)
    #[arg(long, value_name = "MIB", default_value_t = NodeConfig::default().max_memory >> 20)]
    pub max_memory_mib: usize,
    /// Seconds a stream's remote may accept nothing while Data waits for it (sessions
    /// without the credit extension), or send nothing inside a frame; then the stream
    /// is closed, saying so, and its session goes on
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().stream_stall_timeout.as_secs())]
    pub stall_timeout: u64,
    /// Credit extension: bytes of Data a browser may send on one stream before the
    /// daemon gives credit back (raised to --max-frame + 4)
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().stream_window)]
    pub stream_window: usize,
    /// Credit extension: bytes of Data a browser may have on their way to all its
    /// streams together (at least --stream-window)
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().session_window)]
    pub session_window: usize,
    /// Seconds between WebSocket pings to each browser
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().ping_interval.as_secs())]
    pub ping_interval: u64,
    /// Seconds a browser may stay silent (no message, no pong) before its session is closed
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().keepalive_timeout.as_secs())]
    pub keepalive_timeout: u64,
    /// Resume extension: seconds a session keeps its streams and listeners after its
    /// WebSocket drops, waiting for the page to come back (0: no waiting)
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().resume_grace.as_secs())]
    pub resume_grace: u64,
    /// Print the version and exit
    #[arg(long)]
    pub version: bool,
}

/// The longest `--max-frame`: a frame travels in one WebSocket message, held whole.
pub const MAX_FRAME_LIMIT: usize = 1 << 30;

fn parse_max_frame(text: &str) -> Result<usize, String> {
    let n: usize = text.parse().map_err(|e| format!("{e}"))?;
    if n == 0 || n > MAX_FRAME_LIMIT {
        return Err(format!("must be between 1 and {MAX_FRAME_LIMIT} bytes"));
    }
    Ok(n)
}

impl Cli {
    /// Parses `args` (program name first), accepting the original's single-dash flags.
    pub fn parse_compat<I: IntoIterator<Item = String>>(args: I) -> Result<Self, clap::Error> {
        let longs: Vec<String> = <Self as clap::CommandFactory>::command()
            .get_arguments()
            .filter_map(|a| a.get_long_and_visible_aliases())
            .flatten()
            .map(str::to_string)
            .chain(["help".to_string()])
            .collect();
        let args = args.into_iter().enumerate().map(|(i, arg)| {
            let name = arg.strip_prefix('-').filter(|rest| !rest.starts_with('-'));
            match name {
                Some(rest)
                    if i > 0 && longs.iter().any(|l| l == rest.split('=').next().unwrap_or("")) =>
                {
                    format!("-{arg}")
                }
                _ => arg,
            }
        });
        Self::try_parse_from(args)
    }

    /// The daemon's configuration.
    pub fn into_config(self) -> Result<Config, crate::node::KeyError> {
        let key = match (&self.key, &self.key_file) {
            (Some(text), _) => Some(NodeKey::from_text(text)?),
            (None, Some(path)) => Some(NodeKey::load_or_create(path)?),
            (None, None) => None,
        };
        let mut bootstrap: Vec<Multiaddr> = if self.nopeers {
            Vec::new()
        } else {
            DEFAULT_BOOTSTRAP.iter().map(|a| a.parse().expect("valid multiaddr")).collect()
        };
        bootstrap.extend(self.peer);
        let public = if self.fakenatpublic {
            Some(true)
        } else if self.fakenatprivate {
            Some(false)
        } else {
            None
        };
        let listen =
            if self.listen.is_empty() { NodeConfig::default_listen() } else { self.listen };
        Ok(Config {
            node: NodeConfig {
                listen,
                bootstrap,
                max_streams_per_peer: self.max_streams_per_peer,
                public,
                idle_timeout: NodeConfig::default().idle_timeout,
                max_connections: self.max_connections,
                max_connections_per_peer: self.max_connections_per_peer,
                max_pending_dials: self.max_pending_dials.max(1),
                max_memory: self.max_memory_mib << 20,
                mdns: !self.nomdns,
                upnp: !self.noupnp,
                relay: self.relay.then_some(RelayLimits {
                    max_reservations: self.relay_max_reservations,
                    max_circuits: self.relay_max_circuits,
                    circuit_duration: Duration::from_secs(self.relay_circuit_secs),
                    circuit_bytes: self.relay_circuit_bytes,
                }),
                relay_via: self.relay_via,
                max_topic_message: self.max_topic_message.max(1),
                max_topics: self.max_topics,
            },
            key,
            addr_host: Some(self.addr),
            allow_origins: self.allow_origin,
            files: self.files,
            browse: if self.nobrowse { None } else { self.browse },
            metrics: !self.nometrics,
            metrics_addr: self.metrics_addr,
            limits: Limits {
                max_frame: self.max_frame,
                max_message: self.max_frame + 64,
                max_streams_per_session: self.max_streams_per_session,
                max_dials_per_session: self.max_dials_per_session.max(1),
                allow_loopback_dials: self.allow_loopback_dials,
                max_listeners_per_session: self.max_listeners_per_session,
                max_topics_per_session: self.max_topics_per_session,
                max_sessions: self.max_sessions,
                max_http_connections: self.max_http_connections.max(1),
                http_header_timeout: Duration::from_secs(self.http_header_timeout.max(1)),
                http_idle_timeout: Duration::from_secs(self.http_idle_timeout.max(1)),
                ping_interval: Duration::from_secs(self.ping_interval.max(1)),
                keepalive_timeout: Duration::from_secs(self.keepalive_timeout.max(1)),
                resume_grace: Duration::from_secs(self.resume_grace),
                stream_stall_timeout: Duration::from_secs(self.stall_timeout.max(1)),
                stream_window: self.stream_window,
                session_window: self.session_window,
                ..Limits::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let args =
            std::iter::once("libp2p-websocket").chain(args.iter().copied()).map(String::from);
        Cli::parse_compat(args).unwrap()
    }

    #[test]
    fn single_and_double_dash_flags() {
        let cli = parse(&[
            "-port",
            "9000",
            "-files",
            "html",
            "--files=examples",
            "-nopeers",
            "-listen",
            "/ip4/127.0.0.1/tcp/0",
            "-browse=chat.html",
        ]);
        assert_eq!(cli.port, 9000);
        assert_eq!(cli.files, vec![PathBuf::from("html"), PathBuf::from("examples")]);
        assert!(cli.nopeers);
        assert_eq!(cli.browse.as_deref(), Some("chat.html"));
        // The original README's own spelling.
        assert_eq!(parse(&["-browser", "game.html"]).browse.as_deref(), Some("game.html"));
        assert_eq!(parse(&["--browser=x.html"]).browse.as_deref(), Some("x.html"));
        let config = cli.into_config().unwrap();
        assert!(config.node.bootstrap.is_empty());
        assert_eq!(config.node.listen.len(), 1);
    }

    #[test]
    fn defaults_and_conflicts() {
        let cli = parse(&[]);
        assert_eq!(cli.port, 8888);
        let config = cli.into_config().unwrap();
        assert_eq!(config.node.bootstrap.len(), DEFAULT_BOOTSTRAP.len());
        assert_eq!(config.node.listen, NodeConfig::default_listen());
        assert!(config.key.is_none());
        let args = ["x", "-fakenatpublic", "-fakenatprivate"].map(String::from);
        assert!(Cli::parse_compat(args).is_err());
        assert!(parse(&["-version"]).version);
        let relay = format!("/ip4/192.0.2.1/tcp/4001/p2p/{}", libp2p::PeerId::random());
        let cli = parse(&["-relay", "--relay-via", &relay, "-nomdns"]);
        let config = cli.into_config().unwrap();
        assert!(config.node.relay.is_some() && !config.node.mdns);
        assert_eq!(config.node.relay_via, [relay.parse::<Multiaddr>().unwrap()]);
        let no_id = ["x", "--relay-via", "/ip4/192.0.2.1/tcp/4001"].map(String::from);
        assert!(Cli::parse_compat(no_id).is_err());
        let circuit = format!("{relay}/p2p-circuit");
        assert!(Cli::parse_compat(["x".into(), "--relay-via".into(), circuit]).is_err());
        // --max-frame near usize::MAX used to wrap when the message overhead was added.
        let huge = ["x", "--max-frame", "18446744073709551615"].map(String::from);
        assert!(Cli::parse_compat(huge).is_err());
        assert!(Cli::parse_compat(["x", "--max-frame", "0"].map(String::from)).is_err());
        let most = parse(&["--max-frame", &MAX_FRAME_LIMIT.to_string()]);
        assert_eq!(most.into_config().unwrap().limits.max_message, MAX_FRAME_LIMIT + 64);
        let metrics = parse(&["-metrics-addr", "127.0.0.1:9464"]).into_config().unwrap();
        assert_eq!(metrics.metrics_addr.as_deref(), Some("127.0.0.1:9464"));
        assert!(metrics.metrics && !parse(&["-nometrics"]).into_config().unwrap().metrics);
        assert!(parse(&["-browse", "chat.html", "-nobrowse"])
            .into_config()
            .unwrap()
            .browse
            .is_none());
    }

    #[test]
    fn http_limits() {
        let defaults = parse(&[]).into_config().unwrap().limits;
        assert_eq!(defaults.max_http_connections, 512);
        assert_eq!(defaults.http_header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.http_idle_timeout, Duration::from_secs(60));
        let cli = parse(&[
            "-max-http-connections",
            "16",
            "-http-header-timeout",
            "2",
            "--http-idle-timeout=3",
        ]);
        let limits = cli.into_config().unwrap().limits;
        assert_eq!(limits.max_http_connections, 16);
        assert_eq!(limits.http_header_timeout, Duration::from_secs(2));
        assert_eq!(limits.http_idle_timeout, Duration::from_secs(3));
    }
}
