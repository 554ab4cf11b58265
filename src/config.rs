//! The daemon's configuration, as the CLI (or a test) builds it.

use std::{net::SocketAddr, path::PathBuf};

use crate::node::{NodeConfig, NodeKey};

/// Limits that keep one browser or peer from taking the daemon down.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest frame on a FRAMES=1 stream, either way, in bytes.
    pub max_frame: usize,
    /// Longest WebSocket message from a browser, in bytes.
    pub max_message: usize,
    /// Streams (open or being opened) per session.
    pub max_streams_per_session: usize,
    /// Peers one session's Connects may be dialing at once (Connects to a connected
    /// peer, or to one being dialed already, cost no more).
    pub max_dials_per_session: usize,
    /// Whether sessions from other machines may Connect to loopback and link-local
    /// addresses (off: the daemon is no port scanner for the LAN).
    pub allow_loopback_dials: bool,
    /// Listened protocols per session.
    pub max_listeners_per_session: usize,
    /// Pubsub extension: topics per session.
    pub max_topics_per_session: usize,
    /// Bytes queued towards streams per session before its WebSocket is paused.
    pub session_write_buffer: usize,
    /// How long a stream's remote may accept nothing while Data waits for it before
    /// the stream is closed (so it cannot hold its session's WebSocket paused).
    pub stream_stall_timeout: std::time::Duration,
    /// Bytes read from streams and not yet sent to the browser, per session; when it
    /// is full the session's streams are not read (their remotes are slowed).
    pub session_read_buffer: usize,
    /// Credit extension: each stream's send window, in bytes (raised to fit a frame).
    pub stream_window: usize,
    /// Credit extension: the session's send window, shared by its streams.
    pub session_window: usize,
    /// WebSocket sessions per daemon.
    pub max_sessions: usize,
    /// HTTP connections served at once (upgraded WebSockets leave the count); more wait
    /// in the listener's backlog.
    pub max_http_connections: usize,
    /// How long a connection may take to send a whole request header, and may stay idle
    /// between requests.
    pub http_header_timeout: std::time::Duration,
    /// How long writing a response may make no progress (a client not reading) before the
    /// connection is closed.
    pub http_idle_timeout: std::time::Duration,
    /// How often a session pings its browser.
    pub ping_interval: std::time::Duration,
    /// How long a browser may stay silent (no message, no pong) before its session ends.
    pub keepalive_timeout: std::time::Duration,
    /// Resume extension: how long a session waits for a new WebSocket after losing one.
    pub resume_grace: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 1024 * 1024,
            max_message: 1024 * 1024 + 64,
            max_streams_per_session: 4096,
            max_dials_per_session: 16,
            allow_loopback_dials: false,
            max_listeners_per_session: 64,
            max_topics_per_session: 32,
            session_write_buffer: 8 * 1024 * 1024,
            stream_stall_timeout: std::time::Duration::from_secs(10),
            session_read_buffer: 4 * 1024 * 1024,
            stream_window: 2 * 1024 * 1024,
            session_window: 32 * 1024 * 1024,
            max_sessions: 4096,
            max_http_connections: 512,
            http_header_timeout: std::time::Duration::from_secs(10),
            http_idle_timeout: std::time::Duration::from_secs(60),
            ping_interval: std::time::Duration::from_secs(20),
            keepalive_timeout: std::time::Duration::from_secs(60),
            resume_grace: std::time::Duration::from_secs(30),
        }
    }
}

/// The receive window a credit client may ask for, at most.
pub const MAX_RECEIVE_WINDOW: usize = 64 * 1024 * 1024;

/// The windows of a session with the credit extension, in bytes on the libp2p stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Each stream's send window (browser → daemon).
    pub stream: usize,
    /// The session's send window, shared by its streams.
    pub session: usize,
    /// Each stream's receive window (daemon → browser), the client's choice.
    pub receive: usize,
}

impl Limits {
    /// Bytes of frames being read, per session: four times the read buffer, and at
    /// least two whole frames.
    pub fn frame_assembly(&self) -> usize {
        (4 * self.session_read_buffer).max(2 * self.max_frame)
    }

