//! Hostile pages and peers: what one session can send must not stall or exhaust the
//! daemon for the others (in-process daemons, real sockets on 127.0.0.1).

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt as _;
use libp2p::{identify, multiaddr::Protocol, swarm::SwarmEvent, Multiaddr, PeerId};
use libp2p_websocket::{
    protocol::{ascii85, text::MAX_ECHO, ClientMsg, Relay, ServerMsg},
    Config,
};

/// A Connect to `peer` with `relay`, answered by a refusal: its echoed PEERID and error.
async fn refused(client: &mut Client, peer: &str, relay: Relay) -> (String, String) {
    let connect =
        ClientMsg::Connect { frames: true, relay, protocol: "/test/x/1".into(), peer: peer.into() };
    client.send(connect).await;
    match client.recv().await {
        ServerMsg::PeerConnectionRefused { peer_id, error, .. } => (peer_id, error),
        other => panic!("expected Peer Connection Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_huge_peer_id_is_refused_at_once_and_nobody_waits_for_it() {
    let daemon = Daemon::local().await;
    let (mut attacker, _) = Client::started(&daemon).await;
    // 256 KiB of base58 (a quadratic decode: seconds to minutes of CPU), as PEERID, as
    // RELAY, and as the /p2p/ component of an address inside /addrs/.
    let huge = "z".repeat(256 * 1024);
    let in_addrs = {
        let json = serde_json::json!({
            "peerID": PeerId::random().to_base58(),
            "addrs": [format!("/ip4/127.0.0.1/tcp/1/p2p/{huge}")],
        });
        format!("/addrs/{}", ascii85::encode(json.to_string().as_bytes()))
    };
    let real = PeerId::random().to_base58();
    let attack = async {
        for _ in 0..2 {
            let (echoed, error) = refused(&mut attacker, &huge, Relay::Direct).await;
            assert!(error.contains("longer than any peer id"), "{error}");
            assert!(echoed.len() <= MAX_ECHO + 3 && huge.starts_with(&echoed[..64]));
            let (_, error) = refused(&mut attacker, &real, Relay::Via(huge.clone())).await;
            assert!(error.contains("RELAY") && error.len() < 300, "{error}");
            let (_, error) = refused(&mut attacker, &in_addrs, Relay::Direct).await;
            assert!(error.contains("over the limit"), "{error}");
        }
    };
    // Meanwhile another browser opens a session and gets its Identify.
    let bystander = async { Client::started(&daemon).await };
    let ((), _) =
        within("the attack and a new session", async { tokio::join!(attack, bystander) }).await;
    daemon.stop().await;
}

#[tokio::test]
async fn replies_carry_back_only_a_short_prefix_of_what_was_sent() {
    let daemon = Daemon::local().await;
    let (mut client, _) = Client::started(&daemon).await;
    // A megabyte of control bytes as a protocol: refused, echoing a bounded prefix.
    let junk: String = (0..1 << 20).map(|i| char::from((i % 32) as u8)).collect();
    client.send(ClientMsg::Listen { frames: true, protocol: junk.clone() }).await;
    match client.recv().await {
        ServerMsg::ListenRefused { protocol } => {
            assert!(protocol.len() <= MAX_ECHO + 3, "{} bytes echoed", protocol.len());
            assert!(junk.starts_with(protocol.trim_end_matches('…')));
        }
        other => panic!("expected Listen Refused, got {other:?}"),
    }
    // A long /addrs/ string: the refusal is short too.
    let padded = {
        let json = serde_json::json!({ "peerID": "x", "pad": "p".repeat(600 << 10) });
        format!("/addrs/{}", ascii85::encode(json.to_string().as_bytes()))
    };
    let (echoed, error) = refused(&mut client, &padded, Relay::Direct).await;
    assert!(echoed.len() <= MAX_ECHO + 3 && error.len() < 300, "{} {error}", echoed.len());
    client.listen("/test/after/1", true).await;
    daemon.stop().await;
}

#[tokio::test]
async fn identify_stays_valid_whatever_sessions_listen_on() {
    let daemon = Daemon::local().await;
    let (mut first, id) = Client::started(&daemon).await;
    let (mut second, _) = Client::started(&daemon).await;
    // A hundred 250-byte protocols: some are listened on, the rest refused, and what
    // the node announces stays within identify's 4 KiB.
    let mut listening = Vec::new();
    for n in 0..100 {
        let protocol = format!("/{n:03}/{}", "r".repeat(245));
        let client = if n % 2 == 0 { &mut first } else { &mut second };
        client.send(ClientMsg::Listen { frames: true, protocol: protocol.clone() }).await;
        match client.recv().await {
            ServerMsg::Listening { protocol: p } => listening.push(p),
            ServerMsg::ListenRefused { protocol: p } => assert_eq!(p, protocol),
            other => panic!("expected Listening or Listen Refused, got {other:?}"),
        }
    }
    assert!(!listening.is_empty() && listening.len() < 100, "{} listened", listening.len());
    // A peer that runs identify learns the daemon's agent and protocols.
    let info = identify_of(&id.addresses[0].clone().with(Protocol::P2p(id.peer_id))).await;
    assert!(info.agent_version.contains("libp2p-websocket"), "{}", info.agent_version);
    for protocol in &listening {
        assert!(info.protocols.iter().any(|p| p.as_ref() == protocol), "{protocol} not announced");
    }
    // A short name still fits once a long one is given up.
    let stop = ClientMsg::Stop { retain: false, protocol: listening[0].clone() };
    first.send(stop).await;
    assert!(matches!(first.recv().await, ServerMsg::ListenerClosed { .. }));
    first.listen("/test/short/1", true).await;
    daemon.stop().await;
}

/// Dials `addr` with a plain rust-libp2p node running identify; what it received.
async fn identify_of(addr: &Multiaddr) -> identify::Info {
    let mut swarm = plain_swarm(|key| {
        identify::Behaviour::new(identify::Config::new("/ipfs/id/1.0.0".into(), key.public()))
    });
    swarm.dial(addr.clone()).unwrap();
    within("identify", async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(identify::Event::Received { info, .. }) => return info,
                SwarmEvent::Behaviour(identify::Event::Error { error, .. }) => {
                    panic!("identify failed: {error}")
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
    })
    .await
}

/// Loopback ports that take no connection: their backlog of one fills, later SYNs are
/// dropped, and a dial waits there until it times out.
pub async fn tarpits(n: usize) -> (Vec<tokio::net::TcpListener>, Vec<String>) {
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        addrs.push(format!("/ip4/127.0.0.1/tcp/{}", listener.local_addr().unwrap().port()));
        listeners.push(listener);
    }
    (listeners, addrs)
}

/// A connect string for a random peer at `addrs`.
fn unanswered(addrs: &[String]) -> String {
    let json = serde_json::json!({ "peerID": PeerId::random().to_base58(), "addrs": addrs });
    format!("/addrs/{}", ascii85::encode(json.to_string().as_bytes()))
}

#[tokio::test]
async fn connects_in_progress_are_bounded_per_session_and_in_all() {
    let mut config = Config::local();
    config.limits.max_dials_per_session = 4;
    config.node.max_pending_dials = 6;
    let daemon = Daemon::start(config).await;
    let (_tarpits, addrs) = tarpits(8).await;
    let (mut first, own) = Client::started(&daemon).await;
    let (mut second, _) = Client::started(&daemon).await;
    let connect = |peer: String| ClientMsg::Connect {
        frames: true,
        relay: Relay::Direct,
        protocol: "/test/tarpit/1".into(),
        peer,
    };
    // Four hang in the tarpit; the fifth of the session is refused at once.
    for _ in 0..4 {
        first.send(connect(unanswered(&addrs))).await;
    }
    let (_, error) = refused(&mut first, &unanswered(&addrs), Relay::Direct).await;
    assert!(error.contains("too many peers being dialed"), "{error}");
    // Joining a session of this very daemon dials nobody: still allowed.
    first.listen("/test/own/1", true).await;
    first.open(&own.peer_id.to_base58(), "/test/own/1", true).await;
    first.accepted().await;
    // The other session's dials fill the daemon's six, then it is refused too.
    let mut denied = None;
    for _ in 0..4 {
        second.send(connect(unanswered(&addrs))).await;
        if let Some(ServerMsg::PeerConnectionRefused { error, .. }) =
            second.quiet_for(Duration::from_millis(300)).await
        {
            denied = Some(error);
            break;
        }
    }
    let denied = denied.expect("a dial past the daemon's limit is refused");
    assert!(denied.contains("denied"), "{denied}");
    // Sessions and pages still work meanwhile.
    let (mut third, _) = Client::started(&daemon).await;
    third.listen("/test/still/1", true).await;
    assert_eq!(status(daemon.addr).await["sessions"], 3);
    daemon.stop().await;
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("l2w-hostile-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const LOOPBACK_ONLY: [&str; 3] = ["-nopeers", "-listen", "/ip4/127.0.0.1/tcp/0"];

#[tokio::test]
async fn a_connect_flood_under_a_small_fd_limit_leaves_new_sessions_working() {
    let dir = temp_dir("flood");
    let daemon = Process::spawn_with_nofile(&LOOPBACK_ONLY, &dir, Some(1024));
    let (_tarpits, addrs) = tarpits(8).await;
    // 512 Connects that never answer, 8 addresses each, from 16 sessions.
    let mut flooders = Vec::new();
    for _ in 0..16 {
        let mut client = Client::connect_url(&daemon.url()).await;
        client.handshake().await;
        for _ in 0..32 {
            let peer = unanswered(&addrs);
            let protocol = "/test/tarpit/1".to_string();
            client
                .send(ClientMsg::Connect { frames: true, relay: Relay::Direct, protocol, peer })
                .await;
        }
        flooders.push(client);
    }
    // Meanwhile new browsers come and work, and the pages answer.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", daemon.port).parse().unwrap();
    for n in 0..32 {
        let mut client = Client::connect_url(&daemon.url()).await;
        client.handshake().await;
        client.listen(&format!("/test/still-here/{n}"), true).await;
        assert!(status(addr).await["sessions"].as_u64().unwrap() >= 17);
    }
    // Every Connect gets its answer (a refusal) in bounded time.
    for client in &mut flooders {
        for _ in 0..32 {
            assert!(matches!(client.recv().await, ServerMsg::PeerConnectionRefused { .. }));
        }
    }
    let log = daemon.log.lock().unwrap().clone();
    assert!(!log.contains("Too many open files"), "{log}");
}

#[tokio::test]
async fn a_session_that_asks_and_never_reads_stays_bounded_and_is_closed() {
    const BOUND_KIB: u64 = 128 * 1024;
    let dir = temp_dir("unread");
    let args = [&LOOPBACK_ONLY[..], &["--keepalive-timeout", "3", "--ping-interval", "1"]].concat();
    let daemon = Process::spawn(&args, &dir);
    let pid = daemon.child.id();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", daemon.port).parse().unwrap();
    let mut attacker = Client::connect_url(&daemon.url()).await;
    let id = attacker.handshake().await;
    // From here on it reads nothing: 64 requests of 1 MiB each (a protocol of control
    // bytes, which a refusal used to echo escaped, six times its size), then 20,000
    // Listen/Stop pairs (each answered by ~500 bytes of replies).
    let junk: String = (0..1 << 20).map(|i| char::from((i % 32) as u8)).collect();
    for _ in 0..64 {
        attacker.send(ClientMsg::Listen { frames: true, protocol: junk.clone() }).await;
    }
    let protocol = format!("/{}", "p".repeat(249));
    let sending = async {
        for _ in 0..20_000 {
            let listen = ClientMsg::Listen { frames: true, protocol: protocol.clone() };
            let stop = ClientMsg::Stop { retain: false, protocol: protocol.clone() };
            for msg in [listen, stop] {
                let bytes = msg.encode().to_vec().into();
                if futures::SinkExt::send(&mut attacker.ws, bytes).await.is_err() {
                    return; // closed by the daemon
                }
            }
        }
    };
    within("sending", sending).await;
    // Closed within the keepalive time (plus its goodbye grace), everything freed.
    status_until(addr, |s| s["sessions"] == 0 && s["listeners"] == 0).await;
    let (rss, peak) = rss_kib(pid);
    eprintln!("a session asking without reading: daemon RSS {rss} KiB, peak {peak} KiB");
    assert!(peak < BOUND_KIB, "daemon peak RSS {peak} KiB over the {BOUND_KIB} KiB bound");
    // The node still takes libp2p connections (the memory limiter did not trip).
    let node_addr = id.addresses[0].clone().with(Protocol::P2p(id.peer_id));
    TestPeer::dialing(Some(node_addr)).await;
    drop(attacker);
}

#[tokio::test]
async fn bad_input_leaves_a_short_log_with_nothing_forged_in_it() {
    let dir = temp_dir("log");
    let daemon = Process::spawn(&LOOPBACK_ONLY, &dir);
    let mut client = Client::connect_url(&daemon.url()).await;
    client.handshake().await;
    let logged_before = daemon.log.lock().unwrap().len();
    // ~20 MiB of refused requests whose names hold forged log lines and escapes.
    let forged = "\n2026-12-01T00:00:00.000000Z  INFO forged: all is well\u{1b}[2J";
    let protocol = format!("/{}{forged}", "f".repeat(1000));
    let peer = format!("{}{forged}", "g".repeat(1000));
    let mut sent = 0;
    while sent < 20 << 20 {
        let listen = ClientMsg::Listen { frames: true, protocol: protocol.clone() };
        let connect = ClientMsg::Connect {
            frames: true,
            relay: Relay::Direct,
            protocol: "/test/x/1".into(),
            peer: peer.clone(),
        };
        for msg in [listen, connect] {
            let bytes = msg.encode();
            sent += bytes.len();
            client.send_raw(bytes.to_vec()).await;
        }
        let _ = client.recv().await; // Listen Refused
        let _ = client.recv().await; // Peer Connection Refused
    }
    client.listen("/test/after/1", true).await;
    let log = daemon.log.lock().unwrap()[logged_before..].to_string();
    eprintln!("{sent} bytes of bad requests: {} bytes of log", log.len());
    assert!(log.len() < 64 * 1024, "{} bytes of log", log.len());
    assert!(!log.contains('\u{1b}'), "an escape reached the log");
    assert!(!log.lines().any(|l| l.starts_with("2026-12-01T00:00:00")), "a forged line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_session_sending_past_its_credit_to_stalled_remotes_stays_bounded() {
    const STREAMS: usize = 16;
    const PER_STREAM: usize = 16 << 20; // eight times the default stream window
    const BOUND_KIB: u64 = 160 * 1024; // what it sends: 256 MiB
    let dir = temp_dir("overrun");
    let daemon = Process::spawn(&LOOPBACK_ONLY, &dir);
    let pid = daemon.child.id();
    let mut client = Client::connect_url(&daemon.url()).await;
    client.handshake().await;
    client.send(ClientMsg::Extensions { names: "credit".into() }).await;
    assert!(
        matches!(client.recv().await, ServerMsg::Extensions { names } if names.starts_with("credit "))
    );
    // A remote that takes every stream and reads none.
    let sink = TestPeer::new().await;
    let mut incoming =
        sink.control.clone().accept(libp2p::StreamProtocol::new("/test/never-reads/1")).unwrap();
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let held = tokio::spawn({
        let taken = taken.clone();
        async move {
            let mut streams = Vec::new();
            while let Some((_, stream)) = incoming.next().await {
                streams.push(stream);
                taken.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
    });
    let mut ids = Vec::new();
    for n in 1..=STREAMS {
        ids.push(client.open(&sink.connect_string(), "/test/never-reads/1", false).await);
        // One at a time: libp2p-stream drops a stream its acceptor has not taken yet.
        within("the remote takes the stream", async {
            while taken.load(std::sync::atomic::Ordering::Acquire) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
    // Eight times each stream's window, without waiting for credit, while another task reads
    // what the daemon says (overruns, credit): 256 MiB in all.
    let (mut tx, mut rx) = client.ws.split();
    let overruns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = tokio::spawn({
        let overruns = overruns.clone();
        async move {
            while let Some(Ok(message)) = rx.next().await {
                if let tokio_tungstenite::tungstenite::Message::Binary(bytes) = message {
                    let msg = ServerMsg::decode(bytes).unwrap();
                    if let ServerMsg::ConnectionClosed { reason, .. } = msg {
                        let overran = usize::from(reason.contains("overran its credit"));
                        overruns.fetch_add(overran, std::sync::atomic::Ordering::AcqRel);
                    }
                }
            }
        }
    });
    let chunk = bytes::Bytes::from(vec![3u8; 64 * 1024]);
    within("sending", async {
        for _ in 0..PER_STREAM / chunk.len() {
            for &id in &ids {
                let msg = ClientMsg::Data { id, data: chunk.clone() };
                let bytes = msg.encode().to_vec().into();
                if futures::SinkExt::send(&mut tx, bytes).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss, peak) = rss_kib(pid);
    eprintln!(
        "a credit session overrunning {STREAMS} stalled streams: RSS {rss} KiB, peak {peak} KiB"
    );
    assert!(peak < BOUND_KIB, "daemon peak RSS {peak} KiB over the {BOUND_KIB} KiB bound");
    let overruns = overruns.load(std::sync::atomic::Ordering::Acquire);
    assert_eq!(overruns, STREAMS, "each stream is closed for its overrun");
    reader.abort();
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_detached_sessions_count_as_sessions_and_stay_small() {
    const SESSIONS: usize = 1000;
    const BOUND_KIB: u64 = 64 * 1024; // 64 KiB a detached session
    let dir = temp_dir("detached");
    let mut args = LOOPBACK_ONLY.to_vec();
    args.extend(["--max-sessions", "1000", "--resume-grace", "120"]);
    let daemon = Process::spawn(&args, &dir);
    let pid = daemon.child.id();
    // The node started, one session come and gone: the baseline.
    let mut first = common::resume::ResumeClient::new(&daemon.url(), None, "credit resume").await;
    first.close().await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", daemon.port).parse().unwrap();
    status_until(addr, |s| s["detached"] == 1).await;
    let (before, _) = rss_kib(pid);
    // 999 more pages turn resume on, ask for presence, and vanish (listeners are
    // bounded daemon-wide by what identify can announce, so they listen on nothing).
    let url = daemon.url();
    let tasks: Vec<_> = (0..4)
        .map(|worker| {
            let url = url.clone();
            tokio::spawn(async move {
                for _ in (1 + worker..SESSIONS).step_by(4) {
                    let mut page =
                        common::resume::ResumeClient::new(&url, None, "credit resume").await;
                    page.send(ClientMsg::Presence { on: true }).await;
                    while !matches!(page.next().await, ServerMsg::PresenceReady) {}
                    drop(page); // no close frame: the connection just ends
                }
            })
        })
        .collect();
    for task in tasks {
        within("opening sessions", task).await.unwrap();
    }
    let status = status_until(addr, |s| s["detached"] == SESSIONS).await;
    assert_eq!(status["sessions"], SESSIONS);
    let (after, peak) = rss_kib(pid);
    let each = (after.saturating_sub(before)) as f64 / (SESSIONS - 1) as f64;
    eprintln!(
        "{SESSIONS} detached sessions: RSS {before} -> {after} KiB ({each:.1} KiB each), peak {peak} KiB"
    );
    assert!(after.saturating_sub(before) < BOUND_KIB, "RSS grew {} KiB", after - before);
    // They count against --max-sessions: a new page is refused...
    let mut late = Client::connect_url(&daemon.url()).await;
    assert_eq!(late.expect_close_frame().await.0, 1013);
    // ...while a page coming back takes its session again.
    first.resume().await.expect("a detached session resumes at the session limit");
    status_until(addr, |s| s["detached"] == SESSIONS - 1).await;
    assert!(daemon.terminate().success());
}
