//! The HTTP side: the `/libp2p` WebSocket upgrade behind its [`door`], the pages,
//! `/status` (with what the dashboard draws, from [`live`]) and `/metrics`.

pub mod assets;
pub mod door;
pub mod live;
pub mod metrics;
pub mod server;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ws::WebSocketUpgrade, ConnectInfo, Query, Request, State},
    http::{header, HeaderMap, StatusCode, Uri},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Extension, Router,
};
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;

pub use assets::Pages;
pub use door::Door;

use crate::{
    limit_log::LimitLog,
    session::{
        self,
        link::BoxSocket,
        resume::{Attach, Peer},
        Shared,
    },
};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub door: Arc<Door>,
    pub pages: Arc<Pages>,
    /// Cancelled at shutdown; each session watches a child of it.
    pub cancel: CancellationToken,
    /// Whether `/metrics` is served here (not when counting is off, nor when it has an
    /// address of its own).
    pub serve_metrics: bool,
}

/// The router: `/libp2p`, `/status`, `/metrics` and the pages, with the host guard in
/// front of all.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new().route("/libp2p", get(upgrade)).route("/status", get(status));
    if state.serve_metrics {
        let metrics = state.shared.metrics.clone();
        router = router.route("/metrics", get(move || metrics::exposition(metrics.clone())));
    }
    router
        .fallback(get(page).layer(CompressionLayer::new()))
        .layer(middleware::from_fn_with_state(state.door.clone(), guard_host))
        .with_state(state)
}

/// Refuses requests whose `Host` the door does not take (DNS rebinding).
async fn guard_host(State(door): State<Arc<Door>>, request: Request, next: Next) -> Response {
    match door.check_host(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            static LOG: LimitLog = LimitLog::new();
            if let Some(unlogged) = LOG.hit() {
                tracing::warn!(%reason, unlogged, "request refused");
            }
            (StatusCode::FORBIDDEN, reason).into_response()
        }
    }
}

/// `/libp2p?resume=TOKEN&received=N`: a WebSocket that resumes a session (PROTOCOL.md,
/// *Extension: resume*); without `received`, a reloaded page taking its listeners back.
#[derive(serde::Deserialize)]
struct ResumeQuery {
    resume: Option<String>,
    received: Option<u64>,
}

async fn upgrade(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<ResumeQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(reason) = state.door.check_upgrade(&headers) {
        static LOG: LimitLog = LimitLog::new();
        if let Some(unlogged) = LOG.hit() {
            tracing::warn!(%reason, unlogged, "WebSocket refused");
        }
        return (StatusCode::FORBIDDEN, reason).into_response();
    }
    // Without connection info (an in-memory test) the peer counts as remote: no key.
    let loopback =
        peer.is_some_and(|Extension(ConnectInfo(addr))| crate::config::is_loopback(&addr));
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(door::normalize);
    let peer = Peer { loopback, origin };
    let limits = &state.shared.limits;
    let cancel = state.cancel.child_token();
    let counted_origin =
        headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned);
    // A 32 KiB read buffer instead of tungstenite's 128 KiB: a thousand idle sessions
    // should not cost 128 MiB.
    ws.read_buffer_size(32 * 1024)
        .max_message_size(limits.max_message)
        .max_frame_size(limits.max_message)
        // tungstenite wants this above its write buffer (128 KiB by default).
        .max_write_buffer_size((4 * limits.max_message).max(1 << 20))
        .on_upgrade(move |socket| {
            let shared = state.shared.clone();
            // Counted per WebSocket: a resumed session's new one too.
            let socket = shared.metrics.session(socket, counted_origin.as_deref(), loopback);
            let session = async move {
                let mut socket: BoxSocket = Box::pin(socket);
                let mut refused = None;
                if let Some(token) = query.resume {
                    let attach = Attach { socket, token: token.clone(), received: query.received };
                    match shared.resumes.resume(&token, &peer, attach) {
                        Ok(()) => return,
                        Err((refusal, back)) => (refused, socket) = (Some(refusal), back),
                    }
                }
                session::run(socket, shared, peer, cancel, refused).await
            };
            // Tracked, so shutdown can wait for the session's goodbye.
            state.shared.tasks.track_future(session)
        })
}

/// What the daemon holds now, as JSON: for monitoring, and for the soak run to check
/// that everything returns to zero.
async fn status(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let shared = &state.shared;
    let node = shared.node.current().map(|node| {
        let (connections, known_peers) = node.peers().counts();
        serde_json::json!({
            "peer_id": node.peer_id().to_base58(),
            "connections": connections,
            "known_peers": known_peers,
            "reachability": node.reachability().as_str(),
            "addresses": node.addresses().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        })
    });
    axum::Json(serde_json::json!({
        "version": crate::VERSION,
        "sessions": shared.active_sessions(),
        "detached": shared.detached_sessions(),
        "streams": shared.active_streams(),
        "listeners": shared.hub.listener_count(),
        "node": node,
        "live": live::view(shared),
    }))
}

async fn page(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    state.pages.serve(uri.path(), &headers).await
}
