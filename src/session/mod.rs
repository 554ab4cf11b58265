//! One browser's control session: its listeners, its streams, and the pumps between
//! them and the WebSocket.
//!
//! One task per WebSocket owns all of that browser's state; nothing of a session is
//! shared with another except the daemon-wide [`Hub`] of listened protocols. The
//! session's state is in parts, each in its own file: its [`streams`] (ids, pumps,
//! budgets), its listeners ([`listen`]), its Connects in progress ([`connect`]), the
//! node it works with ([`start`]) and its extensions ([`extensions`], [`credit`],
//! [`presence`], [`resume`]). Messages to the
//! browser go through its [`outbox`], bounded in bytes, to a writer task, in order;
//! the session never waits on it. Its WebSocket is its [`link`]: with the resume
//! extension, the session outlives one and goes on with the next.

pub mod connect;
pub mod credit;
mod extensions;
pub mod hub;
pub mod link;
pub mod listen;
mod meter;
pub mod outbox;
pub mod presence;
pub mod pump;
pub mod refusal;
mod replay;
pub mod resume;
mod shared;
mod start;
pub mod streams;
#[cfg(test)]
mod tests;
mod topics;
mod write_queue;

use std::{sync::Arc, time::Duration};

use axum::extract::ws::{close_code, Message};
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use hub::{Hub, ListenerEvent};
pub use refusal::LOCAL_TARGET_REFUSED;
pub use shared::{Gauge, GaugeGuard, Shared};
pub use streams::{CLOSE_GRACE, STREAM_WRITE_QUEUE};

use crate::{
    config::Limits,
    limit_log::LimitLog,
    node::{NodeHandle, Reachability},
    protocol::{client_type, ClientMsg, ServerMsg},
};
use connect::Connects;
use link::{BoxSocket, Link};
use listen::Listeners;
use outbox::Outbox;
use presence::Presence;
use resume::{Peer, Refusal, Resume};
use streams::Streams;

