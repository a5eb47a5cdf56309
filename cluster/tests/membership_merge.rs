//! Laws of the gossiped membership state: member merge is a join
//! (commutative, associative, idempotent), gossip until quiet converges to one
//! state whose destination ring is balanced for the union of active members,
//! tombstones stick, transitions complete only through every step, and the
//! encoding round-trips and rejects garbage.

use std::collections::BTreeMap;

use cluster::membership::{ClusterState, Member, MemberStatus, Phase};
use cluster::ring::{self, Ring};
use cluster::version::NodeId;
use proptest::prelude::*;
use serde::Serialize;

const CLUSTER: &str = "test";
const Q: usize = 64;

fn status_strategy() -> impl Strategy<Value = MemberStatus> {
    prop_oneof![
        3 => Just(MemberStatus::Active),
        1 => Just(MemberStatus::Leaving),
        1 => Just(MemberStatus::Removed),
    ]
}

/// Entries for a small id space, so states overlap and collide.
fn member_strategy() -> impl Strategy<Value = Member> {
    (
        1u64..=6,
        prop::sample::select(vec!["p1", "p2"]),
        prop::sample::select(vec!["c1", "c2"]),
        0u32..=3,
        status_strategy(),
        1u64..=4,
    )
        .prop_map(|(id, peer, client, weight, status, version)| Member {
            id,
            peer_addr: peer.into(),
            client_addr: client.into(),
            weight,
            status,
            version,
        })
}

/// A node's state after hearing of some entries, one by one (each step
/// reconciles, so ring versions vary between states).
fn state_strategy() -> impl Strategy<Value = ClusterState> {
    (
        1u64..=6,
        1u32..=3,
        prop::collection::vec(member_strategy(), 0..8),
        prop::collection::vec((0u8..3, 1u64..=6, 0u32..Q as u32), 0..12),
    )
        .prop_map(|(me, weight, heard, progress)| {
            let mut state = ClusterState::new(CLUSTER, Member::new(me, "p1", "c1", weight), Q);
            for m in heard {
                state.upsert_member(m);
            }
            // Some progress on whatever transition is under way.
            for (kind, node, partition) in progress {
                match kind {
                    0 => state.note_aware(node),
                    1 => state.note_synced(partition, node),
                    _ => state.note_reading(node),
                };
            }
            state
        })
}

fn merged(a: &ClusterState, b: &ClusterState) -> ClusterState {
    let mut out = a.clone();
    out.merge(b);
    out
}

/// The member map every node should end with: per id, the greatest entry.
fn expected_members(states: &[ClusterState]) -> BTreeMap<NodeId, Member> {
    let mut out: BTreeMap<NodeId, Member> = BTreeMap::new();
    for m in states.iter().flat_map(|s| s.members().values()) {
        match out.get(&m.id) {
            Some(cur) if m.precedence(cur).is_le() => {}
            _ => {
                out.insert(m.id, m.clone());
            }
        }
    }
    out
}

/// Checks the ring being moved to is exactly balanced for the state's
/// active members.
fn assert_ring_balanced(state: &ClusterState) {
    let weights = state.active_weights();
    let ring = state.destination();
    assert_eq!(ring.members(), weights.as_slice());
    if weights.is_empty() {
        assert!(ring.is_empty());
    } else {
        assert_eq!(ring.partition_counts(), ring::targets(ring.q(), &weights));
    }
}

/// Merges pairs in round-robin sweeps until a whole sweep changes nothing;
/// returns the number of sweeps.
fn gossip_until_quiet(states: &mut [ClusterState]) -> usize {
    for sweep in 1..=20 {
        let mut changed = false;
        for i in 0..states.len() {
            for j in 0..states.len() {
                let other = states[j].clone();
                changed |= states[i].merge(&other);
            }
        }
        if !changed {
            return sweep;
        }
    }
    panic!("gossip did not settle in 20 sweeps");
}

