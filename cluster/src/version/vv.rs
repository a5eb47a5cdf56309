//! Version vectors: a compact summary of which dots have been seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Dot, NodeId};

/// Map from node to the highest counter seen for it; absent means 0.
///
/// Entry `(A, n)` means "every dot of node `A` with counter `<= n` for this
/// key has been seen". Zero entries are never stored, so two vectors that
/// cover the same dots are equal as structs (and encode to the same bytes);
/// deserialisation rejects zero entries to keep that true for foreign data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "VvWire")]
pub struct VersionVector {
    entries: BTreeMap<NodeId, u64>,
}

/// Unvalidated wire shape of [`VersionVector`] (same layout as its derive).
#[derive(Deserialize)]
struct VvWire {
    entries: BTreeMap<NodeId, u64>,
}

impl TryFrom<VvWire> for VersionVector {
    type Error = String;

    fn try_from(wire: VvWire) -> Result<Self, Self::Error> {
        if let Some((node, _)) = wire.entries.iter().find(|(_, c)| **c == 0) {
            return Err(format!("version vector has a zero entry for node {node}"));
        }
        Ok(VersionVector {
            entries: wire.entries,
        })
    }
}

impl VersionVector {
    /// The empty vector: nothing seen.
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// Highest counter seen for `node`, 0 if none.
    pub fn get(&self, node: NodeId) -> u64 {
        self.entries.get(&node).copied().unwrap_or(0)
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
        let entry = self.entries.entry(dot.node).or_insert(0);
        *entry = (*entry).max(dot.counter);
    }

    /// Pointwise maximum: afterwards `self` has seen what either had seen.
    pub fn join(&mut self, other: &VersionVector) {
        for (&node, &counter) in &other.entries {
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
        self.entries.iter().map(|(&n, &c)| (n, c))
    }

    /// Whether `self >= other` pointwise, i.e. `self` covers every dot that
    /// `other` covers.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.entries.iter().all(|(&n, &c)| self.get(n) >= c)
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
}
