//! [`KeyMap`]: the ordered map of the in-memory engines (memory and aof).
//!
//! A `BTreeMap<Vec<u8>, _>` of 100k keys is six levels deep, and a lookup
//! scans a node's keys at every level, following a pointer to each key's
//! bytes: dozens of cache misses, over a microsecond per lookup on the
//! quorum path. Storage keys start with the key's ring position (an MD5
//! prefix), so their first bytes are uniform: the map is cut into buckets
//! by its keys' leading bits (up to 65,536 buckets, by the first two bytes;
//! fewer while the map is small, four times as many each time it holds
//! over 4 entries per bucket), and a bucket is a short sorted vector (a
//! binary search over contiguous entries). Every key also keeps its first 8
//! bytes inline, so a comparison rarely leaves the entry.
//!
//! Order is the plain byte order of the keys: buckets follow the order of
//! the leading bits (a missing byte counts as zero, and a shorter key sorts
//! first within its bucket), and entries are sorted within a bucket.
//!
//! CAVEATS:
//! - Keys that share their first two bytes (keys without a ring-position
//!   prefix) crowd one bucket; past [`SMALL_BUCKET`] entries that bucket
//!   becomes a B-tree, so the worst case is a plain B-tree's.
//! - Growing the bucket array moves every entry once (the last time at
//!   about 65k keys, a few milliseconds). A bitmap of the non-empty
//!   buckets lets scans of a sparse map skip the empty ones.

use std::{cmp::Ordering, collections::BTreeMap, ops::Bound};

use super::Entry;

/// Leading key bits that pick a bucket: at first, and at most.
const FIRST_BUCKET_BITS: u32 = 4;
const MAX_BUCKET_BITS: u32 = 16;

/// Entries per bucket, on average, past which the buckets multiply.
const GROW_AT: usize = 4;

/// Entries a bucket holds as a sorted vector before it becomes a B-tree.
const SMALL_BUCKET: usize = 256;

/// A key's first 8 bytes (zero-padded), big-endian.
fn head_of(bytes: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = bytes.len().min(8);
    head[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(head)
}

/// The bucket of a key with head `head` among `1 << bits` buckets.
fn bucket_of(head: u64, bits: u32) -> usize {
    (head >> (64 - bits)) as usize
}

/// A key: its first 8 bytes (zero-padded) inline, then all its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MapKey {
    head: u64,
    bytes: Box<[u8]>,
}

impl MapKey {
    fn new(bytes: &[u8]) -> MapKey {
        MapKey {
            head: head_of(bytes),
            bytes: bytes.into(),
        }
    }

    /// Order against a key given as its head and bytes (no allocation).
    fn cmp_to(&self, head: u64, bytes: &[u8]) -> Ordering {
        self.head.cmp(&head).then_with(|| self.bytes[..].cmp(bytes))
    }
}

impl Ord for MapKey {
    /// Byte order: if the zero-padded heads differ, the first differing byte
    /// is within the first 8 and decides as it would for the whole keys (a
    /// padding zero stands for "shorter", which sorts first); if they are
    /// equal, the whole keys decide.
    fn cmp(&self, other: &MapKey) -> Ordering {
        self.cmp_to(other.head, &other.bytes)
    }
}

impl PartialOrd for MapKey {
    fn partial_cmp(&self, other: &MapKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The entries whose keys share their first two bytes.
#[derive(Debug, Clone)]
enum Bucket {
    /// Sorted by key.
    Small(Vec<(MapKey, Vec<u8>)>),
    /// A bucket that outgrew [`SMALL_BUCKET`].
    Large(BTreeMap<MapKey, Vec<u8>>),
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket::Small(Vec::new())
    }
}

/// Where `key` is or would go in a sorted vector.
fn search(entries: &[(MapKey, Vec<u8>)], head: u64, key: &[u8]) -> Result<usize, usize> {
    entries.binary_search_by(|(k, _)| k.cmp_to(head, key))
}

impl Bucket {
    fn get(&self, head: u64, key: &[u8]) -> Option<&Vec<u8>> {
        match self {
            Bucket::Small(entries) => search(entries, head, key).ok().map(|i| &entries[i].1),
            Bucket::Large(map) => map.get(&MapKey::new(key)),
        }
    }

    fn get_mut(&mut self, head: u64, key: &[u8]) -> Option<&mut Vec<u8>> {
        match self {
            Bucket::Small(entries) => match search(entries, head, key) {
                Ok(i) => Some(&mut entries[i].1),
                Err(_) => None,
            },
            Bucket::Large(map) => map.get_mut(&MapKey::new(key)),
        }
    }

