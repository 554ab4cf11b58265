//! Decoding what a browser sends (and encoding it, for tests and tools).

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    client_type, put_str, ClientMsg, DecodeError, Reader, Relay, DATA_HEADER_LEN, MAX_EXTENSIONS,
};

impl ClientMsg {
    /// Decodes one client message. `Data` payloads and `Start` keys share `bytes`' buffer.
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        let (&kind, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        match kind {
            client_type::START => decode_start(&bytes),
            client_type::LISTEN => {
                let mut r = Reader::new("Listen", body);
                let frames = r.flag("FRAMES")?;
                let protocol = r.rest_str("PROTOCOL")?;
                Ok(Self::Listen { frames, protocol })
            }
            client_type::STOP => decode_stop(body),
            client_type::CLOSE => {
                let mut r = Reader::new("Close", body);
                Ok(Self::Close { id: r.id()? })
            }
            client_type::DATA => {
                let mut r = Reader::new("Data", body);
                let id = r.id()?;
                Ok(Self::Data { id, data: bytes.slice(DATA_HEADER_LEN..) })
            }
            client_type::CONNECT => decode_connect(body),
            client_type::PRESENCE => {
                Ok(Self::Presence { on: Reader::new("Presence", body).flag("ON")? })
            }
            client_type::EXTENSIONS => decode_extensions(body),
            client_type::CREDIT => {
                let mut r = Reader::new("Credit", body);
                Ok(Self::Credit { id: r.id()?, bytes: r.credit()? })
            }
            client_type::ACK => Ok(Self::Ack { count: Reader::new("Ack", body).u64("COUNT")? }),
            client_type::SUBSCRIBE => {
                Ok(Self::Subscribe { topic: Reader::new("Subscribe", body).rest_str("TOPIC")? })
            }
            client_type::UNSUBSCRIBE => {
                Ok(Self::Unsubscribe { topic: Reader::new("Unsubscribe", body).rest_str("TOPIC")? })
            }
            client_type::PUBLISH => {
                let mut r = Reader::new("Publish", body);
                let topic = r.str("TOPIC")?;
                let at = bytes.len() - r.rest().len();
                Ok(Self::Publish { topic, data: bytes.slice(at..) })
            }
            other => Err(DecodeError::UnknownType(other)),
        }
    }

    /// Encodes in the original client's layout; a Connect through a named relay can only
    /// be said in the README's layout, so that one uses it.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Self::StartAt { port, key } => {
                out.put_u8(client_type::START);
                out.put_u16(*port);
                out.put_slice(key);
            }
            Self::Start { key } => {
                out.put_u8(client_type::START);
                // A key that would read as another layout (one beginning below 0x20, or
                // one that looks like a July 2020 port and key; found by fuzzing) is said
                // in the README's layout, which reads back exactly.
                let mut raw = BytesMut::from(&[client_type::START][..]);
                raw.put_slice(key);
                let plain =
                    matches!(decode_start(&raw.freeze()), Ok(Self::Start { key: k }) if k == *key);
                if !plain && key.len() <= usize::from(u16::MAX) {
                    out.put_u16(key.len() as u16);
                }
                out.put_slice(key);
            }
            Self::Listen { frames, protocol } => {
                out.put_u8(client_type::LISTEN);
                out.put_u8(u8::from(*frames));
                out.put_slice(protocol.as_bytes());
            }
            Self::Stop { retain, protocol } => {
                out.put_u8(client_type::STOP);
                out.put_u8(u8::from(*retain));
                out.put_slice(protocol.as_bytes());
            }
            Self::Close { id } => {
                out.put_u8(client_type::CLOSE);
                out.put_u64(*id);
            }
            Self::Data { id, data } => {
                out.put_u8(client_type::DATA);
                out.put_u64(*id);
                out.put_slice(data);
            }
            Self::Connect { frames, relay, protocol, peer } => {
                out.put_u8(client_type::CONNECT);
                out.put_u8(u8::from(*frames));
                match relay {
                    Relay::Direct | Relay::Any => {
                        out.put_u8(u8::from(*relay == Relay::Any));
                        put_str(&mut out, protocol);
                    }
                    Relay::Via(relay) => {
                        put_str(&mut out, protocol);
                        put_str(&mut out, relay);
                    }
                }
                out.put_slice(peer.as_bytes());
            }
            Self::Presence { on } => {
                out.put_u8(client_type::PRESENCE);
                out.put_u8(u8::from(*on));
            }
            Self::Extensions { names } => {
                out.put_u8(client_type::EXTENSIONS);
                out.put_slice(names.as_bytes());
            }
            Self::Credit { id, bytes } => {
                out.put_u8(client_type::CREDIT);
                out.put_u64(*id);
                out.put_u32(*bytes);
            }
            Self::Ack { count } => {
                out.put_u8(client_type::ACK);
                out.put_u64(*count);
            }
            Self::Subscribe { topic } => {
                out.put_u8(client_type::SUBSCRIBE);
                out.put_slice(topic.as_bytes());
            }
            Self::Unsubscribe { topic } => {
                out.put_u8(client_type::UNSUBSCRIBE);
                out.put_slice(topic.as_bytes());
            }
            Self::Publish { topic, data } => {
                out.put_u8(client_type::PUBLISH);
                put_str(&mut out, topic);
                out.put_slice(data);
            }
        }
        out.freeze()
    }
}

