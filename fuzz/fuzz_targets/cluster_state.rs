//! Gossiped membership state from a peer: decode never panics, and what
//! decodes merges into a fresh state without panicking.
#![no_main]

use cluster::membership::ClusterState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(theirs) = ClusterState::decode(data) {
        let mut mine = theirs.clone();
        mine.merge(&theirs);
        let _ = mine.encode();
    }
});
