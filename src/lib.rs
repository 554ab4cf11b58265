//! libp2p-websocket: a daemon that puts browsers on the libp2p network.
//!
//! A browser opens a WebSocket at `/libp2p` and drives the daemon's libp2p node with
//! small binary commands (listen, connect, send, close, stop); the daemon carries them
//! out on a real rust-libp2p swarm and forwards bytes between the WebSocket and libp2p
//! streams. The same server serves the browser library and example pages.
//!
//! | module | owns |
//! |---|---|
//! | [`protocol`] | the wire: messages, `/addrs/` connect strings, Ascii85. Pure, no I/O. |
//! | [`node`] | the libp2p swarm, its event loop, keys, streams per peer |
//! | [`session`] | one browser's control session: listeners, streams, pumps |
//! | [`http`] | the axum router: the `/libp2p` door, the pages, `/status`, `/metrics` |
//! | [`metrics`] | what the daemon counts: Prometheus families, libp2p's, the dashboard's |
//! | [`cli`], [`config`] | flags, and what they become |

pub mod cli;
pub mod config;
pub mod http;
pub mod limit_log;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod session;

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};

pub use config::{Config, Limits};

/// This build's version, as `-version`, `/status` and the wire say it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// What Hello and identify's agent version carry: `libp2p-websocket/VERSION`.
pub const AGENT: &str = concat!("libp2p-websocket/", env!("CARGO_PKG_VERSION"));

use crate::{
    http::{AppState, Door, Pages},
    metrics::Metrics,
    node::{NodeError, NodeSlot},
    session::Shared,
};

/// What the daemon logs once it serves, before the URL of its landing page.
pub const READY: &str = "serving pages and /libp2p";
/// What the daemon logs when it serves `/metrics` on an address of its own
/// (`--metrics-addr`), before its URL.
pub const METRICS_READY: &str = "serving /metrics";

/// The host and port of the URL in the line the daemon logs once it serves
/// (`… serving pages and /libp2p url=http://HOST:PORT/`, escape codes allowed): what
/// a program that starts the daemon waits for.
pub fn ready_address(line: &str) -> Option<(String, u16)> {
    let rest = &line[line.find(READY)?..];
    let rest = &rest[rest.find("url=http://")? + "url=http://".len()..];
    let hostport: String = rest.chars().take_while(|&c| c != '/' && !c.is_whitespace()).collect();
    let (host, port) = hostport.rsplit_once(':')?;
    Some((host.to_string(), port.parse().ok()?))
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Serves `/libp2p` and the pages on `listener` until `shutdown` resolves, then returns
/// within [`session::SHUTDOWN_GRACE`] and a second, whatever clients do.
///
/// With a key in `config` the libp2p node starts before the first request; without one
/// it starts on the first Start message.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let bound = listener.local_addr()?;
    let pages = Pages::new(&config.files)?;
    // Sessions are told to end first, so they can say goodbye over a node still running.
    let sessions = CancellationToken::new();
    let metrics = Arc::new(Metrics::new(config.metrics));
    let node = Arc::new(NodeSlot::with_metrics(
        config.node.clone(),
        CancellationToken::new(),
        metrics.clone(),
    ));
    if let Some(key) = config.key.clone() {
        node.start(Some(key)).await?;
    }
    let shared =
        Arc::new(Shared::with_metrics(node.clone(), config.limits.clone(), metrics.clone()));
    // `/metrics` beside `/status`, unless it has an address of its own.
    let metrics_listener = match config.metrics_addr.as_deref().filter(|_| config.metrics) {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    let state = AppState {
        shared: shared.clone(),
        door: Arc::new(Door::new(bound, config.addr_host.as_deref(), &config.allow_origins)),
        pages: Arc::new(pages),
        cancel: sessions.clone(),
        serve_metrics: config.metrics && metrics_listener.is_none(),
    };
    let _sampler =
        AbortOnDropHandle::new(tokio::spawn(metrics.clone().sample_traffic(sessions.clone())));
    let page_host = if bound.ip().is_unspecified() || bound.ip().is_loopback() {
        "localhost".to_string()
    } else {
        bound.ip().to_string()
    };
    let landing = format!("http://{page_host}:{}/", bound.port());
    tracing::info!(url = %landing, "{READY}");
    if let Some(page) = &config.browse {
        let url = format!("{landing}{}", page.trim_start_matches('/'));
        // `open` waits briefly for each launcher to fail: keep that off the runtime's
        // threads. Requests wait in the listener's backlog meanwhile.
        let opened = tokio::task::spawn_blocking({
            let url = url.clone();
            move || open::that_detached(url)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match opened {
            Ok(()) => tracing::info!(%url, "opened in the browser"),
            Err(e) => {
                tracing::warn!(%url, error = %e, "could not open a browser; open the URL by hand")
            }
        }
    }
    let app = http::app(state);
    let metrics_server = async {
        let Some(listener) = metrics_listener else { return };
        let Ok(at) = listener.local_addr() else { return };
        let app = http::metrics::app(metrics.clone(), Door::new(at, None, &[]));
        tracing::info!(url = %format!("http://{at}/metrics"), "{METRICS_READY}");
        http::server::serve(listener, app, &config.limits, sessions.clone()).await
    };
    let stopping = async {
        shutdown.await;
        tracing::info!("shutting down");
        sessions.cancel();
        tokio::time::Instant::now()
    };
    // The server returns at most HTTP_SHUTDOWN_GRACE after the signal, responses still
    // unfinished then cut.
    let ((), (), stopped_at) = tokio::join!(
        http::server::serve(listener, app, &config.limits, sessions.clone()),
        metrics_server,
        stopping
    );
    // Upgraded WebSockets outlive the HTTP server: wait for the sessions' goodbyes and
    // the tasks they left (a stream's last writes), counted from the signal so the two
    // waits overlap.
    let deadline = stopped_at + session::SHUTDOWN_GRACE + std::time::Duration::from_secs(1);
    shared.tasks.close();
    let _ = tokio::time::timeout_at(deadline, shared.tasks.wait()).await;
    node.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ready_line_names_where_the_daemon_serves() {
        let line = "2026-12-01T00:00:00Z  \u{1b}[32mINFO\u{1b}[0m libp2p_websocket: serving pages \
                    and /libp2p url=http://localhost:8888/";
        assert_eq!(super::ready_address(line), Some(("localhost".into(), 8888)));
        let lan = "INFO libp2p_websocket: serving pages and /libp2p url=http://10.0.0.2:41234/";
        assert_eq!(super::ready_address(lan), Some(("10.0.0.2".into(), 41234)));
        assert_eq!(super::ready_address("INFO other url=http://localhost:1/"), None);
    }
}
