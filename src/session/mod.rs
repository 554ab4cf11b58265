//! One browser's control session: its listeners, its streams, and the pumps between
//! them and the WebSocket.
//!
//! One task per WebSocket owns all of that browser's state; nothing of a session is
//! shared with another except the daemon-wide [`Hub`] of listened protocols. Messages
//! to the browser go through one bounded queue to a writer task, in order.

pub mod hub;
pub mod outbox;
pub mod pump;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::extract::ws::{close_code, Message};
use bytes::Bytes;
use futures::{Sink, Stream, StreamExt as _};
use libp2p::{PeerId, StreamProtocol};
use tokio::{
    sync::{broadcast, mpsc, watch},
    task::{JoinHandle, JoinSet},
};
use tokio_util::{
    compat::FuturesAsyncReadCompatExt as _, sync::CancellationToken, task::AbortOnDropHandle,
};
use tracing::Instrument as _;

pub use hub::{Hub, ListenerEvent};
use outbox::Outbox;
use pump::{BoxIo, ClosedFlag, OutboundBudget, PumpEvent, ReadPump, WriteBudget, WritePump};

use crate::{
    config::Limits,
    limit_log::LimitLog,
    node::{
        Connected, NodeHandle, NodeKey, NodeSlot, PeerEvent, PeerStreams, Reachability, Route,
        StreamSlot,
    },
    protocol::{
        is_local_target, text, validate_protocol, ClientMsg, ConnId, ConnectTarget, Relay,
        ServerMsg,
    },
};

/// Messages queued for one stream before the session stops reading its WebSocket.
pub const STREAM_WRITE_QUEUE: usize = 64;
/// The answer to a browser on another machine that names this machine's own
/// addresses: the same whatever is (or is not) listening there.
pub const LOCAL_TARGET_REFUSED: &str = "loopback and link-local addresses are refused for \
     browsers on other machines (the daemon's --allow-loopback-dials allows them)";
/// Refused Listens and Connects logged a minute, of each kind, at most.
const REFUSALS_LOGGED: u32 = 20;
/// Incoming streams queued for the session from its listeners.
const INCOMING_QUEUE: usize = 256;
/// Pump reports queued for the session.
const PUMP_EVENT_QUEUE: usize = 256;
/// How long a closing stream may take to flush what was queued for it.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long an ending session may take to say goodbye to its browser (the last queued
/// messages, a Connection Closed per stream, the close frame) — shorter at daemon
/// shutdown, which must finish within 5 s even with browsers that do not read.
pub const GOODBYE_GRACE: Duration = Duration::from_secs(5);
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Hello's version tail.
pub const VERSION: &str = concat!("libp2p-websocket/", env!("CARGO_PKG_VERSION"));

/// What every session of the daemon shares.
pub struct Shared {
    pub node: Arc<NodeSlot>,
    pub hub: Hub,
    pub limits: Limits,
    next_session: AtomicU64,
    active: AtomicUsize,
    /// Streams whose pumps are still running, all sessions together.
    streams: Gauge,
}

/// A count of live things, each holding a [`GaugeGuard`].
#[derive(Clone, Default)]
pub struct Gauge(Arc<AtomicUsize>);

/// Counts one in its [`Gauge`] until dropped.
pub struct GaugeGuard(Arc<AtomicUsize>);

impl Gauge {
    pub fn enter(&self) -> GaugeGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(self.0.clone())
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    pub fn new(node: Arc<NodeSlot>, limits: Limits) -> Self {
        Self {
            node,
            hub: Hub::default(),
            limits,
            next_session: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            streams: Gauge::default(),
        }
    }

    /// Streams open now (their pumps still running), all sessions together.
    pub fn active_streams(&self) -> usize {
        self.streams.get()
    }

