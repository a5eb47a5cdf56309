//! The ring: which node owns which part of the key space (Dynamo sections
//! 4.2, 4.3 and 6.2, partitioning strategy 3).
//!
//! # The idea
//!
//! Every key has a 64-bit position (the first 8 bytes of its MD5 digest, see
//! [`crate::keyspace::ring_position`]). Instead of giving every node random
//! tokens (strategy 1 of the paper), the position space is cut into `Q` equal
//! partitions, `Q` a power of two fixed for the life of the cluster, and each
//! partition is owned by exactly one node. The whole placement is therefore a
//! small table, partition -> owner, that is gossiped as one value: every node
//! that holds the same table routes every key the same way, and a membership
//! change moves whole partitions (contiguous key ranges, since storage keys
//! start with the position) rather than reshuffling arbitrary key ranges.
//! The paper found this strategy the best for load balance and for the size
//! of the membership state (section 6.2).
//!
//! The **preference list** of a key is found by walking the partitions
//! clockwise from the key's partition and collecting owners, skipping nodes
//! already listed (section 4.3). Its first node owns the key's partition; the
//! first N are the key's replicas, the rest are the fall-backs a sloppy
//! quorum uses when some of the first N are down.
//!
//! # How it works
//!
//! * **Partitions.** With `Q = 2^b`, partition `i` covers positions
//!   `[i * 2^64/Q, (i+1) * 2^64/Q)`, so the partition of a position is its top
//!   `b` bits ([`Ring::partition_of`]).
//! * **Targets.** Nodes have integer weights (capacity, e.g. 1 per disk).
//!   A node's fair share is `Q * w / W`; its target is that share rounded by
//!   the largest-remainder method, ties broken by node id, so targets sum to
//!   `Q` exactly and nobody gets more than the ceiling of its fair share
//!   ([`targets`]).
//! * **Rebalancing moves the minimum.** [`Ring::rebalance`] first frees the
//!   partitions of nodes that are no longer members (orphans), then makes
//!   every node above its target release exactly its excess, and hands the
//!   freed partitions to the nodes below target. Nodes at or below target
//!   keep everything they own, so the number of moved partitions is exactly
//!   `orphans + sum(max(0, count - target))`, which no assignment reaching the
//!   targets can beat. [`Ring::new`] is the same procedure from an all-orphan
//!   start.
//! * **Spreading.** Which partitions move is free within that minimum, and is
//!   chosen so preference lists stay varied: a donor first releases
//!   partitions that sit next to another of its own (breaking runs) and never
//!   two neighbours if it can help it, in an order given by a hash of
//!   (partition, node); the freed partitions, in ring order, are dealt to the
//!   receivers in a jittered round-robin (each receiver's `k`-th partition
//!   lands in the `k`-th of its equal strata, at a hashed offset), so each
//!   receiver's partitions are spread around the ring and the receivers'
//!   order differs from stratum to stratum. A last pass swaps freed
//!   partitions between receivers where that lowers the number of
//!   neighbouring partitions with one owner (or pushes such a pair ahead,
//!   where it may cancel against another). Swaps only exchange partitions
//!   that move anyway, so they cost no extra movement.
//! * **Versions.** Every rebalance bumps [`Ring::version`]; gossip keeps the
//!   highest version (and breaks ties with [`Ring::precedence`]), see
//!   [`crate::membership`].
//!
//! Everything is a pure function of the input ring and member list: no
//! randomness, no hash-map iteration order in any result, so every node that
//! rebalances the same ring for the same members computes the same table.
//!
//! # CAVEATS
//!
//! * **`Q` is fixed.** Partitions are never split; choose `Q` well above the
//!   largest expected node count times the weight per node (the paper used
//!   Q/S in the hundreds). Gossip adopts whichever ring wins, so nodes
//!   configured with different `Q` end up on the winner's `Q`.
//! * **No rack or zone awareness.** The preference list only guarantees
//!   distinct nodes; the adjacency rule makes the first N usually span N
//!   different partitions but is best effort (with two nodes of weights 4
//!   and 1, runs are unavoidable).
//! * **More members than partitions.** Targets may be 0; such a member owns
//!   nothing, is still a member ([`Ring::contains`]) but appears in no
//!   preference list.
//! * **Targets are not monotone.** Largest-remainder rounding can lower a
//!   node's target when another node leaves (a population paradox); the
//!   node then releases one partition. Movement is still minimal for the new
//!   targets.
//! * **Minimal ownership movement, not minimal data movement.** All
//!   partitions are counted as equal; an emptier partition is not preferred.
//! * **Trust.** Deserialisation checks the structure (power-of-two `Q`,
//!   sorted members, owners are members), not that the table is balanced: a
//!   ring from a peer running a different claim algorithm is used as is until
//!   membership changes.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::version::NodeId;

