//! Test helpers: daemons in-process on 127.0.0.1:0, WebSocket clients speaking the
//! wire protocol, and a plain rust-libp2p peer. Every wait is under a timeout.
#![allow(dead_code)]

pub mod credit;
pub mod resume;
pub mod topics;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use libp2p::{Multiaddr, PeerId};
use libp2p_websocket::{
    node::NodeKey,
    protocol::{ClientMsg, ConnId, Relay, ServerMsg},
    Config,
};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(30);

pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A daemon running in this process.
pub struct Daemon {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), libp2p_websocket::Error>>,
}

impl Daemon {
    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(libp2p_websocket::run(config, listener, async move {
            let _ = rx.await;
        }));
        Self { addr, shutdown: Some(tx), task }
    }

    /// A daemon started lazily (no key), libp2p on loopback only, no bootstrap peers.
    pub async fn local() -> Self {
        Self::start(Config::local()).await
    }

    /// A daemon whose node starts at launch with `key`.
    pub async fn with_key(key: NodeKey) -> Self {
        Self::start(Config { key: Some(key), ..Config::local() }).await
    }

    pub fn url(&self) -> String {
        format!("ws://{}/libp2p", self.addr)
    }

    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        within("daemon shutdown", &mut self.task).await.unwrap().unwrap();
    }
}

/// What Identify said.
#[derive(Debug, Clone)]
pub struct Identity {
    pub public: bool,
    pub peer_id: PeerId,
    pub addresses: Vec<Multiaddr>,
    pub key: String,
}

impl Identity {
    pub fn from_msg(msg: ServerMsg) -> Self {
        let ServerMsg::Identify { public, peer_id, addresses, key } = msg else {
            panic!("expected Identify, got {msg:?}");
        };
        let addresses: Vec<String> =
            serde_json::from_str(&addresses).expect("ADDRESSES is a JSON array");
        Self {
            public,
            peer_id: peer_id.parse().expect("base58 peer id"),
            addresses: addresses.iter().map(|a| a.parse().expect("multiaddr")).collect(),
            key,
        }
    }

    /// The `/addrs/` connect string of this identity.
    pub fn connect_string(&self) -> String {
        libp2p_websocket::protocol::ConnectTarget {
            peer: self.peer_id,
            addrs: self.addresses.clone(),
        }
        .to_connect_string()
    }
}

