//! A peer-protocol frame body as it arrives after the length prefix: decode
//! never panics, and what decodes re-encodes to a frame that decodes again.
#![no_main]

use cluster::wire::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        let body = frame.encode().expect("a decoded frame encodes");
        assert!(
            Frame::decode(&body).is_ok(),
            "re-encoded frame does not decode"
        );
    }
});