/// Largest supported partition count.
pub const MAX_PARTITIONS: usize = 1 << 16;

/// How far (in freed partitions) the adjacency pass looks for a swap partner.
const SWAP_WINDOW: usize = 16;

/// The partition -> owner table plus the weighted member set it was
/// balanced for.
///
/// Invariants (checked on deserialisation): `Q` is a power of two in
/// `1..=MAX_PARTITIONS`; `members` is sorted by id, ids unique, weights
/// non-zero; `owners` has `Q` entries, each a member, or the ring is empty
/// (no owners and no members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RingWire")]
pub struct Ring {
    version: u64,
    q: u32,
    owners: Vec<NodeId>,
    members: Vec<(NodeId, u32)>,
}

/// Unvalidated wire shape of [`Ring`] (same layout as its derive).
#[derive(Deserialize)]
struct RingWire {
    version: u64,
    q: u32,
    owners: Vec<NodeId>,
    members: Vec<(NodeId, u32)>,
}

impl TryFrom<RingWire> for Ring {
    type Error = String;

    fn try_from(wire: RingWire) -> Result<Self, Self::Error> {
        let q = wire.q as usize;
        if !q.is_power_of_two() || q > MAX_PARTITIONS {
            return Err(format!(
                "ring partition count {q} is not a power of two <= {MAX_PARTITIONS}"
            ));
        }
        if let Some(w) = wire.members.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!("ring members not strictly sorted at {}", w[1].0));
        }
        if let Some(m) = wire.members.iter().find(|m| m.1 == 0) {
            return Err(format!("ring member {} has weight 0", m.0));
        }
        if wire.owners.is_empty() && !wire.members.is_empty() {
            return Err("ring has members but no owners".into());
        }
        if !wire.owners.is_empty() && wire.owners.len() != q {
            return Err(format!(
                "ring has {} owners for {q} partitions",
                wire.owners.len()
            ));
        }
        let is_member = |n: &NodeId| wire.members.binary_search_by_key(n, |m| m.0).is_ok();
        if let Some(o) = wire.owners.iter().find(|o| !is_member(o)) {
            return Err(format!("ring owner {o} is not a member"));
        }
        Ok(Ring {
            version: wire.version,
            q: wire.q,
            owners: wire.owners,
            members: wire.members,
        })
    }
}

impl Ring {
    /// A balanced ring of `q` partitions for `members` (weights; order,
    /// duplicates and zero weights are tolerated, see [`normalise`]), at
    /// version 1. Panics if `q` is not a power of two in
    /// `1..=MAX_PARTITIONS` or no member has a non-zero weight.
    pub fn new(q: usize, members: &[(NodeId, u32)]) -> Ring {
        assert!(
            !normalise(members).is_empty(),
            "a ring needs at least one member with a non-zero weight"
        );
        Ring::empty(q).rebalance(members)
    }

    /// A ring with no members and no owners, at version 0: what a node that
    /// is not (yet) an active member starts from. Every real ring supersedes
    /// it. Panics if `q` is not a power of two in `1..=MAX_PARTITIONS`.
    pub fn empty(q: usize) -> Ring {
        assert!(
            q.is_power_of_two() && q <= MAX_PARTITIONS,
            "partition count {q} must be a power of two <= {MAX_PARTITIONS}"
        );
        Ring {
            version: 0,
            q: q as u32,
            owners: Vec::new(),
            members: Vec::new(),
        }
    }

    /// Bumped by every [`Ring::rebalance`]; gossip keeps the highest.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The number of partitions `Q`.
    pub fn q(&self) -> usize {
        self.q as usize
    }

    /// Whether the ring has no members (and so no owners).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Owner of every partition, indexed by partition; empty for an empty
    /// ring.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// The weighted member set this assignment was balanced for, sorted by
    /// id, weights non-zero.
    pub fn members(&self) -> &[(NodeId, u32)] {
        &self.members
    }

