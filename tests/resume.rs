//! The resume extension (PROTOCOL.md, *Extension: resume*): a session outlives its
//! WebSocket, nothing is lost, doubled or reordered across drops, a session not
//! resumed in time frees everything, and tokens work once, for their own origin only.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    resume::{Proxy, ResumeClient},
    *,
};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::StreamProtocol;
use libp2p_websocket::protocol::{ClientMsg, Relay, ServerMsg};
use tokio::sync::oneshot;

const BOTH_WAYS: &str = "/test/both-ways/1";
const TOTAL: usize = 64 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// Bytes no shift of which matches itself (a doubled or lost chunk shows).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A peer that, on each BOTH_WAYS stream, sends `noise(TOTAL, 3)` while it reads
/// TOTAL bytes, then closes; it reports whether what it read was `noise(TOTAL, 5)`.
async fn both_ways_peer() -> (TestPeer, tokio::sync::mpsc::Receiver<bool>) {
    let peer = TestPeer::new().await;
    let mut incoming = peer.control.clone().accept(StreamProtocol::new(BOTH_WAYS)).unwrap();
    let (report, reports) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Some((_, stream)) = incoming.next().await {
            let report = report.clone();
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.split();
                let send = async {
                    wr.write_all(&noise(TOTAL, 3)).await.unwrap();
                    wr.flush().await.unwrap();
                };
                let receive = async {
                    let mut got = vec![0u8; TOTAL];
                    rd.read_exact(&mut got).await.map(|()| got == noise(TOTAL, 5))
                };
                let ((), same) = futures::join!(send, receive);
                let _ = wr.close().await;
                let _ = report.send(same.unwrap_or(false)).await;
            });
        }
    });
    (peer, reports)
}

/// A peer that holds each stream on `protocol` and says when the stream ends.
async fn holding_peer(protocol: &'static str) -> (TestPeer, oneshot::Receiver<()>) {
    let peer = TestPeer::new().await;
    let mut incoming = peer.control.clone().accept(StreamProtocol::new(protocol)).unwrap();
    let (ended, ended_rx) = oneshot::channel();
    tokio::spawn(async move {
        if let Some((_, mut stream)) = incoming.next().await {
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink).await;
            let _ = ended.send(());
        }
    });
    (peer, ended_rx)
}

fn window(answer: &str, name: &str) -> usize {
    let prefix = format!("{name}=");
    answer.split(' ').find_map(|t| t.strip_prefix(prefix.as_str())).unwrap().parse().unwrap()
}

async fn open(c: &mut ResumeClient, peer: &TestPeer, protocol: &str) -> u64 {
    let peer = peer.connect_string();
    let (frames, relay, protocol) = (false, Relay::Direct, protocol.to_string());
    c.send(ClientMsg::Connect { frames, relay, protocol, peer }).await;
    match c.next().await {
        ServerMsg::PeerConnection { id, .. } => id,
        other => panic!("expected Peer Connection, got {other:?}"),
    }
}