proptest! {
    #[test]
    fn merge_is_commutative(a in state_strategy(), b in state_strategy()) {
        let ab = merged(&a, &b);
        let ba = merged(&b, &a);
        prop_assert_eq!(ab.members(), ba.members());
        // The ring is the winner of the two, reconciled: symmetric too.
        prop_assert_eq!(ab.digest(), ba.digest());
    }

    #[test]
    fn merge_is_idempotent(a in state_strategy(), b in state_strategy()) {
        let mut aa = a.clone();
        prop_assert!(!aa.merge(&a));
        prop_assert_eq!(&aa, &a);
        let mut ab = merged(&a, &b);
        let once = ab.clone();
        prop_assert!(!ab.merge(&b));
        prop_assert_eq!(&ab, &once);
    }

    #[test]
    fn merge_is_associative_on_members(
        a in state_strategy(),
        b in state_strategy(),
        c in state_strategy(),
    ) {
        let left = merged(&merged(&a, &b), &c);
        let right = merged(&a, &merged(&b, &c));
        prop_assert_eq!(left.members(), right.members());
        prop_assert_eq!(left.members(), &expected_members(&[a, b, c]));
        assert_ring_balanced(&left);
        assert_ring_balanced(&right);
    }

    #[test]
    fn gossip_converges_to_one_balanced_state(
        mut states in prop::collection::vec(state_strategy(), 2..=5),
        schedule in prop::collection::vec((0usize..5, 0usize..5), 0..20),
    ) {
        let expected = expected_members(&states);
        let k = states.len();
        for (i, j) in schedule {
            let other = states[j % k].clone();
            states[i % k].merge(&other);
        }
        gossip_until_quiet(&mut states);
        let digest = states[0].digest();
        for s in &states {
            prop_assert_eq!(s.digest(), digest);
            prop_assert_eq!(s, &states[0]);
        }
        prop_assert_eq!(states[0].members(), &expected);
        assert_ring_balanced(&states[0]);
    }

    #[test]
    fn tombstones_are_not_resurrected(
        removed_at in 1u64..10,
        older in 0u64..10,
        weight in 1u32..=3,
    ) {
        let active_at = older.min(removed_at);
        let mut gone = Member::new(2, "p1", "c1", weight);
        gone.status = MemberStatus::Removed;
        gone.version = removed_at;
        let mut stale = Member::new(2, "p9", "c9", weight + 1);
        stale.version = active_at;
        let mut a = ClusterState::new(CLUSTER, Member::new(1, "p1", "c1", 1), Q);
        a.upsert_member(gone.clone());
        let mut b = ClusterState::new(CLUSTER, Member::new(3, "p1", "c1", 1), Q);
        b.upsert_member(stale.clone());
        prop_assert!(b.destination().contains(2));
        for s in [merged(&a, &b), merged(&b, &a)] {
            prop_assert_eq!(s.member(2), Some(&gone));
            prop_assert!(!s.destination().contains(2));
            prop_assert!(!s.destination().owners().contains(&2));
        }
        // Upserting the stale entry directly does not bring it back either.
        prop_assert!(!a.upsert_member(stale));
        prop_assert_eq!(a.member(2), Some(&gone));
        // A deliberate re-join does.
        let mut back = Member::new(2, "p1", "c1", weight);
        back.version = removed_at + 1;
        prop_assert!(a.upsert_member(back));
        prop_assert!(a.destination().contains(2));
    }

    #[test]
    fn encoding_round_trips(s in state_strategy()) {
        let bytes = s.encode();
        prop_assert_eq!(&ClusterState::decode(&bytes).unwrap(), &s);
        for cut in 0..bytes.len() {
            prop_assert!(ClusterState::decode(&bytes[..cut]).is_err(), "prefix {}", cut);
        }
        let mut long = bytes.clone();
        long.push(0);
        prop_assert!(ClusterState::decode(&long).is_err());
        let mut other_format = bytes;
        other_format[0] = 3;
        prop_assert!(ClusterState::decode(&other_format).is_err());
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(s) = ClusterState::decode(&bytes) {
            // Whatever parses is well formed and round-trips.
            prop_assert_eq!(ClusterState::decode(&s.encode()).unwrap(), s);
        }
        let mut with_format = vec![1];
        with_format.extend_from_slice(&bytes);
        if let Ok(s) = ClusterState::decode(&with_format) {
            prop_assert_eq!(ClusterState::decode(&s.encode()).unwrap(), s);
        }
    }
}

