//! Who may come in: the WebSocket's `Origin` policy and the DNS-rebinding guard.
//!
//! A page from any web site could open `ws://localhost:8888/libp2p` and drive the
//! daemon, so an upgrade whose `Origin` is not one of the daemon's own pages (or listed
//! with `--allow-origin`) is refused with 403. A request with no `Origin` is not from a
//! browser page and is let in. When the daemon is bound to loopback, a `Host` header that
//! is not a loopback name means a foreign name resolved to 127.0.0.1 (DNS rebinding),
//! and the request is refused.
//!
//! Serving the LAN (`-addr 0.0.0.0` or `::`), the daemon is reached under whatever
//! address a player typed, e.g. `http://192.168.1.20:8888/game.html`. An upgrade is
//! then also admitted when its `Origin` is exactly `http://` + its `Host` header and
//! that host is an IP address literal: the page came from this daemon, at that
//! address. A host *name* is not enough (a rebinding attacker controls both the
//! name and where it points); names must be listed with `--allow-origin`.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap};

/// The origin and host policy of one daemon.
#[derive(Debug, Clone)]
pub struct Door {
    origins: Vec<String>,
    loopback_only: bool,
    /// Bound to every interface: admit same-origin pages reached by IP address.
    any_interface: bool,
}

impl Door {
    /// `bound` is the HTTP listener's address; `addr_host` the `-addr` host if given.
    pub fn new(bound: SocketAddr, addr_host: Option<&str>, extra: &[String]) -> Self {
        let port = bound.port();
        let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "[::1]".into()];
        if let Some(host) = addr_host.filter(|h| !h.is_empty()) {
            hosts.push(if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.into()
            });
        }
        let mut origins: Vec<String> = hosts.iter().map(|h| format!("http://{h}:{port}")).collect();
        origins.extend(extra.iter().map(|o| normalize(o)));
        Self {
            origins,
            loopback_only: crate::config::is_loopback(&bound),
            any_interface: bound.ip().is_unspecified(),
        }
    }

    /// `Err(reason)` if a WebSocket upgrade with these headers must be refused.
    pub fn check_upgrade(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
        let origin = normalize(origin.to_str().map_err(|_| "unreadable Origin header")?);
        if self.origins.contains(&origin) || self.same_origin_by_ip(&origin, headers) {
            Ok(())
        } else {
            Err(format!("origin {origin} is not allowed (start the daemon with --allow-origin {origin} to allow it)"))
        }
    }

    fn same_origin_by_ip(&self, origin: &str, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.any_interface
            && origin.strip_prefix("http://") == Some(host.as_str())
            && host_name(&host).parse::<std::net::IpAddr>().is_ok()
    }

    /// `Err(reason)` if the `Host` header is not acceptable for any request.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), String> {
        if !self.loopback_only {
            return Ok(());
        }
        let Some(host) = headers.get(header::HOST) else { return Ok(()) };
        let host = host.to_str().map_err(|_| "unreadable Host header")?.to_ascii_lowercase();
        let name = host_name(&host);
        let loopback = name == "localhost"
            || name.ends_with(".localhost")
            || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if loopback {
            Ok(())
        } else {
            Err(format!("host {host} is not a loopback name; this daemon only serves localhost"))
        }
    }
}

/// The name or address in a `Host` header, without port or IPv6 brackets.
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    }
}

pub(crate) fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn origins() {
        let door =
            Door::new("127.0.0.1:8888".parse().unwrap(), None, &["https://app.example".into()]);
        assert!(door.check_upgrade(&HeaderMap::new()).is_ok());
        for ok in [
            "http://localhost:8888",
            "http://127.0.0.1:8888",
            "http://[::1]:8888",
            "https://app.example/",
        ] {
            assert!(door.check_upgrade(&headers(header::ORIGIN, ok)).is_ok(), "{ok}");
        }
        for bad in
            ["http://evil.example", "http://localhost:9999", "null", "https://localhost:8888"]
        {
            assert!(door.check_upgrade(&headers(header::ORIGIN, bad)).is_err(), "{bad}");
        }
        let lan = Door::new("0.0.0.0:8888".parse().unwrap(), Some("192.168.1.5"), &[]);
        assert!(lan.check_upgrade(&headers(header::ORIGIN, "http://192.168.1.5:8888")).is_ok());
    }

    #[test]
    fn lan_pages_reached_by_ip_are_admitted() {
        let both = |origin: &str, host: &str| {
            let mut h = headers(header::ORIGIN, origin);
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            h
        };
        let lan = Door::new("0.0.0.0:8888".parse().unwrap(), Some("0.0.0.0"), &[]);
        assert!(lan.check_upgrade(&both("http://10.0.0.7:8888", "10.0.0.7:8888")).is_ok());
        assert!(lan.check_upgrade(&both("http://[fe80::1]:8888", "[fe80::1]:8888")).is_ok());
        // A name could be rebound by whoever owns it; another host is another origin.
        assert!(lan.check_upgrade(&both("http://game.example:8888", "game.example:8888")).is_err());
        assert!(lan.check_upgrade(&both("http://10.0.0.8:8888", "10.0.0.7:8888")).is_err());
        // Bound to one address, the rule does not apply.
        let one = Door::new("10.0.0.7:8888".parse().unwrap(), None, &[]);
        assert!(one.check_upgrade(&both("http://10.0.0.9:8888", "10.0.0.9:8888")).is_err());
    }

    #[test]
    fn hosts() {
        let door = Door::new("127.0.0.1:8888".parse().unwrap(), None, &[]);
        for ok in ["localhost:8888", "127.0.0.1:8888", "[::1]:8888", "LOCALHOST", "127.0.0.2"] {
            assert!(door.check_host(&headers(header::HOST, ok)).is_ok(), "{ok}");
        }
        for bad in ["evil.example:8888", "attacker.com", "[2001:db8::1]:8888"] {
            assert!(door.check_host(&headers(header::HOST, bad)).is_err(), "{bad}");
        }
        let open = Door::new("0.0.0.0:8888".parse().unwrap(), None, &[]);
        assert!(open.check_host(&headers(header::HOST, "game-host.lan:8888")).is_ok());
    }
}
