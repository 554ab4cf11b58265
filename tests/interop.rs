//! Interop with real js-libp2p 3 nodes (`tests/interop/echo.mjs`: TCP, noise, yamux,
//! ordinary js-libp2p backpressure; `tests/interop/gossip.mjs`: the same with
//! identify and gossipsub), run by Node from a lockfile (`npm ci` in
//! `tests/interop/` on first use, bounded).
//!
//! The deep-pipeline finding of the flow-control work: a session echoing through such a
//! peer with 8 MiB in flight must complete a large transfer, byte-exact, with and
//! without the credit extension. (Speed is the benchmark's business; the figures are
//! printed.)

mod common;

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{credit::CreditClient, *};
use libp2p::{Multiaddr, PeerId};
use libp2p_websocket::protocol::ConnectTarget;

const ECHO: &str = "/test/echo/1";
const TOTAL: usize = 32 << 20;

/// The js-libp2p echo node, killed when dropped.
struct JsPeer {
    child: Child,
    target: String,
}

impl Drop for JsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs the js-libp2p packages from the lockfile, once (the tests of this file
/// run at once, and two `npm ci` in one folder break each other).
fn npm_ci() {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = interop_dir();
    if dir.join("node_modules/@libp2p/gossipsub").exists() {
        return;
    }
    let mut npm = Command::new("timeout");
    npm.args(["300", "npm", "ci", "--no-audit", "--no-fund"]).current_dir(&dir);
    let out = npm.output().expect("npm runs");
    assert!(out.status.success(), "npm ci failed: {}", String::from_utf8_lossy(&out.stderr));
}

async fn js_echo() -> JsPeer {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    }
    tokio::task::spawn_blocking(npm_ci).await.unwrap();
    let mut child = Command::new("node")
        .arg("echo.mjs")
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let line = within(
        "the js-libp2p node starts",
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("READY"), "{line}");
    let peer: PeerId = words.next().unwrap().parse().unwrap();
    let addr: Multiaddr = words.next().unwrap().parse().unwrap();
    let target = ConnectTarget { peer, addrs: vec![addr] }.to_connect_string();
    JsPeer { child, target }
}

fn rate(what: &str, took: Duration) {
    let mib = (TOTAL >> 20) as f64;
    eprintln!(
        "{what}: {mib} MiB in {:.2} s ({:.1} MiB/s)",
        took.as_secs_f64(),
        mib / took.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_pipeline_through_a_js_libp2p_echo_completes_without_credit() {
    let js = js_echo().await;
    let daemon = Daemon::local().await;
    let (mut client, _) = Client::started(&daemon).await;
    let id = client.open(&js.target, ECHO, false).await;
    for window in [256 << 10, 8 << 20] {
        let took = within("the pipeline", pipeline(&mut client, id, TOTAL, window)).await;
        rate(&format!("without credit, {} KiB in flight", window >> 10), took);
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_pipeline_through_a_js_libp2p_echo_completes_with_credit() {
    let js = js_echo().await;
    let daemon = Daemon::local().await;
    let mut c = CreditClient::new(&daemon, None).await;
    let id = c.open(&js.target, ECHO, false).await;
    let data = pattern(TOTAL, 5);
    for window in [256 << 10, 8 << 20] {
        let took = within("the pipeline", c.pipeline(id, &data, window)).await;
        rate(&format!("with credit, {} KiB in flight", window >> 10), took);
    }
    daemon.stop().await;
}

/// The js-libp2p gossipsub node, subscribed to `topic`, dialing `dial`: what it
/// prints, line by line, and a way to make it publish.
struct JsGossip {
    child: Child,
    peer: PeerId,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Drop for JsGossip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl JsGossip {
    async fn start(topic: &str, dial: &[Multiaddr]) -> Self {
        tokio::task::spawn_blocking(npm_ci).await.unwrap();
        let mut child = Command::new("node")
            .arg("gossip.mjs")
            .arg(topic)
            .args(dial.iter().map(|a| a.to_string()))
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let ready = within("the js-libp2p node starts", lines.recv()).await.unwrap();
        let peer = ready.strip_prefix("READY ").expect(&ready).parse().unwrap();
        Self { child, peer, lines }
    }

    fn publish(&mut self, text: &str) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{text}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for a line starting with `prefix`; returns the rest.
    async fn expect(&mut self, prefix: &str) -> String {
        within(&format!("the js node prints {prefix}"), async {
            loop {
                let line = self.lines.recv().await.expect("the js node runs");
                assert!(!line.starts_with("ERROR"), "{line}");
                if let Some(rest) = line.strip_prefix(prefix) {
                    return rest.to_string();
                }
            }
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_and_a_js_libp2p_gossipsub_node_exchange_topic_messages_every_way() {
    use common::topics::*;
    const TOPIC: &str = "gem-rush/interop";
    let a = Daemon::with_key(libp2p_websocket::node::NodeKey::generate()).await;
    let (mut a1, a_id) = pubsub_session(&a).await;
    let b = daemon_dialing(full_addr(&a_id)).await;
    let (mut b1, b_id) = pubsub_session(&b).await;
    let mut js = JsGossip::start(TOPIC, &[full_addr(&a_id)]).await;
    // Everyone on the topic knows of everyone it is connected to.
    let on_a = subscribe(&mut a1, TOPIC).await;
    let on_b = subscribe(&mut b1, TOPIC).await;
    if !on_a.contains(&js.peer.to_base58()) {
        within("A hears the js node joined", joined(&mut a1, &js.peer)).await;
    }
    if !on_b.contains(&a_id.peer_id.to_base58()) {
        within("B hears A joined", joined(&mut b1, &a_id.peer_id)).await;
    }
    js.expect(&format!("JOINED {}", a_id.peer_id)).await;

    // js → A (direct) and → B (forwarded by A's gossipsub).
    js.publish("from js");
    for session in [&mut a1, &mut b1] {
        let (from, _, data) = within("the js message arrives", message(session)).await;
        assert_eq!((from, data), (js.peer.to_base58(), b"from js".to_vec()));
    }
    // A page on A → js and → B.
    publish(&mut a1, TOPIC, b"from a").await;
    let got = js.expect("MESSAGE ").await;
    assert!(got.starts_with(&a_id.peer_id.to_base58()) && got.ends_with(" from a"), "{got}");
    let (from, _, data) = message(&mut b1).await;
    assert_eq!((from, data), (a_id.peer_id.to_base58(), b"from a".to_vec()));
    // A page on B → js (through A, which js is connected to) and → A.
    publish(&mut b1, TOPIC, b"from b").await;
    let got = js.expect("MESSAGE ").await;
    assert!(got.starts_with(&b_id.peer_id.to_base58()) && got.ends_with(" from b"), "{got}");
    let (from, _, data) = message(&mut a1).await;
    assert_eq!((from, data), (b_id.peer_id.to_base58(), b"from b".to_vec()));
    // Nothing twice.
    no_message(&mut a1, Duration::from_millis(500)).await;
    no_message(&mut b1, Duration::from_millis(500)).await;
    b.stop().await;
    a.stop().await;
}
