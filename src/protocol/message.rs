//! The `/libp2p` control messages, one enum per direction, with `encode` and `decode`.
//!
//! Every WebSocket message is one binary message whose byte 0 is the type. `str` is a
//! 2-byte big-endian length and that many UTF-8 bytes, `rest` is every remaining byte,
//! an `ID` is an 8-byte big-endian connection id and a flag is one byte, 0 or 1.
//! `PROTOCOL.md` at the top of the repository is the readable twin of this module.

mod client;
mod server;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// A connection id, handed out by the daemon per session, counting up from 0.
pub type ConnId = u64;

/// Why a client message could not be decoded. The text names the message and the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("{msg}: message too short for {field} (needs {needed} bytes, has {have})")]
    Truncated { msg: &'static str, field: &'static str, needed: usize, have: usize },
    #[error("{msg}: {field} length {len} exceeds message ({have} bytes left)")]
    LengthExceeds { msg: &'static str, field: &'static str, len: usize, have: usize },
    #[error("{msg}: {field} flag must be 0 or 1, got {value}")]
    BadFlag { msg: &'static str, field: &'static str, value: u8 },
    #[error("{msg}: {field} is not valid UTF-8")]
    NotUtf8 { msg: &'static str, field: &'static str },
    #[error("{msg}: {detail}")]
    Layout { msg: &'static str, detail: &'static str },
}

/// How a Connect wants to reach its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// Dial the peer directly (RELAY=0, or an empty RELAY string).
    Direct,
    /// RELAY=1 in the original client's layout: go through a relay the node knows.
    Any,
    /// The README layout's RELAY string: go through this relay peer.
    Via(String),
}

/// A message from the browser to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// Start the libp2p node, with a key (base64 protobuf text) or empty for a new one.
    Start { key: Bytes },
    /// Start as the original's July 2020 pages said it: `[PORT:2][KEY: rest]`, the
    /// node's TCP port (0: the default) before the key. Such a session is answered in
    /// that generation's Identify layout.
    StartAt { port: u16, key: Bytes },
    /// Listen for incoming streams on `protocol`.
    Listen { frames: bool, protocol: String },
    /// Stop listening; `retain` keeps the listener's open connections.
    Stop { retain: bool, protocol: String },
    /// Close connection `id`.
    Close { id: ConnId },
    /// Write `data` to connection `id`.
    Data { id: ConnId, data: Bytes },
    /// Open a stream to `peer` (base58 peer id or `/addrs/…` connect string).
    Connect { frames: bool, relay: Relay, protocol: String, peer: String },
    /// Extension: subscribe to (or leave) presence events.
    Presence { on: bool },
    /// Turn extensions on: space-separated tokens, `name` or `name=value`.
    Extensions { names: String },
    /// Extension (credit): the page consumed `bytes` more of stream `id`.
    Credit { id: ConnId, bytes: u32 },
    /// Extension (resume): the page has received `count` numbered messages.
    Ack { count: u64 },
    /// Extension (pubsub): receive the messages of `topic`.
    Subscribe { topic: String },
    /// Extension (pubsub): stop receiving the messages of `topic`.
    Unsubscribe { topic: String },
    /// Extension (pubsub): publish `data` on `topic`.
    Publish { topic: String, data: Bytes },
}

