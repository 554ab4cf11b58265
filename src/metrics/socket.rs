//! A session's WebSocket, counted: every message each way as it passes, so the bytes
//! and Data messages a session moves are counted where they cross the WebSocket,
//! without the session's code knowing.
//!
//! A Data message (either way) is `[4][ID: u64][payload]` (`PROTOCOL.md`): its payload
//! is its length less the 9-byte header. Data the browser sends for a stream that is
//! gone is counted too: it did cross.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
};

use axum::extract::ws::Message;
use futures::{Sink, Stream};

use super::{families::Direction, Metrics};
use crate::protocol::{client_type, server_type, DATA_HEADER_LEN};

/// What one session moved, for the dashboard.
#[derive(Debug, Default)]
pub struct SessionCounts {
    pub from_browser: AtomicU64,
    pub to_browser: AtomicU64,
}

/// Keeps a session in the live table and the open count until dropped.
pub struct SessionMeter {
    metrics: Arc<Metrics>,
    key: u64,
    counts: Arc<SessionCounts>,
}

impl SessionMeter {
    pub(super) fn new(metrics: Arc<Metrics>, key: u64, counts: Arc<SessionCounts>) -> Self {
        Self { metrics, key, counts }
    }

    fn message(&self, direction: Direction, message: &Message) {
        let (bytes, data_type) = match (message, direction) {
            (Message::Binary(bytes), Direction::BrowserToLibp2p) => (bytes, client_type::DATA),
            (Message::Binary(bytes), Direction::Libp2pToBrowser) => (bytes, server_type::DATA),
            (Message::Text(text), _) => return self.metrics.ws_message(direction, text.len()),
            _ => return,
        };
        self.metrics.ws_message(direction, bytes.len());
        if bytes.len() >= DATA_HEADER_LEN && bytes[0] == data_type {
            let payload = bytes.len() - DATA_HEADER_LEN;
            self.metrics.data(direction, payload);
            let mine = match direction {
                Direction::BrowserToLibp2p => &self.counts.from_browser,
                Direction::Libp2pToBrowser => &self.counts.to_browser,
            };
            mine.fetch_add(payload as u64, Ordering::Relaxed);
        }
    }
}

impl Drop for SessionMeter {
    fn drop(&mut self) {
        self.metrics.session_gone(self.key);
    }
}

/// A WebSocket whose messages are counted as they pass; otherwise the socket itself.
pub struct MeteredSocket<S> {
    inner: S,
    meter: SessionMeter,
}

impl<S> MeteredSocket<S> {
    pub(super) fn new(inner: S, meter: SessionMeter) -> Self {
        Self { inner, meter }
    }
}

impl<S> Stream for MeteredSocket<S>
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = ready!(Pin::new(&mut self.inner).poll_next(cx));
        if let Some(Ok(message)) = &item {
            self.meter.message(Direction::BrowserToLibp2p, message);
        }
        Poll::Ready(item)
    }
}

impl<S> Sink<Message> for MeteredSocket<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), Self::Error> {
        self.meter.message(Direction::Libp2pToBrowser, &message);
        Pin::new(&mut self.inner).start_send(message)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
