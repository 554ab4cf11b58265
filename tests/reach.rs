//! Network reach on loopback: Connect by bare peer id through the Kademlia DHT, Connect
//! through a circuit relay (both Connect layouts), and the reachability Identify reports.
//! Every daemon runs in this process with libp2p on 127.0.0.1 only. The same scenarios
//! across separate hosts, NAT and mDNS are in `tests/netns.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{pattern, status, within, Client, Daemon, Identity};
use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use libp2p_websocket::{
    node::{NodeKey, RelayLimits, CONNECT_TIMEOUT},
    protocol::{ClientMsg, Relay, ServerMsg},
    Config,
};

const ECHO: &str = "/reach/echo/1.0.0";

/// A daemon whose node starts at launch, with `change` applied to the local config.
async fn daemon(change: impl FnOnce(&mut Config)) -> (Daemon, Identity) {
    let mut config = Config { key: Some(NodeKey::generate()), ..Config::local() };
    change(&mut config);
    let daemon = Daemon::start(config).await;
    let (_, identity) = Client::started(&daemon).await;
    (daemon, identity)
}

/// `identity`'s TCP address with its `/p2p/` id, as `-peer` takes it.
fn dial_addr(identity: &Identity) -> Multiaddr {
    let tcp = identity
        .addresses
        .iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
        .expect("a TCP address");
    tcp.clone().with(Protocol::P2p(identity.peer_id))
}

/// A session that takes extension messages (Presence OFF opts in without presence).
async fn extension_client(daemon: &Daemon) -> Client {
    let (mut client, _) = Client::started(daemon).await;
    client.send(ClientMsg::Presence { on: false }).await;
    client
}

/// Sends Connect and returns the answer.
async fn connect(client: &mut Client, relay: Relay, peer: &str) -> ServerMsg {
    let msg = ClientMsg::Connect { frames: true, relay, protocol: ECHO.into(), peer: peer.into() };
    client.send(msg).await;
    client.recv().await
}

/// Frames go both ways between `a`'s connection `a_id` and `b`'s `b_id`, byte-exact.
async fn exchange(a: &mut Client, a_id: u64, b: &mut Client, b_id: u64) {
    for (i, len) in [1usize, 1000, 4096].into_iter().enumerate() {
        let there = pattern(len, i as u8);
        a.data(a_id, &there).await;
        assert_eq!(b.read_message(b_id).await, there);
        let back = pattern(len, 100 + i as u8);
        b.data(b_id, &back).await;
        assert_eq!(a.read_message(a_id).await, back);
    }
}

