//! [`MemoryEngine`]: an ordered map ([`KeyMap`]) behind a lock. Nothing is
//! persisted.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{ordered::KeyMap, Engine, Entry, StorageError};

/// A volatile [`Engine`]: an ordered map in memory.
///
/// Everything — data *and* metadata — is lost when the value is dropped or
/// the process exits; [`Durability`](super::Durability) does not apply and
/// [`Engine::flush`] is a no-op. Useful for tests, benchmarks, and nodes that
/// rely entirely on replication for durability.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    data: KeyMap,
    meta: HashMap<String, Vec<u8>>,
    /// Sum of key and value lengths in `data` and `meta`.
    bytes: u64,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> MemoryEngine {
        MemoryEngine::default()
    }

    // A panic while holding the lock cannot leave the map half-updated in a
    // way that matters (each operation is a single map call plus a counter),
    // so a poisoned lock is simply recovered.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn len(b: &[u8]) -> u64 {
    b.len() as u64
}

impl Engine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().data.get(key).cloned())
    }

    fn warm(&self, keys: &[&[u8]]) {
        self.read().data.warm(keys);
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let mut inner = self.write();
        let inner = &mut *inner;
        match inner.data.get_mut(key) {
            Some(old) => {
                inner.bytes = inner.bytes - len(old) + len(value);
                old.clear();
                old.extend_from_slice(value);
            }
            None => {
                inner.bytes += len(key) + len(value);
                inner.data.insert(key, value.to_vec());
            }
        }
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), StorageError> {
        let mut inner = self.write();
        if let Some(old) = inner.data.remove(key) {
            inner.bytes -= len(key) + len(&old);
        }
        Ok(())
    }

    fn scan_from(&self, start: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        Ok(self.read().data.scan(start, None, limit))
    }

    fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.read().data.scan(start, Some(end), limit))
    }

    fn count(&self) -> Result<u64, StorageError> {
        Ok(self.read().data.len() as u64)
    }

    fn clear(&self) -> Result<(), StorageError> {
        let mut inner = self.write();
        inner.data.clear();
        inner.bytes = inner
            .meta
            .iter()
            .map(|(k, v)| len(k.as_bytes()) + len(v))
            .sum();
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().meta.get(name).cloned())
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut inner = self.write();
        let added = len(name.as_bytes()) + len(value);
        if let Some(old) = inner.meta.insert(name.to_string(), value.to_vec()) {
            inner.bytes -= len(name.as_bytes()) + len(&old);
        }
        inner.bytes += added;
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.read().bytes
    }

    fn namespace(&self, _name: &str) -> Result<std::sync::Arc<dyn Engine>, StorageError> {
        Ok(std::sync::Arc::new(MemoryEngine::new()))
    }
}
