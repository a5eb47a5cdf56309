//! Helpers shared by the seeded simulations: the set-union workload's
//! value encoding.

use std::collections::BTreeSet;

use bytes::Bytes;
use cluster::version::Siblings;

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
