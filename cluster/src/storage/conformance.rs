//! The [`Engine`] conformance suite: every check runs against a fresh
//! [`MemoryEngine`] and fresh [`SledEngine`]s (both durability modes), so all
//! engines provably agree on the contract. Plus a property test that mirrors
//! random operation sequences on memory and sled and compares every result.
//!
//! To add an engine, add a module to the `conformance!` invocation at the
//! bottom with a constructor for it.

use std::collections::BTreeMap;

use super::{AofEngine, CachedEngine, Durability, Engine, MemoryEngine, SledEngine};

/// Everything the checks need from an engine under test. Keeps the sled temp
/// directory alive for as long as the engine.
pub(super) struct Fixture {
    pub(super) engine: Box<dyn Engine>,
    pub(super) _dir: Option<tempfile::TempDir>,
}

pub(super) fn memory() -> Fixture {
    Fixture {
        engine: Box::new(MemoryEngine::new()),
        _dir: None,
    }
}

pub(super) fn sled(durability: Durability) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    // A small cache keeps the many parallel test databases cheap.
    let engine = SledEngine::open(dir.path(), durability, Some(16 << 20)).expect("open sled");
    Fixture {
        engine: Box::new(engine),
        _dir: Some(dir),
    }
}

pub(super) fn aof(durability: Durability) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = AofEngine::open(dir.path(), durability).expect("open aof");
    Fixture {
        engine: Box::new(engine),
        _dir: Some(dir),
    }
}

/// Sled behind a read cache small enough that evictions happen in the checks.
pub(super) fn cached_sled() -> Fixture {
    let Fixture { engine, _dir } = sled(PERIODIC);
    Fixture {
        engine: Box::new(CachedEngine::new(std::sync::Arc::from(engine), 32 * 1024)),
        _dir,
    }
}

const PERIODIC: Durability = Durability::Periodic { flush_every_ms: 50 };

fn kv(pairs: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.clone()).collect()
}

// ---------------------------------------------------------------- checks

fn empty_engine(e: &dyn Engine) {
    assert!(!e.name().is_empty());
    assert_eq!(e.get(b"missing").unwrap(), None);
    assert_eq!(e.get(b"").unwrap(), None);
    assert_eq!(e.count().unwrap(), 0);
    assert_eq!(e.scan_from(b"", 10).unwrap(), vec![]);
    assert_eq!(e.meta_get("node_id").unwrap(), None);
    e.delete(b"missing").unwrap(); // deleting an absent key is fine
    e.flush().unwrap();
}

