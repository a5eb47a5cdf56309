//! Helpers shared by the integration tests: a replica on the memory
//! engine, and the set-union workload's value encoding.

// Each test crate compiles this module and uses only part of it.
#![allow(dead_code)]

use std::{collections::BTreeSet, sync::Arc};

use bytes::Bytes;
use cluster::{
    replica::{Replica, ReplicaConfig},
    storage::{Engine, MemoryEngine},
    version::Siblings,
};

/// A replica on a fresh memory engine keeping up to `max_siblings`
/// versions per key (dead keys are kept, as in a cluster).
pub fn memory_replica(max_siblings: usize) -> Replica {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    Replica::open(
        engine,
        ReplicaConfig {
            max_siblings,
            collect_dead_keys: false,
        },
    )
    .unwrap()
}

/// Every element held by the live versions of `state`.
pub fn elements(state: &Siblings) -> BTreeSet<u64> {
    state
        .live(0)
        .filter_map(|v| v.value())
        .flat_map(|v| {
            std::str::from_utf8(v)
                .unwrap()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A set as a comma-separated value.
pub fn encode(set: &BTreeSet<u64>) -> Bytes {
    Bytes::from(set.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
}
