//! Properties of the anti-entropy Merkle trees: order independence,
//! removal back to empty, a descent finds exactly the leaves holding a
//! differing key (expected set computed from the positions, not the tree),
//! change = remove + insert, and one differing key always shows in the root.

use std::collections::{BTreeMap, BTreeSet};

use cluster::merkle::{
    diff_leaves, differing, leaves_under, MerkleForest, MerkleTree, EMPTY, FANOUT, LEAF_BITS,
    LEVELS,
};
use proptest::prelude::*;

/// A key set: key id -> (ring position, digest).
type Keys = BTreeMap<u64, (u64, u128)>;

/// The leaf of a position, computed here from the definition: the
/// `LEAF_BITS` bits just below the top `partition_bits`.
fn expected_leaf(partition_bits: u32, position: u64) -> usize {
    let below = if partition_bits == 0 {
        position
    } else {
        position << partition_bits
    };
    (below >> (64 - LEAF_BITS)) as usize
}

/// A random position in `partition`; with `narrow`, only in its first four
/// leaves, so differing keys often share a leaf.
fn position(rng: &mut fastrand::Rng, bits: u32, partition: usize, narrow: bool) -> u64 {
    let mut low = rng.u64(..);
    if narrow {
        // Keep the two lowest leaf bits only.
        low &= !(((1u64 << LEAF_BITS) - 4) << (64 - LEAF_BITS));
    }
    if bits == 0 {
        low
    } else {
        ((partition as u64) << (64 - bits)) | (low >> bits)
    }
}

fn random_keys(
    rng: &mut fastrand::Rng,
    bits: u32,
    partition: usize,
    n: usize,
    narrow: bool,
) -> Keys {
    (0..n as u64)
        .map(|id| (id, (position(rng, bits, partition, narrow), rng.u128(..))))
        .collect()
}

fn build(q: usize, keys: &Keys) -> MerkleTree {
    let mut tree = MerkleTree::new(q);
    for &(pos, digest) in keys.values() {
        tree.update(pos, None, Some(digest));
    }
    tree
}

/// `keys` with `k` distinct keys changed (digest modified, key deleted or a
/// new key added), and the positions of the changed keys.
fn perturb(
    rng: &mut fastrand::Rng,
    keys: &Keys,
    k: usize,
    bits: u32,
    partition: usize,
    narrow: bool,
) -> (Keys, Vec<u64>) {
    let mut out = keys.clone();
    let mut touched = BTreeSet::new();
    let mut positions = Vec::new();
    let mut next_id = keys.len() as u64;
    while touched.len() < k {
        let kind = if out.is_empty() { 2 } else { rng.u8(..3) };
        match kind {
            0 | 1 => {
                let id = rng.u64(..keys.len().max(1) as u64);
                if !keys.contains_key(&id) || !touched.insert(id) {
                    continue;
                }
                let (pos, digest) = out[&id];
                positions.push(pos);
                if kind == 0 {
                    let mut new = rng.u128(..);
                    if new == digest {
                        new ^= 1;
                    }
                    out.insert(id, (pos, new));
                } else {
                    out.remove(&id);
                }
            }
            _ => {
                let id = next_id;
                next_id += 1;
                touched.insert(id);
                let pos = position(rng, bits, partition, narrow);
                positions.push(pos);
                out.insert(id, (pos, rng.u128(..)));
            }
        }
    }
    (out, positions)
}

/// A descent that only follows `differing(children)` from the root, written
/// independently of `diff_leaves` (breadth-first over (level, index)).
fn descend(a: &mut MerkleTree, b: &mut MerkleTree) -> BTreeSet<usize> {
    let mut reached = BTreeSet::new();
    if a.root() == b.root() {
        return reached;
    }
    let mut queue = std::collections::VecDeque::from([(0usize, 0usize)]);
    while let Some((level, index)) = queue.pop_front() {
        let mine = a.children(level, index);
        let theirs = b.children(level, index);
        assert_eq!(mine.len(), FANOUT);
        for child in differing(&mine, &theirs) {
            let node = index * FANOUT + child;
            if level + 1 == LEVELS {
                assert_eq!(leaves_under(LEVELS, node), node..node + 1);
                reached.insert(node);
            } else {
                // Every leaf under a differing inner node is a candidate.
                assert!(leaves_under(level + 1, node).contains(&(node * FANOUT)));
                queue.push_back((level + 1, node));
            }
        }
    }
    reached
}

