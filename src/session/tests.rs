//! Sessions driven through channels instead of sockets.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::{channel::mpsc as fmpsc, Sink, SinkExt as _, Stream, StreamExt as _};

use tokio::task::JoinHandle;

use super::*;
use crate::{
    config::Config,
    node::{NodeKey, NodeSlot},
    protocol::{ConnectTarget, Relay},
};

/// A WebSocket stand-in: what the test sends comes out of `Stream`, what the session
/// sends goes into the test's receiver.
struct ChannelSocket {
    incoming: fmpsc::Receiver<Message>,
    outgoing: fmpsc::Sender<Message>,
}

impl Stream for ChannelSocket {
    type Item = Result<Message, axum::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_next_unpin(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Message> for ChannelSocket {
    type Error = axum::Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.outgoing.poll_ready(cx).map_err(axum::Error::new)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.outgoing.start_send(item).map_err(axum::Error::new)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.outgoing).poll_flush(cx).map_err(axum::Error::new)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.outgoing).poll_close(cx).map_err(axum::Error::new)
    }
}

struct Browser {
    to_session: fmpsc::Sender<Message>,
    from_session: fmpsc::Receiver<Message>,
}

impl Browser {
    async fn send(&mut self, msg: ClientMsg) {
        self.to_session.send(Message::Binary(msg.encode())).await.unwrap();
    }