fn put_get_delete_overwrite(e: &dyn Engine) {
    e.put(b"k1", b"v1").unwrap();
    e.put(b"k2", b"v2").unwrap();
    assert_eq!(e.get(b"k1").unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(e.get(b"k2").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(e.get(b"k3").unwrap(), None);

    // overwrite: longer, then shorter
    e.put(b"k1", b"a much longer value than before").unwrap();
    assert_eq!(
        e.get(b"k1").unwrap().as_deref(),
        Some(&b"a much longer value than before"[..])
    );
    e.put(b"k1", b"x").unwrap();
    assert_eq!(e.get(b"k1").unwrap().as_deref(), Some(&b"x"[..]));
    assert_eq!(e.count().unwrap(), 2);

    e.delete(b"k1").unwrap();
    assert_eq!(e.get(b"k1").unwrap(), None);
    assert_eq!(e.get(b"k2").unwrap().as_deref(), Some(&b"v2"[..]));
    e.delete(b"k1").unwrap(); // twice is fine
    assert_eq!(e.count().unwrap(), 1);

    // re-insert after delete
    e.put(b"k1", b"again").unwrap();
    assert_eq!(e.get(b"k1").unwrap().as_deref(), Some(&b"again"[..]));
    assert_eq!(e.count().unwrap(), 2);
}

fn binary_keys_and_values(e: &dyn Engine) {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    // every byte value as a one-byte key, with a value containing every byte
    for b in 0..=255u8 {
        let mut v = all_bytes.clone();
        v.rotate_left(b as usize);
        e.put(&[b], &v).unwrap();
    }
    for b in 0..=255u8 {
        let mut v = all_bytes.clone();
        v.rotate_left(b as usize);
        assert_eq!(e.get(&[b]).unwrap(), Some(v), "key {b:#04x}");
    }
    assert_eq!(e.count().unwrap(), 256);
    // one-byte keys sort by unsigned byte value
    let scanned = e.scan_from(b"", 1000).unwrap();
    assert_eq!(
        keys(&scanned),
        (0..=255u8).map(|b| vec![b]).collect::<Vec<_>>()
    );

    // a key containing every byte value, including NUL and 0xff
    e.put(&all_bytes, b"all").unwrap();
    assert_eq!(e.get(&all_bytes).unwrap().as_deref(), Some(&b"all"[..]));

    // empty value is present, not absent
    e.put(b"empty", b"").unwrap();
    assert_eq!(e.get(b"empty").unwrap(), Some(vec![]));
    let hit = e.scan_from(b"empty", 1).unwrap();
    assert_eq!(hit, kv(&[(b"empty", b"")]));

    // empty key is a valid key and sorts first
    e.put(b"", b"root").unwrap();
    assert_eq!(e.get(b"").unwrap().as_deref(), Some(&b"root"[..]));
    assert_eq!(e.scan_from(b"", 1).unwrap(), kv(&[(b"", b"root")]));
    e.delete(b"").unwrap();
    assert_eq!(e.get(b"").unwrap(), None);
    // now the smallest key is [0x00], whose value is the unrotated all_bytes
    assert_eq!(e.scan_from(b"", 1).unwrap(), kv(&[(b"\x00", &all_bytes)]));
}

fn large_value(e: &dyn Engine) {
    let mib: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + i / 251) as u8).collect();
    e.put(b"big", &mib).unwrap();
    e.put(b"small", b"s").unwrap();
    assert_eq!(e.get(b"big").unwrap().as_deref(), Some(&mib[..]));
    let scanned = e.scan_from(b"big", 1).unwrap();
    assert_eq!(scanned.len(), 1);
    assert_eq!(scanned[0].0, b"big");
    assert!(scanned[0].1 == mib, "scan returned a different 1 MiB value");
    // size accounting notices a 1 MiB value (sled: once flushed to disk)
    e.flush().unwrap();
    assert!(
        e.size_bytes() > 0,
        "size_bytes should be > 0 after a 1 MiB put"
    );
    // overwrite the big value with a small one and back
    e.put(b"big", b"tiny").unwrap();
    assert_eq!(e.get(b"big").unwrap().as_deref(), Some(&b"tiny"[..]));
    e.put(b"big", &mib).unwrap();
    assert_eq!(e.get(b"big").unwrap().as_deref(), Some(&mib[..]));
    e.delete(b"big").unwrap();
    assert_eq!(e.get(b"big").unwrap(), None);
    assert_eq!(e.count().unwrap(), 1);
}

/// Keys in their expected (byte-lexicographic) order, inserted shuffled.
const ORDERED: &[&[u8]] = &[
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x01",
    b"A",
    b"a",
    b"a\x00",
    b"aa",
    b"ab",
    b"b",
    b"ba",
    b"\x7f",
    b"\x80",
    b"\xfe\xff",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
];

fn insert_ordered_shuffled(e: &dyn Engine) {
    // a fixed permutation: step through with a stride coprime to the length
    let n = ORDERED.len();
    for i in 0..n {
        let k = ORDERED[(i * 5 + 3) % n];
        let mut v = b"v:".to_vec();
        v.extend_from_slice(k);
        e.put(k, &v).unwrap();
    }
}