    fn insert(&mut self, head: u64, key: &[u8], value: Vec<u8>) -> Option<Vec<u8>> {
        match self {
            Bucket::Small(entries) => match search(entries, head, key) {
                Ok(i) => Some(std::mem::replace(&mut entries[i].1, value)),
                Err(i) => {
                    entries.insert(i, (MapKey::new(key), value));
                    self.spill_if_large();
                    None
                }
            },
            Bucket::Large(map) => map.insert(MapKey::new(key), value),
        }
    }

    /// Adds an entry that sorts after every entry here (moving a map's
    /// entries in order into new buckets).
    fn push_last(&mut self, key: MapKey, value: Vec<u8>) {
        match self {
            Bucket::Small(entries) => {
                entries.push((key, value));
                self.spill_if_large();
            }
            Bucket::Large(map) => {
                map.insert(key, value);
            }
        }
    }

    /// A sorted vector past [`SMALL_BUCKET`] entries becomes a B-tree.
    fn spill_if_large(&mut self) {
        if let Bucket::Small(entries) = self {
            if entries.len() > SMALL_BUCKET {
                *self = Bucket::Large(std::mem::take(entries).into_iter().collect());
            }
        }
    }

    fn remove(&mut self, head: u64, key: &[u8]) -> Option<Vec<u8>> {
        match self {
            Bucket::Small(entries) => match search(entries, head, key) {
                Ok(i) => Some(entries.remove(i).1),
                Err(_) => None,
            },
            Bucket::Large(map) => map.remove(&MapKey::new(key)),
        }
    }

    /// Entries from the first key at or after `from` (all if `None`).
    fn iter_from<'a>(
        &'a self,
        from: Option<(u64, &[u8])>,
    ) -> Box<dyn Iterator<Item = (&'a MapKey, &'a Vec<u8>)> + 'a> {
        match self {
            Bucket::Small(entries) => {
                let first = from.map_or(0, |(head, key)| {
                    entries.partition_point(|(k, _)| k.cmp_to(head, key) == Ordering::Less)
                });
                Box::new(entries[first..].iter().map(|(k, v)| (k, v)))
            }
            Bucket::Large(map) => match from {
                None => Box::new(map.iter()),
                Some((_, key)) => {
                    Box::new(map.range((Bound::Included(MapKey::new(key)), Bound::Unbounded)))
                }
            },
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Bucket::Small(entries) => entries.is_empty(),
            Bucket::Large(map) => map.is_empty(),
        }
    }

    fn into_entries(self) -> Box<dyn Iterator<Item = (MapKey, Vec<u8>)>> {
        match self {
            Bucket::Small(entries) => Box::new(entries.into_iter()),
            Bucket::Large(map) => Box::new(map.into_iter()),
        }
    }
}

/// An ordered map from byte keys to byte values.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    /// `1 << bits` buckets once anything was inserted, else empty.
    buckets: Vec<Bucket>,
    bits: u32,
    /// One bit per bucket, set while it holds an entry.
    occupied: Vec<u64>,
    len: usize,
}

