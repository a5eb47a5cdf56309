//! Hinted handoff (the paper's section 4.6): writes held for a replica that
//! could not take them, until it can.
//!
//! # The idea
//!
//! When one of a key's N owners is down, a write goes to the next healthy
//! node of the preference list instead, with a *hint* naming the owner it was
//! meant for; when no such node exists (or an owner simply did not answer),
//! the coordinator keeps the hint itself. A hint is the key's sibling set as
//! the writer had it, stored durably in its own namespace of the storage
//! engine, apart from the node's data. A background task offers each hint to
//! its owner (a replica merge, so delivery is idempotent and never overwrites)
//! and deletes it only after the owner acknowledged, and only if no newer
//! state for the same owner and key arrived meanwhile.
//!
//! Storage key of a hint: the data storage key (ring position ++ key) then
//! the owner's id (8 bytes, big-endian): all hints for one key are adjacent,
//! so a replica read can fold them in cheaply.
//!
//! CAVEATS:
//! - The store is bounded by `max-hints`; past it, new hints are dropped (with
//!   a log line and a counter) and the owner relies on read repair and
//!   anti-entropy to catch up.
//! - Several hints for one owner and key are merged into one, so the bound
//!   counts keys per owner, not writes.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use tracing::warn;

use crate::{
    coordinator::ClusterError,
    keyspace,
    storage::Engine,
    version::{NodeId, Siblings},
};

const LOCK_STRIPES: usize = 256;
const OWNER_BYTES: usize = 8;

/// One held write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// The replica the write was meant for.
    pub owner: NodeId,
    /// The user key.
    pub key: Bytes,
    /// The key's state to merge into the owner.
    pub siblings: Siblings,
}

/// Counters for INFO.
#[derive(Debug, Default)]
pub struct HintStats {
    /// Hints written (new or merged into an existing one).
    pub stored: AtomicU64,
    /// Hints acknowledged by their owner and removed.
    pub delivered: AtomicU64,
    /// Hints refused because the store was full.
    pub dropped: AtomicU64,
}

/// The durable store of hints this node holds for others.
pub struct HintStore {
    engine: Arc<dyn Engine>,
    max_hints: AtomicUsize,
    stripes: Box<[Mutex<()>]>,
    pending: Mutex<BTreeMap<NodeId, u64>>,
    total: AtomicU64,
    stats: HintStats,
}

impl HintStore {
    /// Opens the store over `engine` (a namespace of its own) and counts the
    /// hints it already holds.
    pub fn open(engine: Arc<dyn Engine>, max_hints: usize) -> Result<HintStore, ClusterError> {
        let store = HintStore {
            engine,
            max_hints: AtomicUsize::new(max_hints),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            pending: Mutex::new(BTreeMap::new()),
            total: AtomicU64::new(0),
            stats: HintStats::default(),
        };
        let mut cursor = Vec::new();
        loop {
            let page = store.engine.scan_from(&cursor, 1024)?;
            for (hkey, _) in &page {
                if let Some((_, owner)) = split(hkey) {
                    store.count(owner, 1);
                }
                cursor = hkey.clone();
                cursor.push(0);
            }
            if page.len() < 1024 {
                break;
            }
        }
        Ok(store)
    }

    /// Counters for INFO.
    pub fn stats(&self) -> &HintStats {
        &self.stats
    }

    /// Hints held, in all.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Hints held per owner.
    pub fn pending(&self) -> BTreeMap<NodeId, u64> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the bound at run time.
    pub fn set_max_hints(&self, max: usize) {
        self.max_hints.store(max, Ordering::Relaxed);
    }

