//! `/metrics` during real traffic: a real session sends Data to a real libp2p peer and
//! the counters move by exactly what was sent; every scrape parses as Prometheus
//! text; refusals, limits and pauses are counted; `--metrics-addr` and `-nometrics`.

mod common;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::*;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, SinkExt as _, StreamExt as _};
use libp2p::StreamProtocol;
use libp2p_websocket::{
    protocol::{ClientMsg, ServerMsg},
    Config,
};
use prometheus_parse::{LineInfo, Scrape, Value};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

const PROTO: &str = "/test/metrics/1";

/// One scrape: the text and its samples.
struct Metrics {
    text: String,
    samples: Scrape,
}

impl Metrics {
    /// The value of `name` with (at least) `labels`; histograms give their count.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self
            .samples
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(buckets) => {
                    buckets.iter().find(|b| b.less_than.is_infinite()).map_or(0.0, |b| b.count)
                }
                Value::Summary(_) => panic!("no summaries here"),
            })
            .collect();
        assert!(matching.len() <= 1, "{name}{labels:?} is ambiguous: {matching:?}");
        matching.first().copied().unwrap_or(0.0)
    }

    /// The sum of `name` over all its series.
    fn sum(&self, name: &str) -> f64 {
        let samples = self.samples.samples.iter().filter(|s| s.metric == name);
        samples
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }
}

/// GET /metrics, checked to be Prometheus text and parsed.
async fn scrape(addr: SocketAddr) -> Metrics {
    let (head, body) = http_get(addr, "/metrics", &format!("127.0.0.1:{}", addr.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"));
    check_format(&body);
    let samples = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parses");
    Metrics { text: body, samples }
}

/// What prometheus-parse takes silently is checked here: every line is a HELP, TYPE
/// or UNIT line, a sample whose value is a number, or the closing `# EOF`; each
/// family is described once (a family registered twice would be served twice); each
/// sample belongs to a family described before it.
fn check_format(text: &str) {
    assert!(text.ends_with("# EOF\n"), "the exposition ends with # EOF");
    let mut families: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } => {}
            LineInfo::Type { metric_name, metric_alias, sample_type } => {
                let family = metric_alias.unwrap_or(metric_name);
                let kind = format!("{sample_type:?}");
                assert!(families.insert(family.clone(), kind).is_none(), "{family} twice");
            }
            LineInfo::Sample { metric_name, value, .. } => {
                assert!(value.parse::<f64>().is_ok(), "not a number: {line}");
                let family = ["_total", "_bucket", "_sum", "_count", "_created", "_info"]
                    .iter()
                    .find_map(|suffix| metric_name.strip_suffix(suffix))
                    .filter(|f| families.contains_key(*f))
                    .unwrap_or(metric_name);
                assert!(families.contains_key(family), "a sample of no family: {line}");
            }
            LineInfo::Empty => panic!("an empty line"),
            LineInfo::Ignored => {
                assert!(line == "# EOF" || line.starts_with("# UNIT "), "not Prometheus: {line}")
            }
        }
    }
    for family in ["libp2p_websocket_data_bytes", "libp2p_ping_rtt_seconds"] {
        assert!(families.contains_key(family), "{family} is served");
    }
}

/// Scrapes until `done` holds.
async fn scrape_until(addr: SocketAddr, done: impl Fn(&Metrics) -> bool) -> Metrics {
    poll_until("metrics", || scrape(addr), done).await
}