impl KeyMap {
    /// The first non-empty bucket at or after `from`.
    fn next_occupied(&self, from: usize) -> Option<usize> {
        let mut word = from / 64;
        let mut bits = *self.occupied.get(word)? & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            bits = *self.occupied.get(word)?;
        }
    }

    /// The non-empty buckets from `from` on, with their indexes.
    fn occupied_from(&self, from: usize) -> impl Iterator<Item = (usize, &Bucket)> + '_ {
        std::iter::successors(self.next_occupied(from), |i| self.next_occupied(i + 1))
            .map(|i| (i, &self.buckets[i]))
    }

    fn mark(&mut self, bucket: usize) {
        let bit = 1u64 << (bucket % 64);
        if self.buckets[bucket].is_empty() {
            self.occupied[bucket / 64] &= !bit;
        } else {
            self.occupied[bucket / 64] |= bit;
        }
    }

    fn bucket(&self, head: u64) -> Option<&Bucket> {
        self.buckets.get(bucket_of(head, self.bits))
    }

    /// Four times as many buckets (or the first ones), entries moved over
    /// in order: a bucket's entries go to four consecutive new buckets.
    fn grow(&mut self) {
        let bits = if self.buckets.is_empty() {
            FIRST_BUCKET_BITS
        } else {
            (self.bits + 2).min(MAX_BUCKET_BITS)
        };
        let old = std::mem::take(&mut self.buckets);
        self.bits = bits;
        self.buckets.resize_with(1 << bits, Bucket::default);
        self.occupied = vec![0; (1usize << bits).div_ceil(64)];
        for (key, value) in old.into_iter().flat_map(Bucket::into_entries) {
            let bucket = bucket_of(key.head, bits);
            self.buckets[bucket].push_last(key, value);
            self.occupied[bucket / 64] |= 1 << (bucket % 64);
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        let head = head_of(key);
        self.bucket(head)?.get(head, key)
    }

    /// Brings the entries of `keys` into the cache, all together, so their
    /// misses overlap: a lookup is a chain of dependent misses (the bucket,
    /// its entries, the key and value bytes), and a batch of lookups done
    /// one by one pays every chain in full. Here each stage makes one
    /// independent load per key, with no branch on what the load returns, so
    /// the processor issues the loads of many keys at once; the real lookups
    /// that follow find the lines cached. Reads only.
    pub fn warm(&self, keys: &[&[u8]]) {
        if self.buckets.is_empty() {
            return;
        }
        let heads: Vec<u64> = keys.iter().map(|k| head_of(k)).collect();
        // The bucket headers.
        let slots: Vec<&[(MapKey, Vec<u8>)]> = heads
            .iter()
            .map(|&head| match &self.buckets[bucket_of(head, self.bits)] {
                Bucket::Small(entries) => &entries[..],
                Bucket::Large(_) => &[],
            })
            .collect();
        // The entries (a few contiguous lines per bucket).
        let mut touched = 0u64;
        for entries in &slots {
            for (key, _) in entries.iter() {
                touched ^= key.head;
            }
        }
        // The key and value bytes of the entries looked for.
        for ((entries, &head), key) in slots.iter().zip(&heads).zip(keys) {
            if let Ok(i) = search(entries, head, key) {
                let (key, value) = &entries[i];
                touched ^= u64::from(key.bytes.last().copied().unwrap_or(0));
                // Every cache line of the value (it is copied out next).
                for byte in value.iter().step_by(64).chain(value.last()) {
                    touched ^= u64::from(*byte);
                }
            }
        }
        std::hint::black_box(touched);
    }

    /// The value of `key`, to change in place.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Vec<u8>> {
        let head = head_of(key);
        let bits = self.bits;
        self.buckets
            .get_mut(bucket_of(head, bits))?
            .get_mut(head, key)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; returns the old value.
    pub fn insert(&mut self, key: &[u8], value: Vec<u8>) -> Option<Vec<u8>> {
        if self.buckets.is_empty()
            || (self.len >= self.buckets.len() * GROW_AT && self.bits < MAX_BUCKET_BITS)
        {
            self.grow();
        }
        let head = head_of(key);
        let bucket = bucket_of(head, self.bits);
        let old = self.buckets[bucket].insert(head, key, value);
        if old.is_none() {
            self.len += 1;
            self.mark(bucket);
        }
        old
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let head = head_of(key);
        let bucket = bucket_of(head, self.bits);
        let old = self.buckets.get_mut(bucket)?.remove(head, key);
        if old.is_some() {
            self.len -= 1;
            self.mark(bucket);
        }
        old
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        *self = KeyMap::default();
    }

    /// Every entry in key order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Vec<u8>)> + '_ {
        self.occupied_from(0)
            .flat_map(|(_, b)| b.iter_from(None))
            .map(|(k, v)| (&k.bytes[..], v))
    }

    /// Up to `limit` entries from `start` (included) to `end` (excluded;
    /// `None`: to the last key), in key order.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        if limit == 0 || end.is_some_and(|end| start >= end) {
            return out;
        }
        let head = head_of(start);
        let first = bucket_of(head, self.bits);
        for (i, bucket) in self.occupied_from(first) {
            let from = (i == first).then_some((head, start));
            for (k, v) in bucket.iter_from(from) {
                if end.is_some_and(|end| &k.bytes[..] >= end) {
                    return out;
                }
                out.push((k.bytes.to_vec(), v.clone()));
                if out.len() == limit {
                    return out;
                }
            }
        }
        out
    }
}

