//! Pages of the original's other generations (PROTOCOL.md, *The original's later
//! generations*): what their bytes get from this daemon.

mod common;

use bytes::Bytes;
use common::*;
use libp2p_websocket::protocol::{ClientMsg, ServerMsg};

/// A free TCP port on 127.0.0.1 (free a moment ago).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Reads a `str` (2-byte length, then UTF-8) at `at`; returns it and what follows.
fn counted(bytes: &[u8], at: usize) -> (String, usize) {
    let len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    (String::from_utf8(bytes[at + 2..at + 2 + len].to_vec()).unwrap(), at + 2 + len)
}

#[tokio::test]
async fn a_july_2020_start_with_a_port_starts_the_node_there_in_that_generations_words() {
    let daemon = Daemon::local().await;
    let mut page = Client::connect(&daemon).await;
    assert!(matches!(page.recv().await, ServerMsg::Hello { started: false, .. }));
    // The July 2020 client's start(port, key): [0][PORT:2][KEY: rest].
    let port = free_port();
    let key = libp2p_websocket::node::NodeKey::generate();
    let mut start = vec![0u8];
    start.extend_from_slice(&port.to_be_bytes());
    start.extend_from_slice(key.text.as_bytes());
    page.send_raw(start).await;
    // Identify as that generation read it: [1][PUBLIC:1][PEERID: str][ADDRESSES: str]
    // [KEY: str][VERSION: rest].
    let msg = within("Identify", futures::StreamExt::next(&mut page.ws)).await.unwrap().unwrap();
    let bytes = msg.into_data();
    assert_eq!(bytes[0], 1, "Identify");
    let (peer_id, next) = counted(&bytes, 2);
    let (addresses, next) = counted(&bytes, next);
    let (given, next) = counted(&bytes, next);
    let version = String::from_utf8(bytes[next..].to_vec()).unwrap();
    assert_eq!(peer_id, key.keypair.public().to_peer_id().to_base58());
    assert_eq!(given, key.text, "the key, counted");
    assert!(version.starts_with("libp2p-websocket/"), "{version}");
    let addresses: Vec<String> = serde_json::from_str(&addresses).unwrap();
    assert!(
        addresses.iter().any(|a| a.ends_with(&format!("/tcp/{port}"))),
        "the node listens on the page's port {port}: {addresses:?}"
    );
    // A page of today's generation on the same daemon still gets today's layout.
    let (_, identity) = Client::started(&daemon).await;
    assert_eq!(identity.peer_id.to_base58(), peer_id);
    daemon.stop().await;
}

#[tokio::test]
async fn the_july_2020_chats_own_start_is_answered_in_its_generations_words() {
    // Its chat called start(key) with the key as the port: [0][0][0], no key.
    let daemon = Daemon::local().await;
    let mut page = Client::connect(&daemon).await;
    assert!(matches!(page.recv().await, ServerMsg::Hello { started: false, .. }));
    page.send_raw(vec![0, 0, 0]).await;
    let msg = within("Identify", futures::StreamExt::next(&mut page.ws)).await.unwrap().unwrap();
    let bytes = msg.into_data();
    let (_, next) = counted(&bytes, 2);
    let (_, next) = counted(&bytes, next);
    let (key, next) = counted(&bytes, next);
    assert!(libp2p_websocket::node::NodeKey::from_text(&key).is_ok(), "a whole key: {key}");
    assert!(String::from_utf8_lossy(&bytes[next..]).starts_with("libp2p-websocket/"));
    // A spring page on the same daemon gets the spring layout.
    let mut spring = Client::connect(&daemon).await;
    assert!(matches!(spring.recv().await, ServerMsg::Hello { started: true, .. }));
    assert!(matches!(spring.recv().await, ServerMsg::Identify { .. }));
    spring.send(ClientMsg::Start { key: Bytes::new() }).await;
    assert!(matches!(spring.recv().await, ServerMsg::Identify { .. }));
    daemon.stop().await;
}
