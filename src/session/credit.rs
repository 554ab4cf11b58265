//! The credit extension's accounting (PROTOCOL.md, *Extension: credit*).
//!
//! Send credit (browser → streams): the session takes a Data's cost from its stream's
//! window and from the session window; the stream's write pump gives it back through
//! its [`Account`] as the bytes go into the libp2p stream, or are dropped. Receive
//! credit (streams → browser): a semaphore per stream, filled by the browser's Credit
//! messages and taken by the read pump before it reads (see `pump`).

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use tokio::sync::Semaphore;

use super::{outbox::Outbox, pump::WriteBudget};
use crate::{config::Windows, protocol::ConnId};

/// A stream's receive credit never grows past this, whatever the browser sends.
pub const MAX_RECEIVE_CREDIT: usize = 1 << 30;

/// What a Data costs on a stream's windows: its bytes on the libp2p stream.
pub fn cost(framed: bool, payload: usize) -> usize {
    payload + if framed { 4 } else { 0 }
}

/// A session's credit state, once the browser turned the extension on.
pub struct SessionCredit {
    pub windows: Windows,
    /// What is left of the session's send window.
    pub left: Arc<AtomicUsize>,
}

impl SessionCredit {
    pub fn new(windows: Windows) -> Self {
        Self { windows, left: Arc::new(AtomicUsize::new(windows.session)) }
    }
}

/// One stream's credit, both ways.
pub struct StreamCredit {
    /// What is left of the stream's send window.
    pub send: Arc<AtomicUsize>,
    /// What the browser allows the daemon to send it.
    pub receive: Arc<Semaphore>,
    /// Send credit to be told to the browser (see [`CreditReturn`]).
    owed: Arc<AtomicUsize>,
}

impl StreamCredit {
    pub fn new(windows: &Windows) -> Self {
        Self {
            send: Arc::new(AtomicUsize::new(windows.stream)),
            receive: Arc::new(Semaphore::new(windows.receive)),
            owed: Arc::default(),
        }
    }

    /// The browser's Credit: more it may be sent, up to [`MAX_RECEIVE_CREDIT`].
    pub fn grant(&self, bytes: u32) {
        let room = MAX_RECEIVE_CREDIT.saturating_sub(self.receive.available_permits());
        let add = (bytes as usize).min(room);
        if add > 0 {
            self.receive.add_permits(add);
        }
    }

    /// How the stream's write pump gives its bytes back.
    pub fn giver(&self, id: ConnId, session: &SessionCredit, out: &Outbox) -> CreditReturn {
        CreditReturn {
            id,
            stream: self.send.clone(),
            session: session.left.clone(),
            owed: self.owed.clone(),
            out: out.clone(),
        }
    }
}

/// Gives a stream's written (or dropped) bytes back to the browser: to both windows at
/// once (before the browser can hear of it), and as a Credit message.
pub struct CreditReturn {
    id: ConnId,
    stream: Arc<AtomicUsize>,
    session: Arc<AtomicUsize>,
    owed: Arc<AtomicUsize>,
    out: Outbox,
}

impl CreditReturn {
    fn release(&self, n: usize) {
        self.stream.fetch_add(n, Ordering::AcqRel);
        self.session.fetch_add(n, Ordering::AcqRel);
        // One Credit per stream waits in the outbox at most; later returns join it.
        if self.owed.fetch_add(n, Ordering::AcqRel) == 0 {
            self.out.credit(self.id, self.owed.clone());
        }
    }
}

/// Where a write pump's bytes go back once written or dropped.
pub enum Account {
    /// Without credit: the session's write budget, which pauses its WebSocket.
    Budget(Arc<WriteBudget>),
    /// With credit: the browser's windows.
    Credit(CreditReturn),
}

impl Account {
    pub fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        match self {
            Self::Budget(budget) => budget.release(n),
            Self::Credit(giver) => giver.release(n),
        }
    }
}