    /// The credit windows for a client that asked for `receive` bytes (or the default):
    /// every window takes at least one whole frame and its 4-byte length.
    pub fn windows(&self, receive: Option<usize>) -> Windows {
        let frame = self.max_frame + 4;
        let stream = self.stream_window.max(frame);
        // Credit is said in u32s; no window may need more than one.
        let cap = u32::MAX as usize;
        let stream = stream.min(cap);
        let session = self.session_window.max(stream).min(cap);
        let receive = receive.unwrap_or(stream).min(MAX_RECEIVE_WINDOW).max(frame);
        Windows { stream, session, receive }
    }
}

/// Everything [`run`](crate::run) needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The libp2p node's settings.
    pub node: NodeConfig,
    /// The key to start the node with at launch; `None` starts it on the first Start.
    pub key: Option<NodeKey>,
    /// The `-addr` host, which is also admitted as an origin.
    pub addr_host: Option<String>,
    /// Extra origins admitted to `/libp2p` (`--allow-origin`).
    pub allow_origins: Vec<String>,
    /// Folders to serve pages from instead of the embedded ones (`-files`).
    pub files: Vec<PathBuf>,
    /// A page to open in the browser once listening (`-browse`).
    pub browse: Option<String>,
    /// Whether the daemon counts what it does, for `/metrics` and the dashboard
    /// (`-nometrics` turns it off).
    pub metrics: bool,
    /// Serve `/metrics` on this `HOST:PORT` of its own instead of beside `/status`
    /// (`--metrics-addr`).
    pub metrics_addr: Option<String>,
    pub limits: Limits,
}

impl Config {
    /// A configuration for tests and embedding: loopback-only libp2p, no bootstrap peers,
    /// no mDNS or UPnP (which would talk to the LAN).
    pub fn local() -> Self {
        Self {
            node: NodeConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
                mdns: false,
                upnp: false,
                ..NodeConfig::default()
            },
            key: None,
            addr_host: None,
            allow_origins: Vec::new(),
            files: Vec::new(),
            browse: None,
            metrics: true,
            metrics_addr: None,
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// Fits the limits that cost file descriptors into `nofile` (the process's limit):
    /// dials being made, established libp2p connections, and HTTP connections get a
    /// quarter each at most, the rest stays for WebSocket sessions, listeners, files
    /// and the runtime. Says what it lowered, for the log.
    pub fn fit_fd_limit(&mut self, nofile: u64) -> Vec<String> {
        let quarter = u32::try_from(nofile / 4).unwrap_or(u32::MAX).max(1);
        let mut lowered = Vec::new();
        let mut fit = |name: &str, value: &mut u32, most: u32| {
            if *value > most {
                lowered.push(format!("{name} {value} -> {most}"));
                *value = most;
            }
        };
        let dials = (quarter / u32::from(crate::node::DIAL_CONCURRENCY)).max(1);
        fit("--max-pending-dials", &mut self.node.max_pending_dials, dials);
        fit("--max-connections", &mut self.node.max_connections, quarter);
        let mut http = u32::try_from(self.limits.max_http_connections).unwrap_or(u32::MAX);
        fit("--max-http-connections", &mut http, quarter);
        self.limits.max_http_connections = http as usize;
        lowered
    }
}

/// Whether an address is on this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_hungry_limits_fit_the_fd_limit() {
        let mut config = Config::local();
        assert!(config.fit_fd_limit(1 << 20).is_empty(), "defaults fit a large limit");
        let lowered = config.fit_fd_limit(1024);
        assert_eq!(config.node.max_pending_dials, 64);
        assert_eq!(config.node.max_connections, 256);
        assert_eq!(lowered, ["--max-connections 1024 -> 256", "--max-http-connections 512 -> 256"]);
        config.fit_fd_limit(256);
        assert_eq!(config.node.max_pending_dials, 16);
        assert_eq!(config.node.max_connections, 64);
        assert_eq!(config.limits.max_http_connections, 64);
    }
}