const IN: (&str, &str) = ("direction", "browser_to_libp2p");
const OUT: (&str, &str) = ("direction", "libp2p_to_browser");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_what_was_sent_to_a_real_peer() {
    let daemon = Daemon::local().await;
    let (mut client, _) = Client::started(&daemon).await;
    // A plain rust-libp2p peer that reads what the browser sends, says how much, and
    // then writes back `back` bytes, keeping the stream open.
    let peer = TestPeer::new().await;
    let mut incoming = peer.control.clone().accept(StreamProtocol::new(PROTO)).unwrap();
    let sizes = [10_000usize, 65_536, 7];
    let sent: usize = sizes.iter().sum();
    let back = 12_345usize;
    let (read_tx, read_rx) = oneshot::channel();
    let remote = tokio::spawn(async move {
        let (_, mut stream) = incoming.next().await.unwrap();
        let mut got = vec![0u8; sent];
        stream.read_exact(&mut got).await.unwrap();
        read_tx.send(got).unwrap();
        stream.write_all(&pattern(back, 3)).await.unwrap();
        stream.flush().await.unwrap();
        stream // held open
    });

    let before = scrape(daemon.addr).await;
    assert_eq!(before.get("libp2p_websocket_sessions", &[]), 1.0);
    let id = client.open(&peer.connect_string(), PROTO, false).await;
    let data = pattern(sent, 9);
    let mut at = 0;
    for size in sizes {
        client.data(id, &data[at..at + size]).await;
        at += size;
    }
    assert_eq!(within("the peer reads", read_rx).await.unwrap(), data);
    assert_eq!(client.read_bytes(id, back).await, pattern(back, 3));

    // Scraped with the session and its stream open.
    let during = scrape(daemon.addr).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| during.get(name, labels) - before.get(name, labels);
    assert_eq!(delta("libp2p_websocket_data_bytes_total", &[IN]), sent as f64);
    assert_eq!(delta("libp2p_websocket_data_messages_total", &[IN]), sizes.len() as f64);
    assert_eq!(delta("libp2p_websocket_data_bytes_total", &[OUT]), back as f64);
    assert!(delta("libp2p_websocket_data_messages_total", &[OUT]) >= 1.0);
    let outgoing_raw = [("direction", "outgoing"), ("framing", "raw")];
    assert_eq!(delta("libp2p_websocket_streams_opened_total", &outgoing_raw), 1.0);
    assert_eq!(during.get("libp2p_websocket_streams", &outgoing_raw), 1.0);
    assert_eq!(during.get("libp2p_websocket_connect_seconds", &[("outcome", "opened")]), 1.0);
    // Every message crossed the WebSocket: the three Data and the Connect at least.
    assert!(delta("libp2p_websocket_ws_message_bytes", &[IN]) >= 4.0);
    // libp2p's own families saw the connection and its bytes.
    assert!(during.sum("libp2p_swarm_connections_established_total") >= 1.0);
    let outbound = during
        .samples
        .samples
        .iter()
        .filter(|s| s.metric == "libp2p_bandwidth_bytes_total")
        .filter(|s| s.labels.get("direction") == Some("Outbound"))
        .map(|s| if let Value::Counter(v) | Value::Untyped(v) = s.value { v } else { 0.0 })
        .sum::<f64>();
    assert!(outbound >= sent as f64, "the transport carried the Data: {outbound}");
    assert!(!during.text.contains(&peer.peer_id.to_base58()), "no peer id in a label");

    // The dashboard's part of /status says the same of this session and peer.
    let live = status(daemon.addr).await["live"].clone();
    assert_eq!(live["session_count"], 1);
    assert_eq!(live["sessions"][0]["bytes_from_browser"], sent);
    assert_eq!(live["sessions"][0]["bytes_to_browser"], back);
    assert_eq!(live["sessions"][0]["origin"], serde_json::Value::Null, "no Origin sent");
    assert_eq!(live["data_bytes"]["from_browsers"], sent);
    let peer_row = live["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == peer.peer_id.to_base58())
        .expect("the peer is listed")
        .clone();
    assert_eq!(peer_row["relayed"], false);

    // The browser leaves: the session is counted as ended, its stream as closed.
    drop(client);
    let after = scrape_until(daemon.addr, |m| m.get("libp2p_websocket_sessions", &[]) == 0.0).await;
    assert_eq!(after.get("libp2p_websocket_sessions_ended_total", &[("reason", "left")]), 1.0);
    let closed =
        scrape_until(daemon.addr, |m| m.get("libp2p_websocket_streams", &outgoing_raw) == 0.0)
            .await;
    assert_eq!(closed.get("libp2p_websocket_sessions_opened_total", &[]), 1.0);
    remote.abort();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_limits_are_counted_by_kind() {
    let mut config = Config::local();
    config.limits.max_sessions = 1;
    config.limits.max_listeners_per_session = 1;
    let daemon = Daemon::start(config).await;
    let mut client = Client::connect(&daemon).await;
    assert!(matches!(client.recv().await, ServerMsg::Hello { started: false, .. }));
    // Before Start: a Connect the node cannot serve yet.
    let peer = TestPeer::new().await;
    let refused = client.connect_to(&peer.connect_string(), PROTO, false).await;
    assert!(matches!(refused, ServerMsg::PeerConnectionRefused { .. }), "{refused:?}");
    client.send(ClientMsg::Start { key: Bytes::new() }).await;
    assert!(matches!(client.recv().await, ServerMsg::Identify { .. }));
    client.send(ClientMsg::Listen { frames: false, protocol: "no-slash".into() }).await;
    assert!(matches!(client.recv().await, ServerMsg::ListenRefused { .. }));
    client.listen("/test/one/1", false).await;
    client.send(ClientMsg::Listen { frames: false, protocol: "/test/two/1".into() }).await;
    assert!(matches!(client.recv().await, ServerMsg::ListenRefused { .. }));
    // A second session is one too many.
    let mut second = Client::connect(&daemon).await;
    let (code, _) = second.expect_close_frame().await;
    assert_eq!(code, 1013);

    let m = scrape_until(daemon.addr, |m| {
        m.get("libp2p_websocket_sessions_ended_total", &[("reason", "too_many")]) == 1.0
    })
    .await;
    let refusal = |request: &str, kind: &str| {
        m.get("libp2p_websocket_refusals_total", &[("request", request), ("kind", kind)])
    };
    assert_eq!(refusal("connect", "not_started"), 1.0);
    assert_eq!(refusal("listen", "bad_protocol"), 1.0);
    assert_eq!(refusal("listen", "limit"), 1.0);
    let limit = |limit: &str| m.get("libp2p_websocket_limit_hits_total", &[("limit", limit)]);
    assert_eq!(limit("listeners_per_session"), 1.0);
    assert_eq!(limit("sessions"), 1.0);
    assert_eq!(limit("streams_per_session"), 0.0);
    drop(client);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_reads_nothing_pauses_the_session_and_is_counted() {
    let mut config = Config::local();
    config.limits.session_write_buffer = 256 * 1024;
    config.limits.stream_stall_timeout = Duration::from_secs(2);
    let daemon = Daemon::start(config).await;
    let (client, _) = Client::started(&daemon).await;
    let mut client = client;
    let peer = TestPeer::new().await;
    let mut sink = peer.control.clone().accept(StreamProtocol::new(PROTO)).unwrap();
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Some((_, stream)) = sink.next().await {
            streams.push(stream); // held open, never read
        }
    });
    let id = client.open(&peer.connect_string(), PROTO, false).await;
    // 32 MiB for a remote that takes nothing: far over what yamux and the socket
    // buffers hold, so the session must stop reading its WebSocket.
    let (mut ws_tx, _ws_rx) = client.ws.split();
    let sender = tokio::spawn(async move {
        let chunk = Bytes::from(vec![5u8; 64 * 1024]);
        for _ in 0..512 {
            let msg = ClientMsg::Data { id, data: chunk.clone() };
            if ws_tx.send(Message::Binary(msg.encode())).await.is_err() {
                break;
            }
        }
    });
    let m = scrape_until(daemon.addr, |m| {
        m.get("libp2p_websocket_backpressure_pauses_total", &[]) >= 1.0
    })
    .await;
    assert!(m.get("libp2p_websocket_data_bytes_total", &[IN]) > 0.0);
    sender.abort();
    held.abort();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_session_is_counted_apart_and_its_expiry_as_expired() {
    let mut config = Config::local();
    config.limits.resume_grace = Duration::from_secs(1);
    let daemon = Daemon::start(config).await;
    let mut page = common::resume::ResumeClient::new(&daemon.url(), None, "resume").await;
    let m = scrape(daemon.addr).await;
    assert_eq!(m.get("libp2p_websocket_sessions", &[]), 1.0);
    assert_eq!(m.get("libp2p_websocket_sessions_detached", &[]), 0.0);
    page.close().await;
    let m = scrape_until(daemon.addr, |m| m.get("libp2p_websocket_sessions_detached", &[]) == 1.0)
        .await;
    assert_eq!(m.get("libp2p_websocket_sessions", &[]), 0.0, "no WebSocket is open");
    let expired = ("reason", "expired");
    let m = scrape_until(daemon.addr, |m| {
        m.get("libp2p_websocket_sessions_ended_total", &[expired]) == 1.0
    })
    .await;
    assert_eq!(m.get("libp2p_websocket_sessions_detached", &[]), 0.0);
    daemon.stop().await;
}

#[test]
fn metrics_on_an_address_of_their_own_and_off() {
    let dir = std::env::temp_dir();
    let own = Process::spawn(
        &["-nopeers", "-listen", "/ip4/127.0.0.1/tcp/0", "-metrics-addr", "127.0.0.1:0"],
        &dir,
    );
    let metrics_at = within_secs(|| {
        let log = own.log.lock().unwrap();
        let line = log.lines().find(|l| l.contains(libp2p_websocket::METRICS_READY))?;
        let url = line.split("url=http://").nth(1)?;
        url.split('/').next()?.parse::<SocketAddr>().ok()
    });
    let main_at: SocketAddr = format!("127.0.0.1:{}", own.port).parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let m = scrape(metrics_at).await;
        assert_eq!(m.get("libp2p_websocket_sessions", &[]), 0.0);
        // Not beside /status then, which stays where it was.
        let (head, _) = http_get(main_at, "/metrics", "localhost").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        status(main_at).await;
        // The metrics address is loopback: a foreign Host is DNS rebinding.
        let (head, _) = http_get(metrics_at, "/metrics", "evil.example").await;
        assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    });
    assert!(own.terminate().success());

    let off = Process::spawn(&["-nopeers", "-listen", "/ip4/127.0.0.1/tcp/0", "-nometrics"], &dir);
    let off_at: SocketAddr = format!("127.0.0.1:{}", off.port).parse().unwrap();
    runtime.block_on(async {
        let (head, _) = http_get(off_at, "/metrics", "localhost").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        assert_eq!(status(off_at).await["live"]["counting"], false);
    });
    assert!(off.terminate().success());
}

/// Polls `f` until it gives a value, for [`STEP`] at most.
fn within_secs<T>(f: impl Fn() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}
