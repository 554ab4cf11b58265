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
            client_type::START => Ok(Self::Start { key: decode_start_key(&bytes)? }),
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
            other => Err(DecodeError::UnknownType(other)),
        }
    }

    /// Encodes in the original client's layout; a Connect through a named relay can only
    /// be said in the README's layout, so that one uses it.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Self::Start { key } => {
                out.put_u8(client_type::START);
                // A key that itself begins below 0x20 would read as the README layout:
                // say it in that layout (found by fuzzing).
                if key.first().is_some_and(|&b| b < 0x20) && key.len() <= usize::from(u16::MAX) {
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

/// Start: `[KEY: rest]` (the original client) or `[KEY: str]` (the README). Key text is
/// base64, which never begins with a byte below 0x20, while a `str` length of a key
/// shorter than 8 KiB always does.
fn decode_start_key(bytes: &Bytes) -> Result<Bytes, DecodeError> {
    let body = &bytes[1..];
    match body.first() {
        Some(&first) if first < 0x20 => {
            let mut r = Reader::new("Start", body);
            let len = r.take("KEY", 2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            if len > r.buf.len() {
                return Err(DecodeError::LengthExceeds {
                    msg: "Start",
                    field: "KEY",
                    len,
                    have: r.buf.len(),
                });
            }
            Ok(bytes.slice(3..3 + len))
        }
        _ => Ok(bytes.slice(1..)),
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
