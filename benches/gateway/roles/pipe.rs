//! The roles of the pipeline part: a WebSocket client that echoes bytes through the
//! daemon with at most W bytes in flight, with or without the credit extension, alone
//! or beside a stream whose remote never reads (`ws-pipe`), and its direct twin
//! (`p2p-pipe`); a credit session holding K streams to a never-reading remote, idle
//! then filled (`ws-hold`), and a plain node holding as many, idle (`p2p-hold`); and
//! the remote of all of them, one plain node that echoes one protocol and holds the
//! other unread (`p2p-pipe-echo`).
//!
//! The credit books are the browser's (PROTOCOL.md, *Extension: credit*), kept as
//! `tests/common/credit.rs` keeps them: send only what is left of the stream's and the
//! session's windows, and return receive credit for every echoed byte as it is
//! consumed (never wait for send credit with echoed bytes unconsumed: that stops the
//! echo, and so the credit).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::Semaphore;
use tokio_util::task::AbortOnDropHandle;

use super::*;

/// What a role reports of a stream the daemon closed.
type Closed = Option<(Duration, String)>;

// ---------------------------------------------------------------------------------
// The browser's side of the credit books

/// What a Data costs against the credit: its payload, and a frame's 4-byte length.
fn cost(len: usize, frames: bool) -> usize {
    len + if frames { 4 } else { 0 }
}

/// Send credit left, per stream and for the session.
struct Books {
    stream_window: usize,
    session_window: usize,
    receive_window: usize,
    session_left: usize,
    left: HashMap<ConnId, usize>,
}

