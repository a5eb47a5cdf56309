//! One node's replica store: the sibling sets it holds, and the only code that
//! reads or writes them.
//!
//! # The idea
//!
//! A replica does three things to a key, each under the key's stripe lock so
//! two of them never interleave on one key:
//! - [`Replica::write`]: coordinate a new write here. The caller's `decide`
//!   sees the current siblings and returns the write; the replica takes a
//!   fresh dot from the node-wide [`DotCounter`], applies the write with its
//!   causal context and stores the result.
//! - [`Replica::merge`]: fold in another replica's state of the key
//!   (replication, read repair, anti-entropy). Merging is a join, so it never
//!   drops a concurrent version and is safe to repeat or reorder.
//! - [`Replica::read`]: return the stored state.
//!
//! With a single replica per key (N = 1), a key whose versions are all
//! tombstones or expired is removed at once: no other replica can hold an
//! older version the tombstone must suppress. With N > 1 tombstones stay until
//! the failure-handling work can prove every replica has them.
//!
//! CAVEATS:
//! - Engine calls are synchronous (sled answers in microseconds); with
//!   `durability = every-write` each write waits for an fsync.
//! - With periodic durability a crash can lose this node's newest writes while
//!   the dot lease survives; its later dots then cover the lost ones, and a
//!   merge can drop their copies on other replicas. Use `every-write` where
//!   that matters (the paper's section 6.1 trade-off).

use std::sync::{
    atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, OnceLock,
};

use bytes::Bytes;

use crate::{
    coordinator::{ClusterError, Write},
    dots::DotCounter,
    keyspace,
    merkle::{self, MerkleForest},
    stats::CoordinatorStats,
    storage::Engine,
    version::{Dot, EncodedSiblings, NodeId, Siblings, Version},
};

/// Replica settings.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaConfig {
    /// Most versions (values and tombstones) one key may hold.
    pub max_siblings: usize,
    /// Remove keys with nothing live at once (only safe when N = 1).
    pub collect_dead_keys: bool,
}

const LOCK_STRIPES: usize = 1024;
const COUNT_PAGE: usize = 1024;

/// A stored entry as the engine holds it: (storage key, encoded state).
pub type StoredEntry = (Vec<u8>, Vec<u8>);

/// This node's store of sibling sets.
pub struct Replica {
    engine: Arc<dyn Engine>,
    dots: DotCounter,
    stripes: Box<[Mutex<()>]>,
    collect_dead_keys: bool,
    max_siblings: AtomicUsize,
    stats: CoordinatorStats,
    stored_keys: AtomicI64,
    value_keys: AtomicI64,
    /// Hash trees of the stored keys, one per ring partition, kept current by
    /// every store (cluster nodes only; see [`Replica::enable_merkle`]).
    merkle: OnceLock<Mutex<MerkleForest>>,
    /// The newest version timestamp taken in from other replicas (see
    /// [`Replica::stamp`]).
    clock_floor: AtomicU64,
}

/// How far ahead of this node's clock a timestamp seen from another node is
/// still followed; a later one (a wildly wrong clock, corrupt data) is not,
/// so it cannot freeze this node's timestamps for long.
const MAX_FOLLOW_AHEAD_MS: u64 = 5 * 60 * 1000;

impl Replica {
    /// Opens the replica over `engine`: loads the node id and counts the
    /// stored keys (once, at start; proportional to the data).
    pub fn open(engine: Arc<dyn Engine>, config: ReplicaConfig) -> Result<Replica, ClusterError> {
        let dots = DotCounter::open(engine.clone())?;
        let replica = Replica {
            engine,
            dots,
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            collect_dead_keys: config.collect_dead_keys,
            max_siblings: AtomicUsize::new(config.max_siblings),
            stats: CoordinatorStats::default(),
            stored_keys: AtomicI64::new(0),
            value_keys: AtomicI64::new(0),
            merkle: OnceLock::new(),
            clock_floor: AtomicU64::new(0),
        };
        replica.count_keys()?;
        Ok(replica)
    }

