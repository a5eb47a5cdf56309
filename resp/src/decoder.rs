//! Request framing: a `tokio_util` codec over the `redis-protocol` decoder.
//!
//! Complete multibulk requests are decoded by `redis-protocol` without copying
//! (arguments are slices of the read buffer). While a request is still
//! incomplete, its headers are checked against the limits, so a client that
//! declares a 4 GiB bulk string is refused at once instead of making the
//! server buffer it. Inline requests (`PING\r\n`, as typed in telnet) are split
//! on whitespace.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::{decode::decode_bytes_mut, types::BytesFrame};
use tokio_util::codec::Decoder;

use crate::error::FrameError;

/// Limits enforced while framing, mirroring Redis's settings.
#[derive(Debug, Clone, Copy)]
pub struct DecoderLimits {
    /// Largest bulk string a client may send (`proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Most arguments in one request.
    pub max_multibulk_len: usize,
    /// Longest inline request line.
    pub max_inline_len: usize,
    /// Most bytes one request may declare in all (Redis's
    /// `client-query-buffer-limit`), so many large arguments cannot add up
    /// to an unbounded buffer.
    pub max_request_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_request_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Frames client requests into argument lists.
///
/// An empty argument list (`*0\r\n` or a blank inline line) is returned as
/// an empty `Vec`; the caller ignores it, as Redis does.
#[derive(Debug, Clone, Default)]
pub struct RequestDecoder {
    limits: DecoderLimits,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: DecoderLimits) -> Self {
        RequestDecoder { limits }
    }

    /// Change the limits (e.g. after `CONFIG SET proto-max-bulk-len`).
    pub fn set_limits(&mut self, limits: DecoderLimits) {
        self.limits = limits;
    }

    fn decode_multibulk(&self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, FrameError> {
        match decode_bytes_mut(src) {
            Ok(Some((frame, _, _))) => self.frame_to_args(frame).map(Some),
            Ok(None) => {
                self.check_partial(src)?;
                Ok(None)
            }
            Err(e) => Err(FrameError::Invalid(e.details().to_string())),
        }
    }

    fn frame_to_args(&self, frame: BytesFrame) -> Result<Vec<Bytes>, FrameError> {
        let items = match frame {
            BytesFrame::Array(items) => items,
            BytesFrame::Null => return Ok(Vec::new()),
            _ => return Err(FrameError::Invalid("expected an array".into())),
        };
        if items.len() > self.limits.max_multibulk_len {
            return Err(FrameError::MultibulkTooLong);
        }
        items
            .into_iter()
            .map(|item| match item {
                BytesFrame::BulkString(b) if b.len() > self.limits.max_bulk_len => {
                    Err(FrameError::BulkTooLong)
                }
                BytesFrame::BulkString(b) => Ok(b),
                _ => Err(FrameError::Invalid("expected '$'".into())),
            })
            .collect()
    }

    /// Walks the headers of an incomplete request and rejects it as soon as a
    /// declared length breaks a limit.
    fn check_partial(&self, buf: &[u8]) -> Result<(), FrameError> {
        let Some((count, mut pos)) = read_header(buf, 1)? else {
            return Ok(());
        };
        if count > self.limits.max_multibulk_len as i64 {
            return Err(FrameError::MultibulkTooLong);
        }
        let mut declared: u64 = 0;
        for _ in 0..count.max(0) {
            match buf.get(pos) {
                None => return Ok(()),
                Some(b'$') => {}
                Some(&c) => {
                    return Err(FrameError::Invalid(format!(
                        "expected '$', got '{}'",
                        c as char
                    )))
                }
            }
            let Some((len, body)) = read_header(buf, pos + 1)? else {
                return Ok(());
            };
            if len < 0 || len as u64 > self.limits.max_bulk_len as u64 {
                return Err(FrameError::BulkTooLong);
            }
            declared += len as u64;
            if declared > self.limits.max_request_bytes as u64 {
                return Err(FrameError::Invalid(
                    "request exceeds the query buffer limit".into(),
                ));
            }
            pos = body + len as usize + 2;
        }
        Ok(())
    }

    fn decode_inline(&self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, FrameError> {
        let Some(newline) = src.iter().position(|&b| b == b'\n') else {
            if src.len() > self.limits.max_inline_len {
                return Err(FrameError::InlineTooLong);
            }
            return Ok(None);
        };
        if newline > self.limits.max_inline_len {
            return Err(FrameError::InlineTooLong);
        }
        let line = src.split_to(newline + 1);
        let args = crate::inline::split_args(&line[..newline])?;
        Ok(Some(args.into_iter().map(Bytes::from).collect()))
    }
}

/// Reads the integer of a `*N\r\n` / `$N\r\n` header whose digits start at
/// `start`; returns the value and the position after the CRLF, or `None` if
/// the line is not complete yet.
fn read_header(buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, FrameError> {
    const MAX_HEADER: usize = 24;
    let rest = buf.get(start..).unwrap_or_default();
    let Some(cr) = rest.iter().take(MAX_HEADER).position(|&b| b == b'\r') else {
        if rest.len() >= MAX_HEADER {
            return Err(FrameError::Invalid("invalid length header".into()));
        }
        return Ok(None);
    };
    let value = std::str::from_utf8(&rest[..cr])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| FrameError::Invalid("invalid length header".into()))?;
    Ok(Some((value, start + cr + 2)))
}

impl Decoder for RequestDecoder {
    type Item = Vec<Bytes>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        match src.first() {
            None => Ok(None),
            Some(b'*') => self.decode_multibulk(src),
            Some(_) => self.decode_inline(src),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], limits: DecoderLimits) -> Result<Vec<Vec<Bytes>>, FrameError> {
        let mut decoder = RequestDecoder::new(limits);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = decoder.decode(&mut buf)? {
            out.push(args);
        }
        Ok(out)
    }

    #[test]
    fn pipelined_multibulk_and_inline() {
        let got = decode_all(
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n*1\r\n$4\r\nPI",
            DecoderLimits::default(),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                vec![Bytes::from("GET"), Bytes::from("a")],
                vec![Bytes::from("PING")]
            ]
        );
    }