/// A message from the daemon to the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    Hello {
        started: bool,
        version: String,
    },
    Identify {
        public: bool,
        peer_id: String,
        addresses: String,
        key: String,
    },
    /// Identify in the original's July 2020 layout (`[KEY: str][VERSION: rest]`), for
    /// sessions that started the node that way.
    IdentifyJuly2020 {
        public: bool,
        peer_id: String,
        addresses: String,
        key: String,
        version: String,
    },
    ListenerConnection {
        id: ConnId,
        peer_id: String,
        protocol: String,
    },
    ConnectionClosed {
        id: ConnId,
        reason: String,
    },
    Data {
        id: ConnId,
        data: Bytes,
    },
    ListenRefused {
        protocol: String,
    },
    ListenerClosed {
        protocol: String,
    },
    PeerConnection {
        id: ConnId,
        peer_id: String,
        protocol: String,
    },
    PeerConnectionRefused {
        peer_id: String,
        protocol: String,
        error: String,
    },
    ProtocolError {
        msg: String,
    },
    Listening {
        protocol: String,
    },
    /// Extension: a peer's connection state and what is known of it (INFO is JSON).
    Peer {
        state: u8,
        peer_id: String,
        info: String,
    },
    /// Extension: a session of this daemon started or stopped listening on `protocol`.
    LocalListener {
        up: bool,
        protocol: String,
    },
    /// Extension: the presence state has been sent; changes follow.
    PresenceReady,
    /// Extension: the session fell behind; the whole state follows, then Presence Ready.
    PresenceResync,
    /// Extension: the stream `id` (just announced by Peer Connection or Listener
    /// Connection) runs over a connection relayed by `relay` (a base58 peer id).
    Relayed {
        id: ConnId,
        relay: String,
    },
    /// The extensions now on, with their parameters.
    Extensions {
        names: String,
    },
    /// Extension (credit): `bytes` of the browser's Data for stream `id` were written
    /// (or dropped); they may be sent again.
    Credit {
        id: ConnId,
        bytes: u32,
    },
    /// Extension (reachability): 0 unknown, 1 private, 2 public.
    Reachability {
        state: u8,
    },
    /// Extension (resume): the daemon has taken `count` numbered messages.
    Ack {
        count: u64,
    },
    /// Extension (resume): the first message on a resuming WebSocket: the daemon took
    /// `count` numbered messages (the page sends its later ones again), and the token
    /// for the next resume.
    Resumed {
        count: u64,
        token: String,
    },
    /// Extension (resume): after Hello, on a WebSocket that asked to resume and could
    /// not; the session is a fresh one.
    ResumeRefused {
        reason: String,
    },
    /// Extension (pubsub): the session now receives `topic`'s messages.
    Subscribed {
        topic: String,
    },
    /// Extension (pubsub): a Subscribe or Publish on `topic` was refused.
    TopicRefused {
        topic: String,
        reason: String,
    },
    /// Extension (pubsub): `from`'s `seq`-th message, on `topic`.
    TopicMessage {
        topic: String,
        from: String,
        seq: u64,
        data: Bytes,
    },
    /// Extension (pubsub): `peer` joined (or left) `topic`.
    TopicPeer {
        joined: bool,
        topic: String,
        peer: String,
    },
    /// Extension (pubsub): `count` messages (or peer changes) of `topic` were dropped,
    /// the session having too many waiting for its browser.
    Missed {
        topic: String,
        count: u64,
    },
}

/// Message type bytes, client to server.
pub mod client_type {
    pub const START: u8 = 0;
    pub const LISTEN: u8 = 1;
    pub const STOP: u8 = 2;
    pub const CLOSE: u8 = 3;
    pub const DATA: u8 = 4;
    pub const CONNECT: u8 = 5;
    /// Extension (presence).
    pub const PRESENCE: u8 = 6;
    /// Turns extensions on.
    pub const EXTENSIONS: u8 = 7;
    /// Extension (credit).
    pub const CREDIT: u8 = 8;
    /// Extension (resume).
    pub const ACK: u8 = 9;
    /// Extension (pubsub).
    pub const SUBSCRIBE: u8 = 10;
    /// Extension (pubsub).
    pub const UNSUBSCRIBE: u8 = 11;
    /// Extension (pubsub).
    pub const PUBLISH: u8 = 12;
}

