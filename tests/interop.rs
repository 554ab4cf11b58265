//! Interop with a real js-libp2p 3 node (`tests/interop/echo.mjs`: TCP, noise, yamux,
//! ordinary js-libp2p backpressure), run by Node from a lockfile (`npm ci` in
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
    if dir.join("node_modules/libp2p").exists() {
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
