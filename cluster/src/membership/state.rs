//! The whole gossiped state: cluster name, member map, ring.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::transition::{moves, replicas_of, Move, Phase, Transition};
use super::{Member, MemberStatus, MembershipError};
use crate::ring::Ring;
use crate::version::NodeId;

/// First byte of [`ClusterState::encode`]; bump it when the layout changes.
const STATE_FORMAT: u8 = 2;
/// The format before transitions existed (still read).
const STATE_FORMAT_V1: u8 = 1;
/// Replicas per key assumed until the node sets its own (`n`).
const DEFAULT_REPLICAS: usize = 3;

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
    transition: Option<Transition>,
    /// Local setting, not gossiped: N, which decides each partition's
    /// replicas and so what a transition must move.
    #[serde(skip)]
    replicas: usize,
    /// Local, not gossiped: a node started to join a cluster owns nothing
    /// (and builds no ring of its own) until it has heard from that cluster.
    #[serde(skip)]
    awaiting_cluster: bool,
}

/// Unvalidated wire shape of [`ClusterState`] (same layout as its derive).
#[derive(Deserialize)]
struct ClusterStateWire {
    cluster_name: String,
    members: BTreeMap<NodeId, Member>,
    ring: Ring,
    transition: Option<Transition>,
}

/// The format-1 layout (no transition).
#[derive(Deserialize)]
struct ClusterStateWireV1 {
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
        if let Some(t) = &wire.transition {
            if t.target.q() != wire.ring.q() {
                return Err("transition target has another partition count".into());
            }
        }
        Ok(ClusterState {
            cluster_name: wire.cluster_name,
            members: wire.members,
            ring: wire.ring,
            transition: wire.transition,
            replicas: DEFAULT_REPLICAS,
            awaiting_cluster: false,
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
            transition: None,
            replicas: DEFAULT_REPLICAS,
            awaiting_cluster: false,
        };
        state.reconcile();
        state
    }

    /// The first state of a node that starts in order to join an existing
    /// cluster: only itself, an empty ring, and no ring of its own until a
    /// merge with a member of that cluster (see [`ClusterState::prepare_join`]).
    pub fn joining(cluster_name: &str, me: Member, q: usize) -> ClusterState {
        let mut state = ClusterState::new(cluster_name, me, q);
        state.prepare_join();
        state
    }

    /// Gives up this node's own ring before joining another cluster: the
    /// ring becomes empty (version 0, which any real ring supersedes) and
    /// stays so until a merge brings the cluster's. Data this node holds is
    /// then in partitions it does not own, and is handed to their owners.
    pub fn prepare_join(&mut self) {
        self.ring = Ring::empty(self.ring.q());
        self.transition = None;
        self.awaiting_cluster = true;
    }

    /// Whether this node is waiting to hear from the cluster it joins.
    pub fn is_awaiting_cluster(&self) -> bool {
        self.awaiting_cluster
    }

    /// Sets N, the replicas per key this node uses (default 3). Transitions
    /// move a partition to each node that becomes one of its first N.
    pub fn set_replicas(&mut self, n: usize) {
        self.replicas = n.max(1);
        self.reconcile();
    }

