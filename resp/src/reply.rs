//! Replies, encoded for the connection's protocol version.
//!
//! A [`Reply`] says what to answer; [`Reply::encode`] turns it into RESP2 or
//! RESP3 bytes through `redis-protocol`'s frames. RESP3-only types degrade the
//! way Redis degrades them for RESP2 clients: maps become flat arrays, sets
//! arrays, doubles bulk strings, booleans integers, and nil is `$-1` or `*-1`.

use bytes::{Bytes, BytesMut};
use redis_protocol::{
    bytes_utils::Str,
    resp2::{encode::extend_encode as encode2, types::BytesFrame as Frame2},
    resp3::{
        encode::complete::extend_encode as encode3,
        types::{BytesFrame as Frame3, FrameMap, FrameSet, VerbatimStringFormat},
    },
};

/// The protocol a connection speaks (`HELLO 2` / `HELLO 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default of every new connection.
    #[default]
    Resp2,
    /// RESP3, chosen with `HELLO 3`.
    Resp3,
}

/// One reply to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// A simple string (`+...`).
    Simple(String),
    /// An error; the text includes its prefix (`ERR ...`, `WRONGTYPE ...`).
    Error(String),
    /// An integer.
    Int(i64),
    /// A binary-safe bulk string.
    Bulk(Bytes),
    /// A missing value (`$-1` in RESP2, `_` in RESP3).
    Nil,
    /// A missing array (`*-1` in RESP2, `_` in RESP3), e.g. an aborted EXEC.
    NilArray,
    /// An array.
    Array(Vec<Reply>),
    /// A map (RESP3), a flat array of key, value, ... in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A set (RESP3), an array in RESP2.
    Set(Vec<Reply>),
    /// A double (RESP3), a bulk string in RESP2.
    Double(f64),
    /// A boolean (RESP3), 1 or 0 in RESP2.
    Bool(bool),
    /// Text such as INFO's: a verbatim string in RESP3, a bulk string in RESP2.
    Verbatim(String),
}

impl Reply {
    /// A bulk string from anything byte-like.
    pub fn bulk(data: impl Into<Bytes>) -> Reply {
        Reply::Bulk(data.into())
    }

    /// A bulk string, or nil for `None`.
    pub fn bulk_or_nil(data: Option<Bytes>) -> Reply {
        data.map_or(Reply::Nil, Reply::Bulk)
    }

