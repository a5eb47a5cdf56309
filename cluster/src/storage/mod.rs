//! Local persistence: the pluggable storage engine under each node.
//!
//! # The idea
//!
//! The Dynamo paper (section 4, "System Architecture", and section 5) keeps
//! the local store deliberately dumb and swappable: each node hands its
//! versioned objects to a *local persistence engine* — Berkeley DB
//! Transactional Data Store, BDB Java Edition, MySQL, or an in-memory buffer
//! with a persistent backing store — chosen per application by object size
//! and access pattern. Everything interesting (partitioning, replication,
//! vector clocks, hinted handoff, read repair) lives *above* that engine.
//!
//! This module is that seam. [`Engine`] is a narrow, ordered, byte-oriented
//! key-value interface: `get`/`put`/`delete`, an ascending range scan
//! ([`Engine::scan_from`]), a key count, `clear`, `flush`, and a tiny separate
//! *metadata* namespace for node bookkeeping (the node id, the dot-counter
//! lease). Keys and values are opaque bytes; the layers above decide how keys
//! are encoded (so that a range scan means something to them) and how
//! values are encoded (siblings plus their causal context).
//!
//! Two engines ship here:
//!
//! * [`SledEngine`] — persistent, backed by [sled] 0.34, an embedded
//!   log-structured B+tree. Data lives in sled's default tree, metadata in a
//!   tree named `"meta"`, both inside one sled directory.
//! * [`MemoryEngine`] — a `BTreeMap` behind a `RwLock`. Nothing survives the
//!   process; it is for tests, benchmarks and throw-away caches.
//! * [`AofEngine`] — the whole data set in a `BTreeMap`, persisted by an
//!   append-only log that a restart replays (Redis's AOF model), with the
//!   same [`Durability`] choices as sled; the log is rewritten when mostly
//!   garbage.
//!
//! Pick one at run time with [`open_engine`] and an [`EngineKind`] (which
//! parses from `"sled"` / `"memory"`).
//!
//! # How it works
//!
//! Every method takes `&self`; engines are internally synchronised and are
//! shared as `Arc<dyn Engine>` between connection tasks. The calls are
//! *blocking* (sled may touch the disk, and an [`Durability::EveryWrite`]
//! `put` waits for an fsync), so async callers should keep them short or
//! move them to a blocking thread.
//!
//! ## Durability: every write vs. buffered writes
//!
//! The paper (section 6.1, "Balancing Performance and Durability") describes
//! the trade-off Dynamo made: writes go to an in-memory buffer that a
//! background writer thread flushes to storage periodically, which cut the
//! 99.9th-percentile write latency by a factor of five during peak traffic —
//! at the price that a server crash loses the writes still in the buffer. To
//! bound that loss, Dynamo had *one* of the N replicas in each write perform
//! a durable write; since the coordinator only waits for W responses, that
//! slower durable write need not sit on the client's critical path.
//!
//! [`Durability`] exposes the same knob for the sled engine:
//!
//! * [`Durability::EveryWrite`] — `put`, `delete` and `clear` return only
//!   after sled has flushed (fsync) its log. An acknowledged write survives
//!   `kill -9` and power loss (to the extent the disk honours fsync). Cost:
//!   one fsync per write, typically ~0.1–10 ms depending on the device;
//!   concurrent writers share flushes, but throughput is bounded by the disk.
//! * [`Durability::Periodic`] — writes land in sled's in-memory log buffer
//!   and sled's background flusher thread writes and syncs it every
//!   `flush_every_ms` milliseconds. A crash loses *at most roughly* the last
//!   `flush_every_ms` of acknowledged writes, but never corrupts what was
//!   already flushed: sled's log is crash-consistent, so recovery yields a
//!   prefix of the write history. [`Engine::flush`] forces a sync on demand.
//!
//! In a replicated deployment the Periodic mode is usually the right default
//! (a lost tail on one node is repaired by read repair / anti-entropy from the
//! other replicas, exactly as in the paper); EveryWrite is for single-node
//! setups or data that must never regress.
//!
//! Metadata is always written durably: [`Engine::meta_put`] flushes before it
//! returns in both modes, because the node id and the dot-counter lease must
//! never go backwards after a restart.
//!
//! # Caveats
//!
//! * **sled 0.34 is pre-1.0.** Its on-disk format is not stable across sled
//!   major versions (a future upgrade needs an export/import), and it has
//!   known rough edges. The engine is behind the [`Engine`] trait precisely so
//!   it can be replaced.
//! * **Space amplification.** sled is log-structured: overwrites and deletes
//!   append, and old segments are reclaimed lazily by its background GC, so
//!   the directory can be several times larger than the live data, and
//!   deleting keys does not shrink it right away. [`Engine::size_bytes`]
//!   reports the on-disk size, not the live size.
//! * **Memory.** sled's page cache defaults to 1 GiB (`cache_capacity` in
//!   [`SledEngine::open`]); it is an upper bound, not a preallocation.
//! * **`count()` is O(n)** for sled (it walks the whole tree) — call it at
//!   start-up or for INFO, not per request. `clear()` is O(n) and not atomic
//!   (a crash midway leaves some keys behind).
//! * **One process per directory.** sled takes an exclusive file lock on its
//!   directory; opening a directory already open — in another process *or*
//!   in this one — fails with [`StorageError::Locked`] (after retrying for
//!   up to 2 s, because sled releases the lock of a just-closed engine
//!   asynchronously).
//! * **MemoryEngine loses everything on exit**, whatever [`Durability`] says.
//!
//! [sled]: https://docs.rs/sled/0.34.7