/// Message type bytes, server to client.
pub mod server_type {
    pub const HELLO: u8 = 0;
    pub const IDENTIFY: u8 = 1;
    pub const LISTENER_CONNECTION: u8 = 2;
    pub const CONNECTION_CLOSED: u8 = 3;
    pub const DATA: u8 = 4;
    pub const LISTEN_REFUSED: u8 = 5;
    pub const LISTENER_CLOSED: u8 = 6;
    pub const PEER_CONNECTION: u8 = 7;
    pub const PEER_CONNECTION_REFUSED: u8 = 8;
    pub const PROTOCOL_ERROR: u8 = 9;
    pub const LISTENING: u8 = 10;
    /// Extension (presence).
    pub const PEER: u8 = 11;
    /// Extension (presence).
    pub const LOCAL_LISTENER: u8 = 12;
    /// Extension (presence).
    pub const PRESENCE_READY: u8 = 13;
    /// Extension (presence).
    pub const PRESENCE_RESYNC: u8 = 14;
    pub const RELAYED: u8 = 15;
    /// The answer to the client's Extensions.
    pub const EXTENSIONS: u8 = 16;
    /// Extension (credit).
    pub const CREDIT: u8 = 17;
    /// Extension (reachability).
    pub const REACHABILITY: u8 = 18;
    /// Extension (resume).
    pub const ACK: u8 = 19;
    /// Extension (resume).
    pub const RESUMED: u8 = 20;
    /// Extension (resume).
    pub const RESUME_REFUSED: u8 = 21;
    /// Extension (pubsub).
    pub const SUBSCRIBED: u8 = 22;
    /// Extension (pubsub).
    pub const TOPIC_REFUSED: u8 = 23;
    /// Extension (pubsub).
    pub const TOPIC_MESSAGE: u8 = 24;
    /// Extension (pubsub).
    pub const TOPIC_PEER: u8 = 25;
    /// Extension (pubsub).
    pub const MISSED: u8 = 26;
}

/// Bytes in front of the payload of a Data message: type and ID.
pub const DATA_HEADER_LEN: usize = 9;
/// The longest NAMES an Extensions message may carry.
pub const MAX_EXTENSIONS: usize = 1024;

