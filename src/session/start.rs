//! Start and Identify: the node a session works with, and what it tells the browser
//! of it (again whenever reachability changes).

use bytes::Bytes;
use tokio::sync::watch;

use super::Session;
use crate::{
    node::{NodeHandle, NodeKey, Reachability},
    protocol::ServerMsg,
};

/// The original's wire generations that differ in what this daemon sends back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Its spring 2020 pages and README (Identify's KEY is `rest`).
    #[default]
    Spring,
    /// Its July 2020 pages: Start carried a port, Identify's KEY is a `str` and a
    /// version follows it.
    July2020,
}

impl Session {
    /// Start, with the TCP port a July 2020 page named (0: the default). Like the key,
    /// the port is taken only from a browser on the daemon's machine.
    pub(super) async fn on_start(&mut self, key: Bytes, port: Option<u16>) {
        let port = port.filter(|&port| port != 0 && self.peer.loopback);
        let key = if key.is_empty() {
            None
        } else if !self.peer.loopback {
            // Whoever gives the key owns the node's identity: only the daemon's owner
            // may. (A running node ignores a Start's key anyway.)
            if self.shared.node.current().is_none() {
                let msg = "Start: a key is taken only from a browser on the daemon's machine";
                return self.out.reply(&ServerMsg::ProtocolError { msg: msg.into() });
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
                    return self.out.reply(&ServerMsg::ProtocolError { msg });
                }
            }
        };
        match self.shared.node.start_on_port(key, port).await {
            Ok(node) => self.node_ready(node).await,
            Err(e) => {
                tracing::warn!(error = %e, "node failed to start");
                self.out.reply(&ServerMsg::ProtocolError { msg: format!("Start: {e}") });
            }
        }
    }

    /// The node runs: Identify at once (reachability as far as it is known); later
    /// changes send it again.
    pub(super) async fn node_ready(&mut self, node: NodeHandle) {
        let mut watch = node.watch_reachability();
        watch.borrow_and_update();
        self.reachability = Some(watch);
        self.node = Some(node);
        self.send_identify();
    }

    /// The node started after this session did (another session's Start).
    pub(super) async fn on_node_started(&mut self, node: Option<NodeHandle>) {
        if let Some(node) = node {
            self.node_ready(node).await;
            if self.presence.is_on() {
                self.send_peers();
            }
        }
    }

    /// The reachability extension's message, to a session that turned it on and has
    /// a node.
    pub(super) fn send_reachability(&mut self) {
        if let (true, Some(node)) = (self.reachability_on, &self.node) {
            self.out.reply(&ServerMsg::Reachability { state: node.reachability().code() });
        }
    }

    pub(super) fn send_identify(&mut self) {
        let Some(node) = &self.node else { return };
        // The private key lets its holder act as this node: only a browser on this very
        // machine (the daemon's owner) gets it.
        let key = if self.peer.loopback { node.key().text.clone() } else { String::new() };
        let (public, peer_id, addresses) =
            (node.identify_public(), node.peer_id().to_base58(), node.addresses_json());
        self.out.reply(&match self.generation {
            Generation::Spring => ServerMsg::Identify { public, peer_id, addresses, key },
            Generation::July2020 => {
                let version = crate::AGENT.to_string();
                ServerMsg::IdentifyJuly2020 { public, peer_id, addresses, key, version }
            }
        });
        self.send_reachability();
    }
}

/// `Some` when reachability changed; never without a node (or once the node is gone).
pub(super) async fn reachability_changed(
    watch: Option<&mut watch::Receiver<Reachability>>,
) -> Option<()> {
    match watch {
        Some(watch) => watch.changed().await.ok(),
        None => std::future::pending().await,
    }
}
