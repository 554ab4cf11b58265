//! Flow control on the data path: deep pipelines, stalled remotes, stalled frames.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, SinkExt as _, StreamExt as _};
use libp2p::{multiaddr::Protocol, StreamProtocol};
use libp2p_websocket::protocol::{ClientMsg, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

const ECHO: &str = "/test/echo/1";

/// A plain rust-libp2p peer that echoes every stream on ECHO as it reads it: it reads
/// no more while its own writes wait (ordinary backpressure).
async fn echo_peer() -> TestPeer {
    let peer = TestPeer::new().await;
    let mut incoming = peer.control.clone().accept(StreamProtocol::new(ECHO)).unwrap();
    tokio::spawn(async move {
        while let Some((_, stream)) = incoming.next().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.split();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if wr.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = wr.close().await;
            });
        }
    });
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_pipeline_through_an_echo_peer_completes() {
    let daemon = Daemon::local().await;
    let (mut client, _) = Client::started(&daemon).await;
    let echo = echo_peer().await;
    let id = open_echo(&mut client, &echo).await;
    for window in [256 << 10, 8 << 20] {
        let took = within("pipeline", pipeline(&mut client, id, 32 << 20, window)).await;
        eprintln!(
            "32 MiB echoed with {} KiB in flight: {:.2} s ({:.1} MiB/s)",
            window >> 10,
            took.as_secs_f64(),
            32.0 / took.as_secs_f64()
        );
    }
    daemon.stop().await;
}

/// Opens a raw stream from `client` to `peer`'s ECHO protocol.
async fn open_echo(client: &mut Client, peer: &TestPeer) -> u64 {
    let target = libp2p_websocket::protocol::ConnectTarget {
        peer: peer.peer_id,
        addrs: vec![peer.addr.clone()],
    };
    client.open(&target.to_connect_string(), ECHO, false).await
}

/// A peer opens 4 streams to a framed listener of `client` (which listens on
/// `protocol` as the node `id`) and on each declares a 1 MiB frame, sends one byte of
/// it, then nothing. Returns the peer's streams (kept open) and the session's ids.
pub async fn stall_inside_frames(
    client: &mut Client,
    id: &Identity,
    protocol: &'static str,
) -> (TestPeer, Vec<libp2p::Stream>, Vec<u64>) {
    let staller =
        TestPeer::dialing(Some(id.addresses[0].clone().with(Protocol::P2p(id.peer_id)))).await;
    let mut stalled = Vec::new();
    let mut stalled_ids = Vec::new();
    for _ in 0..4 {
        let mut stream = within(
            "open",
            staller.control.clone().open_stream(id.peer_id, StreamProtocol::new(protocol)),
        )
        .await
        .unwrap();
        within("declare a frame", async {
            stream.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
            stream.write_all(&[1]).await.unwrap();
            stream.flush().await.unwrap();
        })
        .await;
        stalled_ids.push(client.accepted().await.0);
        stalled.push(stream);
    }
    (staller, stalled, stalled_ids)
}

#[tokio::test]
async fn a_remote_stalled_inside_big_frames_delays_no_other_stream() {
    // A stall timeout no test step reaches: what goes on, goes on while the frames stall.
    let mut config = libp2p_websocket::Config::local();
    config.limits.stream_stall_timeout = Duration::from_secs(120);
    let daemon = Daemon::start(config).await;
    let (mut client, id) = Client::started(&daemon).await;
    client.listen("/test/stall-in/1", true).await;
    let echo = echo_peer().await;
    let echo_id = open_echo(&mut client, &echo).await;
    let (_staller, _stalled, _ids) =
        stall_inside_frames(&mut client, &id, "/test/stall-in/1").await;
    // Round trips on a stream to another peer, and whole frames on a fifth stream of
    // the same framed listener, all while the four frames stall (any Connection Closed
    // would fail the reads below).
    for n in 0..20u8 {
        client.data(echo_id, &[n; 1000]).await;
        assert_eq!(client.read_bytes(echo_id, 1000).await, [n; 1000]);
    }
    let sender =
        TestPeer::dialing(Some(id.addresses[0].clone().with(Protocol::P2p(id.peer_id)))).await;
    let mut stream = within(
        "open",
        sender.control.clone().open_stream(id.peer_id, StreamProtocol::new("/test/stall-in/1")),
    )
    .await
    .unwrap();
    let (fifth, _) = client.accepted().await;
    for n in 0..4u8 {
        let frame = pattern(512 * 1024, n);
        within("send a frame", async {
            stream.write_all(&(frame.len() as u32).to_be_bytes()).await.unwrap();
            stream.write_all(&frame).await.unwrap();
            stream.flush().await.unwrap();
        })
        .await;
        assert_eq!(&client.read_message(fifth).await[..], &frame[..]);
    }
    daemon.stop().await;
}

