//! A session's streams: their ids, their pumps, and the budgets that bound what the
//! session holds for them both ways.
//!
//! Browser → streams: without credit, Data is charged to the session's [`WriteBudget`]
//! and queued for its stream's write pump; Data that does not fit its stream's queue
//! is held here (one message at most) and the session stops reading its WebSocket
//! until it fits, as it does while the budget is over. With credit (see `credit`),
//! Data is taken from the browser's windows and always queued: the WebSocket is never
//! paused for a stream. Streams → browser: the read pumps take room from the session's
//! [`OutboundBudget`] (and, with credit, the stream's receive credit) before they read
//! (see `pump`).

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::Instrument as _;

use super::{
    credit::{self, Account, SessionCredit, StreamCredit},
    outbox::Outbox,
    pump::{BoxIo, ClosedFlag, OutboundBudget, PumpEvent, ReadPump, WriteBudget, WritePump},
    write_queue::WriteQueue,
    Shared,
};
use crate::{
    config::Windows,
    node::StreamSlot,
    protocol::{ConnId, ServerMsg},
};

/// Bytes queued for one stream (without credit) before the session stops reading its
/// WebSocket; one Data is always taken into an empty queue, whatever its size.
pub const STREAM_WRITE_QUEUE: usize = 4 * 1024 * 1024;
/// Pump reports queued for the session.
const PUMP_EVENT_QUEUE: usize = 256;
/// The Connection Closed reason that answers a browser's Close.
pub const CLOSED: &str = "closed";
/// How long a closing stream may take to flush what was queued for it.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Where a stream came from: the listener (protocol, generation) it came in on, or
/// a Connect.
pub type Origin = Option<(String, u64)>;

struct Conn {
    origin: Origin,
    frames: bool,
    queue: Arc<WriteQueue>,
    /// With the credit extension.
    credit: Option<StreamCredit>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    closed: Arc<ClosedFlag>,
}

/// One session's streams.
pub struct Streams {
    shared: Arc<Shared>,
    out: Outbox,
    conns: HashMap<ConnId, Conn>,
    next_id: ConnId,
    /// Bytes queued towards the streams.
    budget: Arc<WriteBudget>,
    /// Bytes read from the streams and not yet written to the browser.
    outbound_budget: OutboundBudget,
    /// Data that did not fit its stream's queue; the WebSocket is not read until it does.
    blocked: Option<(ConnId, Bytes)>,
    /// The credit extension, once the browser turned it on.
    credit: Option<SessionCredit>,
    /// Which ids given out were framed streams, one bit each: Data for a stream that
    /// is gone still costs what it cost, and its credit goes back.
    framed_ids: Vec<u64>,
    events_tx: mpsc::Sender<PumpEvent>,
    events: mpsc::Receiver<PumpEvent>,
}

impl Streams {
    pub fn new(shared: Arc<Shared>, out: Outbox) -> Self {
        let (events_tx, events) = mpsc::channel(PUMP_EVENT_QUEUE);
        let budget = Arc::new(WriteBudget::new(shared.limits.session_write_buffer));
        let limits = &shared.limits;
        let outbound_budget =
            OutboundBudget::new(limits.session_read_buffer, limits.frame_assembly());
        Self {
            shared,
            out,
            conns: HashMap::new(),
            next_id: 0,
            budget,
            outbound_budget,
            blocked: None,
            credit: None,
            framed_ids: Vec::new(),
            events_tx,
            events,
        }
    }

    /// Streams open now.
    pub fn count(&self) -> usize {
        self.conns.len()
    }