impl Books {
    /// Turns the extension on (before any stream) and reads the windows in force.
    async fn ask(client: &mut Client) -> Result<Self> {
        client.send(ClientMsg::Extensions { names: "credit".into() }).await?;
        let answer = loop {
            match client.recv().await? {
                ServerMsg::Extensions { names } => break names,
                ServerMsg::Identify { .. } => continue,
                other => return Err(format!("expected Extensions, got {other:?}")),
            }
        };
        let value = |name: &str| -> Result<usize> {
            answer
                .split(' ')
                .filter_map(|token| token.split_once('='))
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.parse().ok())
                .ok_or_else(|| format!("no {name}= in the answer {answer:?}"))
        };
        if !answer.starts_with("credit ") {
            return Err(format!("credit was not turned on: {answer:?}"));
        }
        let session_window = value("session-window")?;
        Ok(Self {
            stream_window: value("stream-window")?,
            session_window,
            receive_window: value("receive-window")?,
            session_left: session_window,
            left: HashMap::new(),
        })
    }

    fn opened(&mut self, id: ConnId) {
        self.left.insert(id, self.stream_window);
    }

    fn closed(&mut self, id: ConnId) {
        self.left.remove(&id);
    }

    /// What a Data on `id` may cost now.
    fn room(&self, id: ConnId) -> usize {
        self.left.get(&id).map_or(0, |left| (*left).min(self.session_left))
    }

    fn take(&mut self, id: ConnId, cost: usize) -> Result<()> {
        if cost > self.room(id) {
            return Err(format!("sending {cost} bytes on stream {id} past its credit"));
        }
        self.session_left -= cost;
        *self.left.get_mut(&id).expect("open") -= cost;
        Ok(())
    }

    /// The daemon's Credit: to the session always, to the stream while it is open.
    fn credit(&mut self, id: ConnId, bytes: u32) -> Result<()> {
        self.session_left += bytes as usize;
        if self.session_left > self.session_window {
            return Err(format!("the session was credited past its window ({id}, {bytes})"));
        }
        if let Some(left) = self.left.get_mut(&id) {
            *left += bytes as usize;
            if *left > self.stream_window {
                return Err(format!("stream {id} was credited past its window"));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// ws-pipe

/// A session whose messages are queued as a browser's `WebSocket.send` queues them
/// (the caller never waits) and written by a task of their own, flushed whenever the
/// queue runs dry; the caller reads.
struct Session {
    out: mpsc::UnboundedSender<Message>,
    rx: SplitStream<Ws>,
    error: Arc<Mutex<Option<String>>>,
    _writer: AbortOnDropHandle<()>,
}

impl Session {
    fn new(client: Client) -> Self {
        let (out, mut queue) = mpsc::unbounded_channel::<Message>();
        let mut tx = client.tx;
        let error = Arc::new(Mutex::new(None));
        let failed = error.clone();
        let writer = tokio::spawn(async move {
            let written = async {
                while let Some(first) = queue.recv().await {
                    tx.feed(first).await?;
                    while let Ok(more) = queue.try_recv() {
                        tx.feed(more).await?;
                    }
                    tx.flush().await?;
                }
                Ok::<_, tokio_tungstenite::tungstenite::Error>(())
            };
            if let Err(e) = written.await {
                *failed.lock().unwrap() = Some(format!("WebSocket send: {e}"));
            }
        });
        Self { out, rx: client.rx, error, _writer: AbortOnDropHandle::new(writer) }
    }

    fn writer_error(&self) -> Option<String> {
        self.error.lock().unwrap().clone()
    }

    fn send(&self, msg: ClientMsg) -> Result<()> {
        self.out
            .send(Message::Binary(msg.encode()))
            .map_err(|_| self.writer_error().unwrap_or_else(|| "the writer ended".into()))
    }

    async fn recv(&mut self) -> Result<ServerMsg> {
        let msg = within("WebSocket receive", next_msg(&mut self.rx)).await.and_then(|m| m);
        msg.map_err(|e| match self.writer_error() {
            Some(w) => format!("{e}; {w}"),
            None => e,
        })
    }
}

/// Echoes `bytes` through stream `echo` of the daemon in 64 KiB Data, with at most
/// `window` bytes sent and not yet back and, with credit, never past the credit.
/// Before that, with `stall=1`, a raw stream to the never-reading protocol is filled
/// (with credit: its whole stream window; without: `fill` bytes), the pipeline
/// starting right after the fill is queued, as a page's would.
pub(super) async fn ws_pipe(args: &Args) -> Result<()> {
    let (credit, frames, stall) = (args.flag("credit")?, args.flag("frames")?, args.flag("stall")?);
    let (window, total) = (args.num("window")?, args.num("bytes")? as u64);
    let peer = args.get("peer")?;
    let mut client = Client::connect(args.get("url")?).await?;
    client.handshake().await?;
    let mut books = match credit {
        true => Some(Books::ask(&mut client).await?),
        false => None,
    };
    let stalled = match stall {
        true => Some(client.open(peer, args.get("hold")?, false).await?),
        false => None,
    };
    let id = client.open(peer, args.get("echo")?, frames).await?;
    if let Some(books) = books.as_mut() {
        books.opened(id);
        stalled.inspect(|s| books.opened(*s));
    }
    let mut session = Session::new(client);
    let pattern = pattern();

    let filled_at = Instant::now();
    if let Some(stalled) = stalled {
        let fill = match &books {
            Some(books) => books.stream_window,
            None => args.num("fill")?,
        };
        let mut queued = 0;
        while queued < fill {
            let len = MSG.min(fill - queued);
            if let Some(books) = books.as_mut() {
                books.take(stalled, len)?;
            }
            let data = Bytes::copy_from_slice(slice(&pattern, queued as u64, len));
            session.send(ClientMsg::Data { id: stalled, data })?;
            queued += len;
        }
    }

    let cpu = own_cpu();
    let start = Instant::now();
    let in_flight = window.max(MSG) as u64;
    let mut checker = Checker::new();
    let (mut sent, mut messages, mut credits) = (0u64, 0u64, 0u64);
    let mut stalled_closed: Closed = None;
    let mut unknown = 0u64;
    while checker.offset < total {
        while sent < total {
            let len = MSG.min((total - sent) as usize);
            if sent - checker.offset + len as u64 > in_flight {
                break;
            }
            if let Some(books) = books.as_mut() {
                if books.room(id) < cost(len, frames) {
                    break;
                }
                books.take(id, cost(len, frames))?;
            }
            let data = Bytes::copy_from_slice(slice(&pattern, sent, len));
            session.send(ClientMsg::Data { id, data })?;
            sent += len as u64;
        }
        match session.recv().await? {
            ServerMsg::Data { id: i, data } if i == id => {
                if frames && data.len() != MSG.min((total - checker.offset) as usize) {
                    return Err(format!("a frame of {} bytes came back", data.len()));
                }
                checker.check(&data)?;
                messages += 1;
                // Consumed at once: its receive credit goes back.
                if books.is_some() {
                    let bytes = cost(data.len(), frames) as u32;
                    session.send(ClientMsg::Credit { id, bytes })?;
                }
            }
            ServerMsg::Credit { id: i, bytes } => {
                credits += 1;
                books.as_mut().ok_or("a Credit without the extension")?.credit(i, bytes)?;
            }
            ServerMsg::ConnectionClosed { id: i, reason } if Some(i) == stalled => {
                if stalled_closed.is_none() {
                    stalled_closed = Some((filled_at.elapsed(), reason));
                    if let Some(books) = books.as_mut() {
                        books.closed(i);
                    }
                } else {
                    unknown += 1; // the rest of its fill: `unknown connection`
                }
            }
            ServerMsg::ConnectionClosed { id: i, reason } if i == id => {
                return Err(format!(
                    "the echo stream closed after {} bytes: {reason}",
                    checker.offset
                ))
            }
            ServerMsg::Identify { .. } => continue,
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    let nanos = start.elapsed().as_nanos();
    let cpu = own_cpu() - cpu;
    let closed_ms = match &stalled_closed {
        Some((after, reason)) => {
            eprintln!(
                "  ws-pipe: the stalled stream was closed {:.1} s after its fill: {reason} \
                 ({unknown} more of its Data answered after that)",
                after.as_secs_f64()
            );
            after.as_millis() as i64
        }
        None => -1,
    };
    let windows = books.as_ref().map_or(String::new(), |b| {
        format!(
            " stream_window={} session_window={} receive_window={}",
            b.stream_window, b.session_window, b.receive_window
        )
    });
    println!(
        "result nanos={nanos} bytes={} messages={messages} credits={credits} \
         stalled_closed_ms={closed_ms} hwm_kib={} cpu_s={cpu}{windows}",
        checker.offset,
        own_peak_kib()
    );
    session.send(ClientMsg::Close { id })?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// p2p-pipe

/// The direct twin of `ws-pipe`: the same pipeline over one stream from a plain node
/// to the echo node (framed: 4-byte length and payload, as a framed stream is), with
/// `stall=1` beside a stream to the never-reading protocol into which `fill` bytes are
/// being written.
pub(super) async fn p2p_pipe(args: &Args) -> Result<()> {
    let (frames, stall) = (args.flag("frames")?, args.flag("stall")?);
    let (window, total) = (args.num("window")?, args.num("bytes")? as u64);
    let mut node = node(1024)?;
    let control = node.behaviour().new_control();
    let peer = dial(&mut node, args.get("addr")?).await?;
    drive(node);
    let io = |e: std::io::Error| e.to_string();
    let open = |protocol: &str| {
        let protocol = StreamProtocol::try_from_owned(protocol.to_string());
        let mut control = control.clone();
        async move {
            let protocol = protocol.map_err(|e| e.to_string())?;
            within("open stream", control.open_stream(peer, protocol))
                .await?
                .map_err(|e| e.to_string())
        }
    };
    let pattern: Arc<[u8]> = pattern().into();
    let _filling = match stall {
        true => {
            let mut stalled = open(args.get("hold")?).await?;
            let (fill, pattern) = (args.num("fill")? as u64, pattern.clone());
            // Writes until the remote's window is full, then waits for good.
            Some(AbortOnDropHandle::new(tokio::spawn(async move {
                let mut at = 0;
                while at < fill {
                    let len = MSG.min((fill - at) as usize);
                    if stalled.write_all(slice(&pattern, at, len)).await.is_err() {
                        break;
                    }
                    at += len as u64;
                }
                std::future::pending::<()>().await;
            })))
        }
        false => None,
    };
    let stream = open(args.get("echo")?).await?;
    let (mut rd, mut wr) = stream.split();
    // Bytes that may still be sent: `window`, less what is out and not yet back.
    let room = Semaphore::new(window.max(MSG));
    let cpu = own_cpu();
    let start = Instant::now();
    let writer = async {
        let mut sent = 0u64;
        while sent < total {
            let len = MSG.min((total - sent) as usize);
            let permit = match room.try_acquire_many(len as u32) {
                Ok(permit) => permit,
                Err(_) => {
                    // Out of room: what was written must go out before the echo can
                    // make more.
                    wr.flush().await.map_err(io)?;
                    within("room in the window", room.acquire_many(len as u32))
                        .await?
                        .map_err(|e| e.to_string())?
                }
            };
            permit.forget();
            if frames {
                wr.write_all(&(len as u32).to_be_bytes()).await.map_err(io)?;
            }
            wr.write_all(slice(&pattern, sent, len)).await.map_err(io)?;
            sent += len as u64;
        }
        wr.flush().await.map_err(io)?;
        Ok::<_, String>(())
    };
    let reader = async {
        let mut checker = Checker::new();
        let mut buf = vec![0u8; MSG];
        while checker.offset < total {
            let n = if frames {
                let mut len = [0u8; 4];
                within("echo", rd.read_exact(&mut len)).await?.map_err(io)?;
                let len = u32::from_be_bytes(len) as usize;
                if len != MSG.min((total - checker.offset) as usize) {
                    return Err(format!("a frame of {len} bytes came back"));
                }
                within("echo", rd.read_exact(&mut buf[..len])).await?.map_err(io)?;
                len
            } else {
                within("echo", rd.read(&mut buf)).await?.map_err(io)?
            };
            if n == 0 {
                return Err(format!("the echo ended after {} bytes", checker.offset));
            }
            checker.check(&buf[..n])?;
            room.add_permits(n);
        }
        Ok(checker.offset)
    };
    let ((), back) = futures::future::try_join(writer, reader).await?;
    let nanos = start.elapsed().as_nanos();
    let cpu = own_cpu() - cpu;
    println!("result nanos={nanos} bytes={back} hwm_kib={} cpu_s={cpu}", own_peak_kib());
    let _ = wr.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------
// ws-hold, p2p-hold

/// A credit session (default windows) that, told `open`, opens `streams` raw streams
/// to the never-reading protocol, and told `fill`, fills each stream's window as far
/// as the session window allows: until no credit comes back for a while.
pub(super) async fn ws_hold(args: &Args, commands: &mut Commands) -> Result<()> {
    let (peer, hold, count) = (args.get("peer")?, args.get("hold")?, args.num("streams")?);
    let mut client = Client::connect(args.get("url")?).await?;
    client.handshake().await?;
    let mut books = Books::ask(&mut client).await?;
    // The node is started and connected to the remote before the baseline.
    let warm = client.open(peer, args.get("echo")?, false).await?;
    client.send(ClientMsg::Close { id: warm }).await?;
    let mut session = Held::new(client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    while session.rx.try_recv().is_ok() {}
    println!(
        "ready stream_window={} session_window={} receive_window={}",
        books.stream_window, books.session_window, books.receive_window
    );

    command(commands, "open").await?;
    let start = Instant::now();
    for j in 0..count {
        session.feed(connect_msg(peer, hold, false)).await?;
        if j % 64 == 63 {
            session.flush().await?;
        }
    }
    session.flush().await?;
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        match session.recv().await? {
            ServerMsg::PeerConnection { id, .. } => {
                books.opened(id);
                ids.push(id);
            }
            ServerMsg::PeerConnectionRefused { error, .. } => {
                return Err(format!("a stream was refused after {}: {error}", ids.len()))
            }
            ServerMsg::ConnectionClosed { id, reason } if books.left.contains_key(&id) => {
                return Err(format!("stream {id} closed: {reason}"))
            }
            _ => continue,
        }
    }
    println!("opened ok={} nanos={}", ids.len(), start.elapsed().as_nanos());

    command(commands, "fill").await?;
    let start = Instant::now();
    let pattern = pattern();
    let (mut sent, mut credited, mut rounds) = (0u64, 0u64, 0);
    let mut with_data = std::collections::HashSet::new();
    loop {
        rounds += 1;
        for id in &ids {
            loop {
                let len = books.room(*id).min(MSG);
                if len == 0 {
                    break;
                }
                books.take(*id, len)?;
                let data = Bytes::copy_from_slice(slice(&pattern, sent, len));
                session.feed(ClientMsg::Data { id: *id, data }).await?;
                sent += len as u64;
                with_data.insert(*id);
            }
        }
        session.flush().await?;
        // What the daemon wrote into the streams comes back; more may then be sent.
        let mut credit_came = false;
        let quiet = Duration::from_millis(300);
        while let Ok(msg) = tokio::time::timeout(quiet, session.rx.recv()).await {
            match msg.unwrap_or(Err("session ended".into()))? {
                ServerMsg::Credit { id, bytes } => {
                    books.credit(id, bytes)?;
                    credited += u64::from(bytes);
                    credit_came = true;
                }
                ServerMsg::ConnectionClosed { id, reason } => {
                    return Err(format!("stream {id} closed: {reason}"))
                }
                _ => continue,
            }
        }
        if !credit_came || start.elapsed() > STEP {
            break;
        }
    }
    println!(
        "filled sent={sent} credited={credited} held={} streams={} rounds={rounds}",
        sent - credited,
        with_data.len()
    );
    // Hold everything until the orchestrator has read the daemon's memory.
    command(commands, "exit").await?;
    drop(session);
    Ok(())
}

/// The direct twin of `ws-hold`, for the idle figure: a plain node that, told `open`,
/// opens `streams` streams to the never-reading protocol and holds them.
pub(super) async fn p2p_hold(args: &Args, commands: &mut Commands) -> Result<()> {
    let count = args.num("streams")?;
    let protocol = |key: &str| {
        StreamProtocol::try_from_owned(args.get(key)?.to_string()).map_err(|e| e.to_string())
    };
    let (hold, echo) = (protocol("hold")?, protocol("echo")?);
    let mut node = node(4096)?;
    let control = node.behaviour().new_control();
    let peer = dial(&mut node, args.get("addr")?).await?;
    drive(node);
    // Connected, one stream opened and closed, before the baseline (as `ws-hold`).
    let mut warm = within("open stream", control.clone().open_stream(peer, echo))
        .await?
        .map_err(|e| e.to_string())?;
    let _ = warm.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("ready");

    command(commands, "open").await?;
    let start = Instant::now();
    let opened = within(
        "open streams",
        futures::future::join_all((0..count).map(|_| {
            let (mut control, hold) = (control.clone(), hold.clone());
            async move { control.open_stream(peer, hold).await }
        })),
    )
    .await?;
    let mut streams = Vec::with_capacity(count);
    for stream in opened {
        streams.push(stream.map_err(|e| e.to_string())?);
    }
    println!("opened ok={} nanos={}", streams.len(), start.elapsed().as_nanos());
    command(commands, "exit").await?;
    drop(streams);
    Ok(())
}

// ---------------------------------------------------------------------------------
// p2p-pipe-echo

/// The remote: one plain node that echoes every stream on `echo` (64 KiB reads, each
/// written back and flushed) and holds every stream on `hold` open without reading
/// it. It runs on a single-threaded runtime of its own, as `p2p-sink` does (for the
/// same reason: many streams arriving at once). Prints its address (with `/p2p/`, for
/// the direct nodes) and its connect string (for the daemon).
pub(super) async fn p2p_pipe_echo(args: &Args) -> Result<()> {
    let echo =
        StreamProtocol::try_from_owned(args.get("echo")?.to_string()).map_err(|e| e.to_string())?;
    let hold =
        StreamProtocol::try_from_owned(args.get("hold")?.to_string()).map_err(|e| e.to_string())?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => return drop(tx.send(Err(e.to_string()))),
        };
        runtime.block_on(async move {
            let started = async {
                let mut node = node(4096)?;
                let mut control = node.behaviour().new_control();
                let echoes = control.accept(echo).map_err(|e| e.to_string())?;
                let holds = control.accept(hold).map_err(|e| e.to_string())?;
                let addr = listen(&mut node, "tcp").await?;
                Ok::<_, String>((node, echoes, holds, addr))
            };
            let (mut node, mut echoes, mut holds, addr) = match started.await {
                Ok(started) => started,
                Err(e) => return drop(tx.send(Err(e))),
            };
            let _ = tx.send(Ok((*node.local_peer_id(), addr)));
            tokio::spawn(async move {
                while let Some((_, mut stream)) = echoes.next().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; MSG];
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
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Some((_, stream)) = holds.next().await {
                    held.push(stream);
                }
            });
            loop {
                node.select_next_some().await;
            }
        });
    });
    let (peer, addr) =
        rx.recv_timeout(STEP).map_err(|_| "the echo node did not start".to_string())??;
    let bare = addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
    let target = ConnectTarget { peer, addrs: vec![bare] }.to_connect_string();
    println!("ready addr={addr} target={target}");
    Ok(())
}
