//! The two tasks that move one stream's bytes: stream → browser and browser → stream.
//!
//! # Backpressure
//! Stream → browser: the read pump takes room for the bytes it is about to read from
//! the session's [`OutboundBudget`] before it reads them, so a browser that stops
//! reading stops the remote peer (its libp2p stream is no longer read) instead of
//! growing memory.
//! Browser → stream: each stream has a bounded write queue, and the session counts the
//! bytes queued across all its streams in a [`WriteBudget`]; past the budget the session
//! stops reading its WebSocket until a write pump makes room.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::{BufMut as _, Bytes, BytesMut};
use futures::FutureExt as _;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf},
    sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore},
};

use super::outbox::Outbox;
use crate::protocol::{put_data_header, ConnId, ServerMsg, DATA_HEADER_LEN};

/// A bidirectional byte stream: a libp2p stream or one end of an in-process pipe.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// Bytes read from a raw stream per Data message, at most.
pub const RAW_CHUNK: usize = 64 * 1024;
/// Bytes an idle raw stream waits for data with, before it takes budget for a chunk.
const FIRST_READ: usize = 2048;
/// Bytes a queued message is charged beyond its payload, so empty ones count too.
const MESSAGE_OVERHEAD: usize = 64;

/// Bytes queued towards streams, across one session, with a wake-up when some drain.
pub struct WriteBudget {
    queued: AtomicUsize,
    limit: usize,
    pub drained: Notify,
}

impl WriteBudget {
    pub fn new(limit: usize) -> Self {
        Self { queued: AtomicUsize::new(0), limit, drained: Notify::new() }
    }

    pub fn charge(&self, payload: usize) {
        self.queued.fetch_add(payload + MESSAGE_OVERHEAD, Ordering::Relaxed);
    }

    pub fn release(&self, payload: usize) {
        self.queued.fetch_sub(payload + MESSAGE_OVERHEAD, Ordering::Relaxed);
        self.drained.notify_one();
    }

    pub fn is_over(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > self.limit
    }
}

/// Bytes of Data read from streams and not yet written to the browser, per session.
#[derive(Clone)]
pub struct OutboundBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
}

