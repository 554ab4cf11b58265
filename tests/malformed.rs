//! Every kind of malformed message gets a clear answer, and the session goes on.

mod common;

use common::*;
use libp2p_websocket::protocol::ServerMsg;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn malformed_messages_get_answers_and_the_session_goes_on() {
    let daemon = Daemon::local().await;
    let (mut client, _) = Client::started(&daemon).await;
    let long = {
        let mut m = vec![5u8, 0, 0, 0x01, 0x2c];
        m.extend_from_slice(b"/p");
        m
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty message"),
        (vec![200], "unknown message type 200"),
        (vec![1], "Listen: message too short for FRAMES"),
        (vec![1, 7, b'/'], "Listen: FRAMES flag must be 0 or 1, got 7"),
        (vec![1, 1, 0xff, 0xfe], "Listen: PROTOCOL is not valid UTF-8"),
        (vec![2], "Stop: message too short"),
        (vec![2, 9, b'/'], "Stop: first byte must be RETAIN"),
        (vec![3, 0, 0, 0, 0, 0, 0, 1], "Close: message too short for ID"),
        (vec![4, 0, 0, 0], "Data: message too short for ID"),
        (vec![5], "Connect: message too short for FRAMES"),
        (long, "Connect: PROTOCOL length 300 exceeds message"),
        // A length that is not what follows reads as a July 2020 [PORT:2][KEY: rest].
        (vec![0, 0, 10, b'a'], "Start: invalid key"),
        (vec![0, 5], "Start: message too short for KEY"),
        (vec![6], "Presence: message too short for ON"),
        (vec![6, 2], "Presence: ON flag must be 0 or 1, got 2"),
    ];
    for (bytes, expected) in cases {
        client.send_raw(bytes.clone()).await;
        match client.recv().await {
            ServerMsg::ProtocolError { msg } => {
                assert!(msg.starts_with(expected), "{bytes:?}: got {msg:?}, want {expected:?}")
            }
            other => panic!("{bytes:?}: expected Protocol Error, got {other:?}"),
        }
    }
    // A text message is not part of the protocol either.
    futures::SinkExt::send(&mut client.ws, Message::Text("hello".into())).await.unwrap();
    assert!(
        matches!(client.recv().await, ServerMsg::ProtocolError { msg } if msg.contains("binary"))
    );

    // Commands that decode but cannot be carried out get their own answers.
    let bad_protocols = ["no-slash", "/has space", "/new\nline"];
    for protocol in bad_protocols {
        client
            .send(libp2p_websocket::protocol::ClientMsg::Listen {
                frames: true,
                protocol: protocol.into(),
            })
            .await;
        assert!(
            matches!(client.recv().await, ServerMsg::ListenRefused { protocol: p } if p == protocol)
        );
    }
    let refused = |msg: ServerMsg, peer: &str, needle: &str| match msg {
        ServerMsg::PeerConnectionRefused { peer_id, error, .. } => {
            assert_eq!(peer_id, peer);
            assert!(error.contains(needle), "{error:?} lacks {needle:?}");
        }
        other => panic!("expected Peer Connection Refused, got {other:?}"),
    };
    refused(client.connect_to("not-a-peer", "/p", true).await, "not-a-peer", "bad peer id");
    refused(client.connect_to("/addrs/~~~", "/p", true).await, "/addrs/~~~", "Ascii85");
    let peer = libp2p::PeerId::random().to_base58();
    refused(client.connect_to(&peer, "bad", true).await, &peer, "must start with '/'");
    client.send(libp2p_websocket::protocol::ClientMsg::Close { id: 99 }).await;
    assert!(
        matches!(client.recv().await, ServerMsg::ConnectionClosed { id: 99, reason } if reason == "unknown connection")
    );

    // The session still works.
    client.listen("/test/after-errors/1", true).await;
    daemon.stop().await;
}

#[tokio::test]
async fn commands_before_start_are_refused_clearly() {
    let daemon = Daemon::local().await;
    let mut client = Client::connect(&daemon).await;
    assert!(matches!(client.recv().await, ServerMsg::Hello { started: false, .. }));
    client
        .send(libp2p_websocket::protocol::ClientMsg::Listen { frames: true, protocol: "/p".into() })
        .await;
    assert!(
        matches!(client.recv().await, ServerMsg::ProtocolError { msg } if msg.contains("send Start first"))
    );
    assert!(matches!(client.recv().await, ServerMsg::ListenRefused { .. }));
    let peer = libp2p::PeerId::random().to_base58();
    match client.connect_to(&peer, "/p", true).await {
        ServerMsg::PeerConnectionRefused { error, .. } => {
            assert!(error.contains("send Start first"))
        }
        other => panic!("{other:?}"),
    }
    daemon.stop().await;
}
