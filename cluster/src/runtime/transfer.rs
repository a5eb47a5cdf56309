//! Moving partitions when the ring changes (Dynamo section 4.9), and handing
//! off what a node no longer replicates.
//!
//! The steps of a transition are decided by [`crate::membership`] from the
//! gossiped state; this loop does this node's part of each:
//!
//! 1. **Aware.** Once this node has known the target ring for a request
//!    timeout (so no write it started under the old ring alone is still in
//!    flight), it records itself aware. It already writes to both rings.
//! 2. **Fetch.** For every partition it gains, the node pulls the keys from
//!    `N - W + 1` old replicas (every acknowledged write is on W of the N, so
//!    that many sources see all of them): pages of full states from the
//!    first, pages of digests from the others, fetching only keys that
//!    differ. Each page is merged (a join: fetching twice is harmless),
//!    flushed, then its cursor persisted, so a restart of either side resumes
//!    where it stopped. A source that fails is replaced by another old
//!    replica, or waited for. Done, it records the partition synced.
//! 3. **Reads.** Once every partition is synced, the node reads from the
//!    target ring and records it.
//! 4. **Hand-off.** With no transition, keys in partitions the node does not
//!    replicate (it was an old replica, a leaving node, a stale write) are
//!    offered to their owners: each owner reports its digests, gets only the
//!    keys it lacks, and after every owner acknowledged, the key is removed
//!    here if unchanged meanwhile. A leaving node whose store and hints are
//!    empty then marks itself removed.
//!
//! Fetching and hand-off run under the background budget
//! ([`Node::background_may_run`]) and an optional rate limit
//! (`transfer-max-keys-per-sec`).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::node::Node;
use crate::{
    coordinator::ClusterError,
    keyspace,
    membership::{replicas_of, ClusterState, MemberStatus, Move, Phase},
    merkle,
    ring::Ring,
    stats::CoordinatorStats,
    version::{NodeId, Siblings},
    wire::{Request, Response},
};

/// Most bytes of stored data in one transfer page.
const PAGE_BYTES: usize = 4 << 20;
/// A sender's answer while its background budget is spent.
const BUSY: &str = "busy: background budget";
/// Most keys one page may ask for, whatever the request says.
const MAX_PAGE_KEYS: usize = 4096;
/// Hand-off pages per round (the round repeats every gossip interval or
/// half second, under the background budget and at most
/// `transfer-max-keys-per-sec`).
const HANDOFF_PAGES_PER_ROUND: usize = 4;

/// What this node is fetching, for STATUS and INFO.
#[derive(Debug, Clone)]
pub struct TransferView {
    /// The partition.
    pub partition: u32,
    /// The old replica currently streaming it (0 before one is chosen).
    pub from: NodeId,
    /// Keys received so far (all sources).
    pub keys: u64,
    /// Stored bytes received so far.
    pub bytes: u64,
    /// Share of the partition's key range covered by the current source.
    pub percent: f64,
    /// Keys per second since this transfer started.
    pub rate: f64,
    /// Why it is not progressing, if it is not.
    pub waiting: Option<String>,
}

/// This node's local transfer bookkeeping (not gossiped).
#[derive(Default)]
pub struct TransferLocal {
    /// The target ring version first seen, and when.
    seen: Mutex<Option<(u64, Instant)>>,
    /// When the ring was last seen settled with no transition (None while
    /// one is in progress).
    settled_since: Mutex<Option<Instant>>,
    /// Transfers of this node in progress, by partition.
    board: Mutex<BTreeMap<u32, (TransferView, Instant)>>,
    /// Partition the hand-off continues from.
    handoff_cursor: Mutex<usize>,
}

/// Persisted progress of fetching one partition from one source.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SourceProgress {
    /// Full states (the first source) or digests.
    full: bool,
    /// Storage key of the last key merged; empty at the start.
    after: Vec<u8>,
    /// The partition is done from this source.
    done: bool,
}

fn progress_key(version: u64, partition: u32, source: NodeId) -> String {
    format!("transfer:{version}:{partition}:{source:016x}")
}

/// The ring positions `first..=last` of `partition`.
fn partition_bounds(ring: &Ring, partition: usize) -> (u64, u64) {
    let first = ring.partition_start(partition);
    let last = if partition + 1 == ring.q() {
        u64::MAX
    } else {
        ring.partition_start(partition + 1) - 1
    };
    (first, last)
}

