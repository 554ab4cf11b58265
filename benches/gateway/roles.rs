//! What the bench binary does when it is re-executed in a role: a WebSocket client of a
//! daemon (`ws-*`) or a plain rust-libp2p node (`p2p-*`). Each role prints its answers
//! on stdout, one line each (`ready`, `result`, `done`, ... or `error <why>`), takes
//! commands on stdin, and exits when stdin closes or its own deadline passes.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{
    stream::{SplitSink, SplitStream},
    AsyncReadExt as _, AsyncWriteExt as _, SinkExt as _, StreamExt as _,
};
use libp2p::{
    multiaddr::Protocol, noise, swarm::SwarmEvent, tcp, yamux, Multiaddr, PeerId, StreamProtocol,
    Swarm,
};
use libp2p_websocket::protocol::{ClientMsg, ConnId, ConnectTarget, Relay, ServerMsg};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

/// The pipeline part's roles.
mod pipe;
/// The topics part's roles.
mod topics;

/// The longest a role waits for any one answer.
const STEP: Duration = Duration::from_secs(120);
/// The longest a role lives.
const ROLE_LIMIT: Duration = Duration::from_secs(30 * 60);
/// Message size of the throughput runs.
pub const MSG: usize = 64 * 1024;
/// Period of the test bytes: a prime, so misplaced 64 KiB blocks never match.
const PERIOD: usize = 1_048_573;

type Result<T> = std::result::Result<T, String>;

/// `key=value` arguments; a key may repeat.
struct Args(Vec<(String, String)>);

impl Args {
    fn get(&self, key: &str) -> Result<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("missing argument {key}="))
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    fn num(&self, key: &str) -> Result<usize> {
        self.get(key)?.parse().map_err(|_| format!("{key}= is not a number"))
    }

    fn flag(&self, key: &str) -> Result<bool> {
        Ok(self.num(key)? != 0)
    }
}

/// Commands from the orchestrator, one per line.
type Commands = mpsc::UnboundedReceiver<String>;

/// Runs `role` and exits the process.
pub fn main(role: &str, raw: &[String]) -> ! {
    let args = Args(
        raw.iter()
            .filter_map(|a| a.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    // BENCH_ROLE_LOG=<filter> shows a role's libp2p logs on stderr, for debugging.
    if let Ok(filter) = std::env::var("BENCH_ROLE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let (tx, mut commands) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                // The orchestrator is gone: so is the role.
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(_) => {
                    let _ = tx.send(line.trim().to_string());
                }
            }
        }
    });
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let code = runtime.block_on(async {
        let work = run(role, &args, &mut commands);
        match tokio::time::timeout(ROLE_LIMIT, work).await {
            Ok(Ok(())) => {
                // Stay (holding whatever the role opened) until told to go.
                while let Some(command) = commands.recv().await {
                    if command == "exit" {
                        break;
                    }
                }
                0
            }
            Ok(Err(e)) => {
                println!("error {e}");
                1
            }
            Err(_) => {
                println!("error the {role} role ran out of time");
                1
            }
        }
    });
    std::process::exit(code)
}

