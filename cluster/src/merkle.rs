//! Merkle trees for anti-entropy (the paper's section 4.7): how two replicas
//! find the keys on which they disagree while exchanging a number of bytes
//! that grows with the number of differing keys, not with the number of keys.
//!
//! # The idea
//!
//! Every node keeps, for each partition of the ring, a hash tree over the keys
//! it stores in that partition. Two replicas of a partition compare their
//! roots; if the roots agree the partition is in sync and nothing else is
//! sent. If not, they compare the root's children, then the children of the
//! children that differ, and so on down to the leaves: only the subtrees that
//! contain a difference are ever opened. The leaves that differ name small
//! ranges of ring positions, and only the keys in those ranges are then
//! exchanged and merged.
//!
//! This module is the pure data structure: the trees, their incremental
//! maintenance and a local descent ([`diff_leaves`]). The protocol that asks a
//! peer for [`MerkleTree::children`] and the scan of the storage engine over
//! [`MerkleTree::leaf_positions`] live elsewhere.
//!
//! # How it works
//!
//! * **Key digests.** A key's stored state is summarised by
//!   [`key_digest`]: XXH3-128 over the key's length (u32, big-endian), the
//!   key and the encoded state. Two replicas holding the same bytes for a key
//!   compute the same digest. Every write computes two (the old state's, to
//!   take it out of its leaf, and the new one's), so the hash is a fast
//!   non-cryptographic one; it was MD5 before protocol 5, at about a tenth
//!   of the speed.
//! * **Shape.** A tree covers one partition. Its [`LEAVES`] leaves are
//!   buckets of ring position: the [`LEAF_BITS`] bits of the position just
//!   below the partition bits pick the leaf, so each leaf is a contiguous
//!   range of positions (hence of storage keys, which start with the
//!   position). Above the leaves sit [`LEVELS`] levels of inner nodes, each
//!   with [`FANOUT`] children; level 0 is the root.
//! * **Leaves are XOR sets.** A leaf's hash is the XOR of the digests of the
//!   keys in it. XOR is order-independent and its own inverse, so a change of
//!   one key (`old` digest to `new` digest, either possibly absent) is the
//!   single operation `leaf ^= old ^ new` ([`MerkleTree::update`]): no need
//!   to read the leaf's other keys, and equal key sets give equal leaves
//!   whatever the order of the writes that produced them.
//! * **Inner nodes are real hashes, computed lazily.** An inner node's hash
//!   is MD5 (truncated to 128 bits, i.e. the whole digest) of its children's
//!   hashes in order, except that a node whose children are all empty (0) is
//!   itself 0, so an empty subtree, and an empty tree, hashes to 0 for free.
//!   Because it is positional, two equal differences in two different leaves
//!   cannot cancel out (as they would if inner nodes were XORs too).
//!   An update only flips the leaf and marks its `LEVELS` ancestors dirty;
//!   dirty nodes are rehashed when [`MerkleTree::root`] or
//!   [`MerkleTree::children`] asks for them, so a burst of writes costs one
//!   rehash per touched node, not one per write. Update is O(`LEVELS`).
//! * **Lazy allocation.** A tree with no key holds no node storage at all;
//!   its root is 0. It allocates on its first key and frees again when its
//!   last key is removed.
//!
//! # Sizes
//!
//! `FANOUT = 16`, `LEVELS = 2`: 256 leaves and 17 inner nodes per partition,
//! so an allocated tree is 273 hashes (16 bytes each) plus 17 dirty flags,
//! about 4.4 KB. A forest for `Q = 256` is at most about 1.1 MB, for
//! `Q = 1024` about 4.5 MB (and a node only fills the trees of partitions it
//! stores). A third level (4096 leaves) would cost 16 times as much, 18 MB for
//! `Q = 256`, which is not worth it for a cache rebuilt at every start.
//!
//! The trade-off is the leaf granularity: a leaf holds about
//! `keys per partition / 256` keys, and the descent stops at a leaf, so
//! repairing one differing key means exchanging the digests (and keys) of
//! every key of its leaf. With 10^8 keys over `Q = 1024` that is about 380
//! keys per leaf, tens of kilobytes per repaired key: fine for background
//! repair, and still independent of the total number of keys once the
//! partition count grows with the data. Finding the leaves costs at most
//! `1 + 16 + 16 * d` hashes per partition for `d` differing leaves.
//!
//! # CAVEATS
//!
//! * **The caller is trusted.** [`MerkleTree::update`] must be given the
//!   digest the key really had before (or `None` if it was absent); a wrong
//!   `old` leaves garbage in the leaf until the tree is rebuilt from a scan
//!   ([`MerkleTree::clear`] then re-insert). The key count behind
//!   [`MerkleTree::is_empty`] relies on the same honesty: removals from an
//!   empty tree are ignored, and a tree whose count drops to zero forgets all
//!   its nodes.
//! * **Digests are of encodings.** Two replicas holding the same logical state
//!   encoded differently (siblings in another order, say) look different and
//!   are "repaired" for nothing. The state encoding should be canonical.
//! * **XOR leaves are not collision-resistant against an adversary.** For
//!   digests of honest divergence, two different key sets in one leaf collide
//!   with probability about 2^-128. But XOR is linear: someone choosing keys
//!   and values freely can, with a few hundred writes and some linear algebra,
//!   build two different leaf contents with the same XOR (and the key
//!   digest is not a cryptographic hash anyway). Anti-entropy is a repair mechanism, not a security boundary.
//! * **A key whose digest is 0** is invisible to its leaf (probability
//!   2^-128).
//! * **One tree per `Q`.** Leaves are defined by the partition bits, so a tree
//!   is meaningless for another partition count; if the ring's `Q` changes
//!   the forest must be rebuilt. Comparing trees built for different `Q`
//!   panics in [`diff_leaves`].
//! * **In memory only.** Trees are not persisted; a node rebuilds them with
//!   one scan of its store at start (O(keys) digests).
//! * **Snapshots drift.** Writes that land between two steps of a remote
//!   descent make the compared levels inconsistent; the protocol must treat a
//!   descent's result as a hint and tolerate spurious or missed leaves (the
//!   next round catches them).