fn scan_ordering_and_limits(e: &dyn Engine) {
    insert_ordered_shuffled(e);
    let expected: Vec<Vec<u8>> = ORDERED.iter().map(|k| k.to_vec()).collect();

    // everything, ascending, values attached to the right keys
    let all = e.scan_from(b"", usize::MAX).unwrap();
    assert_eq!(keys(&all), expected);
    for (k, v) in &all {
        assert_eq!(&v[2..], &k[..]);
    }
    assert_eq!(e.count().unwrap(), expected.len() as u64);

    // limit
    assert_eq!(e.scan_from(b"", 0).unwrap(), vec![]);
    assert_eq!(keys(&e.scan_from(b"", 1).unwrap()), &expected[..1]);
    assert_eq!(keys(&e.scan_from(b"", 3).unwrap()), &expected[..3]);
    assert_eq!(keys(&e.scan_from(b"", expected.len()).unwrap()), expected);
    assert_eq!(
        keys(&e.scan_from(b"", expected.len() + 1).unwrap()),
        expected
    );

    // start at an existing key: inclusive
    assert_eq!(
        keys(&e.scan_from(b"a", 3).unwrap()),
        [&b"a"[..], b"a\x00", b"aa"]
    );
    // start between keys: the next key up
    assert_eq!(
        keys(&e.scan_from(b"a\x00\x00", 2).unwrap()),
        [&b"aa"[..], b"ab"]
    );
    assert_eq!(keys(&e.scan_from(b"abc", 1).unwrap()), [&b"b"[..]]);
    assert_eq!(keys(&e.scan_from(b"\x81", 100).unwrap()), &expected[13..]);
    // start at the last key, and past the end
    assert_eq!(
        keys(&e.scan_from(b"\xff\xff", 5).unwrap()),
        [&b"\xff\xff"[..]]
    );
    assert_eq!(e.scan_from(b"\xff\xff\x00", 5).unwrap(), vec![]);
    assert_eq!(e.scan_from(b"\xff\xff\xff\xff", 5).unwrap(), vec![]);

    // paging with "last key + 0x00" visits every key exactly once
    let mut paged = Vec::new();
    let mut start = Vec::new();
    loop {
        let page = e.scan_from(&start, 4).unwrap();
        assert!(page.len() <= 4);
        let Some((last, _)) = page.last() else { break };
        start = last.clone();
        start.push(0);
        paged.extend(keys(&page));
    }
    assert_eq!(paged, expected);

    // ranged scans stop before `end`, whatever the limit
    assert_eq!(
        keys(&e.scan_range(b"a", b"ab", 100).unwrap()),
        [&b"a"[..], b"a\x00", b"aa"]
    );
    assert_eq!(
        keys(&e.scan_range(b"a", b"ab", 2).unwrap()),
        [&b"a"[..], b"a\x00"]
    );
    assert_eq!(e.scan_range(b"a", b"a", 10).unwrap(), vec![]);
    assert_eq!(e.scan_range(b"b", b"a", 10).unwrap(), vec![]);
    assert_eq!(e.scan_range(b"a", b"ab", 0).unwrap(), vec![]);
    assert_eq!(
        keys(&e.scan_range(b"", b"\xff\xff\xff", usize::MAX).unwrap()),
        expected
    );

    // deleted keys disappear from scans
    e.delete(b"aa").unwrap();
    assert_eq!(
        keys(&e.scan_from(b"a\x00", 2).unwrap()),
        [&b"a\x00"[..], b"ab"]
    );
}

fn count_tracks_writes(e: &dyn Engine) {
    for i in 0..100u32 {
        e.put(&i.to_be_bytes(), b"v").unwrap();
    }
    assert_eq!(e.count().unwrap(), 100);
    for i in 0..100u32 {
        e.put(&i.to_be_bytes(), b"overwritten").unwrap(); // no new keys
    }
    assert_eq!(e.count().unwrap(), 100);
    for i in (0..100u32).step_by(2) {
        e.delete(&i.to_be_bytes()).unwrap();
    }
    assert_eq!(e.count().unwrap(), 50);
    e.meta_put("not_a_key", b"x").unwrap();
    assert_eq!(e.count().unwrap(), 50, "metadata must not be counted");
}

fn clear_keeps_meta(e: &dyn Engine) {
    insert_ordered_shuffled(e);
    e.meta_put("node_id", b"n1").unwrap();
    e.meta_put("dot_lease", &42u64.to_be_bytes()).unwrap();
    e.clear().unwrap();
    assert_eq!(e.count().unwrap(), 0);
    assert_eq!(e.scan_from(b"", 100).unwrap(), vec![]);
    for k in ORDERED {
        assert_eq!(e.get(k).unwrap(), None);
    }
    assert_eq!(e.meta_get("node_id").unwrap().as_deref(), Some(&b"n1"[..]));
    assert_eq!(
        e.meta_get("dot_lease").unwrap(),
        Some(42u64.to_be_bytes().to_vec())
    );
    // usable after clear; clearing an empty engine is fine
    e.put(b"after", b"clear").unwrap();
    assert_eq!(e.scan_from(b"", 10).unwrap(), kv(&[(b"after", b"clear")]));
    e.clear().unwrap();
    e.clear().unwrap();
    assert_eq!(e.count().unwrap(), 0);
}