    /// Whether `node` is a member of the ring. A member whose target is 0
    /// (more members than partitions) is a member that owns nothing.
    pub fn contains(&self, node: NodeId) -> bool {
        self.member_index(node).is_some()
    }

    /// The partition holding `position`: its top `log2(Q)` bits.
    pub fn partition_of(&self, position: u64) -> usize {
        let bits = self.q.trailing_zeros();
        if bits == 0 {
            0
        } else {
            (position >> (64 - bits)) as usize
        }
    }

    /// The first position of `partition` (the partition covers positions up
    /// to the next partition's start, or to `u64::MAX` for the last one).
    pub fn partition_start(&self, partition: usize) -> u64 {
        assert!(partition < self.q(), "partition {partition} out of range");
        let bits = self.q.trailing_zeros();
        if bits == 0 {
            0
        } else {
            (partition as u64) << (64 - bits)
        }
    }

    /// Every node that owns a partition, in preference order for a key at
    /// `position`: the owner of the key's partition first, then the owners of
    /// the following partitions clockwise, each node once. Empty for an empty
    /// ring.
    pub fn preference_list(&self, position: u64) -> Vec<NodeId> {
        self.preference_list_n(position, usize::MAX)
    }

    /// The first `n` nodes of [`Ring::preference_list`] (fewer if the ring
    /// has fewer owners); stops walking as soon as `n` are found.
    pub fn preference_list_n(&self, position: u64, n: usize) -> Vec<NodeId> {
        self.preference(position).take(n).collect()
    }

    /// [`Ring::preference_list`] as it is walked: each node is found when
    /// asked for, so taking the first few costs no walk past them (and, for
    /// rings of up to 128 members, no allocation).
    pub fn preference(&self, position: u64) -> Preference<'_> {
        let words = self.members.len().div_ceil(64);
        Preference {
            ring: self,
            next: self.partition_of(position),
            steps_left: if self.owners.is_empty() { 0 } else { self.q() },
            found: 0,
            seen: smallvec::smallvec![0; words],
        }
    }

    /// Number of partitions each member owns (members owning nothing
    /// included, with 0).
    pub fn partition_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> = self.members.iter().map(|m| (m.0, 0)).collect();
        for owner in &self.owners {
            *counts.entry(*owner).or_default() += 1;
        }
        counts
    }

    /// `Q * weight / total weight` for a member, 0 for anyone else.
    pub fn fair_share(&self, node: NodeId) -> f64 {
        let total: u64 = self.members.iter().map(|m| u64::from(m.1)).sum();
        match self.member_index(node) {
            Some(i) => self.q() as f64 * f64::from(self.members[i].1) / total as f64,
            None => 0.0,
        }
    }

    /// The largest ratio of a member's partitions to its fair share (1.0 is
    /// perfect balance; 0 for an empty ring).
    pub fn balance(&self) -> f64 {
        self.partition_counts()
            .into_iter()
            .map(|(node, count)| count as f64 / self.fair_share(node).max(f64::MIN_POSITIVE))
            .fold(0.0, f64::max)
    }

    /// Whether `members` (normalised) differs from the member set this ring
    /// was balanced for, i.e. whether [`Ring::rebalance`] would change it.
    pub fn needs_rebalance(&self, members: &[(NodeId, u32)]) -> bool {
        normalise(members) != self.members
    }

    /// Number of partitions whose owner differs between the two rings (all
    /// of them against an empty ring). Panics if the partition counts differ.
    pub fn moved_partitions(&self, other: &Ring) -> usize {
        assert_eq!(self.q, other.q, "rings with different partition counts");
        (0..self.q())
            .filter(|&p| self.owners.get(p) != other.owners.get(p))
            .count()
    }

    /// Total order between rings, used by gossip to pick one: higher version
    /// first, then `Q`, owners and members compared lexicographically.
    /// `Equal` only for identical rings.
    pub fn precedence(&self, other: &Ring) -> Ordering {
        (self.version, self.q, &self.owners, &self.members).cmp(&(
            other.version,
            other.q,
            &other.owners,
            &other.members,
        ))
    }

    /// The ring balanced for `members` (normalised, see [`normalise`]) that
    /// moves the fewest partitions from this one, at version + 1. An empty
    /// member set gives an empty ring.
    pub fn rebalance(&self, members: &[(NodeId, u32)]) -> Ring {
        let members = normalise(members);
        let q = self.q();
        let version = self.version + 1;
        if members.is_empty() {
            return Ring {
                version,
                members,
                ..Ring::empty(q)
            };
        }
        let targets = target_counts(q, &members);
        let index = |node: NodeId| members.binary_search_by_key(&node, |m| m.0).ok();
        // Owners as member indices; `None` is a free partition.
        let mut slots: Vec<Option<usize>> = if self.owners.is_empty() {
            vec![None; q]
        } else {
            self.owners.iter().map(|&o| index(o)).collect()
        };
        let mut owned: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
        for (p, slot) in slots.iter().enumerate() {
            if let Some(i) = slot {
                owned[*i].push(p);
            }
        }
        let mut needs = vec![0usize; members.len()];
        for (i, partitions) in owned.iter().enumerate() {
            match partitions.len().cmp(&targets[i]) {
                Ordering::Greater => {
                    let excess = partitions.len() - targets[i];
                    release(&mut slots, i, members[i].0, partitions, excess);
                }
                Ordering::Less => needs[i] = targets[i] - partitions.len(),
                Ordering::Equal => {}
            }
        }
        let pool: Vec<usize> = (0..q).filter(|&p| slots[p].is_none()).collect();
        let order = receiver_order(&members, &needs);
        assert_eq!(order.len(), pool.len(), "targets sum to Q");
        for (&p, &r) in pool.iter().zip(&order) {
            slots[p] = Some(r);
        }
        break_runs(&mut slots, &pool);
        let owners = slots
            .iter()
            .map(|s| members[s.expect("every partition assigned")].0)
            .collect();
        Ring {
            version,
            q: self.q,
            owners,
            members,
        }
    }

    fn member_index(&self, node: NodeId) -> Option<usize> {
        self.members.binary_search_by_key(&node, |m| m.0).ok()
    }
}