async fn run(role: &str, args: &Args, commands: &mut Commands) -> Result<()> {
    match role {
        "ws-send" => ws_send(args, commands).await,
        "ws-recv" => ws_recv(args).await,
        "ws-ping" => ws_ping(args).await,
        "ws-echo" => ws_echo(args).await,
        "ws-streams" => ws_streams(args, commands).await,
        "ws-sessions" => ws_sessions(args, commands).await,
        "p2p-send" => p2p_send(args, commands).await,
        "p2p-recv" => p2p_recv(args).await,
        "p2p-ping" => p2p_ping(args).await,
        "p2p-echo" => p2p_echo(args).await,
        "p2p-sink" => p2p_sink(args).await,
        "ws-pipe" => pipe::ws_pipe(args).await,
        "ws-hold" => pipe::ws_hold(args, commands).await,
        "p2p-pipe" => pipe::p2p_pipe(args).await,
        "p2p-hold" => pipe::p2p_hold(args, commands).await,
        "p2p-pipe-echo" => pipe::p2p_pipe_echo(args).await,
        "ws-topic-sub" => topics::ws_topic_sub(args, commands).await,
        "ws-topic-pub" => topics::ws_topic_pub(args, commands).await,
        "ws-topic-idle" => topics::ws_topic_idle(args, commands).await,
        other => Err(format!("unknown role {other}")),
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(STEP, f).await.map_err(|_| format!("timed out: {what}"))
}

/// This process's peak RSS in KiB.
fn own_peak_kib() -> u64 {
    super::harness::memory_of(std::process::id()).map_or(0, |(_, hwm)| hwm)
}

/// This process's CPU time so far, in seconds.
fn own_cpu() -> f64 {
    super::harness::cpu_secs_of(std::process::id()).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------
// Test bytes

/// A pseudo-random pattern with period `PERIOD`, `PERIOD + MSG` bytes long: the byte at
/// stream offset `o` is `pattern[o % PERIOD]`, and any run of up to `MSG` bytes is one
/// slice.
fn pattern() -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut pattern: Vec<u8> = (0..PERIOD)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    pattern.extend_from_within(..MSG);
    pattern
}

fn slice(pattern: &[u8], offset: u64, len: usize) -> &[u8] {
    let start = (offset % PERIOD as u64) as usize;
    &pattern[start..start + len]
}

/// Compares received bytes, in order, with the pattern.
struct Checker {
    pattern: Vec<u8>,
    offset: u64,
}

impl Checker {
    fn new() -> Self {
        Self { pattern: pattern(), offset: 0 }
    }

    fn check(&mut self, mut chunk: &[u8]) -> Result<()> {
        while !chunk.is_empty() {
            let n = chunk.len().min(MSG);
            if chunk[..n] != *slice(&self.pattern, self.offset, n) {
                return Err(format!("wrong bytes at offset {}", self.offset));
            }
            self.offset += n as u64;
            chunk = &chunk[n..];
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// WebSocket clients

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket session with the daemon, speaking the crate's own codec.
struct Client {
    tx: SplitSink<Ws, Message>,
    rx: SplitStream<Ws>,
}

impl Client {
    async fn connect(url: &str) -> Result<Self> {
        // Browsers disable Nagle on their WebSockets; so does this client.
        let (ws, _) = within(
            "WebSocket connect",
            tokio_tungstenite::connect_async_with_config(url, None, true),
        )
        .await?
        .map_err(|e| format!("WebSocket connect to {url}: {e}"))?;
        let (tx, rx) = ws.split();
        Ok(Self { tx, rx })
    }

    async fn feed(&mut self, msg: ClientMsg) -> Result<()> {
        within("WebSocket send", self.tx.feed(Message::Binary(msg.encode())))
            .await?
            .map_err(|e| format!("WebSocket send: {e}"))
    }

    async fn flush(&mut self) -> Result<()> {
        within("WebSocket flush", self.tx.flush())
            .await?
            .map_err(|e| format!("WebSocket flush: {e}"))
    }

    async fn send(&mut self, msg: ClientMsg) -> Result<()> {
        self.feed(msg).await?;
        self.flush().await
    }

    async fn recv(&mut self) -> Result<ServerMsg> {
        within("WebSocket receive", next_msg(&mut self.rx)).await?
    }

    /// Hello, Start if the node is not running, Identify: returns the daemon's connect
    /// string.
    async fn handshake(&mut self) -> Result<String> {
        match self.recv().await? {
            ServerMsg::Hello { started: false, .. } => {
                self.send(ClientMsg::Start { key: Bytes::new() }).await?
            }
            ServerMsg::Hello { started: true, .. } => {}
            other => return Err(format!("expected Hello, got {other:?}")),
        }
        match self.recv().await? {
            ServerMsg::Identify { peer_id, addresses, .. } => {
                let peer: PeerId = peer_id.parse().map_err(|e| format!("peer id: {e}"))?;
                let addrs: Vec<String> =
                    serde_json::from_str(&addresses).map_err(|e| format!("addresses: {e}"))?;
                let addrs = addrs.iter().filter_map(|a| a.parse().ok()).collect();
                Ok(ConnectTarget { peer, addrs }.to_connect_string())
            }
            other => Err(format!("expected Identify, got {other:?}")),
        }
    }

    async fn listen(&mut self, protocol: &str, frames: bool) -> Result<()> {
        self.send(ClientMsg::Listen { frames, protocol: protocol.into() }).await?;
        loop {
            match self.recv().await? {
                ServerMsg::Listening { .. } => return Ok(()),
                // A second Identify comes when this session's Start raced another's.
                ServerMsg::Identify { .. } => continue,
                other => return Err(format!("expected Listening, got {other:?}")),
            }
        }
    }

    async fn open(&mut self, peer: &str, protocol: &str, frames: bool) -> Result<ConnId> {
        self.send(connect_msg(peer, protocol, frames)).await?;
        loop {
            match self.recv().await? {
                ServerMsg::PeerConnection { id, .. } => return Ok(id),
                ServerMsg::Identify { .. } => continue,
                // The answer to an earlier Close (a refused Connect is answered Peer
                // Connection Refused).
                ServerMsg::ConnectionClosed { .. } => continue,
                other => return Err(format!("expected Peer Connection, got {other:?}")),
            }
        }
    }

    async fn accepted(&mut self) -> Result<ConnId> {
        loop {
            match self.recv().await? {
                ServerMsg::ListenerConnection { id, .. } => return Ok(id),
                ServerMsg::Identify { .. } => continue,
                other => return Err(format!("expected Listener Connection, got {other:?}")),
            }
        }
    }
}

fn connect_msg(peer: &str, protocol: &str, frames: bool) -> ClientMsg {
    ClientMsg::Connect {
        frames,
        relay: Relay::Direct,
        protocol: protocol.into(),
        peer: peer.into(),
    }
}

/// The next protocol message (pings are answered by tungstenite as it reads).
async fn next_msg(rx: &mut SplitStream<Ws>) -> Result<ServerMsg> {
    loop {
        match rx.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                return ServerMsg::decode(bytes).map_err(|e| format!("bad server message: {e}"))
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(frame))) => return Err(format!("WebSocket closed: {frame:?}")),
            Some(Ok(other)) => return Err(format!("unexpected WebSocket message {other:?}")),
            Some(Err(e)) => return Err(format!("WebSocket: {e}")),
            None => return Err("WebSocket ended".into()),
        }
    }
}

/// Client A of a throughput run: sends `bytes` to `peer` in 64 KiB Data messages and
/// waits for the receiver's one-byte acknowledgement.
async fn ws_send(args: &Args, commands: &mut Commands) -> Result<()> {
    let (frames, total) = (args.flag("frames")?, args.num("bytes")? as u64);
    let mut client = Client::connect(args.get("url")?).await?;
    client.handshake().await?;
    let id = client.open(args.get("peer")?, args.get("proto")?, frames).await?;
    let pattern = pattern();
    // The orchestrator reads the daemons' CPU time now, then says go.
    println!("connected");
    command(commands, "go").await?;
    let cpu = own_cpu();
    let start = Instant::now();
    let (mut sent, mut messages) = (0u64, 0u64);
    while sent < total {
        let len = MSG.min((total - sent) as usize);
        let data = Bytes::copy_from_slice(slice(&pattern, sent, len));
        client.feed(ClientMsg::Data { id, data }).await?;
        sent += len as u64;
        messages += 1;
        if messages % 16 == 0 {
            client.flush().await?;
        }
    }
    client.flush().await?;
    loop {
        match client.recv().await? {
            ServerMsg::Data { id: i, data } if i == id && !data.is_empty() => break,
            ServerMsg::ConnectionClosed { reason, .. } => {
                return Err(format!("stream closed before the acknowledgement: {reason}"))
            }
            _ => continue,
        }
    }
    let nanos = start.elapsed().as_nanos();
    client.send(ClientMsg::Close { id }).await?;
    println!(
        "result nanos={nanos} bytes={sent} messages={messages} hwm_kib={} cpu_s={}",
        own_peak_kib(),
        own_cpu() - cpu
    );
    Ok(())
}

/// Client B of a throughput run: listens, takes one stream, checks every byte, and
/// acknowledges the last with one byte.
async fn ws_recv(args: &Args) -> Result<()> {
    let (frames, total) = (args.flag("frames")?, args.num("bytes")? as u64);
    let mut client = Client::connect(args.get("url")?).await?;
    let me = client.handshake().await?;
    client.listen(args.get("proto")?, frames).await?;
    println!("ready peer={me}");
    let id = client.accepted().await?;
    let cpu = own_cpu();
    let mut checker = Checker::new();
    let mut messages = 0u64;
    while checker.offset < total {
        match client.recv().await? {
            ServerMsg::Data { id: i, data } if i == id => {
                if frames && data.len() != MSG {
                    return Err(format!("a frame of {} bytes, sent as {MSG}", data.len()));
                }
                checker.check(&data)?;
                messages += 1;
            }
            ServerMsg::ConnectionClosed { reason, .. } => {
                return Err(format!("closed after {} bytes: {reason}", checker.offset))
            }
            ServerMsg::Identify { .. } => continue,
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    if checker.offset != total {
        return Err(format!("{} bytes received, {total} sent", checker.offset));
    }
    client.send(ClientMsg::Data { id, data: Bytes::from_static(&[0xAC]) }).await?;
    println!(
        "done bytes={} messages={messages} hwm_kib={} cpu_s={}",
        checker.offset,
        own_peak_kib(),
        own_cpu() - cpu
    );
    // Hold the session until the sender, having the acknowledgement, closes the stream:
    // a session that ends drops what its streams had not yet written.
    while !matches!(client.recv().await?, ServerMsg::ConnectionClosed { .. }) {}
    Ok(())
}

/// Round-trip times of `count` messages after `warmup`, as a `result` line.
fn report_rtts(mut rtts: Vec<Duration>) {
    rtts.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p = |q: f64| us(rtts[((rtts.len() as f64 * q).ceil() as usize).clamp(1, rtts.len()) - 1]);
    let mean = rtts.iter().map(|d| us(*d)).sum::<f64>() / rtts.len() as f64;
    println!(
        "result p50_us={:.1} p99_us={:.1} mean_us={mean:.1} max_us={:.1} count={} hwm_kib={}",
        p(0.50),
        p(0.99),
        us(rtts[rtts.len() - 1]),
        rtts.len(),
        own_peak_kib()
    );
}

/// Client A of the latency run: one framed stream, one message in flight at a time.
async fn ws_ping(args: &Args) -> Result<()> {
    let (count, warmup, size) = (args.num("count")?, args.num("warmup")?, args.num("size")?);
    let mut client = Client::connect(args.get("url")?).await?;
    client.handshake().await?;
    let id = client.open(args.get("peer")?, args.get("proto")?, true).await?;
    let pattern = pattern();
    let mut rtts = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let payload = Bytes::copy_from_slice(slice(&pattern, i as u64 * 7, size));
        let start = Instant::now();
        client.send(ClientMsg::Data { id, data: payload.clone() }).await?;
        loop {
            match client.recv().await? {
                ServerMsg::Data { id: j, data } if j == id => {
                    if data != payload {
                        return Err(format!("echo {i} differs from what was sent"));
                    }
                    break;
                }
                ServerMsg::Identify { .. } => continue,
                other => return Err(format!("unexpected {other:?}")),
            }
        }
        if i >= warmup {
            rtts.push(start.elapsed());
        }
    }
    report_rtts(rtts);
    Ok(())
}

/// Client B of the latency run: echoes every Data message on the stream it came on.
async fn ws_echo(args: &Args) -> Result<()> {
    let mut client = Client::connect(args.get("url")?).await?;
    let me = client.handshake().await?;
    client.listen(args.get("proto")?, true).await?;
    println!("ready peer={me}");
    loop {
        // No deadline here: the echo waits as long as the run lasts.
        match next_msg(&mut client.rx).await? {
            ServerMsg::Data { id, data } => client.send(ClientMsg::Data { id, data }).await?,
            ServerMsg::ConnectionClosed { .. } => return Ok(()),
            _ => continue,
        }
    }
}

/// One session of a scale run, its messages read by a task of their own so that pings
/// are answered while the session waits.
struct Held {
    tx: SplitSink<Ws, Message>,
    rx: mpsc::UnboundedReceiver<Result<ServerMsg>>,
    _reader: tokio_util::task::AbortOnDropHandle<()>,
}

impl Held {
    fn new(client: Client) -> Self {
        let (out, rx) = mpsc::unbounded_channel();
        let mut ws = client.rx;
        let reader = tokio::spawn(async move {
            loop {
                let msg = next_msg(&mut ws).await;
                let end = msg.is_err();
                if out.send(msg).is_err() || end {
                    return;
                }
            }
        });
        Self { tx: client.tx, rx, _reader: tokio_util::task::AbortOnDropHandle::new(reader) }
    }

    async fn recv(&mut self) -> Result<ServerMsg> {
        within("WebSocket receive", self.rx.recv()).await?.unwrap_or(Err("session ended".into()))
    }

    async fn feed(&mut self, msg: ClientMsg) -> Result<()> {
        within("WebSocket send", self.tx.feed(Message::Binary(msg.encode())))
            .await?
            .map_err(|e| format!("WebSocket send: {e}"))
    }

    async fn flush(&mut self) -> Result<()> {
        within("WebSocket flush", self.tx.flush())
            .await?
            .map_err(|e| format!("WebSocket flush: {e}"))
    }
}

/// Waits for the orchestrator's `word`.
async fn command(commands: &mut Commands, word: &str) -> Result<()> {
    loop {
        match commands.recv().await {
            Some(c) if c == word => return Ok(()),
            Some(_) => continue,
            None => return Err("the orchestrator left".into()),
        }
    }
}

/// Many streams through one daemon: `sessions` sessions each open `streams` streams,
/// spread over the `target` peers, then one byte is echoed over every stream.
async fn ws_streams(args: &Args, commands: &mut Commands) -> Result<()> {
    let url = args.get("url")?;
    let (sessions, streams, frames) =
        (args.num("sessions")?, args.num("streams")?, args.flag("frames")?);
    let protocol = args.get("proto")?;
    let targets = args.all("target");
    if targets.is_empty() {
        return Err("no target= peers".into());
    }
    // The first session starts the node and connects to every peer (one stream each,
    // closed again), so the baseline has the node and its connections in it.
    let mut first = Client::connect(url).await?;
    first.handshake().await?;
    for target in &targets {
        let id = first.open(target, protocol, frames).await?;
        first.send(ClientMsg::Close { id }).await?;
    }
    let mut held = vec![Held::new(first)];
    let rest = futures::future::join_all((1..sessions).map(|_| async {
        let mut client = Client::connect(url).await?;
        client.handshake().await?;
        Ok::<_, String>(Held::new(client))
    }))
    .await;
    for session in rest {
        held.push(session?);
    }
    // Let the warm-up streams finish closing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("ready sessions={}", held.len());

    command(commands, "open").await?;
    let start = Instant::now();
    let opened = futures::future::join_all(held.iter_mut().enumerate().map(|(s, session)| {
        let targets = &targets;
        async move {
            for j in 0..streams {
                let target = targets[(s * streams + j) % targets.len()];
                session.feed(connect_msg(target, protocol, frames)).await?;
                if j % 64 == 63 {
                    session.flush().await?;
                }
            }
            session.flush().await?;
            let (mut ids, mut refused) = (Vec::with_capacity(streams), Vec::new());
            while ids.len() + refused.len() < streams {
                match session.recv().await? {
                    ServerMsg::PeerConnection { id, .. } => ids.push(id),
                    ServerMsg::PeerConnectionRefused { error, .. } => refused.push(error),
                    // Others are the answers to the warm-up streams' Close.
                    ServerMsg::ConnectionClosed { id, reason } if ids.contains(&id) => {
                        return Err(format!("stream {id} closed while opening: {reason}"))
                    }
                    _ => continue,
                }
            }
            Ok::<_, String>((ids, refused))
        }
    }))
    .await;
    let nanos = start.elapsed().as_nanos();
    let (mut ok, mut refused, mut ids) = (0, 0, Vec::new());
    for result in opened {
        let (these, no) = result?;
        ok += these.len();
        refused += no.len();
        if let Some(first) = no.first() {
            eprintln!("ws-streams: {} refused, the first: {first}", no.len());
        }
        ids.push(these);
    }
    println!("opened ok={ok} refused={refused} nanos={nanos}");

    command(commands, "check").await?;
    let start = Instant::now();
    let checked =
        futures::future::join_all(held.iter_mut().zip(&ids).map(|(session, ids)| async move {
            for (n, id) in ids.iter().enumerate() {
                let data = Bytes::copy_from_slice(&[(*id % 251) as u8]);
                session.feed(ClientMsg::Data { id: *id, data }).await?;
                if n % 64 == 63 {
                    session.flush().await?;
                }
            }
            session.flush().await?;
            let mut waiting: HashSet<ConnId> = ids.iter().copied().collect();
            let mut failed = 0usize;
            while !waiting.is_empty() {
                match session.recv().await? {
                    ServerMsg::Data { id, data } if waiting.contains(&id) => {
                        if data.as_ref() != [(id % 251) as u8] {
                            return Err(format!("stream {id} echoed {data:?}"));
                        }
                        waiting.remove(&id);
                    }
                    ServerMsg::ConnectionClosed { id, reason } if waiting.remove(&id) => {
                        if failed == 0 {
                            eprintln!("ws-streams: stream {id} closed: {reason}");
                        }
                        failed += 1;
                    }
                    _ => continue,
                }
            }
            Ok::<_, String>(ids.len() - failed)
        }))
        .await;
    let nanos = start.elapsed().as_nanos();
    let mut echoed = 0;
    for result in checked {
        echoed += result?;
    }
    println!("checked ok={echoed} nanos={nanos}");
    // Keep everything open until the orchestrator has read the daemon's memory.
    command(commands, "exit").await?;
    drop(held);
    Ok(())
}

/// Many sessions on one daemon: each completes the handshake and listens on a protocol
/// of its own.
async fn ws_sessions(args: &Args, commands: &mut Commands) -> Result<()> {
    let url = args.get("url")?;
    let (count, concurrency) = (args.num("count")?, args.num("concurrency")?);
    let open = |i: usize| async move {
        let mut client = Client::connect(url).await?;
        client.handshake().await?;
        client.listen(&format!("/bench/session/{i}"), true).await?;
        Ok::<_, String>(Held::new(client))
    };
    let first = open(0).await?;
    println!("ready sessions=1");
    command(commands, "open").await?;
    let start = Instant::now();
    let results: Vec<Result<Held>> =
        futures::stream::iter(1..count).map(open).buffer_unordered(concurrency).collect().await;
    let nanos = start.elapsed().as_nanos();
    let mut held = vec![first];
    let mut failed = 0;
    for result in results {
        match result {
            Ok(session) => held.push(session),
            Err(e) => {
                if failed == 0 {
                    eprintln!("ws-sessions: a session failed: {e}");
                }
                failed += 1;
            }
        }
    }
    println!("opened ok={} failed={failed} nanos={nanos}", held.len());
    command(commands, "exit").await?;
    drop(held);
    Ok(())
}

// ---------------------------------------------------------------------------------
// Direct rust-libp2p nodes, built as the daemon builds its swarm (TCP with nodelay,
// noise, yamux; QUIC), with `libp2p-stream` as the only behaviour.

type Node = Swarm<libp2p_stream::Behaviour>;

fn node(max_streams: usize) -> Result<Node> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, move || {
            let mut yamux = yamux::Config::default();
            yamux.set_max_num_streams(max_streams);
            yamux
        })
        .map_err(|e| e.to_string())?
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(600))
                .with_max_negotiating_inbound_streams(max_streams)
        })
        .build())
}