    /// Sessions open now.
    pub fn active_sessions(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// A stream that arrived on one of the session's listeners.
struct Incoming {
    protocol: String,
    /// Which listening of `protocol` it came in on (a Stop and a new Listen make another).
    generation: u64,
    peer: PeerId,
    io: BoxIo,
    slot: Option<StreamSlot>,
}

/// The end of a Connect's dial and stream negotiation.
struct ConnectOutcome {
    /// The peer this Connect counts as dialing for the session, if it does.
    dialing: Option<PeerId>,
    peer_text: String,
    protocol: String,
    frames: bool,
    result: Result<(PeerId, Connected), String>,
}

struct Listener {
    frames: bool,
    generation: u64,
    _accept: AbortOnDropHandle<()>,
}

struct Conn {
    /// The listener (protocol, generation) this stream came in on; `None` for a Connect's.
    listener: Option<(String, u64)>,
    frames: bool,
    queue: mpsc::Sender<Bytes>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    closed: Arc<ClosedFlag>,
}

/// Runs one session on an upgraded WebSocket until the browser leaves or `cancel` fires.
/// `loopback` says whether the browser connected from this machine (only those are
/// given the node's private key).
pub async fn run<S>(socket: S, shared: Arc<Shared>, loopback: bool, cancel: CancellationToken)
where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Send
        + 'static,
{
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("session", id);
    let active = shared.active.fetch_add(1, Ordering::Relaxed) + 1;
    let (sink, stream) = socket.split();
    let write_failed = CancellationToken::new();
    // A browser that takes nothing for the keepalive time is as gone as a silent one.
    let (out, writer) = Outbox::new(sink, shared.limits.keepalive_timeout, write_failed.clone());
    let writer = tokio::spawn(writer.instrument(span.clone()));
    let mut session = Session::new(id, shared.clone(), loopback, out);
    let mut goodbye_by = tokio::time::Instant::now();
    async {
        let limit = shared.limits.max_sessions;
        let end = if active > limit {
            static LOG: LimitLog = LimitLog::new();
            if let Some(unlogged) = LOG.hit() {
                tracing::warn!(limit, unlogged, "session refused: too many sessions");
            }
            End::TooMany(limit)
        } else {
            tracing::debug!(loopback, "session opened");
            session.run(stream, &cancel, &write_failed).await
        };
        tracing::debug!(?end, "session ending");
        // Tell the browser why, unless it left; one that does not read gets a grace
        // period to take it, farewell and queued messages together.
        let grace = if let End::Shutdown = end { SHUTDOWN_GRACE } else { GOODBYE_GRACE };
        goodbye_by = tokio::time::Instant::now() + grace;
        let _ = tokio::time::timeout_at(goodbye_by, session.farewell(&end)).await;
        session.shutdown(!matches!(end, End::Shutdown));
    }
    .instrument(span)
    .await;
    drop(session);
    // The writer sends what is queued, then closes the WebSocket.
    let writer = AbortOnDropHandle::new(writer);
    let _ = tokio::time::timeout_at(goodbye_by, writer).await;
    shared.active.fetch_sub(1, Ordering::Relaxed);
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The browser closed the WebSocket or it broke.
    Left,
    /// Writing to the browser failed.
    WriteFailed,
    /// The daemon is shutting down.
    Shutdown,
    /// The browser stopped answering pings.
    Keepalive(Duration),
    /// The browser sent a message over the size limit.
    TooBig(usize),
    /// The daemon has as many sessions as it takes.
    TooMany(usize),
    /// The browser left more than this many bytes of replies unread.
    Backlogged(usize),
}

struct Session {
    id: u64,
    shared: Arc<Shared>,
    loopback: bool,
    node: Option<NodeHandle>,
    out: Outbox,
    /// Set when the browser stopped taking replies: the session ends.
    backlogged: bool,
    outbound_budget: OutboundBudget,
    pump_tx: mpsc::Sender<PumpEvent>,
    pump_rx: mpsc::Receiver<PumpEvent>,
    incoming_tx: mpsc::Sender<Incoming>,
    incoming_rx: mpsc::Receiver<Incoming>,
    connects: JoinSet<ConnectOutcome>,
    /// Connects in progress to peers that were not connected, by peer.
    dialing: HashMap<PeerId, usize>,
    listeners: HashMap<String, Listener>,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    next_generation: u64,
    budget: Arc<WriteBudget>,
    /// Data that did not fit its stream's queue; the WebSocket is not read until it does.
    blocked: Option<(ConnId, Bytes)>,
    /// Presence subscription (extension): listener changes, and peer changes once the
    /// node runs.
    presence: Option<Presence>,
    /// The session sent a Presence message (on or off), so it takes extension messages
    /// such as Relayed.
    extensions: bool,
    /// Reachability changes after the first Identify, each answered by a fresh one.
    reachability: Option<watch::Receiver<Reachability>>,
}

struct Presence {
    listeners: broadcast::Receiver<ListenerEvent>,
    peers: Option<broadcast::Receiver<PeerEvent>>,
}

impl Session {
    fn new(id: u64, shared: Arc<Shared>, loopback: bool, out: Outbox) -> Self {
        let (pump_tx, pump_rx) = mpsc::channel(PUMP_EVENT_QUEUE);
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let budget = Arc::new(WriteBudget::new(shared.limits.session_write_buffer));
        let outbound_budget = OutboundBudget::new(shared.limits.session_read_buffer);
        Self {
            id,
            shared,
            loopback,
            node: None,
            out,
            backlogged: false,
            outbound_budget,
            pump_tx,
            pump_rx,
            incoming_tx,
            incoming_rx,
            connects: JoinSet::new(),
            dialing: HashMap::new(),
            listeners: HashMap::new(),
            conns: HashMap::new(),
            next_conn: 0,
            next_generation: 0,
            budget,
            blocked: None,
            presence: None,
            extensions: false,
            reachability: None,
        }
    }

    async fn run<S>(
        &mut self,
        mut ws: S,
        cancel: &CancellationToken,
        write_failed: &CancellationToken,
    ) -> End
    where
        S: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let limits = self.shared.limits.clone();
        let mut keepalive = tokio::time::interval(limits.ping_interval);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.reset();
        let mut last_seen = tokio::time::Instant::now();
        let mut node_rx: watch::Receiver<Option<NodeHandle>> = self.shared.node.subscribe();
        let node = node_rx.borrow_and_update().clone();
        self.send(ServerMsg::Hello { started: node.is_some(), version: VERSION.into() });
        if let Some(node) = node {
            self.node_ready(node).await;
        }
        loop {
            if self.backlogged {
                return End::Backlogged(outbox::REPLY_BACKLOG);
            }
            let paused = self.blocked.is_some() || self.budget.is_over();
            let budget = self.budget.clone();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return End::Shutdown,
                _ = write_failed.cancelled() => return End::WriteFailed,
                Some(event) = self.pump_rx.recv() => self.on_pump_event(event).await,
                Some(incoming) = self.incoming_rx.recv() => self.on_incoming(incoming).await,
                Some(done) = self.connects.join_next(), if !self.connects.is_empty() => {
                    if let Ok(outcome) = done {
                        self.on_connected(outcome).await;
                    }
                }
                Ok(()) = node_rx.changed(), if self.node.is_none() => {
                    let node = node_rx.borrow_and_update().clone();
                    if let Some(node) = node {
                        self.node_ready(node).await;
                        if self.presence.is_some() {
                            self.send_peers();
                        }
                    }
                }
                Some(()) = reachability_changed(self.reachability.as_mut()) => {
                    self.send_identify();
                }
                event = next_presence(self.presence.as_mut()) => match event {
                    PresenceEvent::Listener(Ok(ListenerEvent { protocol, up })) => {
                        self.send(ServerMsg::LocalListener { up, protocol });
                    }
                    PresenceEvent::Peer(Ok(event)) => self.send(peer_msg(event)),
                    // Fell behind: send the whole state again.
                    PresenceEvent::Listener(Err(_)) | PresenceEvent::Peer(Err(_)) => {
                        self.send(ServerMsg::PresenceResync);
                        self.send_peers();
                        self.send_listeners();
                        self.send(ServerMsg::PresenceReady);
                    }
                },
                _ = budget.drained.notified(), if paused => self.retry_blocked(),
                _ = keepalive.tick() => {
                    if paused {
                        // Not reading the WebSocket, so no answer can be seen: the browser
                        // is busy sending, not gone.
                        last_seen = tokio::time::Instant::now();
                    } else if last_seen.elapsed() > limits.keepalive_timeout {
                        return End::Keepalive(limits.keepalive_timeout);
                    }
                    self.out.ping();
                }
                message = ws.next(), if !paused => {
                    last_seen = tokio::time::Instant::now();
                    if let Some(end) = self.on_websocket(message, &limits).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Handles what the WebSocket brought; `Some` when the session ends.
    async fn on_websocket(
        &mut self,
        message: Option<Result<Message, axum::Error>>,
        limits: &Limits,
    ) -> Option<End> {
        match message {
            Some(Ok(Message::Binary(bytes))) => self.on_message(bytes).await,
            Some(Ok(Message::Text(_))) => {
                let msg = "text messages are not part of the protocol; send binary messages";
                self.send(ServerMsg::ProtocolError { msg: msg.into() });
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => return Some(End::Left),
            Some(Err(e)) if is_capacity_error(&e) => return Some(End::TooBig(limits.max_message)),
            Some(Err(_)) => return Some(End::Left),
        }
        None
    }

    /// Queues a message for the browser, never waiting: a browser that leaves too
    /// much unread ends its session (see [`outbox`]). If the browser is gone the
    /// session is ending anyway, so a failed send is not an error here.
    fn send(&mut self, msg: ServerMsg) {
        if self.out.reply(&msg).is_err() {
            self.backlogged = true;
        }
    }

    /// The node runs: Identify, once reachability is known (or a little while has
    /// passed: see [`NodeHandle::settled_reachability`]); later changes send it again.
    async fn node_ready(&mut self, node: NodeHandle) {
        node.settled_reachability().await;
        let mut watch = node.watch_reachability();
        watch.borrow_and_update();
        self.reachability = Some(watch);
        self.node = Some(node);
        self.send_identify();
    }

    fn send_identify(&mut self) {
        let Some(node) = self.node.clone() else { return };
        // The private key lets its holder act as this node: only a browser on this very
        // machine (the daemon's owner) gets it.
        let key = if self.loopback { node.key().text.clone() } else { String::new() };
        self.send(ServerMsg::Identify {
            public: node.is_public(),
            peer_id: node.peer_id().to_base58(),
            addresses: node.addresses_json(),
            key,
        });
    }

    async fn on_message(&mut self, bytes: Bytes) {
        let msg = match ClientMsg::decode(bytes) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(error = %e, "bad message");
                return self.send(ServerMsg::ProtocolError { msg: e.to_string() });
            }
        };
        match msg {
            ClientMsg::Start { key } => self.on_start(key).await,
            ClientMsg::Listen { frames, protocol } => self.on_listen(frames, protocol).await,
            ClientMsg::Stop { retain, protocol } => self.on_stop(retain, protocol).await,
            ClientMsg::Close { id } => {
                if self.conns.contains_key(&id) {
                    self.close_conn(id, None).await;
                } else {
                    self.send_unknown(id);
                }
            }
            ClientMsg::Data { id, data } => self.on_data(id, data).await,
            ClientMsg::Connect { frames, relay, protocol, peer } => {
                self.on_connect(frames, relay, protocol, peer).await
            }
            ClientMsg::Presence { on: false } => {
                self.extensions = true;
                self.presence = None;
            }
            ClientMsg::Presence { on: true } => {
                self.extensions = true;
                self.presence =
                    Some(Presence { listeners: self.shared.hub.subscribe(), peers: None });
                self.send_peers();
                self.send_listeners();
                self.send(ServerMsg::PresenceReady);
            }
        }
    }

    /// (Re)subscribes to the node's peer changes and sends every known peer.
    fn send_peers(&mut self) {
        let (Some(node), Some(presence)) = (&self.node, &mut self.presence) else { return };
        presence.peers = Some(node.peers().subscribe());
        for row in node.peers().snapshot() {
            if self.out.reply(&peer_msg(row)).is_err() {
                self.backlogged = true;
                return;
            }
        }
    }

    /// (Re)subscribes to listener changes and sends every listened protocol.
    fn send_listeners(&mut self) {
        let Some(presence) = &mut self.presence else { return };
        presence.listeners = self.shared.hub.subscribe();
        for protocol in self.shared.hub.protocols() {
            self.send(ServerMsg::LocalListener { up: true, protocol });
        }
    }

    fn send_unknown(&mut self, id: ConnId) {
        self.send(ServerMsg::ConnectionClosed { id, reason: "unknown connection".into() });
    }

    async fn on_start(&mut self, key: Bytes) {
        let key = if key.is_empty() {
            None
        } else if !self.loopback {
            // Whoever gives the key owns the node's identity: only the daemon's owner
            // may. (A running node ignores a Start's key anyway.)
            if self.shared.node.current().is_none() {
                let msg = "Start: a key is taken only from a browser on the daemon's machine";
                return self.send(ServerMsg::ProtocolError { msg: msg.into() });
            }
            None
        } else {
            match std::str::from_utf8(&key)
                .map_err(|e| e.to_string())
                .and_then(|text| NodeKey::from_text(text).map_err(|e| e.to_string()))
            {
                Ok(key) => Some(key),
                Err(e) => {
                    let msg = format!("Start: invalid key: {e}");
                    return self.send(ServerMsg::ProtocolError { msg });
                }
            }
        };
        match self.shared.node.start(key).await {
            Ok(node) => self.node_ready(node).await,
            Err(e) => {
                tracing::warn!(error = %e, "node failed to start");
                self.send(ServerMsg::ProtocolError { msg: format!("Start: {e}") });
            }
        }
    }

    async fn on_listen(&mut self, frames: bool, protocol: String) {
        let refused = match self.try_listen(frames, &protocol) {
            Ok(()) => return self.send(ServerMsg::Listening { protocol }),
            Err(reason) => reason,
        };
        static LOG: LimitLog = LimitLog::with_burst(REFUSALS_LOGGED);
        if let Some(unlogged) = LOG.hit() {
            let protocol = text::quote(&protocol);
            tracing::info!(%protocol, %refused, unlogged, "listen refused");
        }
        if refused.contains("send Start") {
            self.send(ServerMsg::ProtocolError { msg: format!("Listen: {refused}") });
        }
        self.send(ServerMsg::ListenRefused { protocol: text::echo(protocol) });
    }

    fn try_listen(&mut self, frames: bool, protocol: &str) -> Result<(), String> {
        validate_protocol(protocol)?;
        let node = self.node.clone().ok_or("the node is not started; send Start first")?;
        if self.listeners.contains_key(protocol) {
            return Err("this session already listens on it".into());
        }
        let limit = self.shared.limits.max_listeners_per_session;
        if self.listeners.len() >= limit {
            return Err(format!("too many listeners in this session (limit {limit})"));
        }
        let local = self.shared.hub.register(protocol, self.id).map_err(|e| e.to_string())?;
        let stream_protocol = StreamProtocol::try_from_owned(protocol.to_string())
            .map_err(|e| e.to_string())
            .and_then(|p| node.control().accept(p).map_err(|e| e.to_string()));
        let remote = match stream_protocol {
            Ok(remote) => remote,
            Err(e) => {
                self.shared.hub.unregister(protocol, self.id);
                return Err(e);
            }
        };
        let generation = self.next_generation;
        self.next_generation += 1;
        let accept = accept_loop(
            protocol.to_string(),
            generation,
            remote,
            local,
            node.peer_id(),
            node.peer_streams().clone(),
            self.incoming_tx.clone(),
        );
        let accept = AbortOnDropHandle::new(tokio::spawn(accept.in_current_span()));
        self.listeners
            .insert(protocol.to_string(), Listener { frames, generation, _accept: accept });
        node.announce_protocols();
        Ok(())
    }

    async fn on_stop(&mut self, retain: bool, protocol: String) {
        let stopped = self.listeners.remove(&protocol);
        if stopped.is_some() {
            self.shared.hub.unregister(&protocol, self.id);
            if let Some(node) = &self.node {
                node.announce_protocols();
            }
        }
        if let (false, Some(stopped)) = (retain, stopped) {
            let this = Some((protocol.clone(), stopped.generation));
            let ids: Vec<ConnId> =
                self.conns.iter().filter(|(_, c)| c.listener == this).map(|(id, _)| *id).collect();
            for id in ids {
                self.close_conn(id, Some("listener stopped".into())).await;
            }
        }
        self.send(ServerMsg::ListenerClosed { protocol });
    }

    async fn on_data(&mut self, id: ConnId, data: Bytes) {
        let Some(conn) = self.conns.get(&id) else {
            return self.send_unknown(id);
        };
        let max_frame = self.shared.limits.max_frame;
        if conn.frames && data.len() > max_frame {
            let reason =
                format!("frame of {} bytes exceeds the limit of {max_frame} bytes", data.len());
            return self.close_conn(id, Some(reason)).await;
        }
        self.budget.charge(data.len());
        self.queue_data(id, data);
    }

    /// Queues charged data for a stream, or parks it when the stream's queue is full.
    fn queue_data(&mut self, id: ConnId, data: Bytes) {
        let Some(conn) = self.conns.get(&id) else {
            return self.budget.release(data.len());
        };
        match conn.queue.try_send(data) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(data)) => self.blocked = Some((id, data)),
            // The write pump failed; its report closes the stream.
            Err(mpsc::error::TrySendError::Closed(data)) => self.budget.release(data.len()),
        }
    }

    fn retry_blocked(&mut self) {
        if let Some((id, data)) = self.blocked.take() {
            self.queue_data(id, data);
        }
    }

    async fn on_connect(
        &mut self,
        frames: bool,
        relay: Relay,
        protocol: String,
        peer_text: String,
    ) {
        let (target, route) = match self.check_connect(&relay, &protocol, &peer_text) {
            Ok(checked) => checked,
            Err(error) => {
                static LOG: LimitLog = LimitLog::with_burst(REFUSALS_LOGGED);
                if let Some(unlogged) = LOG.hit() {
                    let (peer, protocol) = (text::quote(&peer_text), text::quote(&protocol));
                    tracing::info!(%peer, %protocol, %error, unlogged, "connect refused");
                }
                let refused = ServerMsg::PeerConnectionRefused {
                    peer_id: text::echo(peer_text),
                    protocol: text::echo(protocol),
                    error,
                };
                return self.send(refused);
            }
        };
        let node = self.node.clone().expect("checked by check_connect");
        if target.peer == node.peer_id() {
            // One of this daemon's own sessions: join in-process.
            match self.shared.hub.join(&protocol) {
                Ok(io) => {
                    let id = self.alloc_id();
                    let peer_id = node.peer_id().to_base58();
                    self.send(ServerMsg::PeerConnection { id, peer_id, protocol });
                    self.start_conn(id, io, frames, None, None);
                }
                Err(e) => {
                    let refused = ServerMsg::PeerConnectionRefused {
                        peer_id: text::echo(peer_text),
                        protocol,
                        error: e.to_string(),
                    };
                    self.send(refused);
                }
            }
            return;
        }
        let stream_protocol = StreamProtocol::try_from_owned(protocol.clone()).expect("validated");
        let dialing = (!node.peers().is_connected(&target.peer)).then_some(target.peer);
        if let Some(peer) = dialing {
            *self.dialing.entry(peer).or_default() += 1;
        }
        self.connects.spawn(
            async move {
                let result = node
                    .connect(&target, route, stream_protocol)
                    .await
                    .map(|connected| (target.peer, connected))
                    .map_err(|e| e.to_string());
                ConnectOutcome { dialing, peer_text, protocol, frames, result }
            }
            .in_current_span(),
        );
    }

    fn check_connect(
        &self,
        relay: &Relay,
        protocol: &str,
        peer_text: &str,
    ) -> Result<(ConnectTarget, Route), String> {
        validate_protocol(protocol)?;
        if self.node.is_none() {
            return Err("the node is not started; send Start first".into());
        }
        let route = match relay {
            Relay::Direct => Route::Direct,
            Relay::Any => Route::AnyRelay,
            Relay::Via(text) => Route::Relay(parse_relay(text)?),
        };
        let target = ConnectTarget::parse(peer_text).map_err(|e| e.to_string())?;
        let limits = &self.shared.limits;
        if !self.loopback && !limits.allow_loopback_dials {
            let named = target.addrs.iter().chain(match &route {
                Route::Relay(relay) => Some(relay),
                _ => None,
            });
            if named.into_iter().any(is_local_target) {
                return Err(LOCAL_TARGET_REFUSED.into());
            }
        }
        let limit = limits.max_streams_per_session;
        if self.conns.len() + self.connects.len() >= limit {
            return Err(format!("too many streams in this session (limit {limit})"));
        }
        let limit = limits.max_dials_per_session;
        if self.dialing.len() >= limit && self.dials(target.peer) {
            return Err(format!("too many peers being dialed by this session (limit {limit})"));
        }
        Ok((target, route))
    }

    /// Tells an extension-aware session that stream `id` goes through `relay`.
    fn send_relayed(&mut self, id: ConnId, relay: Option<String>) {
        if let Some(relay) = relay.filter(|_| self.extensions) {
            self.send(ServerMsg::Relayed { id, relay });
        }
    }

    /// Whether a Connect to `peer` would dial a peer this session is not dialing yet.
    fn dials(&self, peer: PeerId) -> bool {
        let connected = self.node.as_ref().is_some_and(|node| node.peers().is_connected(&peer));
        !connected && !self.dialing.contains_key(&peer)
    }

    async fn on_connected(&mut self, outcome: ConnectOutcome) {
        let ConnectOutcome { dialing, peer_text, protocol, frames, result } = outcome;
        if let Some(peer) = dialing {
            if let Some(n) = self.dialing.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    self.dialing.remove(&peer);
                }
            }
        }
        match result {
            Ok((peer, Connected { stream, slot, relay })) => {
                let id = self.alloc_id();
                tracing::debug!(conn = id, %peer, %protocol, ?relay, "stream opened");
                let msg = ServerMsg::PeerConnection { id, peer_id: peer.to_base58(), protocol };
                self.send(msg);
                self.send_relayed(id, relay);
                self.start_conn(id, Box::new(stream.compat()), frames, None, Some(slot));
            }
            Err(error) => {
                static LOG: LimitLog = LimitLog::with_burst(REFUSALS_LOGGED);
                if let Some(unlogged) = LOG.hit() {
                    let peer = text::quote(&peer_text);
                    tracing::info!(%peer, %protocol, %error, unlogged, "connect failed");
                }
                let peer_id = text::echo(peer_text);
                self.send(ServerMsg::PeerConnectionRefused { peer_id, protocol, error });
            }
        }
    }

    async fn on_incoming(&mut self, incoming: Incoming) {
        let Incoming { protocol, generation, peer, io, slot } = incoming;
        let Some(listener) = self.listeners.get(&protocol).filter(|l| l.generation == generation)
        else {
            return; // stopped meanwhile: dropping the stream resets it
        };
        let frames = listener.frames;
        let limit = self.shared.limits.max_streams_per_session;
        if self.conns.len() >= limit {
            static LOG: LimitLog = LimitLog::new();
            if let Some(unlogged) = LOG.hit() {
                tracing::warn!(%peer, %protocol, limit, unlogged, "incoming stream refused: too many streams in session");
            }
            return;
        }
        let id = self.alloc_id();
        tracing::debug!(conn = id, %peer, %protocol, "stream accepted");
        let peer_id = peer.to_base58();
        self.send(ServerMsg::ListenerConnection { id, peer_id, protocol: protocol.clone() });
        // Accepted just now: relayed if every connection to the peer is.
        let relay = self.node.as_ref().and_then(|node| node.peers().relay_of(&peer));
        self.send_relayed(id, relay);
        self.start_conn(id, io, frames, Some((protocol, generation)), slot);
    }

    fn alloc_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// Starts the pumps of a stream whose Peer/Listener Connection was queued already.
    fn start_conn(
        &mut self,
        id: ConnId,
        io: BoxIo,
        frames: bool,
        listener: Option<(String, u64)>,
        slot: Option<StreamSlot>,
    ) {
        let (rd, wr) = tokio::io::split(io);
        let (queue, queue_rx) = mpsc::channel(STREAM_WRITE_QUEUE);
        let closed = Arc::new(ClosedFlag::default());
        let read = ReadPump {
            id,
            frames,
            max_frame: self.shared.limits.max_frame,
            out: self.out.clone(),
            budget: self.outbound_budget.clone(),
            closed: closed.clone(),
            events: self.pump_tx.clone(),
        };
        let write =
            WritePump { id, frames, budget: self.budget.clone(), events: self.pump_tx.clone() };
        let reader = tokio::spawn(read.run(rd).in_current_span());
        let keep = (slot, self.shared.streams.enter());
        let writer = tokio::spawn(write.run(wr, queue_rx, keep).in_current_span());
        self.conns.insert(id, Conn { listener, frames, queue, reader, writer, closed });
    }

    async fn on_pump_event(&mut self, event: PumpEvent) {
        match event {
            // The read side ended and said so; dropping the queue lets the write pump
            // finish what is queued and close the stream.
            PumpEvent::ReadEnded { id } => {
                if let Some(conn) = self.conns.remove(&id) {
                    finish_writer(conn.writer);
                }
            }
            PumpEvent::WriteFailed { id, reason } => self.close_conn(id, Some(reason)).await,
        }
    }

    /// Closes a stream from this side; tells the browser `reason` if there is one.
    async fn close_conn(&mut self, id: ConnId, reason: Option<String>) {
        let Some(conn) = self.conns.remove(&id) else { return };
        conn.reader.abort();
        // Once the read pump has stopped, no Data of this stream can follow the close.
        let _ = conn.reader.await;
        if let Some((blocked, data)) = self.blocked.take_if(|(b, _)| *b == id) {
            debug_assert_eq!(blocked, id);
            self.budget.release(data.len());
        }
        drop(conn.queue);
        finish_writer(conn.writer);
        if let Some(reason) = reason {
            if conn.closed.claim() {
                self.send(ServerMsg::ConnectionClosed { id, reason });
            }
        }
    }

    /// Tells the browser why the session ends: at daemon shutdown a Connection Closed
    /// for each stream first, then a WebSocket close frame with the reason.
    async fn farewell(&mut self, end: &End) {
        let (code, reason) = match end {
            End::Left | End::WriteFailed => return,
            End::Shutdown => (close_code::AWAY, "daemon shutting down".to_string()),
            End::Keepalive(after) => {
                (close_code::ERROR, format!("no answer to pings for {} s", after.as_secs()))
            }
            End::TooBig(limit) => {
                (close_code::SIZE, format!("message longer than the limit of {limit} bytes"))
            }
            End::TooMany(limit) => {
                (close_code::AGAIN, format!("too many sessions (limit {limit})"))
            }
            End::Backlogged(limit) => {
                (close_code::POLICY, format!("more than {limit} bytes of replies left unread"))
            }
        };
        if let End::Shutdown = end {
            let mut ids: Vec<ConnId> = self.conns.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                self.close_conn(id, Some(reason.clone())).await;
            }
        }
        self.out.close(code, reason);
    }

    /// Frees everything the session holds: listeners, streams, pending connects.
    /// `drain`: the write pumps may still deliver what the browser queued (for a
    /// bounded time); otherwise (daemon shutdown) they stop at once.
    fn shutdown(&mut self, drain: bool) {
        for protocol in self.listeners.keys() {
            self.shared.hub.unregister(protocol, self.id);
        }
        self.listeners.clear();
        for (_, conn) in self.conns.drain() {
            conn.reader.abort();
            if drain {
                drop(conn.queue);
                finish_writer(conn.writer);
            } else {
                conn.writer.abort();
            }
        }
        self.connects.abort_all();
    }
}

