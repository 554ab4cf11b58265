//! End to end across a real (if tiny) network: daemon processes run as separate hosts
//! in Linux network namespaces the test builds itself, some on a fake internet and some
//! behind NAT routers (see `netns/lab.rs` for the map). Nothing leaves the machine: no
//! namespace has a route out, and every daemon runs with `-nopeers`.
//!
//! Each scenario is its own test with its own lab (a few namespaces cost milliseconds;
//! the daemons are what costs, and separate labs keep one scenario's connections, relay
//! reservations and DHT entries from helping or hurting another). They need root; where
//! namespaces cannot be made they pass after saying why.
//!
//! Every wait is bounded: a step gets `STEP` (20 s) unless it says otherwise, and what
//! the network needs time for (mDNS, AutoNAT, relay reservations, the DHT) has its own
//! patience, printed with the time it really took.
//!
//! A failing test prints the tail of every daemon's log and keeps the whole logs in
//! `/tmp/l2w<pid><tag>-logs/`; `NETNS_LOGS=1` does that for passing tests too, and
//! `NETNS_RUST_LOG` sets the daemons' log filter (default `info,libp2p_websocket=debug`).
//! Run with `cargo test --test netns -- --nocapture` to see the timings.

mod common;
#[path = "netns/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use lab::{Daemon, Lab, SKIP_HINT};
use libp2p_websocket::protocol::{ClientMsg, ConnId, ConnectTarget, Relay, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

use common::{pattern, status, Client, STEP};

/// Builds this test's lab, or says why there is none and ends the test (passing).
macro_rules! lab_or_skip {
    ($tag:expr) => {
        match Lab::new($tag) {
            Ok(lab) => lab,
            Err(why) => {
                eprintln!("network namespaces unavailable: {why}; {SKIP_HINT}");
                return;
            }
        }
    };
}

/// A WebSocket session with one daemon of the lab.
struct Session {
    who: String,
    client: Client,
    /// PUBLIC of every Identify this session received, in order.
    identifies: Vec<bool>,
    /// ADDRESSES of the last Identify (a JSON array of multiaddrs).
    addresses: String,
}

impl Session {
    /// Connects and reads Hello and Identify (the daemons start their nodes at launch).
    async fn open(daemon: &Daemon) -> Self {
        let client = Client::connect_url(&daemon.ws_url()).await;
        let mut session =
            Self { who: daemon.name.clone(), client, identifies: Vec::new(), addresses: "".into() };
        let asked = Instant::now();
        match session.raw(Instant::now() + STEP).await {
            Some(ServerMsg::Hello { started: true, .. }) => {}
            other => panic!("{}: expected Hello (started), got {other:?}", session.who),
        }
        match session.raw(Instant::now() + STEP).await {
            Some(ServerMsg::Identify { public, peer_id, addresses, .. }) => {
                assert_eq!(peer_id, daemon.peer_id.to_base58(), "{}: Identify", session.who);
                session.identifies.push(public);
                session.addresses = addresses;
            }
            other => panic!("{}: expected Identify, got {other:?}", session.who),
        }
        if asked.elapsed() > Duration::from_secs(2) {
            let secs = asked.elapsed().as_secs_f64();
            eprintln!("{}: waited {secs:.1} s for Hello and Identify", session.who);
        }
        session
    }

    /// The next message before `deadline` (pings skipped), or `None`.
    async fn raw(&mut self, deadline: Instant) -> Option<ServerMsg> {
        loop {
            let next = tokio::time::timeout_at(deadline.into(), self.client.ws.next()).await;
            match next {
                Err(_) => return None,
                Ok(Some(Ok(Message::Binary(bytes)))) => {
                    return Some(ServerMsg::decode(bytes).expect("valid server message"))
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("{}: unexpected WebSocket event {other:?}", self.who),
            }
        }
    }

    /// The next message that is not an Identify (those arrive whenever reachability
    /// changes; they are recorded) or presence news, within `patience`.
    async fn next(&mut self, what: &str, patience: Duration) -> ServerMsg {
        let asked = Instant::now();
        let deadline = asked + patience;
        loop {
            let msg = self.raw(deadline).await;
            if asked.elapsed() > Duration::from_secs(2) {
                eprintln!("{}: waited {:.1} s for {what}", self.who, asked.elapsed().as_secs_f64());
            }
            match msg {
                None => panic!("{}: no {what} within {patience:?}", self.who),
                Some(ServerMsg::Identify { public, .. }) => self.identifies.push(public),
                Some(
                    ServerMsg::Peer { .. }
                    | ServerMsg::LocalListener { .. }
                    | ServerMsg::PresenceReady
                    | ServerMsg::PresenceResync,
                ) => {}
                Some(msg) => return msg,
            }
        }
    }

    /// Waits for an Identify with PUBLIC = `public` (one already received counts).
    async fn identify_says(&mut self, public: bool, patience: Duration) {
        let deadline = Instant::now() + patience;
        while self.identifies.last() != Some(&public) {
            match self.raw(deadline).await {
                None => panic!(
                    "{}: no Identify with PUBLIC={} within {patience:?} (got {:?})",
                    self.who,
                    u8::from(public),
                    self.identifies
                ),
                Some(ServerMsg::Identify { public: p, .. }) => self.identifies.push(p),
                Some(_) => {}
            }
        }
    }

    async fn send(&mut self, msg: ClientMsg) {
        self.client.send(msg).await;
    }

    async fn listen(&mut self, protocol: &str) {
        self.send(ClientMsg::Listen { frames: true, protocol: protocol.into() }).await;
        match self.next("Listening", STEP).await {
            ServerMsg::Listening { protocol: p } => assert_eq!(p, protocol),
            other => panic!("{}: expected Listening, got {other:?}", self.who),
        }
    }

    /// Presence off: asks for nothing, but opts in to the extension messages (Relayed).
    async fn presence_off(&mut self) {
        self.send(ClientMsg::Presence { on: false }).await;
    }

    /// Connect (FRAMES=1): the new id and the remote's peer id, or the refusal's reason.
    async fn connect(
        &mut self,
        peer: &str,
        relay: Relay,
        protocol: &str,
    ) -> Result<(ConnId, String), String> {
        self.send(ClientMsg::Connect {
            frames: true,
            relay,
            protocol: protocol.into(),
            peer: peer.into(),
        })
        .await;
        // The daemon gives up on a dial after 20 s; allow for that and a little more.
        match self.next("answer to Connect", Duration::from_secs(30)).await {
            ServerMsg::PeerConnection { id, peer_id, protocol: p } => {
                assert_eq!(p, protocol, "{}: Peer Connection's protocol", self.who);
                Ok((id, peer_id))
            }
            ServerMsg::PeerConnectionRefused { error, .. } => Err(error),
            other => panic!("{}: expected the answer to Connect, got {other:?}", self.who),
        }
    }

    /// Connects, trying again every `pause` while refused, for up to `patience`.
    async fn connect_retrying(
        &mut self,
        peer: &str,
        relay: Relay,
        protocol: &str,
        patience: Duration,
        pause: Duration,
    ) -> (ConnId, String) {
        let tried = self.try_connect_retrying(peer, relay, protocol, patience, pause).await;
        tried.unwrap_or_else(|why| panic!("{why}"))
    }

    /// [`Session::connect_retrying`], saying why it gave up instead of panicking.
    async fn try_connect_retrying(
        &mut self,
        peer: &str,
        relay: Relay,
        protocol: &str,
        patience: Duration,
        pause: Duration,
    ) -> Result<(ConnId, String), String> {
        let started = Instant::now();
        let mut refusals = Vec::new();
        loop {
            match self.connect(peer, relay.clone(), protocol).await {
                Ok(connected) => {
                    eprintln!(
                        "{}: Peer Connection to {peer} ({relay:?}) after {:.1} s, {} refusal(s) \
                         before: {refusals:?}",
                        self.who,
                        started.elapsed().as_secs_f64(),
                        refusals.len()
                    );
                    return Ok(connected);
                }
                Err(error) => {
                    refusals.push(format!("{:.1} s: {error}", started.elapsed().as_secs_f64()));
                    if started.elapsed() + pause > patience {
                        return Err(format!(
                            "{}: Connect to {peer} ({relay:?}) still refused after {patience:?}: \
                             {refusals:#?}",
                            self.who
                        ));
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// A Listener Connection: its id and the remote's peer id.
    async fn accepted(&mut self, protocol: &str) -> (ConnId, String) {
        match self.next("Listener Connection", STEP).await {
            ServerMsg::ListenerConnection { id, peer_id, protocol: p } => {
                assert_eq!(p, protocol, "{}: Listener Connection's protocol", self.who);
                (id, peer_id)
            }
            other => panic!("{}: expected Listener Connection, got {other:?}", self.who),
        }
    }

    /// The Relayed message that follows Peer Connection `id`; returns the relay's id.
    async fn relayed(&mut self, id: ConnId) -> String {
        match self.next("Relayed", STEP).await {
            ServerMsg::Relayed { id: i, relay } if i == id => relay,
            other => panic!("{}: expected Relayed for {id}, got {other:?}", self.who),
        }
    }

    async fn data(&mut self, id: ConnId, data: &[u8]) {
        self.send(ClientMsg::Data { id, data: bytes::Bytes::copy_from_slice(data) }).await;
    }

    async fn message(&mut self, id: ConnId) -> bytes::Bytes {
        match self.next("Data", STEP).await {
            ServerMsg::Data { id: i, data } if i == id => data,
            other => panic!("{}: expected Data for {id}, got {other:?}", self.who),
        }
    }
}

/// Frames of several sizes (5.5 KiB each way in all) go from `a` to `b` and back, each
/// arriving as one message, byte for byte.
async fn exchange(a: &mut Session, a_id: ConnId, b: &mut Session, b_id: ConnId) {
    for (i, len) in [1usize, 517, 1024, 4096].into_iter().enumerate() {
        let there = pattern(len, i as u8);
        a.data(a_id, &there).await;
        assert_eq!(b.message(b_id).await, there, "{} -> {}: frame {i}", a.who, b.who);
        let back = pattern(len, 100 + i as u8);
        b.data(b_id, &back).await;
        assert_eq!(a.message(a_id).await, back, "{} -> {}: frame {i}", b.who, a.who);
    }
}

/// The daemon's `/status` reachability ("unknown", "public", "private").
async fn reachability(daemon: &Daemon) -> String {
    let now = status(daemon.http).await;
    match &now["node"]["reachability"] {
        serde_json::Value::String(s) => s.clone(),
        other => format!("<{other}>"),
    }
}

/// Polls `/status` until each daemon reports its expected reachability; returns when
/// each first did, in seconds from `since`.
async fn await_reachability(
    expected: &[(&Daemon, &str)],
    since: Instant,
    patience: Duration,
) -> Vec<f64> {
    let mut reached: Vec<Option<f64>> = vec![None; expected.len()];
    loop {
        let mut now = Vec::new();
        for (i, (daemon, want)) in expected.iter().enumerate() {
            let is = reachability(daemon).await;
            if reached[i].is_none() && is == *want {
                reached[i] = Some(since.elapsed().as_secs_f64());
            }
            now.push(format!("{}: {is} (want {want})", daemon.name));
        }
        if reached.iter().all(Option::is_some) {
            return reached.into_iter().map(Option::unwrap).collect();
        }
        assert!(since.elapsed() < patience, "reachability after {patience:?}: {now:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

const ECHO: &str = "/test/echo/1.0.0";

/// The lab itself, with nothing but what the daemon always had: public hosts reach each
/// other, a NATed host reaches out (and is seen at its router's address), and nothing
/// reaches in: the NAT is real.
#[tokio::test]
async fn the_nat_lets_connections_out_and_none_in() {
    let mut lab = lab_or_skip!('0');
    let p_host = lab.public_host("P", 1);
    let q_host = lab.public_host("Q", 2);
    let r1 = lab.router("R1", 11, 1);
    let r2 = lab.router("R2", 12, 2);
    let d1_host = lab.nat_host(&r1, "D1", 2);
    let d2_host = lab.nat_host(&r2, "D2", 2);
    let p = lab.daemon(&p_host, &[]);
    let q = lab.daemon(&q_host, &[]);
    let d1 = lab.daemon(&d1_host, &[]);
    let d2 = lab.daemon(&d2_host, &[]);
    let (mut sp, mut sq) = (Session::open(&p).await, Session::open(&q).await);
    let (mut s1, mut s2) = (Session::open(&d1).await, Session::open(&d2).await);
    sp.listen(ECHO).await;
    s1.listen(ECHO).await;

    // Public to public, by connect string.
    let (q_id, who) = sq.connect(&p.connect_string(), Relay::Direct, ECHO).await.unwrap();
    assert_eq!(who, p.peer_id.to_base58());
    let (p_id, from) = sp.accepted(ECHO).await;
    assert_eq!(from, q.peer_id.to_base58());
    exchange(&mut sq, q_id, &mut sp, p_id).await;

    // Out through R1's NAT (over TCP, for `ss` to show it): P sees the connection come
    // from R1's WAN address.
    let p_tcp = ConnectTarget { peer: p.peer_id, addrs: vec![p.tcp()] }.to_connect_string();
    let (d1_id, _) = s1.connect(&p_tcp, Relay::Direct, ECHO).await.unwrap();
    let (p_id, from) = sp.accepted(ECHO).await;
    assert_eq!(from, d1.peer_id.to_base58());
    exchange(&mut s1, d1_id, &mut sp, p_id).await;
    let sockets = lab.exec(&p_host, &["ss", "-Htn", "state", "established"]);
    assert!(sockets.contains(&format!("{}:", r1.wan)), "P's TCP connections: {sockets}");
    assert!(!sockets.contains("10.1.0."), "P sees a private address: {sockets}");

    // Nothing in: not to R1's WAN address (no port forwarding), not to D1's private one;
    // on the wire first, then for the daemons.
    assert!(lab.tcp_reaches(&d2_host, p_host.ip, 4001), "D2 cannot reach P");
    assert!(!lab.tcp_reaches(&d2_host, d1_host.ip, 4001), "D2 reaches D1's private address");
    assert!(!lab.tcp_reaches(&q_host, r1.wan, 4001), "Q reaches D1 through R1's WAN address");
    assert!(!lab.tcp_reaches(&q_host, d1_host.ip, 4001), "Q reaches D1's private address");
    // (Not asked of Q's daemon: through P's DHT, D1 may well have dialed Q by now, and
    // a Connect reuses that connection — the NAT lets answers in, which is the point.)
    let started = Instant::now();
    let error = s2.connect(&d1.connect_string(), Relay::Direct, ECHO).await.unwrap_err();
    eprintln!(
        "D2 -> D1 at its private address refused after {:.1} s: {error}",
        started.elapsed().as_secs_f64()
    );
}

/// Scenario 1: two daemons on one LAN (mDNS on by default, no bootstrap peer) find each
/// other by bare peer id within seconds.
#[tokio::test]
async fn lan_peers_find_each_other_by_mdns() {
    let mut lab = lab_or_skip!('1');
    let r1 = lab.router("R1", 11, 1);
    let d1_host = lab.nat_host(&r1, "D1", 2);
    let d1b_host = lab.nat_host(&r1, "D1b", 3);
    let d1b = lab.daemon(&d1b_host, &[]);
    let d1 = lab.daemon(&d1_host, &[]);
    let started = Instant::now();
    let mut s1b = Session::open(&d1b).await;
    s1b.listen(ECHO).await;
    let mut s1 = Session::open(&d1).await;
    let (id, who) = s1
        .connect_retrying(
            &d1b.peer_id.to_base58(),
            Relay::Direct,
            ECHO,
            Duration::from_secs(10),
            Duration::from_millis(500),
        )
        .await;
    eprintln!(
        "mDNS: D1 reached D1b by bare peer id {:.1} s after both started",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(who, d1b.peer_id.to_base58());
    let (b_id, from) = s1b.accepted(ECHO).await;
    assert_eq!(from, d1.peer_id.to_base58());
    exchange(&mut s1, id, &mut s1b, b_id).await;
}

/// Scenario 2: AutoNAT tells the public hosts from the NATed one, in /status and in
/// Identify's PUBLIC.
#[tokio::test]
async fn autonat_tells_public_hosts_from_a_natted_one() {
    let mut lab = lab_or_skip!('2');
    let p_host = lab.public_host("P", 1);
    let q_host = lab.public_host("Q", 2);
    let r1 = lab.router("R1", 11, 1);
    let d1_host = lab.nat_host(&r1, "D1", 2);
    let p = lab.daemon(&p_host, &["-relay"]);
    let p_addr = p.tcp_addr().to_string();
    let q = lab.daemon(&q_host, &["-peer", &p_addr]);
    let d1 = lab.daemon(&d1_host, &["-peer", &p_addr]);
    let started = Instant::now();
    let mut sp = Session::open(&p).await;
    let mut sq = Session::open(&q).await;
    let mut s1 = Session::open(&d1).await;
    let times = await_reachability(
        &[(&p, "public"), (&q, "public"), (&d1, "private")],
        started,
        // One to three AutoNAT rounds: 11 s and 30 s seen for the private verdict.
        Duration::from_secs(90),
    )
    .await;
    eprintln!(
        "AutoNAT: P public at {:.1} s, Q public at {:.1} s, D1 private at {:.1} s",
        times[0], times[1], times[2]
    );
    sp.identify_says(true, STEP).await;
    sq.identify_says(true, STEP).await;
    s1.identify_says(false, STEP).await;
    // Every first Identify came at once: PUBLIC=1 while reachability was unknown, as
    // the original said it; D1's verdict (private) came seconds later as a fresh
    // Identify with PUBLIC=0.
    assert_eq!(sp.identifies.first(), Some(&true), "P's Identifies: {:?}", sp.identifies);
    assert_eq!(s1.identifies.first(), Some(&true), "D1's Identifies: {:?}", s1.identifies);
    let fresh = Session::open(&d1).await;
    assert_eq!(fresh.identifies, [false], "a new session of D1");
    let fresh = Session::open(&p).await;
    assert_eq!(fresh.identifies, [true], "a new session of P");
    // A last look: once private, D1 was not told public again.
    s1.raw(Instant::now() + Duration::from_millis(300)).await;
    let since = s1.identifies.iter().position(|public| !public).unwrap();
    assert!(!s1.identifies[since..].contains(&true), "D1's Identifies: {:?}", s1.identifies);
}

const RELAYED: &str = "/test/relayed/1.0.0";

/// Scenario 3: a NATed host keeps a reservation on a public relay, and hosts behind
/// another NAT reach it through the relay (README layout naming the relay by peer id or
/// by address, and the original layout's RELAY=1), but not directly.
///
/// Each way to connect has its own dialer (D2, D2b, D2c, all behind R2): after a first
/// relayed connection, DCUtR may upgrade it to a direct one, and a later Connect from the
/// same daemon would then (rightly) use that and not be relayed. The direct Connect that
/// must fail is D2c's, made before anything else: D2c has no bootstrap peer and no mDNS,
/// so it knows D1 by nothing but the connect string. (D2 and D2b may already hold a
/// relayed connection to D1 by then, which a direct Connect rightly reuses: their DHT
/// bootstrap through P can reach D1 if D1 serves the DHT.)
#[tokio::test]
async fn a_natted_peer_is_reached_through_a_relay_and_not_directly() {
    let mut lab = lab_or_skip!('3');
    let p_host = lab.public_host("P", 1);
    let r1 = lab.router("R1", 11, 1);
    let r2 = lab.router("R2", 12, 2);
    let d1_host = lab.nat_host(&r1, "D1", 2);
    let d2_host = lab.nat_host(&r2, "D2", 2);
    let d2b_host = lab.nat_host(&r2, "D2b", 3);
    let d2c_host = lab.nat_host(&r2, "D2c", 4);
    let p = lab.daemon(&p_host, &["-relay"]);
    let p_addr = p.tcp_addr().to_string();
    let p_id = p.peer_id.to_base58();
    let d1 = lab.daemon(&d1_host, &["--relay-via", &p_addr, "-peer", &p_addr]);
    let d1_id = d1.peer_id.to_base58();
    let d2 = lab.daemon(&d2_host, &["-peer", &p_addr]);
    let d2b = lab.daemon(&d2b_host, &["-peer", &p_addr]);
    let d2c = lab.daemon(&d2c_host, &["-nomdns"]);
    let mut s1 = Session::open(&d1).await;
    s1.listen(RELAYED).await;

    // No direct way in, on the wire: from R2's LAN, P answers; D1's private address is
    // not routed, and R1 forwards no port.
    assert!(lab.tcp_reaches(&d2c_host, p_host.ip, 4001), "D2c cannot reach P");
    assert!(!lab.tcp_reaches(&d2c_host, d1_host.ip, 4001), "D2c reaches D1's private address");
    assert!(!lab.tcp_reaches(&d2c_host, r1.wan, 4001), "D2c reaches D1 through R1's WAN address");
    // ...nor for the daemon, given D1's connect string.
    let mut s2c = Session::open(&d2c).await;
    let started = Instant::now();
    let direct = s2c.connect(&d1.connect_string(), Relay::Direct, RELAYED).await;
    let error = direct.expect_err("a direct Connect from D2c to D1 behind R1");
    eprintln!(
        "D2c -> D1 direct, at its private address, refused after {:.1} s: {error}",
        started.elapsed().as_secs_f64()
    );

    // D1 announces its relayed address once its reservation on P is accepted.
    // (ADDRESSES lists it without D1's own id at the end, as its other addresses.)
    let circuit = format!("/p2p/{p_id}/p2p-circuit");
    let since = Instant::now();
    loop {
        let look = Session::open(&d1).await;
        if look.addresses.contains(&circuit) {
            eprintln!(
                "D1 announces its relayed address {:.1} s after the sessions opened: {}",
                since.elapsed().as_secs_f64(),
                look.addresses
            );
            break;
        }
        let waited = since.elapsed();
        assert!(
            waited < STEP,
            "D1's addresses after {waited:?}: {} (no ..{circuit})",
            look.addresses
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Three dialers, three ways to name the relay; each is tried even when one before it
    // failed, and the failures are reported together.
    let mut failures = Vec::new();
    let ways = [
        (&d2, "README layout, the relay by peer id", Relay::Via(p_id.clone())),
        (&d2b, "original layout, RELAY=1 (its bootstrap peer P is a relay)", Relay::Any),
        (&d2c, "README layout, the relay by address (D2c knew nothing of P)", Relay::Via(p_addr)),
    ];
    let mut s2c = Some(s2c);
    // Every dialer's session stays open to the end: one that closed would close its
    // stream, and D1's session would see that among the Listener Connections it awaits.
    let mut done = Vec::new();
    for (dialer, how, relay) in ways {
        let mut session = match s2c.take_if(|_| dialer.name == "D2c") {
            Some(session) => session,
            None => Session::open(dialer).await,
        };
        session.presence_off().await;
        let patience = Duration::from_secs(8);
        let tried = session
            .try_connect_retrying(&d1_id, relay, RELAYED, patience, Duration::from_secs(1))
            .await;
        let (id, who) = match tried {
            Ok(connected) => connected,
            Err(why) => {
                failures.push(format!("{} ({how}): {why}", dialer.name));
                continue;
            }
        };
        assert_eq!(who, d1_id, "{how}");
        let relay = session.relayed(id).await;
        assert_eq!(relay, p_id, "{} ({how}): the relay in Relayed", dialer.name);
        let (l_id, from) = s1.accepted(RELAYED).await;
        assert_eq!(from, dialer.peer_id.to_base58(), "{how}");
        exchange(&mut session, id, &mut s1, l_id).await;
        eprintln!(
            "{} reached D1 through P ({how}): Relayed named P, data went both ways",
            dialer.name
        );
        done.push(session);
    }
    assert!(failures.is_empty(), "relayed connects that failed:\n{}", failures.join("\n"));

    // DCUtR: D2 and D1, both behind port-preserving NATs that drop unsolicited packets,
    // punch a direct connection; D2's peer table then shows D1 as no longer relayed.
    let mut watch = Session::open(&d2).await;
    watch.send(ClientMsg::Presence { on: true }).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match watch.raw(deadline).await {
            Some(ServerMsg::Peer { state, peer_id, info }) if peer_id == d1_id => {
                let info: serde_json::Value = serde_json::from_str(&info).unwrap();
                let connected = state == 2 || state == 5;
                if connected && info["relayed"] == false {
                    eprintln!("D2 <-> D1: hole punched, direct connection: {info}");
                    break;
                }
            }
            Some(_) => {}
            None => panic!("D2 never got a direct connection to D1 (no hole punch)"),
        }
    }
}

/// Scenario 4: a NATed host finds a public peer it was never told about, by its bare
/// peer id, through the DHT its bootstrap peer is part of.
#[tokio::test]
async fn the_dht_finds_a_public_peer_by_its_id() {
    let mut lab = lab_or_skip!('4');
    let p_host = lab.public_host("P", 1);
    let q_host = lab.public_host("Q", 2);
    let r2 = lab.router("R2", 12, 2);
    let d2_host = lab.nat_host(&r2, "D2", 2);
    let p = lab.daemon(&p_host, &[]);
    let p_addr = p.tcp_addr().to_string();
    let q = lab.daemon(&q_host, &["-peer", &p_addr]);
    let d2 = lab.daemon(&d2_host, &["-peer", &p_addr]);
    let started = Instant::now();
    let mut sq = Session::open(&q).await;
    sq.listen(ECHO).await;
    let mut s2 = Session::open(&d2).await;
    // Q serves the DHT once AutoNAT finds it public: allow for that.
    let (id, who) = s2
        .connect_retrying(
            &q.peer_id.to_base58(),
            Relay::Direct,
            ECHO,
            Duration::from_secs(45),
            Duration::from_secs(2),
        )
        .await;
    eprintln!(
        "DHT: D2 reached Q by bare peer id {:.1} s after all started",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(who, q.peer_id.to_base58());
    let (q_id, from) = sq.accepted(ECHO).await;
    assert_eq!(from, d2.peer_id.to_base58());
    exchange(&mut s2, id, &mut sq, q_id).await;
}

/// Scenario 5: AutoRelay. A NATed daemon given no `--relay-via`, only a bootstrap peer
/// that serves as a relay, finds out it is private and takes a reservation on that
/// relay by itself; its connect string then carries the circuit address, and a daemon
/// behind another NAT reaches it with nothing but that string.
#[tokio::test]
async fn a_natted_peer_without_relay_via_is_reached_through_autorelay() {
    let mut lab = lab_or_skip!('5');
    let p_host = lab.public_host("P", 1);
    let r1 = lab.router("R1", 11, 1);
    let r2 = lab.router("R2", 12, 2);
    let d1_host = lab.nat_host(&r1, "D1", 2);
    let d2_host = lab.nat_host(&r2, "D2", 2);
    let p = lab.daemon(&p_host, &["-relay"]);
    let p_addr = p.tcp_addr().to_string();
    let p_id = p.peer_id.to_base58();
    let d1 = lab.daemon(&d1_host, &["-peer", &p_addr]);
    let d1_id = d1.peer_id.to_base58();
    let d2 = lab.daemon(&d2_host, &["-peer", &p_addr]);
    let started = Instant::now();
    let mut s1 = Session::open(&d1).await;
    s1.listen(RELAYED).await;
    // Private (AutoNAT), then a circuit address through P among its addresses.
    let circuit = format!("/p2p/{p_id}/p2p-circuit");
    let look = loop {
        let look = Session::open(&d1).await;
        if look.addresses.contains(&circuit) {
            break look;
        }
        let waited = started.elapsed();
        // AutoNAT's verdict takes one to three of its rounds (11 s and 30 s seen).
        assert!(
            waited < Duration::from_secs(90),
            "D1's addresses after {waited:?}: {}",
            look.addresses
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(look.identifies.last(), Some(&false), "D1 is private: {:?}", look.identifies);
    eprintln!(
        "AutoRelay: D1 announces a circuit through P {:.1} s after it started: {}",
        started.elapsed().as_secs_f64(),
        look.addresses
    );
    // D2, behind R2, connects with D1's connect string alone (no relay named).
    let mut s2 = Session::open(&d2).await;
    s2.presence_off().await;
    let connect = lab_connect_string(&d1, &look.addresses);
    let (id, who) = s2
        .try_connect_retrying(&connect, Relay::Direct, RELAYED, STEP, Duration::from_secs(1))
        .await
        .expect("D2 reaches D1 through its AutoRelay address");
    assert_eq!(who, d1_id);
    assert_eq!(s2.relayed(id).await, p_id, "D2's stream goes through P");
    let (l_id, from) = s1.accepted(RELAYED).await;
    assert_eq!(from, d2.peer_id.to_base58());
    exchange(&mut s2, id, &mut s1, l_id).await;
}

/// `daemon`'s `/addrs/` connect string with the addresses a session was told (a JSON
/// array of multiaddrs without `/p2p/<daemon>`).
fn lab_connect_string(daemon: &Daemon, addresses: &str) -> String {
    let addrs: Vec<String> = serde_json::from_str(addresses).unwrap();
    let target = libp2p_websocket::protocol::ConnectTarget {
        peer: daemon.peer_id,
        addrs: addrs.iter().filter_map(|a| a.parse().ok()).collect(),
    };
    target.to_connect_string()
}

/// Scenario 6: UPnP. A daemon behind a router that runs a UPnP IGD (miniupnpd) maps its
/// port there by itself, announces the router's address, and is then reached at it
/// from the internet, directly.
#[tokio::test]
async fn a_natted_peer_maps_its_port_with_upnp_and_is_reached_directly() {
    let mut lab = lab_or_skip!('6');
    let p_host = lab.public_host("P", 1);
    let q_host = lab.public_host("Q", 2);
    let r1 = lab.router("R1", 11, 1);
    let d1_host = lab.nat_host(&r1, "D1", 2);
    if let Err(why) = lab.upnp_gateway(&r1) {
        eprintln!("no UPnP gateway here ({why}); skipping");
        return;
    }
    // Before: nothing on R1's WAN address reaches inside.
    assert!(!lab.tcp_reaches(&p_host, r1.wan, 4001), "R1 forwards 4001 before any mapping");
    let p = lab.daemon(&p_host, &[]);
    let d1 = lab.daemon(&d1_host, &["-peer", &p.tcp_addr().to_string()]);
    let mapped = format!("/ip4/{}/tcp/4001", r1.wan);
    let started = Instant::now();
    let look = loop {
        let look = Session::open(&d1).await;
        if look.addresses.contains(&format!("\"{mapped}\"")) {
            break look;
        }
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(45),
            "D1's addresses after {waited:?}: {} (no {mapped}); miniupnpd:\n{}",
            look.addresses,
            lab.log_of(&format!("miniupnpd on {}", r1.ns))
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "UPnP: D1 announces {mapped} {:.1} s after it started: {}",
        started.elapsed().as_secs_f64(),
        look.addresses
    );
    // The router now forwards it, and a public daemon that knows D1 by nothing else
    // (Q: no bootstrap peer) reaches D1 there.
    assert!(lab.tcp_reaches(&q_host, r1.wan, 4001), "R1 does not forward the mapped port");
    let q = lab.daemon(&q_host, &["-nomdns"]);
    let mut s1 = Session::open(&d1).await;
    s1.listen(RELAYED).await;
    let mut sp = Session::open(&q).await;
    let target = ConnectTarget { peer: d1.peer_id, addrs: vec![mapped.parse().unwrap()] };
    let (id, who) = sp
        .try_connect_retrying(
            &target.to_connect_string(),
            Relay::Direct,
            RELAYED,
            STEP,
            Duration::from_secs(1),
        )
        .await
        .expect("Q reaches D1 at its mapped address");
    assert_eq!(who, d1.peer_id.to_base58());
    let (l_id, _) = s1.accepted(RELAYED).await;
    exchange(&mut sp, id, &mut s1, l_id).await;
}
