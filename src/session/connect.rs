//! Connect: checks, dials through the node (or joins another session of this daemon
//! in-process), and the answer once the stream is open or refused.

use std::collections::HashMap;

use libp2p::{PeerId, StreamProtocol};
use tokio::task::JoinSet;
use tokio_util::compat::FuturesAsyncReadCompatExt as _;
use tracing::Instrument as _;

use super::{refusal::ConnectRefusal, Session, REFUSALS_LOGGED};
use crate::{
    limit_log::LimitLog,
    node::{Connected, RelayAddr, Route},
    protocol::{is_local_target, text, validate_protocol, ConnId, ConnectTarget, Relay, ServerMsg},
};

/// The end of a Connect's dial and stream negotiation.
pub struct ConnectOutcome {
    /// The peer this Connect counts as dialing for the session, if it does.
    dialing: Option<PeerId>,
    peer_text: String,
    protocol: String,
    frames: bool,
    result: Result<(PeerId, Connected), ConnectRefusal>,
}

/// One session's Connects in progress.
#[derive(Default)]
pub struct Connects {
    running: JoinSet<ConnectOutcome>,
    /// Connects in progress to peers that were not connected, by peer.
    dialing: HashMap<PeerId, usize>,
}

impl Connects {
    /// Connects in progress.
    pub fn count(&self) -> usize {
        self.running.len()
    }

    /// The next Connect to finish; never while none runs.
    pub async fn next_outcome(&mut self) -> ConnectOutcome {
        loop {
            match self.running.join_next().await {
                Some(Ok(outcome)) => return outcome,
                Some(Err(_)) => continue, // aborted
                None => std::future::pending().await,
            }
        }
    }

    pub fn abort_all(&mut self) {
        self.running.abort_all();
    }

    fn dialed(&mut self, peer: Option<PeerId>) {
        let Some(peer) = peer else { return };
        if let Some(n) = self.dialing.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.dialing.remove(&peer);
            }
        }
    }
}

impl Session {
    pub(super) fn on_connect(
        &mut self,
        frames: bool,
        relay: Relay,
        protocol: String,
        peer_text: String,
    ) {
        let (target, route, dialing) = match self.check_connect(&relay, &protocol, &peer_text) {
            Ok(checked) => checked,
            Err(error) => {
                static LOG: LimitLog = LimitLog::with_burst(REFUSALS_LOGGED);
                if let Some(unlogged) = LOG.hit() {
                    let (peer, protocol) = (text::quote(&peer_text), text::quote(&protocol));
                    tracing::info!(%peer, %protocol, %error, unlogged, "connect refused");
                }
                let protocol = text::echo(protocol);
                return self.refuse_connect(peer_text, protocol, error);
            }
        };
        let node = self.node.clone().expect("checked by check_connect");
        if target.peer == node.peer_id() {
            // One of this daemon's own sessions: join in-process.
            match self.shared.hub.join(&protocol) {
                Ok(io) => {
                    let id = self.streams.next_id();
                    let peer_id = node.peer_id().to_base58();
                    self.out.reply(&ServerMsg::PeerConnection { id, peer_id, protocol });
                    self.streams.start(id, io, frames, None, None);
                }
                Err(e) => self.refuse_connect(peer_text, protocol, e.into()),
            }
            return;
        }
        let stream_protocol = StreamProtocol::try_from_owned(protocol.clone()).expect("validated");
        if let Some(peer) = dialing {
            *self.connects.dialing.entry(peer).or_default() += 1;
        }
        let metrics = self.shared.metrics.clone();
        self.connects.running.spawn(
            async move {
                let started = std::time::Instant::now();
                let result = node
                    .connect(&target, route, stream_protocol)
                    .await
                    .map(|connected| (target.peer, connected))
                    .map_err(|e| ConnectRefusal::Failed(Box::new(e)));
                metrics.connect_done(started, result.is_ok());
                ConnectOutcome { dialing, peer_text, protocol, frames, result }
            }
            .in_current_span(),
        );
    }

    /// The Connect's target and route, and the peer it makes the session dial (none
    /// for a peer the node is connected to, or for this daemon's own sessions).
    fn check_connect(
        &self,
        relay: &Relay,
        protocol: &str,
        peer_text: &str,
    ) -> Result<(ConnectTarget, Route, Option<PeerId>), ConnectRefusal> {
        validate_protocol(protocol)?;
        let node = self.node.as_ref().ok_or(ConnectRefusal::NotStarted)?;
        let route = match relay {
            Relay::Direct => Route::Direct,
            Relay::Any => Route::AnyRelay,
            Relay::Via(text) => Route::Relay(Box::new(
                RelayAddr::parse(text).map_err(|_| ConnectRefusal::BadRelay(text::quote(text)))?,
            )),
        };
        let target = ConnectTarget::parse(peer_text)?;
        let limits = &self.shared.limits;
        if !self.peer.loopback && !limits.allow_loopback_dials {
            let relay = match &route {
                Route::Relay(relay) => relay.at(),
                _ => None,
            };
            if target.addrs.iter().chain(relay).any(is_local_target) {
                return Err(ConnectRefusal::LocalTarget);
            }
        }
        let limit = limits.max_streams_per_session;
        if self.streams.count() + self.connects.count() >= limit {
            return Err(ConnectRefusal::TooManyStreams(limit));
        }
        // A Connect to a connected peer, or to one this session dials already, costs
        // no new dial.
        let peer = target.peer;
        let dialing = (peer != node.peer_id() && !node.peers().is_connected(&peer)).then_some(peer);
        let limit = limits.max_dials_per_session;
        let new_dial = dialing.is_some_and(|peer| !self.connects.dialing.contains_key(&peer));
        if new_dial && self.connects.dialing.len() >= limit {
            return Err(ConnectRefusal::TooManyDials(limit));
        }
        Ok((target, route, dialing))
    }

    pub(super) fn on_connected(&mut self, outcome: ConnectOutcome) {
        let ConnectOutcome { dialing, peer_text, protocol, frames, result } = outcome;
        self.connects.dialed(dialing);
        match result {
            Ok((peer, Connected { stream, slot, relay })) => {
                let id = self.streams.next_id();
                tracing::debug!(conn = id, %peer, %protocol, ?relay, "stream opened");
                let msg = ServerMsg::PeerConnection { id, peer_id: peer.to_base58(), protocol };
                self.out.reply(&msg);
                self.send_relayed(id, relay);
                self.streams.start(id, Box::new(stream.compat()), frames, None, Some(slot));
            }
            Err(error) => {
                static LOG: LimitLog = LimitLog::with_burst(REFUSALS_LOGGED);
                if let Some(unlogged) = LOG.hit() {
                    let peer = text::quote(&peer_text);
                    tracing::info!(%peer, %protocol, %error, unlogged, "connect failed");
                }
                self.refuse_connect(peer_text, protocol, error);
            }
        }
    }

    fn refuse_connect(&mut self, peer_text: String, protocol: String, error: ConnectRefusal) {
        super::meter::connect_refused(&self.shared.metrics, &error);
        let peer_id = text::echo(peer_text);
        let error = error.to_string();
        self.out.reply(&ServerMsg::PeerConnectionRefused { peer_id, protocol, error });
    }

    /// Tells an extension-aware session that stream `id` goes through `relay`.
    pub(super) fn send_relayed(&mut self, id: ConnId, relay: Option<String>) {
        if let Some(relay) = relay.filter(|_| self.presence.extensions) {
            self.out.reply(&ServerMsg::Relayed { id, relay });
        }
    }
}
