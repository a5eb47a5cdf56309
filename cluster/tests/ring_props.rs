//! Properties of the partitioned ring: balance against an independently
//! computed largest-remainder target, minimal movement on every membership
//! or weight change, preference-list shape, and determinism.

use std::collections::{BTreeMap, BTreeSet};

use cluster::ring::{self, Ring};
use cluster::version::NodeId;
use proptest::prelude::*;

/// Targets recomputed here without the ring's code: floor of `q * w / W`,
/// then one more for the largest remainders, ties to the smaller id.
fn expected_targets(q: usize, members: &[(NodeId, u32)]) -> BTreeMap<NodeId, usize> {
    let mut by_id: BTreeMap<NodeId, u32> = BTreeMap::new();
    for &(id, w) in members {
        let e = by_id.entry(id).or_default();
        *e = (*e).max(w);
    }
    let members: BTreeMap<NodeId, u32> = by_id.into_iter().filter(|m| m.1 > 0).collect();
    let total: u128 = members.values().map(|&w| u128::from(w)).sum();
    let mut out = BTreeMap::new();
    let mut rems = Vec::new();
    for (&id, &w) in &members {
        let exact = q as u128 * u128::from(w);
        out.insert(id, (exact / total) as usize);
        rems.push((std::cmp::Reverse(exact % total), id));
    }
    rems.sort();
    let leftover = q - out.values().sum::<usize>();
    for (_, id) in rems.into_iter().take(leftover) {
        *out.get_mut(&id).unwrap() += 1;
    }
    out
}

/// Owned partitions per node, members owning nothing left out.
fn owned(ring: &Ring) -> BTreeMap<NodeId, usize> {
    ring.partition_counts()
        .into_iter()
        .filter(|c| c.1 > 0)
        .collect()
}

/// The fewest partitions any assignment with the new counts can move: each
/// node must lose at least what its count drops by (a node that left drops
/// to zero).
fn minimum_moves(old: &Ring, new: &Ring) -> usize {
    let new_counts = new.partition_counts();
    old.partition_counts()
        .iter()
        .map(|(id, &c)| c.saturating_sub(new_counts.get(id).copied().unwrap_or(0)))
        .sum()
}

/// Checks a ring is exactly balanced for `members` and internally sound.
fn assert_balanced(ring: &Ring, members: &[(NodeId, u32)]) {
    let q = ring.q();
    assert_eq!(ring.owners().len(), q);
    assert_eq!(ring.members(), ring::normalise(members).as_slice());
    let want = expected_targets(q, members);
    assert_eq!(ring.partition_counts(), want);
    let total: usize = ring.members().iter().map(|m| m.1 as usize).sum();
    for &(id, w) in ring.members() {
        let ceil = (q * w as usize).div_ceil(total);
        assert!(want[&id] <= ceil, "node {id} owns {} > {ceil}", want[&id]);
        let share = ring.fair_share(id);
        assert!((share - (q * w as usize) as f64 / total as f64).abs() < 1e-9);
    }
    assert!(!ring.needs_rebalance(members));
}

fn q_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![Just(64usize), Just(256), Just(1024)]
}

