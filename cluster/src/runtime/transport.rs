//! TCP transport for the peer protocol: a pool of outgoing links and the
//! peer-port listener.
//!
//! Each link to a peer address is one TCP connection shared by every request
//! to that peer: a writer task drains whatever frames are queued into one
//! write (so a burst of concurrent client requests costs one syscall per
//! batch, not per request), except that replication is written from the
//! caller's task when nothing waits before it (`frame_sink.rs`); a reader
//! task routes responses to their waiting callers by request id. A failed
//! connection fails its in-flight requests at once; new requests reconnect
//! with exponential backoff, failing fast in between so a dead peer never
//! makes a client wait for a TCP timeout.
//!
//! The listener side checks the handshake, then answers requests through a
//! [`PeerHandler`]: cheap ones (replica reads and merges) inline in the
//! reading task, so their answers batch the same way; slow ones on their own
//! task. Malformed, oversized or unexpected frames close the connection with a
//! log line.

use std::{
    collections::HashMap,
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use thiserror::Error;
use tokio::{
    io::AsyncWriteExt,
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::oneshot,
};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tracing::{debug, info, warn};

use super::frame_sink::FrameSink;
pub use crate::wire::secret::ClusterSecret;
use crate::{
    version::NodeId,
    wire::{
        secret::{self, Exchange, Side},
        Frame, Request, Response, MAX_HANDSHAKE_BYTES, PROTOCOL_VERSION,
    },
};

/// Why a request to a peer got no answer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The peer is in backoff after a failed connection.
    #[error("peer {0} is unreachable")]
    Unreachable(String),
    /// The connection broke before the answer came.
    #[error("connection to {0} lost")]
    Disconnected(String),
    /// No answer within the deadline.
    #[error("peer {0} timed out")]
    Timeout(String),
    /// The peer refused the handshake.
    #[error("peer {0} refused the connection: {1}")]
    Refused(String, String),
}

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How this node introduces itself on the peer protocol.
#[derive(Debug, Clone)]
pub struct Identity {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster name both sides must share.
    pub cluster_name: String,
    /// Largest frame accepted after the handshake.
    pub max_frame_bytes: usize,
    /// `cluster-secret`: peers must prove it on the handshake (none: only
    /// peers without one are accepted).
    pub secret: Option<ClusterSecret>,
    /// Address outgoing peer connections start from (the node's `bind`
    /// address when it is a specific one), so a peer, a firewall rule or a
    /// fault-injecting proxy sees which node is calling.
    pub source_ip: Option<std::net::IpAddr>,
}

/// The floor of a link's bound on frames not yet taken by its socket.
const MIN_UNWRITTEN_BYTES: usize = 128 << 20;

/// How many bytes a link may leave unwritten before it is closed as a peer
/// that stopped reading (frame_sink.rs): room for a couple of the largest
/// frames, and at least [`MIN_UNWRITTEN_BYTES`] (seconds of traffic).
fn max_unwritten(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_mul(2).max(MIN_UNWRITTEN_BYTES)
}

fn codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Response>>>;

/// One live connection to a peer.
struct Connection {
    outgoing: Arc<FrameSink>,
    pending: Pending,
    next_id: AtomicU64,
    alive: AtomicBool,
}

