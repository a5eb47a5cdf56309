//! The coordinator: the paper's `get(key)` and `put(key, context, object)`.
//!
//! The idea: every client command, whatever its Redis name, becomes a read of
//! a key's sibling set, a causal write, or a read-then-write. The coordinator
//! is the only way commands touch data, so making the store distributed changes
//! this module, not the commands.
//!
//! How it works (single node, N = R = W = 1): a read decodes the key's
//! [`Siblings`] from the engine. A write takes a fresh [`Dot`] from the node's
//! [`DotCounter`], applies it with the caller's causal context (superseding
//! exactly the versions the context covers) and stores the new sibling set.
//! Read-modify-write commands use [`Coordinator::update`], which hands the
//! current siblings to a closure and stores what it decides; on one node this
//! runs under a per-key stripe lock, so two writers of one key never lose each
//! other's versions. With one replica a key whose versions are all tombstones
//! or expired is removed at once: no other replica can still hold an older
//! version that the tombstone must suppress.
//!
//! CAVEATS:
//! - Engine calls are synchronous (sled answers in microseconds); with
//!   `durability = every-write` each write waits for an fsync.
//! - `update` is atomic only on one node. With replicas it becomes a quorum
//!   read followed by a write carrying the read's context: concurrent updates
//!   then become siblings instead of being serialised (documented as not
//!   isolated).

mod dots;
mod stats;

use std::sync::{
    atomic::{AtomicI64, AtomicUsize, Ordering},
    Arc, Mutex,
};

use bytes::Bytes;
use thiserror::Error;

pub use dots::DotCounter;
pub use stats::CoordinatorStats;

use crate::{
    keyspace,
    storage::{Engine, StorageError},
    version::{Dot, NodeId, Payload, Siblings, Version, VersionError, VersionVector},
};

/// Errors a coordinated request can end with.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// Fewer replicas answered than the quorum needs.
    #[error("UNAVAILABLE needed {needed} replicas, got {got}")]
    Unavailable {
        /// Replies needed (R or W).
        needed: usize,
        /// Replies received in time.
        got: usize,
    },
    /// The client's context could not be decoded.
    #[error("invalid context")]
    InvalidContext,
    /// The write would leave more siblings than allowed.
    #[error("too many siblings for this key (max {max}): read it with DGET and write back with its context to merge them")]
    TooManySiblings {
        /// The configured `max-siblings`.
        max: usize,
    },
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Stored data could not be decoded.
    #[error("corrupt stored version: {0}")]
    Corrupt(#[from] VersionError),
}

/// Coordinator settings.
#[derive(Debug, Clone, Copy)]
pub struct CoordinatorConfig {
    /// Most versions (values and tombstones) one key may hold.
    pub max_siblings: usize,
    /// Replicas per key (N); with 1, tombstones are collected immediately.
    pub replicas: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            max_siblings: 64,
            replicas: 1,
        }
    }
}

/// What a write stores; the coordinator adds the dot and the timestamp.
#[derive(Debug, Clone)]
pub struct Write {
    /// The versions this write supersedes.
    pub context: VersionVector,
    /// A value or a tombstone.
    pub payload: Payload,
    /// Absolute expiry in Unix milliseconds.
    pub expires_at_ms: Option<u64>,
}

impl Write {
    /// A value write with `context`.
    pub fn value(context: VersionVector, value: Bytes, expires_at_ms: Option<u64>) -> Write {
        Write {
            context,
            payload: Payload::Value(value),
            expires_at_ms,
        }
    }

    /// A tombstone superseding `context`.
    pub fn tombstone(context: VersionVector) -> Write {
        Write {
            context,
            payload: Payload::Tombstone,
            expires_at_ms: None,
        }
    }
}

const LOCK_STRIPES: usize = 1024;

/// Coordinates reads and writes for this node.
pub struct Coordinator {
    engine: Arc<dyn Engine>,
    dots: DotCounter,
    stripes: Box<[Mutex<()>]>,
    config: CoordinatorConfig,
    max_siblings: AtomicUsize,
    stats: CoordinatorStats,
    stored_keys: AtomicI64,
}

