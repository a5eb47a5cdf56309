//! Algebraic and causal laws of `cluster::version`, checked on states that a
//! real cluster can reach: a simulated history of writes and merges across
//! three replicas, with contexts taken from current or stale states.

use std::collections::BTreeMap;

use bytes::Bytes;
use cluster::version::{Context, Dot, Siblings, Version, VersionError, VersionVector};
use proptest::prelude::*;

const REPLICAS: usize = 3;

/// Where a write's client context comes from.
#[derive(Debug, Clone)]
enum CtxSource {
    /// A blind write.
    Empty,
    /// A fresh read of some replica.
    Replica(usize),
    /// A stale read: an earlier snapshot of some replica.
    Snapshot(usize),
}

#[derive(Debug, Clone)]
enum Op {
    /// A client write coordinated by replica `at`.
    Write {
        at: usize,
        ctx: CtxSource,
        value: Vec<u8>,
        tombstone: bool,
        ts: u64,
        expires: Option<u64>,
        /// How far the node-wide counter moves (other keys use it too).
        gap: u64,
    },
    /// Replica `into` merges the state of replica `from`.
    Merge { into: usize, from: usize },
    /// Remember replica `of`'s state, for stale contexts and law checks.
    Snapshot { of: usize },
    /// Replica `at` drops versions expired at `now`.
    Purge { at: usize, now: u64 },
}

fn ctx_source() -> impl Strategy<Value = CtxSource> {
    prop_oneof![
        1 => Just(CtxSource::Empty),
        3 => (0..REPLICAS).prop_map(CtxSource::Replica),
        1 => any::<usize>().prop_map(CtxSource::Snapshot),
    ]
}

/// Operations; `expiring` adds expiry times and purges (which supersede
/// versions outside of any write context, so exact-survivor checks skip them).
fn op(expiring: bool) -> BoxedStrategy<Op> {
    let expires = if expiring {
        proptest::option::of(0..100u64).boxed()
    } else {
        Just(None).boxed()
    };
    let write = (
        0..REPLICAS,
        ctx_source(),
        proptest::collection::vec(any::<u8>(), 0..4),
        proptest::bool::weighted(0.2),
        0..50u64,
        expires,
        1..4u64,
    )
        .prop_map(|(at, ctx, value, tombstone, ts, expires, gap)| Op::Write {
            at,
            ctx,
            value,
            tombstone,
            ts,
            expires,
            gap,
        });
    let merge = (0..REPLICAS, 0..REPLICAS).prop_map(|(into, from)| Op::Merge { into, from });
    let snapshot = (0..REPLICAS).prop_map(|of| Op::Snapshot { of });
    let purge = (0..REPLICAS, 0..100u64).prop_map(|(at, now)| Op::Purge { at, now });
    if expiring {
        prop_oneof![4 => write, 3 => merge, 1 => snapshot, 1 => purge].boxed()
    } else {
        prop_oneof![4 => write, 3 => merge, 1 => snapshot].boxed()
    }
}

fn history(expiring: bool) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(expiring), 0..40)
}

/// The simulated cluster for one key.
#[derive(Debug, Default)]
struct Sim {
    replicas: [Siblings; REPLICAS],
    /// Node-wide counters of nodes 1..=3 (index = node - 1).
    counters: [u64; REPLICAS],
    snapshots: Vec<Siblings>,
    /// Every version ever written.
    written: Vec<Version>,
    /// Every client context ever used by a write.
    write_contexts: Vec<VersionVector>,
}

impl Sim {
    fn run(ops: &[Op]) -> Sim {
        let mut sim = Sim::default();
        for op in ops {
            sim.step(op);
        }
        sim
    }

    fn context(&self, src: &CtxSource) -> VersionVector {
        match src {
            CtxSource::Empty => VersionVector::new(),
            CtxSource::Replica(i) => self.replicas[*i].context().clone(),
            CtxSource::Snapshot(_) if self.snapshots.is_empty() => VersionVector::new(),
            CtxSource::Snapshot(k) => self.snapshots[k % self.snapshots.len()].context().clone(),
        }
    }

    /// A client write at replica `at`; returns the new version's dot.
    fn write(&mut self, at: usize, ctx: VersionVector, version: Version) -> Dot {
        let dot = version.dot;
        self.written.push(version.clone());
        self.write_contexts.push(ctx.clone());
        self.replicas[at].apply_write(&ctx, version);
        assert_valid(&self.replicas[at]);
        dot
    }