/// Resumes, retrying while the daemon has not yet seen the old WebSocket go (it then
/// takes the new one at once: a retry is only for a resume that raced the cut).
async fn resume(c: &mut ResumeClient) {
    c.resume().await.unwrap_or_else(|refusal| panic!("resume refused: {refusal}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_arrive_once_and_in_order_across_three_drops() {
    let daemon = Daemon::local().await;
    let proxy = Proxy::to(daemon.addr).await;
    let (peer, mut reports) = both_ways_peer().await;
    let mut c = ResumeClient::new(&proxy.url(), None, "credit resume").await;
    let (stream_window, mut session_left) =
        (window(&c.answer, "stream-window"), window(&c.answer, "session-window"));
    let id = open(&mut c, &peer, BOTH_WAYS).await;
    let (out, expected) = (noise(TOTAL, 5), noise(TOTAL, 3));
    let (mut sent, mut got, mut left) = (0, 0, stream_window);
    let mut cuts = vec![48, 32, 16];
    let mut closed = None;
    while got < TOTAL || sent < TOTAL || closed.is_none() {
        while sent < TOTAL && left.min(session_left) >= CHUNK.min(TOTAL - sent) {
            let end = (sent + CHUNK).min(TOTAL);
            let data = Bytes::copy_from_slice(&out[sent..end]);
            c.send(ClientMsg::Data { id, data }).await;
            (left, session_left) = (left - (end - sent), session_left - (end - sent));
            sent = end;
        }
        if cuts.last().is_some_and(|&mib| got >= mib << 20) {
            cuts.pop();
            proxy.cut();
        }
        let Some(msg) = c.try_next().await else {
            resume(&mut c).await;
            continue;
        };
        match msg {
            ServerMsg::Data { id: i, data } if i == id => {
                assert!(
                    data[..] == expected[got..got + data.len()],
                    "Data at {got} is not the next bytes"
                );
                got += data.len();
                let bytes = u32::try_from(data.len()).unwrap();
                c.send(ClientMsg::Credit { id, bytes }).await;
            }
            ServerMsg::Credit { id: i, bytes } => {
                session_left += bytes as usize;
                if i == id {
                    left += bytes as usize;
                    assert!(left <= stream_window, "credited past the window: given back twice");
                }
            }
            ServerMsg::ConnectionClosed { id: i, reason } if i == id => {
                assert_eq!(got, TOTAL, "closed early: {reason}");
                closed = Some(reason);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(cuts.is_empty(), "not every drop happened");
    assert_eq!(c.resumes, 3);
    let same = within("the peer's verdict", reports.recv()).await.unwrap();
    assert!(same, "the peer did not read exactly the 64 MiB sent, once, in order");
    assert_eq!(closed.as_deref(), Some("closed by remote"));
    daemon.stop().await;
}

fn grace(secs: u64) -> libp2p_websocket::Config {
    let mut config = libp2p_websocket::Config::local();
    config.limits.resume_grace = Duration::from_secs(secs);
    config
}

#[tokio::test]
async fn a_session_keeps_its_stream_through_a_drop_and_frees_it_when_not_resumed_in_time() {
    const HELD: &str = "/test/held/1";
    let daemon = Daemon::start(grace(1)).await;
    let proxy = Proxy::to(daemon.addr).await;
    let (peer, mut ended) = holding_peer(HELD).await;
    let mut c = ResumeClient::new(&proxy.url(), None, "resume").await;
    assert!(c.answer.starts_with("resume token="), "{}", c.answer);
    assert!(c.answer.ends_with(" grace=1"), "{}", c.answer);
    let id = open(&mut c, &peer, HELD).await;

    // A drop and a resume within the grace period: the stream goes on.
    proxy.cut();
    assert!(c.try_next().await.is_none());
    resume(&mut c).await;
    c.send(ClientMsg::Data { id, data: Bytes::from_static(b"still here") }).await;
    assert!(c
        .try_next_within(Duration::from_millis(300))
        .await
        .is_none_or(|m| !matches!(m, ServerMsg::ConnectionClosed { .. })));
    assert!(ended.try_recv().is_err(), "the remote saw its stream end across a resumed drop");

    // A drop past the grace period: everything is freed, the remote sees its stream end.
    proxy.cut();
    within("the remote sees its stream end", &mut ended).await.unwrap();
    let status = status_until(daemon.addr, |s| s["sessions"] == 0 && s["streams"] == 0).await;
    assert_eq!(status["detached"], 0);
    let refusal = c.resume().await.unwrap_err();
    assert_eq!(refusal, "no session to resume with that token");
    daemon.stop().await;
}

#[tokio::test]
async fn a_forged_a_used_or_a_foreign_token_is_refused_with_a_fresh_session() {
    let (a, b) = ("http://a.example", "http://b.example");
    let mut config = libp2p_websocket::Config::local();
    config.allow_origins = vec![a.into(), b.into()];
    let daemon = Daemon::start(config).await;
    let mut c = ResumeClient::new(&daemon.url(), Some(a), "resume").await;
    c.send(ClientMsg::Listen { frames: false, protocol: "/test/kept/1".into() }).await;
    assert!(matches!(c.next().await, ServerMsg::Listening { .. }));

    // Forged: a token of the right shape that was never given.
    let forged = format!("{}?resume={}&received=0", daemon.url(), "A".repeat(43));
    let mut stranger = ResumeClient::new(&daemon.url(), Some(a), "resume").await;
    assert_eq!(
        stranger.resume_at(&forged).await.unwrap_err(),
        "no session to resume with that token"
    );

    // Foreign: the right token from another origin is refused and not spent.
    let url = format!("{}?resume={}&received={}", daemon.url(), c.token, c.received);
    let mut foreign = ResumeClient::new(&daemon.url(), Some(b), "resume").await;
    assert_eq!(foreign.resume_at(&url).await.unwrap_err(), "no session to resume with that token");

    // The page itself resumes with it (its old WebSocket still open: it is dropped).
    let used = c.token.clone();
    c.resume().await.unwrap();
    assert_ne!(c.token, used, "each resume gives a new token");
    c.send(ClientMsg::Listen { frames: false, protocol: "/test/kept/1".into() }).await;
    let again = c.next().await;
    assert!(matches!(again, ServerMsg::ListenRefused { .. }), "{again:?}: the listener is kept");

    // Used: the old token works no more.
    let url = format!("{}?resume={used}&received=0", daemon.url());
    assert_eq!(stranger.resume_at(&url).await.unwrap_err(), "no session to resume with that token");
    daemon.stop().await;
}

#[tokio::test]
async fn a_reloaded_page_takes_its_listeners_back_and_its_streams_end() {
    const HELD: &str = "/test/held/2";
    let daemon = Daemon::local().await;
    let (peer, mut ended) = holding_peer(HELD).await;
    let mut c = ResumeClient::new(&daemon.url(), None, "resume pubsub").await;
    c.send(ClientMsg::Listen { frames: true, protocol: "/test/game/1".into() }).await;
    assert!(matches!(c.next().await, ServerMsg::Listening { .. }));
    c.send(ClientMsg::Subscribe { topic: "t".into() }).await;
    assert!(matches!(c.next().await, ServerMsg::Subscribed { .. }));
    open(&mut c, &peer, HELD).await;
    c.close().await;

    // A new page of the same session: no `received`.
    let url = format!("{}?resume={}", daemon.url(), c.token);
    let mut page = ResumeClient::new(&daemon.url(), None, "resume").await;
    page.received = 0;
    page.resume_at(&url).await.unwrap();
    assert!(matches!(page.next().await, ServerMsg::Identify { .. }));
    match page.next().await {
        ServerMsg::Listening { protocol } => assert_eq!(protocol, "/test/game/1"),
        other => panic!("expected Listening, got {other:?}"),
    }
    within("the old page's stream ends", &mut ended).await.unwrap();
    // Its topics are left: the new page knows nothing of them.
    let (mut publisher, _) = common::topics::pubsub_session(&daemon).await;
    common::topics::publish(&mut publisher, "t", b"to nobody").await;
    assert!(page.try_next_within(Duration::from_millis(300)).await.is_none());
    daemon.stop().await;
}

#[tokio::test]
async fn sessions_without_the_extension_end_with_their_websocket_and_ack_is_refused() {
    let daemon = Daemon::local().await;
    let (mut c, _) = Client::started(&daemon).await;
    c.send(ClientMsg::Ack { count: 1 }).await;
    match c.recv().await {
        ServerMsg::ProtocolError { msg } => assert_eq!(msg, "Ack needs the resume extension"),
        other => panic!("expected Protocol Error, got {other:?}"),
    }
    drop(c);
    status_until(daemon.addr, |s| s["sessions"] == 0).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_token_stays_good_until_the_page_has_spoken_on_the_websocket_it_resumed() {
    let daemon = Daemon::local().await;
    let mut c = ResumeClient::new(&daemon.url(), None, "resume").await;
    let first = c.token.clone();
    // A resume whose WebSocket is lost before the page reads Resumed.
    let url = format!("{}?resume={first}&received={}", daemon.url(), c.received);
    drop(common::resume::open(&url, None).await);
    // The page never got the new token: the one it has still works...
    c.resume().await.expect("the token whose Resumed was lost still works");
    assert_ne!(c.token, first);
    // ...until the page speaks on the new WebSocket.
    c.send(ClientMsg::Listen { frames: false, protocol: "/test/spoke/1".into() }).await;
    assert!(matches!(c.next().await, ServerMsg::Listening { .. }));
    let url = format!("{}?resume={first}&received=0", daemon.url());
    let mut stranger = ResumeClient::new(&daemon.url(), None, "resume").await;
    assert_eq!(stranger.resume_at(&url).await.unwrap_err(), "no session to resume with that token");
    // The current one still works.
    c.resume().await.unwrap();
    daemon.stop().await;
}

#[tokio::test]
async fn what_happens_while_detached_is_told_after_the_resume() {
    const HELD: &str = "/test/held/3";
    const GAME: &str = "/test/game/3";
    let daemon = Daemon::local().await;
    let proxy = Proxy::to(daemon.addr).await;
    let mut c = ResumeClient::new(&proxy.url(), None, "resume").await;
    c.send(ClientMsg::Listen { frames: false, protocol: GAME.into() }).await;
    assert!(matches!(c.next().await, ServerMsg::Listening { .. }));
    // A stream whose remote will end it while the page is away.
    let remote = TestPeer::new().await;
    let mut incoming = remote.control.clone().accept(StreamProtocol::new(HELD)).unwrap();
    let id = open(&mut c, &remote, HELD).await;
    let (_, mut held) = within("the remote takes the stream", incoming.next()).await.unwrap();

    proxy.cut();
    assert!(c.try_next().await.is_none());
    status_until(daemon.addr, |s| s["detached"] == 1).await;
    // Meanwhile: the remote sends and ends its stream, and opens one to the listener.
    held.write_all(b"sent while away").await.unwrap();
    held.close().await.unwrap();
    drop(held);
    let mut joined = within(
        "a stream to the page's listener",
        remote.control.clone().open_stream(c.identity.peer_id, StreamProtocol::new(GAME)),
    )
    .await
    .unwrap();
    joined.write_all(b"hello from a new player").await.unwrap();
    joined.flush().await.unwrap();

    resume(&mut c).await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match c.next().await {
            ServerMsg::Data { id: i, data } => {
                seen.push(format!("data {i} {}", String::from_utf8_lossy(&data)))
            }
            ServerMsg::ConnectionClosed { id: i, reason } => {
                seen.push(format!("closed {i} {reason}"))
            }
            ServerMsg::ListenerConnection { id: i, protocol, .. } => {
                seen.push(format!("incoming {i} {protocol}"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // In order on each stream (the two streams' messages may interleave).
    let next = id + 1;
    let of = |n: u64| -> Vec<&String> {
        seen.iter().filter(|s| s.split(' ').nth(1) == Some(&n.to_string())).collect()
    };
    assert_eq!(
        of(id),
        [&format!("data {id} sent while away"), &format!("closed {id} closed by remote")]
    );
    assert_eq!(
        of(next),
        [&format!("incoming {next} {GAME}"), &format!("data {next} hello from a new player")]
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_page_that_closes_with_code_1000_ends_its_session_at_once() {
    const HELD: &str = "/test/held/4";
    let daemon = Daemon::local().await;
    let (peer, mut ended) = holding_peer(HELD).await;
    let mut c = ResumeClient::new(&daemon.url(), None, "resume").await;
    open(&mut c, &peer, HELD).await;
    c.close_done().await;
    within("the remote sees its stream end", &mut ended).await.unwrap();
    let status = status_until(daemon.addr, |s| s["sessions"] == 0).await;
    assert_eq!(status["detached"], 0);
    assert_eq!(c.resume().await.unwrap_err(), "no session to resume with that token");
    daemon.stop().await;
}

#[tokio::test]
async fn topic_messages_published_while_detached_arrive_after_the_resume() {
    const TOPIC: &str = "gem-rush/state";
    let daemon = Daemon::with_key(libp2p_websocket::node::NodeKey::generate()).await;
    let proxy = Proxy::to(daemon.addr).await;
    let mut c = ResumeClient::new(&proxy.url(), None, "resume pubsub").await;
    c.send(ClientMsg::Subscribe { topic: TOPIC.into() }).await;
    assert!(matches!(c.next().await, ServerMsg::Subscribed { .. }));
    let (mut publisher, _) = common::topics::pubsub_session(&daemon).await;

    proxy.cut();
    assert!(c.try_next().await.is_none());
    status_until(daemon.addr, |s| s["detached"] == 1).await;
    for n in 0..5u8 {
        common::topics::publish(&mut publisher, TOPIC, &[n]).await;
    }
    // The publisher's session has handled its Publishes once this round trip is back.
    publisher.send(ClientMsg::Subscribe { topic: "sync".into() }).await;
    assert!(matches!(publisher.recv().await, ServerMsg::Subscribed { .. }));

    resume(&mut c).await;
    for n in 0..5u8 {
        match c.next().await {
            ServerMsg::TopicMessage { topic, data, .. } => {
                assert_eq!((topic.as_str(), &data[..]), (TOPIC, &[n][..]))
            }
            other => panic!("expected Message {n}, got {other:?}"),
        }
    }
    daemon.stop().await;
}
