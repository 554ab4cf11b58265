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
//! | [`http`] | the axum router: the `/libp2p` door and the pages |
//! | [`cli`], [`config`] | flags, and what they become |

pub mod cli;
pub mod config;
pub mod http;
pub mod limit_log;
pub mod node;
pub mod protocol;
pub mod session;

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Limits};

use crate::{
    http::{AppState, Door, Pages},
    node::{NodeError, NodeSlot},
    session::Shared,
};

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
    let node = Arc::new(NodeSlot::new(config.node.clone(), CancellationToken::new()));
    if let Some(key) = config.key.clone() {
        node.start(Some(key)).await?;
    }
    let shared = Arc::new(Shared::new(node.clone(), config.limits.clone()));
    let state = AppState {
        shared: shared.clone(),
        door: Arc::new(Door::new(bound, config.addr_host.as_deref(), &config.allow_origins)),
        pages: Arc::new(pages),
        cancel: sessions.clone(),
    };
    let page_host = if bound.ip().is_unspecified() || bound.ip().is_loopback() {
        "localhost".to_string()
    } else {
        bound.ip().to_string()
    };
    let landing = format!("http://{page_host}:{}/", bound.port());
    tracing::info!(url = %landing, "serving pages and /libp2p");
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
    let stopping = async {
        shutdown.await;
        tracing::info!("shutting down");
        sessions.cancel();
        tokio::time::Instant::now()
    };
    // The server returns at most HTTP_SHUTDOWN_GRACE after the signal, responses still
    // unfinished then cut.
    let ((), stopped_at) = tokio::join!(
        http::server::serve(listener, app, &config.limits, sessions.clone()),
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