mod aof;
mod cache;
mod memory;
mod ordered;
mod sled_engine;

#[cfg(test)]
mod conformance;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

pub use aof::AofEngine;
pub use cache::CachedEngine;
pub use memory::MemoryEngine;
pub use sled_engine::SledEngine;

/// One key-value pair, as returned by [`Engine::scan_from`].
pub type Entry = (Vec<u8>, Vec<u8>);

/// A local persistence engine: an ordered map from byte keys to byte values,
/// plus a small separate metadata namespace.
///
/// Implementations are internally synchronised (every method takes `&self`)
/// and blocking. Keys compare as plain byte strings (lexicographically, a
/// shorter prefix sorts first). See the [module docs](self) for durability.
pub trait Engine: Send + Sync + 'static {
    /// Engine name for INFO (`"sled"`, `"memory"`).
    fn name(&self) -> &'static str;

    /// The value stored under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// A hint that `keys` are about to be read and written one by one (a
    /// batch of replica requests): an in-memory engine touches their entries
    /// now, all together, so their cache misses overlap instead of each
    /// stalling its own lookup. Changes nothing; the default does nothing.
    fn warm(&self, _keys: &[&[u8]]) {}

    /// Store `value` under `key`, replacing any previous value.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError>;

    /// Remove `key`. Removing an absent key is not an error.
    fn delete(&self, key: &[u8]) -> Result<(), StorageError>;

    /// Up to `limit` entries with key >= start, in ascending key order.
    ///
    /// To page through everything, call again with the last key returned
    /// plus a `0x00` byte appended (the smallest key greater than it).
    fn scan_from(&self, start: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError>;

    /// Up to `limit` entries with `start <= key < end`, in ascending key
    /// order: like [`Engine::scan_from`] but never reading past `end` (a
    /// partition's range). The default filters `scan_from`; engines with
    /// ranged iteration override it.
    fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut out = self.scan_from(start, limit)?;
        out.retain(|(k, _)| k.as_slice() < end);
        Ok(out)
    }

    /// Number of keys stored (may be O(n); callers call it rarely, e.g. at
    /// start-up). Metadata entries are not counted.
    fn count(&self) -> Result<u64, StorageError>;

    /// Remove every data key (FLUSHALL); metadata is kept.
    fn clear(&self) -> Result<(), StorageError>;

    /// Make every write so far durable.
    fn flush(&self) -> Result<(), StorageError>;

    /// Read a metadata entry (node id, dot-counter lease, ...). Metadata lives
    /// in a namespace separate from data keys.
    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Write a metadata entry; it is durable when this returns.
    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StorageError>;

    /// Approximate bytes on disk / in memory for INFO (0 if unknown).
    fn size_bytes(&self) -> u64;

    /// A separate keyspace `name` in the same store, with the same
    /// durability (e.g. hinted-handoff hints beside the data). Its data keys
    /// never mix with this engine's; `clear` on one leaves the other alone.
    /// Open each name once.
    fn namespace(&self, name: &str) -> Result<Arc<dyn Engine>, StorageError>;
}

/// When a write to a persistent engine becomes durable. Ignored by
/// [`MemoryEngine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `put`/`delete`/`clear` return only after the write is on stable
    /// storage (one fsync per write).
    EveryWrite,
    /// Writes are buffered and flushed by a background thread every
    /// `flush_every_ms` milliseconds (must be > 0); a crash may lose about
    /// that much of the most recent acknowledged writes, never older ones.
    Periodic {
        /// Interval of the background flush, in milliseconds.
        flush_every_ms: u64,
    },
}

