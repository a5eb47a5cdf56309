//! The opaque causal context clients send back with DPUT/DDEL: decode
//! never panics, and only canonical encodings decode (decode then encode
//! gives the same bytes), so two spellings of one context cannot exist.
#![no_main]

use cluster::version::Context;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(context) = Context::decode(data) {
        assert_eq!(
            &context.encode()[..],
            data,
            "non-canonical context accepted"
        );
    }
});