use std::fmt;
use std::mem::size_of;
use std::ops::{Range, RangeInclusive};

use md5::{Digest, Md5};
use xxhash_rust::xxh3::Xxh3;

use crate::ring::MAX_PARTITIONS;

/// Children per inner node.
pub const FANOUT: usize = 16;

/// Levels of inner nodes (level 0 is the root; the children of level
/// `LEVELS - 1` are the leaves).
pub const LEVELS: usize = 2;

/// Leaves per tree: `FANOUT ^ LEVELS`.
pub const LEAVES: usize = FANOUT.pow(LEVELS as u32);

/// Bits of ring position (just below the partition bits) that pick a leaf.
pub const LEAF_BITS: u32 = LEAVES.trailing_zeros();

/// The hash of an empty leaf, an empty subtree and an empty tree.
pub const EMPTY: u128 = 0;

/// Inner nodes per tree: `1 + FANOUT + ... + FANOUT ^ (LEVELS - 1)`.
const INNER: usize = (LEAVES - 1) / (FANOUT - 1);

const _: () = assert!(FANOUT.is_power_of_two() && FANOUT >= 2 && LEVELS >= 1);
const _: () = assert!(LEAF_BITS as usize * 2 <= 64);
const _: () = assert!(MAX_PARTITIONS.trailing_zeros() + LEAF_BITS < 64);

/// 128-bit digest of one key's stored state: XXH3-128 over (key length as
/// u32 big-endian, key bytes, encoded state bytes).
///
/// Keys longer than `u32::MAX` bytes have their length saturated (such keys
/// do not exist in practice: RESP caps a bulk string far below).
pub fn key_digest(key: &[u8], encoded_state: &[u8]) -> u128 {
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut hasher = Xxh3::new();
    hasher.update(&len.to_be_bytes());
    hasher.update(key);
    hasher.update(encoded_state);
    hasher.digest128()
}

/// Which child indices differ between two [`MerkleTree::children`] answers,
/// ascending. If the slices have different lengths, the indices present in
/// only one of them count as differing.
pub fn differing(mine: &[u128], theirs: &[u128]) -> Vec<usize> {
    (0..mine.len().max(theirs.len()))
        .filter(|&i| mine.get(i) != theirs.get(i))
        .collect()
}

/// The number of nodes at `level`: `FANOUT ^ level` (level `LEVELS` is the
/// leaves). Node indices at a level are `0..nodes_at(level)`.
pub fn nodes_at(level: usize) -> usize {
    assert!(level <= LEVELS, "level {level} is below the leaves");
    FANOUT.pow(level as u32)
}

