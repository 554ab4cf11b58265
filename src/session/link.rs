//! A session's current WebSocket: its read half, read by the session, and the writer
//! task that owns its write half. Without the resume extension a session has one link
//! for its life; with it, a link can be dropped (the session is then detached) and a
//! new WebSocket attached, to which the writer's [`Mailbox`] passes on.

use std::{pin::Pin, time::Duration};

use axum::extract::ws::Message;
use bytes::Bytes;
use futures::{stream::SplitStream, Sink, Stream, StreamExt as _};
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use tracing::Instrument as _;

use super::{
    outbox::{self, Mailbox, WriterControl},
    Shared,
};

/// What a session reads and writes: a WebSocket, or a stand-in in tests.
pub trait Socket:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + 'static
{
}
impl<T> Socket for T where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Send
        + 'static
{
}
pub type BoxSocket = Pin<Box<dyn Socket>>;

struct Writer {
    task: JoinHandle<Mailbox>,
    stop: CancellationToken,
    failed: CancellationToken,
}

/// The session's WebSocket, when it has one.
#[derive(Default)]
pub struct Link {
    read: Option<SplitStream<BoxSocket>>,
    writer: Option<Writer>,
    /// The queue to the browser while no writer has it.
    mailbox: Option<Mailbox>,
    /// How long one write may make no progress.
    deadline: Duration,
}

impl Link {
    pub fn new(mailbox: Mailbox, deadline: Duration) -> Self {
        Self { read: None, writer: None, mailbox: Some(mailbox), deadline }
    }

    /// Whether a WebSocket is attached.
    pub fn attached(&self) -> bool {
        self.read.is_some()
    }

    /// Takes `socket` on: its writer sends `first`, then what the browser has not
    /// acknowledged, then the queue. The link must be detached.
    pub fn attach(&mut self, socket: BoxSocket, first: Vec<Bytes>, shared: &Shared) {
        let mailbox = self.mailbox.take().expect("attach only a detached link");
        let (sink, read) = socket.split();
        let (stop, failed) = (CancellationToken::new(), CancellationToken::new());
        let control = WriterControl { stop: stop.clone(), failed: failed.clone() };
        let write = outbox::write(sink, mailbox, first, self.deadline, control);
        let task = shared.tasks.spawn(write.in_current_span());
        self.writer = Some(Writer { task, stop, failed });
        self.read = Some(read);
    }

    /// Drops the WebSocket; the queue waits for the next one. What the writer had
    /// taken and not written is in the resume log.
    pub async fn detach(&mut self) {
        self.read = None;
        if let Some(writer) = self.writer.take() {
            writer.stop.cancel();
            // The writer stops at its next await; it is never stuck past that.
            if let Ok(mailbox) = writer.task.await {
                self.mailbox = Some(mailbox);
            }
        }
    }

    /// The next message from the browser (pending while detached).
    pub async fn next(&mut self) -> Option<Result<Message, axum::Error>> {
        match self.read.as_mut() {
            Some(read) => read.next().await,
            None => std::future::pending().await,
        }
    }

    /// Cancelled when writing to the attached WebSocket failed.
    pub fn write_failed(&self) -> CancellationToken {
        self.writer.as_ref().map(|w| w.failed.clone()).unwrap_or_default()
    }

    /// Lets the writer send what is queued and close the WebSocket, until `by`.
    pub async fn finish(mut self, by: tokio::time::Instant) {
        self.read = None;
        if let Some(writer) = self.writer.take() {
            let _ = tokio::time::timeout_at(by, AbortOnDropHandle::new(writer.task)).await;
        }
    }
}
