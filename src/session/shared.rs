//! What every session of the daemon shares: the node, the hub of listened protocols,
//! the limits, and the count and tasks of all sessions.

use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use tokio_util::task::TaskTracker;

use super::{resume::Resumes, Hub};
use crate::{config::Limits, metrics::Metrics, node::NodeSlot};

/// What every session of the daemon shares.
pub struct Shared {
    pub node: Arc<NodeSlot>,
    pub hub: Hub,
    pub limits: Limits,
    /// Sessions that can be resumed, by token (resume extension).
    pub resumes: Resumes,
    next_session: AtomicU64,
    /// Sessions running now, each holding a guard (a panicking session gives its
    /// place back too).
    sessions: Gauge,
    /// Sessions waiting for a new WebSocket (resume extension).
    pub(super) detached: Gauge,
    /// Streams whose pumps are still running, all sessions together.
    pub(super) streams: Gauge,
    /// Every session and every task a session leaves behind (a stream's last writes):
    /// shutdown waits for them, within its deadline.
    pub tasks: TaskTracker,
    /// What the daemon counts (`/metrics`, the dashboard).
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(node: Arc<NodeSlot>, limits: Limits) -> Self {
        Self::with_metrics(node, limits, Arc::default())
    }

    /// [`Shared::new`], counting into the daemon's `metrics`.
    pub fn with_metrics(node: Arc<NodeSlot>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            node,
            hub: Hub::default(),
            limits,
            resumes: Resumes::default(),
            next_session: AtomicU64::new(0),
            sessions: Gauge::default(),
            detached: Gauge::default(),
            streams: Gauge::default(),
            tasks: TaskTracker::new(),
            metrics,
        }
    }

    /// A new session's id and its place in the count.
    pub(super) fn enter_session(&self) -> (u64, GaugeGuard) {
        (self.next_session.fetch_add(1, Ordering::Relaxed), self.sessions.enter())
    }

    /// Streams open now (their pumps still running), all sessions together.
    pub fn active_streams(&self) -> usize {
        self.streams.get()
    }

    /// Sessions waiting for a new WebSocket now (counted in [`Shared::active_sessions`]).
    pub fn detached_sessions(&self) -> usize {
        self.detached.get()
    }

    /// Sessions open now.
    pub fn active_sessions(&self) -> usize {
        self.sessions.get()
    }
}

/// A count of live things, each holding a [`GaugeGuard`].
#[derive(Clone, Default)]
pub struct Gauge(Arc<AtomicUsize>);

/// Counts one in its [`Gauge`] until dropped.
pub struct GaugeGuard(Arc<AtomicUsize>);

impl Gauge {
    pub fn enter(&self) -> GaugeGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(self.0.clone())
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl GaugeGuard {
    /// How many are counted, this one included.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
