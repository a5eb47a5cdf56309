//! Merkle-tree anti-entropy (the paper's section 4.7): replicas of a
//! partition compare hash trees and exchange only the keys that differ.
//!
//! Each round this node picks a random live peer it shares partitions with
//! (among those with a higher id: each pair is synced by one side) and:
//! 1. compares one hash over the Merkle roots of all shared partitions (16
//!    bytes: replicas in sync stop here), and if it differs, the roots
//!    themselves (16 bytes per partition);
//! 2. for up to `anti-entropy-partitions` partitions whose roots differ,
//!    descends the peer's tree level by level (16 hashes per node asked),
//!    only into the children whose hashes differ, down to the leaves;
//! 3. exchanges the key digests of those leaves only;
//! 4. pulls the peer's state of every key that is missing or different here
//!    and merges it, and pushes its own state of every key missing or
//!    different there. Merging is a join, so both sides end with the union
//!    of what either knew and nothing is overwritten.
//!
//! Transferred bytes therefore grow with the number of differing keys (and
//! the keys sharing their leaves), not with the number of keys stored.
//!
//! CAVEATS:
//! - Trees are compared while writes continue; a key written during an
//!   exchange may be synced needlessly or left for the next round.
//! - Hints are not part of the trees: anti-entropy repairs replicas' own
//!   stores; hinted handoff delivers hints.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use serde::Serialize;
use tracing::debug;

use super::{node::Node, transport::TransportError};
use crate::{
    merkle::{self, differing},
    stats::CoordinatorStats,
    version::{EncodedSiblings, NodeId, Siblings},
    wire::{Request, Response},
};

/// Most keys one ReadMany / MergeMany message carries.
pub const MAX_KEYS_PER_MESSAGE: usize = 256;

/// Keys moved per step of a repair; between steps the exchange yields to
/// foreground traffic when the node is busy.
const KEYS_PER_STEP: usize = 64;

/// How long a repair step waits when the node is busy.
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// What one exchange did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The peer.
    pub peer: NodeId,
    /// Partitions whose roots were compared.
    pub partitions_compared: usize,
    /// Partitions whose roots differed and were descended into.
    pub partitions_synced: usize,
    /// Keys merged here from the peer.
    pub keys_pulled: usize,
    /// Keys sent to the peer to merge.
    pub keys_pushed: usize,
    /// Bytes of the exchange's messages, both ways.
    pub bytes: u64,
}

fn size_of<T: Serialize>(value: &T) -> u64 {
    postcard::to_stdvec(value).map_or(0, |v| v.len() as u64)
}

impl Node {
    /// Partitions this node replicates, grouped by the other replicas.
    fn shared_partitions(&self) -> HashMap<NodeId, Vec<u32>> {
        let view = self.view();
        let ring = &view.ring;
        let mut shared: HashMap<NodeId, Vec<u32>> = HashMap::new();
        if ring.is_empty() {
            return shared;
        }
        for partition in 0..ring.q() {
            let replicas = ring.preference_list_n(ring.partition_start(partition), self.config().n);
            if !replicas.contains(&self.id()) {
                continue;
            }
            for peer in replicas.into_iter().filter(|p| *p != self.id()) {
                shared.entry(peer).or_default().push(partition as u32);
            }
        }
        shared
    }

    /// One anti-entropy exchange with a random live peer that shares
    /// partitions with this node; `None` if there is none.
    pub async fn anti_entropy_round(self: &Arc<Self>) -> Option<SyncReport> {
        let shared = self.shared_partitions();
        // Each pair of replicas is synced by one side only (the lower id):
        // an exchange repairs both ways, so the other side would only repeat
        // it, moving the same keys twice.
        let mut peers: Vec<NodeId> = shared
            .keys()
            .copied()
            .filter(|p| *p > self.id() && self.is_up(*p))
            .collect();
        peers.sort_unstable();
        let peer = *peers.get(fastrand::usize(..peers.len().max(1)))?;
        match self.sync_with(peer, &shared[&peer]).await {
            Ok(report) => Some(report),
            Err(error) => {
                debug!(%error, peer = format!("{peer:016x}"), "anti-entropy exchange failed");
                None
            }
        }
    }

