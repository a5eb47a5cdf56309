//! The only async part of the core: tokio tasks, timers and TCP.
//!
//! [`transport`] moves peer-protocol frames; [`node`] holds a node's view of
//! the cluster, answers peer requests and drives the quorum state machines of
//! [`crate::coordinator::fsm`] over the transport. Everything it decides with
//! comes from those state machines and from [`crate::membership`] and
//! [`crate::ring`], which are plain data.

pub mod antientropy;
pub mod budget;
pub mod changes;
mod coalesce;
pub mod driver;
mod frame_sink;
pub mod node;
pub mod tombstones;
pub mod trace;
pub mod transfer;
pub mod transport;

use std::sync::Arc;

pub use node::{ClusterConfig, Node, PeerReport, Plan, View};
use tokio::net::TcpListener;
pub use transport::{ClusterSecret, Identity, PeerPool, TransportError};

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts the peer listener, the hinted-handoff loop and the gossip loop of
/// `node`.
pub fn start(node: Arc<Node>, listener: TcpListener, identity: Identity) {
    let handler: Arc<dyn transport::PeerHandler> = Arc::new(node.clone());
    tokio::spawn(transport::serve(listener, identity, handler));
    tokio::spawn(node.clone().run_handoff());
    tokio::spawn(node.clone().run_anti_entropy());
    tokio::spawn(node.clone().run_tombstone_gc());
    tokio::spawn(node.clone().run_transitions());
    tokio::spawn(node.run_gossip());
}
