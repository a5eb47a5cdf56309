//! The coordinator: the paper's `get(key)` and `put(key, context, object)`.
//!
//! The idea: every client command, whatever its Redis name, becomes a read of
//! a key's sibling set, a causal write, or a read-then-write. The coordinator
//! is the only way commands touch data, so the commands do not know whether
//! they run on one node or on a cluster.
//!
//! How it works: on a single node (N = R = W = 1, no peers) every call goes
//! straight to the local [`Replica`]. In a cluster it goes to the
//! [`Node`] runtime, which runs the quorum state machines of [`fsm`] over the
//! first N healthy nodes of the key's preference list: reads merge R replies
//! and repair stale replicas afterwards; writes are coordinated by an owner of
//! the key (which creates the dot) and acknowledged after W replicas stored
//! them. Read-modify-write commands use [`Coordinator::update`]: atomic under
//! a stripe lock on one node; on a cluster they start from a quorum read
//! (which sees every acknowledged write, as R + W > N) and are not isolated
//! across coordinators: concurrent updates become siblings instead of being
//! serialised.
//!
//! CAVEATS:
//! - KEYS, SCAN and DBSIZE on a cluster combine every node's local store; they
//!   are approximate while replicas disagree (DBSIZE divides the replica count
//!   by N).

pub mod fsm;

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use thiserror::Error;

pub use crate::stats::CoordinatorStats;
use crate::{
    keyspace,
    replica::{Replica, ReplicaConfig},
    runtime::Node,
    storage::{Engine, StorageError},
    version::{NodeId, Payload, Siblings, VersionError, VersionVector},
    wire::{Request, Response},
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
    /// A peer failed the request for another reason.
    #[error("peer: {0}")]
    Remote(String),
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
    /// Also supersede every version the coordinating replica holds (a plain
    /// SET: "supersedes what its coordinating replica knows").
    pub supersede_known: bool,
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
            supersede_known: false,
            payload: Payload::Value(value),
            expires_at_ms,
        }
    }

    /// A tombstone superseding `context`.
    pub fn tombstone(context: VersionVector) -> Write {
        Write {
            context,
            supersede_known: false,
            payload: Payload::Tombstone,
            expires_at_ms: None,
        }
    }
}

/// Coordinates reads and writes for this node.
pub struct Coordinator {
    replica: Arc<Replica>,
    node: Option<Arc<Node>>,
    config: CoordinatorConfig,
}

impl Coordinator {
    /// A single-node coordinator over `engine` (no peers).
    pub fn open(
        engine: Arc<dyn Engine>,
        config: CoordinatorConfig,
    ) -> Result<Coordinator, ClusterError> {
        let replica = Replica::open(
            engine,
            ReplicaConfig {
                max_siblings: config.max_siblings,
                collect_dead_keys: config.replicas == 1,
            },
        )?;
        Ok(Coordinator {
            replica: Arc::new(replica),
            node: None,
            config,
        })
    }

    /// A coordinator that runs every request through the cluster `node`.
    pub fn clustered(node: Arc<Node>, config: CoordinatorConfig) -> Coordinator {
        Coordinator {
            replica: node.replica().clone(),
            node: Some(node),
            config,
        }
    }

    /// The cluster node, if this is a cluster.
    pub fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// The local replica.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// This node's id: its member id in a cluster (see `node-id`), else the
    /// id its dots carry.
    pub fn node_id(&self) -> NodeId {
        self.node
            .as_ref()
            .map_or_else(|| self.replica.node_id(), |n| n.id())
    }

    /// The settings in force.
    pub fn config(&self) -> CoordinatorConfig {
        CoordinatorConfig {
            max_siblings: self.replica.max_siblings(),
            ..self.config
        }
    }

    /// Changes `max-siblings` at run time (CONFIG SET).
    pub fn set_max_siblings(&self, max: usize) {
        self.replica.set_max_siblings(max);
    }

    /// Counters for INFO.
    pub fn stats(&self) -> &CoordinatorStats {
        self.replica.stats()
    }

