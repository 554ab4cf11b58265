//! Any Connect PEERID: `/addrs/` parsing and the Ascii85 under it never panic, and a
//! parsed target written back parses to the same target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libp2p_websocket::protocol::{ascii85, ConnectTarget};

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = ascii85::decode(data) {
        assert_eq!(ascii85::decode(ascii85::encode(&decoded).as_bytes()).unwrap(), decoded);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for candidate in [text.to_string(), format!("/addrs/{text}")] {
            if let Ok(target) = ConnectTarget::parse(&candidate) {
                assert_eq!(ConnectTarget::parse(&target.to_connect_string()).unwrap(), target);
            }
        }
    }
});
