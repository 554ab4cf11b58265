//! Soak: many browsers on three daemons for a stated time — opening, using and
//! abandoning streams, dropping WebSockets mid-transfer, a daemon killed and restarted —
//! then checks that nothing was left behind and that every framed message delivered
//! arrived intact and in order.
//!
//! `cargo bench --bench soak -- --seconds 600 [--workers 24]` (release build; the
//! daemons are the real binary, each its own process; all traffic on 127.0.0.1).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{Client, Process};
use libp2p_websocket::protocol::{ClientMsg, ConnId, ServerMsg};
use rand_lite::Rng;

/// Counters of what the soak did.
#[derive(Default)]
struct Tally {
    sessions: AtomicU64,
    streams: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    dropped_mid_transfer: AtomicU64,
    refused: AtomicU64,
    kills: AtomicU64,
}

/// The payload of message `seq` on stream `stream`: its length and every byte follow
/// from the two, so the receiver checks both order and content.
fn payload(stream: u64, seq: u64) -> Vec<u8> {
    let len = ((stream * 7919 + seq * 104_729) % 4000) as usize + 16;
    let mut data = Vec::with_capacity(len);
    data.extend_from_slice(&stream.to_be_bytes());
    data.extend_from_slice(&seq.to_be_bytes());
    data.extend((16..len).map(|i| (i as u64 ^ stream ^ seq.rotate_left(7)) as u8));
    data
}

fn check(data: &[u8], stream: u64, expected_seq: u64) {
    assert!(data.len() >= 16, "short message");
    let got_stream = u64::from_be_bytes(data[..8].try_into().unwrap());
    let got_seq = u64::from_be_bytes(data[8..16].try_into().unwrap());
    assert_eq!(got_stream, stream, "message of another stream");
    assert_eq!(got_seq, expected_seq, "message out of order or lost in the middle");
    assert!(data == payload(stream, got_seq).as_slice(), "message {got_seq} corrupted");
}

fn main() {
    let mut seconds = 60u64;
    let mut workers = 24usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).expect("--seconds N"),
            "--workers" => workers = args.next().and_then(|v| v.parse().ok()).expect("--workers N"),
            _ => {} // cargo bench passes --bench
        }
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(soak(Duration::from_secs(seconds), workers));
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn spawn(dir: &std::path::Path) -> Process {
    Process::spawn(
        &["-nopeers", "-listen", "/ip4/127.0.0.1/tcp/0", "--keepalive-timeout", "10"],
        dir,
    )
}