    /// Runs anti-entropy exchanges forever.
    pub async fn run_anti_entropy(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config().anti_entropy_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if self.background_may_run() {
                self.anti_entropy_round().await;
            }
        }
    }

    async fn ask(
        &self,
        peer: NodeId,
        request: Request,
        bytes: &mut u64,
    ) -> Result<Response, TransportError> {
        *bytes += size_of(&request);
        let response = self.call(peer, request).await?;
        *bytes += size_of(&response);
        Ok(response)
    }

    /// Compares and repairs the `partitions` this node shares with `peer`.
    pub async fn sync_with(
        self: &Arc<Self>,
        peer: NodeId,
        partitions: &[u32],
    ) -> Result<SyncReport, TransportError> {
        let stats = self.replica().stats();
        CoordinatorStats::bump(&stats.ae_rounds);
        let mut report = SyncReport {
            peer,
            partitions_compared: partitions.len(),
            ..SyncReport::default()
        };
        let unexpected = || TransportError::Disconnected(format!("{peer:016x}: unexpected answer"));
        let roots = |summary| Request::MerkleRoots {
            partitions: partitions.to_vec(),
            summary,
        };
        let summary = self.ask(peer, roots(true), &mut report.bytes).await?;
        let Response::Hashes(mine) = self.merkle_roots(partitions, true) else {
            return Err(unexpected());
        };
        if matches!(&summary, Response::Hashes(theirs) if *theirs == mine) {
            self.count_sync(&report);
            return Ok(report);
        }
        let Response::Hashes(theirs) = self.ask(peer, roots(false), &mut report.bytes).await?
        else {
            return Err(unexpected());
        };
        let Response::Hashes(mine) = self.merkle_roots(partitions, false) else {
            return Err(unexpected());
        };
        let budget = self.config().anti_entropy_partitions.max(1);
        for i in differing(&mine, &theirs).into_iter().take(budget) {
            let partition = partitions[i];
            report.partitions_synced += 1;
            self.sync_partition(peer, partition, &mut report).await?;
        }
        self.count_sync(&report);
        Ok(report)
    }

    fn count_sync(&self, report: &SyncReport) {
        let stats = self.replica().stats();
        stats.ae_partitions_synced.fetch_add(
            report.partitions_synced as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        stats.ae_keys_repaired.fetch_add(
            (report.keys_pulled + report.keys_pushed) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        stats
            .ae_bytes
            .fetch_add(report.bytes, std::sync::atomic::Ordering::Relaxed);
    }

    async fn sync_partition(
        self: &Arc<Self>,
        peer: NodeId,
        partition: u32,
        report: &mut SyncReport,
    ) -> Result<(), TransportError> {
        let unexpected = || TransportError::Disconnected(format!("{peer:016x}: unexpected answer"));
        // Descend only where hashes differ: (level, index) frontier.
        let mut frontier = vec![0usize];
        let mut leaves = Vec::new();
        for level in 0..merkle::LEVELS {
            let mut next = Vec::new();
            for index in frontier {
                let request = Request::MerkleChildren {
                    partition,
                    level: level as u8,
                    index: index as u16,
                };
                let Response::Hashes(theirs) = self.ask(peer, request, &mut report.bytes).await?
                else {
                    return Err(unexpected());
                };
                let Response::Hashes(mine) = self.merkle_children(partition, level, index) else {
                    return Err(unexpected());
                };
                for child in differing(&mine, &theirs) {
                    next.push(index * merkle::FANOUT + child);
                }
            }
            frontier = next;
            if level + 1 == merkle::LEVELS {
                leaves = std::mem::take(&mut frontier);
            }
        }
        if leaves.is_empty() {
            return Ok(());
        }
        let request = Request::LeafDigests {
            partition,
            leaves: leaves.iter().map(|l| *l as u16).collect(),
        };
        let Response::Digests(theirs) = self.ask(peer, request, &mut report.bytes).await? else {
            return Err(unexpected());
        };
        let mine = self
            .replica()
            .leaf_digests(partition as usize, &leaves)
            .map_err(|e| TransportError::Disconnected(e.to_string()))?;
        let mine_map: HashMap<&Bytes, u128> = mine.iter().map(|(k, d)| (k, *d)).collect();
        let theirs_map: HashMap<&Bytes, u128> = theirs.iter().map(|(k, d)| (k, *d)).collect();
        let pull: Vec<Bytes> = theirs
            .iter()
            .filter(|(k, d)| mine_map.get(k) != Some(d))
            .map(|(k, _)| k.clone())
            .collect();
        let push: Vec<Bytes> = mine
            .iter()
            .filter(|(k, d)| theirs_map.get(k) != Some(d))
            .map(|(k, _)| k.clone())
            .collect();
        let step = self.ae_step();
        for chunk in pull.chunks(step) {
            self.pace(chunk.len()).await;
            let request = Request::ReadMany {
                keys: chunk.to_vec(),
            };
            let Response::States(states) = self.ask(peer, request, &mut report.bytes).await? else {
                return Err(unexpected());
            };
            for (key, state) in chunk.iter().zip(states) {
                if self.merge_local(key, &state) {
                    report.keys_pulled += 1;
                }
            }
        }
        for chunk in push.chunks(step) {
            self.pace(chunk.len()).await;
            let entries: Vec<(Bytes, Siblings)> = chunk
                .iter()
                .filter_map(|k| Some((k.clone(), self.replica().read(k).ok()?)))
                .collect();
            report.keys_pushed += entries.len();
            let request = Request::MergeMany { entries };
            if !matches!(
                self.ask(peer, request, &mut report.bytes).await?,
                Response::Ack
            ) {
                return Err(unexpected());
            }
        }
        Ok(())
    }

    /// Keys per repair step: [`KEYS_PER_STEP`], or less under a key rate
    /// so that steps stay small and evenly spaced.
    fn ae_step(&self) -> usize {
        self.ae_rate().step(KEYS_PER_STEP)
    }

    /// Waits until a step of `keys` keys may run: its turn under
    /// `anti-entropy-max-keys-per-sec`, then while the node is busy with
    /// foreground work (the background budget applied inside a long
    /// exchange, not only between rounds).
    async fn pace(&self, keys: usize) {
        let start = self.ae_rate().book(keys, std::time::Instant::now());
        tokio::time::sleep_until(start.into()).await;
        for _ in 0..20 {
            if self.background_may_run() {
                return;
            }
            tokio::time::sleep(BUSY_PAUSE).await;
        }
    }

    fn merge_local(&self, key: &[u8], state: &EncodedSiblings) -> bool {
        self.replica()
            .merge_encoded(key, state, super::now_ms())
            .unwrap_or(false)
    }

    /// This node's Merkle roots of `partitions` (0 for unknown ones), or with
    /// `summary` one hash over them.
    pub(crate) fn merkle_roots(&self, partitions: &[u32], summary: bool) -> Response {
        let roots = self.replica().with_merkle(|forest| {
            partitions
                .iter()
                .map(|p| {
                    let p = *p as usize;
                    if p < forest.q() {
                        forest.root(p)
                    } else {
                        merkle::EMPTY
                    }
                })
                .collect()
        });
        let roots: Vec<u128> = roots.unwrap_or_default();
        if !summary {
            return Response::Hashes(roots);
        }
        let bytes: Vec<u8> = roots.iter().flat_map(|r| r.to_be_bytes()).collect();
        Response::Hashes(vec![merkle::key_digest(b"roots", &bytes)])
    }

    /// The hashes of the children of node (`level`, `index`) of this node's
    /// tree of `partition` (empty hashes for out-of-range requests).
    pub(crate) fn merkle_children(&self, partition: u32, level: usize, index: usize) -> Response {
        let hashes = self.replica().with_merkle(|forest| {
            let p = partition as usize;
            if p >= forest.q() || level >= merkle::LEVELS || index >= merkle::nodes_at(level) {
                return vec![merkle::EMPTY; merkle::FANOUT];
            }
            forest.tree(p).children(level, index)
        });
        Response::Hashes(hashes.unwrap_or_default())
    }
}
