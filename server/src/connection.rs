//! One client connection: read, frame, execute, reply.
//!
//! Requests are decoded from the read buffer as long as complete ones are
//! there; their replies are appended to one write buffer, which is written
//! once the buffer holds no further complete request. A pipelined batch is
//! therefore answered in order and with one write. A framing error is
//! answered with `-ERR Protocol error: ...` and closes the connection.

use std::{net::SocketAddr, sync::Arc};

use bytes::BytesMut;
use resp::{FrameError, Reply, RequestDecoder};
use tokio::sync::watch;
use tokio_util::codec::Decoder;
use tracing::debug;

use crate::{
    client_socket::ClientSocket,
    session::{Flow, Session},
    state::ServerState,
    stats::ServerStats,
};

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
    mut socket: ClientSocket,
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
    let local = socket.tcp().local_addr().unwrap_or(peer);
    let Some(client) = state.clients.register(peer, local, config.maxclients) else {
        ServerStats::bump(&state.stats.rejected_connections);
        let _ = socket
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    };
    let _ = socket.tcp().set_nodelay(true);
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
    socket: &mut ClientSocket,
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
            read = socket.read_more(&mut input, &mut output, idle_timeout_secs) => read?,
            _ = shutdown.changed() => return Ok(()),
        };
        if read == 0 {
            return Ok(());
        }
        session.touch();
    }
}