/// A WebSocket client of the daemon.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(daemon: &Daemon) -> Self {
        let (ws, _) = within("WebSocket connect", tokio_tungstenite::connect_async(daemon.url()))
            .await
            .unwrap();
        Self { ws }
    }

    /// Connects, reads Hello, starts the node if needed, and returns the Identify.
    pub async fn started(daemon: &Daemon) -> (Self, Identity) {
        let mut client = Self::connect(daemon).await;
        let identity = client.handshake().await;
        (client, identity)
    }

    pub async fn handshake(&mut self) -> Identity {
        match self.recv().await {
            ServerMsg::Hello { started: false, .. } => {
                self.send(ClientMsg::Start { key: Bytes::new() }).await;
            }
            ServerMsg::Hello { started: true, .. } => {}
            other => panic!("expected Hello, got {other:?}"),
        }
        Identity::from_msg(self.recv().await)
    }

    pub async fn send(&mut self, msg: ClientMsg) {
        self.send_raw(msg.encode().to_vec()).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        within("WebSocket send", self.ws.send(Message::Binary(bytes.into()))).await.unwrap();
    }

    pub async fn recv(&mut self) -> ServerMsg {
        loop {
            let message = within("WebSocket receive", self.ws.next())
                .await
                .expect("WebSocket ended")
                .expect("WebSocket error");
            match message {
                Message::Binary(bytes) => {
                    return ServerMsg::decode(bytes).expect("valid server message")
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected WebSocket message {other:?}"),
            }
        }
    }

    /// Whether the daemon sends nothing for `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> Option<ServerMsg> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Binary(bytes)))) => {
                    return Some(ServerMsg::decode(bytes).unwrap())
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    pub async fn listen(&mut self, protocol: &str, frames: bool) {
        self.send(ClientMsg::Listen { frames, protocol: protocol.into() }).await;
        match self.recv().await {
            ServerMsg::Listening { protocol: p } => assert_eq!(p, protocol),
            other => panic!("expected Listening, got {other:?}"),
        }
    }

    /// Sends Connect and returns the answer (Peer Connection or Peer Connection Refused).
    pub async fn connect_to(&mut self, peer: &str, protocol: &str, frames: bool) -> ServerMsg {
        self.send(ClientMsg::Connect {
            frames,
            relay: Relay::Direct,
            protocol: protocol.into(),
            peer: peer.into(),
        })
        .await;
        self.recv().await
    }

    /// Connects and returns the new connection id, panicking on refusal.
    pub async fn open(&mut self, peer: &str, protocol: &str, frames: bool) -> ConnId {
        match self.connect_to(peer, protocol, frames).await {
            ServerMsg::PeerConnection { id, protocol: p, .. } => {
                assert_eq!(p, protocol);
                id
            }
            other => panic!("expected Peer Connection, got {other:?}"),
        }
    }

    /// Waits for a Listener Connection and returns its id and peer.
    pub async fn accepted(&mut self) -> (ConnId, String) {
        match self.recv().await {
            ServerMsg::ListenerConnection { id, peer_id, .. } => (id, peer_id),
            other => panic!("expected Listener Connection, got {other:?}"),
        }
    }

    pub async fn data(&mut self, id: ConnId, data: &[u8]) {
        self.send(ClientMsg::Data { id, data: Bytes::copy_from_slice(data) }).await;
    }

    /// Receives Data messages of `id` until `len` bytes arrived; returns them in order.
    pub async fn read_bytes(&mut self, id: ConnId, len: usize) -> Vec<u8> {
        let mut got = Vec::with_capacity(len);
        while got.len() < len {
            match self.recv().await {
                ServerMsg::Data { id: i, data } if i == id => got.extend_from_slice(&data),
                other => panic!("expected Data for {id}, got {other:?}"),
            }
        }
        got
    }

    /// Receives one Data message of `id`.
    pub async fn read_message(&mut self, id: ConnId) -> Bytes {
        match self.recv().await {
            ServerMsg::Data { id: i, data } if i == id => data,
            other => panic!("expected Data for {id}, got {other:?}"),
        }
    }

    pub async fn expect_closed(&mut self, id: ConnId) -> String {
        match self.recv().await {
            ServerMsg::ConnectionClosed { id: i, reason } if i == id => reason,
            other => panic!("expected Connection Closed for {id}, got {other:?}"),
        }
    }
}