    fn count_keys(&self) -> Result<(), ClusterError> {
        let (mut stored, mut valued) = (0, 0);
        let mut cursor = Vec::new();
        loop {
            let page = self.engine.scan_from(&cursor, COUNT_PAGE)?;
            for (skey, raw) in &page {
                stored += 1;
                valued += i64::from(has_value(&Siblings::decode(raw)?));
                cursor = skey.clone();
                cursor.push(0);
            }
            if page.len() < COUNT_PAGE {
                break;
            }
        }
        self.stored_keys.store(stored, Ordering::Relaxed);
        self.value_keys.store(valued, Ordering::Relaxed);
        Ok(())
    }

    /// The id this node's dots carry.
    pub fn node_id(&self) -> NodeId {
        self.dots.node_id()
    }

    /// The current `max-siblings`.
    pub fn max_siblings(&self) -> usize {
        self.max_siblings.load(Ordering::Relaxed)
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

    /// Keys held here (tombstoned and expired ones not yet removed included).
    pub fn stored_keys(&self) -> u64 {
        self.stored_keys.load(Ordering::Relaxed).max(0) as u64
    }

    /// Keys held here with at least one value version (expired ones not yet
    /// purged included, as Redis's DBSIZE counts them).
    pub fn value_keys(&self) -> u64 {
        self.value_keys.load(Ordering::Relaxed).max(0) as u64
    }

    /// The stored state of `key` (empty if none).
    pub fn read(&self, key: &[u8]) -> Result<Siblings, ClusterError> {
        self.load(&keyspace::storage_key(key))
    }

    /// Coordinates a write of `key` on this replica: `decide` sees the stored
    /// siblings and returns the write (if any) and a result for the caller.
    /// Returns that result and the stored state after the write (`None` when
    /// nothing was written).
    pub fn write<R>(
        &self,
        key: &[u8],
        now_ms: u64,
        decide: impl FnOnce(&Siblings) -> (Option<Write>, R),
    ) -> Result<(R, Option<Siblings>), ClusterError> {
        let (result, stored) = self.write_encoded(key, now_ms, decide)?;
        Ok((result, stored.map(|(state, _)| state)))
    }

    /// [`Replica::write`], also returning the stored state's encoding (what
    /// a coordinator replicates).
    pub fn write_encoded<R>(
        &self,
        key: &[u8],
        now_ms: u64,
        decide: impl FnOnce(&Siblings) -> (Option<Write>, R),
    ) -> Result<(R, Option<(Siblings, EncodedSiblings)>), ClusterError> {
        self.write_encoded_at(keyspace::ring_position(key), key, now_ms, decide)
    }

    /// [`Replica::write_encoded`] of a key whose ring position the caller
    /// already computed (`position` must be `ring_position(key)`).
    pub fn write_encoded_at<R>(
        &self,
        position: u64,
        key: &[u8],
        now_ms: u64,
        decide: impl FnOnce(&Siblings) -> (Option<Write>, R),
    ) -> Result<(R, Option<(Siblings, EncodedSiblings)>), ClusterError> {
        let skey = keyspace::storage_key_at(position, key);
        let _guard = self.lock(&skey);
        let (current, digest) = self.load_for_write(&skey)?;
        let (write, result) = decide(&current);
        let Some(mut write) = write else {
            return Ok((result, None));
        };
        // A context can only cover dots of this node that it already issued;
        // a higher one is forged or corrupt, and would make the new write
        // born superseded.
        if write.context.get(self.node_id()) >= self.dots.peek_next() {
            return Err(ClusterError::InvalidContext);
        }
        let dot = self.dots.next_dot()?;
        let stamp = self.stamp(now_ms, &current);
        let mut context = std::mem::take(&mut write.context);
        if write.supersede_known {
            context.join(current.context());
        }
        let before = Prior::of(&current, digest);
        let mut next = current;
        next.apply_write(&context, version(dot, write, stamp));
        let max = self.max_siblings();
        if next.versions().len() > max {
            CoordinatorStats::bump(&self.stats.sibling_limit_rejections);
            return Err(ClusterError::TooManySiblings { max });
        }
        self.stats.record_siblings(next.live(now_ms).count());
        CoordinatorStats::bump(&self.stats.writes);
        let encoded = self.store(&skey, before, &next, None, now_ms)?;
        Ok((result, Some((next, encoded))))
    }

    /// The timestamp of a write coordinated here at `now_ms`: never behind
    /// the key's versions it supersedes, nor behind the newest timestamp
    /// this replica has taken in from other nodes (the physical half of a
    /// hybrid logical clock; ties are broken by the dot, as for any two
    /// versions). A node whose clock runs behind thus still stamps a write
    /// after what it has seen, so that, e.g., a DEL whose sloppy read missed a
    /// write made a second earlier on a node with a good clock still wins
    /// last-write-wins against it once the two meet.
    fn stamp(&self, now_ms: u64, current: &Siblings) -> u64 {
        let seen = current.versions().iter().map(|v| v.timestamp_ms).max();
        now_ms
            .max(self.clock_floor.load(Ordering::Relaxed))
            .max(seen.unwrap_or(0).min(now_ms + MAX_FOLLOW_AHEAD_MS))
    }

    /// Raises the clock floor to the newest of `remote`'s timestamps (not
    /// past [`MAX_FOLLOW_AHEAD_MS`] ahead of `now_ms`).
    fn observe(&self, remote: &Siblings, now_ms: u64) {
        if let Some(newest) = remote.versions().iter().map(|v| v.timestamp_ms).max() {
            if newest <= now_ms + MAX_FOLLOW_AHEAD_MS {
                self.clock_floor.fetch_max(newest, Ordering::Relaxed);
            }
        }
    }

    /// Merges another replica's state of `key` into the stored one; returns
    /// whether anything changed.
    pub fn merge(&self, key: &[u8], remote: &Siblings, now_ms: u64) -> Result<bool, ClusterError> {
        self.observe(remote, now_ms);
        let skey = keyspace::storage_key(key);
        let _guard = self.lock(&skey);
        let (current, digest) = self.load_for_write(&skey)?;
        self.merge_loaded(&skey, current, digest, remote, None, now_ms)
    }

    /// [`Replica::merge`] of a state as another replica encoded it. Bytes
    /// equal to the stored ones change nothing and are not decoded; a
    /// merge that gives exactly the remote state stores its bytes as they
    /// came (a replicated write, the common case, is encoded once, by its
    /// coordinator).
    pub fn merge_encoded(
        &self,
        key: &[u8],
        remote: &EncodedSiblings,
        now_ms: u64,
    ) -> Result<bool, ClusterError> {
        self.merge_encoded_at(&keyspace::storage_key(key), remote, now_ms)
    }

    /// [`Replica::merge_encoded`] of each entry of a batch, in order; stops
    /// at the first error. The engine is told of the whole batch first (see
    /// [`crate::storage::Engine::warm`]).
    pub fn merge_encoded_batch(
        &self,
        entries: &[(Bytes, EncodedSiblings)],
        now_ms: u64,
    ) -> Result<(), ClusterError> {
        let skeys: Vec<Vec<u8>> = entries
            .iter()
            .map(|(key, _)| keyspace::storage_key(key))
            .collect();
        self.warm(&skeys);
        for (skey, (_, remote)) in skeys.iter().zip(entries) {
            self.merge_encoded_at(skey, remote, now_ms)?;
        }
        Ok(())
    }

    /// Tells the engine a batch of keys (with their ring positions) is
    /// about to be read: see [`crate::storage::Engine::warm`].
    pub fn warm_at<'a>(&self, keys: impl IntoIterator<Item = (u64, &'a [u8])>) {
        let skeys: Vec<Vec<u8>> = keys
            .into_iter()
            .map(|(position, key)| keyspace::storage_key_at(position, key))
            .collect();
        self.warm(&skeys);
    }

    /// Warms the engine, and the hash trees a write updates, for storage
    /// keys `skeys` (a lone key gains nothing: its lookup follows at once).
    fn warm(&self, skeys: &[Vec<u8>]) {
        if skeys.len() > 1 {
            let keys: Vec<&[u8]> = skeys.iter().map(Vec::as_slice).collect();
            self.engine.warm(&keys);
            let positions: Vec<u64> = skeys
                .iter()
                .filter_map(|skey| keyspace::split_storage_key(skey).map(|(p, _)| p))
                .collect();
            self.with_merkle(|forest| forest.warm(&positions));
        }
    }

    fn merge_encoded_at(
        &self,
        skey: &[u8],
        remote: &EncodedSiblings,
        now_ms: u64,
    ) -> Result<bool, ClusterError> {
        let _guard = self.lock(skey);
        let raw = self.engine.get(skey)?;
        if raw.as_deref() == Some(remote.as_bytes()) {
            return Ok(false);
        }
        let theirs = remote.decode()?;
        self.observe(&theirs, now_ms);
        let (current, digest) = self.decode_for_write(skey, raw)?;
        self.merge_loaded(skey, current, digest, &theirs, Some(remote), now_ms)
    }

    /// Merges `remote` (encoded as `remote_bytes`, if known) into `current`,
    /// the stored state of `skey`, under the key's lock.
    fn merge_loaded(
        &self,
        skey: &[u8],
        current: Siblings,
        digest: Option<u128>,
        remote: &Siblings,
        remote_bytes: Option<&EncodedSiblings>,
        now_ms: u64,
    ) -> Result<bool, ClusterError> {
        let mut next = current.clone();
        next.merge(remote);
        if next == current {
            return Ok(false);
        }
        CoordinatorStats::bump(&self.stats.merges);
        let encoded = remote_bytes.filter(|_| next == *remote).cloned();
        self.store(skey, Prior::of(&current, digest), &next, encoded, now_ms)?;
        Ok(true)
    }

    fn lock(&self, skey: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        let position = keyspace::split_storage_key(skey).map_or(0, |(p, _)| p);
        let stripe = &self.stripes[(position % LOCK_STRIPES as u64) as usize];
        stripe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stored state of `key` as stored, not decoded (the empty state's
    /// encoding if none): what a replica answers a quorum read with.
    pub fn read_encoded(&self, key: &[u8]) -> Result<EncodedSiblings, ClusterError> {
        self.read_encoded_at(keyspace::ring_position(key), key)
    }

    /// [`Replica::read_encoded`] of a key whose ring position the caller
    /// already computed (`position` must be `ring_position(key)`).
    pub fn read_encoded_at(
        &self,
        position: u64,
        key: &[u8],
    ) -> Result<EncodedSiblings, ClusterError> {
        Ok(
            match self.engine.get(&keyspace::storage_key_at(position, key))? {
                Some(raw) => EncodedSiblings::from_stored(Bytes::from(raw)),
                None => EncodedSiblings::empty(),
            },
        )
    }

    fn load(&self, skey: &[u8]) -> Result<Siblings, ClusterError> {
        // No digest: only writes need the old one (to update the tree).
        match self.engine.get(skey)? {
            Some(raw) => Ok(Siblings::decode(&raw)?),
            None => Ok(Siblings::default()),
        }
    }

    /// The stored state and, when the Merkle trees are kept, the digest of
    /// its stored bytes (what the tree holds for the key), computed from the
    /// bytes just read rather than by encoding the state again.
    fn load_for_write(&self, skey: &[u8]) -> Result<(Siblings, Option<u128>), ClusterError> {
        let raw = self.engine.get(skey)?;
        self.decode_for_write(skey, raw)
    }

    /// [`Replica::load_for_write`] of bytes already read.
    fn decode_for_write(
        &self,
        skey: &[u8],
        raw: Option<Vec<u8>>,
    ) -> Result<(Siblings, Option<u128>), ClusterError> {
        let Some(raw) = raw else {
            return Ok((Siblings::default(), None));
        };
        let digest = match (self.merkle.get(), keyspace::split_storage_key(skey)) {
            (Some(_), Some((_, key))) => Some(merkle::key_digest(key, &raw)),
            _ => None,
        };
        Ok((Siblings::decode_shared(&Bytes::from(raw))?, digest))
    }

    /// Builds the hash trees of every stored key for a ring of `q` partitions
    /// (one scan of the store, at start) and keeps them current from then on.
    /// Does nothing if they already exist.
    pub fn enable_merkle(&self, q: usize) -> Result<(), ClusterError> {
        if self.merkle.get().is_some() {
            return Ok(());
        }
        let mut forest = MerkleForest::new(q);
        let mut cursor = Vec::new();
        loop {
            let page = self.engine.scan_from(&cursor, COUNT_PAGE)?;
            for (skey, raw) in &page {
                if let Some((position, key)) = keyspace::split_storage_key(skey) {
                    forest.update(position, None, Some(merkle::key_digest(key, raw)));
                }
                cursor = skey.clone();
                cursor.push(0);
            }
            if page.len() < COUNT_PAGE {
                break;
            }
        }
        let _ = self.merkle.set(Mutex::new(forest));
        Ok(())
    }

    /// Runs `f` on the hash trees, if enabled.
    pub fn with_merkle<R>(&self, f: impl FnOnce(&mut MerkleForest) -> R) -> Option<R> {
        let forest = self.merkle.get()?;
        let mut forest = forest.lock().unwrap_or_else(|p| p.into_inner());
        Some(f(&mut forest))
    }

    /// The digest of every key stored in `leaves` of `partition` (for
    /// anti-entropy), in ring order.
    pub fn leaf_digests(
        &self,
        partition: usize,
        leaves: &[usize],
    ) -> Result<Vec<(Bytes, u128)>, ClusterError> {
        let Some(ranges) = self.with_merkle(|f| {
            let tree = f.tree(partition);
            leaves
                .iter()
                .filter(|l| **l < merkle::LEAVES)
                .map(|l| tree.leaf_positions(partition, *l))
                .collect::<Vec<_>>()
        }) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for range in ranges {
            let mut cursor = keyspace::position_start(*range.start()).to_vec();
            'scan: loop {
                let page = self.engine.scan_from(&cursor, COUNT_PAGE)?;
                for (skey, raw) in &page {
                    let Some((position, key)) = keyspace::split_storage_key(skey) else {
                        continue;
                    };
                    if position > *range.end() {
                        break 'scan;
                    }
                    out.push((Bytes::copy_from_slice(key), merkle::key_digest(key, raw)));
                    cursor = skey.clone();
                    cursor.push(0);
                }
                if page.len() < COUNT_PAGE {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Stores `next` (or removes the key when nothing live is left and this
    /// is the only replica), keeping the key counters in step.
    fn store(
        &self,
        skey: &[u8],
        before: Prior,
        next: &Siblings,
        encoded: Option<EncodedSiblings>,
        now_ms: u64,
    ) -> Result<EncodedSiblings, ClusterError> {
        let encoded = encoded.unwrap_or_else(|| EncodedSiblings::encode(next));
        let Prior {
            existed,
            valued,
            digest: before_digest,
        } = before;
        let collect = self.collect_dead_keys && next.live(now_ms).next().is_none();
        let valued_delta = if collect {
            -i64::from(valued)
        } else {
            i64::from(has_value(next)) - i64::from(valued)
        };
        if collect {
            if existed {
                self.engine.delete(skey)?;
                self.stored_keys.fetch_sub(1, Ordering::Relaxed);
                CoordinatorStats::bump(&self.stats.keys_collected);
                if let Some((position, _)) = keyspace::split_storage_key(skey) {
                    self.with_merkle(|f| f.update(position, before_digest, None));
                }
            }
        } else {
            self.engine.put(skey, encoded.as_bytes())?;
            if !existed {
                self.stored_keys.fetch_add(1, Ordering::Relaxed);
            }
            if self.merkle.get().is_some() {
                if let Some((position, key)) = keyspace::split_storage_key(skey) {
                    let new = Some(merkle::key_digest(key, encoded.as_bytes()));
                    self.with_merkle(|f| f.update(position, before_digest, new));
                }
            }
        }
        self.value_keys.fetch_add(valued_delta, Ordering::Relaxed);
        Ok(encoded)
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

    /// Removes `key` if its stored state is exactly `expected` and holds
    /// nothing live (tombstone collection: the caller checked every replica
    /// holds this same state). Returns whether it was removed. The key's
    /// Merkle leaf is updated in the same step.
    pub fn collect_if_unchanged(
        &self,
        key: &[u8],
        expected: &Siblings,
        now_ms: u64,
    ) -> Result<bool, ClusterError> {
        let skey = keyspace::storage_key(key);
        let _guard = self.lock(&skey);
        let (current, digest) = self.load_for_write(&skey)?;
        if current.is_empty() || current != *expected || current.has_live(now_ms) {
            return Ok(false);
        }
        self.engine.delete(&skey)?;
        self.stored_keys.fetch_sub(1, Ordering::Relaxed);
        self.value_keys
            .fetch_sub(i64::from(has_value(&current)), Ordering::Relaxed);
        CoordinatorStats::bump(&self.stats.keys_collected);
        if let Some((position, _)) = keyspace::split_storage_key(&skey) {
            self.with_merkle(|f| f.update(position, digest, None));
        }
        Ok(true)
    }

    /// Up to `limit` stored entries `(storage key, stored bytes)`, and no
    /// more than about `max_bytes` (at least one entry), with ring positions
    /// in `first..=last`, after the storage key `after` (from `first` if
    /// empty), in storage order, and whether the range may hold more
    /// (partition transfer and hand-off).
    pub fn range_page(
        &self,
        first: u64,
        last: u64,
        after: &[u8],
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<StoredEntry>, bool), ClusterError> {
        let start = keyspace::position_start(first);
        let from = if after.is_empty() || after < start.as_slice() {
            start.to_vec()
        } else {
            let mut next = after.to_vec();
            next.push(0);
            next
        };
        let limit = limit.max(1);
        let page = match last.checked_add(1) {
            Some(end) => self
                .engine
                .scan_range(&from, &keyspace::position_start(end), limit)?,
            None => self.engine.scan_from(&from, limit)?,
        };
        let full = page.len() == limit;
        let mut out = Vec::with_capacity(page.len());
        let mut bytes = 0;
        for (skey, raw) in page {
            if !out.is_empty() && bytes + skey.len() + raw.len() > max_bytes {
                return Ok((out, true));
            }
            if keyspace::split_storage_key(&skey).is_some() {
                bytes += skey.len() + raw.len();
                out.push((skey, raw));
            }
        }
        Ok((out, full))
    }

    /// The digest anti-entropy uses of the stored state of `key` (0 if
    /// none is stored).
    pub fn digest_of(&self, key: &[u8]) -> Result<u128, ClusterError> {
        let skey = keyspace::storage_key(key);
        Ok(self
            .engine
            .get(&skey)?
            .map_or(0, |raw| merkle::key_digest(key, &raw)))
    }

    /// Removes `key` if its stored state is exactly `expected`, live or not
    /// (a key handed off to its owners; a concurrent write keeps it here for
    /// the next round). Returns whether it was removed.
    pub fn remove_if_unchanged(
        &self,
        key: &[u8],
        expected: &Siblings,
    ) -> Result<bool, ClusterError> {
        let skey = keyspace::storage_key(key);
        let _guard = self.lock(&skey);
        let (current, digest) = self.load_for_write(&skey)?;
        if current.is_empty() || current != *expected {
            return Ok(false);
        }
        self.engine.delete(&skey)?;
        self.stored_keys.fetch_sub(1, Ordering::Relaxed);
        self.value_keys
            .fetch_sub(i64::from(has_value(&current)), Ordering::Relaxed);
        if let Some((position, _)) = keyspace::split_storage_key(&skey) {
            self.with_merkle(|f| f.update(position, digest, None));
        }
        Ok(true)
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
            let (current, digest) = self.load_for_write(&skey)?;
            let mut next_state = current.clone();
            let purged = next_state.purge_expired(now_ms);
            if purged > 0 {
                self.stats
                    .expired_purged
                    .fetch_add(purged as u64, Ordering::Relaxed);
                self.store(
                    &skey,
                    Prior::of(&current, digest),
                    &next_state,
                    None,
                    now_ms,
                )?;
            }
        }
        Ok(next)
    }

    /// Removes every key held here (FLUSHALL).
    pub fn clear(&self) -> Result<(), ClusterError> {
        self.engine.clear()?;
        self.with_merkle(|f| *f = MerkleForest::new(f.q()));
        self.stored_keys.store(0, Ordering::Relaxed);
        self.value_keys.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Makes every acknowledged write durable (shutdown).
    pub fn flush(&self) -> Result<(), ClusterError> {
        Ok(self.engine.flush()?)
    }
}

/// What [`Replica::store`] needs to know of a key's state before a write.
struct Prior {
    /// Anything was stored.
    existed: bool,
    /// A value version was stored.
    valued: bool,
    /// The stored bytes' digest, when the Merkle trees are kept.
    digest: Option<u128>,
}

impl Prior {
    fn of(state: &Siblings, digest: Option<u128>) -> Prior {
        Prior {
            existed: !state.is_empty(),
            valued: has_value(state),
            digest,
        }
    }
}

fn has_value(siblings: &Siblings) -> bool {
    siblings.versions().iter().any(|v| !v.is_tombstone())
}

fn version(dot: Dot, write: Write, now_ms: u64) -> Version {
    Version {
        dot,
        timestamp_ms: now_ms,
        expires_at_ms: write.expires_at_ms,
        payload: write.payload,
    }
}