    /// Holds `siblings` of `key` for `owner`, merged with any hint already
    /// held for the pair. Returns false when the store was full and the hint
    /// was dropped.
    pub fn store(
        &self,
        owner: NodeId,
        key: &[u8],
        siblings: &Siblings,
    ) -> Result<bool, ClusterError> {
        let hkey = hint_key(key, owner);
        let _guard = self.lock(&hkey);
        let merged = match self.engine.get(&hkey)? {
            Some(raw) => {
                let mut held = Siblings::decode(&raw)?;
                held.merge(siblings);
                held
            }
            None => {
                if self.total() >= self.max_hints.load(Ordering::Relaxed) as u64 {
                    let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    if dropped.is_power_of_two() {
                        warn!(
                            owner = format!("{owner:016x}"),
                            dropped = dropped + 1,
                            "hint store full (max-hints): dropping hints; anti-entropy must repair the owner"
                        );
                    }
                    return Ok(false);
                }
                self.count(owner, 1);
                siblings.clone()
            }
        };
        self.engine.put(&hkey, &merged.encode())?;
        self.stats.stored.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// The merge of every hint held for `key` (whatever the owner); empty if
    /// none.
    pub fn read_key(&self, key: &[u8]) -> Result<Siblings, ClusterError> {
        let mut merged = Siblings::default();
        if self.total() == 0 {
            return Ok(merged);
        }
        let skey = keyspace::storage_key(key);
        // This key's hints are `skey ++ owner`: read only those, not the
        // next keys' hints too (every read asks while any hint is held).
        let mut end = skey.clone();
        end.extend_from_slice(&[0xff; OWNER_BYTES + 1]);
        for (hkey, raw) in self.engine.scan_range(&skey, &end, 64)? {
            match split(&hkey) {
                Some((k, _)) if k == skey.as_slice() => merged.merge(&Siblings::decode(&raw)?),
                _ => break,
            }
        }
        Ok(merged)
    }

    /// Up to `limit` hints at or after `cursor` (a hint storage key; empty to
    /// start), and the cursor to continue from (empty when done).
    pub fn batch(&self, cursor: &[u8], limit: usize) -> Result<(Vec<Hint>, Vec<u8>), ClusterError> {
        let page = self.engine.scan_from(cursor, limit.max(1))?;
        let mut next = Vec::new();
        let mut out = Vec::with_capacity(page.len());
        for (hkey, raw) in &page {
            next = hkey.clone();
            next.push(0);
            let Some((skey, owner)) = split(hkey) else {
                continue;
            };
            let Some((_, key)) = keyspace::split_storage_key(skey) else {
                continue;
            };
            out.push(Hint {
                owner,
                key: Bytes::copy_from_slice(key),
                siblings: Siblings::decode(raw)?,
            });
        }
        if page.len() < limit.max(1) {
            next.clear();
        }
        Ok((out, next))
    }

    /// Removes `hint` after its owner acknowledged it, unless the held state
    /// changed since it was read (then the newer state is delivered later).
    pub fn remove_delivered(&self, hint: &Hint) -> Result<bool, ClusterError> {
        let hkey = hint_key(&hint.key, hint.owner);
        let _guard = self.lock(&hkey);
        let Some(raw) = self.engine.get(&hkey)? else {
            return Ok(false);
        };
        if Siblings::decode(&raw)? != hint.siblings {
            return Ok(false);
        }
        self.engine.delete(&hkey)?;
        self.count(hint.owner, -1);
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Drops every hint (FLUSHALL).
    pub fn clear(&self) -> Result<(), ClusterError> {
        self.engine.clear()?;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.total.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn count(&self, owner: NodeId, delta: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.entry(owner).or_insert(0);
        *entry = entry.saturating_add_signed(delta);
        if *entry == 0 {
            pending.remove(&owner);
        }
        if delta >= 0 {
            self.total.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.total
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    fn lock(&self, hkey: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        let stripe = hkey
            .iter()
            .fold(0usize, |h, b| h.wrapping_mul(31) ^ *b as usize);
        self.stripes[stripe % LOCK_STRIPES]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn hint_key(key: &[u8], owner: NodeId) -> Vec<u8> {
    let mut hkey = keyspace::storage_key(key);
    hkey.extend_from_slice(&owner.to_be_bytes());
    hkey
}

/// Splits a hint key into the data storage key and the owner.
fn split(hkey: &[u8]) -> Option<(&[u8], NodeId)> {
    if hkey.len() < keyspace::POSITION_BYTES + OWNER_BYTES {
        return None;
    }
    let (skey, owner) = hkey.split_at(hkey.len() - OWNER_BYTES);
    Some((skey, u64::from_be_bytes(owner.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        storage::{Durability, MemoryEngine, SledEngine},
        version::{Dot, Version, VersionVector},
    };

    fn state(node: NodeId, counter: u64, value: &str) -> Siblings {
        let mut s = Siblings::default();
        s.apply_write(
            &VersionVector::default(),
            Version::put(
                Dot { node, counter },
                1,
                None,
                Bytes::from(value.to_string()),
            ),
        );
        s
    }

    fn store(max: usize) -> HintStore {
        HintStore::open(Arc::new(MemoryEngine::new()), max).unwrap()
    }

    #[test]
    fn hints_merge_per_owner_and_key_and_fold_into_reads() {
        let hints = store(100);
        assert!(hints.store(7, b"k", &state(1, 1, "a")).unwrap());
        assert!(hints.store(7, b"k", &state(2, 1, "b")).unwrap());
        assert!(hints.store(8, b"k", &state(3, 1, "c")).unwrap());
        assert!(hints.store(7, b"other", &state(1, 2, "d")).unwrap());
        assert_eq!(hints.total(), 3);
        assert_eq!(hints.pending(), BTreeMap::from([(7, 2), (8, 1)]));
        let read = hints.read_key(b"k").unwrap();
        assert_eq!(read.live(0).count(), 3, "both owners' hints for k");
        assert_eq!(hints.read_key(b"missing").unwrap(), Siblings::default());
        // The smallest and largest owner ids are within the key's range.
        assert!(hints.store(0, b"k", &state(4, 1, "e")).unwrap());
        assert!(hints.store(u64::MAX, b"k", &state(5, 1, "f")).unwrap());
        assert_eq!(hints.read_key(b"k").unwrap().live(0).count(), 5);
        assert_eq!(hints.read_key(b"other").unwrap().live(0).count(), 1);
    }

    #[test]
    fn delivery_removes_only_what_was_delivered() {
        let hints = store(100);
        hints.store(7, b"k", &state(1, 1, "a")).unwrap();
        let (batch, next) = hints.batch(&[], 10).unwrap();
        assert!(next.is_empty());
        assert_eq!(batch.len(), 1);
        // A newer write for the same owner and key arrives before the ack.
        hints.store(7, b"k", &state(2, 1, "b")).unwrap();
        assert!(!hints.remove_delivered(&batch[0]).unwrap());
        assert_eq!(hints.total(), 1);
        let (batch, _) = hints.batch(&[], 10).unwrap();
        assert!(hints.remove_delivered(&batch[0]).unwrap());
        assert_eq!(hints.total(), 0);
        assert!(hints.pending().is_empty());
        assert_eq!(hints.stats().delivered.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_store_is_bounded() {
        let hints = store(2);
        assert!(hints.store(7, b"a", &state(1, 1, "a")).unwrap());
        assert!(hints.store(7, b"b", &state(1, 2, "b")).unwrap());
        assert!(!hints.store(7, b"c", &state(1, 3, "c")).unwrap());
        // Merging into a held hint still works when full.
        assert!(hints.store(7, b"a", &state(2, 1, "x")).unwrap());
        assert_eq!(hints.stats().dropped.load(Ordering::Relaxed), 1);
        assert_eq!(hints.total(), 2);
    }

    #[test]
    fn batches_page_through_everything() {
        let hints = store(1000);
        for i in 0..25u64 {
            hints
                .store(
                    i % 3 + 1,
                    format!("key{i}").as_bytes(),
                    &state(9, i + 1, "v"),
                )
                .unwrap();
        }
        let mut cursor = Vec::new();
        let mut seen = 0;
        loop {
            let (batch, next) = hints.batch(&cursor, 7).unwrap();
            seen += batch.len();
            if next.is_empty() {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen, 25);
    }

    #[test]
    fn hints_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let periodic = Durability::Periodic { flush_every_ms: 50 };
        {
            let engine = SledEngine::open(dir.path(), periodic, None).unwrap();
            let hints = HintStore::open(engine.namespace("hints").unwrap(), 100).unwrap();
            hints.store(7, b"k", &state(1, 1, "a")).unwrap();
            engine.flush().unwrap();
        }
        let engine = SledEngine::open(dir.path(), periodic, None).unwrap();
        assert_eq!(engine.count().unwrap(), 0, "hints are not data");
        let hints = HintStore::open(engine.namespace("hints").unwrap(), 100).unwrap();
        assert_eq!(hints.pending(), BTreeMap::from([(7, 1)]));
        assert_eq!(hints.read_key(b"k").unwrap(), state(1, 1, "a"));
    }
}
