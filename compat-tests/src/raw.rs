//! Raw TCP access: a minimal RESP2/RESP3 encoder and reader, for sending
//! bytes no client library would send.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::IO_TIMEOUT;

/// A reply read off a raw connection (RESP2 and RESP3 types).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+...`
    Simple(String),
    /// `-...` (without the `-`)
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n` (None for `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for `*-1`)
    Array(Option<Vec<Reply>>),
    /// `_`
    Null,
    /// `,`
    Double(String),
    /// `#t` / `#f`
    Bool(bool),
    /// `%n`
    Map(Vec<(Reply, Reply)>),
    /// `~n`
    Set(Vec<Reply>),
    /// `>n`
    Push(Vec<Reply>),
    /// `=n` (format included)
    Verbatim(Vec<u8>),
    /// `(`
    BigNumber(String),
    /// `!n` (RESP3 bulk error)
    BulkError(Vec<u8>),
}

impl Reply {
    /// Convenience: the error text if this is an error reply.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A raw TCP connection with a minimal RESP2/RESP3 reader.
pub struct RawConn {
    reader: BufReader<TcpStream>,
}

impl RawConn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> RawConn {
        RawConn {
            reader: BufReader::new(stream),
        }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.reader.get_ref();
        s.write_all(bytes)?;
        s.flush()
    }

    /// Sends a command as a RESP array and reads one reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        self.send(&encode_command(args)).expect("sending command");
        self.read_reply().expect("reading reply")
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line without CRLF: {:?}", String::from_utf8_lossy(&line)),
            ));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read_exact_crlf(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len + 2];
        self.reader.read_exact(&mut buf)?;
        if &buf[len..] != b"\r\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bulk without CRLF",
            ));
        }
        buf.truncate(len);
        Ok(buf)
    }

    /// Reads one complete reply.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        let line = self.read_line()?;
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what}: {:?}", String::from_utf8_lossy(&line)),
            )
        };
        let (&kind, rest) = line.split_first().ok_or_else(|| bad("empty line"))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        let num = || text.parse::<i64>().map_err(|_| bad("bad length"));
        Ok(match kind {
            b'+' => Reply::Simple(text),
            b'-' => Reply::Error(text),
            b':' => Reply::Int(num()?),
            b',' => Reply::Double(text),
            b'(' => Reply::BigNumber(text),
            b'_' => Reply::Null,
            b'#' => Reply::Bool(text == "t"),
            b'$' => match num()? {
                n if n < 0 => Reply::Bulk(None),
                n => Reply::Bulk(Some(self.read_exact_crlf(n as usize)?)),
            },
            b'=' => Reply::Verbatim(self.read_exact_crlf(num()? as usize)?),
            b'!' => Reply::BulkError(self.read_exact_crlf(num()? as usize)?),
            b'*' | b'~' | b'>' => {
                let n = num()?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let items = (0..n)
                        .map(|_| self.read_reply())
                        .collect::<io::Result<Vec<_>>>()?;
                    match kind {
                        b'*' => Reply::Array(Some(items)),
                        b'~' => Reply::Set(items),
                        _ => Reply::Push(items),
                    }
                }
            }
            b'%' | b'|' => {
                let n = num()?;
                let mut pairs = Vec::new();
                for _ in 0..n {
                    let k = self.read_reply()?;
                    let v = self.read_reply()?;
                    pairs.push((k, v));
                }
                if kind == b'|' {
                    // Attribute: skip it and return the reply it annotates.
                    return self.read_reply();
                }
                Reply::Map(pairs)
            }
            _ => return Err(bad("unknown reply type")),
        })
    }

    /// True if the server closes the connection (EOF or reset) within
    /// `timeout`, discarding anything else it sends meanwhile.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let _ = self
            .reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 4096];
        let closed = loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    if Instant::now() >= deadline {
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        let _ = self.reader.get_ref().set_read_timeout(Some(IO_TIMEOUT));
        closed
    }
}
