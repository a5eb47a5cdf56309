//! Counters the replica and coordinator keep for INFO.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters, read without locking.
#[derive(Debug, Default)]
pub struct CoordinatorStats {
    /// Reads served.
    pub reads: AtomicU64,
    /// Writes stored (values and tombstones).
    pub writes: AtomicU64,
    /// Writes after which the key held more than one live sibling.
    pub sibling_writes: AtomicU64,
    /// Writes refused because the key would exceed `max-siblings`.
    pub sibling_limit_rejections: AtomicU64,
    /// The most siblings any key has held.
    pub max_siblings_seen: AtomicU64,
    /// Keys removed once only tombstones or expired versions remained.
    pub keys_collected: AtomicU64,
    /// Expired versions removed by the background purge.
    pub expired_purged: AtomicU64,
    /// Remote states merged into this replica that changed it.
    pub merges: AtomicU64,
    /// Repairs sent after a read found a replica stale or missing the key.
    pub read_repairs: AtomicU64,
    /// Reads that asked one more replica after `read-hedge-ms` without R
    /// answers.
    pub hedged_reads: AtomicU64,
    /// Client requests (a lone GET or SET, a pipelined batch, an MGET or
    /// MSET of up to 256 keys) that ran batched with other clients'
    /// (`runtime/coalesce.rs`) ...
    pub coalesced_requests: AtomicU64,
    /// ... and the batches they ran in.
    pub coalesced_batches: AtomicU64,
    /// Writes this node sent to an owner of the key to coordinate.
    pub writes_forwarded: AtomicU64,
    /// Writes this node coordinated for another node.
    pub writes_coordinated_for_peers: AtomicU64,
    /// Requests answered with UNAVAILABLE (quorum not reached).
    pub quorum_failures: AtomicU64,
    /// Anti-entropy exchanges started by this node.
    pub ae_rounds: AtomicU64,
    /// Partitions whose Merkle roots differed and were descended into.
    pub ae_partitions_synced: AtomicU64,
    /// Keys an exchange merged into either side.
    pub ae_keys_repaired: AtomicU64,
    /// Bytes of anti-entropy messages this node sent and received.
    pub ae_bytes: AtomicU64,
    /// Keys with nothing live seen by the last tombstone-collection pass that
    /// could not be collected yet (a replica down, differing or with hints).
    pub tombstones_pending: AtomicU64,
    /// Keys whose tombstones were collected on every replica.
    pub tombstones_collected: AtomicU64,
    /// Background rounds skipped because foreground load was high.
    pub background_deferrals: AtomicU64,
    /// Keys this node fetched as a partition's new replica.
    pub transfer_keys_received: AtomicU64,
    /// Stored bytes of the keys fetched (as the senders measured them).
    pub transfer_bytes_received: AtomicU64,
    /// Keys this node sent to new replicas (states, not digests).
    pub transfer_keys_sent: AtomicU64,
    /// Stored bytes of the keys sent.
    pub transfer_bytes_sent: AtomicU64,
    /// Partitions this node fetched completely.
    pub transfer_partitions_done: AtomicU64,
    /// Keys of partitions this node no longer replicates that it handed to
    /// their owners (only keys an owner lacked are sent).
    pub handoff_keys_sent: AtomicU64,
    /// Keys removed here after every owner was seen to hold them.
    pub handoff_keys_dropped: AtomicU64,
    /// Reads that found the key, by how many versions the merged answer
    /// held: 1, 2, 3, 4 or more (the paper's section 6.3 table).
    pub read_versions: [AtomicU64; 4],
}

impl CoordinatorStats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records how many versions a read's answer held (none: not counted).
    pub(crate) fn record_read(&self, versions: usize) {
        if versions > 0 {
            Self::bump(&self.read_versions[versions.min(4) - 1]);
        }
    }

    /// Records the sibling count a write left behind.
    pub(crate) fn record_siblings(&self, live: usize) {
        if live > 1 {
            Self::bump(&self.sibling_writes);
        }
        self.max_siblings_seen
            .fetch_max(live as u64, Ordering::Relaxed);
    }
}
