//! The roles of the topics part: WebSocket sessions that receive a fan-out and time
//! each delivery (`ws-topic-sub`), the session that publishes it (`ws-topic-pub`), and
//! idle sessions that subscribe to topics and leave them again, for the daemon's
//! memory (`ws-topic-idle`).
//!
//! A fan-out is done one of two ways (`mode=`): `topic`, one Publish per message on a
//! topic every subscriber session subscribes to (PROTOCOL.md, *Extension: pubsub*);
//! `stream`, one framed stream from the publisher to each subscriber session (which
//! listens on a protocol of its own), every message written to each. Each message
//! carries its send time (CLOCK_MONOTONIC, shared by every process of the machine),
//! its number and its round; a subscriber takes receive time minus send time.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use tokio_util::task::AbortOnDropHandle;

use super::*;

/// The bytes before a message's padding: send time (ns), number, round.
const HEADER: usize = 17;

/// CLOCK_MONOTONIC in ns: the same clock in every process of this machine.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The size of message `n`: 64 to 1024 bytes, spread over the range.
fn message_size(n: usize) -> usize {
    64 + (n * 389) % 961
}

/// Message `n` of `round`, stamped now.
fn message(pattern: &[u8], round: usize, n: usize) -> Bytes {
    let len = message_size(n);
    let mut data = Vec::with_capacity(len);
    data.extend_from_slice(&now_ns().to_be_bytes());
    data.extend_from_slice(&(n as u64).to_be_bytes());
    data.push(round as u8);
    data.extend_from_slice(slice(pattern, n as u64 * 31, len - HEADER));
    Bytes::from(data)
}

/// `(sent_ns, n, round)` of a message.
fn header(data: &[u8]) -> Result<(u64, u64, usize)> {
    if data.len() < HEADER {
        return Err(format!("a message of {} bytes", data.len()));
    }
    let word = |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    Ok((word(0), word(8), data[16] as usize))
}

fn is_topic_mode(args: &Args) -> Result<bool> {
    match args.get("mode")? {
        "topic" => Ok(true),
        "stream" => Ok(false),
        other => Err(format!("unknown mode {other}")),
    }
}

/// Turns the pubsub extension on.
async fn pubsub(client: &mut Client) -> Result<()> {
    client.send(ClientMsg::Extensions { names: "pubsub".into() }).await?;
    loop {
        match client.recv().await? {
            ServerMsg::Extensions { names } if names.starts_with("pubsub") => return Ok(()),
            ServerMsg::Identify { .. } => continue,
            other => return Err(format!("expected Extensions pubsub, got {other:?}")),
        }
    }
}

/// Subscribes to `topics` (all sent at once) and waits for each Subscribed; returns
/// the peers said to be on them, by topic.
async fn subscribe(client: &mut Client, topics: &[&str]) -> Result<HashMap<String, Vec<String>>> {
    for topic in topics {
        client.feed(ClientMsg::Subscribe { topic: topic.to_string() }).await?;
    }
    client.flush().await?;
    let mut peers: HashMap<String, Vec<String>> = HashMap::new();
    let mut waiting: HashSet<&str> = topics.iter().copied().collect();
    while !waiting.is_empty() {
        match client.recv().await? {
            ServerMsg::Subscribed { topic } => {
                waiting.remove(topic.as_str());
            }
            ServerMsg::TopicPeer { joined: true, topic, peer } => {
                peers.entry(topic).or_default().push(peer)
            }
            ServerMsg::TopicPeer { .. } | ServerMsg::Identify { .. } => continue,
            ServerMsg::TopicRefused { topic, reason } => {
                return Err(format!("Subscribe {topic} refused: {reason}"))
            }
            other => return Err(format!("expected Subscribed, got {other:?}")),
        }
    }
    Ok(peers)
}

/// Hello (Start if needed) and Identify: the daemon's connect string and its TCP
/// address with `/p2p/`, for another daemon's `--peer`.
async fn identify(client: &mut Client) -> Result<(String, String)> {
    match client.recv().await? {
        ServerMsg::Hello { started: false, .. } => {
            client.send(ClientMsg::Start { key: Bytes::new() }).await?
        }
        ServerMsg::Hello { started: true, .. } => {}
        other => return Err(format!("expected Hello, got {other:?}")),
    }
    match client.recv().await? {
        ServerMsg::Identify { peer_id, addresses, .. } => {
            let peer: PeerId = peer_id.parse().map_err(|e| format!("peer id: {e}"))?;
            let addrs: Vec<String> =
                serde_json::from_str(&addresses).map_err(|e| format!("addresses: {e}"))?;
            let addrs: Vec<Multiaddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
            let tcp = addrs
                .iter()
                .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
                .ok_or_else(|| format!("no TCP address in {addresses}"))?;
            let full = tcp.clone().with(Protocol::P2p(peer)).to_string();
            Ok((ConnectTarget { peer, addrs }.to_connect_string(), full))
        }
        other => Err(format!("expected Identify, got {other:?}")),
    }
}

