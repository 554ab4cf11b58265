//! The credit extension (PROTOCOL.md, *Extension: credit*): negotiation, send credit
//! given back as bytes are written, receive credit that stops one stream's remote and
//! nothing else, overruns, and joins between two sessions of one daemon.

mod common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use common::{credit::CreditClient, *};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{multiaddr::Protocol, StreamProtocol};
use libp2p_websocket::protocol::{ClientMsg, ConnectTarget, ServerMsg};

const ECHO: &str = "/test/echo/1";
const SINK: &str = "/test/never-reads/1";

/// A plain rust-libp2p peer that echoes every stream on ECHO, and holds every stream on
/// SINK open without reading it.
async fn echo_peer() -> TestPeer {
    let peer = TestPeer::new().await;
    let mut echo = peer.control.clone().accept(StreamProtocol::new(ECHO)).unwrap();
    tokio::spawn(async move {
        while let Some((_, stream)) = echo.next().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.split();
                let _ = futures::io::copy(&mut rd, &mut wr).await;
                let _ = wr.close().await;
            });
        }
    });
    let mut sink = peer.control.clone().accept(StreamProtocol::new(SINK)).unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((_, stream)) = sink.next().await {
            held.push(stream);
        }
    });
    peer
}

fn target(peer: &TestPeer) -> String {
    ConnectTarget { peer: peer.peer_id, addrs: vec![peer.addr.clone()] }.to_connect_string()
}

fn small_frames() -> libp2p_websocket::Config {
    let mut config = libp2p_websocket::Config::local();
    config.limits.max_frame = 64 * 1024;
    config.limits.max_message = 64 * 1024 + 64;
    config
}

#[tokio::test]
async fn credit_is_offered_asked_for_and_answered() {
    let daemon = Daemon::local().await;
    let mut client = Client::connect(&daemon).await;
    match client.recv().await {
        ServerMsg::Hello { version, .. } => {
            let mut tokens = version.split(' ');
            assert!(tokens.next().unwrap().starts_with("libp2p-websocket/"), "{version}");
            let offered = ["credit", "presence", "reachability", "resume", "pubsub"];
            assert_eq!(tokens.collect::<Vec<_>>(), offered);
        }
        other => panic!("expected Hello, got {other:?}"),
    }
    // A receive window below a frame is raised to one; unknown names are ignored.
    client.send(ClientMsg::Extensions { names: "credit receive-window=100 warp".into() }).await;
    let frame = 1024 * 1024 + 4;
    let answer = format!(
        "credit stream-window={} session-window={} receive-window={frame}",
        2 * 1024 * 1024,
        32 * 1024 * 1024
    );
    assert_eq!(client.recv().await, ServerMsg::Extensions { names: answer.clone() });
    client.send(ClientMsg::Extensions { names: "presence".into() }).await;
    let names = format!("{answer} presence");
    assert_eq!(client.recv().await, ServerMsg::Extensions { names });

    // Asked once a stream is open: refused, and the session goes on without it.
    let (mut late, _) = Client::started(&daemon).await;
    let echo = echo_peer().await;
    let id = late.open(&target(&echo), ECHO, false).await;
    late.send(ClientMsg::Extensions { names: "credit".into() }).await;
    match late.recv().await {
        ServerMsg::ProtocolError { msg } => {
            assert!(msg.contains("before the session's first stream"), "{msg}")
        }
        other => panic!("expected Protocol Error, got {other:?}"),
    }
    late.data(id, b"no credit here").await;
    // Only the echo comes back: a session without the extension never sees a Credit.
    assert_eq!(late.read_bytes(id, 14).await, b"no credit here");
    assert_eq!(late.quiet_for(Duration::from_millis(300)).await, None);
    daemon.stop().await;
}

