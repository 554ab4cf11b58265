//! What a daemon left running meets: shutdown with live streams, silent browsers,
//! oversized messages, too many sessions, connection limits, idle connections.

mod common;

use std::time::Duration;

use common::*;
use libp2p_websocket::{protocol::ServerMsg, Config};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn shutdown_closes_each_stream_then_the_websocket() {
    let a = Daemon::local().await;
    let b = Daemon::local().await;
    let (mut ca, ia) = Client::started(&a).await;
    let (mut cb, _) = Client::started(&b).await;
    ca.listen("/test/shutdown/1", true).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(cb.open(&ia.connect_string(), "/test/shutdown/1", true).await);
        ca.accepted().await;
    }
    let stopping = tokio::spawn(a.stop());
    // A's browser: one Connection Closed per stream, then the close frame.
    let mut closed = Vec::new();
    for _ in 0..3 {
        match ca.recv().await {
            ServerMsg::ConnectionClosed { id, reason } => {
                assert_eq!(reason, "daemon shutting down");
                closed.push(id);
            }
            other => panic!("expected Connection Closed, got {other:?}"),
        }
    }
    closed.sort_unstable();
    assert_eq!(closed, vec![0, 1, 2]);
    assert_eq!(ca.expect_close_frame().await, (1001, "daemon shutting down".into()));
    within("daemon A stops", stopping).await.unwrap();
    // B's browser hears of each stream's end from its remote.
    for _ in 0..3 {
        assert!(matches!(cb.recv().await, ServerMsg::ConnectionClosed { .. }));
    }
    b.stop().await;
}

#[tokio::test]
async fn a_browser_that_stops_answering_is_closed_and_freed() {
    let mut config = Config::local();
    // Margins for a loaded machine: a live browser answers within 2 s even then.
    config.limits.ping_interval = Duration::from_millis(250);
    config.limits.keepalive_timeout = Duration::from_secs(2);
    let daemon = Daemon::start(config).await;
    let (mut silent, _) = Client::started(&daemon).await;
    silent.listen("/test/keepalive/1", true).await;
    let (mut alive, _) = Client::started(&daemon).await;
    // `alive` keeps reading (and so answers pings); `silent` reads nothing for 4 s.
    let watch = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        while tokio::time::Instant::now() < deadline {
            assert!(alive.quiet_for(Duration::from_millis(100)).await.is_none());
        }
    };
    watch.await;
    // The silent one was closed, and its listener is free again.
    let mut frames = Vec::new();
    // (The daemon sends a close frame with the reason, but this client, answering the
    // queued pings first, may find the socket already closed: either way it ends.)
    loop {
        match silent.ws.next_message().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert!(frame.reason.contains("no answer to pings"), "{frame:?}");
                break;
            }
            Some(Ok(message)) => frames.push(message),
            Some(Err(_)) | None => break,
        }
    }
    assert!(frames.iter().all(|m| matches!(m, Message::Ping(_))), "{frames:?}");
    alive.listen("/test/keepalive/1", true).await;
    daemon.stop().await;
}

trait NextMessage {
    async fn next_message(
        &mut self,
    ) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>>;
}

impl NextMessage
    for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
{
    async fn next_message(
        &mut self,
    ) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
        use futures::StreamExt as _;
        within("next message", self.next()).await
    }
}

#[tokio::test]
async fn oversized_messages_and_too_many_sessions_get_a_close_reason() {
    let mut config = Config::local();
    config.limits.max_message = 1000;
    config.limits.max_sessions = 2;
    let daemon = Daemon::start(config).await;
    let (mut big, _) = Client::started(&daemon).await;
    big.send_raw(vec![4; 2000]).await;
    let (code, reason) = big.expect_close_frame().await;
    assert_eq!(code, 1009);
    assert!(reason.contains("limit of 1000 bytes"), "{reason}");

    let (_one, _) = Client::started(&daemon).await;
    let (_two, _) = Client::started(&daemon).await;
    let mut third = Client::connect(&daemon).await;
    let (code, reason) = third.expect_close_frame().await;
    assert_eq!(code, 1013);
    assert_eq!(reason, "too many sessions (limit 2)");
    daemon.stop().await;
}