fn meta_get_put(e: &dyn Engine) {
    assert_eq!(e.meta_get("node_id").unwrap(), None);
    e.meta_put("node_id", b"node-a").unwrap();
    assert_eq!(
        e.meta_get("node_id").unwrap().as_deref(),
        Some(&b"node-a"[..])
    );
    e.meta_put("node_id", b"node-b").unwrap();
    assert_eq!(
        e.meta_get("node_id").unwrap().as_deref(),
        Some(&b"node-b"[..])
    );
    e.meta_put("empty", b"").unwrap();
    assert_eq!(e.meta_get("empty").unwrap(), Some(vec![]));
    e.meta_put("", b"empty name").unwrap();
    assert_eq!(e.meta_get("").unwrap().as_deref(), Some(&b"empty name"[..]));
    e.meta_put("bin", &[0, 255, 0, 255]).unwrap();
    assert_eq!(e.meta_get("bin").unwrap(), Some(vec![0, 255, 0, 255]));
    e.meta_put("ünïcödé", b"ok").unwrap();
    assert_eq!(e.meta_get("ünïcödé").unwrap().as_deref(), Some(&b"ok"[..]));

    // metadata and data are separate namespaces
    assert_eq!(e.get(b"node_id").unwrap(), None);
    assert_eq!(e.scan_from(b"", 10).unwrap(), vec![]);
    assert_eq!(e.count().unwrap(), 0);
    e.put(b"node_id", b"data").unwrap();
    assert_eq!(
        e.meta_get("node_id").unwrap().as_deref(),
        Some(&b"node-b"[..])
    );
    e.delete(b"node_id").unwrap();
    assert_eq!(
        e.meta_get("node_id").unwrap().as_deref(),
        Some(&b"node-b"[..])
    );
}

fn concurrent_writers(e: &dyn Engine) {
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 200;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let k = [t.to_be_bytes(), i.to_be_bytes()].concat();
                    e.put(&k, &i.to_le_bytes()).unwrap();
                    if i % 10 == 0 {
                        let _ = e.scan_from(&t.to_be_bytes(), 5).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(e.count().unwrap(), u64::from(THREADS * PER_THREAD));
    let all = e.scan_from(b"", usize::MAX).unwrap();
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    for (k, v) in all {
        assert_eq!(
            &k[4..],
            &u32::from_le_bytes(v.try_into().unwrap()).to_be_bytes()
        );
    }
}

fn size_bytes_reports_something(e: &dyn Engine) {
    for i in 0..50u32 {
        e.put(&i.to_be_bytes(), &[7u8; 1024]).unwrap();
    }
    e.flush().unwrap();
    assert!(e.size_bytes() > 0);
}

fn namespaces_are_separate(e: &dyn Engine) {
    let hints = e.namespace("hints").unwrap();
    e.put(b"k", b"data").unwrap();
    hints.put(b"k", b"hint").unwrap();
    hints.put(b"only-hint", b"h").unwrap();
    assert_eq!(e.get(b"k").unwrap().as_deref(), Some(&b"data"[..]));
    assert_eq!(hints.get(b"k").unwrap().as_deref(), Some(&b"hint"[..]));
    assert_eq!(e.get(b"only-hint").unwrap(), None);
    assert_eq!(e.count().unwrap(), 1);
    assert_eq!(keys(&hints.scan_from(b"", 10).unwrap()).len(), 2);
    e.clear().unwrap();
    assert_eq!(
        hints.count().unwrap(),
        2,
        "clearing the data keeps the namespace"
    );
    hints.clear().unwrap();
    e.put(b"k2", b"v").unwrap();
    assert_eq!(
        e.count().unwrap(),
        1,
        "clearing the namespace keeps the data"
    );
}

// ---------------------------------------------------------------- wiring

macro_rules! conformance {
    ($( $engine:ident => $make:expr ),* $(,)?) => {
        $(
            mod $engine {
                #[allow(unused_imports)]
                use super::*;
                conformance!(@checks $make;
                    empty_engine,
                    put_get_delete_overwrite,
                    binary_keys_and_values,
                    large_value,
                    scan_ordering_and_limits,
                    count_tracks_writes,
                    clear_keeps_meta,
                    meta_get_put,
                    concurrent_writers,
                    size_bytes_reports_something,
                    namespaces_are_separate,
                );
            }
        )*
    };
    (@checks $make:expr; $( $check:ident ),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let fixture: Fixture = $make;
                super::$check(&*fixture.engine);
            }
        )*
    };
}

conformance! {
    memory_engine => memory(),
    sled_periodic => sled(PERIODIC),
    sled_every_write => sled(Durability::EveryWrite),
    cached_sled => cached_sled(),
    aof_periodic => aof(PERIODIC),
    aof_every_write => aof(Durability::EveryWrite),
}

