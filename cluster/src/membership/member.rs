//! One node's entry in the membership state.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::version::NodeId;

/// Where a node stands in the cluster. The order matters: at equal entry
/// versions the greater status wins a merge, so `Removed` beats `Active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Serving and owning partitions in proportion to its weight.
    Active,
    /// On its way out: the next ring leaves it out; it keeps serving until
    /// that ring is in force, then hands off what it holds and marks itself
    /// `Removed`.
    Leaving,
    /// Gone for good; the entry stays as a tombstone so stale gossip cannot
    /// bring the node back.
    Removed,
}

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's id (also its key in the member map).
    pub id: NodeId,
    /// `host:port` other nodes reach it on.
    pub peer_addr: String,
    /// `host:port` clients reach it on (for redirects and `CLUSTER` replies).
    pub client_addr: String,
    /// Relative capacity: partitions are shared in proportion to weights.
    /// Zero means the node owns nothing (it may still coordinate requests).
    pub weight: u32,
    /// Where the node stands.
    pub status: MemberStatus,
    /// Bumped by every change to the entry; the higher version wins a merge.
    pub version: u64,
}

impl Member {
    /// A new `Active` entry at version 1.
    pub fn new(id: NodeId, peer_addr: &str, client_addr: &str, weight: u32) -> Member {
        Member {
            id,
            peer_addr: peer_addr.to_owned(),
            client_addr: client_addr.to_owned(),
            weight,
            status: MemberStatus::Active,
            version: 1,
        }
    }

    /// Whether the node gets partitions: `Active` with a non-zero weight.
    pub fn in_ring(&self) -> bool {
        self.status == MemberStatus::Active && self.weight > 0
    }

    /// The total order merge uses between two entries of one node: version,
    /// then status, weight, peer and client address; the greater wins.
    /// `Equal` only for identical entries (of the same id).
    pub fn precedence(&self, other: &Member) -> Ordering {
        (
            self.version,
            self.status,
            self.weight,
            &self.peer_addr,
            &self.client_addr,
        )
            .cmp(&(
                other.version,
                other.status,
                other.weight,
                &other.peer_addr,
                &other.client_addr,
            ))
    }
}