/// Which [`Engine`] implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// [`SledEngine`]: persistent.
    Sled,
    /// [`MemoryEngine`]: volatile, lost on exit.
    Memory,
    /// [`AofEngine`]: in memory, persisted by an append-only log.
    Aof,
}

impl EngineKind {
    /// Every kind, in the order they are listed in messages.
    pub const ALL: [EngineKind; 3] = [EngineKind::Sled, EngineKind::Memory, EngineKind::Aof];

    /// The configuration spelling of this kind (`"sled"`, `"memory"`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Sled => "sled",
            EngineKind::Memory => "memory",
            EngineKind::Aof => "aof",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error from parsing an unknown [`EngineKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown storage engine {0:?} (valid values: sled, memory, aof)")]
pub struct ParseEngineKindError(pub String);

impl FromStr for EngineKind {
    type Err = ParseEngineKindError;

    /// Parses `"sled"` or `"memory"` (ASCII case-insensitive, surrounding
    /// whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        EngineKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseEngineKindError(s.to_string()))
    }
}

/// Errors from a storage engine. The `Display` text is short and meant for
/// humans (logs, start-up failures, Redis error replies).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O error on the engine's files.
    #[error("storage I/O error in {}: {source}", path.display())]
    Io {
        /// The engine's directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The directory is already opened by another engine instance (another
    /// process, or an engine in this process that is still alive).
    #[error(
        "storage directory {} is locked: is another node already using it?",
        path.display()
    )]
    Locked {
        /// The engine's directory.
        path: PathBuf,
    },
    /// The engine found corrupt data.
    #[error("storage data in {} is corrupt: {detail}", path.display())]
    Corrupt {
        /// The engine's directory.
        path: PathBuf,
        /// What the engine reported.
        detail: String,
    },
    /// A configuration value the engine cannot use.
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// Any other engine failure.
    #[error("storage engine error: {0}")]
    Engine(String),
}

/// Open an engine of `kind`.
///
/// For [`EngineKind::Sled`], `dir` is the sled directory (created if missing;
/// sled owns its contents, so do not put other files in it) and `durability`
/// picks the flush policy; the page cache uses sled's default size (1 GiB
/// upper bound). [`EngineKind::Aof`] keeps its log in `dir` with the same
/// durability choices. For [`EngineKind::Memory`] both `dir` and `durability` are
/// ignored.
pub fn open_engine(
    kind: EngineKind,
    dir: &Path,
    durability: Durability,
) -> Result<Arc<dyn Engine>, StorageError> {
    Ok(match kind {
        EngineKind::Sled => Arc::new(SledEngine::open(dir, durability, None)?),
        EngineKind::Memory => Arc::new(MemoryEngine::new()),
        EngineKind::Aof => Arc::new(AofEngine::open(dir, durability)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_kind_parses_and_displays() {
        assert_eq!("sled".parse::<EngineKind>().unwrap(), EngineKind::Sled);
        assert_eq!(
            " Memory ".parse::<EngineKind>().unwrap(),
            EngineKind::Memory
        );
        for k in EngineKind::ALL {
            assert_eq!(k.to_string().parse::<EngineKind>().unwrap(), k);
        }
        let err = "rocksdb".parse::<EngineKind>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("rocksdb"), "{msg}");
        assert!(msg.contains("sled") && msg.contains("memory"), "{msg}");
    }

    #[test]
    fn open_engine_picks_the_kind() {
        let dir = tempfile::tempdir().unwrap();
        let d = Durability::Periodic {
            flush_every_ms: 100,
        };
        let mem = open_engine(EngineKind::Memory, dir.path(), d).unwrap();
        assert_eq!(mem.name(), "memory");
        let sled_dir = dir.path().join("db");
        let sled = open_engine(EngineKind::Sled, &sled_dir, d).unwrap();
        assert_eq!(sled.name(), "sled");
        sled.put(b"k", b"v").unwrap();
        assert_eq!(sled.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(sled_dir.is_dir());
    }

    #[test]
    fn error_messages_are_short_and_name_the_path() {
        let e = StorageError::Locked {
            path: PathBuf::from("/data/n1"),
        };
        assert_eq!(
            e.to_string(),
            "storage directory /data/n1 is locked: is another node already using it?"
        );
        let e = StorageError::Io {
            path: PathBuf::from("/data/n1"),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(e.to_string(), "storage I/O error in /data/n1: disk on fire");
    }
}
