//! The two tasks that move one stream's bytes: stream → browser and browser → stream.
//!
//! # Backpressure
//! Stream → browser: the read pump takes room for the bytes it is about to read from
//! the session's [`OutboundBudget`] before it reads them, so a browser that stops
//! reading stops the remote peer (its libp2p stream is no longer read) instead of
//! growing memory.
//! Browser → stream: each stream has a byte queue ([`WriteQueue`]); the session counts
//! the bytes queued across all its streams in a [`WriteBudget`] (past it the session
//! stops reading its WebSocket until a write pump makes room), or, with the credit
//! extension, in the browser's windows, which the pump refills as it writes.
//!
//! With credit, the read pump also takes the stream's receive credit before it reads,
//! so a page that stops consuming one stream stops that stream's remote only.

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

use super::{credit::Account, outbox::Outbox, write_queue::WriteQueue};
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
/// (A session without the credit extension.)
pub struct WriteBudget {
    queued: AtomicUsize,
    limit: usize,
    pub drained: Notify,
}

impl WriteBudget {
    pub fn new(limit: usize) -> Self {
        Self { queued: AtomicUsize::new(0), limit, drained: Notify::new() }
    }

    pub fn charge(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn release(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
        self.drained.notify_one();
    }

    pub fn is_over(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > self.limit
    }
}

/// Bytes of Data read from streams and not yet written to the browser, per session,
/// and the bytes of frames being read (`assembly`): a frame takes its whole length
/// from the assembly budget before its body is read, and room in `bytes` once it is
/// whole. Frames in progress so never hold what finished Data needs, and a remote
/// that stalls inside a frame delays only frames that find the assembly budget full.
#[derive(Clone)]
pub struct OutboundBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
    assembly: Arc<Semaphore>,
    assembly_limit: usize,
}

impl OutboundBudget {
    /// `limit` for finished Data; frames being read get `assembly` bytes (at least
    /// one whole frame's).
    pub fn new(limit: usize, assembly: usize) -> Self {
        let clamp = |n: usize| n.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (limit, assembly_limit) = (clamp(limit), clamp(assembly));
        Self {
            bytes: Arc::new(Semaphore::new(limit)),
            limit,
            assembly: Arc::new(Semaphore::new(assembly_limit)),
            assembly_limit,
        }
    }

    /// Waits for room for a payload of `len` bytes (a payload larger than the whole
    /// budget takes all of it).
    async fn reserve(&self, len: usize) -> OwnedSemaphorePermit {
        take(&self.bytes, len + MESSAGE_OVERHEAD, self.limit).await
    }

    /// Waits for room to read a frame of `len` bytes.
    async fn assemble(&self, len: usize) -> OwnedSemaphorePermit {
        take(&self.assembly, len, self.assembly_limit).await
    }
}

async fn take(semaphore: &Arc<Semaphore>, cost: usize, limit: usize) -> OwnedSemaphorePermit {
    let cost = cost.min(limit) as u32;
    semaphore.clone().acquire_many_owned(cost).await.expect("the semaphore is never closed")
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
    /// With the credit extension: what the browser lets this stream send it.
    pub credit: Option<Arc<Semaphore>>,
    pub closed: Arc<ClosedFlag>,
    pub events: mpsc::Sender<PumpEvent>,
}