fn shuffled<T: Clone>(rng: &mut fastrand::Rng, items: &[T]) -> Vec<T> {
    let mut out = items.to_vec();
    rng.shuffle(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// (a) The same set of (position, digest) in any order gives the same
    /// tree, root and every level.
    #[test]
    fn insertion_order_does_not_matter(
        seed in any::<u64>(),
        bits in 0u32..=10,
        n in 0usize..3000,
        narrow in any::<bool>(),
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let q = 1usize << bits;
        let partition = rng.usize(..q);
        let keys: Vec<(u64, u128)> =
            random_keys(&mut rng, bits, partition, n, narrow).into_values().collect();
        let mut a = MerkleTree::new(q);
        for &(pos, d) in &keys {
            a.update(pos, None, Some(d));
        }
        let mut b = MerkleTree::new(q);
        for (i, &(pos, d)) in shuffled(&mut rng, &keys).iter().enumerate() {
            b.update(pos, None, Some(d));
            if i % 50 == 0 {
                b.root(); // interleave lazy recomputation
            }
        }
        prop_assert_eq!(a.root(), b.root());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.len(), n as u64);
        prop_assert_eq!(a.is_empty(), n == 0);
        prop_assert_eq!(a.root() == EMPTY, n == 0);
        for level in 0..LEVELS {
            for index in 0..FANOUT.pow(level as u32) {
                prop_assert_eq!(a.children(level, index), b.children(level, index));
            }
        }
    }

    /// (b) Insert then remove every key (in another order) returns to the
    /// empty tree.
    #[test]
    fn remove_everything_returns_to_empty(
        seed in any::<u64>(),
        bits in 0u32..=10,
        n in 0usize..3000,
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let q = 1usize << bits;
        let partition = rng.usize(..q);
        let keys: Vec<(u64, u128)> =
            random_keys(&mut rng, bits, partition, n, false).into_values().collect();
        let mut tree = MerkleTree::new(q);
        for &(pos, d) in &keys {
            tree.update(pos, None, Some(d));
        }
        tree.root();
        for &(pos, d) in &shuffled(&mut rng, &keys) {
            tree.update(pos, Some(d), None);
        }
        prop_assert!(tree.is_empty());
        prop_assert_eq!(tree.root(), EMPTY);
        prop_assert_eq!(tree.root(), MerkleTree::new(q).root());
        prop_assert_eq!(&tree, &MerkleTree::new(q));
        prop_assert_eq!(tree.heap_bytes(), 0);
    }

    /// (c) Two key sets differing in k keys: `diff_leaves` and a descent
    /// following `differing(children)` both reach exactly the leaves that
    /// contain a differing key.
    #[test]
    fn descent_finds_exactly_the_differing_leaves(
        seed in any::<u64>(),
        bits in 0u32..=10,
        n in 0usize..5000,
        k in 0usize..20,
        narrow in any::<bool>(),
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let q = 1usize << bits;
        let partition = rng.usize(..q);
        let base = random_keys(&mut rng, bits, partition, n, narrow);
        let (other, changed) = perturb(&mut rng, &base, k, bits, partition, narrow);
        let expected: BTreeSet<usize> =
            changed.iter().map(|&pos| expected_leaf(bits, pos)).collect();

        let mut a = build(q, &base);
        let mut b = build(q, &other);
        let found = diff_leaves(&mut a, &mut b);
        prop_assert!(found.windows(2).all(|w| w[0] < w[1]));
        prop_assert_eq!(found.iter().copied().collect::<BTreeSet<_>>(), expected.clone());
        prop_assert_eq!(descend(&mut a, &mut b), expected.clone());
        prop_assert_eq!(a.root() == b.root(), k == 0);
        // Symmetric.
        prop_assert_eq!(diff_leaves(&mut b, &mut a), found);
    }

    /// (c') The same through a forest: keys spread over all partitions, the
    /// per-partition descents find exactly the (partition, leaf) pairs.
    #[test]
    fn forest_descent_finds_exactly_the_differing_leaves(
        seed in any::<u64>(),
        bits in 0u32..=6,
        n in 0usize..3000,
        k in 0usize..20,
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let q = 1usize << bits;
        let base: Keys = (0..n as u64).map(|id| (id, (rng.u64(..), rng.u128(..)))).collect();
        // Partition 0 with bits = 0 means "anywhere".
        let (other, changed) = perturb(&mut rng, &base, k, 0, 0, false);
        let expected: BTreeSet<(usize, usize)> = changed
            .iter()
            .map(|&pos| {
                let p = if bits == 0 { 0 } else { (pos >> (64 - bits)) as usize };
                (p, expected_leaf(bits, pos))
            })
            .collect();
        let mut fa = MerkleForest::new(q);
        let mut fb = MerkleForest::new(q);
        for &(pos, d) in base.values() {
            fa.update(pos, None, Some(d));
        }
        for &(pos, d) in other.values() {
            fb.update(pos, None, Some(d));
        }
        let mut found = BTreeSet::new();
        for p in 0..q {
            for leaf in diff_leaves(fa.tree(p), fb.tree(p)) {
                let range = fa.tree(p).leaf_positions(p, leaf);
                prop_assert!(changed.iter().any(|pos| range.contains(pos)));
                found.insert((p, leaf));
            }
        }
        prop_assert_eq!(found, expected);
        // Each tree matches one built on its own.
        for p in 0..q {
            let mut own = MerkleTree::new(q);
            for &(pos, d) in base.values().filter(|(pos, _)| fa.partition_of(*pos) == p) {
                own.update(pos, None, Some(d));
            }
            prop_assert_eq!(fa.root(p), own.root());
        }
    }

    /// (d) Changing a key's digest in one update equals removing then
    /// re-inserting it.
    #[test]
    fn change_is_remove_plus_insert(
        seed in any::<u64>(),
        bits in 0u32..=10,
        n in 1usize..1000,
        changes in 1usize..50,
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let q = 1usize << bits;
        let partition = rng.usize(..q);
        let mut keys = random_keys(&mut rng, bits, partition, n, false);
        let mut direct = build(q, &keys);
        let mut two_step = direct.clone();
        direct.root();
        for _ in 0..changes {
            let id = rng.u64(..n as u64);
            let (pos, old) = keys[&id];
            let new = rng.u128(..);
            direct.update(pos, Some(old), Some(new));
            two_step.update(pos, Some(old), None);
            two_step.update(pos, None, Some(new));
            keys.insert(id, (pos, new));
        }
        prop_assert_eq!(&direct, &two_step);
        prop_assert_eq!(direct.root(), two_step.root());
        prop_assert_eq!(&direct, &build(q, &keys));
        prop_assert_eq!(direct.root(), build(q, &keys).root());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// (e) One differing key (modified, added or removed) always changes the
    /// root, and the descent names its leaf alone.
    #[test]
    fn one_differing_key_changes_the_root(
        seed in any::<u64>(),
        bits in 0u32..=10,
        n in 0usize..300,
        narrow in any::<bool>(),
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let q = 1usize << bits;
        let partition = rng.usize(..q);
        let base = random_keys(&mut rng, bits, partition, n, narrow);
        let (other, changed) = perturb(&mut rng, &base, 1, bits, partition, narrow);
        let mut a = build(q, &base);
        let mut b = build(q, &other);
        prop_assert_ne!(a.root(), b.root());
        prop_assert_eq!(diff_leaves(&mut a, &mut b), vec![expected_leaf(bits, changed[0])]);
    }
}

#[test]
fn empty_trees_agree_and_have_no_differences() {
    let mut a = MerkleTree::new(16);
    let mut b = MerkleTree::new(16);
    assert_eq!(a.root(), EMPTY);
    assert!(diff_leaves(&mut a, &mut b).is_empty());
    let mut forest = MerkleForest::new(16);
    assert_eq!(forest.q(), 16);
    assert!((0..16).all(|p| forest.root(p) == EMPTY && forest.tree(p).is_empty()));
}

#[test]
#[should_panic(expected = "different partition counts")]
fn trees_for_different_q_do_not_compare() {
    let mut a = MerkleTree::new(16);
    let mut b = MerkleTree::new(32);
    diff_leaves(&mut a, &mut b);
}

#[test]
#[should_panic(expected = "power of two")]
fn q_must_be_a_power_of_two() {
    MerkleTree::new(12);
}
