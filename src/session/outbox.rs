//! The one way to a session's browser: a queue bounded in bytes, and the task that
//! writes it to the WebSocket, each write under a deadline.
//!
//! Four kinds of message share the queue, in order:
//! - Data read from streams holds its share of the session's [`OutboundBudget`]
//!   (taken before its bytes were read from the stream) until the writer has it;
//! - replies and notices are counted in bytes; a session whose queued replies pass
//!   [`REPLY_BACKLOG`] ends ([`Outbox::is_backlogged`]), so a browser that sends
//!   requests and reads nothing cannot pile them up;
//! - at most one keepalive ping waits at a time;
//! - at most one Credit per stream (credit extension): returns join the one queued.
//!
//! The session never waits on this queue, so its keepalive and shutdown are always
//! seen; a browser that stops reading stalls only the writer, whose deadline then
//! ends the session.
//!
//! With the resume extension, the queue and the log of sent messages (its
//! [`Mailbox`]) outlive the writer: each WebSocket the session resumes on gets a new
//! writer, which first sends again what the browser did not acknowledge. Numbered
//! messages then hold what they hold until acknowledged, not only until written.
//!
//! [`OutboundBudget`]: super::pump::OutboundBudget

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message};
use bytes::Bytes;
use futures::{Sink, SinkExt as _};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::replay::ReplayLog;
use crate::protocol::{ConnId, ServerMsg};

/// Bytes of replies and notices queued for one browser before its session ends.
pub const REPLY_BACKLOG: usize = 1024 * 1024;

/// One thing for the writer to send.
pub enum Outbound {
    /// One protocol message, with what it holds until the writer has it.
    Message { bytes: Bytes, _hold: Hold },
    /// A WebSocket ping (keepalive).
    Ping(Charge),
    /// Credit owed to the browser for one stream (at most one queued per stream): the
    /// amount is taken when it is sent, so later returns join it.
    Credit { id: ConnId, owed: Arc<AtomicUsize> },
    /// A WebSocket close frame; the writer stops after it.
    Close { code: u16, reason: String },
    /// Resume extension: messages from here on are numbered and kept in this log until
    /// acknowledged.
    StartLog(Arc<Mutex<ReplayLog>>),
    /// Resume extension: a message that is not numbered (Ack).
    Unnumbered(Bytes, Charge),
    /// Sent again, or first on a resumed WebSocket (its log entry holds what it holds).
    Again(Bytes),
}

/// What a queued message holds until the writer has taken it.
pub enum Hold {
    /// Data: its share of the session's read budget.
    Data(OwnedSemaphorePermit),
    /// A reply or notice: its bytes in the reply count.
    Reply(Charge),
    #[cfg(test)]
    None,
}

/// Counts `n` in a shared total until dropped.
pub struct Charge {
    total: Arc<AtomicUsize>,
    n: usize,
}

