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

/// A session of this daemon started (`up`) or stopped listening on `protocol`.
#[derive(Debug, Clone)]
pub struct ListenerEvent {
    pub protocol: String,
    pub up: bool,
}

/// The daemon-wide registry of listened protocols.
#[derive(Clone)]
pub struct Hub {
    listeners: Arc<Mutex<HashMap<String, Registration>>>,
    events: broadcast::Sender<ListenerEvent>,
}

impl Default for Hub {
    fn default() -> Self {
        Self { listeners: Arc::default(), events: broadcast::channel(EVENT_BUFFER).0 }
    }
}

struct Registration {
    session: u64,
    local: mpsc::Sender<BoxIo>,
}

/// Why an in-process join failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalJoinError {
    #[error("no session of this daemon listens on {0}")]
    NotListening(String),
    #[error("the listener on {0} is not accepting (too many joins waiting)")]
    Busy(String),
}

impl Hub {
    /// Registers `session` as the listener of `protocol`; `None` if another has it.
    pub fn register(&self, protocol: &str, session: u64) -> Option<mpsc::Receiver<BoxIo>> {
        let mut listeners = self.lock();
        if listeners.contains_key(protocol) {
            return None;
        }
        let (local, rx) = mpsc::channel(LOCAL_ACCEPT_QUEUE);
        listeners.insert(protocol.to_string(), Registration { session, local });
        let _ = self.events.send(ListenerEvent { protocol: protocol.into(), up: true });
        Some(rx)
    }

    /// Removes `session`'s registration of `protocol`, if it has it.
    pub fn unregister(&self, protocol: &str, session: u64) {
        let mut listeners = self.lock();
        if listeners.get(protocol).is_some_and(|r| r.session == session) {
            listeners.remove(protocol);
            let _ = self.events.send(ListenerEvent { protocol: protocol.into(), up: false });
        }
    }

    /// Every protocol some session listens on, sorted.
    pub fn protocols(&self) -> Vec<String> {
        let mut protocols: Vec<String> = self.lock().keys().cloned().collect();
        protocols.sort();
        protocols
    }

    /// Listener changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ListenerEvent> {
        self.events.subscribe()
    }

    /// Number of protocols listened on, daemon-wide.
    pub fn listener_count(&self) -> usize {
        self.lock().len()
    }

    /// Joins a connecting session to the session listening on `protocol`.
    pub fn join(&self, protocol: &str) -> Result<BoxIo, LocalJoinError> {
        let listeners = self.lock();
        let registration =
            listeners.get(protocol).ok_or_else(|| LocalJoinError::NotListening(protocol.into()))?;
        let (ours, theirs) = tokio::io::duplex(LOCAL_PIPE_BUFFER);
        registration
            .local
            .try_send(Box::new(theirs))
            .map_err(|_| LocalJoinError::Busy(protocol.into()))?;
        Ok(Box::new(ours))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registration>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }
}