#[tokio::test]
async fn send_credit_comes_back_as_bytes_are_written_raw_and_framed() {
    let daemon = Daemon::local().await;
    let mut c = CreditClient::new(&daemon, None).await;
    let echo = echo_peer().await;
    let raw = c.open(&target(&echo), ECHO, false).await;
    let framed = c.open(&target(&echo), ECHO, true).await;
    for n in 0..3u8 {
        c.client.data(raw, &[n; 1000]).await;
    }
    c.client.data(framed, &[7; 100]).await;
    c.client.data(framed, &[]).await;
    // Raw Data costs its bytes; framed Data its bytes and the 4-byte length.
    let mut credited = HashMap::<u64, usize>::new();
    let mut raw_back = Vec::new();
    let mut frames_back = Vec::new();
    while credited.get(&raw) != Some(&3000)
        || credited.get(&framed) != Some(&108)
        || raw_back.len() < 3000
        || frames_back.len() < 2
    {
        match c.client.recv().await {
            ServerMsg::Credit { id, bytes } => *credited.entry(id).or_default() += bytes as usize,
            ServerMsg::Data { id, data } if id == raw => raw_back.extend_from_slice(&data),
            ServerMsg::Data { id, data } if id == framed => frames_back.push(data),
            other => panic!("unexpected {other:?}"),
        }
        assert!(credited.get(&raw).is_none_or(|&n| n <= 3000), "{credited:?}");
        assert!(credited.get(&framed).is_none_or(|&n| n <= 108), "{credited:?}");
    }
    let expected: Vec<u8> = (0..3u8).flat_map(|n| [n; 1000]).collect();
    assert_eq!(raw_back, expected);
    assert_eq!(frames_back, [Bytes::from(vec![7; 100]), Bytes::new()]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_reads_nothing_holds_only_its_own_stream() {
    // A short stall timeout: with credit it does not apply, and the stream stays.
    let mut config = libp2p_websocket::Config::local();
    config.limits.stream_stall_timeout = Duration::from_secs(1);
    let daemon = Daemon::start(config).await;
    let mut c = CreditClient::new(&daemon, None).await;
    let peer = echo_peer().await;
    let stalled = c.open(&target(&peer), SINK, false).await;
    let echo = c.open(&target(&peer), ECHO, false).await;
    // All the stalled stream's credit, sent at once; then 8 MiB through the echo.
    let window = c.stream_window;
    c.send(stalled, &vec![1; window]).await;
    let data = pattern(8 << 20, 3);
    for chunk in data.chunks(1 << 20) {
        c.round_trip(echo, chunk).await;
    }
    // Well past the stall timeout, the stalled stream is still open, holding at most
    // its window: the remote took some (its yamux window) and no more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Some(msg) = c.client.quiet_for(Duration::from_millis(200)).await {
        c.on(msg);
    }
    assert!(c.closed.is_empty(), "{:?}", c.closed);
    let stuck = c.stream_window - c.left[&stalled];
    assert!(stuck > 0 && stuck <= window, "{stuck} bytes held for the stalled stream");
    // What the remote did take (its yamux window, 256 KiB, less the protocol's
    // negotiation) came back, all of it, though the remote then stopped.
    let returned = window - stuck;
    assert!(returned >= 252 << 10, "only {returned} bytes of credit came back");
    c.round_trip(echo, b"still going").await;
    daemon.stop().await;
}

#[tokio::test]
async fn data_past_the_credit_closes_that_stream_only() {
    let daemon = Daemon::local().await;
    let mut c = CreditClient::new(&daemon, None).await;
    let peer = echo_peer().await;
    let stalled = c.open(&target(&peer), SINK, false).await;
    let echo = c.open(&target(&peer), ECHO, false).await;
    // The window, then as much again without waiting: the remote reads nothing, so at
    // most its yamux window can have come back meanwhile.
    let chunk = vec![5u8; 64 * 1024];
    for _ in 0..2 * c.stream_window / chunk.len() {
        c.client.data(stalled, &chunk).await;
    }
    let reason = loop {
        match c.client.recv().await {
            ServerMsg::ConnectionClosed { id, reason } if id == stalled => break reason,
            ServerMsg::Credit { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(reason.starts_with("Data of 65536 bytes overran its credit ("), "{reason}");
    // The Data sent after the overran one is answered as for any closed stream, and
    // its credit comes back.
    c.left.remove(&stalled);
    c.session_left = usize::MAX / 2;
    let mut extra = 0;
    while let Some(msg) = c.client.quiet_for(Duration::from_millis(300)).await {
        match msg {
            ServerMsg::ConnectionClosed { id, reason } if id == stalled => {
                assert_eq!(reason, "unknown connection");
                extra += 1;
            }
            other => c.on(other),
        }
    }
    assert!(extra > 0);
    c.round_trip(echo, b"the other stream goes on").await;
    daemon.stop().await;
}

/// Waits until `count` stops moving (three equal samples 300 ms apart); returns it.
async fn settled(count: &AtomicUsize) -> usize {
    within("the count settles", async {
        let mut samples = vec![count.load(Ordering::Acquire)];
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            samples.push(count.load(Ordering::Acquire));
            if let [.., a, b, c] = samples[..] {
                if a == b && b == c {
                    return c;
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_stops_consuming_one_stream_stops_its_remote_only() {
    const TOTAL: usize = 64 << 20;
    let daemon = Daemon::start(small_frames()).await;
    let mut c = CreditClient::new(&daemon, Some(64 * 1024 + 4)).await;
    assert_eq!(c.receive_window, 64 * 1024 + 4);
    let (id, peer) = (c.identity.peer_id, echo_peer().await);
    let echo = c.open(&target(&peer), ECHO, false).await;
    // The echo alone first, for the figure printed below (no timing is asserted).
    let sample = pattern(32 << 20, 2);
    let alone = c.pipeline(echo, &sample, 1 << 20).await;
    c.client.send(ClientMsg::Listen { frames: false, protocol: "/test/firehose/1".into() }).await;
    assert!(matches!(c.client.recv().await, ServerMsg::Listening { .. }));
    // A remote writes 64 MiB as fast as it is let, counting what it got written.
    let firehose =
        TestPeer::dialing(Some(c.identity.addresses[0].clone().with(Protocol::P2p(id)))).await;
    let written = Arc::new(AtomicUsize::new(0));
    let data = Arc::new(pattern(TOTAL, 9));
    let writer = {
        let (written, data) = (written.clone(), data.clone());
        let mut control = firehose.control.clone();
        tokio::spawn(async move {
            let protocol = StreamProtocol::new("/test/firehose/1");
            let mut stream = control.open_stream(id, protocol).await.unwrap();
            for chunk in data.chunks(64 * 1024) {
                stream.write_all(chunk).await.unwrap();
                written.fetch_add(chunk.len(), Ordering::AcqRel);
            }
            stream.close().await.unwrap();
        })
    };
    let hose = c.accepted().await;
    // The page consumes nothing of it: exactly its receive window arrives, the
    // remote's writes stop, and the echo stream goes on meanwhile.
    while c.received.get(&hose).map_or(0, Vec::len) < c.receive_window {
        c.next().await;
    }
    for n in 0..10u8 {
        c.round_trip(echo, &[n; 10_000]).await;
    }
    let beside = c.pipeline(echo, &sample, 1 << 20).await;
    let rate = |took: Duration| 32.0 / took.as_secs_f64();
    eprintln!(
        "32 MiB echoed beside a stream the page does not consume: {:.1} MiB/s; alone: {:.1} MiB/s",
        rate(beside),
        rate(alone)
    );
    let stopped_at = settled(&written).await;
    assert!(stopped_at < TOTAL, "the remote wrote everything");
    assert_eq!(c.received[&hose].len(), c.receive_window, "more than the credit was sent");
    eprintln!("the remote stopped after {} KiB", stopped_at >> 10);
    // Consuming again lets it all through, in order.
    let mut got = Vec::with_capacity(TOTAL);
    while got.len() < TOTAL {
        let len = c.received.get(&hose).map_or(0, Vec::len).max(1);
        got.extend(c.consume(hose, len).await);
    }
    assert!(got == *data, "the stream's bytes differ");
    within("the remote finishes", writer).await.unwrap();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_between_two_sessions_honour_both_credits() {
    const TOTAL: usize = 8 << 20;
    let daemon = Daemon::start(small_frames()).await;
    let mut host = CreditClient::new(&daemon, Some(64 * 1024 + 4)).await;
    host.client.send(ClientMsg::Listen { frames: false, protocol: "/test/join/1".into() }).await;
    assert!(matches!(host.client.recv().await, ServerMsg::Listening { .. }));
    let mut guest = CreditClient::new(&daemon, None).await;
    let own = host.identity.peer_id.to_base58();
    let to_host = guest.open(&own, "/test/join/1", false).await;
    let from_guest = host.accepted().await;
    // The guest sends within its credit; the host consumes nothing: the guest's
    // credit stops coming back once the host's window and the pipe between are full.
    let data = pattern(TOTAL, 4);
    let sending = {
        let data = data.clone();
        tokio::spawn(async move {
            guest.send(to_host, &data).await;
            guest
        })
    };
    while host.received.get(&from_guest).map_or(0, Vec::len) < host.receive_window {
        host.next().await;
    }
    assert_eq!(host.client.quiet_for(Duration::from_millis(500)).await, None);
    assert!(!sending.is_finished(), "the guest sent everything past the host's credit");
    // The host consumes: everything arrives, in order.
    let mut got = Vec::with_capacity(TOTAL);
    while got.len() < TOTAL {
        let len = host.received.get(&from_guest).map_or(0, Vec::len).max(1);
        got.extend(host.consume(from_guest, len).await);
    }
    assert!(got == data, "the stream's bytes differ");
    let _guest = within("the guest's sends", sending).await.unwrap();
    daemon.stop().await;
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_its_stream_and_its_credit_comes_back() {
    // The stream window (2 MiB) holds a frame over --max-frame (1 MiB): the frame is
    // refused, and what it cost the session window is given back.
    let daemon = Daemon::local().await;
    let mut c = CreditClient::new(&daemon, None).await;
    let peer = echo_peer().await;
    let echo = c.open(&target(&peer), ECHO, true).await;
    c.client.data(echo, &vec![1; (1 << 20) + 1]).await;
    let mut credited = 0;
    let reason = loop {
        match c.client.recv().await {
            ServerMsg::Credit { id, bytes } if id == echo => credited += bytes as usize,
            ServerMsg::ConnectionClosed { id, reason } if id == echo => break reason,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(reason.starts_with("frame of 1048577 bytes exceeds the limit"), "{reason}");
    assert_eq!(credited, (1 << 20) + 1 + 4);
    daemon.stop().await;
}
