//! The whole gossiped state: cluster name, member map, ring.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Member, MembershipError};
use crate::ring::Ring;
use crate::version::NodeId;

/// First byte of [`ClusterState::encode`]; bump it when the layout changes.
const STATE_FORMAT: u8 = 1;

/// One node's view of the cluster: who is in it and who owns what.
///
/// Invariant (checked on deserialisation): every member is filed under its
/// own id. The ring is validated by [`Ring`]'s own deserialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ClusterStateWire")]
pub struct ClusterState {
    cluster_name: String,
    members: BTreeMap<NodeId, Member>,
    ring: Ring,
}

/// Unvalidated wire shape of [`ClusterState`] (same layout as its derive).
#[derive(Deserialize)]
struct ClusterStateWire {
    cluster_name: String,
    members: BTreeMap<NodeId, Member>,
    ring: Ring,
}

impl TryFrom<ClusterStateWire> for ClusterState {
    type Error = String;

    fn try_from(wire: ClusterStateWire) -> Result<Self, Self::Error> {
        if let Some((key, m)) = wire.members.iter().find(|(k, m)| **k != m.id) {
            return Err(format!("member {} filed under id {key}", m.id));
        }
        Ok(ClusterState {
            cluster_name: wire.cluster_name,
            members: wire.members,
            ring: wire.ring,
        })
    }
}

impl ClusterState {
    /// A node's first state: only itself, and a ring of `q` partitions all
    /// its own if it is active with a non-zero weight (an empty ring
    /// otherwise). Panics if `q` is not a power of two in
    /// `1..=ring::MAX_PARTITIONS`.
    pub fn new(cluster_name: &str, me: Member, q: usize) -> ClusterState {
        let mut state = ClusterState {
            cluster_name: cluster_name.to_owned(),
            members: BTreeMap::from([(me.id, me)]),
            ring: Ring::empty(q),
        };
        state.reconcile();
        state
    }

    /// The cluster's name; states of other clusters are never merged.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// Every node ever heard of, by id, tombstones included.
    pub fn members(&self) -> &BTreeMap<NodeId, Member> {
        &self.members
    }

    /// The entry of one node.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// The current ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// What the ring must be balanced for: `(id, weight)` of every member
    /// that is `Active` with a non-zero weight, sorted by id. `Leaving`
    /// members are left out like `Removed` ones (a graceful hand-over before
    /// they stop counting is a later change).
    pub fn active_weights(&self) -> Vec<(NodeId, u32)> {
        self.members
            .values()
            .filter(|m| m.in_ring())
            .map(|m| (m.id, m.weight))
            .collect()
    }

    /// Puts an entry in by the merge rule: it replaces the current entry of
    /// its id only if it wins ([`Member::precedence`]), so a caller making a
    /// change must set `version` to the current version + 1 (see
    /// [`ClusterState::update_member`], which does that). Reconciles the
    /// ring; returns whether the state changed.
    pub fn upsert_member(&mut self, member: Member) -> bool {
        let changed = self.merge_member(&member);
        self.reconcile() || changed
    }

    /// Changes the entry of `id` with `f` (which may not change the id or
    /// the version), bumps its version and reconciles the ring. Returns
    /// `false`, changing nothing, if there is no such member or `f` changed
    /// nothing.
    pub fn update_member(&mut self, id: NodeId, f: impl FnOnce(&mut Member)) -> bool {
        let Some(current) = self.members.get(&id) else {
            return false;
        };
        let mut next = current.clone();
        f(&mut next);
        next.id = id;
        next.version = current.version;
        if next == *current {
            return false;
        }
        next.version += 1;
        self.members.insert(id, next);
        self.reconcile();
        true
    }

    /// Merges a peer's state into this one: per member the winning entry,
    /// the winning ring (higher version, then [`Ring::precedence`]), then
    /// [`ClusterState::reconcile`]. Returns whether this state changed; a
    /// state of another cluster (by name) is ignored and gives `false`.
    pub fn merge(&mut self, other: &ClusterState) -> bool {
        if other.cluster_name != self.cluster_name {
            return false;
        }
        let mut changed = false;
        for member in other.members.values() {
            changed |= self.merge_member(member);
        }
        if other.ring.precedence(&self.ring) == Ordering::Greater {
            self.ring = other.ring.clone();
            changed = true;
        }
        self.reconcile() || changed
    }

