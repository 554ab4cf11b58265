//! The resume extension (PROTOCOL.md, *Extension: resume*): a session outlives its
//! WebSocket for a grace period and goes on, on a new one, with nothing lost or doubled.
//!
//! Both directions number their messages from the moment the extension is on, and
//! each side keeps what it sent until the other acknowledges it (the daemon in its
//! [`ReplayLog`]). A new WebSocket presents the session's token and how many messages
//! the page received; the daemon sends the rest again, and says how many it took, so
//! the page sends the rest of its own again. Streams, listeners and their bytes stay
//! in the session meanwhile: remotes see a pause (their writes wait under the same
//! backpressure as a page that does not read), never a loss.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use tokio::{sync::mpsc, time::Instant};

use super::{link::BoxSocket, outbox::lock, replay::ReplayLog, GaugeGuard, Session};
use crate::{metrics::DetachedMeter, protocol::ServerMsg};

/// Bytes of OS randomness in a token (256 bits).
const TOKEN_BYTES: usize = 32;
/// The daemon acknowledges the page's messages at least every this many...
const ACK_EVERY: u64 = 32;
/// ...or this many bytes of them...
const ACK_BYTES: usize = 256 * 1024;
/// ...or this long after the first one it has not acknowledged.
const ACK_DELAY: Duration = Duration::from_millis(100);

/// Who opened a session's WebSocket: only the same may resume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Whether the browser is on this machine (only those are given the node's key).
    pub loopback: bool,
    /// The page's `Origin` header, normalized; `None` for a client that is no page.
    pub origin: Option<String>,
}

/// A WebSocket that resumes a session.
pub struct Attach {
    pub socket: BoxSocket,
    /// The token it presented.
    pub token: String,
    /// Numbered messages the page received; `None`: the page lost its state (it was
    /// reloaded) and takes back only the session's listeners.
    pub received: Option<u64>,
}

/// Why a WebSocket could not resume a session; it gets a fresh one, told this.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum Refusal {
    /// Forged, used, expired, or presented by another origin: which is not said.
    #[error("no session to resume with that token")]
    Unknown,
    #[error("the session ended as it was being resumed")]
    Ended,
}

/// The daemon's sessions that can be resumed, by token.
#[derive(Default)]
pub struct Resumes {
    parked: Mutex<HashMap<String, Parked>>,
}

struct Parked {
    peer: Peer,
    attach: mpsc::Sender<Attach>,
}