impl Coordinator {
    /// Opens the coordinator over `engine`, loading the node id and counting
    /// the stored keys (once, at start).
    pub fn open(
        engine: Arc<dyn Engine>,
        config: CoordinatorConfig,
    ) -> Result<Coordinator, ClusterError> {
        let dots = DotCounter::open(engine.clone())?;
        let stored = engine.count()?;
        Ok(Coordinator {
            engine,
            dots,
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            config,
            max_siblings: AtomicUsize::new(config.max_siblings),
            stats: CoordinatorStats::default(),
            stored_keys: AtomicI64::new(stored as i64),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.dots.node_id()
    }

    /// The settings in force.
    pub fn config(&self) -> CoordinatorConfig {
        CoordinatorConfig {
            max_siblings: self.max_siblings.load(Ordering::Relaxed),
            ..self.config
        }
    }

    /// Changes `max-siblings` at run time (CONFIG SET).
    pub fn set_max_siblings(&self, max: usize) {
        self.max_siblings.store(max, Ordering::Relaxed);
    }

    /// Counters for INFO.
    pub fn stats(&self) -> &CoordinatorStats {
        &self.stats
    }

    /// The storage engine (for INFO and shutdown).
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Keys held by this node (including expired ones not yet purged).
    pub fn stored_keys(&self) -> u64 {
        self.stored_keys.load(Ordering::Relaxed).max(0) as u64
    }

    /// `get(key)`: every version of the key this node's quorum knows.
    pub async fn get(&self, key: &[u8]) -> Result<Siblings, ClusterError> {
        CoordinatorStats::bump(&self.stats.reads);
        self.load(&keyspace::storage_key(key))
    }

    /// This node's own stored versions of `key` (no quorum).
    pub fn local_get(&self, key: &[u8]) -> Result<Siblings, ClusterError> {
        self.load(&keyspace::storage_key(key))
    }

    /// `put(key, context, object)`: stores a new version superseding what
    /// `write.context` covers; returns the key's siblings afterwards.
    pub async fn put(
        &self,
        key: &[u8],
        write: Write,
        now_ms: u64,
    ) -> Result<Siblings, ClusterError> {
        self.update(key, now_ms, |_| (Some(write), ())).await?;
        self.local_get(key)
    }

    /// Read-modify-write: `decide` sees the current siblings and returns the
    /// write to store (if any) and a result for the caller.
    pub async fn update<R>(
        &self,
        key: &[u8],
        now_ms: u64,
        decide: impl FnOnce(&Siblings) -> (Option<Write>, R),
    ) -> Result<R, ClusterError> {
        let skey = keyspace::storage_key(key);
        let _guard = self.lock(&skey);
        let current = self.load(&skey)?;
        let (write, result) = decide(&current);
        if let Some(mut write) = write {
            // A context can only cover dots of this node that it already
            // issued; a higher one is forged or corrupt, and would make the
            // new write born superseded.
            if write.context.get(self.node_id()) >= self.dots.peek_next() {
                return Err(ClusterError::InvalidContext);
            }
            let dot = self.dots.next_dot()?;
            let context = std::mem::take(&mut write.context);
            let mut next = current.clone();
            next.apply_write(&context, self.version(dot, write, now_ms));
            let max = self.max_siblings.load(Ordering::Relaxed);
            if next.versions().len() > max {
                CoordinatorStats::bump(&self.stats.sibling_limit_rejections);
                return Err(ClusterError::TooManySiblings { max });
            }
            self.stats.record_siblings(next.live(now_ms).count());
            CoordinatorStats::bump(&self.stats.writes);
            self.store(&skey, &current, next, now_ms)?;
        }
        Ok(result)
    }

    fn version(&self, dot: Dot, write: Write, now_ms: u64) -> Version {
        Version {
            dot,
            timestamp_ms: now_ms,
            expires_at_ms: write.expires_at_ms,
            payload: write.payload,
        }
    }

    fn lock(&self, skey: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        let position = keyspace::split_storage_key(skey).map_or(0, |(p, _)| p);
        let stripe = &self.stripes[(position % LOCK_STRIPES as u64) as usize];
        stripe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn load(&self, skey: &[u8]) -> Result<Siblings, ClusterError> {
        match self.engine.get(skey)? {
            Some(raw) => Ok(Siblings::decode(&raw)?),
            None => Ok(Siblings::default()),
        }
    }

    /// Stores `next` (or removes the key when nothing but tombstones and
    /// expired versions is left and this is the only replica).
    fn store(
        &self,
        skey: &[u8],
        before: &Siblings,
        next: Siblings,
        now_ms: u64,
    ) -> Result<(), ClusterError> {
        let existed = !before.is_empty();
        let collect = self.config.replicas == 1 && next.live(now_ms).next().is_none();
        if collect {
            if existed {
                self.engine.delete(skey)?;
                self.stored_keys.fetch_sub(1, Ordering::Relaxed);
                CoordinatorStats::bump(&self.stats.keys_collected);
            }
        } else {
            self.engine.put(skey, &next.encode())?;
            if !existed {
                self.stored_keys.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Up to `count` keys at or after ring position `cursor`, with their
    /// siblings, and the cursor to continue from (0 when the scan is done).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<(Bytes, Siblings)>, u64), ClusterError> {
        let entries = self
            .engine
            .scan_from(&keyspace::position_start(cursor), count.max(1))?;
        let mut next = 0;
        let mut out = Vec::with_capacity(entries.len());
        for (skey, raw) in &entries {
            let Some((position, key)) = keyspace::split_storage_key(skey) else {
                continue;
            };
            next = position.wrapping_add(1);
            out.push((Bytes::copy_from_slice(key), Siblings::decode(raw)?));
        }
        if entries.len() < count.max(1) {
            next = 0;
        }
        Ok((out, next))
    }

    /// Removes expired versions from up to `batch` keys starting at `cursor`;
    /// returns where to continue (0: wrapped around).
    pub fn purge_expired_step(
        &self,
        cursor: u64,
        batch: usize,
        now_ms: u64,
    ) -> Result<u64, ClusterError> {
        let (entries, next) = self.scan(cursor, batch)?;
        for (key, siblings) in entries {
            if !siblings.versions().iter().any(|v| v.is_expired(now_ms)) {
                continue;
            }
            let skey = keyspace::storage_key(&key);
            let _guard = self.lock(&skey);
            let current = self.load(&skey)?;
            let mut next_state = current.clone();
            let purged = next_state.purge_expired(now_ms);
            if purged > 0 {
                self.stats
                    .expired_purged
                    .fetch_add(purged as u64, Ordering::Relaxed);
                self.store(&skey, &current, next_state, now_ms)?;
            }
        }
        Ok(next)
    }

    /// Removes every key on this node (FLUSHALL).
    pub fn clear(&self) -> Result<(), ClusterError> {
        self.engine.clear()?;
        self.stored_keys.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Makes every acknowledged write durable (shutdown).
    pub fn flush(&self) -> Result<(), ClusterError> {
        Ok(self.engine.flush()?)
    }
}

#[cfg(test)]
mod tests;