/// Every leaf index under node (`level`, `index`), for when a descent stops
/// early (level `LEVELS` names a leaf itself). Panics if the node does not
/// exist.
pub fn leaves_under(level: usize, index: usize) -> Range<usize> {
    assert!(
        index < nodes_at(level),
        "node {index} does not exist at level {level}"
    );
    let span = FANOUT.pow((LEVELS - level) as u32);
    index * span..(index + 1) * span
}

/// A full descent between two trees held locally (used by tests and by the
/// simulated network): the leaves whose contents differ, ascending. Opens
/// only the nodes whose hashes differ, exactly as a remote descent would.
/// Panics if the trees were built for different partition counts.
pub fn diff_leaves(a: &mut MerkleTree, b: &mut MerkleTree) -> Vec<usize> {
    assert_eq!(
        a.partition_bits, b.partition_bits,
        "comparing trees built for different partition counts"
    );
    if a.root() == b.root() {
        return Vec::new();
    }
    let mut frontier = vec![0usize];
    for level in 0..LEVELS {
        let mut next = Vec::new();
        for &index in &frontier {
            let mine = a.children(level, index);
            let theirs = b.children(level, index);
            next.extend(
                differing(&mine, &theirs)
                    .into_iter()
                    .map(|child| index * FANOUT + child),
            );
        }
        frontier = next;
    }
    frontier
}

/// Hash tree over ONE partition's keys (see the module documentation).
///
/// Equality compares the contents (partition count, key count, leaves), not
/// which inner hashes happen to be cached: two trees over the same keys are
/// equal whatever the order of their updates and whether their roots were
/// asked for.
#[derive(Clone)]
pub struct MerkleTree {
    partition_bits: u32,
    keys: u64,
    nodes: Option<Box<Nodes>>,
}

/// The storage of a non-empty tree.
#[derive(Clone)]
struct Nodes {
    leaves: [u128; LEAVES],
    /// Inner hashes in level order: level `l` starts at `level_offset(l)`.
    inner: [u128; INNER],
    /// Whether the matching `inner` entry is stale.
    dirty: [bool; INNER],
}

static EMPTY_LEAVES: [u128; LEAVES] = [EMPTY; LEAVES];

impl MerkleTree {
    /// An empty tree for a ring of `q` partitions. Panics unless `q` is a
    /// power of two in `1..=MAX_PARTITIONS`.
    pub fn new(q: usize) -> MerkleTree {
        MerkleTree {
            partition_bits: partition_bits(q),
            keys: 0,
            nodes: None,
        }
    }

    /// The number of partitions of the ring this tree was built for.
    pub fn q(&self) -> usize {
        1 << self.partition_bits
    }

    /// The leaf a ring position falls in: the [`LEAF_BITS`] bits just below
    /// the partition bits.
    pub fn leaf_of(&self, position: u64) -> usize {
        ((position << self.partition_bits) >> (64 - LEAF_BITS)) as usize
    }

    /// The ring positions covered by `leaf` of `partition`: the range of
    /// storage keys to scan when the leaf differs. Panics if either is out
    /// of range.
    pub fn leaf_positions(&self, partition: usize, leaf: usize) -> RangeInclusive<u64> {
        assert!(partition < self.q(), "partition {partition} out of range");
        assert!(leaf < LEAVES, "leaf {leaf} out of range");
        let partition_start = if self.partition_bits == 0 {
            0
        } else {
            (partition as u64) << (64 - self.partition_bits)
        };
        let span_bits = 64 - self.partition_bits - LEAF_BITS;
        let start = partition_start | ((leaf as u64) << span_bits);
        start..=start + ((1u64 << span_bits) - 1)
    }

    /// A key's state changed: `old`/`new` are its digests before/after
    /// (`None` = absent). O(`LEVELS`); inner hashes are recomputed lazily.
    pub fn update(&mut self, position: u64, old: Option<u128>, new: Option<u128>) {
        match (old, new) {
            (None, Some(_)) => self.keys += 1,
            (Some(_), None) => self.keys = self.keys.saturating_sub(1),
            _ => {}
        }
        if self.keys == 0 {
            self.nodes = None;
            return;
        }
        let delta = old.unwrap_or(EMPTY) ^ new.unwrap_or(EMPTY);
        if delta == EMPTY {
            return;
        }
        let leaf = self.leaf_of(position);
        let nodes = self.nodes.get_or_insert_with(Nodes::empty);
        nodes.leaves[leaf] ^= delta;
        let mut index = leaf;
        for level in (0..LEVELS).rev() {
            index /= FANOUT;
            nodes.dirty[level_offset(level) + index] = true;
        }
    }