/// Same layout as `ClusterState` and `Ring`, without their checks.
#[derive(Serialize)]
struct RawState {
    cluster_name: String,
    members: BTreeMap<NodeId, Member>,
    ring: (u64, u32, Vec<NodeId>, Vec<(NodeId, u32)>),
}

fn raw_bytes(raw: &RawState) -> Vec<u8> {
    let mut out = vec![1];
    out.extend(postcard::to_stdvec(raw).unwrap());
    out
}

#[test]
fn structurally_broken_states_are_rejected() {
    let member = Member::new(1, "p", "c", 1);
    let good = RawState {
        cluster_name: CLUSTER.into(),
        members: BTreeMap::from([(1, member.clone())]),
        ring: (1, 2, vec![1, 1], vec![(1, 1)]),
    };
    let decoded = ClusterState::decode(&raw_bytes(&good)).unwrap();
    assert_eq!(decoded, ClusterState::new(CLUSTER, member.clone(), 2));

    let misfiled = RawState {
        members: BTreeMap::from([(9, member.clone())]),
        ..good
    };
    assert!(ClusterState::decode(&raw_bytes(&misfiled)).is_err());
    let rings = [
        (1, 2, vec![1, 2], vec![(1, 1)]),
        (1, 3, vec![1, 1, 1], vec![(1, 1)]),
        (1, 2, vec![1], vec![(1, 1)]),
        (1, 2, vec![1, 1], vec![(1, 0)]),
    ];
    for ring in rings {
        let bad = RawState {
            cluster_name: CLUSTER.into(),
            members: BTreeMap::from([(1, member.clone())]),
            ring,
        };
        assert!(ClusterState::decode(&raw_bytes(&bad)).is_err());
    }
    assert!(ClusterState::decode(&[]).is_err());
}

/// Every node, as the runtime does, records its own progress on the
/// transition in progress (knows the target; fetched the partitions it
/// gains; reads from the target once all partitions are in place), then all
/// gossip; repeated until no transition is left. Returns the rounds taken.
fn drive_transitions(nodes: &mut [ClusterState], ids: &[NodeId]) -> usize {
    for round in 1..=10 {
        if nodes.iter().all(|n| n.transition().is_none()) {
            gossip_until_quiet(nodes);
            return round;
        }
        for (node, &id) in nodes.iter_mut().zip(ids) {
            node.note_aware(id);
            if node.phase() == Some(Phase::Syncing) {
                let mine: Vec<u32> = node
                    .pending_moves()
                    .filter(|m| m.to == id)
                    .map(|m| m.partition)
                    .collect();
                for p in mine {
                    node.note_synced(p, id);
                }
            }
            if node.phase() >= Some(Phase::SwitchingReads) {
                node.note_reading(id);
            }
        }
        gossip_until_quiet(nodes);
    }
    panic!("transitions did not complete in 10 rounds");
}

