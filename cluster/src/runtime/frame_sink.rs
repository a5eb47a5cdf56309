//! The outgoing side of a peer connection: frames are encoded into one
//! buffer and written by whoever gets there first.
//!
//! - An *urgent* frame (a batch of writes to replicate) is written from the
//!   sending task itself when nothing is waiting before it: one `try_write`,
//!   no task switch. On a single-threaded node this matters: a writer task
//!   runs only after every task already queued (a coordinator working
//!   through fifty clients' pipelined batches), so the replicas would get
//!   the first batch only when the last one is done, and the coordinator,
//!   the replicas and the clients would take turns instead of working at
//!   once. A write costs a replica several times what the coordinator's
//!   share of it does, so starting it early pays for the extra syscall
//!   (SET -P 16 about +18%, benches/README.md).
//! - Any other frame (reads, whose replica work is short; answers) is left
//!   to the writer task, which first lets the tasks already woken run, so a
//!   burst of frames goes out in one write (GET -P 16 lost about 17% when
//!   reads were urgent too).
//!
//! What the socket does not take at once stays in the buffer, in order, and
//! the writer task writes it as the socket drains. All writes happen under
//! the buffer's lock, always from its front, so frames never interleave or
//! reorder. The buffer is bounded: a peer that stops reading while frames
//! keep coming (hung, or slower than the traffic for long) would otherwise
//! hold the node's memory without limit, so past `max_unwritten` bytes the
//! sink closes, as a dead link does: its calls fail (the quorum goes on
//! without that replica, and hints cover it) and the next call reconnects.