#[tokio::test]
async fn connection_limits_refuse_with_a_reason() {
    let mut config = Config::local();
    config.node.max_connections = 1;
    let limited = Daemon::start(config).await;
    let a = Daemon::local().await;
    let c = Daemon::local().await;
    let (mut ca, ia) = Client::started(&a).await;
    let (mut cc, ic) = Client::started(&c).await;
    ca.listen("/test/limits/1", true).await;
    cc.listen("/test/limits/1", true).await;
    let (mut client, _) = Client::started(&limited).await;
    client.open(&ia.connect_string(), "/test/limits/1", true).await;
    match client.connect_to(&ic.connect_string(), "/test/limits/1", true).await {
        ServerMsg::PeerConnectionRefused { error, .. } => {
            assert!(error.contains("connection") && error.contains("limit"), "{error}")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    limited.stop().await;
    a.stop().await;
    c.stop().await;
}

#[tokio::test]
async fn a_connection_stays_while_a_stream_uses_it() {
    let mut config = Config::local();
    config.node.idle_timeout = Duration::from_millis(300);
    let a = Daemon::start(config.clone()).await;
    let b = Daemon::start(config).await;
    let (mut ca, ia) = Client::started(&a).await;
    let (mut cb, _) = Client::started(&b).await;
    ca.listen("/test/idle/1", true).await;
    let conn = cb.open(&ia.connect_string(), "/test/idle/1", true).await;
    let (conn_a, _) = ca.accepted().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cb.data(conn, b"still connected").await;
    assert_eq!(&ca.read_message(conn_a).await[..], b"still connected");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn status_counts_return_to_zero() {
    let a = Daemon::local().await;
    let b = Daemon::local().await;
    let idle = status(a.addr).await;
    assert_eq!((idle["sessions"].as_u64(), idle["streams"].as_u64()), (Some(0), Some(0)));
    assert!(idle["node"].is_null(), "not started yet");
    let (mut ca, ia) = Client::started(&a).await;
    let (mut cb, _) = Client::started(&b).await;
    ca.listen("/test/status/1", true).await;
    for _ in 0..3 {
        cb.open(&ia.connect_string(), "/test/status/1", true).await;
        ca.accepted().await;
    }
    let busy = status_until(a.addr, |s| s["streams"] == 3).await;
    assert_eq!(busy["sessions"], 1);
    assert_eq!(busy["listeners"], 1);
    assert_eq!(busy["node"]["connections"], 1);
    assert_eq!(busy["node"]["peer_id"], ia.peer_id.to_base58());
    // B's browser vanishes mid-conversation: everything of it, and A's side, goes.
    drop(cb);
    status_until(a.addr, |s| s["streams"] == 0).await;
    status_until(b.addr, |s| s["sessions"] == 0 && s["streams"] == 0).await;
    drop(ca);
    status_until(a.addr, |s| s["sessions"] == 0 && s["listeners"] == 0).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_daemon_over_its_memory_limit_takes_no_new_connections() {
    let mut config = Config::local();
    config.node.max_memory = 1; // any process is over this
    let limited = Daemon::start(config).await;
    let other = Daemon::local().await;
    let (mut co, io) = Client::started(&other).await;
    co.listen("/test/memory/1", true).await;
    let (mut client, _) = Client::started(&limited).await;
    match client.connect_to(&io.connect_string(), "/test/memory/1", true).await {
        ServerMsg::PeerConnectionRefused { error, .. } => {
            assert!(error.contains("connection denied") && error.contains("memory"), "{error}")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    limited.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn per_session_stream_and_listener_limits() {
    let mut config = Config::local();
    config.limits.max_streams_per_session = 3;
    config.limits.max_listeners_per_session = 2;
    let daemon = Daemon::start(config).await;
    let (mut host, id) = Client::started(&daemon).await;
    host.listen("/test/caps/1", true).await;
    host.listen("/test/caps/2", true).await;
    host.send(libp2p_websocket::protocol::ClientMsg::Listen {
        frames: true,
        protocol: "/test/caps/3".into(),
    })
    .await;
    assert!(
        matches!(host.recv().await, ServerMsg::ListenRefused { protocol } if protocol == "/test/caps/3")
    );
    let (mut guest, _) = Client::started(&daemon).await;
    let me = id.peer_id.to_base58();
    for _ in 0..3 {
        guest.open(&me, "/test/caps/1", true).await;
        host.accepted().await;
    }
    match guest.connect_to(&me, "/test/caps/1", true).await {
        ServerMsg::PeerConnectionRefused { error, .. } => {
            assert_eq!(error, "too many streams in this session (limit 3)")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    // The host is full too: a fourth incoming stream is refused without a word to it.
    let (mut third, _) = Client::started(&daemon).await;
    let opened = third.connect_to(&me, "/test/caps/2", true).await;
    assert!(matches!(opened, ServerMsg::PeerConnection { .. }), "{opened:?}");
    let ServerMsg::PeerConnection { id: stream, .. } = opened else { unreachable!() };
    assert_eq!(third.expect_closed(stream).await, "closed by remote");
    assert!(host.quiet_for(Duration::from_millis(200)).await.is_none());
    daemon.stop().await;
}
