//! Tombstone collection: deleted keys leave the store only once no replica
//! and no hint could bring their data back.
//!
//! A pass walks a batch of this node's keys. A key qualifies when nothing
//! live is left in it and its newest version is older than
//! `tombstone-grace-ms`. It is collected only if:
//! 1. all N owners of the key are up, and each holds exactly the same state
//!    as this node (so no owner still has a version the tombstone must
//!    suppress);
//! 2. no member holds a hint for the key (a pending handoff could deliver an
//!    older value to an owner after the collection), and no member that is
//!    not an owner holds any other state of it (its hand-off after a ring
//!    change would offer that value to owners that no longer have the
//!    tombstone: found by the fault harness's reweight nemesis);
//! 3. each owner then removes the key only if its state is still exactly the
//!    one compared (`Collect`), updating its Merkle tree in the same step.
//!
//! A key that fails a check stays, counted in `tombstones_pending`, and is
//! tried again on a later pass.
//!
//! CAVEATS:
//! - The grace period bounds how late an in-flight message may arrive; it
//!   must exceed the request timeout (the default, 60 s, is far above it).

use std::sync::{atomic::Ordering, Arc};

use bytes::Bytes;

use super::node::Node;
use crate::{
    keyspace,
    stats::CoordinatorStats,
    version::Siblings,
    wire::{Request, Response},
};

/// Keys looked at per pass.
const BATCH: usize = 256;

impl Node {
    /// One collection pass over up to 256 keys from ring position `cursor`;
    /// returns where the next pass starts (0: wrapped).
    pub async fn collect_tombstones(self: &Arc<Self>, cursor: u64) -> u64 {
        let now = super::now_ms();
        let grace_ms = self.config().tombstone_grace.as_millis() as u64;
        let Ok((entries, next)) = self.replica().scan(cursor, BATCH) else {
            return 0;
        };
        let mut pending = 0;
        for (key, state) in entries {
            if !state.is_collectable(now) {
                continue;
            }
            let newest = state.versions().iter().map(|v| v.timestamp_ms).max();
            if newest.is_some_and(|t| t.saturating_add(grace_ms) > now) {
                pending += 1;
                continue;
            }
            if !self.try_collect(&key, &state).await {
                pending += 1;
            }
        }
        let stats = self.replica().stats();
        if cursor == 0 {
            stats.tombstones_pending.store(pending, Ordering::Relaxed);
        } else {
            stats
                .tombstones_pending
                .fetch_add(pending, Ordering::Relaxed);
        }
        next
    }

    /// Collects `key` on all its owners if every check passes.
    async fn try_collect(self: &Arc<Self>, key: &Bytes, state: &Siblings) -> bool {
        let view = self.view();
        if view.target.is_some() {
            // A ring change is pending: new replicas may still lack the key.
            return false;
        }
        let owners = view
            .ring
            .preference_list_n(keyspace::ring_position(key), self.config().n);
        if !owners.contains(&self.id()) || owners.iter().any(|o| !self.is_up(*o)) {
            return false;
        }
        for &owner in owners.iter().filter(|o| **o != self.id()) {
            match self.call(owner, Request::Read { key: key.clone() }).await {
                Ok(Response::State(theirs)) if theirs.decode().is_ok_and(|t| t == *state) => {}
                _ => return false,
            }
        }
        for (_, answer) in self.broadcast(Request::HintsFor { key: key.clone() }).await {
            if !matches!(answer, Ok(Response::Count(0))) {
                return false;
            }
        }
        // A node that is not an owner may still hold the key (an old replica
        // before a ring change, a stale write); its hand-off would offer it
        // to owners that no longer have the tombstone, so the value would
        // come back. Every member must hold nothing or exactly this state.
        for (_, answer) in self.broadcast(Request::Read { key: key.clone() }).await {
            match answer {
                Ok(Response::State(theirs))
                    if theirs.decode().is_ok_and(|t| t.is_empty() || t == *state) => {}
                _ => return false,
            }
        }
        let mut all = true;
        for &owner in &owners {
            let request = Request::Collect {
                key: key.clone(),
                expected: Box::new(state.clone()),
            };
            all &= matches!(self.call(owner, request).await, Ok(Response::Count(1)));
        }
        if all {
            CoordinatorStats::bump(&self.replica().stats().tombstones_collected);
        }
        all
    }

    /// Runs collection passes forever.
    pub async fn run_tombstone_gc(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config().tombstone_gc_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursor = 0;
        loop {
            ticker.tick().await;
            if self.background_may_run() {
                cursor = self.collect_tombstones(cursor).await;
            }
        }
    }
}