use std::{
    io,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::{net::tcp::OwnedWriteHalf, sync::Notify};
use tracing::warn;

use crate::wire::Frame;

/// An emptied buffer larger than this is given back (after a burst).
const KEEP_BUFFER_BYTES: usize = 256 * 1024;

/// Frames bound for one peer connection.
pub(super) struct FrameSink {
    socket: OwnedWriteHalf,
    state: Mutex<State>,
    wake: Notify,
    /// The most bytes left unwritten before the sink closes.
    max_unwritten: usize,
}

#[derive(Default)]
struct State {
    /// Encoded frames not yet written, oldest first.
    unwritten: Vec<u8>,
    closed: bool,
}

/// The connection is closed (or broke): the frame was not sent.
#[derive(Debug)]
pub(super) struct Closed;

impl FrameSink {
    /// A sink over `socket` and the writer task that drains it; the task
    /// ends when the sink is closed (by [`FrameSink::close`], a failed
    /// write, or more than `max_unwritten` bytes waiting), then runs
    /// `on_close`.
    pub(super) fn start(
        socket: OwnedWriteHalf,
        max_unwritten: usize,
        on_close: impl FnOnce() + Send + 'static,
    ) -> Arc<FrameSink> {
        let sink = Arc::new(FrameSink {
            socket,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            max_unwritten,
        });
        let writer = sink.clone();
        tokio::spawn(async move {
            writer.run_writer().await;
            on_close();
        });
        sink
    }

    /// Queues `frame`, writing it at once if it is `urgent` and nothing is
    /// waiting before it.
    pub(super) fn send(&self, frame: &Frame, urgent: bool) -> Result<(), Closed> {
        let mut state = self.lock();
        if state.closed {
            return Err(Closed);
        }
        let idle = state.unwritten.is_empty();
        if let Err(error) = frame.encode_into(&mut state.unwritten) {
            warn!(%error, "could not encode a peer frame");
            return Ok(());
        }
        if state.unwritten.len() > self.max_unwritten {
            warn!(
                unwritten = state.unwritten.len(),
                peer = ?self.socket.peer_addr().ok(),
                "peer is not reading its frames; closing the link"
            );
            state.closed = true;
            state.unwritten = Vec::new();
            drop(state);
            self.wake.notify_one();
            return Err(Closed);
        }
        if !(urgent && idle) {
            drop(state);
            self.wake.notify_one();
            return Ok(());
        }
        match self.write_some(&mut state) {
            Ok(()) if state.unwritten.is_empty() => Ok(()),
            Ok(()) => {
                drop(state);
                self.wake.notify_one();
                Ok(())
            }
            Err(_) => {
                state.closed = true;
                drop(state);
                self.wake.notify_one();
                Err(Closed)
            }
        }
    }

    /// Closes the sink: nothing more is sent, the writer task ends.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// Whether the sink was closed (nothing sent on it gets out).
    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what the socket takes now from the front of the buffer.
    fn write_some(&self, state: &mut State) -> io::Result<()> {
        match self.socket.try_write(&state.unwritten) {
            Ok(written) => {
                state.unwritten.drain(..written);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn run_writer(&self) {
        loop {
            self.wake.notified().await;
            // Let the tasks that are ready run first: their frames join this
            // write instead of each costing a syscall of its own.
            tokio::task::yield_now().await;
            loop {
                {
                    let mut state = self.lock();
                    if state.closed {
                        return;
                    }
                    if state.unwritten.is_empty() {
                        break;
                    }
                    if self.write_some(&mut state).is_err() {
                        state.closed = true;
                        return;
                    }
                    if state.unwritten.is_empty() {
                        if state.unwritten.capacity() > KEEP_BUFFER_BYTES {
                            state.unwritten = Vec::new();
                        }
                        break;
                    }
                }
                // Until the socket takes more, or a close (a peer that stopped
                // reading must not keep this task and its socket forever).
                tokio::select! {
                    writable = self.socket.writable() => {
                        if writable.is_err() {
                            self.lock().closed = true;
                            return;
                        }
                    }
                    () = self.wake.notified() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicBool, Ordering},
        time::Duration,
    };

    use bytes::Bytes;
    use futures_util::StreamExt;
    use tokio::net::{tcp::OwnedReadHalf, TcpListener, TcpStream};
    use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

    use super::*;
    use crate::wire::Request;

    fn frame(id: u64) -> Frame {
        Frame::Request {
            id,
            body: Request::ReadBatch {
                keys: vec![Bytes::from(vec![id as u8; 60_000])],
            },
        }
    }

    /// A sink (of at most `max_unwritten` bytes waiting) on the client end
    /// of a loopback connection, the flag its writer task sets when it
    /// ends, the server end, and the client's read half (kept open).
    async fn connected(
        max_unwritten: usize,
    ) -> (Arc<FrameSink>, Arc<AtomicBool>, TcpStream, OwnedReadHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (read_half, write_half) = client.into_split();
        let ended = Arc::new(AtomicBool::new(false));
        let on_close = ended.clone();
        let sink = FrameSink::start(write_half, max_unwritten, move || {
            on_close.store(true, Ordering::SeqCst)
        });
        (sink, ended, server, read_half)
    }

    /// Whether `ended` is set within two seconds.
    async fn ended_soon(ended: &AtomicBool) -> bool {
        for _ in 0..200 {
            if ended.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_while_the_socket_is_full() {
        let (sink, ended, server, _client_read) = connected(usize::MAX).await;
        // 12 MB: far more than the socket takes, so most frames wait in the
        // sink, urgent ones (written in place when nothing waits) included.
        const FRAMES: u64 = 200;
        for id in 0..FRAMES {
            sink.send(&frame(id), id % 3 == 0).unwrap();
        }
        let mut reader = FramedRead::new(server, LengthDelimitedCodec::new());
        for expected in 0..FRAMES {
            let next = tokio::time::timeout(Duration::from_secs(10), reader.next());
            let bytes = next.await.expect("frame lost").unwrap().unwrap();
            match Frame::decode(&bytes).unwrap() {
                Frame::Request {
                    id,
                    body: Request::ReadBatch { keys },
                } => {
                    assert_eq!(id, expected);
                    assert_eq!(keys.len(), 1);
                    assert_eq!(keys[0].len(), 60_000);
                    assert!(keys[0].iter().all(|b| *b == expected as u8));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Closed: nothing more is sent, and the writer task has ended.
        sink.close();
        assert!(sink.send(&frame(FRAMES), true).is_err());
        assert!(ended_soon(&ended).await, "the writer task ended");
    }

    #[tokio::test]
    async fn closing_ends_a_writer_whose_peer_stopped_reading() {
        let (sink, ended, _server, _client_read) = connected(usize::MAX).await; // never read
        for id in 0..200 {
            sink.send(&frame(id), false).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !ended.load(Ordering::SeqCst),
            "still waiting for the socket"
        );
        sink.close();
        assert!(ended_soon(&ended).await, "the writer task ended");
    }

    #[tokio::test]
    async fn a_peer_that_goes_away_closes_the_sink() {
        let (sink, _, server, _client_read) = connected(usize::MAX).await;
        drop(server);
        // The first writes may still be taken by the kernel; a reset peer
        // fails one of the next ones, and then every send.
        let mut failed = false;
        for id in 0..200 {
            if sink.send(&frame(id), true).is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(failed, "sends to a closed peer fail");
        assert!(sink.send(&frame(0), false).is_err());
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_cannot_grow_the_buffer_past_its_bound() {
        const BOUND: usize = 4 << 20;
        // The server end is never read. With 60 KB frames the socket takes
        // a few MB, then the buffer fills up to the bound and the next frame
        // closes the sink.
        let (sink, ended, _server, _client_read) = connected(BOUND).await;
        let mut sent = 0u64;
        while sink.send(&frame(sent), sent.is_multiple_of(2)).is_ok() {
            sent += 1;
            assert!(sent < 10_000, "the bound never closed the sink");
        }
        assert!(
            sent > (BOUND / 60_000) as u64,
            "closed after {sent} frames, before the bound"
        );
        assert!(sink.is_closed());
        assert!(sink.lock().unwritten.capacity() <= KEEP_BUFFER_BYTES);
        assert!(sink.send(&frame(0), false).is_err());
        assert!(ended_soon(&ended).await, "the writer task ended");
    }
}