impl Connection {
    fn fail_all(&self) {
        self.alive.store(false, Ordering::Release);
        self.outgoing.close();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Removes a request's waiter when the call is abandoned.
struct PendingGuard<'a> {
    connection: &'a Connection,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.connection
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// The link to one peer address: the current connection and the backoff.
struct Link {
    addr: String,
    current: Mutex<Option<Arc<Connection>>>,
    connecting: tokio::sync::Mutex<()>,
    backoff: Mutex<(Option<Instant>, Duration)>,
}

/// Outgoing connections to peers, keyed by address.
pub struct PeerPool {
    identity: Identity,
    links: Mutex<HashMap<String, Arc<Link>>>,
}

impl PeerPool {
    /// A pool that introduces itself as `identity`.
    pub fn new(identity: Identity) -> PeerPool {
        PeerPool {
            identity,
            links: Mutex::new(HashMap::new()),
        }
    }

    fn link(&self, addr: &str) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = links.get(addr) {
            return link.clone();
        }
        links
            .entry(addr.to_string())
            .or_insert_with(|| {
                Arc::new(Link {
                    addr: addr.to_string(),
                    current: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                    backoff: Mutex::new((None, BACKOFF_MIN)),
                })
            })
            .clone()
    }

    /// Sends `request` to the peer at `addr` and waits up to `timeout` for
    /// the answer.
    pub async fn call(
        &self,
        addr: &str,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.call_unbounded(addr, request)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(addr.to_string())),
        }
    }

    /// Like [`PeerPool::call`] without a deadline of its own, for callers
    /// that already bound the whole exchange (a quorum's deadline covers all
    /// its calls with one timer). Connecting is still bounded.
    pub async fn call_unbounded(
        &self,
        addr: &str,
        request: Request,
    ) -> Result<Response, TransportError> {
        let link = self.link(addr);
        let connection = self.connection(&link).await?;
        let id = connection.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        connection
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        // Replication starts at once (see frame_sink.rs).
        let urgent = matches!(request, Request::Merge { .. } | Request::MergeBatch { .. });
        if connection
            .outgoing
            .send(&Frame::Request { id, body: request }, urgent)
            .is_err()
        {
            connection.fail_all();
            return Err(TransportError::Disconnected(addr.to_string()));
        }
        // If this future is dropped (its caller's deadline passed), the
        // waiter is removed so the pending map does not grow.
        let guard = PendingGuard {
            connection: &connection,
            id,
        };
        let result = rx
            .await
            .map_err(|_| TransportError::Disconnected(addr.to_string()));
        std::mem::forget(guard);
        result
    }

    async fn connection(&self, link: &Arc<Link>) -> Result<Arc<Connection>, TransportError> {
        if let Some(c) = link.live() {
            return Ok(c);
        }
        let _connecting = link.connecting.lock().await;
        if let Some(c) = link.live() {
            return Ok(c);
        }
        {
            let backoff = link.backoff.lock().unwrap_or_else(|p| p.into_inner());
            if backoff.0.is_some_and(|retry_at| Instant::now() < retry_at) {
                return Err(TransportError::Unreachable(link.addr.clone()));
            }
        }
        match connect(&link.addr, &self.identity).await {
            Ok(connection) => {
                *link.backoff.lock().unwrap_or_else(|p| p.into_inner()) = (None, BACKOFF_MIN);
                *link.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection.clone());
                Ok(connection)
            }
            Err(error) => {
                let mut backoff = link.backoff.lock().unwrap_or_else(|p| p.into_inner());
                let delay = backoff.1;
                *backoff = (Some(Instant::now() + delay), (delay * 2).min(BACKOFF_MAX));
                debug!(peer = %link.addr, %error, retry_in_ms = delay.as_millis() as u64, "peer connection failed");
                Err(error)
            }
        }
    }
}

impl Link {
    fn live(&self) -> Option<Arc<Connection>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .filter(|c| c.alive.load(Ordering::Acquire))
            .cloned()
    }
}

async fn connect(addr: &str, identity: &Identity) -> Result<Arc<Connection>, TransportError> {
    let unreachable = |_| TransportError::Unreachable(addr.to_string());
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, open_stream(addr, identity.source_ip))
        .await
        .map_err(|_| TransportError::Timeout(addr.to_string()))?
        .map_err(unreachable)?;
    stream.set_nodelay(true).map_err(unreachable)?;
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = FramedRead::new(read_half, codec(MAX_HANDSHAKE_BYTES));
    let refused = |reason: String| {
        warn!(peer = %addr, %reason, "peer handshake failed");
        TransportError::Refused(addr.to_string(), reason)
    };
    let my_nonce = secret::nonce();
    send_frame(
        &mut write_half,
        Frame::Hello {
            protocol: PROTOCOL_VERSION,
            cluster_name: identity.cluster_name.clone(),
            node_id: identity.node_id,
            nonce: my_nonce,
        },
    )
    .await
    .map_err(unreachable)?;
    let (peer_id, exchange, their_proof) = match next_frame(&mut reader, addr).await? {
        Frame::Challenge {
            node_id,
            nonce,
            proof,
        } => (
            node_id,
            Exchange {
                connecting: (identity.node_id, my_nonce),
                accepting: (node_id, nonce),
            },
            proof,
        ),
        Frame::Refused { reason } => return Err(refused(reason)),
        _ => return Err(TransportError::Disconnected(addr.to_string())),
    };
    // A node with the secret talks only to nodes that prove it too.
    if let Some(secret) = &identity.secret {
        let proven = their_proof.is_some_and(|p| secret.verify(Side::Accepting, &exchange, &p));
        if !proven {
            return Err(refused(
                "the peer did not prove this cluster's cluster-secret".into(),
            ));
        }
    }
    let proof = identity
        .secret
        .as_ref()
        .map(|secret| secret.prove(Side::Connecting, &exchange));
    send_frame(&mut write_half, Frame::Prove { proof })
        .await
        .map_err(unreachable)?;
    match next_frame(&mut reader, addr).await? {
        Frame::Welcome => {
            debug!(peer = %addr, peer_id = format!("{peer_id:016x}"), "peer connected");
        }
        Frame::Refused { reason } => return Err(refused(reason)),
        _ => return Err(TransportError::Disconnected(addr.to_string())),
    }
    reader
        .decoder_mut()
        .set_max_frame_length(identity.max_frame_bytes);
    let connection = Arc::new_cyclic(|this: &std::sync::Weak<Connection>| {
        let this = this.clone();
        Connection {
            outgoing: FrameSink::start(
                write_half,
                max_unwritten(identity.max_frame_bytes),
                move || {
                    if let Some(connection) = this.upgrade() {
                        connection.fail_all();
                    }
                },
            ),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
        }
    });
    tokio::spawn(read_responses(reader, connection.clone(), addr.to_string()));
    Ok(connection)
}

