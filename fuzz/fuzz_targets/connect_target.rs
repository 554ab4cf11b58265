//! Any Connect PEERID or RELAY: `/addrs/` parsing and the Ascii85 under it never panic,
//! a parsed target written back parses to the same target, the bounded parsers of
//! peer ids and multiaddrs (and the local-address check) take any text, and what a
//! refusal quotes of it is short and free of control characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libp2p_websocket::protocol::{
    addrs::{parse_addr, parse_peer},
    ascii85, is_local_target, text, ConnectTarget,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = ascii85::decode(data) {
        assert_eq!(ascii85::decode(ascii85::encode(&decoded).as_bytes()).unwrap(), decoded);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for candidate in [text.to_string(), format!("/addrs/{text}")] {
            if let Ok(target) = ConnectTarget::parse(&candidate) {
                assert_eq!(ConnectTarget::parse(&target.to_connect_string()).unwrap(), target);
                let _ = target.addrs.iter().any(is_local_target);
            }
        }
        let _ = parse_peer(text);
        if let Ok(addr) = parse_addr(text) {
            let _ = is_local_target(&addr);
        }
        let _ = libp2p_websocket::node::parse_relay_addr(text);
        let quoted = text::quote(text);
        assert!(!quoted.chars().any(char::is_control));
        assert!(quoted.len() <= 10 * text::QUOTE_CHARS + 32);
        assert!(text::echo(text.to_string()).len() <= text::MAX_ECHO + 3);
    }
});
