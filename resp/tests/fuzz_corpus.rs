//! Replays the committed fuzz corpus of `fuzz/fuzz_targets/resp_request.rs`
//! with the same checks, so every input a fuzzer kept stays a regression
//! test on the stable toolchain.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use resp::{Command, DecoderLimits, RequestDecoder};
use tokio_util::codec::Decoder;

fn limits() -> DecoderLimits {
    DecoderLimits {
        max_bulk_len: 1 << 16,
        ..DecoderLimits::default()
    }
}

fn drain(decoder: &mut RequestDecoder, buf: &mut BytesMut, out: &mut Vec<Vec<Bytes>>) -> bool {
    loop {
        let before = buf.len();
        match decoder.decode(buf) {
            Ok(Some(request)) => {
                assert!(buf.len() < before, "a request consumed no input");
                let _ = Command::parse_ref(&request);
                out.push(request);
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn the_resp_request_corpus_still_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/resp_request");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).expect("the committed corpus") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let mut whole = Vec::new();
        let whole_ok = drain(
            &mut RequestDecoder::new(limits()),
            &mut BytesMut::from(&data[..]),
            &mut whole,
        );
        let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
        let mut decoder = RequestDecoder::new(limits());
        let mut buf = BytesMut::from(&data[..split]);
        let mut pieces = Vec::new();
        let mut pieces_ok = drain(&mut decoder, &mut buf, &mut pieces);
        if pieces_ok {
            buf.extend_from_slice(&data[split..]);
            pieces_ok = drain(&mut decoder, &mut buf, &mut pieces);
        }
        if whole_ok && pieces_ok {
            assert_eq!(whole, pieces, "split at {split}");
        }
        inputs += 1;
    }
    assert!(
        inputs > 100,
        "only {inputs} corpus inputs in {}",
        dir.display()
    );
}
