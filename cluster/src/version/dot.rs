//! Dots: the globally unique name of one write.

use serde::{Deserialize, Serialize};

/// Identity of a node as far as causality is concerned. It must never be
/// reused by a node that lost its state (see the caveats in [`super`]).
pub type NodeId = u64;

/// One write event: the coordinating node and that node's counter value.
///
/// Counters start at 1: a [`super::VersionVector`] entry of 0 means "nothing
/// seen", so a dot with counter 0 would be covered by every context and is
/// rejected when decoding. Ordering is by node, then counter; it is only used
/// to keep sibling lists canonical and to break timestamp ties
/// deterministically, it says nothing about causality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The node that coordinated the write.
    pub node: NodeId,
    /// The node's counter at that write; strictly increasing per node, >= 1.
    pub counter: u64,
}

impl Dot {
    /// Convenience constructor.
    pub const fn new(node: NodeId, counter: u64) -> Dot {
        Dot { node, counter }
    }
}

impl std::fmt::Display for Dot {
    /// `node:counter`, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.node, self.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_node_then_counter() {
        assert!(Dot::new(1, 9) < Dot::new(2, 1));
        assert!(Dot::new(2, 1) < Dot::new(2, 3));
        assert_eq!(Dot::new(7, 3).to_string(), "7:3");
    }
}