// ---------------------------------------------------------------------------------
// ws-topic-sub

/// What one session got of one round.
#[derive(Default, Clone)]
struct Tally {
    /// Messages received (warm-up included).
    received: u64,
    /// Messages the daemon said it dropped (Missed).
    missed: u64,
    /// Receive minus send time of each message after the warm-up, in ns.
    latencies: Vec<u64>,
    /// When the last message after the warm-up arrived.
    last_ns: u64,
    done: bool,
}

/// 3 significant digits: the histogram's buckets.
fn bucket(ns: u64) -> u64 {
    let mut unit = 1;
    while ns / unit >= 1000 {
        unit *= 10;
    }
    ns / unit * unit
}

/// `sessions` sessions of one daemon, each on every topic= (one per round) or
/// listening on `/fan/<first + i>`, that take `count` messages a round (the first
/// `warmup` not timed). After each round (every session has all its messages, or was
/// told how many it missed; or the orchestrator says `finish`) it prints `done` with
/// the round's figures and a histogram of the latencies.
pub(super) async fn ws_topic_sub(args: &Args, commands: &mut Commands) -> Result<()> {
    let url = args.get("url")?;
    let topic_mode = is_topic_mode(args)?;
    let (sessions, first, rounds) =
        (args.num("sessions")?, args.num("first")?, args.num("rounds")?);
    let (count, warmup) = (args.num("count")? as u64, args.num("warmup")? as u64);
    let topics: Vec<&str> = args.all("topic");
    if topic_mode && topics.len() != rounds {
        return Err(format!("{} topics for {rounds} rounds", topics.len()));
    }
    let setup = |i: usize, mut client: Client| {
        let topics = &topics;
        async move {
            if topic_mode {
                pubsub(&mut client).await?;
                subscribe(&mut client, topics).await?;
            } else {
                client.listen(&format!("/fan/{}", first + i), true).await?;
            }
            Ok::<_, String>(client)
        }
    };
    let mut head = Client::connect(url).await?;
    let (peer, addr) = identify(&mut head).await?;
    let mut clients = vec![setup(0, head).await?];
    let rest: Vec<Result<Client>> = futures::stream::iter(1..sessions)
        .map(|i| async move {
            let mut client = Client::connect(url).await?;
            client.handshake().await?;
            setup(i, client).await
        })
        .buffered(16)
        .collect()
        .await;
    for client in rest {
        clients.push(client?);
    }

    let topics: Arc<Vec<String>> = Arc::new(topics.iter().map(|t| t.to_string()).collect());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<usize>>();
    let mut slots = Vec::with_capacity(sessions);
    let mut tasks = Vec::with_capacity(sessions);
    for client in clients {
        let slot = Arc::new(Mutex::new(vec![Tally::default(); rounds]));
        slots.push(slot.clone());
        let (done, topics) = (done_tx.clone(), topics.clone());
        tasks.push(AbortOnDropHandle::new(tokio::spawn(async move {
            // The session lives as long as both halves of its WebSocket.
            let Client { tx: _tx, mut rx } = client;
            let book = Book { slot, done: done.clone(), count, warmup };
            if let Err(e) = receive(&mut rx, &topics, &book).await {
                let _ = done.send(Err(e));
            }
        })));
    }
    drop(done_tx);
    println!("ready sessions={sessions} peer={peer} addr={addr}");

    let mut finished = vec![0usize; rounds];
    for round in 0..rounds {
        while finished[round] < sessions {
            tokio::select! {
                done = done_rx.recv() => match done {
                    Some(Ok(r)) => finished[r] += 1,
                    Some(Err(e)) => return Err(e),
                    None => return Err("every session ended".into()),
                },
                command = commands.recv() => match command.as_deref() {
                    Some("finish") => break,
                    Some(_) => continue,
                    None => return Err("the orchestrator left".into()),
                },
            }
        }
        let (mut received, mut missed, mut last_ns) = (0u64, 0u64, 0u64);
        let mut latencies = Vec::new();
        for slot in &slots {
            let slot = slot.lock().unwrap();
            let tally = &slot[round];
            received += tally.received;
            missed += tally.missed;
            last_ns = last_ns.max(tally.last_ns);
            latencies.extend_from_slice(&tally.latencies);
        }
        let mut histogram: std::collections::BTreeMap<u64, u64> = Default::default();
        for ns in &latencies {
            *histogram.entry(bucket(*ns)).or_default() += 1;
        }
        let hist: Vec<String> = histogram.iter().map(|(ns, n)| format!("{ns}:{n}")).collect();
        println!(
            "done round={round} complete={} received={received} missed={missed} timed={} \
             last_ns={last_ns} hwm_kib={} hist={}",
            finished[round],
            latencies.len(),
            own_peak_kib(),
            hist.join(",")
        );
    }
    command(commands, "exit").await?;
    drop(tasks);
    Ok(())
}