/// Refused Listens and Connects logged a minute, of each kind, at most.
const REFUSALS_LOGGED: u32 = 20;
/// How long an ending session may take to say goodbye to its browser (the last queued
/// messages, a Connection Closed per stream, the close frame) — shorter at daemon
/// shutdown, which must finish within 5 s even with browsers that do not read.
pub const GOODBYE_GRACE: Duration = Duration::from_secs(5);
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs one session on an upgraded WebSocket until the browser leaves (and, with the
/// resume extension, does not come back in time) or `cancel` fires. `refused`: the
/// WebSocket asked to resume a session and could not; the fresh one says why.
pub async fn run(
    socket: BoxSocket,
    shared: Arc<Shared>,
    peer: Peer,
    cancel: CancellationToken,
    refused: Option<Refusal>,
) {
    let (id, place) = shared.enter_session();
    let span = tracing::info_span!("session", id);
    let (out, mailbox) = Outbox::new();
    // A browser that takes nothing for the keepalive time is as gone as a silent one.
    let mut session = Session::new(id, shared.clone(), peer, out);
    session.link = Link::new(mailbox, shared.limits.keepalive_timeout);
    let mut goodbye_by = tokio::time::Instant::now();
    async {
        session.link.attach(socket, Vec::new(), &shared);
        let limit = shared.limits.max_sessions;
        let end = if place.count() > limit {
            static LOG: LimitLog = LimitLog::new();
            if let Some(unlogged) = LOG.hit() {
                tracing::warn!(limit, unlogged, "session refused: too many sessions");
            }
            End::TooMany(limit)
        } else {
            tracing::debug!(loopback = session.peer.loopback, "session opened");
            session.run(&cancel, refused).await
        };
        tracing::debug!(?end, "session ending");
        meter::ended(&shared.metrics, &end);
        // Tell the browser why, unless it left; one that does not read gets a grace
        // period to take it, farewell and queued messages together.
        let grace = if let End::Shutdown = end { SHUTDOWN_GRACE } else { GOODBYE_GRACE };
        goodbye_by = tokio::time::Instant::now() + grace;
        let _ = tokio::time::timeout_at(goodbye_by, session.farewell(&end)).await;
        session.shutdown(!matches!(end, End::Shutdown));
    }
    .instrument(span)
    .await;
    let link = std::mem::take(&mut session.link);
    drop(session);
    // The writer sends what is queued, then closes the WebSocket.
    link.finish(goodbye_by).await;
    drop(place);
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The browser closed the WebSocket (but not with code 1000) or it broke.
    Left,
    /// The browser closed the WebSocket with code 1000 (normal closure): it is done.
    Closed,
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
    /// Resume extension: no WebSocket came back within the grace period.
    Expired,
}

impl End {
    /// Whether a session with the resume extension waits for a new WebSocket after it.
    fn resumable(&self) -> bool {
        matches!(self, Self::Left | Self::WriteFailed | Self::Keepalive(_))
    }
}

struct Session {
    id: u64,
    shared: Arc<Shared>,
    peer: Peer,
    link: Link,
    /// The resume extension, once on.
    resume: Option<Resume>,
    /// The pubsub extension, once on.
    topics: Option<topics::Topics>,
    node: Option<NodeHandle>,
    /// Reachability changes after the first Identify, each answered by a fresh one.
    reachability: Option<watch::Receiver<Reachability>>,
    /// The reachability extension: a Reachability message after each Identify.
    reachability_on: bool,
    /// Which of the original's wire generations the page speaks (from its Start).
    generation: start::Generation,
    out: Outbox,
    streams: Streams,
    listeners: Listeners,
    connects: Connects,
    presence: Presence,
}

impl Session {
    fn new(id: u64, shared: Arc<Shared>, peer: Peer, out: Outbox) -> Self {
        Self {
            id,
            streams: Streams::new(shared.clone(), out.clone()),
            shared,
            peer,
            link: Link::default(),
            resume: None,
            topics: None,
            node: None,
            reachability: None,
            reachability_on: false,
            generation: start::Generation::default(),
            out,
            listeners: Listeners::default(),
            connects: Connects::default(),
            presence: Presence::default(),
        }
    }

    async fn run(&mut self, cancel: &CancellationToken, refused: Option<Refusal>) -> End {
        let limits = self.shared.limits.clone();
        let mut keepalive = tokio::time::interval(limits.ping_interval);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.reset();
        let mut last_seen = tokio::time::Instant::now();
        let mut node_rx: watch::Receiver<Option<NodeHandle>> = self.shared.node.subscribe();
        let node = node_rx.borrow_and_update().clone();
        let version = extensions::hello_version();
        self.out.reply(&ServerMsg::Hello { started: node.is_some(), version });
        if let Some(refused) = refused {
            self.out.reply(&ServerMsg::ResumeRefused { reason: refused.to_string() });
        }
        if let Some(node) = node {
            self.node_ready(node).await;
        }
        loop {
            if self.out.is_backlogged() {
                return End::Backlogged(outbox::REPLY_BACKLOG);
            }
            let paused = self.streams.paused();
            let drained = self.streams.drained();
            let attached = self.link.attached();
            let write_failed = self.link.write_failed();
            let deadline = Resume::next_deadline(self.resume.as_ref());
            let lost = tokio::select! {
                biased;
                _ = cancel.cancelled() => return End::Shutdown,
                _ = write_failed.cancelled(), if attached => Some(End::WriteFailed),
                Some(attach) = resume::next_attach(self.resume.as_mut()) => {
                    self.on_attach(attach).await;
                    last_seen = tokio::time::Instant::now();
                    None
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(far)), if deadline.is_some() => {
                    if let Some(end) = self.on_deadline() {
                        return end;
                    }
                    None
                }
                Some(event) = self.streams.next_event() => {
                    self.streams.on_pump_event(event).await;
                    None
                }
                Some(incoming) = self.listeners.next_incoming() => {
                    self.on_incoming(incoming);
                    None
                }
                outcome = self.connects.next_outcome() => {
                    self.on_connected(outcome);
                    None
                }
                Ok(()) = node_rx.changed(), if self.node.is_none() => {
                    let node = node_rx.borrow_and_update().clone();
                    self.on_node_started(node).await;
                    None
                }
                Some(()) = start::reachability_changed(self.reachability.as_mut()) => {
                    self.send_identify();
                    None
                }
                event = self.presence.next() => {
                    self.on_presence_event(event);
                    None
                }
                Some(event) = topics::next_event(self.topics.as_mut()) => {
                    self.on_topic_event(event);
                    None
                }
                _ = drained, if paused => {
                    self.streams.retry_blocked();
                    None
                }
                _ = keepalive.tick(), if attached => {
                    if paused {
                        // Not reading the WebSocket, so no answer can be seen: the browser
                        // is busy sending, not gone.
                        last_seen = tokio::time::Instant::now();
                        self.out.ping();
                        None
                    } else if last_seen.elapsed() > limits.keepalive_timeout {
                        Some(End::Keepalive(limits.keepalive_timeout))
                    } else {
                        self.out.ping();
                        None
                    }
                }
                message = self.link.next(), if !paused && attached => {
                    last_seen = tokio::time::Instant::now();
                    self.on_websocket(message, &limits).await
                }
            };
            if let Some(end) = lost {
                if !(end.resumable() && self.resume.is_some()) {
                    return end;
                }
                tracing::debug!(?end, "WebSocket lost");
                self.detach(limits.resume_grace).await;
            }
        }
    }

    /// An Ack came due, or the grace period of a detached session ended (`Some`).
    fn on_deadline(&mut self) -> Option<End> {
        let now = tokio::time::Instant::now();
        let resume = self.resume.as_ref()?;
        if resume.expires.is_some_and(|at| at <= now) {
            return Some(End::Expired);
        }
        self.send_ack();
        None
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
                self.out.reply(&ServerMsg::ProtocolError { msg: msg.into() });
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            // Code 1000: the page is done with the session (with the resume extension,
            // any other close, or none, may be a page going away for a while).
            Some(Ok(Message::Close(Some(frame)))) if frame.code == close_code::NORMAL => {
                return Some(End::Closed)
            }
            Some(Ok(Message::Close(_))) | None => return Some(End::Left),
            Some(Err(e)) if is_capacity_error(&e) => return Some(End::TooBig(limits.max_message)),
            Some(Err(_)) => return Some(End::Left),
        }
        None
    }

    /// One message from the page; with the resume extension, every one but Ack is
    /// numbered (counted once handled, even when it could not be decoded).
    async fn on_message(&mut self, bytes: Bytes) {
        let numbered = self.resume.is_some() && bytes.first() != Some(&client_type::ACK);
        let len = bytes.len();
        self.heard();
        self.handle(bytes).await;
        if numbered {
            self.took(len);
        }
    }

    async fn handle(&mut self, bytes: Bytes) {
        let msg = match ClientMsg::decode(bytes) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(error = %e, "bad message");
                return self.out.reply(&ServerMsg::ProtocolError { msg: e.to_string() });
            }
        };
        match msg {
            ClientMsg::Start { key } => self.on_start(key, None).await,
            ClientMsg::StartAt { port, key } => {
                self.generation = start::Generation::July2020;
                self.on_start(key, Some(port)).await
            }
            ClientMsg::Listen { frames, protocol } => self.on_listen(frames, protocol),
            ClientMsg::Stop { retain, protocol } => self.on_stop(retain, protocol).await,
            ClientMsg::Close { id } => self.streams.on_close(id).await,
            ClientMsg::Data { id, data } => self.streams.on_data(id, data).await,
            ClientMsg::Connect { frames, relay, protocol, peer } => {
                self.on_connect(frames, relay, protocol, peer)
            }
            ClientMsg::Presence { on } => self.on_presence(on),
            ClientMsg::Extensions { names } => self.on_extensions(names),
            ClientMsg::Credit { id, bytes } => self.streams.on_credit(id, bytes),
            ClientMsg::Ack { count } => self.on_ack(count),
            ClientMsg::Subscribe { topic } => self.on_subscribe(topic).await,
            ClientMsg::Unsubscribe { topic } => self.on_unsubscribe(topic),
            ClientMsg::Publish { topic, data } => self.on_publish(topic, data).await,
        }
    }

    /// Tells the browser why the session ends: at daemon shutdown a Connection Closed
    /// for each stream first, then a WebSocket close frame with the reason.
    async fn farewell(&mut self, end: &End) {
        let (code, reason) = match end {
            End::Left | End::Closed | End::WriteFailed | End::Expired => return,
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
            self.streams.close_all(&reason).await;
        }
        self.out.close(code, reason);
    }

    /// Frees everything the session holds: listeners, streams, pending connects.
    /// `drain`: the write pumps may still deliver what the browser queued (for a
    /// bounded time); otherwise (daemon shutdown) they stop at once.
    fn shutdown(&mut self, drain: bool) {
        self.unpark();
        self.leave_topics();
        for protocol in self.listeners.drain() {
            self.shared.hub.unregister(&protocol, self.id);
        }
        self.streams.shutdown(drain);
        self.connects.abort_all();
    }
}

/// An instant that never comes (for a disabled timer branch).
fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}

/// Whether a WebSocket read failed because a message was over the size limit.
fn is_capacity_error(error: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    let source = std::error::Error::source(error);
    matches!(source.and_then(|e| e.downcast_ref::<Error>()), Some(Error::Capacity(_)))
}