    /// N as set by [`ClusterState::set_replicas`].
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The ring change in progress, if any.
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }

    /// Members whose progress a transition waits for: all but removed ones.
    pub fn required_members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .values()
            .filter(|m| m.status != MemberStatus::Removed)
            .map(|m| m.id)
    }

    /// Where the transition in progress stands (`None`: the ring is settled).
    pub fn phase(&self) -> Option<Phase> {
        let t = self.transition.as_ref()?;
        let mut required = self.required_members();
        Some(if !required.all(|m| t.aware.contains(&m)) {
            Phase::Announced
        } else if self.pending_moves().next().is_some() {
            Phase::Syncing
        } else if !self.required_members().all(|m| t.reading.contains(&m)) {
            Phase::SwitchingReads
        } else {
            Phase::Done
        })
    }

    /// Who the transition in progress waits for in its current phase:
    /// members not yet aware, new replicas still fetching (node and number
    /// of partitions), or members not yet reading from the target.
    pub fn waiting_for(&self) -> Vec<(NodeId, usize)> {
        let Some(t) = &self.transition else {
            return Vec::new();
        };
        let missing = |set: &std::collections::BTreeSet<NodeId>| {
            self.required_members()
                .filter(|m| !set.contains(m))
                .map(|m| (m, 0))
                .collect()
        };
        match self.phase() {
            Some(Phase::Announced) => missing(&t.aware),
            Some(Phase::Syncing) => {
                let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
                for m in self.pending_moves() {
                    *per_node.entry(m.to).or_default() += 1;
                }
                per_node.into_iter().collect()
            }
            Some(Phase::SwitchingReads) => missing(&t.reading),
            _ => Vec::new(),
        }
    }

    /// Every partition move of the transition in progress.
    pub fn moves(&self) -> Vec<Move> {
        match &self.transition {
            Some(t) => moves(&self.ring, &t.target, self.replicas),
            None => Vec::new(),
        }
    }

    /// The moves not yet synced.
    pub fn pending_moves(&self) -> impl Iterator<Item = Move> + '_ {
        let synced = self.transition.as_ref().map(|t| &t.synced);
        self.moves()
            .into_iter()
            .filter(move |m| synced.is_some_and(|s| !s.contains(&(m.partition, m.to))))
    }

    /// The ring reads use: the target once every partition is in place,
    /// else the current ring.
    pub fn read_ring(&self) -> &Ring {
        match (&self.transition, self.phase()) {
            (Some(t), Some(phase)) if phase >= Phase::SwitchingReads => &t.target,
            _ => &self.ring,
        }
    }

    /// The ring the cluster is moving to: the transition's target, or the
    /// current ring when none is in progress. It is always balanced for
    /// [`ClusterState::active_weights`] (unless awaiting a cluster).
    pub fn destination(&self) -> &Ring {
        self.write_target().unwrap_or(&self.ring)
    }

    /// The target ring writes also go to during a transition.
    pub fn write_target(&self) -> Option<&Ring> {
        self.transition.as_ref().map(|t| &t.target)
    }

    /// Records that `node` knows the target ring. Returns whether it changed.
    pub fn note_aware(&mut self, node: NodeId) -> bool {
        self.note(|t| t.aware.insert(node))
    }

    /// Records that `node` holds `partition` of the target ring.
    pub fn note_synced(&mut self, partition: u32, node: NodeId) -> bool {
        self.note(|t| t.synced.insert((partition, node)))
    }

    /// Records that `node` reads from the target ring.
    pub fn note_reading(&mut self, node: NodeId) -> bool {
        self.note(|t| t.reading.insert(node))
    }

    fn note(&mut self, f: impl FnOnce(&mut Transition) -> bool) -> bool {
        let changed = self.transition.as_mut().is_some_and(f);
        changed | self.reconcile()
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
        let before = self.clone();
        for member in other.members.values() {
            self.merge_member(member);
        }
        if self.awaiting_cluster && (!other.ring.is_empty() || other.transition.is_some()) {
            self.awaiting_cluster = false;
        }
        if other.ring.precedence(&self.ring) == Ordering::Greater {
            self.ring = other.ring.clone();
        }
        if let Some(theirs) = &other.transition {
            // A transition the (merged) ring already passed is over.
            if theirs.target.precedence(&self.ring) == Ordering::Greater {
                match &mut self.transition {
                    Some(mine) => {
                        mine.merge(theirs);
                    }
                    None => self.transition = Some(theirs.clone()),
                }
            }
        }
        self.reconcile();
        *self != before
    }

    /// Brings the ring in line with [`ClusterState::active_weights`] and
    /// moves the transition along; returns whether anything changed.
    ///
    /// A transition whose target is not newer than the current ring is over.
    /// If the members changed, the new assignment is the target's (or, with
    /// no transition, the ring's) rebalance, version + 1: it becomes the
    /// current ring at once when nothing has to move (an empty ring, or no
    /// partition gains a replica), else the target of a fresh transition,
    /// which keeps only the synced pairs still valid (the node is still a new
    /// replica of the partition, and so has received every write since).
    /// A transition that is done makes its target the current ring.
    pub fn reconcile(&mut self) -> bool {
        if self.awaiting_cluster {
            return false;
        }
        let mut changed = false;
        if self
            .transition
            .as_ref()
            .is_some_and(|t| t.target.precedence(&self.ring) != Ordering::Greater)
        {
            self.transition = None;
            changed = true;
        }
        let weights = self.active_weights();
        let base = self.transition.as_ref().map_or(&self.ring, |t| &t.target);
        if base.needs_rebalance(&weights) {
            let next = base.rebalance(&weights);
            if self.ring.is_empty()
                || next.is_empty()
                || moves(&self.ring, &next, self.replicas).is_empty()
            {
                self.ring = next;
                self.transition = None;
            } else {
                let mut fresh = Transition::new(next);
                if let Some(old) = &self.transition {
                    fresh.synced = old
                        .synced
                        .iter()
                        .copied()
                        .filter(|&(p, node)| {
                            let p = p as usize;
                            p < fresh.target.q()
                                && replicas_of(&fresh.target, p, self.replicas).contains(&node)
                                && !replicas_of(&self.ring, p, self.replicas).contains(&node)
                        })
                        .collect();
                }
                self.transition = Some(fresh);
            }
            changed = true;
        }
        if self.phase() == Some(Phase::Done) {
            let t = self.transition.take().expect("a phase means a transition");
            self.ring = t.target;
            changed = true;
        }
        changed
    }

    /// A 64-bit FNV-1a hash of [`ClusterState::encode`]: equal states have
    /// equal digests on every node, so peers and tests can compare views
    /// cheaply. Not a cryptographic hash.
    pub fn digest(&self) -> u64 {
        self.encode().iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// Wire and disk encoding: a format byte (currently 2) then postcard.
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
        let (state, rest) = match format {
            STATE_FORMAT => postcard::take_from_bytes::<ClusterState>(body),
            STATE_FORMAT_V1 => {
                postcard::take_from_bytes::<ClusterStateWireV1>(body).and_then(|(v1, rest)| {
                    let wire = ClusterStateWire {
                        cluster_name: v1.cluster_name,
                        members: v1.members,
                        ring: v1.ring,
                        transition: None,
                    };
                    ClusterState::try_from(wire)
                        .map(|s| (s, rest))
                        .map_err(|_| postcard::Error::DeserializeBadEncoding)
                })
            }
            _ => {
                return Err(MembershipError::Corrupt(format!(
                    "unknown cluster state format {format}"
                )))
            }
        }
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
        // Node 1 owns everything: node 2's partitions move to it first.
        assert_eq!(s.ring().members(), &[(1, 1)]);
        let target = &s.transition().expect("a transition").target;
        assert_eq!(target.members(), &[(1, 1), (2, 1)]);
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