/// 1..=20 distinct nodes with weights 1..=4.
fn members_strategy() -> impl Strategy<Value = Vec<(NodeId, u32)>> {
    prop::collection::btree_map(any::<NodeId>(), 1u32..=4, 1..=20)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #[test]
    fn new_ring_is_balanced(q in q_strategy(), members in members_strategy()) {
        let ring = Ring::new(q, &members);
        prop_assert_eq!(ring.version(), 1);
        assert_balanced(&ring, &members);
    }

    #[test]
    fn equal_weights_stay_within_ten_percent(
        (q, ids) in q_strategy().prop_flat_map(|q| {
            // Q / nodes >= 16.
            (Just(q), prop::collection::btree_set(any::<NodeId>(), 1..=(q / 16).min(20)))
        }),
        weight in 1u32..=4,
    ) {
        let members: Vec<(NodeId, u32)> = ids.iter().map(|&id| (id, weight)).collect();
        let ring = Ring::new(q, &members);
        for (id, count) in ring.partition_counts() {
            prop_assert!(count as f64 <= 1.1 * ring.fair_share(id), "{} owns {}", id, count);
        }
    }

    #[test]
    fn adding_a_node_moves_the_minimum(
        q in q_strategy(),
        members in members_strategy(),
        new_id in any::<NodeId>(),
        new_weight in 1u32..=4,
    ) {
        prop_assume!(members.iter().all(|m| m.0 != new_id));
        let old = Ring::new(q, &members);
        let mut grown = members.clone();
        grown.push((new_id, new_weight));
        let new = old.rebalance(&grown);
        prop_assert_eq!(new.version(), 2);
        assert_balanced(&new, &grown);
        let targets = expected_targets(q, &grown);
        let expected: usize = old
            .partition_counts()
            .iter()
            .map(|(id, &c)| c.saturating_sub(targets[id]))
            .sum();
        prop_assert_eq!(old.moved_partitions(&new), expected);
        // The newcomer gains all of that, unless rounding shifts a
        // partition between old members too.
        prop_assert!(expected >= new.partition_counts()[&new_id]);
    }

    #[test]
    fn removing_a_node_moves_the_minimum(
        q in q_strategy(),
        members in members_strategy(),
        which in any::<prop::sample::Index>(),
    ) {
        prop_assume!(members.len() >= 2);
        let gone = members[which.index(members.len())];
        let old = Ring::new(q, &members);
        let shrunk: Vec<_> = members.iter().copied().filter(|m| *m != gone).collect();
        let new = old.rebalance(&shrunk);
        assert_balanced(&new, &shrunk);
        let moved = old.moved_partitions(&new);
        // The leaver's partitions, plus whatever rounding takes from others.
        let forced: usize = shrunk
            .iter()
            .map(|(id, _)| old.partition_counts()[id].saturating_sub(new.partition_counts()[id]))
            .sum();
        prop_assert_eq!(moved, old.partition_counts()[&gone.0] + forced);
        prop_assert_eq!(moved, minimum_moves(&old, &new));
        prop_assert!(!new.owners().contains(&gone.0));
    }

    #[test]
    fn changing_a_weight_moves_the_minimum(
        q in q_strategy(),
        members in members_strategy(),
        which in any::<prop::sample::Index>(),
        weight in 1u32..=8,
    ) {
        let i = which.index(members.len());
        let old = Ring::new(q, &members);
        let mut changed = members.clone();
        changed[i].1 = weight;
        let new = old.rebalance(&changed);
        assert_balanced(&new, &changed);
        let moved = old.moved_partitions(&new);
        prop_assert_eq!(moved, minimum_moves(&old, &new));
        // The changed node's own count moves by its target's change, and
        // that much at least has to move.
        let id = members[i].0;
        let delta = old.partition_counts()[&id].abs_diff(new.partition_counts()[&id]);
        prop_assert!(moved >= delta);
        if weight == members[i].1 {
            prop_assert_eq!(moved, 0);
        }
    }

    #[test]
    fn every_step_of_a_history_moves_the_minimum(
        q in q_strategy(),
        start in members_strategy(),
        steps in prop::collection::vec(members_strategy(), 1..6),
    ) {
        let mut ring = Ring::new(q, &start);
        for (n, members) in steps.iter().enumerate() {
            // Keep some of the previous members so steps overlap.
            let mut next: Vec<_> = ring.members().iter().copied().step_by(2).collect();
            next.extend(members.iter().copied());
            let new = ring.rebalance(&next);
            prop_assert_eq!(new.version(), n as u64 + 2);
            assert_balanced(&new, &next);
            prop_assert_eq!(ring.moved_partitions(&new), minimum_moves(&ring, &new));
            ring = new;
        }
    }

    #[test]
    fn preference_lists_walk_the_ring(
        q in q_strategy(),
        members in members_strategy(),
        positions in prop::collection::vec(any::<u64>(), 1..20),
    ) {
        let ring = Ring::new(q, &members);
        let owners: BTreeSet<NodeId> = owned(&ring).into_keys().collect();
        for &pos in &positions {
            let list = ring.preference_list(pos);
            let distinct: BTreeSet<NodeId> = list.iter().copied().collect();
            prop_assert_eq!(distinct.len(), list.len(), "duplicates in {:?}", list);
            prop_assert_eq!(&distinct, &owners);
            prop_assert_eq!(list[0], ring.owners()[ring.partition_of(pos)]);
            // Each next node is the first new owner clockwise.
            let mut seen = BTreeSet::new();
            let expected: Vec<NodeId> = (0..q)
                .map(|s| ring.owners()[(ring.partition_of(pos) + s) % q])
                .filter(|o| seen.insert(*o))
                .collect();
            prop_assert_eq!(&list, &expected);
            for n in 0..=list.len() + 2 {
                prop_assert_eq!(ring.preference_list_n(pos, n), list[..n.min(list.len())].to_vec());
            }
        }
    }

    #[test]
    fn partition_of_matches_partition_ranges(q in q_strategy(), pos in any::<u64>()) {
        let ring = Ring::new(q, &[(1, 1)]);
        let p = ring.partition_of(pos);
        prop_assert!(p < q);
        prop_assert!(ring.partition_start(p) <= pos);
        if p + 1 < q {
            prop_assert!(pos < ring.partition_start(p + 1));
        }
        prop_assert_eq!(p as u128, (u128::from(pos) * q as u128) >> 64);
    }

    #[test]
    fn rings_do_not_depend_on_input_order(
        q in q_strategy(),
        members in members_strategy(),
        seed in any::<u64>(),
        change in members_strategy(),
    ) {
        let mut shuffled = members.clone();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        // Zero weights and duplicates with a smaller weight are ignored.
        shuffled.push((members[0].0, 0));
        shuffled.push((u64::MAX - members[0].0, 0));
        let a = Ring::new(q, &members);
        let b = Ring::new(q, &shuffled);
        prop_assert_eq!(&a, &b);
        let mut changed_shuffled = change.clone();
        changed_shuffled.reverse();
        prop_assert_eq!(a.rebalance(&change), b.rebalance(&changed_shuffled));
    }

    #[test]
    fn rings_survive_serialisation(q in q_strategy(), members in members_strategy()) {
        let ring = Ring::new(q, &members);
        let bytes = postcard::to_stdvec(&ring).unwrap();
        prop_assert_eq!(postcard::from_bytes::<Ring>(&bytes).unwrap(), ring);
    }
}

/// With equal weights and at least three nodes, freshly built rings have no
/// node owning two neighbouring partitions, so the first N of a preference
/// list span N partitions.
#[test]
fn equal_weight_rings_have_no_runs() {
    for q in [64usize, 256, 1024, 4096] {
        for n in 3..=20u64 {
            let members: Vec<(NodeId, u32)> = (0..n).map(|i| (i * 1_000_003 + 17, 2)).collect();
            let ring = Ring::new(q, &members);
            let runs = (0..q)
                .filter(|&p| ring.owners()[p] == ring.owners()[(p + 1) % q])
                .count();
            assert_eq!(runs, 0, "q={q} n={n}");
        }
    }
}

/// Successor sets vary: with five equal nodes, the first three of the
/// preference lists of a 1024-partition ring take many different orders
/// (a plain stripe would give one).
#[test]
fn preference_lists_are_varied() {
    let members: Vec<(NodeId, u32)> = (1..=5).map(|i| (i, 1)).collect();
    let ring = Ring::new(1024, &members);
    let lists: BTreeSet<Vec<NodeId>> = (0..1024)
        .map(|p| ring.preference_list_n(ring.partition_start(p), 3))
        .collect();
    assert!(lists.len() >= 30, "only {} distinct lists", lists.len());
}