    /// An `ERR ...` error.
    pub fn err(msg: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {msg}"))
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of this reply for `protocol` to `buf`.
    pub fn encode(&self, protocol: Protocol, buf: &mut BytesMut) {
        // Encoding a well-formed frame into a growable buffer cannot fail;
        // an error here would be a bug in the frame construction.
        let result = match (protocol, self) {
            // RESP2's null array has no frame in redis-protocol (its Null is
            // always `$-1`), so it is written directly.
            (Protocol::Resp2, Reply::NilArray) => {
                buf.extend_from_slice(b"*-1\r\n");
                Ok(())
            }
            (Protocol::Resp2, _) => encode2(buf, &self.to_resp2(), false).map(drop),
            (Protocol::Resp3, _) => encode3(buf, &self.to_resp3(), false).map(drop),
        };
        assert!(result.is_ok(), "reply encoding failed: {result:?}");
    }

    fn to_resp2(&self) -> Frame2 {
        match self {
            Reply::Ok => Frame2::SimpleString(Bytes::from_static(b"OK")),
            Reply::Simple(s) => Frame2::SimpleString(Bytes::from(one_line(s))),
            Reply::Error(e) => Frame2::Error(Str::from(one_line(e))),
            Reply::Int(i) => Frame2::Integer(*i),
            Reply::Bulk(b) => Frame2::BulkString(b.clone()),
            Reply::Nil | Reply::NilArray => Frame2::Null,
            Reply::Array(items) | Reply::Set(items) => {
                Frame2::Array(items.iter().map(Reply::to_resp2).collect())
            }
            Reply::Map(pairs) => Frame2::Array(
                pairs
                    .iter()
                    .flat_map(|(k, v)| [k.to_resp2(), v.to_resp2()])
                    .collect(),
            ),
            Reply::Double(d) => Frame2::BulkString(Bytes::from(format_double(*d))),
            Reply::Bool(b) => Frame2::Integer(i64::from(*b)),
            Reply::Verbatim(s) => Frame2::BulkString(Bytes::from(s.clone())),
        }
    }

    fn to_resp3(&self) -> Frame3 {
        let attributes = None;
        match self {
            Reply::Ok => Frame3::SimpleString {
                data: Bytes::from_static(b"OK"),
                attributes,
            },
            Reply::Simple(s) => Frame3::SimpleString {
                data: Bytes::from(one_line(s)),
                attributes,
            },
            Reply::Error(e) => Frame3::SimpleError {
                data: Str::from(one_line(e)),
                attributes,
            },
            Reply::Int(i) => Frame3::Number {
                data: *i,
                attributes,
            },
            Reply::Bulk(b) => Frame3::BlobString {
                data: b.clone(),
                attributes,
            },
            Reply::Nil | Reply::NilArray => Frame3::Null,
            Reply::Array(items) => Frame3::Array {
                data: items.iter().map(Reply::to_resp3).collect(),
                attributes,
            },
            Reply::Set(items) => Frame3::Set {
                data: items.iter().map(Reply::to_resp3).collect::<FrameSet<_>>(),
                attributes,
            },
            Reply::Map(pairs) => Frame3::Map {
                data: pairs
                    .iter()
                    .map(|(k, v)| (k.to_resp3(), v.to_resp3()))
                    .collect::<FrameMap<_, _>>(),
                attributes,
            },
            Reply::Double(d) => Frame3::Double {
                data: *d,
                attributes,
            },
            Reply::Bool(b) => Frame3::Boolean {
                data: *b,
                attributes,
            },
            Reply::Verbatim(s) => Frame3::VerbatimString {
                data: Bytes::from(s.clone()),
                format: VerbatimStringFormat::Text,
                attributes,
            },
        }
    }
}

/// Simple strings and errors cannot hold CR or LF; Redis replaces them.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Formats a double the way Redis prints INCRBYFLOAT results: fixed point,
/// no exponent, trailing zeros trimmed, `inf`/`-inf`. Redis computes in
/// `long double` and prints 17 digits, which hides binary rounding noise
/// (0.1 + 0.2 prints as 0.3); rounding to 15 significant digits first gives
/// the same text for everyday decimal arithmetic with an `f64`.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let rounded: f64 = format!("{d:.14e}").parse().unwrap_or(d);
    format!("{rounded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(reply: Reply, protocol: Protocol) -> Vec<u8> {
        let mut buf = BytesMut::new();
        reply.encode(protocol, &mut buf);
        buf.to_vec()
    }

    #[test]
    fn resp2_and_resp3_shapes() {
        assert_eq!(enc(Reply::Ok, Protocol::Resp2), b"+OK\r\n");
        assert_eq!(enc(Reply::Nil, Protocol::Resp2), b"$-1\r\n");
        assert_eq!(enc(Reply::NilArray, Protocol::Resp2), b"*-1\r\n");
        assert_eq!(enc(Reply::Nil, Protocol::Resp3), b"_\r\n");
        assert_eq!(enc(Reply::Bool(true), Protocol::Resp2), b":1\r\n");
        let map = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        assert_eq!(
            enc(map.clone(), Protocol::Resp2),
            b"*2\r\n$1\r\na\r\n:1\r\n"
        );
        assert_eq!(enc(map, Protocol::Resp3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(Reply::err("x\r\ny"), Protocol::Resp2), b"-ERR x  y\r\n");
    }

    #[test]
    fn doubles_print_like_redis() {
        assert_eq!(format_double(10.5), "10.5");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(0.1 + 0.2), "0.3");
        assert_eq!(format_double(1.1 + 2.2), "3.3");
        assert_eq!(format_double(1e20), "100000000000000000000");
    }
}
