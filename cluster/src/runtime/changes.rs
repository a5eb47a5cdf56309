//! Operator changes to the membership (DYNAMO JOIN / LEAVE / REMOVE /
//! WEIGHT) and their previews (DYNAMO PLAN).
//!
//! A change is applied at once to this node's membership state and spreads
//! by gossip; the ring change it implies then runs as a transition
//! ([`crate::membership::Transition`]). `PLAN` shows the same computation on
//! a copy, changing nothing: the choice is "apply at once, preview on
//! demand" rather than a staged plan/commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::node::Node;
use super::transport::TransportError;
use crate::{
    membership::{moves, ClusterState, Member, MemberStatus},
    version::NodeId,
};

/// A membership change an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new node of this weight joins.
    Join(u32),
    /// The node leaves, handing its partitions over first.
    Leave(NodeId),
    /// The node is gone for good; its partitions are rebuilt elsewhere.
    Remove(NodeId),
    /// The node's weight becomes this.
    Weight(NodeId, u32),
}

/// Id shown for the not-yet-known node of a `PLAN JOIN`.
pub const NEW_NODE: NodeId = u64::MAX;

/// What a change would do to one node.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow {
    /// The node ([`NEW_NODE`] for the joining one).
    pub node: NodeId,
    /// Partitions it owns now.
    pub partitions_before: usize,
    /// Partitions it would own.
    pub partitions_after: usize,
    /// Partitions it would fetch as a new replica.
    pub replicas_in: usize,
    /// Partitions it would stop replicating.
    pub replicas_out: usize,
    /// Keys it would fetch (estimated from this node's keys per partition).
    pub estimated_keys_in: u64,
    /// Bytes it would fetch (same estimate).
    pub estimated_bytes_in: u64,
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// No such member.
    #[error("no member {0:016x} (DYNAMO MEMBERS lists them)")]
    UnknownNode(NodeId),
    /// The member was already removed.
    #[error("member {0:016x} was removed already")]
    AlreadyRemoved(NodeId),
    /// Nobody would own anything afterwards.
    #[error("the cluster would have no node with a weight left to own partitions")]
    NoOwnerLeft,
    /// A node cannot remove itself.
    #[error("a node cannot remove itself: use DYNAMO LEAVE")]
    RemoveSelf,
    /// Nothing to change.
    #[error("nothing to change")]
    NoChange,
}

/// Applies `change` to a copy of `state`, as the real change would.
fn changed(state: &ClusterState, change: Change) -> Result<ClusterState, ChangeError> {
    let mut next = state.clone();
    let done = match change {
        Change::Join(weight) => {
            next.upsert_member(Member::new(NEW_NODE, "", "", weight));
            true
        }
        Change::Leave(id) => {
            live_member(state, id)?;
            next.update_member(id, |m| m.status = MemberStatus::Leaving)
        }
        Change::Remove(id) => {
            live_member(state, id)?;
            next.update_member(id, |m| m.status = MemberStatus::Removed)
        }
        Change::Weight(id, weight) => {
            live_member(state, id)?;
            next.update_member(id, |m| m.weight = weight)
        }
    };
    if !done {
        return Err(ChangeError::NoChange);
    }
    if next.active_weights().is_empty() {
        return Err(ChangeError::NoOwnerLeft);
    }
    Ok(next)
}

fn live_member(state: &ClusterState, id: NodeId) -> Result<&Member, ChangeError> {
    match state.member(id) {
        None => Err(ChangeError::UnknownNode(id)),
        Some(m) if m.status == MemberStatus::Removed => Err(ChangeError::AlreadyRemoved(id)),
        Some(m) => Ok(m),
    }
}

impl Node {
    /// `DYNAMO JOIN addr`: a node that knows nobody else gives up its own
    /// ring (what it holds is handed to the owners once it is in), a node
    /// that left becomes active again, then it gossips with `addr`. Returns
    /// the members known afterwards.
    pub async fn join(self: &Arc<Self>, addr: &str) -> Result<usize, TransportError> {
        let me = self.id();
        let state = self.cluster_state();
        let alone = state.required_members().all(|id| id == me);
        let left = state
            .member(me)
            .is_some_and(|m| m.status != MemberStatus::Active);
        if left {
            // A node that left (or was removed) comes back with a newer
            // entry, which beats its tombstone everywhere.
            let weight = self.config().weight;
            self.change_state(|s| {
                s.update_member(me, |m| {
                    m.status = MemberStatus::Active;
                    m.weight = weight;
                })
            });
        } else if alone {
            self.change_state(|s| {
                s.prepare_join();
                true
            });
        }
        self.gossip_with_addr(addr).await
    }

    /// `DYNAMO LEAVE`, `REMOVE`, `WEIGHT`: applies the change here; gossip
    /// spreads it.
    pub fn apply(&self, change: Change) -> Result<(), ChangeError> {
        if change == Change::Remove(self.id()) {
            return Err(ChangeError::RemoveSelf);
        }
        let next = changed(&self.cluster_state(), change)?;
        let (id, entry) = match change {
            Change::Leave(id) | Change::Remove(id) | Change::Weight(id, _) => {
                (id, next.member(id).cloned().expect("checked"))
            }
            Change::Join(_) => return Err(ChangeError::NoChange),
        };
        self.change_state(|s| s.update_member(id, |m| *m = entry));
        Ok(())
    }

    /// `DYNAMO PLAN`: per node, what `change` would move, without making it.
    pub fn preview(&self, change: Change) -> Result<Vec<PlanRow>, ChangeError> {
        let state = self.cluster_state();
        let next = changed(&state, change)?;
        let before = state.ring();
        let after = next.destination();
        let n = self.config().n;
        let moved = moves(before, after, n);
        let lost = moves(after, before, n);
        // Keys and bytes per partition replica, from this node's own store.
        let held = (0..before.q())
            .filter(|&p| crate::membership::replicas_of(before, p, n).contains(&self.id()))
            .count()
            .max(1) as u64;
        let keys_per = self.replica().stored_keys() / held;
        let bytes_per = self.replica().engine().size_bytes() / held;
        let counts_before = before.partition_counts();
        let counts_after = after.partition_counts();
        let mut rows: BTreeMap<NodeId, PlanRow> = BTreeMap::new();
        let nodes = next
            .members()
            .values()
            .filter(|m| m.status != MemberStatus::Removed || before.contains(m.id))
            .map(|m| m.id);
        for node in nodes {
            let replicas_in = moved.iter().filter(|m| m.to == node).count();
            rows.insert(
                node,
                PlanRow {
                    node,
                    partitions_before: counts_before.get(&node).copied().unwrap_or(0),
                    partitions_after: counts_after.get(&node).copied().unwrap_or(0),
                    replicas_in,
                    replicas_out: lost.iter().filter(|m| m.to == node).count(),
                    estimated_keys_in: keys_per * replicas_in as u64,
                    estimated_bytes_in: bytes_per * replicas_in as u64,
                },
            );
        }
        Ok(rows.into_values().collect())
    }
}