fn refusal(msg: ServerMsg) -> String {
    match msg {
        ServerMsg::PeerConnectionRefused { error, .. } => error,
        other => panic!("expected Peer Connection Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bare_peer_id_is_found_through_the_dht() {
    // Told they are public, the nodes serve the DHT (Kademlia server mode).
    let public = |c: &mut Config| c.node.public = Some(true);
    let (hub, hub_id) = daemon(public).await;
    let bootstrap = vec![dial_addr(&hub_id)];
    let (b, b_id) = daemon(|c| {
        public(c);
        c.node.bootstrap = bootstrap.clone();
    })
    .await;
    let (a, _) = daemon(|c| {
        public(c);
        c.node.bootstrap = bootstrap.clone();
    })
    .await;
    let (mut b_client, _) = Client::started(&b).await;
    b_client.listen(ECHO, true).await;
    let mut a_client = extension_client(&a).await;

    // A was never told B's address: only the DHT (through the hub) knows it. B may take
    // a moment to enter the hub's routing table.
    let peer = b_id.peer_id.to_base58();
    let deadline = Instant::now() + Duration::from_secs(15);
    let a_conn = loop {
        match connect(&mut a_client, Relay::Direct, &peer).await {
            ServerMsg::PeerConnection { id, peer_id, .. } => {
                assert_eq!(peer_id, peer);
                break id;
            }
            ServerMsg::PeerConnectionRefused { error, .. } if Instant::now() < deadline => {
                assert!(error.contains("not found"), "{error}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            other => panic!("B was not found through the DHT: {other:?}"),
        }
    };
    let (b_conn, _) = b_client.accepted().await;
    exchange(&mut a_client, a_conn, &mut b_client, b_conn).await;

    // A peer nobody knows: refused, saying so, well within the Connect timeout.
    let nobody = PeerId::random().to_base58();
    let started = Instant::now();
    let error = refusal(connect(&mut a_client, Relay::Direct, &nobody).await);
    assert!(error.contains("peer not found"), "{error}");
    assert!(started.elapsed() < CONNECT_TIMEOUT, "took {:?}", started.elapsed());

    // A node with no DHT peer at all says that instead.
    let (lonely, _) = daemon(|_| {}).await;
    let mut lonely_client = extension_client(&lonely).await;
    let error = refusal(connect(&mut lonely_client, Relay::Direct, &peer).await);
    assert!(error.contains("no DHT peer to ask"), "{error}");

    for daemon in [a, b, hub, lonely] {
        daemon.stop().await;
    }
}

/// Waits until `daemon` reports a circuit address (its reservation on a relay).
async fn wait_for_reservation(daemon: &Daemon) {
    within("relay reservation", async {
        loop {
            let status = status(daemon.addr).await;
            let addrs = status["node"]["addresses"].as_array().cloned().unwrap_or_default();
            if addrs.iter().any(|a| a.as_str().unwrap_or("").contains("p2p-circuit")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// An [`unreachable`] daemon holding a reservation on the relay at `relay_addr`.
async fn behind(relay_addr: &Multiaddr) -> (Daemon, Identity) {
    let (daemon, identity) = daemon(|c| {
        unreachable(c);
        c.node.relay_via = vec![relay_addr.clone()];
    })
    .await;
    wait_for_reservation(&daemon).await;
    (daemon, identity)
}

/// No listener at all: like a node behind a NAT, it can dial out but nobody can dial it,
/// so two such nodes meet only through a relay (no AutoNAT dial-back, no hole punch).
fn unreachable(config: &mut Config) {
    config.node.listen.clear();
}

#[tokio::test]
async fn connect_goes_through_a_relay_in_both_layouts() {
    let (relay, relay_id) = daemon(|c| c.node.relay = Some(RelayLimits::default())).await;
    let relay_addr = dial_addr(&relay_id);
    let (b, b_id) = behind(&relay_addr).await;
    let mut b_client = extension_client(&b).await;
    b_client.listen(ECHO, true).await;
    let peer = b_id.peer_id.to_base58();
    let relay_text = relay_id.peer_id.to_base58();

    // README layout: RELAY names the relay (A knows nothing else of B or the relay's
    // address: the relay is named by its full multiaddr).
    let (a, _) = daemon(unreachable).await;
    let mut a_client = extension_client(&a).await;
    let via = Relay::Via(relay_addr.to_string());
    let a_conn = match connect(&mut a_client, via, &peer).await {
        ServerMsg::PeerConnection { id, .. } => id,
        other => panic!("expected Peer Connection, got {other:?}"),
    };
    // The session is told the stream is relayed, and by whom, before any data.
    assert_eq!(a_client.recv().await, ServerMsg::Relayed { id: a_conn, relay: relay_text.clone() });
    let (b_conn, _) = b_client.accepted().await;
    assert_eq!(b_client.recv().await, ServerMsg::Relayed { id: b_conn, relay: relay_text.clone() });
    exchange(&mut a_client, a_conn, &mut b_client, b_conn).await;

    // Original layout, RELAY=1: any relay the node knows — here the one it bootstrapped
    // to, once identify has told it that peer is a relay.
    let (c, _) = daemon(|cfg| {
        unreachable(cfg);
        cfg.node.bootstrap = vec![relay_addr.clone()];
    })
    .await;
    let mut c_client = extension_client(&c).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let c_conn = loop {
        match connect(&mut c_client, Relay::Any, &peer).await {
            ServerMsg::PeerConnection { id, .. } => break id,
            ServerMsg::PeerConnectionRefused { error, .. } if Instant::now() < deadline => {
                assert!(error.contains("no relay known"), "{error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("expected Peer Connection through any relay, got {other:?}"),
        }
    };
    assert_eq!(c_client.recv().await, ServerMsg::Relayed { id: c_conn, relay: relay_text.clone() });
    let (b_conn2, _) = b_client.accepted().await;
    assert_eq!(b_client.recv().await, ServerMsg::Relayed { id: b_conn2, relay: relay_text });
    exchange(&mut c_client, c_conn, &mut b_client, b_conn2).await;

    // What cannot work is refused with the reason.
    let (lonely, _) = daemon(|_| {}).await;
    let mut lonely_client = extension_client(&lonely).await;
    let error = refusal(connect(&mut lonely_client, Relay::Any, &peer).await);
    assert!(error.contains("no relay known"), "{error}");
    let error = refusal(connect(&mut lonely_client, Relay::Via("not a relay".into()), &peer).await);
    assert!(error.contains("neither a peer id nor a multiaddr"), "{error}");

    // A session that never opted in to extensions gets no Relayed message.
    let (mut plain, _) = Client::started(&c).await;
    match connect(&mut plain, Relay::Via(relay_addr.to_string()), &peer).await {
        ServerMsg::PeerConnection { .. } => {}
        other => panic!("expected Peer Connection, got {other:?}"),
    }
    let _ = b_client.accepted().await;
    assert_eq!(plain.quiet_for(Duration::from_millis(300)).await, None);

    for daemon in [a, b, c, relay, lonely] {
        daemon.stop().await;
    }
}

#[tokio::test]
async fn identify_comes_at_once_and_says_public_unless_known_private() {
    // Forced by the -fakenat flags.
    let (public, public_id) = daemon(|c| c.node.public = Some(true)).await;
    assert!(public_id.public);
    assert_eq!(status(public.addr).await["node"]["reachability"], "public");
    let (private, private_id) = daemon(|c| c.node.public = Some(false)).await;
    assert!(!private_id.public);
    assert_eq!(status(private.addr).await["node"]["reachability"], "private");

    // Nobody to ask: unknown, which Identify says as PUBLIC=1 (the original's mapping,
    // which its pages need to host).
    let (alone, alone_id) = daemon(|_| {}).await;
    assert!(alone_id.public);
    assert_eq!(status(alone.addr).await["node"]["reachability"], "unknown");

    // A bootstrap peer that never answers: Identify does not wait for AutoNAT (the
    // daemon used to hold it up to 10 s). Bounded by the step timeout, not timed.
    let silent: Multiaddr =
        format!("/ip4/127.0.0.1/tcp/9/p2p/{}", PeerId::random()).parse().unwrap();
    let waiting = Daemon::start(Config { node: with_bootstrap(silent), ..Config::local() }).await;
    let mut client = Client::connect(&waiting).await;
    assert!(matches!(client.recv().await, ServerMsg::Hello { started: false, .. }));
    // The reachability extension tells the three states apart.
    client.send(ClientMsg::Extensions { names: "reachability".into() }).await;
    assert_eq!(client.recv().await, ServerMsg::Extensions { names: "reachability".into() });
    client.send(ClientMsg::Start { key: Default::default() }).await;
    assert!(matches!(client.recv().await, ServerMsg::Identify { public: true, .. }));
    assert_eq!(client.recv().await, ServerMsg::Reachability { state: 0 });
    // On a daemon whose node runs, turning it on answers the state at once.
    let mut late = Client::connect(&private).await;
    late.handshake().await;
    late.send(ClientMsg::Extensions { names: "reachability".into() }).await;
    assert_eq!(late.recv().await, ServerMsg::Extensions { names: "reachability".into() });
    assert_eq!(late.recv().await, ServerMsg::Reachability { state: 1 });
    // Asked again (a reloaded page that resumed its session does), it answers again.
    late.send(ClientMsg::Extensions { names: "reachability".into() }).await;
    assert_eq!(late.recv().await, ServerMsg::Extensions { names: "reachability".into() });
    assert_eq!(late.recv().await, ServerMsg::Reachability { state: 1 });

    for daemon in [public, private, alone, waiting] {
        daemon.stop().await;
    }
}

fn with_bootstrap(addr: Multiaddr) -> libp2p_websocket::node::NodeConfig {
    let mut node = Config::local().node;
    node.bootstrap = vec![addr];
    node
}

#[tokio::test]
async fn a_relay_enforces_its_circuit_limit_and_the_streams_are_closed() {
    // A relay that lets 16 KiB through a circuit (both ways together).
    let limits = RelayLimits { circuit_bytes: 16 * 1024, ..RelayLimits::default() };
    let (relay, relay_id) = daemon(|c| c.node.relay = Some(limits)).await;
    let relay_addr = dial_addr(&relay_id);
    let (b, b_id) = behind(&relay_addr).await;
    let (mut b_client, _) = Client::started(&b).await;
    b_client.listen(ECHO, false).await;
    let (a, _) = daemon(unreachable).await;
    let (mut a_client, _) = Client::started(&a).await;
    let msg = ClientMsg::Connect {
        frames: false,
        relay: Relay::Via(relay_addr.to_string()),
        protocol: ECHO.into(),
        peer: b_id.peer_id.to_base58(),
    };
    a_client.send(msg).await;
    let a_conn = match a_client.recv().await {
        ServerMsg::PeerConnection { id, .. } => id,
        other => panic!("expected Peer Connection, got {other:?}"),
    };
    let (b_conn, _) = b_client.accepted().await;
    // Within the limit, bytes flow.
    let small = pattern(4096, 1);
    a_client.data(a_conn, &small).await;
    assert_eq!(b_client.read_bytes(b_conn, small.len()).await, small);
    // Past it, the relay ends the circuit: both sessions are told, nothing hangs.
    a_client.data(a_conn, &pattern(64 * 1024, 2)).await;
    let mut received = small.len();
    let reason = within("B's stream closed by the relay", async {
        loop {
            match b_client.recv().await {
                ServerMsg::Data { data, .. } => received += data.len(),
                ServerMsg::ConnectionClosed { id, reason } if id == b_conn => return reason,
                other => panic!("expected Data or Connection Closed, got {other:?}"),
            }
        }
    })
    .await;
    assert!(received < 4096 + 64 * 1024, "the whole 68 KiB went through a 16 KiB circuit");
    assert!(!reason.is_empty());
    let reason = a_client.expect_closed(a_conn).await;
    assert!(!reason.is_empty());
    for daemon in [a, b, relay] {
        daemon.stop().await;
    }
}

#[tokio::test]
async fn a_lost_reservation_is_asked_for_again() {
    // The relay runs with a fixed key and port, so it can come back as the same peer.
    let key = NodeKey::generate();
    let relay_config = |listen: Multiaddr| Config {
        key: Some(key.clone()),
        node: libp2p_websocket::node::NodeConfig {
            listen: vec![listen],
            relay: Some(RelayLimits::default()),
            ..Config::local().node
        },
        ..Config::local()
    };
    let relay = Daemon::start(relay_config("/ip4/127.0.0.1/tcp/0".parse().unwrap())).await;
    let (_, relay_id) = Client::started(&relay).await;
    let relay_addr = dial_addr(&relay_id);
    let (b, b_id) = behind(&relay_addr).await;

    // The relay goes away: the reservation (and its address) with it.
    relay.stop().await;
    within("the circuit address is withdrawn", async {
        loop {
            let status = status(b.addr).await;
            let addrs = status["node"]["addresses"].to_string();
            if !addrs.contains("p2p-circuit") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // It comes back at the same address: B asks again by itself, and is reachable.
    let mut listen = relay_addr.clone();
    listen.pop();
    let relay = Daemon::start(relay_config(listen)).await;
    wait_for_reservation(&b).await;
    let (mut b_client, _) = Client::started(&b).await;
    b_client.listen(ECHO, true).await;
    let (a, _) = daemon(unreachable).await;
    let mut a_client = extension_client(&a).await;
    let via = Relay::Via(relay_addr.to_string());
    let a_conn = match connect(&mut a_client, via, &b_id.peer_id.to_base58()).await {
        ServerMsg::PeerConnection { id, .. } => id,
        other => panic!("expected Peer Connection, got {other:?}"),
    };
    assert!(matches!(a_client.recv().await, ServerMsg::Relayed { .. }));
    let (b_conn, _) = b_client.accepted().await;
    exchange(&mut a_client, a_conn, &mut b_client, b_conn).await;
    for daemon in [a, b, relay] {
        daemon.stop().await;
    }
}