    /// The root hash ([`EMPTY`] for an empty tree). Recomputes dirty nodes.
    pub fn root(&mut self) -> u128 {
        match &mut self.nodes {
            None => EMPTY,
            Some(nodes) => {
                nodes.clean(0, 0);
                nodes.inner[0]
            }
        }
    }

    /// The hashes of the children of node `index` at `level` (level 0 = root,
    /// whose single node index is 0); at the last inner level
    /// (`LEVELS - 1`) the children are leaves. Returns [`FANOUT`] hashes;
    /// child `c` is node `index * FANOUT + c` of the next level. Recomputes
    /// dirty nodes. Panics if `level >= LEVELS` or
    /// `index >= nodes_at(level)`.
    pub fn children(&mut self, level: usize, index: usize) -> Vec<u128> {
        assert!(level < LEVELS, "level {level} has no children");
        assert!(
            index < nodes_at(level),
            "node {index} does not exist at level {level}"
        );
        let Some(nodes) = &mut self.nodes else {
            return vec![EMPTY; FANOUT];
        };
        let first = index * FANOUT;
        if level + 1 == LEVELS {
            nodes.leaves[first..first + FANOUT].to_vec()
        } else {
            for child in first..first + FANOUT {
                nodes.clean(level + 1, child);
            }
            let offset = level_offset(level + 1) + first;
            nodes.inner[offset..offset + FANOUT].to_vec()
        }
    }

    /// The hash of one leaf (the XOR of its keys' digests). Panics if
    /// `leaf >= LEAVES`.
    pub fn leaf(&self, leaf: usize) -> u128 {
        self.leaves()[leaf]
    }

    /// Whether the tree holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// The number of keys in the tree (as counted by [`MerkleTree::update`]).
    pub fn len(&self) -> u64 {
        self.keys
    }

    /// Forgets every key (and frees the node storage), e.g. before rebuilding
    /// the tree from a scan.
    pub fn clear(&mut self) {
        self.keys = 0;
        self.nodes = None;
    }

    /// Heap bytes held by this tree: 0 when empty, about 4.4 KB otherwise.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.as_ref().map_or(0, |_| size_of::<Nodes>())
    }

    fn leaves(&self) -> &[u128; LEAVES] {
        self.nodes.as_ref().map_or(&EMPTY_LEAVES, |n| &n.leaves)
    }
}

impl PartialEq for MerkleTree {
    fn eq(&self, other: &Self) -> bool {
        self.partition_bits == other.partition_bits
            && self.keys == other.keys
            && self.leaves() == other.leaves()
    }
}

impl Eq for MerkleTree {}

impl fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct NonEmpty<'a>(&'a [u128; LEAVES]);
        impl fmt::Debug for NonEmpty<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(
                        self.0
                            .iter()
                            .enumerate()
                            .filter(|(_, &h)| h != EMPTY)
                            .map(|(i, h)| (i, format!("{h:032x}"))),
                    )
                    .finish()
            }
        }
        f.debug_struct("MerkleTree")
            .field("q", &self.q())
            .field("keys", &self.keys)
            .field("leaves", &NonEmpty(self.leaves()))
            .finish()
    }
}

impl Nodes {
    fn empty() -> Box<Nodes> {
        Box::new(Nodes {
            leaves: [EMPTY; LEAVES],
            inner: [EMPTY; INNER],
            dirty: [false; INNER],
        })
    }

    /// Makes inner node (`level`, `index`) and its descendants up to date.
    fn clean(&mut self, level: usize, index: usize) {
        let slot = level_offset(level) + index;
        if !self.dirty[slot] {
            return;
        }
        let first = index * FANOUT;
        let hash = if level + 1 == LEVELS {
            hash_children(&self.leaves[first..first + FANOUT])
        } else {
            for child in first..first + FANOUT {
                self.clean(level + 1, child);
            }
            let offset = level_offset(level + 1) + first;
            hash_children(&self.inner[offset..offset + FANOUT])
        };
        self.inner[slot] = hash;
        self.dirty[slot] = false;
    }
}

