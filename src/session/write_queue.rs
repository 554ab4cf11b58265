//! One stream's bytes on their way to its write pump: framed as they enter (a framed
//! Data gets its 4-byte length here), counted in bytes, taken by the pump all at once.
//!
//! A byte queue rather than a queue of messages: what a stream holds is its bytes,
//! however the browser cut them, so a page that sends a million 1-byte Data holds a
//! megabyte, not a million allocations.

use std::sync::Mutex;

use bytes::{BufMut as _, Bytes, BytesMut};
use tokio::sync::Notify;

#[derive(Default)]
pub struct WriteQueue {
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    buf: BytesMut,
    /// The session will queue nothing more: the pump writes the rest and closes.
    finished: bool,
    /// The pump has ended: nothing queued will be written.
    gone: bool,
}

impl WriteQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one Data's payload, after its length when `framed`; `false` (and
    /// nothing queued) when the pump is gone or the queue finished.
    pub fn push(&self, framed: bool, data: &[u8]) -> bool {
        let mut state = self.state();
        if state.gone || state.finished {
            return false;
        }
        if framed {
            state.buf.put_u32(data.len() as u32);
        }
        state.buf.extend_from_slice(data);
        drop(state);
        self.ready.notify_one();
        true
    }

    /// Bytes queued and not yet taken by the pump.
    pub fn len(&self) -> usize {
        self.state().buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nothing more will be queued: the pump writes what is there, then closes.
    pub fn finish(&self) {
        self.state().finished = true;
        self.ready.notify_one();
    }

    /// For the pump: everything queued, waiting for some; `None` once the queue is
    /// finished and empty.
    pub async fn take(&self) -> Option<Bytes> {
        loop {
            {
                let mut state = self.state();
                if !state.buf.is_empty() {
                    return Some(state.buf.split().freeze());
                }
                if state.finished || state.gone {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the
            // check above and this wait is not missed.
            self.ready.notified().await;
        }
    }

    /// For the pump, as it ends: later pushes fail; returns how many bytes were still
    /// queued (and drops them).
    pub fn abandon(&self) -> usize {
        let mut state = self.state();
        state.gone = true;
        let left = state.buf.len();
        state.buf = BytesMut::new();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_on_entry_and_hands_over_everything_in_order() {
        let queue = WriteQueue::default();
        assert!(queue.push(true, b"ab"));
        assert!(queue.push(false, b"c"));
        assert!(queue.push(true, b""));
        assert_eq!(queue.len(), 4 + 2 + 1 + 4);
        assert_eq!(&queue.take().await.unwrap()[..], b"\0\0\0\x02abc\0\0\0\0");
        queue.finish();
        assert!(!queue.push(false, b"late"));
        assert!(queue.take().await.is_none());
    }

    #[tokio::test]
    async fn an_abandoned_queue_takes_nothing_more() {
        let queue = WriteQueue::default();
        queue.push(false, b"12345");
        assert_eq!(queue.abandon(), 5);
        assert!(!queue.push(false, b"x"));
        assert!(queue.take().await.is_none());
    }
}
