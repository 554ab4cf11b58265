//! The origin policy and the DNS-rebinding guard, over real HTTP.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue, Error};

async fn upgrade_status(daemon: &Daemon, headers: &[(&'static str, &str)]) -> u16 {
    let mut request = daemon.url().into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, HeaderValue::from_str(value).unwrap());
    }
    match within("upgrade", tokio_tungstenite::connect_async(request)).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn foreign_origins_are_refused_and_own_ones_admitted() {
    let mut config = libp2p_websocket::Config::local();
    config.allow_origins = vec!["https://game.example".into()];
    let daemon = Daemon::start(config).await;
    let port = daemon.addr.port();
    let own = format!("http://localhost:{port}");
    let own_ip = format!("http://127.0.0.1:{port}");
    assert_eq!(upgrade_status(&daemon, &[]).await, 101, "no Origin: not a browser page");
    assert_eq!(upgrade_status(&daemon, &[("origin", &own)]).await, 101);
    assert_eq!(upgrade_status(&daemon, &[("origin", &own_ip)]).await, 101);
    assert_eq!(upgrade_status(&daemon, &[("origin", "https://game.example")]).await, 101);
    assert_eq!(upgrade_status(&daemon, &[("origin", "http://evil.example")]).await, 403);
    assert_eq!(upgrade_status(&daemon, &[("origin", "http://localhost:1")]).await, 403);
    // DNS rebinding: a foreign name that resolved to loopback.
    assert_eq!(upgrade_status(&daemon, &[("host", "evil.example")]).await, 403);
    daemon.stop().await;
}
