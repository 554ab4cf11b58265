//! Sessions driven through channels instead of sockets.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::{channel::mpsc as fmpsc, SinkExt as _};

use super::*;
use crate::{config::Config, node::NodeKey};

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
    let task = tokio::spawn(run(socket, shared.clone(), loopback, CancellationToken::new()));
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
