//! End to end: real daemons on 127.0.0.1:0, real WebSocket clients, real libp2p.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{AsyncWriteExt as _, StreamExt as _};
use libp2p::StreamProtocol;
use libp2p_websocket::{
    node::NodeKey,
    protocol::{ClientMsg, ServerMsg},
    Config,
};

#[tokio::test]
async fn lazy_start_hello_start_identify() {
    let daemon = Daemon::local().await;
    let mut early = Client::connect(&daemon).await;
    assert!(matches!(early.recv().await, ServerMsg::Hello { started: false, .. }));

    let (_starter, identity) = Client::started(&daemon).await;
    assert!(!identity.key.is_empty(), "a loopback session gets the key");
    assert!(
        identity.addresses.iter().any(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/")),
        "{:?}",
        identity.addresses
    );
    let key = NodeKey::from_text(&identity.key).unwrap();
    assert_eq!(key.keypair.public().to_peer_id(), identity.peer_id);

    // A session that was waiting is told too, without asking.
    let ServerMsg::Identify { peer_id, .. } = early.recv().await else {
        panic!("expected Identify")
    };
    assert_eq!(peer_id, identity.peer_id.to_base58());

    // Later sessions: Hello STARTED=1, then Identify.
    let mut late = Client::connect(&daemon).await;
    assert!(matches!(late.recv().await, ServerMsg::Hello { started: true, .. }));
    assert!(matches!(late.recv().await, ServerMsg::Identify { .. }));
    daemon.stop().await;
}

#[tokio::test]
async fn start_with_a_key_in_the_originals_format_keeps_the_peer_id() {
    let key = NodeKey::generate();
    let daemon = Daemon::local().await;
    let mut client = Client::connect(&daemon).await;
    assert!(matches!(client.recv().await, ServerMsg::Hello { started: false, .. }));
    client.send(ClientMsg::Start { key: Bytes::from("not a key") }).await;
    match client.recv().await {
        ServerMsg::ProtocolError { msg } => assert!(msg.contains("Start: invalid key"), "{msg}"),
        other => panic!("expected Protocol Error, got {other:?}"),
    }
    // The README's layout, [KEY: str], works as well as the client's [KEY: rest].
    let mut start = vec![0u8];
    start.extend_from_slice(&(key.text.len() as u16).to_be_bytes());
    start.extend_from_slice(key.text.as_bytes());
    client.send_raw(start).await;
    let ServerMsg::Identify { peer_id, key: text, .. } = client.recv().await else { panic!() };
    assert_eq!(peer_id, key.keypair.public().to_peer_id().to_base58());
    assert_eq!(text, key.text);
    daemon.stop().await;
}

#[tokio::test]
async fn key_at_launch_starts_the_node() {
    let key = NodeKey::generate();
    let daemon = Daemon::with_key(key.clone()).await;
    let mut client = Client::connect(&daemon).await;
    assert!(matches!(client.recv().await, ServerMsg::Hello { started: true, .. }));
    let ServerMsg::Identify { peer_id, .. } = client.recv().await else { panic!() };
    assert_eq!(peer_id, key.keypair.public().to_peer_id().to_base58());
    daemon.stop().await;
}

/// Two daemons; A's client listens, B's client connects with A's `/addrs/` string.
async fn two_daemons(protocol: &str, frames: bool) -> (Daemon, Daemon, Client, Client, Identity) {
    let a = Daemon::local().await;
    let b = Daemon::local().await;
    let (mut ca, ia) = Client::started(&a).await;
    let (cb, _) = Client::started(&b).await;
    ca.listen(protocol, frames).await;
    (a, b, ca, cb, ia)
}

#[tokio::test]
async fn framed_conversation_across_daemons_is_byte_exact() {
    let (a, b, mut ca, mut cb, ia) = two_daemons("/test/framed/1", true).await;
    let ib = cb.open(&ia.connect_string(), "/test/framed/1", true).await;
    let (ia_conn, remote) = ca.accepted().await;
    assert_ne!(remote, ia.peer_id.to_base58());

    // Frames of many sizes, including empty and the 1 MiB limit, each one Data message.
    let sizes = [0usize, 1, 7, 1000, 65_536, 65_537, 300_000, 1 << 20, 123, 4096];
    let frames: Vec<Vec<u8>> =
        sizes.iter().enumerate().map(|(i, &n)| pattern(n, i as u8)).collect();
    let send = async {
        for f in &frames {
            cb.data(ib, f).await;
        }
    };
    let receive = async {
        let mut got = Vec::new();
        for _ in &frames {
            got.push(ca.read_message(ia_conn).await.to_vec());
        }
        got
    };
    let ((), got) = tokio::join!(send, receive);
    assert_eq!(got, frames);

    // And back, several MiB in 64 KiB frames.
    let back: Vec<Vec<u8>> = (0..64).map(|i| pattern(65_536, i)).collect();
    let send = async {
        for f in &back {
            ca.data(ia_conn, f).await;
        }
    };
    let receive = async {
        let mut got = Vec::new();
        for _ in &back {
            got.push(cb.read_message(ib).await.to_vec());
        }
        got
    };
    let ((), got) = tokio::join!(send, receive);
    assert_eq!(got, back);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn raw_stream_across_daemons_carries_mebibytes_both_ways() {
    let (a, b, mut ca, mut cb, ia) = two_daemons("/test/raw/1", false).await;
    let ib = cb.open(&ia.connect_string(), "/test/raw/1", false).await;
    let (ia_conn, _) = ca.accepted().await;
    let there = pattern(3 << 20, 1);
    let back = pattern(2 << 20, 2);
    let send = async {
        for chunk in there.chunks(50_000) {
            cb.data(ib, chunk).await;
        }
    };
    let ((), got) = tokio::join!(send, ca.read_bytes(ia_conn, there.len()));
    assert!(got == there, "raw bytes A<-B differ");
    let send = async {
        for chunk in back.chunks(70_000) {
            ca.data(ia_conn, chunk).await;
        }
    };
    let ((), got) = tokio::join!(send, cb.read_bytes(ib, back.len()));
    assert!(got == back, "raw bytes A->B differ");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn connect_by_plain_peer_id_to_a_known_peer() {
    let (a, b, mut ca, mut cb, ia) = two_daemons("/test/plain/1", true).await;
    // Unknown peer, nothing known: a refusal saying what to do.
    let stranger = libp2p::PeerId::random().to_base58();
    match cb.connect_to(&stranger, "/test/plain/1", true).await {
        ServerMsg::PeerConnectionRefused { peer_id, error, .. } => {
            assert_eq!(peer_id, stranger);
            assert!(error.contains("no address known"), "{error}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    let first = cb.open(&ia.connect_string(), "/test/plain/1", true).await;
    ca.accepted().await;
    let second = cb.open(&ia.peer_id.to_base58(), "/test/plain/1", true).await;
    assert_ne!(first, second);
    let (conn, _) = ca.accepted().await;
    cb.data(second, b"by peer id").await;
    assert_eq!(&ca.read_message(conn).await[..], b"by peer id");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn two_sessions_of_one_daemon_join_in_process() {
    let daemon = Daemon::local().await;
    let (mut host, id) = Client::started(&daemon).await;
    let (mut guest, _) = Client::started(&daemon).await;
    host.listen("/test/local/1", true).await;
    let g = guest.open(&id.peer_id.to_base58(), "/test/local/1", true).await;
    let (h, peer) = host.accepted().await;
    assert_eq!(peer, id.peer_id.to_base58());
    guest.data(g, b"hello host").await;
    assert_eq!(&host.read_message(h).await[..], b"hello host");
    host.data(h, b"hello guest").await;
    assert_eq!(&guest.read_message(g).await[..], b"hello guest");
    // The /addrs/ string of the daemon itself joins in-process too.
    let g2 = guest.open(&id.connect_string(), "/test/local/1", true).await;
    let (h2, _) = host.accepted().await;
    guest.send(ClientMsg::Close { id: g2 }).await;
    assert_eq!(guest.expect_closed(g2).await, "closed");
    assert_eq!(host.expect_closed(h2).await, "closed by remote");
    // Nobody listens on this one.
    match guest.connect_to(&id.peer_id.to_base58(), "/test/nobody", true).await {
        ServerMsg::PeerConnectionRefused { error, .. } => {
            assert!(error.contains("no session"), "{error}")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    daemon.stop().await;
}

#[tokio::test]
async fn stop_with_and_without_retain() {
    let (a, b, mut ca, mut cb, ia) = two_daemons("/test/stop/1", true).await;
    let connect = ia.connect_string();
    let kept = cb.open(&connect, "/test/stop/1", true).await;
    let (kept_a, _) = ca.accepted().await;

    // RETAIN=1: the listener goes, its stream stays.
    ca.send(ClientMsg::Stop { retain: true, protocol: "/test/stop/1".into() }).await;
    assert!(
        matches!(ca.recv().await, ServerMsg::ListenerClosed { protocol } if protocol == "/test/stop/1")
    );
    match cb.connect_to(&connect, "/test/stop/1", true).await {
        ServerMsg::PeerConnectionRefused { error, .. } => {
            assert!(error.contains("does not support"), "{error}")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    cb.data(kept, b"still here").await;
    assert_eq!(&ca.read_message(kept_a).await[..], b"still here");

    // RETAIN=0 (README layout, no RETAIN byte): the listener's streams close too.
    ca.listen("/test/stop/1", true).await;
    let dropped = cb.open(&connect, "/test/stop/1", true).await;
    let (dropped_a, _) = ca.accepted().await;
    let mut stop = vec![2u8];
    stop.extend_from_slice(b"/test/stop/1");
    ca.send_raw(stop).await;
    assert_eq!(ca.expect_closed(dropped_a).await, "listener stopped");
    assert!(matches!(ca.recv().await, ServerMsg::ListenerClosed { .. }));
    assert_eq!(cb.expect_closed(dropped).await, "closed by remote");
    // The RETAIN=1 stream of the first listener was not its (it was already stopped).
    cb.data(kept, b"and still").await;
    assert_eq!(&ca.read_message(kept_a).await[..], b"and still");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn close_and_remote_close() {
    let (a, b, mut ca, mut cb, ia) = two_daemons("/test/close/1", false).await;
    let ib = cb.open(&ia.connect_string(), "/test/close/1", false).await;
    let (ia_conn, _) = ca.accepted().await;
    cb.data(ib, b"last words").await;
    assert_eq!(ca.read_bytes(ia_conn, 10).await, b"last words");
    cb.send(ClientMsg::Close { id: ib }).await;
    // The Close is answered, as the original did (its pages wait for it).
    assert_eq!(cb.expect_closed(ib).await, "closed");
    assert_eq!(ca.expect_closed(ia_conn).await, "closed by remote");
    // No more Data for a closed id, on either side.
    cb.send(ClientMsg::Data { id: ib, data: Bytes::from_static(b"x") }).await;
    assert_eq!(cb.expect_closed(ib).await, "unknown connection");
    // A Close for a stream the remote closed (and that was said) gets nothing twice;
    // one for an id never given out is unknown.
    ca.send(ClientMsg::Close { id: ia_conn }).await;
    assert_eq!(ca.quiet_for(Duration::from_millis(300)).await, None);
    ca.send(ClientMsg::Close { id: 1000 }).await;
    assert_eq!(ca.expect_closed(1000).await, "unknown connection");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn remote_reset_and_websocket_gone() {
    let (a, b, mut ca, mut cb, ia) = two_daemons("/test/gone/1", true).await;
    let connect = ia.connect_string();
    let ib = cb.open(&connect, "/test/gone/1", true).await;
    ca.accepted().await;
    // A's browser leaves: its stream closes and its listener is free again.
    drop(ca);
    let reason = cb.expect_closed(ib).await;
    assert!(!reason.is_empty());
    let (mut again, _) = Client::started(&a).await;
    again.listen("/test/gone/1", true).await;
    let ib2 = cb.open(&connect, "/test/gone/1", true).await;
    let (ia2, _) = again.accepted().await;
    cb.data(ib2, b"new owner").await;
    assert_eq!(&again.read_message(ia2).await[..], b"new owner");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn frames_longer_than_the_limit_close_the_stream() {
    let mut config = Config::local();
    config.limits.max_frame = 1000;
    config.limits.max_message = 64 * 1024;
    let a = Daemon::start(config.clone()).await;
    let b = Daemon::start(config).await;
    let (mut ca, ia) = Client::started(&a).await;
    let (mut cb, _) = Client::started(&b).await;
    ca.listen("/test/limit/1", true).await;
    let ib = cb.open(&ia.connect_string(), "/test/limit/1", true).await;
    let (ia_conn, _) = ca.accepted().await;
    cb.data(ib, &[7; 1000]).await;
    assert_eq!(ca.read_message(ia_conn).await.len(), 1000);
    cb.data(ib, &[7; 1001]).await;
    let reason = cb.expect_closed(ib).await;
    assert!(reason.contains("1001") && reason.contains("limit of 1000"), "{reason}");
    assert_eq!(ca.expect_closed(ia_conn).await, "closed by remote");

    // A remote peer that sends a frame over the limit gets its stream closed too.
    let peer = TestPeer::new().await;
    let mut incoming = peer.control.clone().accept(StreamProtocol::new("/test/limit/2")).unwrap();
    let ic = cb.open(&peer.connect_string(), "/test/limit/2", true).await;
    let (_, mut stream) = within("accept", incoming.next()).await.unwrap();
    stream.write_all(&5000u32.to_be_bytes()).await.unwrap();
    stream.write_all(&[1; 5000]).await.unwrap();
    stream.flush().await.unwrap();
    let reason = cb.expect_closed(ic).await;
    assert!(reason.contains("5000") && reason.contains("limit of 1000"), "{reason}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn many_concurrent_streams_in_one_session() {
    const STREAMS: usize = 200;
    let (a, b, mut ca, mut cb, ia) = two_daemons("/test/many/1", true).await;
    let connect = ia.connect_string();
    // Fire all Connects at once, then collect the answers.
    for _ in 0..STREAMS {
        cb.send(ClientMsg::Connect {
            frames: true,
            relay: libp2p_websocket::protocol::Relay::Direct,
            protocol: "/test/many/1".into(),
            peer: connect.clone(),
        })
        .await;
    }
    let mut ids = Vec::new();
    while ids.len() < STREAMS {
        match cb.recv().await {
            ServerMsg::PeerConnection { id, .. } => ids.push(id),
            other => panic!("expected Peer Connection, got {other:?}"),
        }
    }
    let mut accepted = Vec::new();
    while accepted.len() < STREAMS {
        accepted.push(ca.accepted().await.0);
    }
    // Each stream carries its own message; A echoes the id it saw back on that stream.
    for (n, id) in ids.iter().enumerate() {
        cb.data(*id, format!("stream {n}").as_bytes()).await;
    }
    let mut seen = std::collections::HashMap::new();
    while seen.len() < STREAMS {
        match ca.recv().await {
            ServerMsg::Data { id, data } => {
                assert!(seen.insert(id, String::from_utf8(data.to_vec()).unwrap()).is_none());
            }
            other => panic!("expected Data, got {other:?}"),
        }
    }
    for (id, text) in &seen {
        ca.data(*id, format!("echo {text}").as_bytes()).await;
    }
    let mut echoed = std::collections::HashMap::new();
    while echoed.len() < STREAMS {
        match cb.recv().await {
            ServerMsg::Data { id, data } => {
                echoed.insert(id, String::from_utf8(data.to_vec()).unwrap());
            }
            other => panic!("expected Data, got {other:?}"),
        }
    }
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(echoed[id], format!("echo stream {n}"));
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn streams_per_peer_are_capped_without_resetting_the_connection() {
    let mut config = Config::local();
    config.node.max_streams_per_peer = 5;
    let a = Daemon::local().await;
    let b = Daemon::start(config).await;
    let (mut ca, ia) = Client::started(&a).await;
    let (mut cb, _) = Client::started(&b).await;
    ca.listen("/test/cap/1", true).await;
    let connect = ia.connect_string();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(cb.open(&connect, "/test/cap/1", true).await);
        ca.accepted().await;
    }
    match cb.connect_to(&connect, "/test/cap/1", true).await {
        ServerMsg::PeerConnectionRefused { error, .. } => {
            assert!(error.contains("too many streams") && error.contains("limit 5"), "{error}")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    // The five streams still work.
    for id in &ids {
        cb.data(*id, b"alive").await;
    }
    for _ in &ids {
        assert!(matches!(ca.recv().await, ServerMsg::Data { data, .. } if &data[..] == b"alive"));
    }
    // Closing one frees a place.
    cb.send(ClientMsg::Close { id: ids[0] }).await;
    assert_eq!(cb.expect_closed(ids[0]).await, "closed");
    ca.recv().await;
    let mut reopened = false;
    for _ in 0..50 {
        match cb.connect_to(&connect, "/test/cap/1", true).await {
            ServerMsg::PeerConnection { .. } => {
                reopened = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(reopened, "a freed place is usable again");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_stream_whose_remote_does_not_read_does_not_stall_the_others() {
    let (a, b, mut ca, mut cb, ia) = two_daemons("/test/slow/1", true).await;
    let peer = TestPeer::new().await;
    let mut incoming = peer.control.clone().accept(StreamProtocol::new("/test/slow/sink")).unwrap();
    let stuck = cb.open(&peer.connect_string(), "/test/slow/sink", false).await;
    // The remote accepts the stream and never reads it.
    let (_, _never_read) = within("accept", incoming.next()).await.unwrap();
    let chunk = vec![9u8; 64 * 1024];
    for _ in 0..24 {
        cb.data(stuck, &chunk).await; // 1.5 MiB: far past yamux's window
    }
    let fast = cb.open(&ia.connect_string(), "/test/slow/1", true).await;
    let (fast_a, _) = ca.accepted().await;
    for i in 0..20u8 {
        cb.data(fast, &[i; 100]).await;
        assert_eq!(ca.read_message(fast_a).await[..], [i; 100]);
        ca.data(fast_a, &[i; 50]).await;
        assert_eq!(cb.read_message(fast).await[..], [i; 50]);
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn quic_carries_streams_too() {
    let mut config = Config::local();
    config.node.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
    let a = Daemon::start(config).await;
    let b = Daemon::local().await;
    let (mut ca, ia) = Client::started(&a).await;
    assert!(ia.addresses.iter().all(|a| a.to_string().contains("/quic-v1")), "{:?}", ia.addresses);
    let (mut cb, _) = Client::started(&b).await;
    ca.listen("/test/quic/1", false).await;
    let ib = cb.open(&ia.connect_string(), "/test/quic/1", false).await;
    let (ia_conn, _) = ca.accepted().await;
    let bytes = pattern(1 << 20, 5);
    let send = async {
        for chunk in bytes.chunks(32_768) {
            cb.data(ib, chunk).await;
        }
    };
    let ((), got) = tokio::join!(send, ca.read_bytes(ia_conn, bytes.len()));
    assert!(got == bytes);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn inbound_streams_beyond_the_per_peer_cap_are_reset_alone() {
    let mut config = Config::local();
    config.node.max_streams_per_peer = 5;
    let daemon = Daemon::start(config).await;
    let (mut client, id) = Client::started(&daemon).await;
    client.listen("/test/inbound-cap/1", true).await;
    let addr = id.addresses[0].clone().with(libp2p::multiaddr::Protocol::P2p(id.peer_id));
    let peer = TestPeer::dialing(Some(addr)).await;
    let mut control = peer.control.clone();
    let protocol = StreamProtocol::new("/test/inbound-cap/1");
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams
            .push(within("open", control.open_stream(id.peer_id, protocol.clone())).await.unwrap());
        client.accepted().await;
    }
    // The sixth is reset by the daemon; the browser never hears of it.
    let mut sixth =
        within("open", control.open_stream(id.peer_id, protocol.clone())).await.unwrap();
    let mut buf = [0u8; 1];
    let read = within("sixth read", futures::AsyncReadExt::read(&mut sixth, &mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(client.quiet_for(Duration::from_millis(300)).await.is_none());
    // The five still work: the connection was not reset.
    for (n, stream) in streams.iter_mut().enumerate() {
        let frame = [n as u8; 3];
        stream.write_all(&3u32.to_be_bytes()).await.unwrap();
        stream.write_all(&frame).await.unwrap();
        stream.flush().await.unwrap();
        match client.recv().await {
            ServerMsg::Data { data, .. } => assert_eq!(&data[..], frame),
            other => panic!("expected Data, got {other:?}"),
        }
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_browser_that_stops_reading_slows_the_remote_and_loses_nothing() {
    const TOTAL: usize = 64 << 20;
    let daemon = Daemon::local().await;
    let (mut client, id) = Client::started(&daemon).await;
    client.listen("/test/backpressure/1", false).await;
    let addr = id.addresses[0].clone().with(libp2p::multiaddr::Protocol::P2p(id.peer_id));
    let peer = TestPeer::dialing(Some(addr)).await;
    let mut stream = within(
        "open",
        peer.control.clone().open_stream(id.peer_id, StreamProtocol::new("/test/backpressure/1")),
    )
    .await
    .unwrap();
    let data = pattern(TOTAL, 3);
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = written.clone();
    let sender = tokio::spawn(async move {
        for chunk in data.chunks(256 * 1024) {
            stream.write_all(chunk).await.unwrap();
            progress.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
        stream.close().await.unwrap();
        stream
    });
    // The browser reads nothing: the remote is held back. How far it gets first depends
    // on the kernel's socket buffers and yamux's window, so the test waits for its
    // progress to stop (three samples a second apart equal) instead of naming a count;
    // a daemon that buffered without bound would let all of it through.
    let stalled_at = within("the remote stalls", async {
        let mut samples = vec![usize::MAX; 3];
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            samples.remove(0);
            samples.push(written.load(std::sync::atomic::Ordering::Relaxed));
            if samples.iter().all(|s| *s == samples[0]) {
                return samples[0];
            }
        }
    })
    .await;
    eprintln!("remote stalled after {stalled_at} bytes");
    assert!(stalled_at < TOTAL, "the remote was not held back: all {TOTAL} bytes written");
    // Reading again, every byte arrives, in order.
    let (conn, _) = client.accepted().await;
    let got = client.read_bytes(conn, TOTAL).await;
    assert!(got == pattern(TOTAL, 3), "bytes differ");
    assert_eq!(client.expect_closed(conn).await, "closed by remote");
    within("sender", sender).await.unwrap();
    daemon.stop().await;
}

#[tokio::test]
async fn refusals_say_why() {
    let daemon = Daemon::local().await;
    let (mut first, _) = Client::started(&daemon).await;
    let (mut second, _) = Client::started(&daemon).await;
    first.listen("/test/taken/1", true).await;
    // Another session of the daemon has it.
    second.send(ClientMsg::Listen { frames: true, protocol: "/test/taken/1".into() }).await;
    assert!(
        matches!(second.recv().await, ServerMsg::ListenRefused { protocol } if protocol == "/test/taken/1")
    );
    // An address where nothing listens.
    let nobody = libp2p_websocket::protocol::ConnectTarget {
        peer: libp2p::PeerId::random(),
        addrs: vec!["/ip4/127.0.0.1/tcp/9".parse().unwrap()],
    };
    match second.connect_to(&nobody.to_connect_string(), "/test/x/1", true).await {
        ServerMsg::PeerConnectionRefused { error, .. } => {
            assert!(error.contains("unreachable") && error.contains("127.0.0.1/tcp/9"), "{error}")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    // An address that answers as another peer.
    let other = TestPeer::new().await;
    let impostor = libp2p_websocket::protocol::ConnectTarget {
        peer: libp2p::PeerId::random(),
        addrs: vec![other.addr.clone()],
    };
    match second.connect_to(&impostor.to_connect_string(), "/test/x/1", true).await {
        ServerMsg::PeerConnectionRefused { error, .. } => {
            assert!(error.contains("different peer"), "{error}")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    daemon.stop().await;
}

#[tokio::test]
async fn sessions_cannot_touch_each_others_streams() {
    let daemon = Daemon::local().await;
    let (mut host, id) = Client::started(&daemon).await;
    let (mut guest, _) = Client::started(&daemon).await;
    let (mut intruder, _) = Client::started(&daemon).await;
    host.listen("/test/isolated/1", true).await;
    let g = guest.open(&id.peer_id.to_base58(), "/test/isolated/1", true).await;
    let (h, _) = host.accepted().await;
    // The intruder names the others' ids: they are not its own.
    for target in [g, h] {
        intruder.send(ClientMsg::Data { id: target, data: Bytes::from_static(b"injected") }).await;
        assert_eq!(intruder.expect_closed(target).await, "unknown connection");
        intruder.send(ClientMsg::Close { id: target }).await;
        assert_eq!(intruder.expect_closed(target).await, "unknown connection");
    }
    // Stop on a protocol it does not listen on leaves the host's listener alone.
    intruder.send(ClientMsg::Stop { retain: false, protocol: "/test/isolated/1".into() }).await;
    assert!(matches!(intruder.recv().await, ServerMsg::ListenerClosed { .. }));
    guest.data(g, b"private").await;
    assert_eq!(&host.read_message(h).await[..], b"private");
    let g2 = guest.open(&id.peer_id.to_base58(), "/test/isolated/1", true).await;
    assert_ne!(g2, g);
    host.accepted().await;
    daemon.stop().await;
}

#[tokio::test]
async fn idle_raw_streams_do_not_starve_the_others() {
    // Each idle stream once held a whole chunk of the session's 4 MiB read budget:
    // past ~63 of them, the next stream of the session was never read.
    const STREAMS: usize = 100;
    let (a, b, mut ca, mut cb, ia) = two_daemons("/test/idle-raw/1", false).await;
    let mut ids = Vec::new();
    for _ in 0..STREAMS {
        ids.push(cb.open(&ia.connect_string(), "/test/idle-raw/1", false).await);
        ids.push(ca.accepted().await.0);
    }
    let (last_b, last_a) = (ids[2 * STREAMS - 2], ids[2 * STREAMS - 1]);
    ca.data(last_a, b"to the last one").await;
    assert_eq!(cb.read_bytes(last_b, 15).await, b"to the last one");
    cb.data(last_b, b"and back").await;
    assert_eq!(ca.read_bytes(last_a, 8).await, b"and back");
    a.stop().await;
    b.stop().await;
}