/// A per-node set of trees, one per partition, all for the same `Q`. Trees
/// of partitions without keys hold no node storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleForest {
    q: usize,
    trees: Vec<MerkleTree>,
}

impl MerkleForest {
    /// Empty trees for a ring of `q` partitions. Panics unless `q` is a power
    /// of two in `1..=MAX_PARTITIONS`.
    pub fn new(q: usize) -> Self {
        MerkleForest {
            q,
            trees: vec![MerkleTree::new(q); q],
        }
    }

    /// The number of partitions.
    pub fn q(&self) -> usize {
        self.q
    }

    /// The partition of a ring position (its top `log2 Q` bits), as
    /// [`crate::ring::Ring::partition_of`].
    pub fn partition_of(&self, position: u64) -> usize {
        let bits = self.q.trailing_zeros();
        if bits == 0 {
            0
        } else {
            (position >> (64 - bits)) as usize
        }
    }

    /// Reads the leaf and the stale flags that [`MerkleForest::update`]
    /// will change for each of `positions`, all together, so that a batch
    /// of writes pays their cache misses overlapped rather than one by one
    /// (as [`crate::storage::Engine::warm`] does for the store). Reads only.
    pub fn warm(&self, positions: &[u64]) {
        let mut touched = 0u128;
        for &position in positions {
            let tree = &self.trees[self.partition_of(position)];
            if let Some(nodes) = &tree.nodes {
                touched ^= nodes.leaves[tree.leaf_of(position)];
                touched ^= u128::from(nodes.dirty[INNER - 1]);
            }
        }
        std::hint::black_box(touched);
    }

    /// A key's state changed: routes [`MerkleTree::update`] to the tree of
    /// the position's partition.
    pub fn update(&mut self, position: u64, old: Option<u128>, new: Option<u128>) {
        let partition = self.partition_of(position);
        self.trees[partition].update(position, old, new);
    }

    /// The tree of `partition`. Panics if out of range.
    pub fn tree(&mut self, partition: usize) -> &mut MerkleTree {
        &mut self.trees[partition]
    }

    /// The root of `partition`'s tree. Panics if out of range.
    pub fn root(&mut self, partition: usize) -> u128 {
        self.trees[partition].root()
    }

    /// Heap bytes held by the forest (tree headers plus allocated trees).
    pub fn heap_bytes(&self) -> usize {
        self.trees.capacity() * size_of::<MerkleTree>()
            + self.trees.iter().map(MerkleTree::heap_bytes).sum::<usize>()
    }
}

fn partition_bits(q: usize) -> u32 {
    assert!(
        q.is_power_of_two() && q <= MAX_PARTITIONS,
        "partition count {q} must be a power of two <= {MAX_PARTITIONS}"
    );
    q.trailing_zeros()
}

/// Where level `level`'s inner nodes start in level order.
const fn level_offset(level: usize) -> usize {
    (FANOUT.pow(level as u32) - 1) / (FANOUT - 1)
}

/// An inner node's hash: [`EMPTY`] if every child is, else MD5 of the
/// children's big-endian bytes.
fn hash_children(children: &[u128]) -> u128 {
    if children.iter().all(|&c| c == EMPTY) {
        return EMPTY;
    }
    let mut hasher = Md5::new();
    for child in children {
        hasher.update(child.to_be_bytes());
    }
    finish(hasher)
}

