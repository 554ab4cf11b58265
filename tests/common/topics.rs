//! Sessions with the pubsub extension on, and two daemons whose nodes meet.

use std::time::Duration;

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use libp2p_websocket::protocol::{ClientMsg, ServerMsg};

use super::{Client, Daemon, Identity};

/// A session with the pubsub extension on.
pub async fn pubsub_session(daemon: &Daemon) -> (Client, Identity) {
    let (mut client, identity) = Client::started(daemon).await;
    client.send(ClientMsg::Extensions { names: "pubsub".into() }).await;
    match client.recv().await {
        ServerMsg::Extensions { names } => {
            assert_eq!(names, "pubsub max-message=65536 max-topics=32")
        }
        other => panic!("expected Extensions, got {other:?}"),
    }
    (client, identity)
}

pub async fn subscribe(client: &mut Client, topic: &str) -> Vec<String> {
    client.send(ClientMsg::Subscribe { topic: topic.into() }).await;
    match client.recv().await {
        ServerMsg::Subscribed { topic: t } => assert_eq!(t, topic),
        other => panic!("expected Subscribed, got {other:?}"),
    }
    // The peers already on it follow at once.
    let mut peers = Vec::new();
    while let Some(msg) = client.quiet_for(Duration::from_millis(100)).await {
        match msg {
            ServerMsg::TopicPeer { joined: true, peer, .. } => peers.push(peer),
            other => panic!("expected Topic Peer, got {other:?}"),
        }
    }
    peers
}

pub async fn publish(client: &mut Client, topic: &str, data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    client.send(ClientMsg::Publish { topic: topic.into(), data }).await;
}

/// The next message on `topic`, skipping topic peers joining and leaving.
pub async fn message(client: &mut Client) -> (String, u64, Vec<u8>) {
    loop {
        match client.recv().await {
            ServerMsg::TopicMessage { from, seq, data, .. } => return (from, seq, data.to_vec()),
            ServerMsg::TopicPeer { .. } => continue,
            other => panic!("expected Message, got {other:?}"),
        }
    }
}

/// Waits until `client` hears that `peer` joined `topic`.
pub async fn joined(client: &mut Client, peer: &PeerId) {
    let peer = peer.to_base58();
    loop {
        match client.recv().await {
            ServerMsg::TopicPeer { joined: true, peer: p, .. } if p == peer => return,
            ServerMsg::TopicPeer { .. } => continue,
            other => panic!("expected Topic Peer, got {other:?}"),
        }
    }
}

/// Nothing but topic peers for `wait`.
pub async fn no_message(client: &mut Client, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Some(msg) = client.quiet_for(deadline - tokio::time::Instant::now()).await {
        assert!(matches!(msg, ServerMsg::TopicPeer { .. }), "unexpected {msg:?}");
    }
}

/// A daemon whose node dials `peer` (`/…/p2p/ID`) at start.
pub async fn daemon_dialing(peer: Multiaddr) -> Daemon {
    let mut config = libp2p_websocket::Config::local();
    config.node.bootstrap = vec![peer];
    let config = libp2p_websocket::Config {
        key: Some(libp2p_websocket::node::NodeKey::generate()),
        ..config
    };
    Daemon::start(config).await
}

pub fn full_addr(identity: &Identity) -> Multiaddr {
    let tcp = identity.addresses.iter().find(|a| a.to_string().contains("/tcp/")).unwrap();
    tcp.clone().with(libp2p::multiaddr::Protocol::P2p(identity.peer_id))
}
