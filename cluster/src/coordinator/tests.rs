//! Coordinator behaviour on one node, driven without a runtime: the futures
//! never wait, so one poll completes them.

use std::{future::Future, pin::pin, sync::Arc, task::Context as TaskContext};

use bytes::Bytes;

use super::*;
use crate::storage::MemoryEngine;

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = TaskContext::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("single-node coordinator futures never wait"),
    }
}

fn coordinator(max_siblings: usize) -> Coordinator {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    Coordinator::open(
        engine,
        CoordinatorConfig {
            max_siblings,
            replicas: 1,
        },
    )
    .unwrap()
}

fn values(siblings: &Siblings, now: u64) -> Vec<Bytes> {
    siblings
        .live(now)
        .filter_map(|v| v.value().cloned())
        .collect()
}

#[test]
fn blind_writes_become_siblings_and_a_covering_write_replaces_them() {
    let c = coordinator(64);
    let empty = VersionVector::default();
    block_on(c.put(b"k", Write::value(empty.clone(), Bytes::from("a"), None), 1)).unwrap();
    let after = block_on(c.put(b"k", Write::value(empty, Bytes::from("b"), None), 2)).unwrap();
    assert_eq!(values(&after, 3).len(), 2);
    let context = after.context().clone();
    let merged = block_on(c.put(b"k", Write::value(context, Bytes::from("ab"), None), 4)).unwrap();
    assert_eq!(values(&merged, 5), vec![Bytes::from("ab")]);
}

#[test]
fn tombstone_with_full_context_removes_the_key_on_one_replica() {
    let c = coordinator(64);
    let s = block_on(c.put(
        b"k",
        Write::value(VersionVector::default(), Bytes::from("v"), None),
        1,
    ))
    .unwrap();
    assert_eq!(c.stored_keys(), 1);
    block_on(c.put(b"k", Write::tombstone(s.context().clone()), 2)).unwrap();
    assert_eq!(c.stored_keys(), 0);
    assert!(c.local_get(b"k").unwrap().is_empty());
}

#[test]
fn sibling_limit_refuses_the_write_and_stores_nothing() {
    let c = coordinator(2);
    for v in ["a", "b"] {
        block_on(c.put(
            b"k",
            Write::value(VersionVector::default(), Bytes::from(v), None),
            1,
        ))
        .unwrap();
    }
    let err = block_on(c.put(
        b"k",
        Write::value(VersionVector::default(), Bytes::from("c"), None),
        1,
    ));
    assert!(matches!(err, Err(ClusterError::TooManySiblings { max: 2 })));
    assert_eq!(values(&c.local_get(b"k").unwrap(), 2).len(), 2);
    assert_eq!(
        CoordinatorStats::get(&c.stats().sibling_limit_rejections),
        1
    );
}

#[test]
fn concurrent_updates_on_one_node_are_serialised() {
    let c = Arc::new(coordinator(64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    block_on(c.update(b"n", 1, |s| {
                        let n: u64 = s
                            .winner(1)
                            .and_then(|v| v.value())
                            .map_or(0, |b| std::str::from_utf8(b).unwrap().parse().unwrap());
                        let write = Write::value(
                            s.context().clone(),
                            Bytes::from((n + 1).to_string()),
                            None,
                        );
                        (Some(write), ())
                    }))
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        values(&c.local_get(b"n").unwrap(), 2),
        vec![Bytes::from("400")]
    );
}

#[test]
fn expired_versions_are_purged_and_the_key_collected() {
    let c = coordinator(64);
    block_on(c.put(
        b"k",
        Write::value(VersionVector::default(), Bytes::from("v"), Some(10)),
        1,
    ))
    .unwrap();
    block_on(c.put(
        b"other",
        Write::value(VersionVector::default(), Bytes::from("v"), None),
        1,
    ))
    .unwrap();
    let mut cursor = c.purge_expired_step(0, 1000, 11).unwrap();
    while cursor != 0 {
        cursor = c.purge_expired_step(cursor, 1000, 11).unwrap();
    }
    assert!(c.local_get(b"k").unwrap().is_empty());
    assert_eq!(c.stored_keys(), 1);
}

#[test]
fn scan_visits_every_key_once_in_small_batches() {
    let c = coordinator(64);
    for i in 0..100 {
        let key = format!("key:{i}");
        block_on(c.put(
            key.as_bytes(),
            Write::value(VersionVector::default(), Bytes::from("v"), None),
            1,
        ))
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let (batch, next) = c.scan(cursor, 7).unwrap();
        seen.extend(batch.into_iter().map(|(k, _)| k));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 100);
}
