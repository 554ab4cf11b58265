//! Why a session refuses a Listen or a Connect. Each variant's `Display` is the text
//! the browser is told; code decides on variants, never on that text.

use super::hub::{LocalJoinError, RegisterError};
use crate::{
    node::ConnectError,
    protocol::{AddrsError, ProtocolIdError},
};

/// The answer to a browser on another machine that names this machine's own
/// addresses: the same whatever is (or is not) listening there.
pub const LOCAL_TARGET_REFUSED: &str = "loopback and link-local addresses are refused for \
     browsers on other machines (the daemon's --allow-loopback-dials allows them)";

const NOT_STARTED: &str = "the node is not started; send Start first";

/// Why a Listen is answered with Listen Refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenRefusal {
    #[error(transparent)]
    BadProtocol(#[from] ProtocolIdError),
    #[error("{NOT_STARTED}")]
    NotStarted,
    #[error("this session already listens on it")]
    AlreadyListening,
    #[error("too many listeners in this session (limit {0})")]
    TooManyListeners(usize),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("the node accepts this protocol already")]
    AlreadyAccepted,
}

impl ListenRefusal {
    /// Whether the browser is also told with a Protocol Error (it did something out
    /// of order, rather than ask for something the daemon cannot give).
    pub fn is_protocol_error(&self) -> bool {
        matches!(self, Self::NotStarted)
    }
}

/// Why a Connect is answered with Peer Connection Refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectRefusal {
    #[error(transparent)]
    BadProtocol(#[from] ProtocolIdError),
    #[error("{NOT_STARTED}")]
    NotStarted,
    /// The quoted RELAY.
    #[error("RELAY {0} is neither a peer id nor a multiaddr ending in /p2p/ID")]
    BadRelay(String),
    #[error(transparent)]
    BadTarget(#[from] AddrsError),
    #[error("{LOCAL_TARGET_REFUSED}")]
    LocalTarget,
    #[error("too many streams in this session (limit {0})")]
    TooManyStreams(usize),
    #[error("too many peers being dialed by this session (limit {0})")]
    TooManyDials(usize),
    #[error(transparent)]
    Join(#[from] LocalJoinError),
    #[error(transparent)]
    Failed(Box<ConnectError>),
}
