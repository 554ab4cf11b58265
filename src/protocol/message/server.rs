//! Encoding what the daemon sends (and decoding it, for tests and tools).

use bytes::{BufMut, Bytes, BytesMut};

use super::{put_str, server_type, DecodeError, Reader, ServerMsg, DATA_HEADER_LEN};

impl ServerMsg {
    /// Encodes the message into one WebSocket payload.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        match self {
            Self::Hello { started, version } => {
                out.put_u8(server_type::HELLO);
                out.put_u8(u8::from(*started));
                out.put_slice(version.as_bytes());
            }
            Self::Identify { public, peer_id, addresses, key } => {
                out.put_u8(server_type::IDENTIFY);
                out.put_u8(u8::from(*public));
                put_str(&mut out, peer_id);
                put_str(&mut out, addresses);
                out.put_slice(key.as_bytes());
            }
            Self::IdentifyJuly2020 { public, peer_id, addresses, key, version } => {
                out.put_u8(server_type::IDENTIFY);
                out.put_u8(u8::from(*public));
                put_str(&mut out, peer_id);
                put_str(&mut out, addresses);
                put_str(&mut out, key);
                out.put_slice(version.as_bytes());
            }
            Self::ListenerConnection { id, peer_id, protocol } => {
                out.put_u8(server_type::LISTENER_CONNECTION);
                out.put_u64(*id);
                put_str(&mut out, peer_id);
                out.put_slice(protocol.as_bytes());
            }
            Self::ConnectionClosed { id, reason } => {
                out.put_u8(server_type::CONNECTION_CLOSED);
                out.put_u64(*id);
                out.put_slice(reason.as_bytes());
            }
            Self::Data { id, data } => {
                out.put_u8(server_type::DATA);
                out.put_u64(*id);
                out.put_slice(data);
            }
            Self::ListenRefused { protocol } => {
                out.put_u8(server_type::LISTEN_REFUSED);
                out.put_slice(protocol.as_bytes());
            }
            Self::ListenerClosed { protocol } => {
                out.put_u8(server_type::LISTENER_CLOSED);
                out.put_slice(protocol.as_bytes());
            }
            Self::PeerConnection { id, peer_id, protocol } => {
                out.put_u8(server_type::PEER_CONNECTION);
                out.put_u64(*id);
                put_str(&mut out, peer_id);
                out.put_slice(protocol.as_bytes());
            }
            Self::PeerConnectionRefused { peer_id, protocol, error } => {
                out.put_u8(server_type::PEER_CONNECTION_REFUSED);
                put_str(&mut out, peer_id);
                put_str(&mut out, protocol);
                out.put_slice(error.as_bytes());
            }
            Self::ProtocolError { msg } => {
                out.put_u8(server_type::PROTOCOL_ERROR);
                out.put_slice(msg.as_bytes());
            }
            Self::Listening { protocol } => {
                out.put_u8(server_type::LISTENING);
                out.put_slice(protocol.as_bytes());
            }
            Self::Peer { state, peer_id, info } => {
                out.put_u8(server_type::PEER);
                out.put_u8(*state);
                put_str(&mut out, peer_id);
                out.put_slice(info.as_bytes());
            }
            Self::LocalListener { up, protocol } => {
                out.put_u8(server_type::LOCAL_LISTENER);
                out.put_u8(u8::from(*up));
                out.put_slice(protocol.as_bytes());
            }
            Self::PresenceReady => out.put_u8(server_type::PRESENCE_READY),
            Self::PresenceResync => out.put_u8(server_type::PRESENCE_RESYNC),
            Self::Relayed { id, relay } => {
                out.put_u8(server_type::RELAYED);
                out.put_u64(*id);
                out.put_slice(relay.as_bytes());
            }
            Self::Extensions { names } => {
                out.put_u8(server_type::EXTENSIONS);
                out.put_slice(names.as_bytes());
            }
            Self::Credit { id, bytes } => {
                out.put_u8(server_type::CREDIT);
                out.put_u64(*id);
                out.put_u32(*bytes);
            }
            Self::Reachability { state } => {
                out.put_u8(server_type::REACHABILITY);
                out.put_u8(*state);
            }
            Self::Ack { count } => {
                out.put_u8(server_type::ACK);
                out.put_u64(*count);
            }
            Self::Resumed { count, token } => {
                out.put_u8(server_type::RESUMED);
                out.put_u64(*count);
                out.put_slice(token.as_bytes());
            }
            Self::ResumeRefused { reason } => {
                out.put_u8(server_type::RESUME_REFUSED);
                out.put_slice(reason.as_bytes());
            }
            Self::Subscribed { topic } => {
                out.put_u8(server_type::SUBSCRIBED);
                out.put_slice(topic.as_bytes());
            }
            Self::TopicRefused { topic, reason } => {
                out.put_u8(server_type::TOPIC_REFUSED);
                put_str(&mut out, topic);
                out.put_slice(reason.as_bytes());
            }
            Self::TopicMessage { topic, from, seq, data } => {
                out.put_u8(server_type::TOPIC_MESSAGE);
                put_str(&mut out, topic);
                put_str(&mut out, from);
                out.put_u64(*seq);
                out.put_slice(data);
            }
            Self::TopicPeer { joined, topic, peer } => {
                out.put_u8(server_type::TOPIC_PEER);
                out.put_u8(u8::from(*joined));
                put_str(&mut out, topic);
                out.put_slice(peer.as_bytes());
            }
            Self::Missed { topic, count } => {
                out.put_u8(server_type::MISSED);
                put_str(&mut out, topic);
                out.put_u64(*count);
            }
        }
        out.freeze()
    }

    /// The length of [`ServerMsg::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Self::Hello { version, .. } => 1 + version.len(),
            Self::Identify { peer_id, addresses, key, .. } => {
                1 + 2 + peer_id.len() + 2 + addresses.len() + key.len()
            }
            Self::IdentifyJuly2020 { peer_id, addresses, key, version, .. } => {
                1 + 2 + peer_id.len() + 2 + addresses.len() + 2 + key.len() + version.len()
            }
            Self::ListenerConnection { peer_id, protocol, .. }
            | Self::PeerConnection { peer_id, protocol, .. } => {
                8 + 2 + peer_id.len() + protocol.len()
            }
            Self::ConnectionClosed { reason, .. } => 8 + reason.len(),
            Self::Data { data, .. } => 8 + data.len(),
            Self::ListenRefused { protocol }
            | Self::ListenerClosed { protocol }
            | Self::Listening { protocol } => protocol.len(),
            Self::PeerConnectionRefused { peer_id, protocol, error } => {
                2 + peer_id.len() + 2 + protocol.len() + error.len()
            }
            Self::ProtocolError { msg } => msg.len(),
            Self::Peer { peer_id, info, .. } => 1 + 2 + peer_id.len() + info.len(),
            Self::LocalListener { protocol, .. } => 1 + protocol.len(),
            Self::PresenceReady | Self::PresenceResync => 0,
            Self::Relayed { relay, .. } => 8 + relay.len(),
            Self::Extensions { names } => names.len(),
            Self::Credit { .. } => 8 + 4,
            Self::Reachability { .. } => 1,
            Self::Ack { .. } => 8,
            Self::Resumed { token, .. } => 8 + token.len(),
            Self::ResumeRefused { reason } => reason.len(),
            Self::Subscribed { topic } => topic.len(),
            Self::TopicRefused { topic, reason } => 2 + topic.len() + reason.len(),
            Self::TopicMessage { topic, from, data, .. } => {
                2 + topic.len() + 2 + from.len() + 8 + data.len()
            }
            Self::TopicPeer { topic, peer, .. } => 1 + 2 + topic.len() + peer.len(),
            Self::Missed { topic, .. } => 2 + topic.len() + 8,
        }
    }

    /// Decodes a server message, as a client does; trailing bytes a layout does not
    /// expect are ignored (Hello's version string is one such tail).
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        let (&kind, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        Ok(match kind {
            server_type::HELLO => {
                let mut r = Reader::new("Hello", body);
                let started = r.flag("STARTED")?;
                Self::Hello { started, version: String::from_utf8_lossy(r.rest()).into_owned() }
            }
            server_type::IDENTIFY => {
                let mut r = Reader::new("Identify", body);
                Self::Identify {
                    public: r.flag("PUBLIC")?,
                    peer_id: r.str("PEERID")?,
                    addresses: r.str("ADDRESSES")?,
                    key: r.rest_str("KEY")?,
                }
            }
            server_type::LISTENER_CONNECTION | server_type::PEER_CONNECTION => {
                let mut r = Reader::new("Connection", body);
                let id = r.id()?;
                let peer_id = r.str("PEERID")?;
                let protocol = r.rest_str("PROTOCOL")?;
                if kind == server_type::PEER_CONNECTION {
                    Self::PeerConnection { id, peer_id, protocol }
                } else {
                    Self::ListenerConnection { id, peer_id, protocol }
                }
            }
            server_type::CONNECTION_CLOSED => {
                let mut r = Reader::new("Connection Closed", body);
                Self::ConnectionClosed { id: r.id()?, reason: r.rest_str("REASON")? }
            }
            server_type::DATA => {
                Reader::new("Data", body).id()?;
                Self::Data {
                    id: u64::from_be_bytes(body[..8].try_into().expect("checked")),
                    data: bytes.slice(DATA_HEADER_LEN..),
                }
            }
            server_type::LISTEN_REFUSED => Self::ListenRefused {
                protocol: Reader::new("Listen Refused", body).rest_str("PROTOCOL")?,
            },
            server_type::LISTENER_CLOSED => Self::ListenerClosed {
                protocol: Reader::new("Listener Closed", body).rest_str("PROTOCOL")?,
            },
            server_type::PEER_CONNECTION_REFUSED => {
                let mut r = Reader::new("Peer Connection Refused", body);
                Self::PeerConnectionRefused {
                    peer_id: r.str("PEERID")?,
                    protocol: r.str("PROTOCOL")?,
                    error: r.rest_str("ERROR")?,
                }
            }
            server_type::PROTOCOL_ERROR => {
                Self::ProtocolError { msg: Reader::new("Protocol Error", body).rest_str("MSG")? }
            }
            server_type::PEER => {
                let mut r = Reader::new("Peer", body);
                let state = r.take("STATE", 1)?[0];
                Self::Peer { state, peer_id: r.str("PEERID")?, info: r.rest_str("INFO")? }
            }
            server_type::LOCAL_LISTENER => {
                let mut r = Reader::new("Local Listener", body);
                Self::LocalListener { up: r.flag("UP")?, protocol: r.rest_str("PROTOCOL")? }
            }
            server_type::PRESENCE_READY => Self::PresenceReady,
            server_type::PRESENCE_RESYNC => Self::PresenceResync,
            server_type::RELAYED => {
                let mut r = Reader::new("Relayed", body);
                Self::Relayed { id: r.id()?, relay: r.rest_str("RELAY")? }
            }
            server_type::EXTENSIONS => {
                Self::Extensions { names: Reader::new("Extensions", body).rest_str("NAMES")? }
            }
            server_type::CREDIT => {
                let mut r = Reader::new("Credit", body);
                Self::Credit { id: r.id()?, bytes: r.credit()? }
            }
            server_type::REACHABILITY => {
                Self::Reachability { state: Reader::new("Reachability", body).take("STATE", 1)?[0] }
            }
            server_type::ACK => Self::Ack { count: Reader::new("Ack", body).u64("COUNT")? },
            server_type::RESUMED => {
                let mut r = Reader::new("Resumed", body);
                Self::Resumed { count: r.u64("COUNT")?, token: r.rest_str("TOKEN")? }
            }
            server_type::RESUME_REFUSED => Self::ResumeRefused {
                reason: Reader::new("Resume Refused", body).rest_str("REASON")?,
            },
            server_type::SUBSCRIBED => {
                Self::Subscribed { topic: Reader::new("Subscribed", body).rest_str("TOPIC")? }
            }
            server_type::TOPIC_REFUSED => {
                let mut r = Reader::new("Topic Refused", body);
                Self::TopicRefused { topic: r.str("TOPIC")?, reason: r.rest_str("REASON")? }
            }
            server_type::TOPIC_MESSAGE => {
                let mut r = Reader::new("Message", body);
                let (topic, from, seq) = (r.str("TOPIC")?, r.str("FROM")?, r.u64("SEQ")?);
                let at = bytes.len() - r.rest().len();
                Self::TopicMessage { topic, from, seq, data: bytes.slice(at..) }
            }
            server_type::TOPIC_PEER => {
                let mut r = Reader::new("Topic Peer", body);
                let joined = r.flag("JOINED")?;
                Self::TopicPeer { joined, topic: r.str("TOPIC")?, peer: r.rest_str("PEERID")? }
            }
            server_type::MISSED => {
                let mut r = Reader::new("Missed", body);
                Self::Missed { topic: r.str("TOPIC")?, count: r.u64("COUNT")? }
            }
            server_type::LISTENING => {
                Self::Listening { protocol: Reader::new("Listening", body).rest_str("PROTOCOL")? }
            }
            other => return Err(DecodeError::UnknownType(other)),
        })
    }
}