    /// The storage engine (for INFO and shutdown).
    pub fn engine(&self) -> &Arc<dyn Engine> {
        self.replica.engine()
    }

    /// Keys held by this node (including expired ones not yet purged).
    pub fn stored_keys(&self) -> u64 {
        self.replica.stored_keys()
    }

    /// `get(key)`: every version of the key the read quorum knows.
    pub async fn get(&self, key: &[u8]) -> Result<Siblings, ClusterError> {
        let result = match &self.node {
            // Boxed: the quorum's state is large, and every future that
            // awaits it would otherwise carry (and move) it inline.
            Some(node) => Box::pin(node.get(key)).await,
            None => {
                CoordinatorStats::bump(&self.replica.stats().reads);
                self.replica.read(key)
            }
        };
        if let Ok(siblings) = &result {
            self.replica.stats().record_read(siblings.len());
        }
        result
    }

    /// `get(key)` of several keys (pipelined GETs, MGET): on a cluster the
    /// quorum reads run together, their messages to each replica batched.
    /// Results in the order of `keys`.
    pub async fn get_many(&self, keys: &[Bytes]) -> Vec<Result<Siblings, ClusterError>> {
        let results = match &self.node {
            Some(node) => Box::pin(node.get_many(keys)).await,
            None => keys
                .iter()
                .map(|key| {
                    CoordinatorStats::bump(&self.replica.stats().reads);
                    self.replica.read(key)
                })
                .collect(),
        };
        for siblings in results.iter().flatten() {
            self.replica.stats().record_read(siblings.len());
        }
        results
    }

    /// This node's own stored versions of `key` (no quorum).
    pub fn local_get(&self, key: &[u8]) -> Result<Siblings, ClusterError> {
        self.replica.read(key)
    }

    /// `put(key, context, object)`: stores a new version superseding what
    /// `write.context` covers; returns the coordinator's siblings afterwards.
    pub async fn put(
        &self,
        key: &[u8],
        write: Write,
        now_ms: u64,
    ) -> Result<Siblings, ClusterError> {
        match &self.node {
            Some(node) => Box::pin(node.put(key, write, now_ms)).await,
            None => {
                let (_, stored) = self.replica.write(key, now_ms, |_| (Some(write), ()))?;
                Ok(stored.unwrap_or_default())
            }
        }
    }

    /// `put` of several keys (pipelined SETs, MSET): on a cluster the
    /// replications run together, their messages to each replica batched.
    /// Results in the order of `writes`.
    pub async fn put_many(
        &self,
        writes: Vec<(Bytes, Write)>,
        now_ms: u64,
    ) -> Vec<Result<Siblings, ClusterError>> {
        match &self.node {
            Some(node) => Box::pin(node.put_many(writes, now_ms)).await,
            None => writes
                .into_iter()
                .map(|(key, write)| {
                    let (_, stored) = self.replica.write(&key, now_ms, |_| (Some(write), ()))?;
                    Ok(stored.unwrap_or_default())
                })
                .collect(),
        }
    }

    /// Read-modify-write: `decide` sees the current siblings and returns the
    /// write to store (if any) and a result for the caller.
    pub async fn update<R: Send>(
        &self,
        key: &[u8],
        now_ms: u64,
        decide: impl FnOnce(&Siblings) -> (Option<Write>, R) + Send,
    ) -> Result<R, ClusterError> {
        match &self.node {
            Some(node) => Box::pin(node.update(key, now_ms, decide)).await,
            None => Ok(self.replica.write(key, now_ms, decide)?.0),
        }
    }