/// The walk of [`Ring::preference`].
pub struct Preference<'a> {
    ring: &'a Ring,
    /// The partition to look at next.
    next: usize,
    /// Partitions not looked at yet (the walk goes round once).
    steps_left: usize,
    /// Nodes yielded so far.
    found: usize,
    /// Bit per member (by index): already yielded.
    seen: smallvec::SmallVec<[u64; 2]>,
}

impl Iterator for Preference<'_> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        let ring = self.ring;
        while self.steps_left > 0 && self.found < ring.members.len() {
            let owner = ring.owners[self.next];
            self.next = (self.next + 1) & (ring.q() - 1);
            self.steps_left -= 1;
            let i = ring.member_index(owner).expect("owners are members");
            let (word, bit) = (i / 64, 1u64 << (i % 64));
            if self.seen[word] & bit == 0 {
                self.seen[word] |= bit;
                self.found += 1;
                return Some(owner);
            }
        }
        None
    }
}

/// The canonical form of a member list: sorted by id, members with weight 0
/// dropped, a duplicated id kept once with its largest weight (so the result
/// does not depend on input order).
pub fn normalise(members: &[(NodeId, u32)]) -> Vec<(NodeId, u32)> {
    let mut map: BTreeMap<NodeId, u32> = BTreeMap::new();
    for &(id, w) in members {
        let e = map.entry(id).or_default();
        *e = (*e).max(w);
    }
    map.into_iter().filter(|m| m.1 > 0).collect()
}

/// Target partition count of every member of `members` (normalised first):
/// `Q * w / W` rounded by largest remainder, remainder ties to the smaller
/// id. Targets sum to `q` (when there is a member).
pub fn targets(q: usize, members: &[(NodeId, u32)]) -> BTreeMap<NodeId, usize> {
    let members = normalise(members);
    let counts = target_counts(q, &members);
    members.iter().map(|m| m.0).zip(counts).collect()
}

/// [`targets`] for normalised members, aligned with them.
fn target_counts(q: usize, members: &[(NodeId, u32)]) -> Vec<usize> {
    let total: u64 = members.iter().map(|m| u64::from(m.1)).sum();
    if total == 0 {
        return vec![0; members.len()];
    }
    let shares: Vec<(u64, u64)> = members
        .iter()
        .map(|m| {
            let exact = q as u64 * u64::from(m.1);
            (exact / total, exact % total)
        })
        .collect();
    let mut counts: Vec<usize> = shares.iter().map(|s| s.0 as usize).collect();
    let leftover = q - counts.iter().sum::<usize>();
    let mut by_remainder: Vec<usize> = (0..members.len()).collect();
    // Members are sorted by id, so the stable sort breaks ties by id.
    by_remainder.sort_by(|&a, &b| shares[b].1.cmp(&shares[a].1));
    for &i in &by_remainder[..leftover] {
        counts[i] += 1;
    }
    counts
}

