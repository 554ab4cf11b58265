//! A WebSocket client with the credit extension on, keeping the browser's side of the
//! books (PROTOCOL.md, *Extension: credit*).

use std::collections::HashMap;

use libp2p_websocket::protocol::{ClientMsg, ServerMsg};

use super::{Client, Daemon, Identity};

/// A session with the credit extension on, keeping the browser's side of the books.
pub struct CreditClient {
    pub client: Client,
    pub identity: Identity,
    pub stream_window: usize,
    pub session_left: usize,
    pub receive_window: usize,
    /// Send credit left per open stream.
    pub left: HashMap<u64, usize>,
    /// Data received per stream, in order.
    pub received: HashMap<u64, Vec<u8>>,
    pub closed: HashMap<u64, String>,
}

fn windows(answer: &str) -> HashMap<String, usize> {
    answer
        .split(' ')
        .filter_map(|token| token.split_once('='))
        .map(|(name, value)| (name.to_string(), value.parse().unwrap()))
        .collect()
}

impl CreditClient {
    pub async fn new(daemon: &Daemon, receive_window: Option<usize>) -> Self {
        let (mut client, identity) = Client::started(daemon).await;
        let names = match receive_window {
            Some(n) => format!("credit receive-window={n}"),
            None => "credit".into(),
        };
        client.send(ClientMsg::Extensions { names }).await;
        let answer = match client.recv().await {
            ServerMsg::Extensions { names } => names,
            other => panic!("expected Extensions, got {other:?}"),
        };
        assert!(answer.starts_with("credit "), "{answer}");
        let w = windows(&answer);
        Self {
            client,
            identity,
            stream_window: w["stream-window"],
            session_left: w["session-window"],
            receive_window: w["receive-window"],
            left: HashMap::new(),
            received: HashMap::new(),
            closed: HashMap::new(),
        }
    }

    pub async fn open(&mut self, peer: &str, protocol: &str, frames: bool) -> u64 {
        let id = self.client.open(peer, protocol, frames).await;
        self.left.insert(id, self.stream_window);
        id
    }

    pub async fn accepted(&mut self) -> u64 {
        let (id, _) = self.client.accepted().await;
        self.left.insert(id, self.stream_window);
        id
    }

    /// Handles one message from the daemon.
    pub fn on(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Credit { id, bytes } => {
                self.session_left += bytes as usize;
                if let Some(left) = self.left.get_mut(&id) {
                    *left += bytes as usize;
                    assert!(*left <= self.stream_window, "stream {id} credited past its window");
                }
            }
            ServerMsg::Data { id, data } => self.received.entry(id).or_default().extend(&data),
            ServerMsg::ConnectionClosed { id, reason } => {
                self.left.remove(&id);
                self.closed.insert(id, reason);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    pub async fn next(&mut self) {
        let msg = self.client.recv().await;
        self.on(msg);
    }

    /// Sends `data` on `id` as raw Data of at most 64 KiB each, each when credit allows.
    pub async fn send(&mut self, id: u64, data: &[u8]) {
        for chunk in data.chunks(64 * 1024) {
            while self.left[&id].min(self.session_left) < chunk.len() {
                self.next().await;
            }
            *self.left.get_mut(&id).unwrap() -= chunk.len();
            self.session_left -= chunk.len();
            self.client.data(id, chunk).await;
        }
    }

    /// Receives until `len` bytes of `id` arrived, giving back credit for what it takes.
    pub async fn consume(&mut self, id: u64, len: usize) -> Vec<u8> {
        while self.received.get(&id).map_or(0, Vec::len) < len {
            self.next().await;
        }
        let data: Vec<u8> = self.received.get_mut(&id).unwrap().drain(..).collect();
        if let Ok(bytes) = u32::try_from(data.len()) {
            if bytes > 0 {
                self.client.send(ClientMsg::Credit { id, bytes }).await;
            }
        }
        data
    }

    /// An echo round trip on raw stream `id`.
    pub async fn round_trip(&mut self, id: u64, data: &[u8]) {
        self.send(id, data).await;
        assert_eq!(self.consume(id, data.len()).await, data);
    }
}

impl CreditClient {
    /// Echoes `data` through raw stream `id` with at most `window` bytes sent and not
    /// yet back (and within the credit), consuming the echo as it comes (never waiting
    /// for send credit with echoed bytes unconsumed: that would stop the echo, and so
    /// the credit); returns how long it took.
    pub async fn pipeline(&mut self, id: u64, data: &[u8], window: usize) -> std::time::Duration {
        const CHUNK: usize = 64 * 1024;
        let started = std::time::Instant::now();
        let (mut sent, mut back) = (0, Vec::with_capacity(data.len()));
        while back.len() < data.len() {
            loop {
                let end = (sent + CHUNK).min(data.len());
                let room = sent - back.len() + CHUNK <= window.max(CHUNK);
                let credit = self.left[&id].min(self.session_left) >= end - sent;
                if sent == data.len() || !room || !credit {
                    break;
                }
                self.send(id, &data[sent..end]).await;
                sent = end;
            }
            let waiting = self.received.get(&id).map_or(0, Vec::len);
            if waiting > 0 {
                back.extend(self.consume(id, waiting).await);
            } else {
                self.next().await;
            }
        }
        assert!(back == data, "the echo differs from what was sent");
        started.elapsed()
    }
}