#[tokio::test]
async fn frames_stalled_past_the_stall_timeout_are_closed_saying_why() {
    let mut config = libp2p_websocket::Config::local();
    config.limits.stream_stall_timeout = Duration::from_secs(2);
    let daemon = Daemon::start(config).await;
    let (mut client, id) = Client::started(&daemon).await;
    client.listen("/test/stall-in/1", true).await;
    let (_staller, _stalled, ids) = stall_inside_frames(&mut client, &id, "/test/stall-in/1").await;
    let mut closed = Vec::new();
    while closed.len() < 4 {
        let (id, reason) = match client.recv().await {
            ServerMsg::ConnectionClosed { id, reason } => (id, reason),
            other => panic!("unexpected {other:?}"),
        };
        assert!(ids.contains(&id), "{id} closed: {reason}");
        assert!(reason.contains("sent nothing inside a frame for 2 s"), "{reason}");
        closed.push(id);
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_accepts_nothing_is_closed_and_the_session_goes_on() {
    let mut config = libp2p_websocket::Config::local();
    config.limits.stream_stall_timeout = Duration::from_secs(2);
    let daemon = Daemon::start(config).await;
    let (client, _) = Client::started(&daemon).await;
    let mut client = client;
    let echo = echo_peer().await;
    // The same peer also serves a protocol whose streams it never reads.
    let mut sink = echo.control.clone().accept(StreamProtocol::new("/test/never-reads/1")).unwrap();
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Some((_, stream)) = sink.next().await {
            streams.push(stream); // held open, never read
        }
    });
    let echo_id = open_echo(&mut client, &echo).await;
    let target = libp2p_websocket::protocol::ConnectTarget {
        peer: echo.peer_id,
        addrs: vec![echo.addr.clone()],
    };
    let stalled = client.open(&target.to_connect_string(), "/test/never-reads/1", false).await;
    // 64 MiB for the stream that is never read, sent without waiting, then a round
    // trip on the echo stream.
    let (mut ws_tx, mut ws_rx) = client.ws.split();
    let sender = tokio::spawn(async move {
        let chunk = Bytes::from(vec![9u8; 64 * 1024]);
        for _ in 0..1024 {
            let msg = ClientMsg::Data { id: stalled, data: chunk.clone() };
            if ws_tx.send(Message::Binary(msg.encode())).await.is_err() {
                return ws_tx;
            }
        }
        let msg = ClientMsg::Data { id: echo_id, data: Bytes::from_static(b"still here") };
        ws_tx.send(Message::Binary(msg.encode())).await.unwrap();
        ws_tx
    });
    // The stalled stream is closed, saying why; then the echo comes back.
    let mut closed = None;
    let mut echoed = Vec::new();
    within("the stalled stream closed and the echo back", async {
        while closed.is_none() || echoed.len() < 10 {
            let Some(Ok(Message::Binary(bytes))) = ws_rx.next().await else { continue };
            match ServerMsg::decode(bytes).unwrap() {
                // The first says why; Data the browser had sent on meanwhile is answered
                // as for any closed stream.
                ServerMsg::ConnectionClosed { id, reason } if id == stalled => {
                    if closed.is_none() {
                        closed = Some(reason);
                    } else {
                        assert_eq!(reason, "unknown connection");
                    }
                }
                ServerMsg::Data { id, data } if id == echo_id => echoed.extend_from_slice(&data),
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let reason = closed.unwrap();
    assert!(reason.contains("accepted nothing for 2 s"), "{reason}");
    assert_eq!(echoed, b"still here");
    let _ = within("sender", sender).await.unwrap();
    held.abort();
    daemon.stop().await;
}