fn listen_addr(transport: &str) -> Result<Multiaddr> {
    match transport {
        "tcp" => Ok("/ip4/127.0.0.1/tcp/0".parse().expect("valid")),
        "quic" => Ok("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("valid")),
        other => Err(format!("unknown transport {other}")),
    }
}

/// Listens on loopback and returns the address, with `/p2p/` of this node.
async fn listen(node: &mut Node, transport: &str) -> Result<Multiaddr> {
    node.listen_on(listen_addr(transport)?).map_err(|e| e.to_string())?;
    let addr = within("listen", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = node.select_next_some().await {
                return address;
            }
        }
    })
    .await?;
    Ok(addr.with(Protocol::P2p(*node.local_peer_id())))
}

/// Dials `addr` (with `/p2p/`) and waits for the connection.
async fn dial(node: &mut Node, addr: &str) -> Result<PeerId> {
    let addr: Multiaddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    node.dial(addr).map_err(|e| e.to_string())?;
    within("dial", async {
        loop {
            match node.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => return Ok(peer_id),
                SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
                _ => {}
            }
        }
    })
    .await?
}

/// Polls the swarm for the rest of the process.
fn drive(mut node: Node) {
    tokio::spawn(async move {
        loop {
            node.select_next_some().await;
        }
    });
}

