//! What sessions of one daemon share: who listens on which protocol, and the in-process
//! joins between them.
//!
//! A Connect to the daemon's own peer id cannot go through libp2p (a node does not dial
//! itself), so the hub hands the listening session one end of an in-memory pipe and
//! the connecting session the other.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{broadcast, mpsc};

use super::pump::BoxIo;

/// Bytes buffered each way in an in-process join.
pub const LOCAL_PIPE_BUFFER: usize = 256 * 1024;
/// In-process joins waiting for their listener's session to take them.
pub const LOCAL_ACCEPT_QUEUE: usize = 64;

/// Listener changes buffered per presence subscriber before it must resync.
const EVENT_BUFFER: usize = 1024;
/// Bytes of listened protocol names the node announces, all sessions together (each
/// name counts its length plus 2). Identify carries them with the node's addresses
/// and its own protocols in one message that peers refuse past 4,096 bytes; past
/// this budget a Listen is refused, so no session can break identify for all.
pub const ANNOUNCE_BUDGET: usize = 1536;

/// A session of this daemon started (`up`) or stopped listening on `protocol`.
#[derive(Debug, Clone)]
pub struct ListenerEvent {
    pub protocol: String,
    pub up: bool,
}

/// The daemon-wide registry of listened protocols.
#[derive(Clone)]
pub struct Hub {
    registry: Arc<Mutex<Registry>>,
    events: broadcast::Sender<ListenerEvent>,
}

#[derive(Default)]
struct Registry {
    listeners: HashMap<String, Registration>,
    /// What the listened names cost in identify, in bytes.
    announced: usize,
}

impl Default for Hub {
    fn default() -> Self {
        Self { registry: Arc::default(), events: broadcast::channel(EVENT_BUFFER).0 }
    }
}

struct Registration {
    session: u64,
    local: mpsc::Sender<BoxIo>,
}

/// Why a protocol cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("another session of this daemon listens on it")]
    Taken,
    #[error(
        "the node announces {ANNOUNCE_BUDGET} bytes of listened protocol names already, \
         all it can (identify must stay under 4 KiB)"
    )]
    AnnounceFull,
}

/// What a listened name costs in identify.
fn announce_cost(protocol: &str) -> usize {
    protocol.len() + 2
}

/// Why an in-process join failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocalJoinError {
    #[error("no session of this daemon listens on {0}")]
    NotListening(String),
    #[error("the listener on {0} is not accepting (too many joins waiting)")]
    Busy(String),
}

impl Hub {
    /// Registers `session` as the listener of `protocol`.
    pub fn register(
        &self,
        protocol: &str,
        session: u64,
    ) -> Result<mpsc::Receiver<BoxIo>, RegisterError> {
        let mut registry = self.lock();
        if registry.listeners.contains_key(protocol) {
            return Err(RegisterError::Taken);
        }
        let announced = registry.announced + announce_cost(protocol);
        if announced > ANNOUNCE_BUDGET {
            return Err(RegisterError::AnnounceFull);
        }
        registry.announced = announced;
        let (local, rx) = mpsc::channel(LOCAL_ACCEPT_QUEUE);
        registry.listeners.insert(protocol.to_string(), Registration { session, local });
        let _ = self.events.send(ListenerEvent { protocol: protocol.into(), up: true });
        Ok(rx)
    }

    /// Removes `session`'s registration of `protocol`, if it has it.
    pub fn unregister(&self, protocol: &str, session: u64) {
        let mut registry = self.lock();
        if registry.listeners.get(protocol).is_some_and(|r| r.session == session) {
            registry.listeners.remove(protocol);
            registry.announced -= announce_cost(protocol);
            let _ = self.events.send(ListenerEvent { protocol: protocol.into(), up: false });
        }
    }

    /// Every protocol some session listens on, sorted.
    pub fn protocols(&self) -> Vec<String> {
        let mut protocols: Vec<String> = self.lock().listeners.keys().cloned().collect();
        protocols.sort();
        protocols
    }

    /// Listener changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ListenerEvent> {
        self.events.subscribe()
    }

    /// Number of protocols listened on, daemon-wide.
    pub fn listener_count(&self) -> usize {
        self.lock().listeners.len()
    }

    /// Joins a connecting session to the session listening on `protocol`.
    pub fn join(&self, protocol: &str) -> Result<BoxIo, LocalJoinError> {
        let registry = self.lock();
        let registration = registry
            .listeners
            .get(protocol)
            .ok_or_else(|| LocalJoinError::NotListening(protocol.into()))?;
        let (ours, theirs) = tokio::io::duplex(LOCAL_PIPE_BUFFER);
        registration
            .local
            .try_send(Box::new(theirs))
            .map_err(|_| LocalJoinError::Busy(protocol.into()))?;
        Ok(Box::new(ours))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}