/// Three nodes that each know only themselves, introduced to one another
/// in a line (2 learns of 1, 3 of 2), gossip in a fixed pattern until they
/// agree on one target ring holding all three; the transition completes
/// once every node did its part, and not before.
#[test]
fn three_nodes_form_a_cluster() {
    let ids = [1, 2, 3];
    let mut nodes: Vec<ClusterState> = ids
        .iter()
        .map(|&id| {
            let me = Member::new(id, &format!("10.0.0.{id}:7000"), "c", 1);
            ClusterState::new(CLUSTER, me, 256)
        })
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node.ring().owners(), vec![i as u64 + 1; 256].as_slice());
    }
    let mut rounds = 0;
    while nodes.iter().any(|n| n.digest() != nodes[0].digest()) {
        rounds += 1;
        assert!(rounds <= 5, "no agreement after 5 rounds");
        // Each node pushes to the next one and pulls from it.
        for i in 0..3 {
            let j = (i + 1) % 3;
            let pushed = nodes[i].clone();
            nodes[j].merge(&pushed);
            let pulled = nodes[j].clone();
            nodes[i].merge(&pulled);
        }
    }
    // Agreed on where to go, not there yet: reads stay on the old ring.
    assert_eq!(nodes[0].phase(), Some(Phase::Announced));
    assert_eq!(nodes[0].read_ring(), nodes[0].ring());
    assert_eq!(nodes[0].destination().members(), &[(1, 1), (2, 1), (3, 1)]);
    drive_transitions(&mut nodes, &ids);
    let ring = nodes[0].ring();
    assert_eq!(ring.members(), &[(1, 1), (2, 1), (3, 1)]);
    let counts: Vec<usize> = ring.partition_counts().into_values().collect();
    assert_eq!(counts, vec![86, 85, 85]);
    for n in &nodes {
        assert_eq!(n, &nodes[0]);
        assert_eq!(n.members().len(), 3);
    }

    // Node 3 is removed by an admin on node 1; the others learn it, and a
    // stale copy of node 3's old state changes nothing.
    let stale = nodes[2].clone();
    assert!(nodes[0].update_member(3, |m| m.status = MemberStatus::Removed));
    let removed = nodes[0].clone();
    nodes[1].merge(&removed);
    nodes[2].merge(&removed);
    let before = nodes[1].clone();
    assert!(!nodes[1].merge(&stale));
    assert_eq!(nodes[1], before);
    // Node 3 is removed, so nobody waits for it.
    drive_transitions(&mut nodes[..2], &ids[..2]);
    let ring: &Ring = nodes[1].ring();
    assert_eq!(ring.members(), &[(1, 1), (2, 1)]);
    assert!(!ring.owners().contains(&3));
    assert_eq!(nodes[0].digest(), nodes[1].digest());
}

/// A transition waits at each step for every member that is not removed:
/// one node that never learns the target holds it in `Announced`.
#[test]
fn a_transition_waits_for_every_member() {
    let mut a = ClusterState::new(CLUSTER, Member::new(1, "p1", "c", 1), 16);
    a.upsert_member(Member::new(2, "p2", "c", 1));
    assert_eq!(a.phase(), Some(Phase::Announced));
    a.note_aware(1);
    assert_eq!(a.phase(), Some(Phase::Announced));
    a.note_aware(2);
    assert_eq!(a.phase(), Some(Phase::Syncing));
    let moves = a.moves();
    assert!(!moves.is_empty() && moves.iter().all(|m| m.to == 2 && m.from == vec![1]));
    for m in &moves[1..] {
        a.note_synced(m.partition, 2);
    }
    assert_eq!(
        a.phase(),
        Some(Phase::Syncing),
        "one partition still missing"
    );
    assert_eq!(a.read_ring(), a.ring());
    a.note_synced(moves[0].partition, 2);
    assert_eq!(a.phase(), Some(Phase::SwitchingReads));
    assert_eq!(a.read_ring(), a.destination());
    a.note_reading(2);
    assert!(a.transition().is_some());
    a.note_reading(1);
    assert!(a.transition().is_none());
    assert_eq!(a.ring().members(), &[(1, 1), (2, 1)]);
}

/// A change during a transition retargets it; synced pairs survive only
/// where the node is still a new replica of the partition.
#[test]
fn a_change_during_a_transition_keeps_only_valid_progress() {
    let mut a = ClusterState::new(CLUSTER, Member::new(1, "p1", "c", 1), 16);
    a.set_replicas(1);
    a.upsert_member(Member::new(2, "p2", "c", 1));
    a.note_aware(1);
    a.note_aware(2);
    let first = a.moves();
    for m in &first {
        a.note_synced(m.partition, m.to);
    }
    a.upsert_member(Member::new(3, "p3", "c", 1));
    let t = a.transition().expect("retargeted");
    assert!(t.aware.is_empty(), "awareness is per target");
    assert!(!t.synced.is_empty());
    for &(p, node) in &t.synced {
        assert_eq!(node, 2);
        assert_eq!(
            t.target.owners()[p as usize],
            2,
            "kept only where 2 still gains"
        );
    }
    assert_eq!(a.ring().members(), &[(1, 1)], "still serving from node 1");
}