/// A cursor over a message body that names what it failed to read.
struct Reader<'a> {
    msg: &'static str,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(msg: &'static str, buf: &'a [u8]) -> Self {
        Self { msg, buf }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                msg: self.msg,
                field,
                needed: n,
                have: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.take(field, 1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadFlag { msg: self.msg, field, value }),
        }
    }

    fn id(&mut self) -> Result<ConnId, DecodeError> {
        let bytes = self.take("ID", 8)?;
        Ok(u64::from_be_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let bytes = self.take(field, 8)?;
        Ok(u64::from_be_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let bytes = self.take(field, 4)?;
        Ok(u32::from_be_bytes(bytes.try_into().expect("took 4 bytes")))
    }

    /// A credit amount: a u32 above 0.
    fn credit(&mut self) -> Result<u32, DecodeError> {
        match self.u32("BYTES")? {
            0 => Err(DecodeError::Layout { msg: self.msg, detail: "BYTES must be above 0" }),
            n => Ok(n),
        }
    }

    fn str(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.take(field, 2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len > self.buf.len() {
            return Err(DecodeError::LengthExceeds {
                msg: self.msg,
                field,
                len,
                have: self.buf.len(),
            });
        }
        let bytes = self.take(field, len)?;
        utf8(self.msg, field, bytes)
    }

    fn rest_str(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let bytes = std::mem::take(&mut self.buf);
        utf8(self.msg, field, bytes)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

fn utf8(msg: &'static str, field: &'static str, bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8 { msg, field })
}

fn put_str(out: &mut BytesMut, s: &str) {
    // A `str` holds at most 64 KiB; a longer one (say, a huge PEERID echoed back in a
    // refusal) is cut at a character boundary rather than mis-framed.
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&s.as_bytes()[..end]);
}

/// Writes a Data message header for `id` into `buf`, so a payload read after it becomes
/// the whole message without another copy.
pub fn put_data_header(buf: &mut BytesMut, id: ConnId) {
    buf.put_u8(server_type::DATA);
    buf.put_u64(id);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn client_msg() -> impl Strategy<Value = ClientMsg> {
        let protocol = "/[a-z0-9/._-]{0,40}";
        let relay = prop_oneof![
            Just(Relay::Direct),
            Just(Relay::Any),
            "[A-Za-z0-9]{1,60}".prop_map(Relay::Via),
        ];
        prop_oneof![
            "[A-Za-z0-9+/=]{0,120}".prop_map(|k| ClientMsg::Start { key: Bytes::from(k) }),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|k| ClientMsg::Start { key: Bytes::from(k) }),
            (any::<bool>(), protocol)
                .prop_map(|(frames, protocol)| ClientMsg::Listen { frames, protocol }),
            (any::<bool>(), protocol)
                .prop_map(|(retain, protocol)| ClientMsg::Stop { retain, protocol }),
            any::<u64>().prop_map(|id| ClientMsg::Close { id }),
            any::<bool>().prop_map(|on| ClientMsg::Presence { on }),
            any::<u64>().prop_map(|count| ClientMsg::Ack { count }),
            "\\PC{0,40}".prop_map(|topic| ClientMsg::Subscribe { topic }),
            "\\PC{0,40}".prop_map(|topic| ClientMsg::Unsubscribe { topic }),
            ("\\PC{0,40}", proptest::collection::vec(any::<u8>(), 0..100))
                .prop_map(|(topic, d)| ClientMsg::Publish { topic, data: Bytes::from(d) }),
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..200))
                .prop_map(|(id, d)| ClientMsg::Data { id, data: Bytes::from(d) }),
            (any::<bool>(), relay, protocol, "\\PC{0,80}").prop_map(
                |(frames, relay, protocol, peer)| {
                    ClientMsg::Connect { frames, relay, protocol, peer }
                }
            ),
        ]
    }

    fn server_msg() -> impl Strategy<Value = ServerMsg> {
        let text = "\\PC{0,60}";
        prop_oneof![
            (any::<bool>(), text)
                .prop_map(|(started, version)| ServerMsg::Hello { started, version }),
            (any::<bool>(), text, text, text).prop_map(|(public, peer_id, addresses, key)| {
                ServerMsg::Identify { public, peer_id, addresses, key }
            }),
            (any::<u64>(), text, text).prop_map(|(id, peer_id, protocol)| {
                ServerMsg::ListenerConnection { id, peer_id, protocol }
            }),
            (any::<u64>(), text)
                .prop_map(|(id, reason)| ServerMsg::ConnectionClosed { id, reason }),
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..200))
                .prop_map(|(id, d)| ServerMsg::Data { id, data: Bytes::from(d) }),
            text.prop_map(|protocol| ServerMsg::ListenRefused { protocol }),
            any::<u64>().prop_map(|count| ServerMsg::Ack { count }),
            (any::<u64>(), "[A-Za-z0-9_-]{0,43}")
                .prop_map(|(count, token)| ServerMsg::Resumed { count, token }),
            text.prop_map(|reason| ServerMsg::ResumeRefused { reason }),
            text.prop_map(|topic| ServerMsg::Subscribed { topic }),
            (text, text).prop_map(|(topic, reason)| ServerMsg::TopicRefused { topic, reason }),
            (text, text, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..100)).prop_map(
                |(topic, from, seq, d)| ServerMsg::TopicMessage {
                    topic,
                    from,
                    seq,
                    data: Bytes::from(d)
                }
            ),
            (any::<bool>(), text, text).prop_map(|(joined, topic, peer)| ServerMsg::TopicPeer {
                joined,
                topic,
                peer
            }),
            (text, any::<u64>()).prop_map(|(topic, count)| ServerMsg::Missed { topic, count }),
            text.prop_map(|protocol| ServerMsg::ListenerClosed { protocol }),
            (any::<u64>(), text, text).prop_map(|(id, peer_id, protocol)| {
                ServerMsg::PeerConnection { id, peer_id, protocol }
            }),
            (text, text, text).prop_map(|(peer_id, protocol, error)| {
                ServerMsg::PeerConnectionRefused { peer_id, protocol, error }
            }),
            text.prop_map(|msg| ServerMsg::ProtocolError { msg }),
            text.prop_map(|protocol| ServerMsg::Listening { protocol }),
            (any::<u8>(), text, text).prop_map(|(state, peer_id, info)| ServerMsg::Peer {
                state,
                peer_id,
                info
            }),
            (any::<bool>(), text)
                .prop_map(|(up, protocol)| ServerMsg::LocalListener { up, protocol }),
            Just(ServerMsg::PresenceReady),
            Just(ServerMsg::PresenceResync),
            (any::<u64>(), text).prop_map(|(id, relay)| ServerMsg::Relayed { id, relay }),
        ]
    }

    proptest! {
        #[test]
        fn client_round_trip(msg in client_msg()) {
            prop_assert_eq!(ClientMsg::decode(msg.encode()).unwrap(), msg);
        }

        #[test]
        fn server_round_trip(msg in server_msg()) {
            let bytes = msg.encode();
            prop_assert_eq!(bytes.len(), msg.encoded_len());
            prop_assert_eq!(ServerMsg::decode(bytes).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ClientMsg::decode(Bytes::from(bytes.clone()));
            let _ = ServerMsg::decode(Bytes::from(bytes));
        }

        #[test]
        fn truncated_or_flipped_never_panics(msg in client_msg(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
            let bytes = msg.encode().to_vec();
            let cut = cut % (bytes.len() + 1);
            let _ = ClientMsg::decode(Bytes::copy_from_slice(&bytes[..cut]));
            let mut flipped = bytes.clone();
            let at = flip.0 % flipped.len();
            flipped[at] ^= flip.1;
            let _ = ClientMsg::decode(Bytes::from(flipped));
        }
    }

    #[test]
    fn overlong_strings_are_cut_at_a_character_boundary() {
        let peer = "é".repeat(40_000); // 80,000 bytes
        let msg = ServerMsg::PeerConnectionRefused {
            peer_id: peer,
            protocol: "/p".into(),
            error: "e".into(),
        };
        let ServerMsg::PeerConnectionRefused { peer_id, protocol, .. } =
            ServerMsg::decode(msg.encode()).unwrap()
        else {
            panic!("decodes as what it was")
        };
        assert_eq!(peer_id.len(), 65_534);
        assert_eq!(protocol, "/p");
    }

    #[test]
    fn errors_name_the_problem() {
        let err =
            |hex: &[u8]| ClientMsg::decode(Bytes::copy_from_slice(hex)).unwrap_err().to_string();
        assert_eq!(err(&[]), "empty message");
        assert_eq!(err(&[200]), "unknown message type 200");
        let mut connect = vec![5, 0, 0, 1, 44];
        connect.extend_from_slice(b"/p");
        assert_eq!(err(&connect), "Connect: PROTOCOL length 300 exceeds message (2 bytes left)");
        assert_eq!(err(&[1, 7, b'/']), "Listen: FRAMES flag must be 0 or 1, got 7");
    }

    #[test]
    fn start_is_read_in_the_layout_of_each_generation() {
        let start = |body: &[u8]| {
            let mut msg = vec![client_type::START];
            msg.extend_from_slice(body);
            ClientMsg::decode(Bytes::from(msg)).unwrap()
        };
        let key = b"CAESQCWIc99e8LjEn5El9T5wy42PfsBSCexYV47o50aQyzpr";
        let with = |head: &[u8]| [head, &key[..]].concat();
        let at = |port, key: &[u8]| ClientMsg::StartAt { port, key: Bytes::copy_from_slice(key) };
        // Spring 2020: the key text alone; the README: a str that is exactly the rest.
        assert_eq!(start(key), ClientMsg::Start { key: Bytes::copy_from_slice(key) });
        let readme = with(&(key.len() as u16).to_be_bytes());
        assert_eq!(start(&readme), ClientMsg::Start { key: Bytes::copy_from_slice(key) });
        // July 2020: a port, low (below 0x20 at first, like a str) or high, then the key.
        assert_eq!(start(&with(&4001u16.to_be_bytes())), at(4001, key));
        assert_eq!(start(&with(&50_000u16.to_be_bytes())), at(50_000, key));
        assert_eq!(start(&with(&[0, 0])), at(0, key));
        // The July chat's own call, start(key): port 0, no key (not the README's empty key).
        assert_eq!(start(&[0, 0]), at(0, b""));
        assert_eq!(start(&[0x0f, 0xa1]), at(4001, b""));
        // Text that is no key stays a (bad) key, refused when used.
        let odd = "ключ".as_bytes();
        assert_eq!(start(odd), ClientMsg::Start { key: Bytes::copy_from_slice(odd) });
        // Each encodes as it decodes.
        for msg in [at(4001, key), at(50_000, key), at(0, key)] {
            assert_eq!(ClientMsg::decode(msg.encode()).unwrap(), msg);
        }
    }

    #[test]
    fn identify_in_the_july_2020_layout_counts_its_key() {
        let msg = ServerMsg::IdentifyJuly2020 {
            public: true,
            peer_id: "12D3".into(),
            addresses: "[]".into(),
            key: "k".into(),
            version: "v1".into(),
        };
        let bytes = msg.encode();
        assert_eq!(&bytes[..], b"\x01\x01\x00\x0412D3\x00\x02[]\x00\x01kv1");
        assert_eq!(bytes.len(), msg.encoded_len());
    }
}