/// Frees `excess` of `partitions` (owned by member `d`, id `id`). Prefers
/// partitions next to another of `d`'s own (breaking runs), never frees two
/// neighbours while another choice remains, and otherwise goes by a hash of
/// (partition, node) so what a node gives up is scattered around the ring.
fn release(slots: &mut [Option<usize>], d: usize, id: NodeId, partitions: &[usize], excess: usize) {
    let q = slots.len();
    let mut candidates = partitions.to_vec();
    candidates.sort_by_key(|&p| (mix2(p as u64, id), p));
    let mut left = excess;
    for pass in 0..3 {
        for &p in &candidates {
            if left == 0 {
                return;
            }
            let (prev, next) = ((p + q - 1) % q, (p + 1) % q);
            let held = slots[p] == Some(d);
            let calm = slots[prev].is_some() && slots[next].is_some();
            let in_run = slots[prev] == Some(d) || slots[next] == Some(d);
            let take = match pass {
                0 => held && calm && in_run,
                1 => held && calm,
                _ => held,
            };
            if take {
                slots[p] = None;
                left -= 1;
            }
        }
    }
    assert_eq!(left, 0, "a donor holds more than its excess");
}

/// The receiver of each freed partition, in ring order: receiver `r`'s
/// `k`-th partition is keyed `(k + u) / needs[r]` with `u` in `[0, 1)` a hash
/// of `(r, k)`, so each receiver's partitions fall one per equal stratum of
/// the freed list, in a hashed order within the stratum.
fn receiver_order(members: &[(NodeId, u32)], needs: &[usize]) -> Vec<usize> {
    // (numerator in 2^-32 units, denominator, tie-break, member index)
    let mut keys: Vec<(u128, u128, u64, usize)> = Vec::new();
    for (i, &need) in needs.iter().enumerate() {
        for k in 0..need {
            let h = mix2(members[i].0, k as u64);
            let num = ((k as u128) << 32) | u128::from(h >> 32);
            keys.push((num, need as u128, h, i));
        }
    }
    keys.sort_by(|a, b| {
        (a.0 * b.1)
            .cmp(&(b.0 * a.1))
            .then((a.2, a.3).cmp(&(b.2, b.3)))
    });
    keys.into_iter().map(|k| k.3).collect()
}

/// Swaps freed partitions between receivers where that lowers the number of
/// neighbouring partitions with the same owner, or pushes such a pair
/// further ahead in ring order (a swap partner is looked for within
/// [`SWAP_WINDOW`] freed partitions ahead). Only partitions that move anyway
/// are exchanged, so movement stays minimal; the pass visits each freed
/// partition once, so it is bounded by `pool * SWAP_WINDOW` swaps.
fn break_runs(slots: &mut [Option<usize>], pool: &[usize]) {
    let q = slots.len();
    if q < 3 || pool.len() < 2 {
        return;
    }
    // Neighbours of `p` with the same owner as `p`. Two swapped partitions
    // have different owners before and after, so summing over both counts
    // every affected pair exactly once.
    let same = |slots: &[Option<usize>], p: usize| {
        let me = slots[p];
        usize::from(slots[(p + q - 1) % q] == me) + usize::from(slots[(p + 1) % q] == me)
    };
    for i in 0..pool.len() {
        let p = pool[i];
        for step in 1..=SWAP_WINDOW.min(pool.len() - 1) {
            let before = same(slots, p);
            if before == 0 {
                break;
            }
            let j = (i + step) % pool.len();
            let other = pool[j];
            if slots[other] == slots[p] {
                continue;
            }
            let before = before + same(slots, other);
            slots.swap(p, other);
            let after = same(slots, p) + same(slots, other);
            // An equal count is still progress if the run moved ahead of
            // `i`: it is looked at again there, and runs pushed forward
            // cancel out when they meet.
            if after < before || (after == before && same(slots, p) == 0 && j > i) {
                continue;
            }
            slots.swap(p, other);
        }
    }
}

