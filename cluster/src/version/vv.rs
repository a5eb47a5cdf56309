//! Version vectors: a compact summary of which dots have been seen.

use std::fmt;

use serde::{
    de::{MapAccess, Visitor},
    Deserialize, Deserializer, Serialize, Serializer,
};
use smallvec::SmallVec;

use super::{Dot, NodeId};

/// `(node, counter)` pairs sorted by node. A key's vector names the few
/// nodes that coordinated its writes (about N), so the pairs live inline:
/// states are decoded, joined and encoded on every write, and a tree map
/// cost an allocation each time.
type Entries = SmallVec<[(NodeId, u64); 4]>;

/// Map from node to the highest counter seen for it; absent means 0.
///
/// Entry `(A, n)` means "every dot of node `A` with counter `<= n` for this
/// key has been seen". Zero entries are never stored, so two vectors that
/// cover the same dots are equal as structs (and encode to the same bytes);
/// deserialisation rejects zero entries, and entries out of node order, to
/// keep that true for foreign data. It encodes as a struct whose one field,
/// `entries`, is a map from node to counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector {
    #[serde(
        serialize_with = "serialize_entries",
        deserialize_with = "deserialize_entries"
    )]
    entries: Entries,
}

fn serialize_entries<S: Serializer>(entries: &Entries, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(entries.iter().map(|(node, counter)| (node, counter)))
}

fn deserialize_entries<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Entries, D::Error> {
    struct EntriesVisitor;

    impl<'de> Visitor<'de> for EntriesVisitor {
        type Value = Entries;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map from node id to a non-zero counter, in node order")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
            let mut entries = Entries::new();
            while let Some((node, counter)) = map.next_entry::<NodeId, u64>()? {
                if counter == 0 {
                    return Err(serde::de::Error::custom(format!(
                        "version vector has a zero entry for node {node}"
                    )));
                }
                if entries.last().is_some_and(|&(last, _)| last >= node) {
                    return Err(serde::de::Error::custom(format!(
                        "version vector entries out of node order at node {node}"
                    )));
                }
                entries.push((node, counter));
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(EntriesVisitor)
}

impl VersionVector {
    /// The empty vector: nothing seen.
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    fn find(&self, node: NodeId) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&node, |&(n, _)| n)
    }

    /// Highest counter seen for `node`, 0 if none.
    pub fn get(&self, node: NodeId) -> u64 {
        self.find(node).map_or(0, |i| self.entries[i].1)
    }

    /// Whether `dot` has been seen (`dot.counter <= get(dot.node)`).
    pub fn covers(&self, dot: &Dot) -> bool {
        dot.counter <= self.get(dot.node)
    }

    /// Record `dot` as seen. Raising the entry to `dot.counter` also covers
    /// lower counters; that is sound because a node's dots for a key are
    /// issued in increasing order and each state that knows a dot knows (or
    /// has superseded) every earlier dot of the same node.
    pub fn add(&mut self, dot: Dot) {
        if dot.counter == 0 {
            return; // keeps the "no zero entries" invariant; covers nothing new
        }
        match self.find(dot.node) {
            Ok(i) => self.entries[i].1 = self.entries[i].1.max(dot.counter),
            Err(i) => self.entries.insert(i, (dot.node, dot.counter)),
        }
    }

    /// Pointwise maximum: afterwards `self` has seen what either had seen.
    pub fn join(&mut self, other: &VersionVector) {
        for &(node, counter) in &other.entries {
            self.add(Dot { node, counter });
        }
    }

    /// True when nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of nodes with a non-zero entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `(node, counter)` pairs in node order, zero entries never included.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// Whether `self >= other` pointwise, i.e. `self` covers every dot that
    /// `other` covers.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.entries.iter().all(|&(n, c)| self.get(n) >= c)
    }
}

