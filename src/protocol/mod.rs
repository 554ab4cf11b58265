//! The wire: what a browser and the daemon say to each other over `/libp2p`.
//!
//! Pure code, no I/O: [`ClientMsg`] and [`ServerMsg`] with their encoders and decoders,
//! the `/addrs/` connect strings ([`ConnectTarget`]) and the Ascii85 codec under them.
//! `PROTOCOL.md` is the normative description of the same bytes.

pub mod addrs;
pub mod ascii85;
mod message;
pub mod text;

pub use addrs::{
    is_local_target, AddrsError, ConnectTarget, ADDRS_PREFIX, MAX_ADDR_TEXT, MAX_CONNECT_ADDRS,
    MAX_PEER_ID_TEXT,
};
pub use message::{
    client_type, put_data_header, server_type, ClientMsg, ConnId, DecodeError, Relay, ServerMsg,
    DATA_HEADER_LEN,
};

/// The longest protocol id the daemon accepts (libp2p's multistream-select frames cap
/// them far higher, but a browser has no business with longer names).
pub const MAX_PROTOCOL_LEN: usize = 256;

/// Why a PROTOCOL is not a protocol id a remote peer can negotiate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolIdError {
    /// The quoted protocol.
    #[error("protocol {0} must start with '/'")]
    NoSlash(String),
    #[error("protocol is {0} bytes, longer than {MAX_PROTOCOL_LEN}")]
    TooLong(usize),
    #[error("protocol {quoted} contains {c:?}; only printable ASCII is allowed")]
    NotPrintable { quoted: String, c: char },
}

/// Checks that `protocol` is a protocol id a remote peer can negotiate: it starts with
/// `/`, is at most [`MAX_PROTOCOL_LEN`] bytes, and holds only printable ASCII.
pub fn validate_protocol(protocol: &str) -> Result<(), ProtocolIdError> {
    if !protocol.starts_with('/') {
        return Err(ProtocolIdError::NoSlash(text::quote(protocol)));
    }
    if protocol.len() > MAX_PROTOCOL_LEN {
        return Err(ProtocolIdError::TooLong(protocol.len()));
    }
    if let Some(c) = protocol.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(ProtocolIdError::NotPrintable { quoted: text::quote(protocol), c });
    }
    Ok(())
}
