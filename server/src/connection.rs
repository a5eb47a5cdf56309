//! One client connection: read, frame, execute, reply.
//!
//! Requests are decoded from the read buffer as long as complete ones are
//! there; their replies are appended to one write buffer, which is written
//! once the buffer holds no further complete request. A pipelined batch is
//! therefore answered in order and with one write. A framing error is
//! answered with `-ERR Protocol error: ...` and closes the connection.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use resp::{FrameError, Reply, RequestDecoder};
use tokio::{io::AsyncWriteExt, net::TcpStream, sync::watch};
use tokio_util::codec::Decoder;
use tracing::debug;

use crate::{
    session::{Flow, Session},
    state::ServerState,
    stats::ServerStats,
};

const READ_CHUNK: usize = 16 * 1024;
/// Past this much pending output, replies are written before decoding more.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Most pipelined requests executed as one batch (bounds the work and the
/// memory one connection holds in flight).
const MAX_BATCH: usize = 1024;

/// Redis's answer (in substance) to a client protected mode turns away.
const PROTECTED_MODE_DENIED: &[u8] = b"-DENIED dynamo-server is running in protected mode: \
no password is set (requirepass) and it listens on a non-loopback address, so only \
loopback clients are accepted. Set requirepass (CONFIG SET requirepass ... from a \
loopback client, or in the config file), or bind to a loopback address, or turn \
protected mode off with protected-mode no if every client that can reach this \
port may read and write everything.\r\n";

/// Serves one client until it leaves, breaks the protocol or the server stops.
pub async fn serve(
    state: Arc<ServerState>,
    mut socket: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let config = state.config();
    if config.refuses(peer) {
        ServerStats::bump(&state.stats.rejected_connections);
        tracing::warn!(%peer, "refused a non-loopback client: protected mode and no requirepass");
        let _ = socket.write_all(PROTECTED_MODE_DENIED).await;
        return;
    }
    let local = socket.local_addr().unwrap_or(peer);
    let Some(client) = state.clients.register(peer, local, config.maxclients) else {
        ServerStats::bump(&state.stats.rejected_connections);
        let _ = socket
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    };
    let _ = socket.set_nodelay(true);
    let id = client.id;
    let mut session = Session::new(state.clone(), client.clone());
    let result = run(&state, &mut session, &mut socket, shutdown, config.timeout).await;
    if let Err(e) = result {
        debug!(client = id, "connection closed: {e}");
    }
    state.clients.unregister(id);
}

async fn run(
    state: &ServerState,
    session: &mut Session,
    socket: &mut TcpStream,
    mut shutdown: watch::Receiver<bool>,
    idle_timeout_secs: u64,
) -> Result<(), FrameError> {
    let mut decoder = RequestDecoder::new(state.decoder_limits());
    // Buffers are allocated when there is something to hold and given back
    // while the client is idle (see `read_more`).
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    loop {
        // Execute every complete request already buffered, as one batch.
        let mut batch = Vec::new();
        let mut broken = None;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(request)) if request.is_empty() => {}
                Ok(Some(request)) => {
                    batch.push(request);
                    if batch.len() >= MAX_BATCH {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    broken = Some(error);
                    break;
                }
            }
        }
        let more_buffered = batch.len() >= MAX_BATCH;
        for (reply, flow) in session.handle_batch(batch).await {
            if flow == Flow::CloseSilently {
                socket.write_all(&output).await?;
                return Ok(());
            }
            reply.encode(session.protocol, &mut output);
            if flow == Flow::Close {
                socket.write_all(&output).await?;
                return Ok(());
            }
            if output.len() >= WRITE_HIGH_WATER {
                socket.write_all(&output).await?;
                output.clear();
            }
        }
        if let Some(error) = broken {
            ServerStats::bump(&state.stats.protocol_errors);
            Reply::Error(format!("ERR {error}")).encode(session.protocol, &mut output);
            socket.write_all(&output).await?;
            return Err(error);
        }
        if more_buffered {
            continue;
        }
        if !output.is_empty() {
            socket.write_all(&output).await?;
            output.clear();
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        let read = tokio::select! {
            read = read_more(socket, &mut input, &mut output, idle_timeout_secs) => read?,
            _ = shutdown.changed() => return Ok(()),
        };
        if read == 0 {
            return Ok(());
        }
        session.touch();
    }
}

/// Reads what the client sent next. When nothing is waiting, the buffers
/// are released before sleeping, so an idle connection holds no buffer
/// memory (10k idle clients must not cost 10k x 32 KiB); a busy pipeline
/// keeps its buffers because data is already there.
async fn read_more(
    socket: &mut TcpStream,
    input: &mut BytesMut,
    output: &mut BytesMut,
    idle_timeout_secs: u64,
) -> Result<usize, FrameError> {
    loop {
        input.reserve(READ_CHUNK);
        match socket.try_read_buf(input) {
            Ok(read) => return Ok(read),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        if input.is_empty() {
            *input = BytesMut::new();
        }
        if output.is_empty() {
            *output = BytesMut::new();
        }
        if idle_timeout_secs == 0 {
            socket.readable().await?;
        } else {
            tokio::time::timeout(Duration::from_secs(idle_timeout_secs), socket.readable())
                .await
                .map_err(|_| FrameError::Io("idle timeout".into()))??;
        }
    }
}
