//! [`KeyMap`]: the ordered map of the in-memory engines (memory and aof).
//!
//! A `BTreeMap<Vec<u8>, _>` search compares the wanted key with a dozen or
//! more stored keys, and each comparison follows a pointer to that key's
//! bytes: a cache miss each, which made a lookup among 100k keys cost
//! microseconds. Here every key keeps its first 8 bytes inline as a
//! big-endian integer. Storage keys start with the key's ring position (an
//! MD5 prefix), so two keys almost always differ there and a search touches
//! only the tree's own nodes. Order is the plain byte order of the keys.

use std::{cmp::Ordering, collections::BTreeMap, ops::Bound};

use super::Entry;

/// A key: its first 8 bytes (zero-padded) inline, then all its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MapKey {
    head: u64,
    bytes: Box<[u8]>,
}

impl MapKey {
    fn new(bytes: &[u8]) -> MapKey {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        MapKey {
            head: u64::from_be_bytes(head),
            bytes: bytes.into(),
        }
    }
}

impl Ord for MapKey {
    /// Byte order: if the zero-padded heads differ, the first differing byte
    /// is within the first 8 and decides as it would for the whole keys (a
    /// padding zero stands for "shorter", which sorts first); if they are
    /// equal, the whole keys decide.
    fn cmp(&self, other: &MapKey) -> Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.bytes.cmp(&other.bytes))
    }
}

impl PartialOrd for MapKey {
    fn partial_cmp(&self, other: &MapKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An ordered map from byte keys to byte values.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    map: BTreeMap<MapKey, Vec<u8>>,
}

impl KeyMap {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(&MapKey::new(key))
    }

    /// The value of `key`, to change in place.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Vec<u8>> {
        self.map.get_mut(&MapKey::new(key))
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.map.contains_key(&MapKey::new(key))
    }

    /// Sets `key` to `value`; returns the old value.
    pub fn insert(&mut self, key: &[u8], value: Vec<u8>) -> Option<Vec<u8>> {
        self.map.insert(MapKey::new(key), value)
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.map.remove(&MapKey::new(key))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Every entry in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Vec<u8>)> + '_ {
        self.map.iter().map(|(k, v)| (&k.bytes[..], v))
    }

    /// Up to `limit` entries from `start` (included) to `end` (excluded;
    /// `None`: to the last key), in key order.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Entry> {
        if limit == 0 || end.is_some_and(|end| start >= end) {
            return Vec::new();
        }
        let upper = end.map_or(Bound::Unbounded, |end| Bound::Excluded(MapKey::new(end)));
        self.map
            .range((Bound::Included(MapKey::new(start)), upper))
            .take(limit)
            .map(|(k, v)| (k.bytes.to_vec(), v.clone()))
            .collect()
    }
}

impl IntoIterator for KeyMap {
    type Item = (Vec<u8>, Vec<u8>);
    type IntoIter = Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)>>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.map.into_iter().map(|(k, v)| (k.bytes.into_vec(), v)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The inline head never changes the order: it is the order of the
        /// plain byte strings, short keys and shared prefixes included.
        #[test]
        fn orders_keys_as_their_bytes(
            a in proptest::collection::vec(0u8..4, 0..12),
            b in proptest::collection::vec(0u8..4, 0..12),
        ) {
            prop_assert_eq!(MapKey::new(&a).cmp(&MapKey::new(&b)), a.cmp(&b));
        }

        /// The map behaves as a `BTreeMap<Vec<u8>, Vec<u8>>` for inserts,
        /// removes, lookups and range scans.
        #[test]
        fn behaves_as_an_ordered_byte_map(
            ops in proptest::collection::vec(
                (proptest::collection::vec(0u8..3, 0..10), any::<bool>(), any::<u8>()),
                0..60,
            ),
            start in proptest::collection::vec(0u8..3, 0..10),
            end in proptest::collection::vec(0u8..3, 0..10),
            limit in 0usize..20,
        ) {
            let mut map = KeyMap::default();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (key, insert, value) in ops {
                if insert {
                    prop_assert_eq!(map.insert(&key, vec![value]), model.insert(key.clone(), vec![value]));
                } else {
                    prop_assert_eq!(map.remove(&key), model.remove(&key));
                }
                prop_assert_eq!(map.get(&key), model.get(&key));
            }
            prop_assert_eq!(map.len(), model.len());
            let listed: Vec<(Vec<u8>, Vec<u8>)> =
                map.iter().map(|(k, v)| (k.to_vec(), v.clone())).collect();
            let expected: Vec<(Vec<u8>, Vec<u8>)> =
                model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(&listed, &expected);
            let scanned = map.scan(&start, Some(&end), limit);
            let expected: Vec<(Vec<u8>, Vec<u8>)> = if start >= end {
                Vec::new()
            } else {
                model
                    .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            prop_assert_eq!(scanned, expected);
            let from: Vec<(Vec<u8>, Vec<u8>)> = map.scan(&start, None, usize::MAX);
            prop_assert_eq!(from.len(), model.range(start.clone()..).count());
            let owned: Vec<(Vec<u8>, Vec<u8>)> = map.into_iter().collect();
            prop_assert_eq!(owned, listed);
        }
    }
}
