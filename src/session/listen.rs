//! Listen and Stop: a session's listeners, the task that accepts each one's streams
//! (from libp2p and from other sessions of the daemon), and their arrival.

use std::collections::HashMap;

use futures::StreamExt as _;
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::mpsc;
use tokio_util::{compat::FuturesAsyncReadCompatExt as _, task::AbortOnDropHandle};
use tracing::Instrument as _;

use super::{pump::BoxIo, refusal::ListenRefusal, Session, REFUSALS_LOGGED};
use crate::{
    limit_log::LimitLog,
    node::{PeerStreams, StreamSlot},
    protocol::{text, validate_protocol, ServerMsg},
};

/// Incoming streams queued for the session from its listeners.
const INCOMING_QUEUE: usize = 256;

/// A stream that arrived on one of the session's listeners.
pub struct Incoming {
    protocol: String,
    /// Which listening of `protocol` it came in on (a Stop and a new Listen make another).
    generation: u64,
    peer: PeerId,
    io: BoxIo,
    slot: Option<StreamSlot>,
}

struct Listener {
    frames: bool,
    generation: u64,
    _accept: AbortOnDropHandle<()>,
}

/// One session's listeners.
pub struct Listeners {
    map: HashMap<String, Listener>,
    next_generation: u64,
    incoming_tx: mpsc::Sender<Incoming>,
    incoming: mpsc::Receiver<Incoming>,
}

impl Default for Listeners {
    fn default() -> Self {
        let (incoming_tx, incoming) = mpsc::channel(INCOMING_QUEUE);
        Self { map: HashMap::new(), next_generation: 0, incoming_tx, incoming }
    }
}

impl Listeners {
    /// The next stream that arrived on a listener.
    pub async fn next_incoming(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Every listened protocol, leaving none.
    pub fn drain(&mut self) -> impl Iterator<Item = String> + '_ {
        self.map.drain().map(|(protocol, _)| protocol)
    }

    /// The protocols listened on, sorted.
    pub fn protocols(&self) -> Vec<String> {
        let mut protocols: Vec<String> = self.map.keys().cloned().collect();
        protocols.sort();
        protocols
    }
}

impl Session {
    pub(super) fn on_listen(&mut self, frames: bool, protocol: String) {
        let refused = match self.try_listen(frames, &protocol) {
            Ok(()) => return self.out.reply(&ServerMsg::Listening { protocol }),
            Err(refused) => refused,
        };
        super::meter::listen_refused(&self.shared.metrics, &refused);
        static LOG: LimitLog = LimitLog::with_burst(REFUSALS_LOGGED);
        if let Some(unlogged) = LOG.hit() {
            let protocol = text::quote(&protocol);
            tracing::info!(%protocol, %refused, unlogged, "listen refused");
        }
        if refused.is_protocol_error() {
            self.out.reply(&ServerMsg::ProtocolError { msg: format!("Listen: {refused}") });
        }
        self.out.reply(&ServerMsg::ListenRefused { protocol: text::echo(protocol) });
    }

    fn try_listen(&mut self, frames: bool, protocol: &str) -> Result<(), ListenRefusal> {
        validate_protocol(protocol)?;
        let node = self.node.clone().ok_or(ListenRefusal::NotStarted)?;
        let listeners = &mut self.listeners;
        if listeners.map.contains_key(protocol) {
            return Err(ListenRefusal::AlreadyListening);
        }
        let limit = self.shared.limits.max_listeners_per_session;
        if listeners.map.len() >= limit {
            return Err(ListenRefusal::TooManyListeners(limit));
        }
        let local = self.shared.hub.register(protocol, self.id)?;
        let stream_protocol = StreamProtocol::try_from_owned(protocol.to_string())
            .expect("validated: starts with '/'");
        let Ok(remote) = node.control().accept(stream_protocol) else {
            self.shared.hub.unregister(protocol, self.id);
            return Err(ListenRefusal::AlreadyAccepted);
        };
        let generation = listeners.next_generation;
        listeners.next_generation += 1;
        let accept = accept_loop(
            protocol.to_string(),
            generation,
            remote,
            local,
            node.peer_id(),
            node.peer_streams().clone(),
            listeners.incoming_tx.clone(),
        );
        let accept = AbortOnDropHandle::new(tokio::spawn(accept.in_current_span()));
        listeners
            .map
            .insert(protocol.to_string(), Listener { frames, generation, _accept: accept });
        node.announce_protocols();
        Ok(())
    }

    pub(super) async fn on_stop(&mut self, retain: bool, protocol: String) {
        let stopped = self.listeners.map.remove(&protocol);
        if stopped.is_some() {
            self.shared.hub.unregister(&protocol, self.id);
            if let Some(node) = &self.node {
                node.announce_protocols();
            }
        }
        if let (false, Some(stopped)) = (retain, stopped) {
            let origin = Some((protocol.clone(), stopped.generation));
            self.streams.close_from(&origin, "listener stopped").await;
        }
        self.out.reply(&ServerMsg::ListenerClosed { protocol });
    }

    pub(super) fn on_incoming(&mut self, incoming: Incoming) {
        let Incoming { protocol, generation, peer, io, slot } = incoming;
        let listener = self.listeners.map.get(&protocol).filter(|l| l.generation == generation);
        let Some(listener) = listener else {
            return; // stopped meanwhile: dropping the stream resets it
        };
        let frames = listener.frames;
        let limit = self.shared.limits.max_streams_per_session;
        if self.streams.count() >= limit {
            self.shared.metrics.limit_hit(crate::metrics::Limit::StreamsPerSession);
            static LOG: LimitLog = LimitLog::new();
            if let Some(unlogged) = LOG.hit() {
                tracing::warn!(%peer, %protocol, limit, unlogged, "incoming stream refused: too many streams in session");
            }
            return;
        }
        let id = self.streams.next_id();
        tracing::debug!(conn = id, %peer, %protocol, "stream accepted");
        let peer_id = peer.to_base58();
        self.out.reply(&ServerMsg::ListenerConnection { id, peer_id, protocol: protocol.clone() });
        // Accepted just now: relayed if every connection to the peer is.
        let relay = self.node.as_ref().and_then(|node| node.peers().relay_of(&peer));
        self.send_relayed(id, relay);
        self.streams.start(id, io, frames, Some((protocol, generation)), slot);
    }
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
