//! What the daemon counts, for `/metrics` (Prometheus) and the dashboard.
//!
//! One [`Metrics`] per daemon, behind an `Arc` that sessions (through `Shared`), the
//! HTTP side and the node's event loop hold. It carries:
//! - the gateway's own [`families`] (sessions, streams, bytes and Data messages each
//!   way, refusals, limit hits, pauses, message sizes, Connect latency), in one
//!   `prometheus-client` registry with
//! - rust-libp2p's `libp2p-metrics`, fed the swarm's and the protocols' events by the
//!   event loop (swarm, identify, kad, ping, relay, dcutr), and
//! - the node's transport bandwidth, whose registry is kept once a node started (a
//!   node that failed to start leaves nothing registered twice);
//! - for the dashboard, the [`live`] sessions with their origins and the bytes per
//!   second of the last minutes.
//!
//! Bytes and Data messages are counted where they cross each session's WebSocket
//! ([`MeteredSocket`]), so the session's data path holds no counter. Counting off
//! (`-nometrics`) leaves every record call a single branch, for the benchmark's
//! comparison and for operators who want none of it.

pub mod families;
pub mod live;
mod socket;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use libp2p::metrics::Recorder;
use prometheus_client::{
    encoding::text::{encode_eof, encode_registry},
    metrics::gauge::Gauge,
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

pub use families::{Limit, RefusalKind, Request, SessionEnd};
pub use socket::{MeteredSocket, SessionCounts};

use families::{
    Direction, DirectionLabels, Families, Framing, LimitLabels, Outcome, OutcomeLabels,
    RefusalLabels, SessionEndLabels, StreamDirection, StreamLabels,
};
use live::{LiveSessions, SessionView, Traffic, TrafficView};
use socket::SessionMeter;

/// The content type of the exposition `prometheus-client` writes (OpenMetrics text,
/// which Prometheus asks for first and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How often the traffic history takes a sample.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// The daemon's metrics; see the module doc.
pub struct Metrics {
    on: bool,
    registry: Registry,
    families: Families,
    libp2p: libp2p::metrics::Metrics,
    /// The running node's transport bandwidth (`libp2p_bandwidth_bytes_total`).
    transport: Mutex<Option<Registry>>,
    sessions: LiveSessions,
    next_session: AtomicU64,
    traffic: Traffic,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(true)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("on", &self.on).finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics that count (`on`), or that only answer zeros.
    pub fn new(on: bool) -> Self {
        let mut registry = Registry::default();
        let families = Families::register(registry.sub_registry_with_prefix("libp2p_websocket"));
        let libp2p = libp2p::metrics::Metrics::new(&mut registry);
        Self {
            on,
            registry,
            families,
            libp2p,
            transport: Mutex::new(None),
            sessions: LiveSessions::default(),
            next_session: AtomicU64::new(0),
            traffic: Traffic::default(),
        }
    }

    /// Whether anything is counted.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The whole exposition: the gateway's families, libp2p's, the node's transport.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let written: std::fmt::Result = (|| {
            encode_registry(&mut out, &self.registry)?;
            if let Some(transport) =
                self.transport.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            {
                encode_registry(&mut out, transport)?;
            }
            encode_eof(&mut out)
        })();
        written.expect("writing to a String does not fail");
        out
    }

    /// A registry for a node being built to count its transport in (`None` when off).
    pub fn transport_registry(&self) -> Option<Registry> {
        self.on.then(Registry::default)
    }

    /// The node built with `registry` started: its bandwidth joins the exposition.
    pub fn node_started(&self, registry: Option<Registry>) {
        if let Some(registry) = registry {
            *self.transport.lock().unwrap_or_else(|e| e.into_inner()) = Some(registry);
        }
    }

    /// Hands a swarm or protocol event to libp2p-metrics.
    pub fn record<E>(&self, event: &E)
    where
        libp2p::metrics::Metrics: Recorder<E>,
    {
        if self.on {
            self.libp2p.record(event);
        }
    }

    /// Wraps a new session's WebSocket so what crosses it is counted; the session is
    /// listed (with its `origin`, cut) until the socket is dropped.
    pub fn session<S>(
        self: &Arc<Self>,
        socket: S,
        origin: Option<&str>,
        loopback: bool,
    ) -> MeteredSocket<S> {
        let key = self.next_session.fetch_add(1, Ordering::Relaxed);
        let counts = if self.on {
            self.families.sessions.inc();
            self.families.sessions_opened.inc();
            self.sessions.add(key, origin, loopback)
        } else {
            Arc::default()
        };
        MeteredSocket::new(socket, SessionMeter::new(self.clone(), key, counts))
    }

    fn session_gone(&self, key: u64) {
        if self.on {
            self.families.sessions.dec();
            self.sessions.remove(key);
        }
    }

    /// A session lost its WebSocket and waits for a new one (resume extension);
    /// counted until the guard is dropped.
    pub fn detached(self: &Arc<Self>) -> DetachedMeter {
        if self.on {
            self.families.sessions_detached.inc();
        }
        DetachedMeter(self.clone())
    }

    /// A session ended, for `reason`.
    pub fn session_ended(&self, reason: SessionEnd) {
        if self.on {
            self.families.sessions_ended.get_or_create(&SessionEndLabels { reason }).inc();
        }
    }

    /// A stream opened (`incoming`: on a listener); it counts as open until the
    /// returned guard is dropped.
    pub fn stream(&self, incoming: bool, framed: bool) -> StreamMeter {
        if !self.on {
            return StreamMeter(None);
        }
        let labels = StreamLabels {
            direction: if incoming { StreamDirection::Incoming } else { StreamDirection::Outgoing },
            framing: if framed { Framing::Framed } else { Framing::Raw },
        };
        self.families.streams_opened.get_or_create(&labels).inc();
        let open = self.families.streams.get_or_create_owned(&labels);
        open.inc();
        StreamMeter(Some(open))
    }

    /// A Listen or Connect was refused (or failed), of `kind`.
    pub fn refused(&self, request: Request, kind: RefusalKind) {
        if self.on {
            self.families.refusals.get_or_create(&RefusalLabels { request, kind }).inc();
        }
    }

    /// A limit of the daemon was reached.
    pub fn limit_hit(&self, limit: Limit) {
        if self.on {
            self.families.limit_hits.get_or_create(&LimitLabels { limit }).inc();
        }
    }

    /// A session stopped reading its WebSocket until its streams take what it holds.
    pub fn backpressure_pause(&self) {
        if self.on {
            self.families.backpressure_pauses.inc();
        }
    }

    /// A Connect begun at `started` ended with a stream (`opened`) or without.
    pub fn connect_done(&self, started: Instant, opened: bool) {
        if self.on {
            let outcome = if opened { Outcome::Opened } else { Outcome::Failed };
            let seconds = started.elapsed().as_secs_f64();
            self.families
                .connect_seconds
                .get_or_create(&OutcomeLabels { outcome })
                .observe(seconds);
        }
    }

    fn ws_message(&self, direction: Direction, len: usize) {
        if self.on {
            let labels = DirectionLabels { direction };
            self.families.message_bytes.get_or_create(&labels).observe(len as f64);
        }
    }

    fn data(&self, direction: Direction, payload: usize) {
        if self.on {
            let labels = DirectionLabels { direction };
            self.families.data_messages.get_or_create(&labels).inc();
            self.families.data_bytes.get_or_create(&labels).inc_by(payload as u64);
        }
    }

    /// Payload bytes of Data so far: from browsers, to browsers.
    pub fn data_totals(&self) -> [u64; 2] {
        [Direction::BrowserToLibp2p, Direction::Libp2pToBrowser].map(|direction| {
            self.families.data_bytes.get_or_create(&DirectionLabels { direction }).get()
        })
    }

    /// The sessions open now (the first few) and how many there are.
    pub fn live_sessions(&self) -> (Vec<SessionView>, usize) {
        self.sessions.view()
    }

    /// Bytes per second of the last minutes.
    pub fn traffic(&self) -> TrafficView {
        self.traffic.view()
    }

    /// Samples the traffic every [`SAMPLE_INTERVAL`] until `stop` is cancelled.
    pub async fn sample_traffic(self: Arc<Self>, stop: CancellationToken) {
        if !self.on {
            return;
        }
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.traffic.sample(self.data_totals()),
            }
        }
    }
}

/// Counts one stream as open until dropped.
pub struct StreamMeter(Option<Gauge>);

impl Drop for StreamMeter {
    fn drop(&mut self) {
        if let Some(open) = &self.0 {
            open.dec();
        }
    }
}

/// Counts one detached session until dropped.
pub struct DetachedMeter(Arc<Metrics>);

impl Drop for DetachedMeter {
    fn drop(&mut self) {
        if self.0.on {
            self.0.families.sessions_detached.dec();
        }
    }
}