async fn soak(duration: Duration, workers: usize) {
    let dir = std::env::temp_dir().join(format!("l2pws-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A and B stay up; C is killed and restarted now and then.
    let a = spawn(&dir);
    let b = spawn(&dir);
    let c = Arc::new(tokio::sync::Mutex::new(spawn(&dir)));
    let urls = Arc::new(std::sync::Mutex::new(vec![a.url(), b.url(), c.lock().await.url()]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Warm up so the baseline includes the node's steady state.
    for url in [a.url(), b.url()] {
        let mut client = Client::connect_url(&url).await;
        client.handshake().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = [rss_kib(a.child.id()).0, rss_kib(b.child.id()).0];
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + duration;
    let started = Instant::now();

    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (urls, tally) = (urls.clone(), tally.clone());
        tasks.spawn(async move {
            let mut rng = Rng::new(worker as u64 + 1);
            while Instant::now() < deadline {
                let (host_url, guest_url, killable) = {
                    let urls = urls.lock().unwrap();
                    let (h, g) = (rng.below(urls.len()), rng.below(urls.len()));
                    (urls[h].clone(), urls[g].clone(), h == 2 || g == 2)
                };
                let seed = rng.next();
                let tally2 = tally.clone();
                let round = tokio::spawn(async move {
                    let mut rng = Rng::new(seed);
                    let talk = conversation(&host_url, &guest_url, worker, &mut rng, &tally2);
                    tokio::time::timeout(Duration::from_secs(60), talk).await.unwrap_or_else(|_| {
                        panic!("worker {worker}: a conversation stalled for 60 s")
                    })
                });
                if let Err(e) = round.await {
                    // A conversation on the daemon that gets killed may be cut off; any
                    // other failure (a lost, reordered or corrupted frame) is fatal.
                    let payload = e.into_panic();
                    let text = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let cut_off = [
                        "WebSocket ended",
                        "WebSocket error",
                        "timed out: WebSocket",
                        "Broken pipe",
                        "Connection reset",
                    ]
                    .iter()
                    .any(|m| text.contains(m));
                    if killable && cut_off {
                        tally.refused.fetch_add(1, Relaxed);
                    } else {
                        eprintln!(
                            "FATAL (worker {worker}, killable daemon involved: {killable}): {text}"
                        );
                        std::panic::resume_unwind(payload);
                    }
                }
            }
        });
    }
    // The killer: every ~10 s, C dies without warning and comes back on a new port.
    let killer = {
        let (c, urls, tally, dir) = (c.clone(), urls.clone(), tally.clone(), dir.clone());
        tokio::spawn(async move {
            while Instant::now() + Duration::from_secs(10) < deadline {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let mut c = c.lock().await;
                let _ = c.child.kill();
                let _ = c.child.wait();
                *c = spawn(&dir);
                urls.lock().unwrap()[2] = c.url();
                tally.kills.fetch_add(1, Relaxed);
            }
        })
    };
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    killer.await.unwrap();
    let elapsed = started.elapsed();

    // Everything must drain back to zero on the daemons that stayed up.
    let mut leftovers = Vec::new();
    for daemon in [&a, &b] {
        let addr = format!("127.0.0.1:{}", daemon.port).parse().unwrap();
        let drained = tokio::time::timeout(
            Duration::from_secs(30),
            common::status_until(addr, |s| {
                s["sessions"] == 0 && s["streams"] == 0 && s["listeners"] == 0
            }),
        )
        .await;
        let now = common::status(addr).await;
        if drained.is_err() {
            leftovers.push(now.to_string());
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = [rss_kib(a.child.id()), rss_kib(b.child.id())];
    let alive = [a.log.lock().unwrap().clone(), b.log.lock().unwrap().clone()];
    let panics = alive.iter().filter(|log| log.contains("panicked")).count();

    let t = &tally;
    println!(
        "soak: {} s, {workers} workers, 3 daemons (one killed {} times)",
        elapsed.as_secs(),
        t.kills.load(Relaxed)
    );
    println!("  sessions opened      {}", t.sessions.load(Relaxed));
    println!("  streams opened       {}", t.streams.load(Relaxed));
    println!(
        "  framed messages      {} ({} MiB), every one checked in order",
        t.messages.load(Relaxed),
        t.bytes.load(Relaxed) >> 20
    );
    println!("  dropped mid-transfer {}", t.dropped_mid_transfer.load(Relaxed));
    println!("  refused / cut off    {} (by the kills)", t.refused.load(Relaxed));
    for (name, (base, (now, peak))) in ["A", "B"].iter().zip(baseline.iter().zip(end.iter())) {
        println!(
            "  daemon {name} RSS        baseline {} MiB, peak {} MiB, after {} MiB",
            base >> 10,
            peak >> 10,
            now >> 10
        );
    }
    println!(
        "  left behind          {}",
        if leftovers.is_empty() {
            "nothing (sessions, streams, listeners all 0)".into()
        } else {
            leftovers.join("; ")
        }
    );
    println!("  panics in daemon logs {panics}");
    assert!(leftovers.is_empty(), "something was left behind");
    assert_eq!(panics, 0, "a daemon panicked");
    for (base, (now, _)) in baseline.iter().zip(end.iter()) {
        assert!(
            *now < base + 32 * 1024,
            "RSS did not come back near its baseline: {base} -> {now} KiB"
        );
    }
    drop(c);
}

/// One host and one guest: the host listens, the guest connects a few streams, both
/// send numbered frames and check what they get; then one of several endings.
async fn conversation(
    host_url: &str,
    guest_url: &str,
    worker: usize,
    rng: &mut Rng,
    tally: &Tally,
) {
    let Some((mut host, host_id)) = session(host_url, tally).await else { return };
    let Some((mut guest, _)) = session(guest_url, tally).await else { return };
    let protocol = format!("/soak/{worker}/{}", rng.next());
    host.send(ClientMsg::Listen { frames: true, protocol: protocol.clone() }).await;
    if !matches!(host.recv().await, ServerMsg::Listening { .. }) {
        return;
    }
    let target =
        if host_url == guest_url { host_id.peer_id.to_base58() } else { host_id.connect_string() };
    let streams = 1 + rng.below(3);
    let mut pairs: Vec<(ConnId, ConnId, u64)> = Vec::new();
    for _ in 0..streams {
        let tag = rng.next();
        match guest.connect_to(&target, &protocol, true).await {
            ServerMsg::PeerConnection { id, .. } => {
                let ServerMsg::ListenerConnection { id: hid, .. } = host.recv().await else {
                    return;
                };
                pairs.push((id, hid, tag));
                tally.streams.fetch_add(1, Relaxed);
            }
            _ => {
                tally.refused.fetch_add(1, Relaxed);
                return;
            }
        }
    }
    let messages = 5 + rng.below(40) as u64;
    let ending = rng.below(4);
    for seq in 0..messages {
        for (gid, _, tag) in &pairs {
            let data = payload(*tag, seq);
            tally.bytes.fetch_add(data.len() as u64, Relaxed);
            guest.send(ClientMsg::Data { id: *gid, data: Bytes::from(data) }).await;
        }
        if ending == 0 && seq == messages / 2 {
            // The guest's browser vanishes mid-transfer.
            tally.dropped_mid_transfer.fetch_add(1, Relaxed);
            drop(guest);
            drain(&mut host, &pairs).await;
            return;
        }
    }
    // The host reads every frame of every stream, in order per stream.
    let mut next_seq = vec![0u64; pairs.len()];
    let mut remaining = messages as usize * pairs.len();
    while remaining > 0 {
        match host.recv().await {
            ServerMsg::Data { id, data } => {
                let i = pairs.iter().position(|(_, hid, _)| *hid == id).expect("a stream of ours");
                check(&data, pairs[i].2, next_seq[i]);
                next_seq[i] += 1;
                remaining -= 1;
                tally.messages.fetch_add(1, Relaxed);
            }
            ServerMsg::ConnectionClosed { .. } => {
                tally.refused.fetch_add(1, Relaxed); // a killed daemon cut it off
                return;
            }
            other => panic!("host got {other:?}"),
        }
    }
    match ending {
        1 => {
            // Close each stream politely.
            for (gid, _, _) in &pairs {
                guest.send(ClientMsg::Close { id: *gid }).await;
            }
        }
        2 => {
            // The host stops listening and drops the streams.
            host.send(ClientMsg::Stop { retain: false, protocol }).await;
        }
        _ => {} // both just leave
    }
}

/// Reads what the host still gets after the guest vanished, until each stream closed.
async fn drain(host: &mut Client, pairs: &[(ConnId, ConnId, u64)]) {
    let mut next_seq = vec![0u64; pairs.len()];
    let mut open = pairs.len();
    while open > 0 {
        match host.recv().await {
            ServerMsg::Data { id, data } => {
                let i = pairs.iter().position(|(_, hid, _)| *hid == id).expect("a stream of ours");
                check(&data, pairs[i].2, next_seq[i]);
                next_seq[i] += 1;
            }
            ServerMsg::ConnectionClosed { .. } => open -= 1,
            other => panic!("host got {other:?}"),
        }
    }
}

async fn session(url: &str, tally: &Tally) -> Option<(Client, common::Identity)> {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let mut client = Client { ws };
    let identity = tokio::time::timeout(Duration::from_secs(10), client.handshake()).await.ok()?;
    tally.sessions.fetch_add(1, Relaxed);
    Some((client, identity))
}

/// A small deterministic generator, so a soak run can be repeated.
mod rand_lite {
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }
}