impl Resumes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
        self.parked.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn park(&self, token: &str, peer: Peer, attach: mpsc::Sender<Attach>) {
        self.lock().insert(token.to_string(), Parked { peer, attach });
    }

    fn unpark(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Hands `attach` to the session `token` names, if `peer` opened it. The token is
    /// spent (the session gives the page a new one); one presented by another origin
    /// is not, so a foreign page cannot end another's chance to resume.
    pub fn resume(
        &self,
        token: &str,
        peer: &Peer,
        attach: Attach,
    ) -> Result<(), (Refusal, BoxSocket)> {
        let parked = {
            let mut parked = self.lock();
            match parked.get(token) {
                Some(p) if p.peer == *peer => parked.remove(token),
                _ => None,
            }
        };
        let Some(parked) = parked else { return Err((Refusal::Unknown, attach.socket)) };
        parked.attach.try_send(attach).map_err(|e| (Refusal::Ended, e.into_inner().socket))
    }

    /// Sessions that can be resumed now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A new token: 256 bits from the OS, base64url without padding (43 characters).
fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A session's resume state, once the page turned the extension on.
pub struct Resume {
    token: String,
    /// The token the current WebSocket resumed with, good until the page shows (by a
    /// first message) that it got the new one: a WebSocket lost before Resumed
    /// reached the page must not leave it without a token that works.
    previous: Option<String>,
    pub(super) log: Arc<Mutex<ReplayLog>>,
    /// Numbered messages taken from the page.
    taken: u64,
    /// What the last Ack (or Resumed) told the page.
    told: u64,
    /// Bytes of the messages taken since.
    untold_bytes: usize,
    /// When an Ack is due, if one is.
    ack_at: Option<Instant>,
    attach_tx: mpsc::Sender<Attach>,
    attach: mpsc::Receiver<Attach>,
    /// While detached: when the session ends if no WebSocket comes back.
    pub(super) expires: Option<Instant>,
    /// While detached: the session's place in the count of detached ones (for
    /// /status, and /metrics).
    detached: Option<(GaugeGuard, DetachedMeter)>,
}

impl Resume {
    /// When an Ack is due, or the session expires, whichever comes first.
    pub fn next_deadline(resume: Option<&Self>) -> Option<Instant> {
        let resume = resume?;
        match (resume.ack_at, resume.expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The next WebSocket that resumes the session (pending without the extension).
pub async fn next_attach(resume: Option<&mut Resume>) -> Option<Attach> {
    match resume {
        Some(resume) => resume.attach.recv().await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// Turns the extension on (once); the answer's token.
    pub(super) fn enable_resume(&mut self) -> String {
        if let Some(resume) = &self.resume {
            return resume.token.clone();
        }
        let (attach_tx, attach) = mpsc::channel(1);
        let token = new_token();
        self.shared.resumes.park(&token, self.peer.clone(), attach_tx.clone());
        self.resume = Some(Resume {
            token: token.clone(),
            previous: None,
            log: Arc::default(),
            taken: 0,
            told: 0,
            untold_bytes: 0,
            ack_at: None,
            attach_tx,
            attach,
            expires: None,
            detached: None,
        });
        token
    }

    /// A message came on the WebSocket: the page has the token Resumed gave it, so
    /// the one it resumed with is spent.
    pub(super) fn heard(&mut self) {
        if let Some(previous) = self.resume.as_mut().and_then(|r| r.previous.take()) {
            self.shared.resumes.unpark(&previous);
        }
    }

    /// Counts a numbered message of `len` bytes taken from the page; acknowledges
    /// at once when enough are waiting, else soon.
    pub(super) fn took(&mut self, len: usize) {
        let Some(resume) = self.resume.as_mut() else { return };
        resume.taken += 1;
        resume.untold_bytes += len;
        if resume.taken - resume.told >= ACK_EVERY || resume.untold_bytes >= ACK_BYTES {
            self.send_ack();
        } else if resume.ack_at.is_none() {
            resume.ack_at = Some(Instant::now() + ACK_DELAY);
        }
    }

    /// Tells the page how many of its messages the daemon has.
    pub(super) fn send_ack(&mut self) {
        let Some(resume) = self.resume.as_mut() else { return };
        resume.ack_at = None;
        resume.untold_bytes = 0;
        if resume.taken != resume.told && self.link.attached() {
            resume.told = resume.taken;
            self.out.unnumbered(&ServerMsg::Ack { count: resume.taken });
        }
    }

    /// The page's Ack: it has the first `count` numbered messages.
    pub(super) fn on_ack(&mut self, count: u64) {
        match &self.resume {
            Some(resume) => lock(&resume.log).ack(count),
            None => {
                let msg = "Ack needs the resume extension";
                self.out.reply(&ServerMsg::ProtocolError { msg: msg.into() });
            }
        }
    }

    /// The WebSocket is gone: the session waits `grace` for a new one.
    pub(super) async fn detach(&mut self, grace: Duration) {
        self.link.detach().await;
        if let Some(resume) = self.resume.as_mut() {
            resume.expires = Some(Instant::now() + grace);
            resume.ack_at = None;
            resume.detached = Some((self.shared.detached.enter(), self.shared.metrics.detached()));
        }
        tracing::debug!(grace_secs = grace.as_secs(), "session detached");
    }

    /// A WebSocket that resumes the session (a page that moved to it with the old one
    /// still open drops the old one).
    pub(super) async fn on_attach(&mut self, attach: Attach) {
        let used = attach.token.clone();
        if self.link.attached() {
            self.link.detach().await;
        }
        let Some(resume) = self.resume.as_mut() else { return };
        let resumes = &self.shared.resumes;
        if resume.previous.as_ref().is_some_and(|previous| *previous != used) {
            // The page resumed with the newer token after all: the older is spent.
            resumes.unpark(&resume.previous.take().expect("checked"));
        }
        if used != resume.token {
            resumes.unpark(&resume.token);
        }
        resume.token = new_token();
        resumes.park(&resume.token, self.peer.clone(), resume.attach_tx.clone());
        resumes.park(&used, self.peer.clone(), resume.attach_tx.clone());
        resume.previous = Some(used);
        let reclaim = attach.received.is_none();
        match attach.received {
            Some(received) => lock(&resume.log).ack(received),
            None => {
                // A reloaded page: it knows none of the streams, nor what was sent.
                lock(&resume.log).reset();
                resume.taken = 0;
            }
        }
        resume.told = resume.taken;
        resume.untold_bytes = 0;
        resume.ack_at = None;
        resume.expires = None;
        resume.detached = None;
        let resumed = ServerMsg::Resumed { count: resume.taken, token: resume.token.clone() };
        self.link.attach(attach.socket, vec![resumed.encode()], &self.shared);
        tracing::debug!(reclaim, "session resumed");
        if reclaim {
            self.streams.close_silently().await;
            self.leave_topics();
            self.send_reclaimed();
        }
    }

    /// What a reloaded page is told after Resumed: the node, and each listener it
    /// takes back.
    fn send_reclaimed(&mut self) {
        if self.node.is_some() {
            self.send_identify();
        }
        for protocol in self.listeners.protocols() {
            self.out.reply(&ServerMsg::Listening { protocol });
        }
    }

    /// Gives the tokens up, as the session ends.
    pub(super) fn unpark(&mut self) {
        if let Some(resume) = &self.resume {
            self.shared.resumes.unpark(&resume.token);
            if let Some(previous) = &resume.previous {
                self.shared.resumes.unpark(previous);
            }
        }
    }
}
