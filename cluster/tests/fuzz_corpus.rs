//! Replays the committed fuzz corpora of `fuzz/fuzz_targets/{peer_frame,
//! context,cluster_state}.rs` with the same checks, so every input a fuzzer
//! kept stays a regression test on the stable toolchain.

use std::path::Path;

use cluster::{membership::ClusterState, version::Context, wire::Frame};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("the committed corpus")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        inputs.len() >= 10,
        "only {} inputs in {}",
        inputs.len(),
        dir.display()
    );
    inputs
}

#[test]
fn the_peer_frame_corpus_still_passes() {
    for data in corpus("peer_frame") {
        if let Ok(frame) = Frame::decode(&data) {
            let body = frame.encode().expect("a decoded frame encodes");
            assert!(Frame::decode(&body).is_ok());
        }
    }
}

#[test]
fn the_context_corpus_still_passes() {
    let mut decoded = 0;
    for data in corpus("context") {
        if let Ok(context) = Context::decode(&data) {
            assert_eq!(
                &context.encode()[..],
                &data[..],
                "non-canonical context accepted"
            );
            decoded += 1;
        }
    }
    assert!(decoded > 0, "the corpus holds valid contexts too");
}

#[test]
fn the_cluster_state_corpus_still_passes() {
    for data in corpus("cluster_state") {
        if let Ok(theirs) = ClusterState::decode(&data) {
            let mut mine = theirs.clone();
            mine.merge(&theirs);
            let _ = mine.encode();
        }
    }
}