/// Extensions: `[NAMES: rest]`, printable ASCII, bounded.
fn decode_extensions(body: &[u8]) -> Result<ClientMsg, DecodeError> {
    if body.len() > MAX_EXTENSIONS {
        return Err(DecodeError::Layout { msg: "Extensions", detail: "NAMES is over 1024 bytes" });
    }
    if !body.iter().all(|b| (0x20..0x7f).contains(b)) {
        let detail = "NAMES must be printable ASCII";
        return Err(DecodeError::Layout { msg: "Extensions", detail });
    }
    Ok(ClientMsg::Extensions { names: Reader::new("Extensions", body).rest_str("NAMES")? })
}

/// Start, in the layout of the page's generation:
/// - `[KEY: rest]` (the original's spring 2020 client): key text is base64, so the
///   whole body is base64 text (or anything that is not one of the others);
/// - `[KEY: str]` (the original README): a length below 8 KiB (first byte below 0x20)
///   that is exactly what follows;
/// - `[PORT:2][KEY: rest]` (its July 2020 client): two bytes, then base64 text (its
///   chat sent just `[0][0]`, no key, which also reads so). A port
///   below 8192 begins below 0x20, like a `str` length, and is told apart by not
///   matching the rest's length; one above is told from key text by its bytes, which
///   are not base64 (a port whose two bytes both happen to be base64 characters reads
///   as part of a key, and that key is then refused as invalid).
fn decode_start(bytes: &Bytes) -> Result<ClientMsg, DecodeError> {
    let body = &bytes[1..];
    let key_text = |b: &[u8]| {
        b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"+/=".contains(&c) || c.is_ascii_whitespace())
    };
    let start_at = || {
        let port = u16::from_be_bytes([body[0], body[1]]);
        Ok(ClientMsg::StartAt { port, key: bytes.slice(3..) })
    };
    match body.first() {
        None => Ok(ClientMsg::Start { key: Bytes::new() }),
        // The original's July 2020 chat called start(key) with the key as the port:
        // `[0][0]`, no key. (The README's empty `str` key says the same, bar the
        // generation.)
        Some(0) if body == [0, 0] => start_at(),
        Some(&first) if first < 0x20 => {
            if body.len() < 2 {
                return Err(DecodeError::Truncated {
                    msg: "Start",
                    field: "KEY",
                    needed: 2,
                    have: 1,
                });
            }
            let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            if len == body.len() - 2 {
                Ok(ClientMsg::Start { key: bytes.slice(3..) })
            } else {
                start_at()
            }
        }
        Some(_) if !key_text(body) && body.len() >= 2 && key_text(&body[2..]) => start_at(),
        Some(_) => Ok(ClientMsg::Start { key: bytes.slice(1..) }),
    }
}

/// Stop: `[RETAIN:1][PROTOCOL: rest]` (the original client) or `[PROTOCOL: rest]` (the
/// README). Protocol ids start with `/`, so the first body byte tells them apart.
fn decode_stop(body: &[u8]) -> Result<ClientMsg, DecodeError> {
    let mut r = Reader::new("Stop", body);
    match body.first() {
        Some(b'/') => Ok(ClientMsg::Stop { retain: false, protocol: r.rest_str("PROTOCOL")? }),
        Some(0 | 1) => {
            let retain = r.flag("RETAIN")?;
            Ok(ClientMsg::Stop { retain, protocol: r.rest_str("PROTOCOL")? })
        }
        Some(_) => Err(DecodeError::Layout {
            msg: "Stop",
            detail: "first byte must be RETAIN (0 or 1) or the protocol's leading '/'",
        }),
        None => Err(DecodeError::Truncated { msg: "Stop", field: "PROTOCOL", needed: 1, have: 0 }),
    }
}

/// Connect: `[FRAMES:1][RELAY:1][PROTOCOL: str][PEERID: rest]` (the original client) or
/// `[FRAMES:1][PROTOCOL: str][RELAY: str][PEERID: rest]` (the README). Only one reading
/// normally yields a protocol that fits and starts with `/`; the client's wins a tie.
fn decode_connect(body: &[u8]) -> Result<ClientMsg, DecodeError> {
    let client = || -> Result<ClientMsg, DecodeError> {
        let mut r = Reader::new("Connect", body);
        let frames = r.flag("FRAMES")?;
        let relay = if r.flag("RELAY")? { Relay::Any } else { Relay::Direct };
        let protocol = r.str("PROTOCOL")?;
        let peer = r.rest_str("PEERID")?;
        Ok(ClientMsg::Connect { frames, relay, protocol, peer })
    };
    let readme = || -> Result<ClientMsg, DecodeError> {
        let mut r = Reader::new("Connect", body);
        let frames = r.flag("FRAMES")?;
        let protocol = r.str("PROTOCOL")?;
        let relay = r.str("RELAY")?;
        let peer = r.rest_str("PEERID")?;
        let relay = if relay.is_empty() { Relay::Direct } else { Relay::Via(relay) };
        Ok(ClientMsg::Connect { frames, relay, protocol, peer })
    };
    let starts_with_slash = |m: &ClientMsg| matches!(m, ClientMsg::Connect { protocol, .. } if protocol.starts_with('/'));
    let client = client();
    if matches!(&client, Ok(m) if starts_with_slash(m)) {
        return client;
    }
    match readme() {
        Ok(m) if starts_with_slash(&m) => Ok(m),
        // Neither reading is a protocol id: report the client layout's problem.
        _ => client,
    }
}