impl IntoIterator for KeyMap {
    type Item = (Vec<u8>, Vec<u8>);
    type IntoIter = Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)>>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(
            self.buckets
                .into_iter()
                .flat_map(Bucket::into_entries)
                .map(|(k, v)| (k.bytes.into_vec(), v)),
        )
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Keys crowding a few buckets past [`SMALL_BUCKET`] (their sorted
        /// vectors become B-trees) keep every operation and the order right,
        /// across bucket boundaries too.
        #[test]
        fn crowded_buckets_stay_ordered(
            ops in proptest::collection::vec(
                (0u8..3, proptest::collection::vec(any::<u8>(), 0..3), 0u8..4),
                0..1200,
            ),
            start in proptest::collection::vec(0u8..3, 0..4),
            end in proptest::collection::vec(0u8..3, 0..4),
        ) {
            let mut map = KeyMap::default();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (first, rest, op) in ops {
                let mut key = vec![first, 1];
                key.extend(rest);
                if op == 0 {
                    prop_assert_eq!(map.remove(&key), model.remove(&key));
                } else {
                    prop_assert_eq!(map.insert(&key, vec![op]), model.insert(key.clone(), vec![op]));
                }
                if let Some(v) = map.get_mut(&key) {
                    v.push(9);
                    model.get_mut(&key).unwrap().push(9);
                }
            }
            prop_assert_eq!(map.len(), model.len());
            for (i, bucket) in map.buckets.iter().enumerate() {
                let bit = map.occupied[i / 64] >> (i % 64) & 1 == 1;
                prop_assert_eq!(bit, !bucket.is_empty(), "bucket {}", i);
            }
            let listed: Vec<(Vec<u8>, Vec<u8>)> =
                map.iter().map(|(k, v)| (k.to_vec(), v.clone())).collect();
            let expected: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
            prop_assert_eq!(listed, expected);
            let scanned = map.scan(&start, Some(&end), 500);
            let expected: Vec<(Vec<u8>, Vec<u8>)> = if start >= end {
                Vec::new()
            } else {
                model
                    .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
                    .take(500)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            prop_assert_eq!(scanned, expected);
        }
    }

    #[test]
    fn growing_to_the_most_buckets_keeps_every_key_in_order() {
        let mut map = KeyMap::default();
        let mut keys: Vec<Vec<u8>> = (0u64..150_000)
            .map(|i| {
                // Uniform leading bytes, as ring positions are.
                let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
                [&mixed.to_be_bytes()[..], b"key"].concat()
            })
            .collect();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(map.insert(key, vec![i as u8]), None);
        }
        assert_eq!(map.bits, MAX_BUCKET_BITS);
        assert_eq!(map.len(), keys.len());
        keys.sort();
        assert!(map.iter().map(|(k, _)| k).eq(keys.iter().map(|k| &k[..])));
        let page = map.scan(&keys[1000], Some(&keys[1500]), 10_000);
        assert!(page.iter().map(|(k, _)| k).eq(keys[1000..1500].iter()));
        for key in &keys[..70_000] {
            assert!(map.remove(key).is_some());
        }
        assert_eq!(map.scan(&[], None, 1)[0].0, keys[70_000]);
        assert_eq!(map.len(), 80_000);
    }

    #[test]
    fn a_bucket_past_its_vector_size_becomes_a_tree_and_keeps_working() {
        let mut map = KeyMap::default();
        let keys: Vec<Vec<u8>> = (0..SMALL_BUCKET as u32 * 3)
            .rev()
            .map(|i| [&b"ab"[..], &i.to_be_bytes()].concat())
            .collect();
        for key in &keys {
            assert_eq!(map.insert(key, key.clone()), None);
        }
        assert!(matches!(
            map.buckets[bucket_of(head_of(b"ab"), map.bits)],
            Bucket::Large(_)
        ));
        assert_eq!(map.len(), keys.len());
        let mut sorted = keys.clone();
        sorted.sort();
        let listed: Vec<Vec<u8>> = map.iter().map(|(k, _)| k.to_vec()).collect();
        assert_eq!(listed, sorted);
        for key in &keys {
            assert_eq!(map.get(key), Some(key));
            assert_eq!(map.remove(key).as_ref(), Some(key));
        }
        assert_eq!(map.len(), 0);
        assert!(map.iter().next().is_none());
    }

    #[test]
    fn warming_reads_only_whatever_the_keys_and_buckets() {
        let mut map = KeyMap::default();
        map.warm(&[b"absent".as_slice()]);
        // A crowded bucket (a B-tree) and spread keys side by side.
        for i in 0..SMALL_BUCKET as u32 * 2 {
            map.insert(&[b"\0\0".as_slice(), &i.to_be_bytes()].concat(), vec![1; 3]);
            map.insert(&(i.wrapping_mul(2_654_435_761)).to_be_bytes(), vec![]);
        }
        let before: Vec<(Vec<u8>, Vec<u8>)> = map.scan(&[], None, usize::MAX);
        let crowded = [b"\0\0".as_slice(), &7u32.to_be_bytes()].concat();
        let spread = 7u32.wrapping_mul(2_654_435_761).to_be_bytes();
        map.warm(&[&crowded, &spread, b"absent", b""]);
        assert_eq!(map.scan(&[], None, usize::MAX), before);
        assert_eq!(map.get(&crowded), Some(&vec![1; 3]));
    }
}
