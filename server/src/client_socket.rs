//! A client's byte stream: plain TCP on `port`, TLS on `tls-port`.

use std::{task::Poll, time::Duration};

use bytes::BytesMut;
use resp::FrameError;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::server::TlsStream;

const READ_CHUNK: usize = 16 * 1024;

/// Either kind of client connection.
pub enum ClientSocket {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the session state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientSocket {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientSocket::Plain(socket) => socket,
            ClientSocket::Tls(stream) => stream.get_ref().0,
        }
    }

    /// Writes all of `bytes` (and, for TLS, the records they make).
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            ClientSocket::Plain(socket) => socket.write_all(bytes).await,
            ClientSocket::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
        }
    }

    /// Reads what the client sent next into `input`; 0 at end of stream.
    ///
    /// On plain TCP, when nothing is waiting the buffers are released before
    /// sleeping, so an idle connection holds no buffer memory (10k idle
    /// clients must not cost 10k x 32 KiB); a busy pipeline keeps its buffers
    /// because data is already there. A TLS connection keeps its read buffer
    /// (rustls holds its own record buffers anyway).
    pub async fn read_more(
        &mut self,
        input: &mut BytesMut,
        output: &mut BytesMut,
        idle_timeout_secs: u64,
    ) -> Result<usize, FrameError> {
        let idle = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
        match self {
            ClientSocket::Plain(socket) => loop {
                input.reserve(READ_CHUNK);
                // Through `AsyncRead` rather than `try_read_buf`: a read that
                // does not fill the buffer marks the socket drained, so the
                // next call waits for readiness instead of paying a `recv`
                // that fails with EAGAIN (one syscall per request fewer
                // without pipelining).
                if let Some(read) = poll_once(socket.read_buf(input)).await {
                    return Ok(read?);
                }
                if input.is_empty() {
                    *input = BytesMut::new();
                }
                if output.is_empty() {
                    *output = BytesMut::new();
                }
                within(idle(idle_timeout_secs), socket.readable()).await?;
            },
            ClientSocket::Tls(stream) => {
                if output.is_empty() {
                    *output = BytesMut::new();
                }
                input.reserve(READ_CHUNK);
                within(idle(idle_timeout_secs), stream.read_buf(input)).await
            }
        }
    }
}

/// Polls `future` once: its output if it is ready, `None` if it would wait.
async fn poll_once<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Runs `io`, failing with "idle timeout" once `limit` has passed.
async fn within<T>(
    limit: Option<Duration>,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, FrameError> {
    match limit {
        None => Ok(io.await?),
        Some(limit) => Ok(tokio::time::timeout(limit, io)
            .await
            .map_err(|_| FrameError::Io("idle timeout".into()))??),
    }
}
