//! A ring change in progress: the target ring and how far the cluster is in
//! moving to it (Dynamo section 4.9, with Garage's lesson on reads).
//!
//! # The idea
//!
//! A new ring is not used at once. The ring in force (the *current* ring)
//! keeps serving reads while the partitions' new replicas fetch their data;
//! writes go to the replicas of both rings, with W acknowledgements in each.
//! Three grow-only sets, gossiped with the state and merged by union, record
//! the progress:
//!
//! 1. `aware`: members that know the target and will no longer write to the
//!    current ring alone. A receiver starts fetching only once every member
//!    is aware, so no write made after its fetch can miss it.
//! 2. `synced`: `(partition, node)` pairs where a new replica of the
//!    partition fetched its data from enough old replicas. When every pair
//!    is synced, reads move to the target ring (writes still go to both).
//! 3. `reading`: members that read from the target ring. When every member
//!    does, the target becomes the current ring and the transition ends:
//!    nobody reads from the old replicas any more, so they may hand off and
//!    drop what they no longer own.
//!
//! Every step is decided from the gossiped state alone, so every node
//! decides the same.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ring::Ring;
use crate::version::NodeId;

/// The progress of moving from the current ring to `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The ring being moved to.
    pub target: Ring,
    /// Members that know `target` (they write to both rings).
    pub aware: BTreeSet<NodeId>,
    /// `(partition, node)`: a new replica of the partition holds its data.
    pub synced: BTreeSet<(u32, NodeId)>,
    /// Members that read from `target`.
    pub reading: BTreeSet<NodeId>,
}

/// Where a transition stands, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Waiting for every member to learn the target ring.
    Announced,
    /// New replicas are fetching their partitions.
    Syncing,
    /// Every partition is in place; members are moving their reads.
    SwitchingReads,
    /// Everyone reads from the target: it can become the current ring.
    Done,
}

impl Phase {
    /// A short name for STATUS and INFO.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Announced => "announced",
            Phase::Syncing => "syncing",
            Phase::SwitchingReads => "switching-reads",
            Phase::Done => "done",
        }
    }
}

/// One partition that must be fetched by a node that did not hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The partition.
    pub partition: u32,
    /// Its new replica.
    pub to: NodeId,
    /// Its replicas under the current ring (where the data is).
    pub from: Vec<NodeId>,
}

impl Transition {
    /// A transition to `target` with no progress.
    pub fn new(target: Ring) -> Transition {
        Transition {
            target,
            aware: BTreeSet::new(),
            synced: BTreeSet::new(),
            reading: BTreeSet::new(),
        }
    }

    /// Combines two views of transitions: the same target keeps the union
    /// of both progress sets; otherwise the greater target wins with its own.
    pub fn merge(&mut self, other: &Transition) -> bool {
        match other.target.precedence(&self.target) {
            std::cmp::Ordering::Greater => {
                *self = other.clone();
                true
            }
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                let before = (self.aware.len(), self.synced.len(), self.reading.len());
                self.aware.extend(other.aware.iter().copied());
                self.synced.extend(other.synced.iter().copied());
                self.reading.extend(other.reading.iter().copied());
                before != (self.aware.len(), self.synced.len(), self.reading.len())
            }
        }
    }
}

/// The first `n` distinct nodes of `partition`'s preference list in `ring`.
pub fn replicas_of(ring: &Ring, partition: usize, n: usize) -> Vec<NodeId> {
    if ring.is_empty() {
        return Vec::new();
    }
    ring.preference_list_n(ring.partition_start(partition), n)
}

/// Every partition's new replicas: nodes among its first `n` in `target`
/// that are not among its first `n` in `current`.
pub fn moves(current: &Ring, target: &Ring, n: usize) -> Vec<Move> {
    let mut out = Vec::new();
    for p in 0..target.q() {
        let from = replicas_of(current, p, n);
        for to in replicas_of(target, p, n) {
            if !from.contains(&to) {
                out.push(Move {
                    partition: p as u32,
                    to,
                    from: from.clone(),
                });
            }
        }
    }
    out
}