impl OutboundBudget {
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Self { bytes: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Waits for room for a payload of `len` bytes (a payload larger than the whole
    /// budget takes all of it).
    async fn reserve(&self, len: usize) -> OwnedSemaphorePermit {
        let cost = (len + MESSAGE_OVERHEAD).min(self.limit) as u32;
        self.bytes.clone().acquire_many_owned(cost).await.expect("the semaphore is never closed")
    }
}

/// How a stream's pumps report back to their session.
pub enum PumpEvent {
    /// The read pump ended (remote closed, reset, or a bad frame); the Connection Closed
    /// message has been queued already.
    ReadEnded { id: ConnId },
    /// Writing to the stream failed; the session closes it with this reason.
    WriteFailed { id: ConnId, reason: String },
}

/// Claimed by whoever sends a connection's one Connection Closed message.
#[derive(Default)]
pub struct ClosedFlag(AtomicBool);

impl ClosedFlag {
    /// True for the first caller only.
    pub fn claim(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }
}

/// What a read pump needs to know.
pub struct ReadPump {
    pub id: ConnId,
    pub frames: bool,
    pub max_frame: usize,
    /// How long the remote may send nothing inside a frame (while the frame holds
    /// room in the session's budget) before the stream is closed.
    pub stall: Duration,
    pub out: Outbox,
    pub budget: OutboundBudget,
    pub closed: Arc<ClosedFlag>,
    pub events: mpsc::Sender<PumpEvent>,
}

impl ReadPump {
    /// Reads the stream until it ends, sending each chunk (raw) or frame (framed) as one
    /// Data message, then one Connection Closed with the reason.
    pub async fn run(self, mut rd: ReadHalf<BoxIo>) {
        let reason = loop {
            let next = if self.frames {
                read_frame(&mut rd, self.id, self.max_frame, self.stall, &self.budget).await
            } else {
                read_chunk(&mut rd, self.id, &self.budget).await
            };
            match next {
                Ok(Some((bytes, permit))) => {
                    if !self.out.data(bytes, permit) {
                        return; // the session is gone
                    }
                }
                Ok(None) => break "closed by remote".to_string(),
                Err(reason) => break reason,
            }
        };
        tracing::debug!(conn = self.id, %reason, "stream read ended");
        if self.closed.claim() {
            self.out.notice(&ServerMsg::ConnectionClosed { id: self.id, reason });
        }
        let _ = self.events.send(PumpEvent::ReadEnded { id: self.id }).await;
    }
}

/// One raw chunk as a whole Data message, or `None` at end of stream.
///
/// An idle stream must hold no share of the session's budget (else a few dozen idle
/// streams would starve the rest), so the first bytes are awaited in a small buffer;
/// only then is room taken for a whole chunk, filled with what is already there.
async fn read_chunk(
    rd: &mut ReadHalf<BoxIo>,
    id: ConnId,
    budget: &OutboundBudget,
) -> Result<Option<(Bytes, OwnedSemaphorePermit)>, String> {
    let read_error = |e: std::io::Error| format!("read error: {e}");
    let mut first = [0u8; FIRST_READ];
    let n = rd.read(&mut first).await.map_err(read_error)?;
    if n == 0 {
        return Ok(None);
    }
    let mut permit = budget.reserve(RAW_CHUNK).await;
    let mut buf = BytesMut::with_capacity(DATA_HEADER_LEN + RAW_CHUNK);
    put_data_header(&mut buf, id);
    buf.extend_from_slice(&first[..n]);
    // Take what else has arrived, without waiting for more (an end of stream or an
    // error found here shows again on the next read).
    while buf.len() < DATA_HEADER_LEN + RAW_CHUNK {
        let left = DATA_HEADER_LEN + RAW_CHUNK - buf.len();
        let mut room = (&mut buf).limit(left);
        match rd.read_buf(&mut room).now_or_never() {
            Some(Ok(read)) if read > 0 => {}
            _ => break,
        }
    }
    // Give back what the chunk did not use.
    let used = (buf.len() - DATA_HEADER_LEN + MESSAGE_OVERHEAD).min(budget.limit);
    drop(permit.split(permit.num_permits().saturating_sub(used)));
    Ok(Some((buf.freeze(), permit)))
}

/// One length-prefixed frame as a whole Data message, or `None` at a clean end of stream
/// (between frames).
async fn read_frame(
    rd: &mut ReadHalf<BoxIo>,
    id: ConnId,
    max_frame: usize,
    stall: Duration,
    budget: &OutboundBudget,
) -> Result<Option<(Bytes, OwnedSemaphorePermit)>, String> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match rd.read(&mut len[got..]).await {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("stream ended inside a frame length".into()),
            Ok(n) => got += n,
            Err(e) => return Err(format!("read error: {e}")),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max_frame {
        return Err(format!("frame of {len} bytes exceeds the limit of {max_frame} bytes"));
    }
    let permit = budget.reserve(len).await;
    let mut buf = BytesMut::with_capacity(DATA_HEADER_LEN + len);
    put_data_header(&mut buf, id);
    // Read straight into the message (no zero-filling), never past this frame. The
    // frame holds room in the session's budget meanwhile: a remote that stops sending
    // inside it may hold that room only so long.
    while buf.len() < DATA_HEADER_LEN + len {
        let left = DATA_HEADER_LEN + len - buf.len();
        let mut room = (&mut buf).limit(left);
        match tokio::time::timeout(stall, rd.read_buf(&mut room)).await {
            Err(_) => {
                let secs = stall.as_secs();
                return Err(format!("the remote sent nothing inside a frame for {secs} s"));
            }
            Ok(Ok(0)) => return Err("stream ended inside a frame".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read error: {e}")),
        }
    }
    Ok(Some((buf.freeze(), permit)))
}

/// A write pump's queue, which gives the session back its budget for what was never
/// written: without it, a stream given up with Data still queued would leave the
/// session's budget charged for good, and the session paused forever.
struct ChargedQueue {
    queue: mpsc::Receiver<Bytes>,
    budget: Arc<WriteBudget>,
    /// The bytes of the message being written, if one is.
    in_flight: Option<usize>,
}

impl ChargedQueue {
    async fn recv(&mut self) -> Option<Bytes> {
        let data = self.queue.recv().await?;
        self.in_flight = Some(data.len());
        Some(data)
    }

    fn written(&mut self) {
        if let Some(len) = self.in_flight.take() {
            self.budget.release(len);
        }
    }
}

impl Drop for ChargedQueue {
    fn drop(&mut self) {
        self.written();
        self.queue.close();
        while let Ok(data) = self.queue.try_recv() {
            self.budget.release(data.len());
        }
    }
}

/// What a write pump needs to know.
pub struct WritePump {
    pub id: ConnId,
    pub frames: bool,
    /// How long the remote may accept nothing while Data waits for it before the
    /// stream is closed, so it cannot hold its session's WebSocket paused for good.
    pub stall: Duration,
    pub budget: Arc<WriteBudget>,
    pub events: mpsc::Sender<PumpEvent>,
}

impl WritePump {
    /// Writes queued Data to the stream in order, flushing when the queue is empty, and
    /// closes the stream's write side when the session drops the queue. `_keep` (the
    /// per-peer stream slot) is held as long as the stream is.
    pub async fn run<K: Send>(
        self,
        mut wr: WriteHalf<BoxIo>,
        queue: mpsc::Receiver<Bytes>,
        _keep: K,
    ) {
        // Whatever happens to this task (a failed write, or an abort when the stream is
        // given up), the session gets its budget back for every byte still queued.
        let mut queue = ChargedQueue { queue, budget: self.budget.clone(), in_flight: None };
        while let Some(data) = queue.recv().await {
            let len = data.len();
            let header = (len as u32).to_be_bytes();
            let result = async {
                if self.frames {
                    write_all(&mut wr, &header, self.stall).await?;
                }
                write_all(&mut wr, &data, self.stall).await?;
                if queue.queue.is_empty() {
                    progress(self.stall, wr.flush()).await?;
                }
                Ok::<_, WriteFailure>(())
            }
            .await;
            queue.written();
            if let Err(failure) = result {
                drop(queue);
                let reason = failure.to_string();
                let _ = self.events.send(PumpEvent::WriteFailed { id: self.id, reason }).await;
                return;
            }
        }
        let _ = wr.shutdown().await; // bounded by the session's finish_writer
    }
}

/// Why a write pump gave its stream up; the text is the browser's Connection Closed.
#[derive(Debug, thiserror::Error)]
enum WriteFailure {
    #[error("write error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the remote accepted nothing for {} s", .0.as_secs())]
    Stalled(Duration),
}

/// Writes all of `buf`; fails when the remote takes nothing of it for `stall`.
async fn write_all(
    wr: &mut WriteHalf<BoxIo>,
    mut buf: &[u8],
    stall: Duration,
) -> Result<(), WriteFailure> {
    while !buf.is_empty() {
        let n = progress(stall, wr.write(buf)).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// `io` unless it makes no progress for `stall`.
async fn progress<T>(
    stall: Duration,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, WriteFailure> {
    match tokio::time::timeout(stall, io).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(WriteFailure::Stalled(stall)),
    }
}
