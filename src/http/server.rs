//! The HTTP server under the router: the accept loop with its connection cap, hyper's
//! HTTP/1 connections with a header-read timeout and a write deadline, and the shutdown
//! deadline. `axum::serve` has neither timeouts nor a deadline, so this replaces it.
//!
//! # Backpressure
//! At most [`Limits::max_http_connections`] connections are served at once; further ones
//! wait in the listener's backlog, where they cost the daemon no descriptor and no memory,
//! and are accepted in arrival order as served ones end. Connections that hold a slot
//! without using it are ended by the timeouts, so a waiting client gets its turn. A
//! WebSocket leaves the count once upgraded (sessions have their own cap).

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{extract::ConnectInfo, Router};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

use crate::{config::Limits, limit_log::LimitLog};

/// How long responses in progress may take to finish once the daemon is stopping;
/// connections still open then are cut. Sessions say goodbye meanwhile (within
/// [`SHUTDOWN_GRACE`](crate::session::SHUTDOWN_GRACE) too), so the daemon exits within 5 s.
pub const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long the accept loop pauses after an error that is not one connection's (out of
/// file descriptors, say), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `stop` is cancelled, then gives open connections
/// [`HTTP_SHUTDOWN_GRACE`] to finish and cuts the rest. Returns when none is left.
pub async fn serve(listener: TcpListener, app: Router, limits: &Limits, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_http_connections.max(1)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.http_header_timeout);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        // Take a slot before accepting: at the cap, connections wait in the backlog.
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                static LOG: LimitLog = LimitLog::new();
                if let Some(unlogged) = LOG.hit() {
                    tracing::warn!(error = %e, unlogged, "cannot accept HTTP connections");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let connection = Connection {
            http: http.clone(),
            app: app.clone(),
            peer,
            write_timeout: limits.http_idle_timeout,
            stop: stop.clone(),
            _slot: slot,
        };
        connections.spawn(connection.run(tcp));
    }
    // Stop accepting now: connections still in the backlog are refused, not left hanging.
    drop(listener);
    let drain_by = Instant::now() + HTTP_SHUTDOWN_GRACE;
    while let Ok(Some(_)) = tokio::time::timeout_at(drain_by, connections.join_next()).await {}
    if !connections.is_empty() {
        tracing::info!(open = connections.len(), "cutting HTTP connections still open");
    }
    connections.shutdown().await;
}

/// Errors that concern only the connection being accepted.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One accepted HTTP connection, holding its slot until it ends or is upgraded.
struct Connection {
    http: http1::Builder,
    app: Router,
    peer: SocketAddr,
    write_timeout: Duration,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, tcp: TcpStream) {
        // Small messages (a round trip, a game's input) must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let (io, deadline) = WriteDeadline::new(tcp, self.write_timeout);
        let (app, peer) = (self.app, self.peer);
        let service = service_fn(move |mut request: Request<Incoming>| {
            // What `into_make_service_with_connect_info` would add: `/libp2p` tells
            // loopback browsers by it.
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(request)
        });
        let connection = self.http.serve_connection(TokioIo::new(io), service).with_upgrades();
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = self.stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        // An upgraded WebSocket now owns the socket; its session keeps its own time.
        deadline.disarm();
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "HTTP connection ended");
        }
    }
}

/// Turns off a [`WriteDeadline`] from outside.
struct DeadlineSwitch(Arc<AtomicBool>);

impl DeadlineSwitch {
    fn disarm(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A socket whose writes fail with `TimedOut` once one has made no progress for
/// `timeout`: a client that stops reading a response cannot hold its connection forever.
/// Reads have no deadline here; hyper's header-read timeout covers them.
struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    /// Running while a write waits; allocated on the first wait, then reset.
    stalled: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    armed: Arc<AtomicBool>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, timeout: Duration) -> (Self, DeadlineSwitch) {
        let armed = Arc::new(AtomicBool::new(true));
        let io = Self { inner, timeout, stalled: None, waiting: false, armed: armed.clone() };
        (io, DeadlineSwitch(armed))
    }

    /// Passes an outcome on, or an error once writing has waited too long. Only a write
    /// that is done counts as progress (a socket's flush is always ready).
    fn check<R>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<R>>,
        is_write: bool,
    ) -> Poll<io::Result<R>> {
        if !self.armed.load(Ordering::Relaxed) {
            self.waiting = false;
            return outcome;
        }
        if outcome.is_ready() {
            if is_write {
                self.waiting = false;
            }
            return outcome;
        }
        let until = Instant::now() + self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if !self.waiting {
            stalled.as_mut().reset(until);
            self.waiting = true;
        }
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing within the HTTP idle timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, outcome, true)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, outcome, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, outcome, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, outcome, false)
    }
}