impl FromIterator<(NodeId, u64)> for VersionVector {
    /// Builds a vector by [`VersionVector::add`]ing each pair (duplicates take
    /// the maximum, zero counters are ignored).
    fn from_iter<I: IntoIterator<Item = (NodeId, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (node, counter) in iter {
            vv.add(Dot { node, counter });
        }
        vv
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn vv(pairs: &[(NodeId, u64)]) -> VersionVector {
        pairs.iter().copied().collect()
    }

    #[test]
    fn get_covers_add() {
        let mut v = VersionVector::new();
        assert!(v.is_empty());
        assert_eq!(v.get(1), 0);
        assert!(!v.covers(&Dot::new(1, 1)));
        v.add(Dot::new(1, 5));
        v.add(Dot::new(1, 3)); // lower: no change
        assert_eq!(v.get(1), 5);
        assert!(v.covers(&Dot::new(1, 5)));
        assert!(v.covers(&Dot::new(1, 2)));
        assert!(!v.covers(&Dot::new(1, 6)));
        assert!(!v.covers(&Dot::new(2, 1)));
        v.add(Dot::new(3, 0));
        assert_eq!(v.len(), 1, "zero counters are never stored");
    }

    #[test]
    fn join_and_descends() {
        let mut a = vv(&[(1, 2), (2, 5)]);
        let b = vv(&[(1, 4), (3, 1)]);
        assert!(!a.descends(&b) && !b.descends(&a));
        a.join(&b);
        assert_eq!(a, vv(&[(1, 4), (2, 5), (3, 1)]));
        assert!(a.descends(&b));
        assert!(a.descends(&VersionVector::new()));
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![(1, 4), (2, 5), (3, 1)]);
    }

    #[test]
    fn serde_rejects_zero_entries() {
        let mut raw = BTreeMap::new();
        raw.insert(4u64, 0u64);
        let bytes = postcard::to_stdvec(&raw).unwrap();
        assert!(postcard::from_bytes::<VersionVector>(&bytes).is_err());
        let good = vv(&[(4, 2)]);
        let bytes = postcard::to_stdvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<VersionVector>(&bytes).unwrap(), good);
    }

    #[test]
    fn encodes_as_the_tree_map_it_replaced_and_refuses_disorder() {
        // The layout the vector had as a struct around a BTreeMap: stored
        // states and peers' messages decode the same.
        #[derive(Serialize)]
        struct Before {
            entries: BTreeMap<NodeId, u64>,
        }
        let pairs = [
            (1u64, 7u64),
            (3, 1),
            (u64::MAX, 300),
            (9, 2),
            (2, 1),
            (40, 5),
        ];
        let before = Before {
            entries: pairs.iter().copied().collect(),
        };
        let now = vv(&pairs);
        let bytes = postcard::to_stdvec(&before).unwrap();
        assert_eq!(postcard::to_stdvec(&now).unwrap(), bytes);
        assert_eq!(postcard::from_bytes::<VersionVector>(&bytes).unwrap(), now);
        // The same pairs out of node order, or a node twice: refused.
        let unsorted: Vec<u8> = [
            vec![2u8],
            postcard::to_stdvec(&(5u64, 1u64)).unwrap(),
            postcard::to_stdvec(&(4u64, 1u64)).unwrap(),
        ]
        .concat();
        assert!(postcard::from_bytes::<VersionVector>(&unsorted).is_err());
        let twice: Vec<u8> = [
            vec![2u8],
            postcard::to_stdvec(&(4u64, 1u64)).unwrap(),
            postcard::to_stdvec(&(4u64, 2u64)).unwrap(),
        ]
        .concat();
        assert!(postcard::from_bytes::<VersionVector>(&twice).is_err());
        let sorted: Vec<u8> = [
            vec![2u8],
            postcard::to_stdvec(&(4u64, 1u64)).unwrap(),
            postcard::to_stdvec(&(5u64, 1u64)).unwrap(),
        ]
        .concat();
        assert_eq!(
            postcard::from_bytes::<VersionVector>(&sorted).unwrap(),
            vv(&[(4, 1), (5, 1)])
        );
    }
}