    #[test]
    fn oversized_bulk_is_refused_before_it_arrives() {
        let limits = DecoderLimits {
            max_bulk_len: 100,
            ..Default::default()
        };
        let err = decode_all(b"*2\r\n$3\r\nGET\r\n$999999999\r\n", limits).unwrap_err();
        assert_eq!(err, FrameError::BulkTooLong);
    }

    #[test]
    fn many_large_arguments_cannot_add_up_past_the_request_limit() {
        let limits = DecoderLimits {
            max_bulk_len: 100,
            max_request_bytes: 250,
            ..Default::default()
        };
        let err = decode_all(b"*4\r\n$3\r\nSET\r\n$100\r\n", limits);
        assert!(err.is_ok(), "one declared bulk is within the limit");
        let mut input = b"*5\r\n$4\r\nMSET\r\n".to_vec();
        for _ in 0..3 {
            input.extend_from_slice(b"$100\r\n");
            input.extend_from_slice(&[b'x'; 100]);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"$100\r\n");
        assert!(matches!(
            decode_all(&input, limits),
            Err(FrameError::Invalid(_))
        ));
    }

    #[test]
    fn oversized_multibulk_is_refused() {
        let err = decode_all(b"*2147483648\r\n", DecoderLimits::default()).unwrap_err();
        assert_eq!(err, FrameError::MultibulkTooLong);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(decode_all(b"*1\r\n$x\r\n", DecoderLimits::default()).is_err());
        assert!(decode_all(b"*1\r\n:1\r\n", DecoderLimits::default()).is_err());
    }

    #[test]
    fn long_inline_line_is_refused() {
        let limits = DecoderLimits {
            max_inline_len: 10,
            ..Default::default()
        };
        assert_eq!(
            decode_all(&[b'a'; 20], limits).unwrap_err(),
            FrameError::InlineTooLong
        );
    }
}
