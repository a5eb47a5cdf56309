//! Node-wide dot counters that are never reused, even across restarts.
//!
//! Every write coordinated by this node gets the dot `(node_id, counter)`.
//! Counters come from one node-wide sequence, so a dot is unique for the
//! node's whole life: a key that was deleted and collected can never see an
//! old dot come back with a new meaning. The sequence is persisted as a lease:
//! the engine's metadata holds a high-water mark reserved ahead of use, and a
//! restart resumes above it (skipping the unused rest of the lease).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use crate::{
    storage::{Engine, StorageError},
    version::{Dot, NodeId},
};

const LEASE_KEY: &str = "dot_lease";
const NODE_ID_KEY: &str = "node_id";
/// How many counters one persisted lease reserves.
const LEASE_BLOCK: u64 = 1 << 20;

/// Hands out fresh dots for one node.
pub struct DotCounter {
    node: NodeId,
    next: AtomicU64,
    leased_until: AtomicU64,
    renew: Mutex<()>,
    engine: Arc<dyn Engine>,
}

impl DotCounter {
    /// Loads (or creates) the node id and the counter lease from `engine`.
    pub fn open(engine: Arc<dyn Engine>) -> Result<DotCounter, StorageError> {
        let node = match engine.meta_get(NODE_ID_KEY)? {
            Some(raw) if raw.len() == 8 => u64::from_be_bytes(raw.try_into().unwrap_or_default()),
            _ => {
                // Zero is avoided so that a node id is never the default value.
                let id = fastrand::u64(1..);
                engine.meta_put(NODE_ID_KEY, &id.to_be_bytes())?;
                id
            }
        };
        let start = match engine.meta_get(LEASE_KEY)? {
            Some(raw) if raw.len() == 8 => u64::from_be_bytes(raw.try_into().unwrap_or_default()),
            _ => 0,
        };
        let leased_until = start + LEASE_BLOCK;
        engine.meta_put(LEASE_KEY, &leased_until.to_be_bytes())?;
        Ok(DotCounter {
            node,
            next: AtomicU64::new(start + 1),
            leased_until: AtomicU64::new(leased_until),
            renew: Mutex::new(()),
            engine,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The counter the next dot will get: every dot this node issued so far
    /// is below it.
    pub fn peek_next(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// A dot never handed out before by this node.
    pub fn next_dot(&self) -> Result<Dot, StorageError> {
        let counter = self.next.fetch_add(1, Ordering::Relaxed);
        if counter > self.leased_until.load(Ordering::Acquire) {
            self.extend_lease(counter)?;
        }
        Ok(Dot {
            node: self.node,
            counter,
        })
    }

    /// Persists a new lease covering `counter` before it is used.
    fn extend_lease(&self, counter: u64) -> Result<(), StorageError> {
        let _guard = self
            .renew
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.leased_until.load(Ordering::Acquire);
        if counter <= current {
            return Ok(());
        }
        let new_lease = counter + LEASE_BLOCK;
        self.engine.meta_put(LEASE_KEY, &new_lease.to_be_bytes())?;
        self.leased_until.store(new_lease, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;

    #[test]
    fn dots_are_unique_across_reopen() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let first = DotCounter::open(engine.clone()).unwrap();
        let a = first.next_dot().unwrap();
        let b = first.next_dot().unwrap();
        assert!(b.counter > a.counter);
        let again = DotCounter::open(engine).unwrap();
        assert_eq!(again.node_id(), first.node_id());
        assert!(again.next_dot().unwrap().counter > b.counter);
    }
}
