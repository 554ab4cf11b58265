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
//! [`OutboundBudget`]: super::pump::OutboundBudget

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message};
use bytes::Bytes;
use futures::{Sink, SinkExt as _};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

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
}

/// What a queued message holds until the writer has taken it.
pub enum Hold {
    /// Data: its share of the session's read budget.
    Data(OwnedSemaphorePermit),
    /// A reply or notice: its bytes in the reply count.
    Reply(Charge),
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
    /// A queue and its writer, which writes to `sink` until the queue ends or a close
    /// frame is sent; a write that makes no progress within `deadline` fails it, and
    /// `failed` is cancelled when writing fails.
    pub fn new<K>(
        sink: K,
        deadline: Duration,
        failed: CancellationToken,
    ) -> (Self, impl std::future::Future<Output = ()> + Send)
    where
        K: Sink<Message, Error = axum::Error> + Send + Unpin + 'static,
    {
        let (queue, rx) = mpsc::unbounded_channel();
        let outbox = Self {
            queue,
            replies: Arc::default(),
            backlogged: Arc::default(),
            pings: Arc::default(),
        };
        (outbox, write(sink, rx, deadline, failed))
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

/// Sends queued messages to the browser, flushing once per burst.
async fn write<K>(
    mut sink: K,
    mut queue: mpsc::UnboundedReceiver<Outbound>,
    deadline: Duration,
    failed: CancellationToken,
) where
    K: Sink<Message, Error = axum::Error> + Unpin,
{
    let timed_out = || axum::Error::new(std::io::Error::from(std::io::ErrorKind::TimedOut));
    while let Some(first) = queue.recv().await {
        let mut burst = Some(first);
        let mut result = Ok(());
        let mut closing = false;
        while let Some(next) = burst.take() {
            // What the message holds is released once the sink has it.
            let (message, _hold) = match next {
                Outbound::Message { bytes, _hold } => (Message::Binary(bytes), Some(_hold)),
                Outbound::Ping(charge) => (Message::Ping(Bytes::new()), Some(Hold::Reply(charge))),
                Outbound::Credit { id, owed } => {
                    let bytes = u32::try_from(owed.swap(0, Ordering::AcqRel)).unwrap_or(u32::MAX);
                    let Some(bytes) = std::num::NonZeroU32::new(bytes) else {
                        burst = queue.try_recv().ok();
                        continue;
                    };
                    let msg = ServerMsg::Credit { id, bytes: bytes.get() };
                    (Message::Binary(msg.encode()), None)
                }
                Outbound::Close { code, reason } => {
                    closing = true;
                    (Message::Close(Some(CloseFrame { code, reason: reason.into() })), None)
                }
            };
            result = tokio::time::timeout(deadline, sink.feed(message))
                .await
                .unwrap_or_else(|_| Err(timed_out()));
            if result.is_err() || closing {
                break;
            }
            burst = queue.try_recv().ok();
        }
        if result.is_ok() {
            result = tokio::time::timeout(deadline, sink.flush())
                .await
                .unwrap_or_else(|_| Err(timed_out()));
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
}