fn protocol(args: &Args) -> Result<StreamProtocol> {
    StreamProtocol::try_from_owned(args.get("proto")?.to_string()).map_err(|e| e.to_string())
}

async fn accept_one(mut incoming: libp2p_stream::IncomingStreams) -> Result<libp2p::Stream> {
    // The incoming handle stays polled by a task, as the daemon's accept loops are.
    let (tx, mut rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some((_, stream)) = incoming.next().await {
            if tx.send(stream).await.is_err() {
                return;
            }
        }
    });
    within("incoming stream", rx.recv()).await?.ok_or_else(|| "no stream".into())
}

/// The direct twin of `ws-send`.
async fn p2p_send(args: &Args, commands: &mut Commands) -> Result<()> {
    let (frames, total) = (args.flag("frames")?, args.num("bytes")? as u64);
    let mut node = node(1024)?;
    let mut control = node.behaviour().new_control();
    let peer = dial(&mut node, args.get("addr")?).await?;
    drive(node);
    let mut stream = within("open stream", control.open_stream(peer, protocol(args)?))
        .await?
        .map_err(|e| e.to_string())?;
    let pattern = pattern();
    let io = |e: std::io::Error| e.to_string();
    println!("connected");
    command(commands, "go").await?;
    let cpu = own_cpu();
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let len = MSG.min((total - sent) as usize);
        if frames {
            stream.write_all(&(len as u32).to_be_bytes()).await.map_err(io)?;
        }
        stream.write_all(slice(&pattern, sent, len)).await.map_err(io)?;
        sent += len as u64;
    }
    stream.flush().await.map_err(io)?;
    let mut ack = [0u8; 1];
    within("acknowledgement", stream.read_exact(&mut ack)).await?.map_err(io)?;
    let nanos = start.elapsed().as_nanos();
    let _ = stream.close().await;
    let cpu = own_cpu() - cpu;
    println!("result nanos={nanos} bytes={sent} hwm_kib={} cpu_s={cpu}", own_peak_kib());
    Ok(())
}