    async fn recv(&mut self) -> ServerMsg {
        let next = tokio::time::timeout(Duration::from_secs(10), self.from_session.next());
        match next.await.expect("session answers").expect("session open") {
            Message::Binary(bytes) => ServerMsg::decode(bytes).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn started_shared() -> (Arc<Shared>, NodeKey) {
    let config = Config::local();
    let node = Arc::new(NodeSlot::new(config.node, CancellationToken::new()));
    let key = NodeKey::generate();
    node.start(Some(key.clone())).await.unwrap();
    (Arc::new(Shared::new(node, config.limits)), key)
}

fn open_session(shared: &Arc<Shared>, loopback: bool) -> (Browser, JoinHandle<()>) {
    let (to_session, incoming) = fmpsc::channel(16);
    let (outgoing, from_session) = fmpsc::channel(16);
    let socket = ChannelSocket { incoming, outgoing };
    let task = tokio::spawn(run(
        Box::pin(socket),
        shared.clone(),
        Peer { loopback, origin: None },
        CancellationToken::new(),
        None,
    ));
    (Browser { to_session, from_session }, task)
}

#[tokio::test]
async fn only_loopback_sessions_get_the_private_key() {
    let (shared, key) = started_shared().await;
    for (loopback, expected) in [(true, key.text.clone()), (false, String::new())] {
        let (mut browser, _task) = open_session(&shared, loopback);
        assert!(matches!(browser.recv().await, ServerMsg::Hello { started: true, .. }));
        match browser.recv().await {
            ServerMsg::Identify { key, peer_id, .. } => {
                assert_eq!(key, expected, "loopback={loopback}");
                assert_eq!(peer_id, shared.node.current().unwrap().peer_id().to_base58());
            }
            other => panic!("expected Identify, got {other:?}"),
        }
        // Asking again with Start does not hand the key out either.
        browser.send(ClientMsg::Start { key: Bytes::new() }).await;
        assert!(matches!(browser.recv().await, ServerMsg::Identify { key, .. } if key == expected));
    }
}

#[tokio::test]
async fn nothing_of_a_closed_session_remains() {
    let (shared, _) = started_shared().await;
    let (mut browser, task) = open_session(&shared, true);
    browser.recv().await;
    browser.recv().await;
    for p in ["/a", "/b", "/c"] {
        browser.send(ClientMsg::Listen { frames: true, protocol: p.into() }).await;
        assert!(matches!(browser.recv().await, ServerMsg::Listening { .. }));
    }
    // Join itself in-process, so the session holds streams too.
    let own = shared.node.current().unwrap().peer_id().to_base58();
    let connect =
        ClientMsg::Connect { frames: true, relay: Relay::Direct, protocol: "/a".into(), peer: own };
    browser.send(connect).await;
    assert!(matches!(browser.recv().await, ServerMsg::PeerConnection { .. }));
    assert!(matches!(browser.recv().await, ServerMsg::ListenerConnection { .. }));
    assert_eq!(shared.hub.listener_count(), 3);
    assert_eq!(shared.active_sessions(), 1);
    drop(browser);
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert_eq!(shared.hub.listener_count(), 0);
    assert_eq!(shared.active_sessions(), 0);
}

async fn shared_with(limits: crate::config::Limits) -> Arc<Shared> {
    let config = Config::local();
    let node = Arc::new(NodeSlot::new(config.node, CancellationToken::new()));
    node.start(None).await.unwrap();
    Arc::new(Shared::new(node, limits))
}

/// Listens and stops, `pairs` times, on a 200-byte protocol: two replies a pair; never
/// reads. `false` if the session went away before all was sent.
async fn ask_without_reading(browser: &mut Browser, pairs: usize) -> bool {
    let protocol = format!("/{}", "p".repeat(199));
    for _ in 0..pairs {
        let listen = ClientMsg::Listen { frames: true, protocol: protocol.clone() };
        let stop = ClientMsg::Stop { retain: false, protocol: protocol.clone() };
        for msg in [listen, stop] {
            // A session stuck on its browser would stop taking messages here.
            let message = Message::Binary(msg.encode());
            let sent =
                tokio::time::timeout(Duration::from_secs(10), browser.to_session.send(message));
            match sent.await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false,
                Err(_) => panic!("the session stopped reading its browser's messages"),
            }
        }
    }
    true
}

#[tokio::test]
async fn a_browser_that_asks_and_never_reads_is_closed_and_freed() {
    let shared = shared_with(crate::config::Limits::default()).await;
    let (mut browser, task) = open_session(&shared, true);
    // Replies pile up unread (each pair ~420 bytes): past the backlog the session ends
    // instead of waiting on its browser for good.
    let pairs = outbox::REPLY_BACKLOG / 400 * 2;
    assert!(!ask_without_reading(&mut browser, pairs).await, "the session took it all");
    tokio::time::timeout(GOODBYE_GRACE + Duration::from_secs(5), task).await.unwrap().unwrap();
    assert_eq!(shared.hub.listener_count(), 0);
    let freed = async {
        while shared.active_sessions() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(GOODBYE_GRACE + Duration::from_secs(5), freed).await.unwrap();
}

#[tokio::test]
async fn a_browser_that_stops_reading_cannot_hold_its_session_past_keepalive_or_shutdown() {
    let limits = crate::config::Limits {
        ping_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let shared = shared_with(limits).await;
    // Keepalive: the browser's socket is full (it reads nothing), and it sent nothing
    // for a while: the session ends within the keepalive time and its goodbye grace.
    let (mut browser, task) = open_session(&shared, true);
    assert!(ask_without_reading(&mut browser, 200).await);
    let bound = Duration::from_secs(1) + GOODBYE_GRACE + Duration::from_secs(5);
    tokio::time::timeout(bound, task).await.expect("closed after keepalive").unwrap();
    // Shutdown: same browser state, and the daemon shuts down.
    let cancel = CancellationToken::new();
    let (to_session, incoming) = fmpsc::channel(16);
    let (outgoing, _from_session) = fmpsc::channel(16);
    let socket = ChannelSocket { incoming, outgoing };
    let task = tokio::spawn(run(
        Box::pin(socket),
        shared.clone(),
        Peer { loopback: true, origin: None },
        cancel.clone(),
        None,
    ));
    let mut browser = Browser { to_session, from_session: fmpsc::channel(1).1 };
    assert!(ask_without_reading(&mut browser, 200).await);
    cancel.cancel();
    let bound = SHUTDOWN_GRACE + Duration::from_secs(2);
    tokio::time::timeout(bound, task).await.expect("ended at shutdown").unwrap();
    assert_eq!(shared.active_sessions(), 0);
}

#[tokio::test]
async fn browsers_on_other_machines_cannot_dial_this_machine_or_give_the_key() {
    let (shared, _) = started_shared().await;
    let (mut browser, _task) = open_session(&shared, false);
    browser.recv().await;
    browser.recv().await;
    let peer = libp2p::PeerId::random();
    // Whatever listens there or not, the answer is the same, and nothing is dialed.
    for addr in ["/ip4/127.0.0.1/tcp/22", "/ip4/127.0.0.1/tcp/1", "/ip6/fe80::1/tcp/80"] {
        let target = ConnectTarget { peer, addrs: vec![addr.parse().unwrap()] };
        let peer = target.to_connect_string();
        let protocol = "/test/scan/1".to_string();
        browser
            .send(ClientMsg::Connect { frames: true, relay: Relay::Direct, protocol, peer })
            .await;
        match browser.recv().await {
            ServerMsg::PeerConnectionRefused { error, .. } => {
                assert_eq!(error, LOCAL_TARGET_REFUSED)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    let relay = Relay::Via(format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", libp2p::PeerId::random()));
    let (protocol, peer) = ("/test/scan/1".to_string(), peer.to_base58());
    browser.send(ClientMsg::Connect { frames: true, relay, protocol, peer }).await;
    assert!(matches!(
        browser.recv().await,
        ServerMsg::PeerConnectionRefused { error, .. } if error == LOCAL_TARGET_REFUSED
    ));

    // A node not yet started takes no key from a browser on another machine.
    let config = Config::local();
    let node = Arc::new(NodeSlot::new(config.node, CancellationToken::new()));
    let lazy = Arc::new(Shared::new(node, config.limits));
    let (mut remote, _task) = open_session(&lazy, false);
    assert!(matches!(remote.recv().await, ServerMsg::Hello { started: false, .. }));
    let key = NodeKey::generate();
    remote.send(ClientMsg::Start { key: key.text.clone().into() }).await;
    assert!(matches!(remote.recv().await, ServerMsg::ProtocolError { msg } if msg.contains("key")));
    assert!(lazy.node.current().is_none());
    // Without a key it starts, with a fresh one.
    remote.send(ClientMsg::Start { key: Bytes::new() }).await;
    match remote.recv().await {
        ServerMsg::Identify { peer_id, key: given, .. } => {
            assert!(given.is_empty());
            assert_ne!(peer_id, key.keypair.public().to_peer_id().to_base58());
        }
        other => panic!("expected Identify, got {other:?}"),
    }
}