    /// The next dot of replica `at`'s node, as a coordinator would pick it.
    fn next_dot(&mut self, at: usize, ctx: &VersionVector, gap: u64) -> Dot {
        let node = at as u64 + 1;
        let floor = self.replicas[at].min_fresh_counter(node, ctx);
        let counter = (self.counters[at] + gap).max(floor);
        self.counters[at] = counter;
        Dot::new(node, counter)
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Write {
                at,
                ctx,
                value,
                tombstone,
                ts,
                expires,
                gap,
            } => {
                let ctx = self.context(ctx);
                let dot = self.next_dot(*at, &ctx, *gap);
                let version = if *tombstone {
                    Version::tombstone(dot, *ts)
                } else {
                    Version::put(dot, *ts, *expires, Bytes::from(value.clone()))
                };
                self.write(*at, ctx, version);
            }
            Op::Merge { into, from } => {
                let other = self.replicas[*from].clone();
                self.replicas[*into].merge(&other);
                assert_valid(&self.replicas[*into]);
            }
            Op::Snapshot { of } => self.snapshots.push(self.replicas[*of].clone()),
            Op::Purge { at, now } => {
                self.replicas[*at].purge_expired(*now);
            }
        }
    }

    /// Merge of every replica's state, as anti-entropy would converge to.
    fn full_merge(&self) -> Siblings {
        let mut all = Siblings::new();
        for r in &self.replicas {
            all.merge(r);
        }
        all
    }

    /// Every reachable state we know of: replicas and snapshots.
    fn pool(&self) -> Vec<Siblings> {
        let mut pool: Vec<Siblings> = self.replicas.to_vec();
        pool.extend(self.snapshots.iter().cloned());
        pool
    }
}

/// Checks the documented invariant and that the state survives storage.
fn assert_valid(s: &Siblings) {
    let dots: Vec<Dot> = s.versions().iter().map(|v| v.dot).collect();
    assert!(
        dots.windows(2).all(|w| w[0] < w[1]),
        "sorted, unique: {dots:?}"
    );
    assert!(
        dots.iter().all(|d| s.context().covers(d)),
        "context covers dots"
    );
    assert_eq!(&Siblings::decode(&s.encode()).unwrap(), s);
}