/// The direct twin of `ws-recv`.
async fn p2p_recv(args: &Args) -> Result<()> {
    let (frames, total) = (args.flag("frames")?, args.num("bytes")? as u64);
    let mut node = node(1024)?;
    let incoming =
        node.behaviour().new_control().accept(protocol(args)?).map_err(|e| e.to_string())?;
    let addr = listen(&mut node, args.get("transport")?).await?;
    drive(node);
    println!("ready addr={addr}");
    let mut stream = accept_one(incoming).await?;
    let cpu = own_cpu();
    let io = |e: std::io::Error| e.to_string();
    let mut checker = Checker::new();
    let mut buf = vec![0u8; MSG];
    while checker.offset < total {
        let n = if frames {
            let mut len = [0u8; 4];
            within("frame", stream.read_exact(&mut len)).await?.map_err(io)?;
            let len = u32::from_be_bytes(len) as usize;
            if len != MSG {
                return Err(format!("a frame of {len} bytes, sent as {MSG}"));
            }
            within("frame", stream.read_exact(&mut buf)).await?.map_err(io)?;
            len
        } else {
            within("read", stream.read(&mut buf)).await?.map_err(io)?
        };
        if n == 0 {
            return Err(format!("stream ended after {} bytes", checker.offset));
        }
        checker.check(&buf[..n])?;
    }
    if checker.offset != total {
        return Err(format!("{} bytes received, {total} sent", checker.offset));
    }
    stream.write_all(&[0xAC]).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let cpu = own_cpu() - cpu;
    println!("done bytes={} hwm_kib={} cpu_s={cpu}", checker.offset, own_peak_kib());
    // Stay until the sender has the acknowledgement and closes.
    let _ = within("close", stream.read(&mut buf)).await;
    Ok(())
}