impl Charge {
    fn new(total: &Arc<AtomicUsize>, n: usize) -> (Self, usize) {
        let now = total.fetch_add(n, Ordering::AcqRel) + n;
        (Self { total: total.clone(), n }, now)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.total.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// The sending side, cheap to clone (the session and each read pump hold one).
#[derive(Clone)]
pub struct Outbox {
    queue: mpsc::UnboundedSender<Outbound>,
    replies: Arc<AtomicUsize>,
    /// Set once a reply found the backlog full: the session ends.
    backlogged: Arc<AtomicBool>,
    pings: Arc<AtomicUsize>,
}

impl Outbox {
    /// A queue and its receiving end, for [`write`] (one writer per WebSocket).
    #[allow(clippy::new_without_default)]
    pub fn new() -> (Self, Mailbox) {
        let (queue, rx) = mpsc::unbounded_channel();
        let replies: Arc<AtomicUsize> = Arc::default();
        let outbox = Self {
            queue,
            replies: replies.clone(),
            backlogged: Arc::default(),
            pings: Arc::default(),
        };
        (outbox, Mailbox { queue: rx, log: None, replies })
    }

    /// Numbers the messages queued from now on and keeps them in `log` (resume).
    pub fn start_log(&self, log: Arc<Mutex<ReplayLog>>) {
        let _ = self.queue.send(Outbound::StartLog(log));
    }

    /// Queues a message that is not numbered (resume's Ack), counted like a reply.
    pub fn unnumbered(&self, msg: &ServerMsg) {
        let bytes = msg.encode();
        let (charge, _) = Charge::new(&self.replies, bytes.len());
        let _ = self.queue.send(Outbound::Unnumbered(bytes, charge));
    }

    /// Queues a reply, never waiting. When the browser has more unread replies than
    /// [`REPLY_BACKLOG`] the reply is dropped and the outbox is backlogged: the
    /// session ends. (If the browser is gone the session is ending anyway.)
    pub fn reply(&self, msg: &ServerMsg) {
        if self.is_backlogged() {
            return;
        }
        let bytes = msg.encode();
        let (charge, queued) = Charge::new(&self.replies, bytes.len());
        if queued > REPLY_BACKLOG {
            self.backlogged.store(true, Ordering::Release);
            return;
        }
        let _ = self.queue.send(Outbound::Message { bytes, _hold: Hold::Reply(charge) });
    }

    /// Whether a reply found the backlog full.
    pub fn is_backlogged(&self) -> bool {
        self.backlogged.load(Ordering::Acquire)
    }

    /// Queues a notice a pump sends once per stream (its Connection Closed): counted
    /// like a reply, never refused.
    pub fn notice(&self, msg: &ServerMsg) {
        let bytes = msg.encode();
        let (charge, _) = Charge::new(&self.replies, bytes.len());
        let _ = self.queue.send(Outbound::Message { bytes, _hold: Hold::Reply(charge) });
    }

    /// Queues Data that holds its share of the read budget; `false` once the writer
    /// is gone.
    pub fn data(&self, bytes: Bytes, permit: OwnedSemaphorePermit) -> bool {
        self.queue.send(Outbound::Message { bytes, _hold: Hold::Data(permit) }).is_ok()
    }

    /// Queues the Credit owed for stream `id`; the caller queues one only when `owed`
    /// was 0, so a browser that reads nothing holds one per stream at most.
    pub fn credit(&self, id: ConnId, owed: Arc<AtomicUsize>) {
        let _ = self.queue.send(Outbound::Credit { id, owed });
    }

    /// Queues a ping unless one is still waiting.
    pub fn ping(&self) {
        let (charge, waiting) = Charge::new(&self.pings, 1);
        if waiting == 1 {
            let _ = self.queue.send(Outbound::Ping(charge));
        }
    }

    /// Queues the close frame, after everything queued before it.
    pub fn close(&self, code: u16, reason: String) {
        let _ = self.queue.send(Outbound::Close { code, reason });
    }
}

/// The receiving end of an [`Outbox`], and the resume log once the session has one:
/// it outlives each writer, so a session that resumes on a new WebSocket loses nothing
/// that was queued.
pub struct Mailbox {
    queue: mpsc::UnboundedReceiver<Outbound>,
    /// With the resume extension: numbered messages sent and not yet acknowledged.
    log: Option<Arc<Mutex<ReplayLog>>>,
    replies: Arc<AtomicUsize>,
}

/// How one writer is told to stop and how it says it failed.
pub struct WriterControl {
    /// Cancelled by the session: stop writing and hand the mailbox back.
    pub stop: CancellationToken,
    /// Cancelled by the writer when writing to the WebSocket failed.
    pub failed: CancellationToken,
}

/// Sends `first` (unnumbered), then what the resume log holds, then queued messages,
/// flushing once per burst, until the queue ends, a close frame is sent, a write fails
/// or the session stops it. Returns the mailbox, for the next WebSocket.
///
/// A numbered message enters the log before it is written: whatever stops the writer
/// mid-write, the next WebSocket is sent it again.
pub async fn write<K>(
    mut sink: K,
    mut mailbox: Mailbox,
    first: Vec<Bytes>,
    deadline: Duration,
    control: WriterControl,
) -> Mailbox
where
    K: Sink<Message, Error = axum::Error> + Unpin,
{
    let WriterControl { stop, failed } = control;
    let writing = async {
        let replay = mailbox.log.as_ref().map(|log| lock(log).unacked()).unwrap_or_default();
        let again: Vec<Outbound> = first.into_iter().chain(replay).map(Outbound::Again).collect();
        let mut again = again.into_iter();
        loop {
            let head = match again.next() {
                Some(again) => Some(again),
                None => mailbox.queue.recv().await,
            };
            let Some(head) = head else { break };
            let mut burst = Some(head);
            let mut result = Ok(());
            let mut closing = false;
            while let Some(next) = burst.take() {
                let Some((message, _hold)) = mailbox.prepare(next, &mut closing) else {
                    burst = again.next().or_else(|| mailbox.queue.try_recv().ok());
                    continue;
                };
                result = timed(deadline, sink.feed(message)).await;
                if result.is_err() || closing {
                    break;
                }
                burst = again.next().or_else(|| mailbox.queue.try_recv().ok());
            }
            if result.is_ok() {
                result = timed(deadline, sink.flush()).await;
            }
            if let Err(e) = result {
                tracing::debug!(error = %e, "WebSocket write failed");
                failed.cancel();
                return;
            }
            if closing {
                return;
            }
        }
        let _ = tokio::time::timeout(deadline, sink.close()).await;
    };
    tokio::select! {
        biased;
        () = stop.cancelled() => {}
        () = writing => {}
    }
    mailbox
}

impl Mailbox {
    /// Turns one queued thing into a WebSocket message and what it holds until the sink
    /// has it; numbered messages go into the resume log first (and what they hold
    /// stays there). `None`: nothing to send (a Credit already folded into another).
    fn prepare(&mut self, next: Outbound, closing: &mut bool) -> Option<(Message, Option<Hold>)> {
        let (bytes, hold) = match next {
            Outbound::Message { bytes, _hold } => (bytes, _hold),
            Outbound::Credit { id, owed } => {
                let bytes = u32::try_from(owed.swap(0, Ordering::AcqRel)).unwrap_or(u32::MAX);
                let bytes = std::num::NonZeroU32::new(bytes)?;
                let bytes = ServerMsg::Credit { id, bytes: bytes.get() }.encode();
                let (charge, _) = Charge::new(&self.replies, bytes.len());
                (bytes, Hold::Reply(charge))
            }
            Outbound::StartLog(log) => {
                self.log = Some(log);
                return None;
            }
            Outbound::Again(bytes) => return Some((Message::Binary(bytes), None)),
            Outbound::Unnumbered(bytes, charge) => {
                return Some((Message::Binary(bytes), Some(Hold::Reply(charge))))
            }
            Outbound::Ping(charge) => {
                return Some((Message::Ping(Bytes::new()), Some(Hold::Reply(charge))))
            }
            Outbound::Close { code, reason } => {
                *closing = true;
                let frame = CloseFrame { code, reason: reason.into() };
                return Some((Message::Close(Some(frame)), None));
            }
        };
        match &self.log {
            Some(log) => {
                lock(log).push(bytes.clone(), hold);
                Some((Message::Binary(bytes), None))
            }
            None => Some((Message::Binary(bytes), Some(hold))),
        }
    }
}

async fn timed<F: std::future::Future<Output = Result<(), axum::Error>>>(
    deadline: Duration,
    io: F,
) -> Result<(), axum::Error> {
    let timed_out = || axum::Error::new(std::io::Error::from(std::io::ErrorKind::TimedOut));
    tokio::time::timeout(deadline, io).await.unwrap_or_else(|_| Err(timed_out()))
}

pub fn lock(log: &Mutex<ReplayLog>) -> std::sync::MutexGuard<'_, ReplayLog> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
