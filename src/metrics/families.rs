//! The gateway's own metric families and their label sets.
//!
//! Every label takes its values from a closed enum, so each family has a fixed, small
//! number of series whatever browsers and peers do: no peer id, origin or protocol
//! name ever becomes a label (those go to the dashboard's JSON only, capped).

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

/// An enum of label values, each said in snake case (the derive would say the
/// variant's name as it is).
macro_rules! label_values {
    ($(#[$doc:meta])* pub enum $name:ident {
        $($(#[$vdoc:meta])* $variant:ident = $text:literal,)*
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
                self.as_str().encode(encoder)
            }
        }
    };
}

label_values! {
/// Which way bytes or messages go.
pub enum Direction {
    /// From a browser, towards libp2p.
    BrowserToLibp2p = "browser_to_libp2p",
    /// From libp2p, towards a browser.
    Libp2pToBrowser = "libp2p_to_browser",
}
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: Direction,
}

label_values! {
/// Who opened a stream: a remote peer (on a session's listener) or the browser.
pub enum StreamDirection {
    Incoming = "incoming",
    Outgoing = "outgoing",
}
}

label_values! {
/// How a stream's bytes are cut into Data messages.
pub enum Framing {
    Raw = "raw",
    Framed = "framed",
}
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub direction: StreamDirection,
    pub framing: Framing,
}

label_values! {
/// Why a session ended (one value per way a session can end).
pub enum SessionEnd {
    /// The browser closed the WebSocket (not with code 1000), or it broke.
    Left = "left",
    /// The browser closed the WebSocket with code 1000: done with the session.
    Closed = "closed",
    /// Resume extension: no WebSocket came back within the grace period.
    Expired = "expired",
    /// Writing to the browser failed.
    WriteFailed = "write_failed",
    /// The daemon shut down.
    Shutdown = "shutdown",
    /// The browser answered no ping for the keepalive time.
    Keepalive = "keepalive",
    /// A message over the size limit.
    TooBig = "too_big",
    /// Over the session limit.
    TooMany = "too_many",
    /// Too many replies left unread.
    Backlogged = "backlogged",
}
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionEndLabels {
    pub reason: SessionEnd,
}

label_values! {
/// What a browser asked for that was refused.
pub enum Request {
    Listen = "listen",
    Connect = "connect",
}
}

label_values! {
/// Why, in a word: one value per kind of refusal, never its text.
pub enum RefusalKind {
    BadProtocol = "bad_protocol",
    NotStarted = "not_started",
    AlreadyListening = "already_listening",
    AlreadyAccepted = "already_accepted",
    ProtocolTaken = "protocol_taken",
    BadRelay = "bad_relay",
    BadTarget = "bad_target",
    LocalTarget = "local_target",
    Limit = "limit",
    NotListening = "not_listening",
    Busy = "busy",
    Unreachable = "unreachable",
    Unsupported = "unsupported",
    Timeout = "timeout",
    StreamFailed = "stream_failed",
    Stopped = "stopped",
}
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub request: Request,
    pub kind: RefusalKind,
}

label_values! {
/// Which of the daemon's limits was reached.
pub enum Limit {
    /// `--max-sessions`.
    Sessions = "sessions",
    /// The WebSocket message size (`--max-frame` + 64).
    MessageSize = "message_size",
    /// Replies left unread by a browser.
    ReplyBacklog = "reply_backlog",
    /// `--max-streams-per-session`.
    StreamsPerSession = "streams_per_session",
    /// `--max-streams-per-peer`.
    StreamsPerPeer = "streams_per_peer",
    /// `--max-dials-per-session`.
    DialsPerSession = "dials_per_session",
    /// `--max-listeners-per-session`.
    ListenersPerSession = "listeners_per_session",
    /// The bytes of listened protocol names identify can announce.
    AnnounceBudget = "announce_budget",
    /// `--max-topics-per-session` or `--max-topics`.
    Topics = "topics",
}
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: Limit,
}

label_values! {
/// How a Connect ended.
pub enum Outcome {
    Opened = "opened",
    Failed = "failed",
}
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

/// WebSocket message sizes, bytes: 64 B to 1 MiB, ×4.
const MESSAGE_BUCKETS: [f64; 9] =
    [64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0];
/// Connect latency, seconds: a peer on the LAN to a DHT lookup and the 20 s timeout.
const CONNECT_BUCKETS: [f64; 12] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0];

/// The gateway's families, registered under `libp2p_websocket_`.
#[derive(Debug, Clone)]
pub struct Families {
    pub sessions: Gauge,
    pub sessions_opened: Counter,
    pub sessions_ended: Family<SessionEndLabels, Counter>,
    pub sessions_detached: Gauge,
    pub streams: Family<StreamLabels, Gauge>,
    pub streams_opened: Family<StreamLabels, Counter>,
    pub data_bytes: Family<DirectionLabels, Counter>,
    pub data_messages: Family<DirectionLabels, Counter>,
    pub message_bytes: Family<DirectionLabels, Histogram>,
    pub refusals: Family<RefusalLabels, Counter>,
    pub limit_hits: Family<LimitLabels, Counter>,
    pub backpressure_pauses: Counter,
    pub connect_seconds: Family<OutcomeLabels, Histogram>,
}

impl Families {
    pub fn register(registry: &mut Registry) -> Self {
        let families = Self {
            sessions: Gauge::default(),
            sessions_opened: Counter::default(),
            sessions_ended: Family::default(),
            sessions_detached: Gauge::default(),
            streams: Family::default(),
            streams_opened: Family::default(),
            data_bytes: Family::default(),
            data_messages: Family::default(),
            message_bytes: Family::new_with_constructor(|| Histogram::new(MESSAGE_BUCKETS)),
            refusals: Family::default(),
            limit_hits: Family::default(),
            backpressure_pauses: Counter::default(),
            connect_seconds: Family::new_with_constructor(|| Histogram::new(CONNECT_BUCKETS)),
        };
        // Both directions show from the start, at 0.
        for direction in [Direction::BrowserToLibp2p, Direction::Libp2pToBrowser] {
            let _ = families.data_bytes.get_or_create(&DirectionLabels { direction });
            let _ = families.data_messages.get_or_create(&DirectionLabels { direction });
        }
        let f = families.clone();
        registry.register("sessions", "WebSocket sessions open now", f.sessions);
        registry.register("sessions_opened", "WebSocket sessions opened", f.sessions_opened);
        registry.register(
            "sessions_detached",
            "Sessions waiting for a new WebSocket (resume extension), not counted in sessions",
            f.sessions_detached,
        );
        registry.register(
            "sessions_ended",
            "WebSocket sessions ended, by reason",
            f.sessions_ended,
        );
        registry.register("streams", "Streams open now", f.streams);
        registry.register("streams_opened", "Streams opened", f.streams_opened);
        registry.register_with_unit(
            "data",
            "Payload bytes of Data messages, each way",
            Unit::Bytes,
            f.data_bytes,
        );
        registry.register("data_messages", "Data messages, each way", f.data_messages);
        registry.register_with_unit(
            "ws_message",
            "Sizes of WebSocket messages (all kinds), each way",
            Unit::Bytes,
            f.message_bytes,
        );
        registry.register(
            "refusals",
            "Listens and Connects refused or failed, by kind",
            f.refusals,
        );
        registry.register("limit_hits", "Times a limit of the daemon was reached", f.limit_hits);
        registry.register(
            "backpressure_pauses",
            "Times a session stopped reading its WebSocket until its streams drained",
            f.backpressure_pauses,
        );
        registry.register_with_unit(
            "connect",
            "Time from a Connect to its stream, or to its failure",
            Unit::Seconds,
            f.connect_seconds,
        );
        families
    }
}
