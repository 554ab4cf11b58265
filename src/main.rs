//! The `libp2p-websocket` binary: parse the flags, start tracing, run until a signal.

use anyhow::Context as _;
use libp2p_websocket::cli::Cli;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = match Cli::parse_compat(std::env::args()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if cli.version {
        println!("libp2p-websocket {}", libp2p_websocket::VERSION);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let bind = format!("{}:{}", bracket(&cli.addr), cli.port);
    let mut config = cli.into_config().context("reading the key")?;
    // As Go programs do: the soft limit on open files up to the hard one. Then the
    // limits that cost descriptors are fitted into it, leaving room for the rest.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(nofile) => {
            for lowered in config.fit_fd_limit(nofile) {
                tracing::warn!(nofile, %lowered, "limit lowered to fit the open file limit");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the open file limit"),
    }
    let listener =
        tokio::net::TcpListener::bind(&bind).await.with_context(|| format!("binding {bind}"))?;
    libp2p_websocket::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed here, before
/// anything is served: a signal that comes right after the URL is logged ends the daemon
/// cleanly instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (Ok(mut interrupt), Ok(mut terminate)) = (interrupt, terminate) else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        let ctrl_c = tokio::signal::ctrl_c();
        async move {
            let _ = ctrl_c.await;
        }
    }
}