fn finish(hasher: Md5) -> u128 {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hasher.finalize());
    u128::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: usize = 64;

    fn position_in(partition: usize, leaf: usize, low: u64) -> u64 {
        let tree = MerkleTree::new(Q);
        let range = tree.leaf_positions(partition, leaf);
        range.start() + low % (range.end() - range.start() + 1)
    }

    #[test]
    fn sizes_are_as_documented() {
        assert_eq!(LEAVES, 256);
        assert_eq!(LEAF_BITS, 8);
        assert_eq!(INNER, 17);
        assert_eq!(level_offset(0), 0);
        assert_eq!(level_offset(1), 1);
        assert_eq!(leaves_under(0, 0), 0..256);
        assert_eq!(leaves_under(1, 3), 48..64);
        assert_eq!(leaves_under(2, 7), 7..8);
        // Forests for Q = 256 and Q = 1024 with every tree allocated.
        for (q, limit) in [(256, 2 << 20), (1024, 8 << 20)] {
            let mut forest = MerkleForest::new(q);
            for p in 0..q {
                let pos = forest.tree(p).leaf_positions(p, 0).start() + 1;
                forest.update(pos, None, Some(1));
            }
            let bytes = forest.heap_bytes();
            assert!(bytes <= limit, "q={q}: {bytes} bytes");
        }
        assert_eq!(
            MerkleForest::new(1024).heap_bytes(),
            1024 * size_of::<MerkleTree>()
        );
    }

    #[test]
    fn key_digest_is_xxh3_of_length_key_and_state() {
        let mut manual = Vec::new();
        manual.extend_from_slice(&3u32.to_be_bytes());
        manual.extend_from_slice(b"keystate");
        let expected = xxhash_rust::xxh3::xxh3_128(&manual);
        assert_eq!(key_digest(b"key", b"state"), expected);
        // The length prefix separates key from state.
        assert_ne!(key_digest(b"ke", b"ystate"), key_digest(b"key", b"state"));
    }

    #[test]
    fn leaf_of_and_leaf_positions_agree() {
        for q in [1, 2, 64, MAX_PARTITIONS] {
            let tree = MerkleTree::new(q);
            let forest = MerkleForest::new(q);
            for (p, leaf) in [(0, 0), (q - 1, LEAVES - 1), (q / 2, 17)] {
                let range = tree.leaf_positions(p, leaf);
                for pos in [*range.start(), *range.end()] {
                    assert_eq!(tree.leaf_of(pos), leaf);
                    assert_eq!(forest.partition_of(pos), p);
                }
            }
            assert_eq!(*tree.leaf_positions(0, 0).start(), 0);
            assert_eq!(*tree.leaf_positions(q - 1, LEAVES - 1).end(), u64::MAX);
        }
    }

    #[test]
    fn empty_tree_and_lazy_allocation() {
        let mut tree = MerkleTree::new(Q);
        assert!(tree.is_empty());
        assert_eq!(tree.root(), EMPTY);
        assert_eq!(tree.children(0, 0), vec![EMPTY; FANOUT]);
        assert_eq!(tree.heap_bytes(), 0);
        tree.update(position_in(5, 9, 0), None, Some(42));
        assert!(!tree.is_empty());
        assert_ne!(tree.root(), EMPTY);
        assert_eq!(tree.leaf(9), 42);
        assert!(tree.heap_bytes() > 0);
        tree.update(position_in(5, 9, 0), Some(42), None);
        assert!(tree.is_empty());
        assert_eq!(tree.heap_bytes(), 0);
        assert_eq!(tree, MerkleTree::new(Q));
        // Removing from an empty tree is ignored.
        tree.update(1, Some(7), None);
        assert_eq!(tree, MerkleTree::new(Q));
    }

    #[test]
    fn equal_differences_in_two_leaves_do_not_cancel() {
        // Swap two digests between leaves: leaf XORs change, and a pure XOR
        // tree would keep the same root; the positional inner hash does not.
        let (x, y) = (0x1111u128, 0x2222u128);
        let mut a = MerkleTree::new(Q);
        a.update(position_in(0, 1, 0), None, Some(x));
        a.update(position_in(0, 40, 0), None, Some(y));
        let mut b = MerkleTree::new(Q);
        b.update(position_in(0, 1, 0), None, Some(y));
        b.update(position_in(0, 40, 0), None, Some(x));
        assert_ne!(a.root(), b.root());
        assert_eq!(diff_leaves(&mut a, &mut b), vec![1, 40]);
        // Same difference in two sibling leaves.
        let mut c = MerkleTree::new(Q);
        c.update(position_in(0, 1, 0), None, Some(x ^ 5));
        c.update(position_in(0, 2, 0), None, Some(y ^ 5));
        let mut d = MerkleTree::new(Q);
        d.update(position_in(0, 1, 0), None, Some(x));
        d.update(position_in(0, 2, 0), None, Some(y));
        assert_eq!(diff_leaves(&mut c, &mut d), vec![1, 2]);
    }

    #[test]
    fn lazy_recompute_matches_fresh_tree() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut incremental = MerkleTree::new(Q);
        let keys: Vec<(u64, u128)> = (0..2000)
            .map(|_| {
                (
                    position_in(3, rng.usize(..LEAVES), rng.u64(..)),
                    rng.u128(..),
                )
            })
            .collect();
        for (i, &(pos, digest)) in keys.iter().enumerate() {
            incremental.update(pos, None, Some(digest));
            if i % 97 == 0 {
                incremental.root(); // clean part-way
                incremental.children(1, rng.usize(..FANOUT));
            }
        }
        let mut fresh = MerkleTree::new(Q);
        for &(pos, digest) in keys.iter().rev() {
            fresh.update(pos, None, Some(digest));
        }
        assert_eq!(incremental.root(), fresh.root());
        for i in 0..FANOUT {
            assert_eq!(incremental.children(1, i), fresh.children(1, i));
        }
        assert_eq!(incremental, fresh);
    }

    #[test]
    fn differing_handles_unequal_lengths() {
        assert_eq!(differing(&[1, 2, 3], &[1, 5, 3]), vec![1]);
        assert_eq!(differing(&[1, 2], &[1, 2, 3]), vec![2]);
        assert!(differing(&[], &[]).is_empty());
    }

    /// Bytes a descent exchanges for 10^5 keys with 10 differing: each hash
    /// one side sends for the other to compare is 16 bytes.
    #[test]
    fn descent_bytes_scale_with_differing_keys() {
        const KEYS: usize = 100_000;
        const DIFFERING: usize = 10;
        let full = KEYS * 16; // sending every key's digest
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let keys: Vec<(u64, u128)> = (0..KEYS).map(|_| (rng.u64(..), rng.u128(..))).collect();
        let changed: Vec<usize> = (0..DIFFERING).map(|_| rng.usize(..KEYS)).collect();

        // Everything in one partition (Q = 1): the worst case for leaf size.
        let mut a = MerkleTree::new(1);
        let mut b = MerkleTree::new(1);
        for (i, &(pos, digest)) in keys.iter().enumerate() {
            a.update(pos, None, Some(digest));
            let theirs = if changed.contains(&i) {
                !digest
            } else {
                digest
            };
            b.update(pos, None, Some(theirs));
        }
        let (hashes, leaves) = count_descent(&mut a, &mut b);
        assert!(!leaves.is_empty() && leaves.len() <= DIFFERING);
        let tree_bytes = hashes * 16;
        assert!(hashes <= 1 + FANOUT + DIFFERING * FANOUT, "{hashes} hashes");
        assert!(tree_bytes * 100 < full / 5, "{tree_bytes} of {full} bytes");

        // Spread over Q = 64 partitions: compare all roots, descend into the
        // differing ones, then ship the digests of every key in a differing
        // leaf. Still well under 1% of sending everything.
        let q = 64;
        let mut fa = MerkleForest::new(q);
        let mut fb = MerkleForest::new(q);
        for (i, &(pos, digest)) in keys.iter().enumerate() {
            fa.update(pos, None, Some(digest));
            let theirs = if changed.contains(&i) {
                !digest
            } else {
                digest
            };
            fb.update(pos, None, Some(theirs));
        }
        let mut hashes = 0;
        let mut leaf_keys = 0;
        for p in 0..q {
            let (h, leaves) = count_descent(fa.tree(p), fb.tree(p));
            hashes += h;
            for leaf in leaves {
                let range = fa.tree(p).leaf_positions(p, leaf);
                leaf_keys += keys.iter().filter(|k| range.contains(&k.0)).count();
            }
        }
        let total = hashes * 16 + leaf_keys * 16;
        assert!(total * 100 < full / 2, "{total} of {full} bytes");
    }

    /// A descent as the network would run it: the hashes compared (root
    /// included) and the differing leaves reached.
    fn count_descent(a: &mut MerkleTree, b: &mut MerkleTree) -> (usize, Vec<usize>) {
        let mut hashes = 1;
        if a.root() == b.root() {
            return (hashes, Vec::new());
        }
        let mut frontier = vec![0];
        for level in 0..LEVELS {
            let mut next = Vec::new();
            for index in frontier {
                let (mine, theirs) = (a.children(level, index), b.children(level, index));
                hashes += theirs.len();
                next.extend(differing(&mine, &theirs).iter().map(|c| index * FANOUT + c));
            }
            frontier = next;
        }
        (hashes, frontier)
    }
}