/// The accepting side of the handshake: checks the version and cluster
/// name, proves the secret, checks the peer's proof. Returns the peer's id,
/// or `None` after refusing it.
async fn accept_handshake(
    reader: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    write_half: &mut OwnedWriteHalf,
    identity: &Identity,
    remote: std::net::SocketAddr,
) -> io::Result<Option<NodeId>> {
    let addr = remote.to_string();
    let Ok(Frame::Hello {
        protocol,
        cluster_name,
        node_id,
        nonce,
    }) = next_frame(reader, &addr).await
    else {
        warn!(%remote, "peer connection without a valid handshake; closing");
        return Ok(None);
    };
    let refusal = if protocol != PROTOCOL_VERSION {
        Some(format!(
            "protocol version {protocol}, this node speaks {PROTOCOL_VERSION}"
        ))
    } else if cluster_name != identity.cluster_name {
        Some(format!(
            "cluster name {cluster_name:?}, this node is in {:?}",
            identity.cluster_name
        ))
    } else {
        None
    };
    if let Some(reason) = refusal {
        return refuse(write_half, remote, reason).await;
    }
    let exchange = Exchange {
        connecting: (node_id, nonce),
        accepting: (identity.node_id, secret::nonce()),
    };
    let proof = identity
        .secret
        .as_ref()
        .map(|secret| secret.prove(Side::Accepting, &exchange));
    send_frame(
        write_half,
        Frame::Challenge {
            node_id: identity.node_id,
            nonce: exchange.accepting.1,
            proof,
        },
    )
    .await?;
    let their_proof = match next_frame(reader, &addr).await {
        Ok(Frame::Prove { proof }) => proof,
        // The connecting side gave up (it found our proof wrong, or we have
        // a secret and it has none).
        _ => {
            warn!(%remote, "peer left during the handshake (cluster-secret mismatch?)");
            return Ok(None);
        }
    };
    let refusal = match (&identity.secret, their_proof) {
        (None, None) => None,
        (Some(secret), Some(proof)) if secret.verify(Side::Connecting, &exchange, &proof) => None,
        (Some(_), Some(_)) => Some("wrong cluster-secret".to_string()),
        (Some(_), None) => Some("this cluster requires a cluster-secret".to_string()),
        (None, Some(_)) => Some(
            "this node has no cluster-secret and does not talk to nodes that have one".to_string(),
        ),
    };
    if let Some(reason) = refusal {
        return refuse(write_half, remote, reason).await;
    }
    send_frame(write_half, Frame::Welcome).await?;
    Ok(Some(node_id))
}

async fn refuse(
    write_half: &mut OwnedWriteHalf,
    remote: std::net::SocketAddr,
    reason: String,
) -> io::Result<Option<NodeId>> {
    warn!(%remote, %reason, "refusing peer");
    let _ = send_frame(write_half, Frame::Refused { reason }).await;
    Ok(None)
}

