//! Client bytes: RESP2/RESP3 framing (multibulk and inline) with small
//! limits, then command parsing. Never panics; every decoded request
//! consumes input (a request that consumed nothing would spin the
//! connection loop); feeding the bytes in two pieces decodes the same
//! requests as feeding them at once.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use resp::{Command, DecoderLimits, RequestDecoder};
use tokio_util::codec::Decoder;

fn limits() -> DecoderLimits {
    DecoderLimits {
        max_bulk_len: 1 << 16,
        ..DecoderLimits::default()
    }
}

/// Decodes what `buf` holds; `None` once the framing failed.
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

fuzz_target!(|data: &[u8]| {
    let mut whole = Vec::new();
    let whole_ok = drain(
        &mut RequestDecoder::new(limits()),
        &mut BytesMut::from(data),
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
});
