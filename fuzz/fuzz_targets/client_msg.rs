//! Any bytes a browser sends: decoding never panics, and what decodes re-encodes to
//! something that decodes to the same message.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use libp2p_websocket::protocol::{ClientMsg, ServerMsg};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ClientMsg::decode(Bytes::copy_from_slice(data)) {
        let again = ClientMsg::decode(msg.encode()).expect("re-encoded message decodes");
        assert_eq!(again, msg);
    }
    if let Ok(msg) = ServerMsg::decode(Bytes::copy_from_slice(data)) {
        assert_eq!(ServerMsg::decode(msg.encode()).expect("re-encoded message decodes"), msg);
    }
});