// ---------------------------------------------------------------- mirror

mod mirror {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Put(Vec<u8>, Vec<u8>),
        Delete(Vec<u8>),
        Get(Vec<u8>),
        Scan(Vec<u8>, usize),
        Count,
        Clear,
        MetaPut(String, Vec<u8>),
        MetaGet(String),
        Flush,
        /// Close the sled engine and open it again on the same directory.
        Reopen,
    }

    /// Short keys over a tiny alphabet, so operations collide often and
    /// prefixes and NUL/0xff bytes are exercised.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', b'b', 0xff]), 0..4)
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..64)
    }

    fn op() -> impl Strategy<Value = Op> {
        let name = prop::sample::select(vec!["node_id", "lease", ""]).prop_map(String::from);
        prop_oneof![
            8 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
            3 => key().prop_map(Op::Delete),
            3 => key().prop_map(Op::Get),
            3 => (key(), 0usize..8).prop_map(|(k, n)| Op::Scan(k, n)),
            1 => Just(Op::Count),
            1 => Just(Op::Clear),
            1 => (name.clone(), value()).prop_map(|(n, v)| Op::MetaPut(n, v)),
            1 => name.prop_map(Op::MetaGet),
            1 => Just(Op::Flush),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn memory_and_sled_agree(ops in prop::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            mirror(&ops, || Box::new(SledEngine::open(dir.path(), PERIODIC, Some(4 << 20)).unwrap()))?;
        }

        #[test]
        fn memory_and_aof_agree(ops in prop::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            // A tiny rewrite threshold, so that rewrites happen between reopens.
            mirror(&ops, || Box::new(AofEngine::open_with(dir.path(), PERIODIC, 256).unwrap()))?;
        }
    }

    /// Runs `ops` on a memory engine, the engine `open` makes (reopened by
    /// `Op::Reopen`) and a model, comparing every answer.
    fn mirror(ops: &[Op], open: impl Fn() -> Box<dyn Engine>) -> Result<(), TestCaseError> {
        {
            let mem = MemoryEngine::new();
            let mut sled = open();
            // an independent model of the data, to check memory too
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();

            for (i, op) in ops.iter().enumerate() {
                let ctx = format!("op #{i}: {op:?}");
                match op {
                    Op::Put(k, v) => {
                        mem.put(k, v).unwrap();
                        sled.put(k, v).unwrap();
                        model.insert(k.clone(), v.clone());
                    }
                    Op::Delete(k) => {
                        mem.delete(k).unwrap();
                        sled.delete(k).unwrap();
                        model.remove(k);
                    }
                    Op::Get(k) => {
                        let m = mem.get(k).unwrap();
                        prop_assert_eq!(&m, &sled.get(k).unwrap(), "{}", ctx);
                        prop_assert_eq!(&m, &model.get(k).cloned(), "{}", ctx);
                    }
                    Op::Scan(k, n) => {
                        let m = mem.scan_from(k, *n).unwrap();
                        prop_assert_eq!(&m, &sled.scan_from(k, *n).unwrap(), "{}", ctx);
                        let want: Vec<_> = model
                            .range(k.clone()..)
                            .take(*n)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        prop_assert_eq!(&m, &want, "{}", ctx);
                    }
                    Op::Count => {
                        let m = mem.count().unwrap();
                        prop_assert_eq!(m, sled.count().unwrap(), "{}", ctx);
                        prop_assert_eq!(m, model.len() as u64, "{}", ctx);
                    }
                    Op::Clear => {
                        mem.clear().unwrap();
                        sled.clear().unwrap();
                        model.clear();
                    }
                    Op::MetaPut(n, v) => {
                        mem.meta_put(n, v).unwrap();
                        sled.meta_put(n, v).unwrap();
                    }
                    Op::MetaGet(n) => {
                        prop_assert_eq!(
                            mem.meta_get(n).unwrap(),
                            sled.meta_get(n).unwrap(),
                            "{}",
                            ctx
                        );
                    }
                    Op::Flush => {
                        mem.flush().unwrap();
                        sled.flush().unwrap();
                    }
                    Op::Reopen => {
                        drop(sled);
                        sled = open();
                    }
                }
            }
            // final full comparison
            let m = mem.scan_from(b"", usize::MAX).unwrap();
            prop_assert_eq!(&m, &sled.scan_from(b"", usize::MAX).unwrap());
            prop_assert_eq!(m.len(), model.len());
        }
        Ok(())
    }
}