fn join(a: &Siblings, b: &Siblings) -> Siblings {
    let mut out = a.clone();
    out.merge(b);
    out
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Keep the source tree clean: no proptest-regressions files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn merge_is_a_join(
        ops in history(true),
        picks in proptest::collection::vec(any::<usize>(), 3),
    ) {
        let sim = Sim::run(&ops);
        let pool = sim.pool();
        let pick = |i: usize| &pool[picks[i] % pool.len()];
        let (a, b, c) = (pick(0), pick(1), pick(2));
        prop_assert_eq!(join(a, b), join(b, a), "commutative");
        prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)), "associative");
        prop_assert_eq!(&join(a, a), a, "idempotent");
        let ab = join(a, b);
        prop_assert!(ab.context().descends(a.context()) && ab.context().descends(b.context()));
        assert_valid(&ab);
    }

    #[test]
    fn replicas_converge_in_any_order(
        ops in history(true),
        order in Just((0..REPLICAS).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        let sim = Sim::run(&ops);
        let mut shuffled = Siblings::new();
        for &i in &order {
            shuffled.merge(&sim.replicas[i]);
        }
        prop_assert_eq!(shuffled, sim.full_merge());
    }

    /// No concurrent write is ever silently dropped, and nothing that a
    /// write's context covered comes back: after a full merge the versions
    /// are exactly the written ones no client context covered.
    #[test]
    fn survivors_are_exactly_the_uncovered_writes(ops in history(false)) {
        let sim = Sim::run(&ops);
        let all = sim.full_merge();
        let expected: BTreeMap<Dot, &Version> = sim
            .written
            .iter()
            .filter(|v| !sim.write_contexts.iter().any(|c| c.covers(&v.dot)))
            .map(|v| (v.dot, v))
            .collect();
        let got: BTreeMap<Dot, &Version> = all.versions().iter().map(|v| (v.dot, v)).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn write_supersedes_exactly_what_context_covers(
        ops in history(false),
        src in ctx_source(),
        at in 0..REPLICAS,
        ts in 0..50u64,
    ) {
        let mut sim = Sim::run(&ops);
        let before = sim.full_merge();
        let ctx = sim.context(&src);
        let dot = sim.next_dot(at, &ctx, 1);
        sim.write(at, ctx.clone(), Version::put(dot, ts, None, Bytes::from_static(b"new")));
        let after = sim.full_merge();
        let mut expected: Vec<Dot> = before
            .versions()
            .iter()
            .map(|v| v.dot)
            .filter(|d| !ctx.covers(d))
            .collect();
        expected.push(dot);
        expected.sort();
        let got: Vec<Dot> = after.versions().iter().map(|v| v.dot).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn two_writes_with_same_context_both_survive(
        ops in history(false),
        src in ctx_source(),
        first in 0..REPLICAS,
        second in 0..REPLICAS,
        more in history(false),
    ) {
        let mut sim = Sim::run(&ops);
        let ctx = sim.context(&src);
        let d1 = sim.next_dot(first, &ctx, 1);
        sim.write(first, ctx.clone(), Version::put(d1, 1, None, Bytes::from_static(b"one")));
        let d2 = sim.next_dot(second, &ctx, 1);
        sim.write(second, ctx, Version::put(d2, 1, None, Bytes::from_static(b"two")));
        prop_assert_ne!(d1, d2);
        // Only blind writes and merges afterwards: nobody has read d1 or d2.
        for op in more {
            match op {
                Op::Write { ctx: CtxSource::Empty, .. } | Op::Merge { .. } => sim.step(&op),
                _ => {}
            }
        }
        let all = sim.full_merge();
        let live: Vec<Dot> = all.live(0).map(|v| v.dot).collect();
        prop_assert!(live.contains(&d1) && live.contains(&d2), "{:?}", live);
    }

    #[test]
    fn context_round_trips(pairs in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..8)) {
        let vv: VersionVector = pairs.into_iter().collect();
        let ctx = Context::new(vv.clone());
        let bytes = ctx.encode();
        prop_assert_eq!(bytes.is_empty(), vv.is_empty());
        let back = Context::decode(&bytes).unwrap();
        prop_assert_eq!(back.as_vv(), &vv);
    }

    #[test]
    fn context_of_reachable_state_round_trips(ops in history(true), at in 0..REPLICAS) {
        let sim = Sim::run(&ops);
        let ctx = Context::of(&sim.replicas[at]);
        prop_assert_eq!(Context::decode(&ctx.encode()).unwrap(), ctx);
    }

    #[test]
    fn context_decode_of_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 1..64)) {
        match Context::decode(&bytes) {
            Err(e) => prop_assert_eq!(e, VersionError::InvalidContext),
            Ok(ctx) => prop_assert_eq!(ctx.encode().to_vec(), bytes),
        }
    }

    #[test]
    fn context_detects_any_single_byte_change(
        pairs in proptest::collection::vec((any::<u64>(), 1..u64::MAX), 1..6),
        at in any::<usize>(),
        flip in 1..=255u8,
    ) {
        let mut bytes = Context::new(pairs.into_iter().collect()).encode().to_vec();
        let i = at % bytes.len();
        bytes[i] ^= flip;
        prop_assert_eq!(Context::decode(&bytes), Err(VersionError::InvalidContext));
    }

    #[test]
    fn siblings_decode_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..96), versioned in any::<bool>()) {
        if versioned && !bytes.is_empty() {
            bytes[0] = 1;
        }
        if let Ok(s) = Siblings::decode(&bytes) {
            assert_valid(&s);
        }
    }

    #[test]
    fn siblings_decode_of_damaged_state(
        ops in history(true),
        at in 0..REPLICAS,
        pos in any::<usize>(),
        flip in 1..=255u8,
        cut in any::<bool>(),
    ) {
        let sim = Sim::run(&ops);
        let mut bytes = sim.replicas[at].encode();
        let i = pos % bytes.len();
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] ^= flip;
        }
        match Siblings::decode(&bytes) {
            // A flipped value byte can still be a valid state; it must be valid.
            Ok(s) => assert_valid(&s),
            Err(e) => prop_assert!(matches!(e, VersionError::Corrupt(_))),
        }
    }
}