/// Where a session's task counts what it gets.
struct Book {
    slot: Arc<Mutex<Vec<Tally>>>,
    done: mpsc::UnboundedSender<Result<usize>>,
    count: u64,
    warmup: u64,
}

impl Book {
    /// Counts into `round` a message (its send time, number and receive time) or what
    /// the daemon said it dropped; tells the coordinator when the round is whole.
    fn count(&self, round: usize, message: Option<(u64, u64, u64)>, missed: u64) -> Result<()> {
        let mut slot = self.slot.lock().unwrap();
        let tally = slot.get_mut(round).ok_or_else(|| format!("a message of round {round}"))?;
        if let Some((sent, n, now)) = message {
            tally.received += 1;
            if n >= self.warmup {
                tally.latencies.push(now.saturating_sub(sent));
                tally.last_ns = now;
            }
        }
        tally.missed += missed;
        if !tally.done && tally.received + tally.missed >= self.count {
            tally.done = true;
            let _ = self.done.send(Ok(round));
        }
        Ok(())
    }
}

/// Reads one session's messages for the rest of the run.
async fn receive(rx: &mut SplitStream<Ws>, topics: &[String], book: &Book) -> Result<()> {
    loop {
        match next_msg(rx).await? {
            ServerMsg::TopicMessage { data, .. } | ServerMsg::Data { data, .. } => {
                let now = now_ns();
                let (sent, n, round) = header(&data)?;
                book.count(round, Some((sent, n, now)), 0)?;
            }
            ServerMsg::Missed { topic, count } => {
                let round = topics
                    .iter()
                    .position(|t| *t == topic)
                    .ok_or_else(|| format!("Missed for {topic}"))?;
                book.count(round, None, count)?;
            }
            ServerMsg::TopicPeer { .. }
            | ServerMsg::Identify { .. }
            | ServerMsg::ListenerConnection { .. } => continue,
            ServerMsg::ConnectionClosed { reason, .. } => {
                return Err(format!("a fan-out stream closed: {reason}"))
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------
// ws-topic-pub

/// The publisher: one session that, told `go`, sends round after round `count`
/// messages at `pace=` messages a second (one value per round; 0: as fast as the
/// WebSocket takes them), stamping each as it hands it to the WebSocket. With
/// `mode=topic` it publishes on the round's topic= (having subscribed to each and
/// waited for `peers=` other nodes on it); with `mode=stream` it opens one framed
/// stream to each subscriber session (`target=<count>:<connect string>`, protocols
/// `/fan/0`, `/fan/1`, … in order) and writes every message to each.
pub(super) async fn ws_topic_pub(args: &Args, commands: &mut Commands) -> Result<()> {
    let topic_mode = is_topic_mode(args)?;
    let (rounds, count, warmup) = (args.num("rounds")?, args.num("count")?, args.num("warmup")?);
    let paces: Vec<f64> = args.all("pace").iter().filter_map(|p| p.parse().ok()).collect();
    let topics = args.all("topic");
    if paces.len() != rounds || (topic_mode && topics.len() != rounds) {
        return Err(format!("{rounds} rounds need as many pace= (and topic=)"));
    }
    let mut client = Client::connect(args.get("url")?).await?;
    client.handshake().await?;
    let mut ids = Vec::new();
    if topic_mode {
        pubsub(&mut client).await?;
        let peers = args.num("peers")?;
        let mut on = subscribe(&mut client, &topics).await?;
        // The other daemons' nodes, once this one knows they subscribe, get every
        // message (gossipsub's flood publishing).
        within("the other nodes on the topics", async {
            while topics.iter().any(|t| on.get(*t).map_or(0, Vec::len) < peers) {
                match client.recv().await? {
                    ServerMsg::TopicPeer { joined: true, topic, peer } => {
                        on.entry(topic).or_default().push(peer)
                    }
                    _ => continue,
                }
            }
            Ok::<_, String>(())
        })
        .await??;
    } else {
        let mut next = 0;
        for target in args.all("target") {
            let (n, peer) = target.split_once(':').ok_or("target= is <count>:<peer>")?;
            let n: usize = n.parse().map_err(|_| format!("bad target= {target}"))?;
            for _ in 0..n {
                ids.push(client.open(peer, &format!("/fan/{next}"), true).await?);
                next += 1;
            }
        }
    }
    let Client { mut tx, mut rx } = client;
    // What the daemon says meanwhile: a refused Publish is counted, a stream that
    // closes is an error; reading also answers the daemon's pings.
    let refused = Arc::new(AtomicU64::new(0));
    let failure = Arc::new(Mutex::new(None::<String>));
    let (r, f) = (refused.clone(), failure.clone());
    let _reader = AbortOnDropHandle::new(tokio::spawn(async move {
        loop {
            let error = match next_msg(&mut rx).await {
                Ok(ServerMsg::TopicRefused { reason, .. }) => {
                    if r.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("ws-topic-pub: a Publish was refused: {reason}");
                    }
                    continue;
                }
                Ok(ServerMsg::ConnectionClosed { reason, .. }) => {
                    format!("a fan-out stream closed: {reason}")
                }
                Ok(_) => continue,
                Err(e) => e,
            };
            *f.lock().unwrap() = Some(error);
            return;
        }
    }));
    let pattern = pattern();
    println!("ready streams={}", ids.len());

    for (round, pace) in paces.iter().enumerate() {
        command(commands, "go").await?;
        let start = tokio::time::Instant::now();
        let (mut start_ns, mut bytes) = (0u64, 0u64);
        for n in 0..count {
            if *pace > 0.0 {
                tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / pace)).await;
            }
            let data = message(&pattern, round, n);
            if n == warmup {
                start_ns = header(&data)?.0;
            }
            let msgs = match topic_mode {
                true => vec![ClientMsg::Publish { topic: topics[round].to_string(), data }],
                false => {
                    ids.iter().map(|id| ClientMsg::Data { id: *id, data: data.clone() }).collect()
                }
            };
            for msg in msgs {
                let encoded = msg.encode();
                bytes += encoded.len() as u64;
                within("WebSocket send", tx.feed(Message::Binary(encoded)))
                    .await?
                    .map_err(|e| format!("WebSocket send: {e}"))?;
            }
            within("WebSocket flush", tx.flush())
                .await?
                .map_err(|e| format!("WebSocket flush: {e}"))?;
            if let Some(e) = failure.lock().unwrap().clone() {
                return Err(e);
            }
        }
        println!(
            "published round={round} start_ns={start_ns} end_ns={} ws_bytes={bytes} refused={} \
             hwm_kib={}",
            now_ns(),
            refused.load(Ordering::Relaxed),
            own_peak_kib()
        );
    }
    command(commands, "exit").await?;
    drop(tx);
    Ok(())
}

// ---------------------------------------------------------------------------------
// ws-topic-idle

/// `sessions` idle sessions with the pubsub extension on, for the daemon's memory:
/// told `subscribe`, each subscribes to `topics` topics (`distinct=0`: the same ones
/// for all; `distinct=1`: its own) and prints `subscribed`; told `unsubscribe`, each
/// leaves them; then holds its sessions until `exit`.
pub(super) async fn ws_topic_idle(args: &Args, commands: &mut Commands) -> Result<()> {
    let url = args.get("url")?;
    let (sessions, k, distinct) =
        (args.num("sessions")?, args.num("topics")?, args.flag("distinct")?);
    let names = |i: usize| -> Vec<String> {
        (0..k)
            .map(|t| match distinct {
                true => format!("bench/idle/{i}/{t}"),
                false => format!("bench/idle/{t}"),
            })
            .collect()
    };
    let opened: Vec<Result<Client>> = futures::stream::iter(0..sessions)
        .map(|_| async move {
            let mut client = Client::connect(url).await?;
            client.handshake().await?;
            pubsub(&mut client).await?;
            Ok::<_, String>(client)
        })
        .buffered(16)
        .collect()
        .await;
    let mut clients = Vec::with_capacity(sessions);
    for client in opened {
        clients.push(client?);
    }
    println!("ready sessions={}", clients.len());

    command(commands, "subscribe").await?;
    let start = Instant::now();
    let subscribed =
        futures::future::join_all(clients.iter_mut().enumerate().map(|(i, client)| async move {
            let names = names(i);
            let topics: Vec<&str> = names.iter().map(String::as_str).collect();
            subscribe(client, &topics).await.map(drop)
        }))
        .await;
    for result in subscribed {
        result?;
    }
    let mut held: Vec<Held> = clients.into_iter().map(Held::new).collect();
    println!("subscribed ok={} nanos={}", sessions * k, start.elapsed().as_nanos());

    command(commands, "unsubscribe").await?;
    for (i, session) in held.iter_mut().enumerate() {
        for topic in names(i) {
            session.feed(ClientMsg::Unsubscribe { topic }).await?;
        }
        session.flush().await?;
    }
    println!("unsubscribed");
    command(commands, "exit").await?;
    drop(held);
    Ok(())
}