/// Time between transition steps: the gossip interval, within 50..500 ms.
fn step_period(config: &super::node::ClusterConfig) -> Duration {
    config
        .gossip_interval
        .clamp(Duration::from_millis(50), Duration::from_millis(500))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TransferLocal {
    /// Snapshot of the transfers in progress here.
    pub fn transfers(&self) -> Vec<TransferView> {
        lock(&self.board)
            .values()
            .map(|(v, started)| {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                TransferView {
                    rate: v.keys as f64 / secs,
                    ..v.clone()
                }
            })
            .collect()
    }

    fn update(&self, partition: u32, f: impl FnOnce(&mut TransferView)) {
        let mut board = lock(&self.board);
        let entry = board.entry(partition).or_insert_with(|| {
            (
                TransferView {
                    partition,
                    from: 0,
                    keys: 0,
                    bytes: 0,
                    percent: 0.0,
                    rate: 0.0,
                    waiting: None,
                },
                Instant::now(),
            )
        });
        f(&mut entry.0);
    }

    fn finish(&self, partition: u32) {
        lock(&self.board).remove(&partition);
    }
}

impl Node {
    /// Answers [`Request::Fetch`]: a page of `partition` after `after`.
    pub(crate) fn serve_fetch(
        &self,
        partition: u32,
        after: &[u8],
        limit: u32,
        digests_only: bool,
    ) -> Result<Response, ClusterError> {
        let ring = self.view().ring.clone();
        if partition as usize >= ring.q() {
            return Ok(Response::Failed(format!(
                "partition {partition} out of range"
            )));
        }
        // The sender's own budget applies too: the receiver has no clients
        // of its own to watch, the sender's clients pay for the pages.
        if !self.background_may_run() {
            return Ok(Response::Failed(BUSY.into()));
        }
        let (first, last) = partition_bounds(&ring, partition as usize);
        let limit = (limit as usize).clamp(1, MAX_PAGE_KEYS);
        let (page, more) = self
            .replica()
            .range_page(first, last, after, limit, PAGE_BYTES)?;
        let next = match (more, page.last()) {
            (true, Some((skey, _))) => Some(Bytes::copy_from_slice(skey)),
            _ => None,
        };
        let bytes: u64 = page.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        let mut entries = Vec::new();
        let mut digests = Vec::new();
        for (skey, raw) in &page {
            let Some((_, key)) = keyspace::split_storage_key(skey) else {
                continue;
            };
            if digests_only {
                digests.push((Bytes::copy_from_slice(key), merkle::key_digest(key, raw)));
            } else {
                entries.push((Bytes::copy_from_slice(key), Siblings::decode(raw)?));
            }
        }
        if !digests_only {
            let stats = self.replica().stats();
            stats
                .transfer_keys_sent
                .fetch_add(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
            stats
                .transfer_bytes_sent
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Response::Chunk {
            entries,
            digests,
            next,
            bytes,
        })
    }

    /// Runs this node's part of ring changes forever.
    pub async fn run_transitions(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(step_period(self.config()));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.transition_step().await;
        }
    }

    /// One step: whatever this node can do now for the transition in
    /// progress, or hand-off when there is none.
    pub async fn transition_step(self: &Arc<Self>) {
        let state = self.cluster_state();
        let me = self.id();
        let local = self.transfer_local();
        let Some(transition) = state.transition() else {
            lock(&local.board).clear();
            *lock(&local.seen) = None;
            let settled = *lock(&local.settled_since).get_or_insert_with(Instant::now);
            // Writes begun under the old ring are over by now.
            if settled.elapsed() >= self.config().request_timeout * 2
                && !state.is_awaiting_cluster()
            {
                self.hand_off_round(&state).await;
                self.finish_leaving(&state).await;
            }
            return;
        };
        *lock(&local.settled_since) = None;
        let version = transition.target.version();
        if !transition.aware.contains(&me) {
            let seen = {
                let mut seen = lock(&local.seen);
                match *seen {
                    Some((v, at)) if v == version => at,
                    _ => {
                        *seen = Some((version, Instant::now()));
                        return;
                    }
                }
            };
            if seen.elapsed() >= self.config().request_timeout {
                self.change_state(|s| s.note_aware(me));
                self.gossip_round().await;
            }
            return;
        }
        match state.phase() {
            Some(Phase::Syncing) => {
                let mine: Vec<Move> = state.pending_moves().filter(|m| m.to == me).collect();
                for mv in mine {
                    if self.view().target.as_ref().map(Ring::version) != Some(version) {
                        return;
                    }
                    match self.fetch_partition(&state, &mv, version).await {
                        Ok(()) => {
                            local.finish(mv.partition);
                            CoordinatorStats::bump(
                                &self.replica().stats().transfer_partitions_done,
                            );
                            self.change_state(|s| s.note_synced(mv.partition, me));
                        }
                        Err(reason) => {
                            debug!(partition = mv.partition, %reason, "transfer waiting");
                            local.update(mv.partition, |v| v.waiting = Some(reason));
                        }
                    }
                }
                self.gossip_round().await;
            }
            Some(Phase::SwitchingReads) if !transition.reading.contains(&me) => {
                self.change_state(|s| s.note_reading(me));
                self.gossip_round().await;
            }
            _ => {}
        }
    }

    /// Fetches `mv.partition` from enough old replicas. `Err` says why it
    /// cannot go on now (it resumes from the persisted progress later).
    async fn fetch_partition(
        self: &Arc<Self>,
        state: &ClusterState,
        mv: &Move,
        version: u64,
    ) -> Result<(), String> {
        let me = self.id();
        let live: Vec<NodeId> = mv
            .from
            .iter()
            .copied()
            .filter(|n| *n != me)
            .filter(|n| {
                state
                    .member(*n)
                    .is_some_and(|m| m.status != MemberStatus::Removed)
            })
            .collect();
        let config = self.config();
        let wanted = (config.n + 1)
            .saturating_sub(config.w)
            .max(1)
            .min(live.len());
        if wanted == 0 {
            warn!(
                partition = mv.partition,
                "no old replica of the partition is left; it starts empty here"
            );
            return Ok(());
        }
        let engine = self.replica().engine().clone();
        let progress = |source: NodeId| -> Option<SourceProgress> {
            let raw = engine
                .meta_get(&progress_key(version, mv.partition, source))
                .ok()??;
            postcard::from_bytes(&raw).ok()
        };
        loop {
            let records: Vec<(NodeId, Option<SourceProgress>)> =
                live.iter().map(|&n| (n, progress(n))).collect();
            let done = records
                .iter()
                .filter(|(_, p)| p.as_ref().is_some_and(|p| p.done))
                .count();
            if done >= wanted {
                return Ok(());
            }
            let any_full = records
                .iter()
                .any(|(_, p)| p.as_ref().is_some_and(|p| p.full));
            // Resume a started source first, then the fastest untouched one.
            let started = records
                .iter()
                .filter(|(n, p)| p.as_ref().is_some_and(|p| !p.done) && self.is_up(*n))
                .map(|(n, p)| (*n, p.clone().expect("filtered")));
            let fresh = self
                .by_latency(
                    records
                        .iter()
                        .filter(|(n, p)| p.is_none() && self.is_up(*n))
                        .map(|(n, _)| *n)
                        .collect(),
                )
                .into_iter()
                .map(|n| {
                    (
                        n,
                        SourceProgress {
                            full: !any_full,
                            after: Vec::new(),
                            done: false,
                        },
                    )
                });
            let Some((source, start)) = started.chain(fresh).next() else {
                let down: Vec<String> = live
                    .iter()
                    .filter(|n| !self.is_up(**n))
                    .map(|n| format!("{n:016x}"))
                    .collect();
                return Err(format!(
                    "needs {wanted} old replicas, {done} done; down: {}",
                    down.join(",")
                ));
            };
            self.stream_from(mv.partition, source, start, version)
                .await?;
        }
    }

    /// Streams one partition from `source` until done (or an error), merging
    /// each page and persisting the cursor after it.
    async fn stream_from(
        self: &Arc<Self>,
        partition: u32,
        source: NodeId,
        mut progress: SourceProgress,
        version: u64,
    ) -> Result<(), String> {
        let local = self.transfer_local();
        let ring = self.view().ring.clone();
        let (first, last) = partition_bounds(&ring, partition as usize);
        let key = progress_key(version, partition, source);
        let config = self.config().clone();
        let stats = self.replica().stats();
        let started = Instant::now();
        let mut fetched: u64 = 0;
        local.update(partition, |v| {
            v.from = source;
            v.waiting = None;
        });
        while !progress.done {
            if self.view().target.as_ref().map(Ring::version) != Some(version) {
                return Err("the target ring changed".into());
            }
            if !self.background_may_run() {
                local.update(partition, |v| {
                    v.waiting = Some("background budget: foreground load".into())
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            if config.transfer_max_keys_per_sec > 0 {
                let allowed = Duration::from_secs_f64(
                    fetched as f64 / config.transfer_max_keys_per_sec as f64,
                );
                if let Some(wait) = allowed.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let request = Request::Fetch {
                partition,
                after: Bytes::from(progress.after.clone()),
                limit: config.transfer_batch as u32,
                digests_only: !progress.full,
            };
            let (entries, digests, next, bytes) = match self.call(source, request).await {
                Ok(Response::Chunk {
                    entries,
                    digests,
                    next,
                    bytes,
                }) => (entries, digests, next, bytes),
                Ok(Response::Failed(reason)) if reason == BUSY => {
                    local.update(partition, |v| {
                        v.waiting = Some(format!("old replica {source:016x} busy (its budget)"))
                    });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Ok(other) => return Err(format!("old replica {source:016x} answered {other:?}")),
                Err(error) => return Err(format!("old replica {source:016x}: {error}")),
            };
            let now = super::now_ms();
            let mut merged = entries.len() as u64;
            for (key, siblings) in &entries {
                self.replica()
                    .merge(key, siblings, now)
                    .map_err(|e| e.to_string())?;
            }
            if !digests.is_empty() {
                merged += self.fetch_differing(source, &digests).await?;
            }
            // What was merged must be durable before the cursor passes it.
            self.replica().flush().map_err(|e| e.to_string())?;
            let last_key = entries
                .last()
                .map(|(k, _)| k)
                .or(digests.last().map(|(k, _)| k));
            progress.after = match (&next, last_key) {
                (Some(n), _) => n.to_vec(),
                (None, Some(k)) => keyspace::storage_key(k),
                (None, None) => progress.after,
            };
            progress.done = next.is_none();
            let encoded = postcard::to_stdvec(&progress).map_err(|e| e.to_string())?;
            self.replica()
                .engine()
                .meta_put(&key, &encoded)
                .map_err(|e| e.to_string())?;
            fetched += merged;
            stats
                .transfer_keys_received
                .fetch_add(merged, std::sync::atomic::Ordering::Relaxed);
            if progress.full {
                stats
                    .transfer_bytes_received
                    .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            }
            let position = keyspace::split_storage_key(&progress.after).map_or(first, |(p, _)| p);
            let span = (last - first) as f64 + 1.0;
            local.update(partition, |v| {
                v.keys += merged;
                if progress.full {
                    v.bytes += bytes;
                }
                v.percent = if progress.done {
                    100.0
                } else {
                    (position.saturating_sub(first) as f64 / span * 100.0).min(99.9)
                };
                v.waiting = None;
            });
        }
        Ok(())
    }

    /// Fetches from `source` the keys whose digests differ from ours and
    /// merges them; returns how many.
    async fn fetch_differing(
        self: &Arc<Self>,
        source: NodeId,
        digests: &[(Bytes, u128)],
    ) -> Result<u64, String> {
        let mut differing = Vec::new();
        for (key, digest) in digests {
            if self.replica().digest_of(key).map_err(|e| e.to_string())? != *digest {
                differing.push(key.clone());
            }
        }
        let now = super::now_ms();
        for keys in differing.chunks(super::antientropy::MAX_KEYS_PER_MESSAGE) {
            let request = Request::ReadMany {
                keys: keys.to_vec(),
            };
            match self.call(source, request).await {
                Ok(Response::States(states)) if states.len() == keys.len() => {
                    for (key, state) in keys.iter().zip(&states) {
                        self.replica()
                            .merge_encoded(key, state, now)
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok(other) => return Err(format!("old replica {source:016x} answered {other:?}")),
                Err(error) => return Err(format!("old replica {source:016x}: {error}")),
            }
        }
        Ok(differing.len() as u64)
    }

    /// One hand-off round: pages of keys of partitions this node holds but
    /// does not replicate go to their owners, then are dropped here, up to
    /// a few pages per round. A partition whose owners are not all up is
    /// skipped (the data stays until they are).
    async fn hand_off_round(self: &Arc<Self>, state: &ClusterState) {
        let ring = state.ring();
        if ring.is_empty() || !self.background_may_run() {
            return;
        }
        let me = self.id();
        let n = self.config().n;
        let q = ring.q();
        let config = self.config();
        // Keys this round may hand off: a few pages, fewer under a rate limit.
        let period = step_period(config);
        let mut batch = config.transfer_batch;
        let mut budget = HANDOFF_PAGES_PER_ROUND;
        if config.transfer_max_keys_per_sec > 0 {
            let per_round =
                (config.transfer_max_keys_per_sec as f64 * period.as_secs_f64()).ceil() as usize;
            batch = batch.min(per_round.max(1));
            budget = budget.min(per_round.div_ceil(batch).max(1));
        }
        let start = *lock(&self.transfer_local().handoff_cursor);
        for step in 0..q {
            let partition = (start + step) % q;
            let owners = replicas_of(ring, partition, n);
            if owners.contains(&me) || owners.iter().any(|o| !self.is_up(*o)) {
                continue;
            }
            let (first, last) = partition_bounds(ring, partition);
            loop {
                let Ok((page, more)) =
                    self.replica()
                        .range_page(first, last, &[], batch, PAGE_BYTES)
                else {
                    return;
                };
                if page.is_empty() {
                    break;
                }
                *lock(&self.transfer_local().handoff_cursor) = partition;
                if !self.hand_off_page(&owners, &page).await || budget <= 1 {
                    return;
                }
                budget -= 1;
                if !more {
                    break;
                }
            }
        }
    }

    /// Hands one page of stored entries to `owners` and drops what every
    /// owner acknowledged and did not change here meanwhile. Returns whether
    /// every owner answered.
    async fn hand_off_page(
        self: &Arc<Self>,
        owners: &[NodeId],
        page: &[crate::replica::StoredEntry],
    ) -> bool {
        let mut entries = Vec::with_capacity(page.len());
        for (skey, raw) in page {
            let (Some((_, key)), Ok(state)) =
                (keyspace::split_storage_key(skey), Siblings::decode(raw))
            else {
                continue;
            };
            entries.push((
                Bytes::copy_from_slice(key),
                state,
                merkle::key_digest(key, raw),
            ));
        }
        for chunk in entries.chunks(super::antientropy::MAX_KEYS_PER_MESSAGE) {
            if !self.offer_to_owners(owners, chunk).await {
                return false;
            }
            let mut dropped = 0;
            for (key, state, _) in chunk {
                if let Ok(true) = self.replica().remove_if_unchanged(key, state) {
                    dropped += 1;
                }
            }
            self.replica()
                .stats()
                .handoff_keys_dropped
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        }
        true
    }

    /// Makes sure every owner holds at least what we hold of `chunk`:
    /// asks their digests, sends only the keys that differ. Returns whether
    /// every owner acknowledged.
    async fn offer_to_owners(
        self: &Arc<Self>,
        owners: &[NodeId],
        chunk: &[(Bytes, Siblings, u128)],
    ) -> bool {
        let keys: Vec<Bytes> = chunk.iter().map(|(k, _, _)| k.clone()).collect();
        for &owner in owners {
            let theirs = match self
                .call(owner, Request::DigestMany { keys: keys.clone() })
                .await
            {
                Ok(Response::Digests(d)) if d.len() == keys.len() => d,
                _ => return false,
            };
            let missing: Vec<(Bytes, Siblings)> = chunk
                .iter()
                .zip(&theirs)
                .filter(|((_, _, mine), (_, their))| mine != their)
                .map(|((k, s, _), _)| (k.clone(), s.clone()))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let sent = missing.len() as u64;
            match self
                .call(owner, Request::MergeMany { entries: missing })
                .await
            {
                Ok(Response::Ack) => {
                    self.replica()
                        .stats()
                        .handoff_keys_sent
                        .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
                }
                _ => return false,
            }
        }
        true
    }

    /// A leaving node that holds nothing any more marks itself removed.
    async fn finish_leaving(self: &Arc<Self>, state: &ClusterState) {
        let me = self.id();
        let leaving = state
            .member(me)
            .is_some_and(|m| m.status == MemberStatus::Leaving);
        if !leaving
            || state.ring().contains(me)
            || self.replica().stored_keys() > 0
            || self.hints().total() > 0
        {
            return;
        }
        info!("every partition handed off: this node has left the cluster");
        self.change_state(|s| s.update_member(me, |m| m.status = MemberStatus::Removed));
        // Tell everyone now: nobody gossips with a removed node.
        let request = Request::Gossip(Bytes::from(self.cluster_state().encode()));
        let _ = self.broadcast(request).await;
    }
}
