//! The presence extension (live peers and this daemon's listeners, opt-in) and the
//! extension messages a session takes once it sent a Presence message.

use tokio::sync::broadcast;

use super::{hub::ListenerEvent, Session};
use crate::{node::PeerEvent, protocol::ServerMsg};

/// A session's extensions.
#[derive(Default)]
pub struct Presence {
    /// The session sent a Presence message (on or off), so it takes extension
    /// messages such as Relayed.
    pub extensions: bool,
    /// Listener changes, and peer changes once the node runs; `None` when off.
    subscription: Option<Subscription>,
}

struct Subscription {
    listeners: broadcast::Receiver<ListenerEvent>,
    peers: Option<broadcast::Receiver<PeerEvent>>,
}

/// A change presence reports.
pub enum PresenceEvent {
    Listener(Result<ListenerEvent, broadcast::error::RecvError>),
    Peer(Result<PeerEvent, broadcast::error::RecvError>),
}

impl Presence {
    /// The next presence change; never without a subscription.
    pub async fn next(&mut self) -> PresenceEvent {
        let Some(subscription) = &mut self.subscription else {
            return std::future::pending().await;
        };
        let peers = async {
            match subscription.peers.as_mut() {
                Some(peers) => peers.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = subscription.listeners.recv() => PresenceEvent::Listener(event),
            event = peers => PresenceEvent::Peer(event),
        }
    }

    pub fn is_on(&self) -> bool {
        self.subscription.is_some()
    }
}

impl Session {
    /// A Presence message: on sends the whole state, then changes; off stops them.
    pub(super) fn on_presence(&mut self, on: bool) {
        self.presence.extensions = true;
        self.presence.subscription = None;
        if on {
            let listeners = self.shared.hub.subscribe();
            self.presence.subscription = Some(Subscription { listeners, peers: None });
            self.send_peers();
            self.send_listeners();
            self.out.reply(&ServerMsg::PresenceReady);
        }
    }

    pub(super) fn on_presence_event(&mut self, event: PresenceEvent) {
        match event {
            PresenceEvent::Listener(Ok(ListenerEvent { protocol, up })) => {
                self.out.reply(&ServerMsg::LocalListener { up, protocol });
            }
            PresenceEvent::Peer(Ok(event)) => self.out.reply(&peer_msg(event)),
            // Fell behind: send the whole state again.
            PresenceEvent::Listener(Err(_)) | PresenceEvent::Peer(Err(_)) => {
                self.out.reply(&ServerMsg::PresenceResync);
                self.send_peers();
                self.send_listeners();
                self.out.reply(&ServerMsg::PresenceReady);
            }
        }
    }

    /// (Re)subscribes to the node's peer changes and sends every known peer.
    pub(super) fn send_peers(&mut self) {
        let (Some(node), Some(subscription)) = (&self.node, &mut self.presence.subscription) else {
            return;
        };
        subscription.peers = Some(node.peers().subscribe());
        for row in node.peers().snapshot() {
            self.out.reply(&peer_msg(row));
        }
    }

    /// (Re)subscribes to listener changes and sends every listened protocol.
    fn send_listeners(&mut self) {
        let Some(subscription) = &mut self.presence.subscription else { return };
        subscription.listeners = self.shared.hub.subscribe();
        for protocol in self.shared.hub.protocols() {
            self.out.reply(&ServerMsg::LocalListener { up: true, protocol });
        }
    }
}

fn peer_msg(event: PeerEvent) -> ServerMsg {
    ServerMsg::Peer {
        state: event.state as u8,
        peer_id: event.peer.to_base58(),
        info: serde_json::to_string(&event.info).expect("plain data serializes"),
    }
}