/// Connects to `addr`, from `source_ip` when given (and of the same family).
async fn open_stream(addr: &str, source_ip: Option<std::net::IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source_ip.filter(|ip| !ip.is_unspecified()) else {
        return TcpStream::connect(addr).await;
    };
    let target = tokio::net::lookup_host(addr)
        .await?
        .find(|a| a.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address of the bind family"))?;
    // A loopback source cannot reach another host (nor the reverse).
    if source.is_loopback() != target.ip().is_loopback() {
        return TcpStream::connect(target).await;
    }
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// Sends one handshake frame.
async fn send_frame(write_half: &mut OwnedWriteHalf, frame: Frame) -> io::Result<()> {
    let mut buf = Vec::new();
    frame
        .encode_into(&mut buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    write_half.write_all(&buf).await
}

/// Reads one handshake frame (within [`CONNECT_TIMEOUT`]).
async fn next_frame(
    reader: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    addr: &str,
) -> Result<Frame, TransportError> {
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, reader.next())
        .await
        .map_err(|_| TransportError::Timeout(addr.to_string()))?;
    match answer.map(|r| r.map(|bytes| Frame::decode(&bytes))) {
        Some(Ok(Ok(frame))) => Ok(frame),
        _ => Err(TransportError::Disconnected(addr.to_string())),
    }
}

/// Writes queued frames, batching whatever is ready into one write.
async fn read_responses(
    mut reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    connection: Arc<Connection>,
    addr: String,
) {
    while let Some(item) = reader.next().await {
        let frame = match item.map(|bytes| Frame::decode(&bytes)) {
            Ok(Ok(frame)) => frame,
            Ok(Err(error)) => {
                warn!(peer = %addr, %error, "malformed frame from peer; closing");
                break;
            }
            Err(error) => {
                warn!(peer = %addr, %error, "peer stream error; closing");
                break;
            }
        };
        let Frame::Response { id, body } = frame else {
            warn!(peer = %addr, "unexpected frame from peer; closing");
            break;
        };
        let waiter = connection
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(body);
        }
    }
    connection.fail_all();
}

/// A boxed future answering a slow request.
pub type LaterResponse = Pin<Box<dyn Future<Output = Response> + Send>>;

/// How a request is answered.
pub enum Handled {
    /// Answered already.
    Now(Response),
    /// Answered when the future completes (run on its own task).
    Later(LaterResponse),
}

/// Answers peer requests.
pub trait PeerHandler: Send + Sync + 'static {
    /// Handles one request from the peer `from`.
    fn handle(&self, from: NodeId, request: Request) -> Handled;
}

/// Accepts peer connections on `listener` until the process ends.
pub async fn serve(listener: TcpListener, identity: Identity, handler: Arc<dyn PeerHandler>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let identity = identity.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_connection(stream, &identity, handler).await {
                debug!(%remote, %error, "peer connection closed");
            }
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    identity: &Identity,
    handler: Arc<dyn PeerHandler>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let remote = stream.peer_addr()?;
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = FramedRead::new(read_half, codec(MAX_HANDSHAKE_BYTES));
    let Some(peer) = accept_handshake(&mut reader, &mut write_half, identity, remote).await? else {
        return Ok(());
    };
    reader
        .decoder_mut()
        .set_max_frame_length(identity.max_frame_bytes);
    info!(%remote, peer_id = format!("{peer:016x}"), "peer connected in");

    // Answers to a burst of requests go out together (see frame_sink.rs).
    let outgoing = FrameSink::start(write_half, max_unwritten(identity.max_frame_bytes), || {});
    while let Some(item) = reader.next().await {
        if outgoing.is_closed() {
            // The peer stopped reading its answers (or the socket broke):
            // its requests would be served for nobody.
            warn!(%remote, "peer link closed while serving it; closing");
            break;
        }
        let frame = match item.map(|bytes| Frame::decode(&bytes)) {
            Ok(Ok(frame)) => frame,
            Ok(Err(error)) => {
                warn!(%remote, %error, "malformed frame from peer; closing");
                break;
            }
            Err(error) => {
                warn!(%remote, %error, "peer stream error; closing");
                break;
            }
        };
        let Frame::Request { id, body } = frame else {
            warn!(%remote, "unexpected frame from peer; closing");
            break;
        };
        match handler.handle(peer, body) {
            Handled::Now(body) => {
                let _ = outgoing.send(&Frame::Response { id, body }, false);
            }
            Handled::Later(future) => {
                let outgoing = outgoing.clone();
                tokio::spawn(async move {
                    let body = future.await;
                    let _ = outgoing.send(&Frame::Response { id, body }, false);
                });
            }
        }
    }
    outgoing.close();
    Ok(())
}
