//! Causality for one key: dots, version vectors and causal sibling sets.
//!
//! # The idea
//!
//! Every write gets a **dot**: the id of the node that coordinated it and a
//! counter taken from that node's persistent, strictly increasing counter. A
//! dot names one write, forever, on every replica. A **version vector** (VV)
//! summarises a set of dots: the entry `(A, n)` says "every dot of node `A`
//! with counter `<= n` that exists for this key has been seen". Counters of one
//! node may have gaps (the counter is node-wide, shared by all keys); a gap is
//! simply a dot that never existed for this key, so covering it is harmless.
//!
//! A replica keeps, per key, a [`Siblings`]: a *dot store* (the versions it
//! currently holds, each tagged with its dot) plus a *causal context* (a VV
//! covering every dot it has ever seen for the key, including dots it has
//! since thrown away). The pair answers two different questions: "what is
//! here" and "what do I know of". The difference between the two is exactly
//! the set of superseded (or expired and purged) versions, and that is how a
//! replica remembers a deletion without keeping the deleted data.
//!
//! ## Why a write with context C supersedes exactly what C covers
//!
//! A client reads a key (`DGET`) and gets the values plus the context of the
//! state it read. When it writes back (`DPUT key C value`), the context `C` is
//! the precise statement of what the client had seen when it decided on the
//! new value. Every version whose dot `C` covers was seen, so the new value
//! replaces it; every version `C` does not cover was unknown to the client and
//! might carry information it never looked at, so it must stay as a sibling.
//! Nothing else (wall clocks, arrival order) is allowed to decide, which is
//! why concurrent writes are never silently dropped.
//!
//! ## Why two writes with the same context both survive
//!
//! Two clients that read the same state and write back both send the same
//! `C`. Each write gets its own fresh dot, which `C` does not cover (the dot
//! did not exist when `C` was read). Neither write therefore supersedes the
//! other, even if both go through the same coordinator one after the other:
//! they become siblings. This is the point of *dotted* version vectors over
//! plain per-key version vectors, which would make the second write look like
//! it descends from the first merely because the coordinator saw both.
//!
//! ## Why replicas exchange whole sibling sets
//!
//! Merging two replicas ([`Siblings::merge`]) keeps a version if both have it,
//! or if one has it and the other's context does not cover its dot (the other
//! simply has not heard of it yet). A version that one side holds and the
//! other side's context covers but does not hold was superseded over there,
//! so it goes. That rule only works when the context travels *together* with
//! the dot store it describes: shipping a single new version without the
//! context would lose the information about what it superseded, and shipping
//! a context without the versions would make the receiver believe it has seen
//! (and discarded) versions it never received. So replication, read repair,
//! hinted handoff and anti-entropy all send a complete `Siblings` and the
//! receiver merges it.
//!
//! # How it works
//!
//! * [`Dot`], [`NodeId`]: the name of one write ([`dot`]).
//! * [`VersionVector`]: map node -> highest contiguous counter seen ([`vv`]).
//! * [`Version`], [`Payload`], [`Siblings`]: the per-key state with
//!   [`Siblings::apply_write`] (coordinator side), [`Siblings::merge`]
//!   (everything else), [`Siblings::winner`] (plain `GET`), and a versioned,
//!   validated storage encoding ([`siblings`]).
//! * [`EncodedSiblings`]: that encoding as replicas ship it on the quorum
//!   path, compared as bytes and decoded once ([`encoded`]).
//! * [`Context`]: the opaque, checksummed bytes handed to clients by `DGET`
//!   and accepted by `DPUT`/`DDEL`; empty bytes mean "never written" / blind
//!   write ([`context`]).
//!
//! `merge` is a lattice join on states reachable through `apply_write` and
//! `merge`: commutative, associative and idempotent, so replicas converge
//! whatever the order, duplication or batching of exchanges. The property
//! tests in `cluster/tests/version_laws.rs` check this on simulated histories.
//!
//! # Caveats
//!
//! * **Dots must never be reused.** A node's counter must be persisted and
//!   strictly increasing across restarts. If two different writes share a dot,
//!   replicas may silently keep one and drop the other.
//! * **A node that loses its disk must come back with a new node id.** Its old
//!   counter is gone, and restarting it would reissue dots that other replicas
//!   already cover in their contexts, so its new writes would be discarded as
//!   "already superseded".
//! * **Do not derive counters from a key's context alone.** Once a key is
//!   collected (all tombstones, state removed) its context is gone, while old
//!   contexts held by clients or other replicas still cover its dots. Use the
//!   node-wide counter, and raise it past [`Siblings::min_fresh_counter`] so a
//!   new dot is never covered by the local or the client context.
//! * **Contexts are not authenticated.** The checksum rejects garbage and
//!   truncation, not malice. A client that forges a context claiming dots that
//!   were never issued can make later writes from that node look superseded.
//!   Raising the counter past [`Siblings::min_fresh_counter`] protects the
//!   write being made, but a huge forged entry still burns counter space.
//! * **Tombstones are state.** Dropping a tombstone also drops the knowledge
//!   of what it superseded, so a replica that still holds an older value would
//!   resurrect it. Collect a key only once every replica has the tombstone and
//!   nothing (hint, handoff, membership change) is pending; in a single-node
//!   store [`Siblings::is_collectable`] is enough.
//! * **The winner is wall-clock based.** [`Siblings::winner`] orders by the
//!   coordinator's timestamp, then dot. It is deterministic on every node, but
//!   a skewed clock can make an older write win a plain `GET`; the siblings
//!   themselves are never lost and `DGET` shows them all.
//! * **Expiry is per version.** [`Siblings::purge_expired`] removes expired
//!   versions but keeps them covered by the context, so a merge from a replica
//!   that has not purged yet does not bring them back.

pub mod context;
pub mod dot;
pub mod encoded;
pub mod siblings;
pub mod vv;

#[cfg(test)]
mod tests;

pub use context::Context;
pub use dot::{Dot, NodeId};
pub use encoded::EncodedSiblings;
pub use siblings::{Payload, Siblings, Version};
pub use vv::VersionVector;

/// Errors from decoding causal data that came from outside this process
/// (a client, the disk, a peer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// A client-supplied context could not be decoded. The Display text is
    /// what `DPUT`/`DDEL` send after `-ERR `, so it is fixed by the spec.
    #[error("invalid context")]
    InvalidContext,
    /// Stored or replicated sibling data is malformed or breaks an invariant.
    #[error("corrupt version data: {0}")]
    Corrupt(String),
}