/// Lets a write pump whose queue was dropped finish writing what is queued and close
/// its stream, for CLOSE_GRACE at most: a remote that stops reading cannot keep it.
fn finish_writer(writer: JoinHandle<()>) {
    if writer.is_finished() {
        return;
    }
    tokio::spawn(async move {
        let writer = AbortOnDropHandle::new(writer);
        let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
    });
}

enum PresenceEvent {
    Listener(Result<ListenerEvent, broadcast::error::RecvError>),
    Peer(Result<PeerEvent, broadcast::error::RecvError>),
}

/// `Some` when reachability changed; never without a node (or once the node is gone).
async fn reachability_changed(watch: Option<&mut watch::Receiver<Reachability>>) -> Option<()> {
    match watch {
        Some(watch) => watch.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// A Connect's RELAY string: the relay's base58 peer id, or its multiaddr ending in
/// `/p2p/RELAY_ID`.
fn parse_relay(text: &str) -> Result<libp2p::Multiaddr, String> {
    match crate::protocol::addrs::parse_peer(text) {
        Ok(peer) => Ok(libp2p::Multiaddr::empty().with(libp2p::multiaddr::Protocol::P2p(peer))),
        Err(_) => crate::node::parse_relay_addr(text).map_err(|_| {
            let text = text::quote(text);
            format!("RELAY {text} is neither a peer id nor a multiaddr ending in /p2p/ID")
        }),
    }
}

/// The next presence change, or never without a subscription.
async fn next_presence(presence: Option<&mut Presence>) -> PresenceEvent {
    let Some(presence) = presence else { return std::future::pending().await };
    let peers = async {
        match presence.peers.as_mut() {
            Some(peers) => peers.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        event = presence.listeners.recv() => PresenceEvent::Listener(event),
        event = peers => PresenceEvent::Peer(event),
    }
}

fn peer_msg(event: PeerEvent) -> ServerMsg {
    ServerMsg::Peer {
        state: event.state as u8,
        peer_id: event.peer.to_base58(),
        info: serde_json::to_string(&event.info).expect("plain data serializes"),
    }
}

/// Whether a WebSocket read failed because a message was over the size limit.
fn is_capacity_error(error: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    let source = std::error::Error::source(error);
    matches!(source.and_then(|e| e.downcast_ref::<Error>()), Some(Error::Capacity(_)))
}

/// Takes every stream that arrives for one listened protocol, from libp2p or from a
/// session of this daemon, and hands it to the session. It never waits on the browser:
/// `libp2p-stream` drops streams that arrive while nobody polls.
async fn accept_loop(
    protocol: String,
    generation: u64,
    mut remote: libp2p_stream::IncomingStreams,
    mut local: mpsc::Receiver<BoxIo>,
    own: PeerId,
    peer_streams: PeerStreams,
    session: mpsc::Sender<Incoming>,
) {
    loop {
        let incoming = tokio::select! {
            Some((peer, stream)) = remote.next() => {
                let Some(slot) = peer_streams.try_acquire(peer) else {
                    static LOG: LimitLog = LimitLog::new();
                    if let Some(unlogged) = LOG.hit() {
                        tracing::warn!(%peer, %protocol, limit = peer_streams.limit(), unlogged, "incoming stream refused: too many streams from peer");
                    }
                    continue;
                };
                Incoming { protocol: protocol.clone(), generation, peer, io: Box::new(stream.compat()), slot: Some(slot) }
            }
            Some(io) = local.recv() => Incoming { protocol: protocol.clone(), generation, peer: own, io, slot: None },
            else => break,
        };
        if let Err(e) = session.try_send(incoming) {
            static LOG: LimitLog = LimitLog::new();
            if let Some(unlogged) = LOG.hit() {
                tracing::warn!(%protocol, unlogged, "incoming stream dropped: session is not keeping up");
            }
            drop(e);
        }
    }
}