    /// Rebalances the ring (version + 1) if it was not balanced for exactly
    /// [`ClusterState::active_weights`]; returns whether it did.
    pub fn reconcile(&mut self) -> bool {
        let weights = self.active_weights();
        if !self.ring.needs_rebalance(&weights) {
            return false;
        }
        self.ring = self.ring.rebalance(&weights);
        true
    }

    /// A 64-bit FNV-1a hash of [`ClusterState::encode`]: equal states have
    /// equal digests on every node, so peers and tests can compare views
    /// cheaply. Not a cryptographic hash.
    pub fn digest(&self) -> u64 {
        self.encode().iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// Wire and disk encoding: a format byte (currently 1) then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_FORMAT];
        // Serialising plain data into a Vec cannot fail.
        let body = postcard::to_stdvec(self).expect("postcard serialisation to a Vec");
        out.extend_from_slice(&body);
        out
    }

    /// Decodes [`ClusterState::encode`] output, rejecting unknown formats,
    /// garbage, truncation, trailing bytes and broken invariants (members
    /// under another id, malformed rings). Never panics. The result may
    /// still need [`ClusterState::reconcile`]; merging it does that.
    pub fn decode(bytes: &[u8]) -> Result<ClusterState, MembershipError> {
        let (&format, body) = bytes
            .split_first()
            .ok_or_else(|| MembershipError::Corrupt("empty cluster state".into()))?;
        if format != STATE_FORMAT {
            return Err(MembershipError::Corrupt(format!(
                "unknown cluster state format {format}"
            )));
        }
        let (state, rest) = postcard::take_from_bytes::<ClusterState>(body)
            .map_err(|e| MembershipError::Corrupt(format!("cluster state: {e}")))?;
        if !rest.is_empty() {
            return Err(MembershipError::Corrupt(format!(
                "{} trailing bytes after cluster state",
                rest.len()
            )));
        }
        Ok(state)
    }

    /// Takes `member` if it beats the entry of its id; returns whether it did.
    fn merge_member(&mut self, member: &Member) -> bool {
        match self.members.get(&member.id) {
            Some(current) if member.precedence(current) != Ordering::Greater => false,
            _ => {
                self.members.insert(member.id, member.clone());
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberStatus;

    fn state(id: NodeId) -> ClusterState {
        ClusterState::new("test", Member::new(id, "p", "c", 1), 16)
    }

    #[test]
    fn a_new_node_owns_the_whole_ring() {
        let s = state(7);
        assert_eq!(s.ring().version(), 1);
        assert_eq!(s.ring().owners(), &[7; 16]);
        let mut idle = Member::new(8, "p", "c", 0);
        let s = ClusterState::new("test", idle.clone(), 16);
        assert!(s.ring().is_empty());
        idle.status = MemberStatus::Leaving;
        assert!(ClusterState::new("test", idle, 16).ring().is_empty());
    }

    #[test]
    fn update_member_bumps_the_version_only_on_change() {
        let mut s = state(1);
        assert!(!s.update_member(1, |m| m.weight = 1));
        assert!(!s.update_member(2, |m| m.weight = 3));
        assert!(s.update_member(1, |m| {
            m.weight = 3;
            m.version = 100;
        }));
        assert_eq!(s.member(1).unwrap().version, 2);
        // The weight is part of what the ring was balanced for.
        assert_eq!(s.ring().version(), 2);
        assert!(s.update_member(1, |m| m.status = MemberStatus::Removed));
        assert!(s.ring().is_empty());
        assert_eq!(s.ring().version(), 3);
    }

    #[test]
    fn upsert_needs_a_winning_version() {
        let mut s = state(1);
        let mut stale = s.member(1).unwrap().clone();
        stale.peer_addr = "a".into(); // "a" < "p": loses the tie
        assert!(!s.upsert_member(stale.clone()));
        stale.version = 2;
        assert!(s.upsert_member(stale));
        assert_eq!(s.member(1).unwrap().peer_addr, "a");
        assert!(s.upsert_member(Member::new(2, "q", "d", 1)));
        assert_eq!(s.ring().members(), &[(1, 1), (2, 1)]);
    }

    #[test]
    fn other_clusters_are_not_merged() {
        let mut a = state(1);
        let before = a.clone();
        let other = ClusterState::new("other", Member::new(2, "p", "c", 1), 16);
        assert!(!a.merge(&other));
        assert_eq!(a, before);
    }
}