    /// A new stream id (sent in Peer or Listener Connection before [`Streams::start`]).
    pub fn next_id(&mut self) -> ConnId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Turns the credit extension on for the streams opened from now on (the session
    /// checks that there are none yet).
    pub fn enable_credit(&mut self, windows: Windows) {
        self.credit = Some(SessionCredit::new(windows));
    }

    /// The credit windows, when the extension is on.
    pub fn credit_windows(&self) -> Option<Windows> {
        self.credit.as_ref().map(|credit| credit.windows)
    }

    /// Whether the session must stop reading its WebSocket until streams drain.
    pub fn paused(&self) -> bool {
        self.blocked.is_some() || self.budget.is_over()
    }

    /// Resolves when some queued Data was written (then [`Streams::retry_blocked`]).
    pub fn drained(&self) -> impl std::future::Future<Output = ()> + use<> {
        let budget = self.budget.clone();
        async move { budget.drained.notified().await }
    }

    /// The next report of a pump.
    pub async fn next_event(&mut self) -> Option<PumpEvent> {
        self.events.recv().await
    }

    /// Starts the pumps of a stream whose Peer/Listener Connection was queued already.
    pub fn start(
        &mut self,
        id: ConnId,
        io: BoxIo,
        frames: bool,
        origin: Origin,
        slot: Option<StreamSlot>,
    ) {
        let (rd, wr) = tokio::io::split(io);
        let queue = Arc::new(WriteQueue::default());
        let closed = Arc::new(ClosedFlag::default());
        let stall = self.shared.limits.stream_stall_timeout;
        let credit = self.credit.as_ref().map(|session| StreamCredit::new(&session.windows));
        let read = ReadPump {
            id,
            frames,
            max_frame: self.shared.limits.max_frame,
            stall,
            out: self.out.clone(),
            budget: self.outbound_budget.clone(),
            credit: credit.as_ref().map(|credit| credit.receive.clone()),
            closed: closed.clone(),
            events: self.events_tx.clone(),
        };
        let (account, stall) = match (&credit, &self.credit) {
            (Some(stream), Some(session)) => {
                (Account::Credit(stream.giver(id, session, &self.out)), None)
            }
            _ => (Account::Budget(self.budget.clone()), Some(stall)),
        };
        let write = WritePump { id, stall, account, events: self.events_tx.clone() };
        if frames {
            let (word, bit) = (id as usize / 64, id % 64);
            if self.framed_ids.len() <= word {
                self.framed_ids.resize(word + 1, 0);
            }
            self.framed_ids[word] |= 1 << bit;
        }
        let reader = tokio::spawn(read.run(rd).in_current_span());
        let keep = (
            slot,
            self.shared.streams.enter(),
            self.shared.metrics.stream(origin.is_some(), frames),
        );
        let writer = self.shared.tasks.spawn(write.run(wr, queue.clone(), keep).in_current_span());
        self.conns.insert(id, Conn { origin, frames, queue, credit, reader, writer, closed });
    }

    fn was_framed(&self, id: ConnId) -> bool {
        let word = usize::try_from(id / 64).unwrap_or(usize::MAX);
        self.framed_ids.get(word).is_some_and(|bits| bits & (1 << (id % 64)) != 0)
    }

    /// Data from the browser for stream `id`.
    pub async fn on_data(&mut self, id: ConnId, data: Bytes) {
        let Some(conn) = self.conns.get(&id) else {
            self.out.reply(&unknown(id));
            if self.credit.is_some() {
                // It cost the browser credit all the same: give it back.
                let cost = credit::cost(self.was_framed(id), data.len());
                if let Some(bytes) = u32::try_from(cost).ok().filter(|&n| n > 0) {
                    self.out.reply(&ServerMsg::Credit { id, bytes });
                }
            }
            return;
        };
        let max_frame = self.shared.limits.max_frame;
        let cost = credit::cost(conn.frames, data.len());
        if conn.frames && data.len() > max_frame {
            // Not taken, but within the credit it cost the browser: give that back, as
            // for Data to a stream that is gone.
            if conn.credit.is_some() {
                if let Ok(bytes) = u32::try_from(cost) {
                    self.out.reply(&ServerMsg::Credit { id, bytes });
                }
            }
            let reason =
                format!("frame of {} bytes exceeds the limit of {max_frame} bytes", data.len());
            return self.close(id, Some(reason)).await;
        }
        if cost == 0 {
            return; // an empty raw Data: nothing to write
        }
        if let (Some(stream), Some(session)) = (&conn.credit, &self.credit) {
            let on_stream = stream.send.load(Ordering::Acquire);
            let on_session = session.left.load(Ordering::Acquire);
            if cost > on_stream || cost > on_session {
                let reason = format!(
                    "Data of {cost} bytes overran its credit ({on_stream} left on the stream, \
                     {on_session} on the session)"
                );
                return self.close(id, Some(reason)).await;
            }
            // Only this task takes from the windows; the write pump only gives back.
            stream.send.fetch_sub(cost, Ordering::AcqRel);
            session.left.fetch_sub(cost, Ordering::AcqRel);
            // A queue that takes nothing more belongs to a stream whose pump ended and
            // gave back what it had; this Data goes back the same way.
            if !conn.queue.push(conn.frames, &data) {
                Account::Credit(stream.giver(id, session, &self.out)).release(cost);
            }
            return;
        }
        self.budget.charge(cost);
        self.queue(id, data);
        // The WebSocket is read only while not paused: a pause now began with this Data.
        if self.paused() {
            self.shared.metrics.backpressure_pause();
        }
    }

    /// The browser's Credit for stream `id` (ignored for a stream it no longer has).
    pub fn on_credit(&mut self, id: ConnId, bytes: u32) {
        if let Some(credit) = self.conns.get(&id).and_then(|conn| conn.credit.as_ref()) {
            credit.grant(bytes);
        }
    }

    /// Close from the browser: answered with Connection Closed (`closed`), as the
    /// original did once the stream was done, so a page waiting for it moves on. A
    /// stream that already ended (and said so) gets nothing twice; an id never given
    /// out is `unknown connection`.
    pub async fn on_close(&mut self, id: ConnId) {
        if self.conns.contains_key(&id) {
            self.close(id, Some(CLOSED.into())).await;
        } else if id >= self.next_id {
            self.out.reply(&unknown(id));
        }
    }

    /// Queues charged data for a stream, or holds it when the stream's queue is full.
    fn queue(&mut self, id: ConnId, data: Bytes) {
        let Some(conn) = self.conns.get(&id) else {
            return self.budget.release(credit::cost(self.was_framed(id), data.len()));
        };
        let cost = credit::cost(conn.frames, data.len());
        let queued = conn.queue.len();
        if queued > 0 && queued + cost > STREAM_WRITE_QUEUE {
            self.blocked = Some((id, data));
        } else if !conn.queue.push(conn.frames, &data) {
            // The write pump failed; its report closes the stream.
            self.budget.release(cost);
        }
    }

    pub fn retry_blocked(&mut self) {
        if let Some((id, data)) = self.blocked.take() {
            self.queue(id, data);
        }
    }

    pub async fn on_pump_event(&mut self, event: PumpEvent) {
        match event {
            // The read side ended and said so; dropping the queue lets the write pump
            // finish what is queued and close the stream.
            PumpEvent::ReadEnded { id } => {
                if let Some(conn) = self.conns.remove(&id) {
                    conn.queue.finish();
                    finish(&self.shared, conn.writer);
                }
            }
            PumpEvent::WriteFailed { id, reason } => self.close(id, Some(reason)).await,
        }
    }

    /// Closes a stream from this side; tells the browser `reason` if there is one.
    pub async fn close(&mut self, id: ConnId, reason: Option<String>) {
        let Some(conn) = self.conns.remove(&id) else { return };
        conn.reader.abort();
        // Once the read pump has stopped, no Data of this stream can follow the close.
        let _ = conn.reader.await;
        if let Some((_, data)) = self.blocked.take_if(|(blocked, _)| *blocked == id) {
            self.budget.release(credit::cost(conn.frames, data.len()));
        }
        conn.queue.finish();
        finish(&self.shared, conn.writer);
        if let Some(reason) = reason {
            if conn.closed.claim() {
                self.out.reply(&ServerMsg::ConnectionClosed { id, reason });
            }
        }
    }

    /// Closes every stream that came in on `origin`, telling the browser `reason`.
    pub async fn close_from(&mut self, origin: &Origin, reason: &str) {
        self.close_matching(|conn| conn.origin == *origin, reason).await
    }

    /// Closes every stream, each with a Connection Closed giving `reason`.
    pub async fn close_all(&mut self, reason: &str) {
        self.close_matching(|_| true, reason).await
    }

    /// Closes every stream without a word to the browser (a reloaded page, which
    /// knows none of them).
    pub async fn close_silently(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, None).await;
        }
    }

    async fn close_matching(&mut self, matches: impl Fn(&Conn) -> bool, reason: &str) {
        let mut ids: Vec<ConnId> =
            self.conns.iter().filter(|(_, c)| matches(c)).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        for id in ids {
            self.close(id, Some(reason.to_string())).await;
        }
    }

    /// Gives every stream up. `drain`: the write pumps may still deliver what the
    /// browser queued (for a bounded time); otherwise (daemon shutdown) they stop.
    pub fn shutdown(&mut self, drain: bool) {
        for (_, conn) in self.conns.drain() {
            conn.reader.abort();
            if drain {
                conn.queue.finish();
                finish(&self.shared, conn.writer);
            } else {
                conn.writer.abort();
            }
        }
    }
}

/// Lets a write pump whose queue was dropped finish writing what is queued and close
/// its stream, for CLOSE_GRACE at most: a remote that stops reading cannot keep it.
fn finish(shared: &Shared, writer: JoinHandle<()>) {
    if writer.is_finished() {
        return;
    }
    shared.tasks.spawn(async move {
        let writer = tokio_util::task::AbortOnDropHandle::new(writer);
        let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
    });
}

fn unknown(id: ConnId) -> ServerMsg {
    ServerMsg::ConnectionClosed { id, reason: "unknown connection".into() }
}