/// Sends `total` bytes in 64 KiB Data messages on `id`, keeping at most `window` bytes
/// sent and not yet echoed, and checks the echo; returns how long it took.
pub async fn pipeline(client: &mut Client, id: u64, total: usize, window: usize) -> Duration {
    const CHUNK: usize = 64 * 1024;
    let data = pattern(total, 7);
    let started = std::time::Instant::now();
    let (mut sent, mut echoed) = (0, 0);
    let mut back = Vec::with_capacity(total);
    while echoed < total {
        while sent < total && sent - echoed + CHUNK <= window.max(CHUNK) {
            let end = (sent + CHUNK).min(total);
            let msg = ClientMsg::Data { id, data: Bytes::copy_from_slice(&data[sent..end]) };
            client.ws.send(Message::Binary(msg.encode())).await.unwrap();
            sent = end;
        }
        match client.recv().await {
            ServerMsg::Data { id: i, data } if i == id => {
                echoed += data.len();
                back.extend_from_slice(&data);
            }
            other => panic!("expected Data, got {other:?}"),
        }
    }
    assert!(back == data, "the echo differs from what was sent");
    started.elapsed()
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

/// A plain rust-libp2p peer (TCP, noise, yamux, libp2p-stream) on loopback.
pub struct TestPeer {
    pub peer_id: PeerId,
    pub addr: Multiaddr,
    pub control: libp2p_stream::Control,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

/// A plain rust-libp2p swarm (TCP, noise, yamux) running `behaviour`.
pub fn plain_swarm<B: libp2p::swarm::NetworkBehaviour>(
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

impl TestPeer {
    pub async fn new() -> Self {
        Self::dialing(None).await
    }

    /// A test peer that first dials `addr` (a full address with `/p2p/`), if given.
    pub async fn dialing(dial: Option<Multiaddr>) -> Self {
        let mut swarm = plain_swarm(|_| libp2p_stream::Behaviour::new());
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let addr = within("test peer listen", async {
            loop {
                if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
                    swarm.select_next_some().await
                {
                    return address;
                }
            }
        })
        .await;
        if let Some(dial) = dial {
            swarm.dial(dial).unwrap();
            within("test peer dial", async {
                loop {
                    match swarm.select_next_some().await {
                        libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } => return,
                        libp2p::swarm::SwarmEvent::OutgoingConnectionError { error, .. } => {
                            panic!("{error}")
                        }
                        _ => {}
                    }
                }
            })
            .await;
        }
        let peer_id = *swarm.local_peer_id();
        let control = swarm.behaviour().new_control();
        let task = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        Self { peer_id, addr, control, _task: tokio_util::task::AbortOnDropHandle::new(task) }
    }

    pub fn connect_string(&self) -> String {
        libp2p_websocket::protocol::ConnectTarget {
            peer: self.peer_id,
            addrs: vec![self.addr.clone()],
        }
        .to_connect_string()
    }
}

/// The real `libp2p-websocket` binary, run as its own process on loopback.
pub struct Process {
    pub child: std::process::Child,
    pub port: u16,
    /// Everything the daemon logged so far (stdout), read by a thread.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Process {
    /// Starts the binary with `args` (plus `-port 0 -nobrowse -nomdns`) in `dir`, and waits
    /// for the log line with its URL. Always pass `-nopeers`: the default bootstrap peers
    /// are on the internet (and mDNS would multicast on the LAN).
    pub fn spawn(args: &[&str], dir: &std::path::Path) -> Self {
        Self::spawn_with_nofile(args, dir, None)
    }

    /// [`Process::spawn`], with the open file limit (soft and hard) set to `nofile`.
    pub fn spawn_with_nofile(args: &[&str], dir: &std::path::Path, nofile: Option<u32>) -> Self {
        use std::io::BufRead as _;
        assert!(args.contains(&"-nopeers"), "tests stay on loopback");
        let binary = env!("CARGO_BIN_EXE_libp2p-websocket");
        let mut command = match nofile {
            None => std::process::Command::new(binary),
            Some(n) => {
                let mut sh = std::process::Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), binary]);
                sh
            }
        };
        let mut child = command
            .args(args)
            .args(["-port", "0", "-nobrowse", "-nomdns"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn the daemon");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, port)) = libp2p_websocket::ready_address(&line) {
                    let _ = port_tx.send(port);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let port = port_rx.recv_timeout(STEP).expect("the daemon logs its URL");
        Self { child, port, log }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/libp2p", self.port)
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = std::time::Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "daemon did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Client {
    pub async fn connect_url(url: &str) -> Self {
        let (ws, _) =
            within("WebSocket connect", tokio_tungstenite::connect_async(url)).await.unwrap();
        Self { ws }
    }
}

impl Client {
    /// Reads until the daemon's close frame; returns its code and reason.
    pub async fn expect_close_frame(&mut self) -> (u16, String) {
        loop {
            match within("close frame", self.ws.next()).await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code.into(), frame.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("expected a close frame, got {other:?}"),
                Some(Err(e)) => panic!("expected a close frame, got error {e}"),
                None => panic!("the WebSocket ended without a close frame"),
            }
        }
    }
}

/// GET `path` of a server at `addr` with `Host: host`; its head and body.
pub async fn http_get(addr: SocketAddr, path: &str, host: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    within("read the response", tcp.read_to_end(&mut response)).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_string(), body.to_string())
}

/// GET /status of a daemon at `addr`, as JSON.
pub async fn status(addr: SocketAddr) -> serde_json::Value {
    let (head, body) = http_get(addr, "/status", &format!("127.0.0.1:{}", addr.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(&body).expect("JSON body")
}

/// Waits until the daemon's /status satisfies `done`, and returns it.
pub async fn status_until(
    addr: SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    poll_until("status", || status(addr), done).await
}

/// Asks `probe` every 50 ms until its answer satisfies `done` (within [`STEP`]), and
/// returns that answer.
pub async fn poll_until<T, F: std::future::Future<Output = T>>(
    what: &str,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    within(what, async {
        loop {
            let now = probe().await;
            if done(&now) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A process's resident memory now and at its peak, in KiB (Linux).
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}