impl ReadPump {
    /// Reads the stream until it ends, sending each chunk (raw) or frame (framed) as one
    /// Data message, then one Connection Closed with the reason.
    pub async fn run(self, mut rd: ReadHalf<BoxIo>) {
        let reason = loop {
            let credit = self.credit.as_ref();
            let next = if self.frames {
                let limits = FrameLimits { max: self.max_frame, stall: self.stall };
                read_frame(&mut rd, self.id, limits, &self.budget, credit).await
            } else {
                read_chunk(&mut rd, self.id, &self.budget, credit).await
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
/// With credit, nothing is read before the browser allows some, and no more than it
/// allows.
async fn read_chunk(
    rd: &mut ReadHalf<BoxIo>,
    id: ConnId,
    budget: &OutboundBudget,
    credit: Option<&Arc<Semaphore>>,
) -> Result<Option<(Bytes, OwnedSemaphorePermit)>, String> {
    let read_error = |e: std::io::Error| format!("read error: {e}");
    let mut grant = match credit {
        Some(credit) => Some(take_credit(credit).await),
        None => None,
    };
    let most = grant.as_ref().map_or(RAW_CHUNK, OwnedSemaphorePermit::num_permits);
    let mut first = [0u8; FIRST_READ];
    let n = rd.read(&mut first[..FIRST_READ.min(most)]).await.map_err(read_error)?;
    if n == 0 {
        return Ok(None);
    }
    let mut permit = budget.reserve(RAW_CHUNK).await;
    let mut buf = BytesMut::with_capacity(DATA_HEADER_LEN + RAW_CHUNK);
    put_data_header(&mut buf, id);
    buf.extend_from_slice(&first[..n]);
    // Take what else has arrived, without waiting for more (an end of stream or an
    // error found here shows again on the next read).
    while buf.len() < DATA_HEADER_LEN + most {
        let left = DATA_HEADER_LEN + most - buf.len();
        let mut room = (&mut buf).limit(left);
        match rd.read_buf(&mut room).now_or_never() {
            Some(Ok(read)) if read > 0 => {}
            _ => break,
        }
    }
    // Give back what the chunk did not use.
    let read = buf.len() - DATA_HEADER_LEN;
    let used = (read + MESSAGE_OVERHEAD).min(budget.limit);
    drop(permit.split(permit.num_permits().saturating_sub(used)));
    if let Some(grant) = grant.as_mut() {
        // The browser gives the credit of what it was sent back with a Credit.
        if let Some(spent) = grant.split(read) {
            spent.forget();
        }
    }
    Ok(Some((buf.freeze(), permit)))
}

/// Waits until the browser allows this stream some bytes; takes all it allows, up to a
/// chunk.
async fn take_credit(credit: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    let mut grant =
        credit.clone().acquire_owned().await.expect("a stream's credit is never closed");
    let more = credit.available_permits().min(RAW_CHUNK - 1) as u32;
    if let Ok(more) = credit.clone().try_acquire_many_owned(more) {
        grant.merge(more);
    }
    grant
}

/// A framed stream's bounds.
struct FrameLimits {
    max: usize,
    /// How long the remote may send nothing inside a frame.
    stall: Duration,
}

/// One length-prefixed frame as a whole Data message, or `None` at a clean end of stream
/// (between frames).
///
/// With credit, the frame waits first for the browser to allow all of it. It then
/// takes its length from the session's assembly budget while its body is read, and
/// room among the Data for the browser only once it is whole (see [`OutboundBudget`]).
async fn read_frame(
    rd: &mut ReadHalf<BoxIo>,
    id: ConnId,
    limits: FrameLimits,
    budget: &OutboundBudget,
    credit: Option<&Arc<Semaphore>>,
) -> Result<Option<(Bytes, OwnedSemaphorePermit)>, String> {
    let FrameLimits { max: max_frame, stall } = limits;
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
    if let Some(credit) = credit {
        let cost = u32::try_from(4 + len).expect("frames are below 4 GiB");
        credit.acquire_many(cost).await.expect("a stream's credit is never closed").forget();
    }
    let assembly = budget.assemble(len).await;
    let mut buf = BytesMut::with_capacity(DATA_HEADER_LEN + len);
    put_data_header(&mut buf, id);
    // Read straight into the message (no zero-filling), never past this frame. The
    // frame holds room in the assembly budget meanwhile: a remote that stops sending
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
    let permit = budget.reserve(len).await;
    drop(assembly);
    Ok(Some((buf.freeze(), permit)))
}

/// Bytes a write pump has taken and not yet written, and its queue: whatever happens
/// to the pump (a failed write, an abort when the stream is given up), every byte is
/// given back once, written or not. Without it a stream given up with Data queued
/// would leave its session's budget (or the browser's credit) short for good.
///
/// Written bytes go back at once, each write: a remote that stops reading must not
/// keep the credit of what it did take (with credit, the outbox folds the returns of
/// a stream into one Credit message while one waits).
struct Unwritten<'a> {
    account: &'a Account,
    queue: &'a WriteQueue,
    /// Taken from the queue, not yet written.
    in_flight: usize,
}

impl Unwritten<'_> {
    fn wrote(&mut self, n: usize) {
        self.in_flight -= n;
        self.account.release(n);
    }
}

impl Drop for Unwritten<'_> {
    fn drop(&mut self) {
        self.account.release(self.in_flight + self.queue.abandon());
    }
}

/// What a write pump needs to know.
pub struct WritePump {
    pub id: ConnId,
    /// How long the remote may accept nothing while Data waits for it before the
    /// stream is closed, so it cannot hold its session's WebSocket paused for good.
    /// `None` with credit: the stream holds only its own window, and waits.
    pub stall: Option<Duration>,
    pub account: Account,
    pub events: mpsc::Sender<PumpEvent>,
}

impl WritePump {
    /// Writes queued bytes to the stream in order, flushing when the queue is empty,
    /// and closes the stream's write side when the session finishes the queue. `_keep`
    /// (the per-peer stream slot) is held as long as the stream is.
    pub async fn run<K: Send>(self, mut wr: WriteHalf<BoxIo>, queue: Arc<WriteQueue>, _keep: K) {
        let mut unwritten = Unwritten { account: &self.account, queue: &queue, in_flight: 0 };
        while let Some(chunk) = queue.take().await {
            unwritten.in_flight = chunk.len();
            let result = async {
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    let n = progress(self.stall, wr.write(rest)).await?;
                    if n == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
                    }
                    rest = &rest[n..];
                    unwritten.wrote(n);
                }
                if queue.is_empty() {
                    progress(self.stall, wr.flush()).await?;
                }
                Ok::<_, WriteFailure>(())
            }
            .await;
            if let Err(failure) = result {
                drop(unwritten);
                let reason = failure.to_string();
                let _ = self.events.send(PumpEvent::WriteFailed { id: self.id, reason }).await;
                return;
            }
        }
        drop(unwritten);
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

/// `io` unless it makes no progress for `stall`.
async fn progress<T>(
    stall: Option<Duration>,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, WriteFailure> {
    let Some(stall) = stall else { return Ok(io.await?) };
    match tokio::time::timeout(stall, io).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(WriteFailure::Stalled(stall)),
    }
}