    /// This node's keys at or after ring position `cursor` (see
    /// [`Replica::scan`]).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<(Bytes, Siblings)>, u64), ClusterError> {
        self.replica.scan(cursor, count)
    }

    /// Up to about `count` keys of the whole cluster at or after `cursor`,
    /// each with the merge of the states the nodes hold, and the cursor to
    /// continue from (0: done). Fewer than N unreachable nodes still give a
    /// complete answer (each key has N replicas). On one node, the local scan.
    pub async fn cluster_scan(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<(Bytes, Siblings)>, u64), ClusterError> {
        let Some(node) = &self.node else {
            return self.replica.scan(cursor, count);
        };
        let count = count.clamp(1, 4096);
        let answers = node
            .broadcast(Request::Scan {
                cursor,
                count: count as u32,
            })
            .await;
        // Every key is on N nodes: the scan is complete unless N nodes failed.
        let mut pages = Vec::new();
        let mut failed = 0;
        for (_, answer) in answers {
            match answer {
                Ok(Response::Page { entries, next }) => pages.push((entries, next)),
                _ => failed += 1,
            }
        }
        let n = node.config().n;
        if failed >= n {
            return Err(ClusterError::Unavailable {
                needed: pages.len() + failed - n + 1,
                got: pages.len(),
            });
        }
        Ok(combine_pages(pages))
    }

    /// Number of keys with a value: this node's count on one node; on a
    /// cluster the sum of every node's count divided by N (approximate while
    /// replicas disagree).
    pub async fn db_size(&self) -> Result<u64, ClusterError> {
        let Some(node) = &self.node else {
            return Ok(self.replica.stored_keys());
        };
        let mut total = 0u64;
        let mut nodes = 0usize;
        for (_, answer) in node.broadcast(Request::CountLive).await {
            if let Ok(Response::Count(count)) = answer {
                total += count;
                nodes += 1;
            }
        }
        let copies = node.config().n.min(nodes).max(1) as u64;
        Ok((total + copies / 2) / copies)
    }

    /// Removes every key: on a cluster, on every member (fails if one cannot
    /// be reached, after clearing the others).
    pub async fn flush_all(&self) -> Result<(), ClusterError> {
        let Some(node) = &self.node else {
            return self.clear();
        };
        let answers = node.broadcast(Request::FlushAll).await;
        let total = answers.len();
        let acked = answers
            .iter()
            .filter(|(_, a)| matches!(a, Ok(Response::Ack)))
            .count();
        if acked < total {
            return Err(ClusterError::Unavailable {
                needed: total,
                got: acked,
            });
        }
        Ok(())
    }

    /// Removes expired versions from up to `batch` keys starting at `cursor`;
    /// returns where to continue (0: wrapped around).
    pub fn purge_expired_step(
        &self,
        cursor: u64,
        batch: usize,
        now_ms: u64,
    ) -> Result<u64, ClusterError> {
        self.replica.purge_expired_step(cursor, batch, now_ms)
    }

    /// Removes every key on this node.
    pub fn clear(&self) -> Result<(), ClusterError> {
        self.replica.clear()
    }

    /// Makes every acknowledged write durable (shutdown).
    pub fn flush(&self) -> Result<(), ClusterError> {
        self.replica.flush()
    }
}

/// Combines per-node scan pages: keeps keys up to the smallest position any
/// truncated page reached (beyond it a node may hold keys not yet listed),
/// merges each key's states, and continues after that position.
fn combine_pages(pages: Vec<(Vec<(Bytes, Siblings)>, u64)>) -> (Vec<(Bytes, Siblings)>, u64) {
    let limit = pages
        .iter()
        .filter(|(_, next)| *next != 0)
        .map(|(_, next)| next - 1)
        .min();
    let mut merged: BTreeMap<(u64, Bytes), Siblings> = BTreeMap::new();
    for (entries, _) in pages {
        for (key, siblings) in entries {
            let position = keyspace::ring_position(&key);
            if limit.is_some_and(|l| position > l) {
                continue;
            }
            merged
                .entry((position, key))
                .and_modify(|s| s.merge(&siblings))
                .or_insert(siblings);
        }
    }
    let next = limit.map_or(0, |l| l.wrapping_add(1));
    (merged.into_iter().map(|((_, k), s)| (k, s)).collect(), next)
}

#[cfg(test)]
mod tests;