/// The direct twin of `ws-ping`: 4-byte length and payload, as a framed stream is.
async fn p2p_ping(args: &Args) -> Result<()> {
    let (count, warmup, size) = (args.num("count")?, args.num("warmup")?, args.num("size")?);
    let mut node = node(1024)?;
    let mut control = node.behaviour().new_control();
    let peer = dial(&mut node, args.get("addr")?).await?;
    drive(node);
    let mut stream = within("open stream", control.open_stream(peer, protocol(args)?))
        .await?
        .map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| e.to_string();
    let pattern = pattern();
    let mut rtts = Vec::with_capacity(count);
    let mut frame = Vec::with_capacity(4 + size);
    let mut back = vec![0u8; 4 + size];
    for i in 0..warmup + count {
        frame.clear();
        frame.extend_from_slice(&(size as u32).to_be_bytes());
        frame.extend_from_slice(slice(&pattern, i as u64 * 7, size));
        let start = Instant::now();
        stream.write_all(&frame).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        within("echo", stream.read_exact(&mut back)).await?.map_err(io)?;
        if back != frame {
            return Err(format!("echo {i} differs from what was sent"));
        }
        if i >= warmup {
            rtts.push(start.elapsed());
        }
    }
    report_rtts(rtts);
    let _ = stream.close().await;
    Ok(())
}

