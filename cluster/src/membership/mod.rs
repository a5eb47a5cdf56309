//! Cluster membership: the gossiped view of who is in the cluster, and the
//! ring that follows from it (Dynamo section 4.8).
//!
//! # The idea
//!
//! Every node keeps a [`ClusterState`]: the cluster's name, one [`Member`]
//! entry per node it has heard of (addresses, weight, status and a version),
//! and the current [`Ring`]. Nodes periodically exchange their states with a
//! random peer and [`ClusterState::merge`] what they receive. As in the
//! paper, membership changes are explicit (an operator or the node itself
//! changes an entry); failure detection is a separate, local matter and never
//! edits this state.
//!
//! # How it works
//!
//! * **Members are last-writer-wins registers with versions instead of
//!   clocks.** A change is made by whoever owns the entry (the node itself,
//!   or an admin acting for it) with [`ClusterState::update_member`], which
//!   bumps the entry's version. Merge keeps, per node id, the entry with the
//!   higher version; two different entries with the same version (two
//!   concurrent changes) are ordered by their content, `(status, weight,
//!   peer_addr, client_addr)`, and the greater wins. That is a maximum under
//!   a total order, so member merge is commutative, associative and
//!   idempotent: every node that has seen the same set of entries holds the
//!   same member map, whatever the order and duplication of gossip.
//! * **Removed members stay as tombstones.** A `Removed` entry is never
//!   deleted, so an older `Active` entry still travelling in some gossip loses
//!   to it (higher version, or at the same version `Removed` sorts above
//!   `Active`). Only a newer entry, i.e. a deliberate re-join, brings a node
//!   back.
//! * **The ring is a function of the members.** The ring is balanced for the
//!   *active weights*: members that are `Active` with a non-zero weight
//!   (`Leaving` members are left out: they keep serving until the new ring
//!   is in force, then hand off what they hold). After every change,
//!   [`ClusterState::reconcile`] checks whether the ring (or the target of
//!   the change in progress) was balanced for exactly the current active
//!   weights and, if not, makes [`Ring::rebalance`] of it (version + 1) the
//!   target of a [`Transition`]: the current ring keeps serving reads until
//!   every partition's new replicas hold its data (see `transition.rs`).
//!   Rings and transitions travel with the state; merge keeps the ring with
//!   the higher version, ties broken by [`Ring::precedence`], the greater
//!   transition target (progress sets of equal targets are united), then
//!   reconciles.
//!
//! ## Why member convergence is ring convergence
//!
//! Once membership stops changing, gossip brings every node to the same
//! member map M, hence the same active weights. Any node's ring, once it has
//! reconciled against M, is balanced for M. Take the greatest ring R (by
//! version, then precedence) among the nodes at that point: every node that
//! merges R adopts it (nothing is greater), and since R is balanced for M,
//! reconciling leaves it alone. So R spreads like any other gossip and all
//! nodes end with the same ring. Rebalancing is deterministic, so two nodes
//! that rebalance the same winning ring for the same members produce the
//! same ring, and concurrent reconciles do not fork the cluster.
//!
//! # CAVEATS
//!
//! * **Concurrent rebalances collide.** Two nodes that see different member
//!   sets can each rebalance to the same ring version with different
//!   owners. The tie-break picks one and the next reconcile rebalances it
//!   again for the merged members; this converges once membership stops
//!   changing, but while changes keep arriving, partitions may move more
//!   than once (each step is minimal, the sum need not be).
//! * **Versions are per entry, not clocks.** An admin who changes another
//!   node's entry must start from the latest version it knows; a change made
//!   from a stale view can lose to, or silently override, a concurrent one.
//! * **Tombstones accumulate.** Removed members are kept forever (a few
//!   dozen bytes each); reusing a node id needs a version above the
//!   tombstone's.
//! * **`Q` is whatever wins.** The partition count configured at start only
//!   seeds a node's first ring; if nodes disagree, the winning ring's `Q`
//!   spreads with it.
//! * **States are not authenticated.** [`ClusterState::decode`] rejects
//!   malformed data, and merge ignores another cluster's state (by name), but
//!   a peer can claim any entry with a huge version.
//!
//! [`Ring`]: crate::ring::Ring
//! [`Ring::rebalance`]: crate::ring::Ring::rebalance
//! [`Ring::precedence`]: crate::ring::Ring::precedence

mod member;
mod state;
mod transition;

pub use member::{Member, MemberStatus};
pub use state::ClusterState;
pub use transition::{moves, replicas_of, Move, Phase, Transition};

/// Errors from decoding a membership state that came from outside this
/// process (a peer or the disk).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The bytes are not a well-formed cluster state.
    #[error("corrupt cluster state: {0}")]
    Corrupt(String),
}