/// A well-mixed 64-bit hash of two values (splitmix64 finalizer), identical
/// on every platform.
fn mix2(a: u64, b: u64) -> u64 {
    mix(a ^ mix(b))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_the_space_evenly() {
        let ring = Ring::new(8, &[(1, 1)]);
        assert_eq!(ring.partition_of(0), 0);
        assert_eq!(ring.partition_of((1 << 61) - 1), 0);
        assert_eq!(ring.partition_of(1 << 61), 1);
        assert_eq!(ring.partition_of(u64::MAX), 7);
        assert_eq!(ring.partition_start(7), 7 << 61);
        let single = Ring::new(1, &[(1, 1)]);
        assert_eq!(single.partition_of(u64::MAX), 0);
        assert_eq!(single.partition_start(0), 0);
        assert_eq!(single.preference_list(42), vec![1]);
    }

    #[test]
    fn equal_weights_stripe_without_neighbouring_runs() {
        let ring = Ring::new(64, &[(30, 1), (10, 1), (20, 1), (40, 1)]);
        assert_eq!(ring.version(), 1);
        assert!(ring.partition_counts().values().all(|&c| c == 16));
        let runs = (0..64)
            .filter(|&p| ring.owners()[p] == ring.owners()[(p + 1) % 64])
            .count();
        assert_eq!(runs, 0, "{:?}", ring.owners());
        for p in 0..64 {
            let pos = ring.partition_start(p);
            let list = ring.preference_list(pos);
            assert_eq!(list.len(), 4);
            assert_eq!(list[0], ring.owners()[p]);
        }
    }

    #[test]
    fn targets_use_largest_remainder_with_ties_by_id() {
        // 8 * 1/3 = 2.67 each: one leftover goes to the smallest id.
        let t = targets(8, &[(3, 1), (1, 1), (2, 1)]);
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            vec![(1, 3), (2, 3), (3, 2)]
        );
        let t = targets(8, &[(1, 1), (2, 3), (9, 0)]);
        assert_eq!(t.into_iter().collect::<Vec<_>>(), vec![(1, 2), (2, 6)]);
    }

    #[test]
    fn empty_member_set_gives_an_empty_ring() {
        let ring = Ring::new(16, &[(1, 1), (2, 1)]);
        let empty = ring.rebalance(&[(1, 0)]);
        assert!(empty.is_empty());
        assert_eq!(empty.version(), 2);
        assert!(empty.preference_list(7).is_empty());
        assert_eq!(ring.moved_partitions(&empty), 16);
        let again = empty.rebalance(&[(5, 2)]);
        assert_eq!(again.partition_counts().get(&5), Some(&16));
    }

    #[test]
    fn deserialisation_checks_the_structure() {
        let ring = Ring::new(4, &[(1, 1), (2, 1)]);
        let bytes = postcard::to_stdvec(&ring).unwrap();
        assert_eq!(postcard::from_bytes::<Ring>(&bytes).unwrap(), ring);
        let bad = |version: u64, q: u32, owners: Vec<u64>, members: Vec<(u64, u32)>| {
            #[derive(Serialize)]
            struct Raw(u64, u32, Vec<u64>, Vec<(u64, u32)>);
            let bytes = postcard::to_stdvec(&Raw(version, q, owners, members)).unwrap();
            postcard::from_bytes::<Ring>(&bytes).is_err()
        };
        assert!(!bad(1, 2, vec![1, 2], vec![(1, 1), (2, 1)]));
        assert!(!bad(0, 2, vec![], vec![]));
        assert!(
            bad(1, 3, vec![1, 1, 1], vec![(1, 1)]),
            "q not a power of two"
        );
        assert!(bad(1, 0, vec![], vec![]), "q zero");
        assert!(
            bad(1, 2, vec![1, 3], vec![(1, 1), (2, 1)]),
            "owner not a member"
        );
        assert!(
            bad(1, 2, vec![1, 2], vec![(2, 1), (1, 1)]),
            "unsorted members"
        );
        assert!(
            bad(1, 2, vec![1, 1], vec![(1, 1), (1, 2)]),
            "duplicate member"
        );
        assert!(bad(1, 2, vec![1, 1], vec![(1, 0)]), "zero weight");
        assert!(bad(1, 4, vec![1, 1], vec![(1, 1)]), "owner count");
        assert!(bad(1, 2, vec![], vec![(1, 1)]), "members without owners");
    }
}
