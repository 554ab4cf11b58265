//! A WebSocket client with the resume extension on, keeping the browser's side of it
//! (PROTOCOL.md, *Extension: resume*), and a TCP proxy whose connections a test can
//! cut, losing what is in flight both ways.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use futures::{
    stream::{SplitSink, SplitStream},
    SinkExt as _, StreamExt as _,
};
use libp2p_websocket::protocol::{ClientMsg, ServerMsg};
use tokio::{
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest as _, Message},
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::task::AbortOnDropHandle;

use super::{within, Identity};

/// Forwards TCP connections to the daemon; [`Proxy::cut`] drops them all at once,
/// with whatever was in flight.
pub struct Proxy {
    pub addr: SocketAddr,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    _accept: AbortOnDropHandle<()>,
}

impl Proxy {
    pub async fn to(daemon: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accepted = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Ok(mut outbound) = TcpStream::connect(daemon).await else { continue };
                let link = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                accepted.lock().unwrap().push(link.abort_handle());
            }
        });
        Self { addr, links, _accept: AbortOnDropHandle::new(accept) }
    }

    /// Drops every connection: both sides see their TCP connection end, and what the
    /// proxy held is lost.
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/libp2p", self.addr)
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `url`, with an `Origin` header when given.
pub async fn open(url: &str, origin: Option<&str>) -> Ws {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", origin.parse().unwrap());
    }
    within("WebSocket connect", tokio_tungstenite::connect_async(request)).await.unwrap().0
}

/// A session with the resume extension on: numbers what it sends and receives, keeps
/// what it sent until acknowledged, and acknowledges what it receives.
pub struct ResumeClient {
    sink: SplitSink<Ws, Message>,
    stream: SplitStream<Ws>,
    url: String,
    origin: Option<String>,
    pub token: String,
    /// The Extensions answer.
    pub answer: String,
    pub identity: Identity,
    /// Numbered messages received (and handled).
    pub received: u64,
    acked: u64,
    /// Numbered messages sent and not yet acknowledged; the first is number `first`.
    log: VecDeque<Bytes>,
    first: u64,
    /// How many times a resume answered Resumed.
    pub resumes: usize,
}

/// The page acknowledges every this many numbered messages.
const ACK_EVERY: u64 = 16;

impl ResumeClient {
    /// Connects to `url`, starts the node if needed, and turns on `extensions` (which
    /// must include `resume`).
    pub async fn new(url: &str, origin: Option<&str>, extensions: &str) -> Self {
        let (sink, stream) = open(url, origin).await.split();
        let mut client = Self {
            sink,
            stream,
            url: url.to_string(),
            origin: origin.map(str::to_string),
            token: String::new(),
            answer: String::new(),
            identity: Identity {
                public: false,
                peer_id: libp2p::PeerId::random(),
                addresses: Vec::new(),
                key: String::new(),
            },
            received: 0,
            acked: 0,
            log: VecDeque::new(),
            first: 1,
            resumes: 0,
        };
        match client.raw_next().await {
            ServerMsg::Hello { started: false, .. } => {
                client.raw_send(ClientMsg::Start { key: Bytes::new() }.encode()).await
            }
            ServerMsg::Hello { started: true, .. } => {}
            other => panic!("expected Hello, got {other:?}"),
        }
        client.identity = Identity::from_msg(client.raw_next().await);
        client.raw_send(ClientMsg::Extensions { names: extensions.into() }.encode()).await;
        let ServerMsg::Extensions { names } = client.raw_next().await else {
            panic!("expected Extensions")
        };
        client.token = token_of(&names).expect("resume is on");
        client.answer = names;
        client
    }

    async fn raw_send(&mut self, bytes: Bytes) {
        // A send on a cut connection fails; the bytes are in the log, sent again on
        // resume.
        let _ = within("WebSocket send", self.sink.send(Message::Binary(bytes))).await;
    }

    async fn raw_next(&mut self) -> ServerMsg {
        loop {
            match within("WebSocket receive", self.stream.next()).await {
                Some(Ok(Message::Binary(bytes))) => return ServerMsg::decode(bytes).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Sends a numbered message (kept until the daemon acknowledges it).
    pub async fn send(&mut self, msg: ClientMsg) {
        let bytes = msg.encode();
        self.log.push_back(bytes.clone());
        self.raw_send(bytes).await;
    }

    /// Numbered messages sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.log.len()
    }

    fn acked_to(&mut self, count: u64) {
        while self.first <= count && self.log.pop_front().is_some() {
            self.first += 1;
        }
    }

    /// The next numbered message; `None` when the WebSocket ended (cut or closed).
    pub async fn try_next(&mut self) -> Option<ServerMsg> {
        loop {
            let message = within("WebSocket receive", self.stream.next()).await;
            let bytes = match message {
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(other)) => panic!("unexpected {other:?}"),
            };
            match ServerMsg::decode(bytes).unwrap() {
                ServerMsg::Ack { count } => self.acked_to(count),
                msg => {
                    self.received += 1;
                    if self.received - self.acked >= ACK_EVERY {
                        self.acked = self.received;
                        let ack = ClientMsg::Ack { count: self.received }.encode();
                        self.raw_send(ack).await;
                    }
                    return Some(msg);
                }
            }
        }
    }

    /// The next numbered message if one comes within `wait`.
    pub async fn try_next_within(&mut self, wait: std::time::Duration) -> Option<ServerMsg> {
        tokio::time::timeout(wait, self.try_next()).await.ok().flatten()
    }

    pub async fn next(&mut self) -> ServerMsg {
        self.try_next().await.expect("the WebSocket ended")
    }

    /// Opens a new WebSocket presenting the token and what was received; on Resumed,
    /// sends again what the daemon did not take. Returns the refusal if refused.
    pub async fn resume(&mut self) -> Result<(), String> {
        let url = format!("{}?resume={}&received={}", self.url, self.token, self.received);
        self.resume_at(&url).await
    }

    /// As [`ResumeClient::resume`], to `url` as given.
    pub async fn resume_at(&mut self, url: &str) -> Result<(), String> {
        let (sink, stream) = open(url, self.origin.as_deref()).await.split();
        (self.sink, self.stream) = (sink, stream);
        match self.raw_next().await {
            ServerMsg::Resumed { count, token } => {
                self.token = token;
                self.acked_to(count);
                self.acked = self.received;
                self.resumes += 1;
                for bytes in self.log.clone() {
                    self.raw_send(bytes).await;
                }
                Ok(())
            }
            ServerMsg::Hello { .. } => match self.raw_next().await {
                ServerMsg::ResumeRefused { reason } => Err(reason),
                other => panic!("expected Resume Refused, got {other:?}"),
            },
            other => panic!("expected Resumed or Hello, got {other:?}"),
        }
    }

    /// Closes the WebSocket with no code (as a page that goes away may).
    pub async fn close(&mut self) {
        let _ = self.sink.close().await;
    }

    /// Closes the WebSocket with code 1000: the page is done with the session.
    pub async fn close_done(&mut self) {
        use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
        let frame = CloseFrame { code: CloseCode::Normal, reason: "done".into() };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
    }
}

/// The token in an Extensions answer.
pub fn token_of(answer: &str) -> Option<String> {
    answer.split(' ').find_map(|t| t.strip_prefix("token=")).map(str::to_string)
}
