//! A bounded read cache in front of another engine.
//!
//! Why: sled's point lookups cost several microseconds (page-cache walks and
//! key comparisons), most of a GET's server-side time. Recently read or
//! written values are kept in memory, so hot reads and the read half of every
//! read-modify-write skip the engine.
//!
//! How: keys are spread over shards by hash; each shard is a mutex around a
//! hash map and its byte count. Writes go through to the inner engine and then
//! update the cache while the shard lock is held, and a miss reads the inner
//! engine under the same lock, so a miss can never put back a value that a
//! concurrent write replaced. Absent keys are cached too (as `None`). When a
//! shard passes its byte budget it drops arbitrary entries (hash-map order)
//! until it is back under.
//!
//! CAVEATS:
//! - Eviction is not LRU; it only bounds memory.
//! - Scans, counts and metadata go straight to the inner engine (they are
//!   consistent because writes go through first).

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, MutexGuard},
};

use super::{Engine, Entry, StorageError};

const SHARDS: usize = 64;
/// Per-entry bookkeeping counted against the budget besides key and value.
const ENTRY_OVERHEAD: usize = 64;

#[derive(Default)]
struct Shard {
    entries: HashMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
}

impl Shard {
    fn insert(&mut self, key: &[u8], value: Option<Vec<u8>>, budget: usize) {
        let added = key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
        if let Some(old) = self.entries.insert(key.to_vec(), value) {
            self.bytes -= key.len() + old.map_or(0, |v| v.len()) + ENTRY_OVERHEAD;
        }
        self.bytes += added;
        while self.bytes > budget {
            let Some(victim) = self.entries.keys().next().cloned() else {
                break;
            };
            if let Some(old) = self.entries.remove(&victim) {
                self.bytes -= victim.len() + old.map_or(0, |v| v.len()) + ENTRY_OVERHEAD;
            }
        }
    }
}

/// Wraps an engine with a read cache of at most `capacity_bytes`.
pub struct CachedEngine {
    inner: Arc<dyn Engine>,
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
    hasher: RandomState,
}

impl CachedEngine {
    /// A cache of about `capacity_bytes` in front of `inner`.
    pub fn new(inner: Arc<dyn Engine>, capacity_bytes: usize) -> CachedEngine {
        CachedEngine {
            inner,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: capacity_bytes / SHARDS,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Engine for CachedEngine {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let mut shard = self.shard(key);
        if let Some(cached) = shard.entries.get(key) {
            return Ok(cached.clone());
        }
        let value = self.inner.get(key)?;
        shard.insert(key, value.clone(), self.shard_budget);
        Ok(value)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let mut shard = self.shard(key);
        self.inner.put(key, value)?;
        shard.insert(key, Some(value.to_vec()), self.shard_budget);
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), StorageError> {
        let mut shard = self.shard(key);
        self.inner.delete(key)?;
        shard.insert(key, None, self.shard_budget);
        Ok(())
    }

    fn scan_from(&self, start: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        self.inner.scan_from(start, limit)
    }

    fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.inner.scan_range(start, end, limit)
    }

    fn count(&self) -> Result<u64, StorageError> {
        self.inner.count()
    }

    fn clear(&self) -> Result<(), StorageError> {
        // Every shard is locked first, so no write slips between the inner
        // clear and the cache clear.
        let mut guards: Vec<_> = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        self.inner.clear()?;
        for shard in &mut guards {
            shard.entries.clear();
            shard.bytes = 0;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.inner.flush()
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.meta_get(name)
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        self.inner.meta_put(name, value)
    }

    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn namespace(&self, name: &str) -> Result<Arc<dyn Engine>, StorageError> {
        // Namespaces are small side stores: no cache in front of them.
        self.inner.namespace(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;

    #[test]
    fn stays_within_budget_and_reads_through_after_eviction() {
        let inner: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let cache = CachedEngine::new(inner.clone(), 64 * 1024);
        for i in 0..2000u32 {
            cache.put(&i.to_be_bytes(), &[7u8; 100]).unwrap();
        }
        let cached: usize = cache.shards.iter().map(|s| s.lock().unwrap().bytes).sum();
        assert!(cached <= 64 * 1024, "cache holds {cached} bytes");
        for i in 0..2000u32 {
            assert_eq!(cache.get(&i.to_be_bytes()).unwrap(), Some(vec![7u8; 100]));
        }
    }

    #[test]
    fn a_write_replaces_a_cached_miss() {
        let inner: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let cache = CachedEngine::new(inner, 1 << 20);
        assert_eq!(cache.get(b"k").unwrap(), None);
        cache.put(b"k", b"v").unwrap();
        assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
        cache.delete(b"k").unwrap();
        assert_eq!(cache.get(b"k").unwrap(), None);
    }
}