/// The direct twin of `ws-echo`: echoes each frame whole.
async fn p2p_echo(args: &Args) -> Result<()> {
    let mut node = node(1024)?;
    let incoming =
        node.behaviour().new_control().accept(protocol(args)?).map_err(|e| e.to_string())?;
    let addr = listen(&mut node, args.get("transport")?).await?;
    drive(node);
    println!("ready addr={addr}");
    let mut stream = accept_one(incoming).await?;
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return Ok(()); // the pinger closed
        }
        buf.resize(u32::from_be_bytes(len) as usize, 0);
        let io = |e: std::io::Error| e.to_string();
        stream.read_exact(&mut buf).await.map_err(io)?;
        stream.write_all(&len).await.map_err(io)?;
        stream.write_all(&buf).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
    }
}

/// The remote end of the stream scale run: `peers` nodes in this process, each taking
/// every stream on `proto` and echoing what arrives on it.
///
/// Each node runs on a single-threaded runtime of its own. `libp2p-stream` hands an
/// inbound stream to its `IncomingStreams` through a one-slot channel and drops the
/// stream when the slot is taken; on a shared multi-threaded runtime the accepting task
/// lost that race under load (the opener, the daemon, saw its stream end at once). With
/// the connection and the accepting task on one thread, the slot is emptied before the
/// next stream can be negotiated.
async fn p2p_sink(args: &Args) -> Result<()> {
    let peers = args.num("peers")?;
    let protocol = protocol(args)?;
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..peers {
        let (tx, protocol) = (tx.clone(), protocol.clone());
        std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return drop(tx.send(Err(e.to_string()))),
            };
            runtime.block_on(async move {
                let started = async {
                    let mut node = node(4096)?;
                    let incoming = node
                        .behaviour()
                        .new_control()
                        .accept(protocol)
                        .map_err(|e| e.to_string())?;
                    let addr = listen(&mut node, "tcp").await?;
                    Ok::<_, String>((node, incoming, addr))
                };
                let (mut node, mut incoming, addr) = match started.await {
                    Ok(started) => started,
                    Err(e) => return drop(tx.send(Err(e))),
                };
                let _ = tx.send(Ok((*node.local_peer_id(), addr)));
                tokio::spawn(async move {
                    while let Some((_, mut stream)) = incoming.next().await {
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 256];
                            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                                if stream.write_all(&buf[..n]).await.is_err()
                                    || stream.flush().await.is_err()
                                {
                                    return;
                                }
                            }
                            let _ = stream.close().await;
                        });
                    }
                });
                loop {
                    node.select_next_some().await;
                }
            });
        });
    }
    drop(tx);
    for _ in 0..peers {
        let (peer, addr) = rx.recv().map_err(|_| "a sink node failed".to_string())??;
        let bare = addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
        let target = ConnectTarget { peer, addrs: vec![bare] };
        println!("target addr={}", target.to_connect_string());
    }
    println!("ready peers={peers}");
    Ok(())
}
