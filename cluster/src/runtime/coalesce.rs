//! Cross-client batching of reads and writes.
//!
//! Without pipelining every client sends one GET or SET at a time, so each
//! would run a quorum of its own: its own message to each replica, its own
//! pending answer and wake-up on both sides; with pipelining each client's
//! batch would still send its own messages. Instead a request (a lone key
//! or a client's batch of up to [`MAX_COALESCED_KEYS`]) joins a queue, and
//! a batcher task takes everything queued each time it runs, cuts it into
//! batches of about [`BATCH_KEYS`] keys and hands each to
//! [`Node::get_many_now`] / [`Node::put_many_now`], whose messages to each
//! replica travel together (`driver.rs`): fifty clients' lone requests of
//! one turn of the event loop cost one `ReadBatch` or `MergeBatch` per
//! replica instead of fifty messages.
//!
//! There is no timer. The batcher runs after the tasks already woken and
//! one poll of the sockets, so a batch is what the clients of that turn
//! sent, and a request that comes alone waits for a few task switches, not
//! for company. Each request still gets its own result (R, W, hints and
//! read repair are per key in the driver); a traced request (slow log) gets
//! the replica calls of its batch, which are the calls it waited on.
//!
//! CAVEATS:
//! - A write's timestamp floor is the batch's latest `now_ms` (the requests
//!   of one batch were sent within the same turn, well under a millisecond
//!   apart).
//! - Two writes of one key in one batch (of one client or of two) are
//!   applied in queue order on the coordinator (the later supersedes the
//!   earlier), as two pipelined SETs of one connection are.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

use super::{
    node::Node,
    trace::{self, ReplicaCall},
};
use crate::{
    coordinator::{ClusterError, Write},
    version::Siblings,
};

/// A request's results (one per key) and, if it asked, the replica calls of
/// its batch.
type Answer = (Vec<Result<Siblings, ClusterError>>, Vec<ReplicaCall>);

/// Requests of more keys than this run as batches of their own: they fill a
/// message on their own, and would make the small ones wait.
pub(super) const MAX_COALESCED_KEYS: usize = 256;

/// A batch closes once it holds this many keys, and the rest of the queue
/// goes on in further batches. Each batch runs on its own task and sends
/// its messages as soon as its keys are stored, so replicas start on the
/// first batch while the coordinator stores the next: one batch of a whole
/// turn (300+ keys with 50 clients pipelining 16) made the nodes wait on
/// each other in turn, and ran SET -P 16 at 150-190k/s against 230-250k/s
/// with batches of 64 (benches/README.md).
const BATCH_KEYS: usize = 64;

/// The queue of lone requests and the batcher's wake-up.
#[derive(Default)]
pub(super) struct Coalescer {
    /// Whether the batcher task runs (it is started on first use).
    started: AtomicBool,
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    reads: Vec<QueuedRead>,
    writes: Vec<QueuedWrite>,
}

/// A queued `get_many`: its keys.
type QueuedRead = (Vec<Bytes>, Waiter);

/// A queued `put_many`: its writes and their `now_ms`.
type QueuedWrite = (Vec<(Bytes, Write)>, u64, Waiter);

/// Where a queued request's answer goes.
struct Waiter {
    /// Whether the caller runs inside [`trace::traced`].
    traced: bool,
    reply: oneshot::Sender<Answer>,
}

impl Waiter {
    fn new() -> (Waiter, oneshot::Receiver<Answer>) {
        let (reply, answer) = oneshot::channel();
        let waiter = Waiter {
            traced: trace::active(),
            reply,
        };
        (waiter, answer)
    }
}

impl Node {
    /// `get_many(keys)` through the batcher.
    pub(super) async fn coalesced_get(
        self: &Arc<Self>,
        keys: Vec<Bytes>,
    ) -> Vec<Result<Siblings, ClusterError>> {
        let count = keys.len();
        let (waiter, answer) = Waiter::new();
        self.enqueue(|queue| queue.reads.push((keys, waiter)));
        received(answer.await, count)
    }

    /// `put_many(writes)` through the batcher.
    pub(super) async fn coalesced_put(
        self: &Arc<Self>,
        writes: Vec<(Bytes, Write)>,
        now_ms: u64,
    ) -> Vec<Result<Siblings, ClusterError>> {
        let count = writes.len();
        let (waiter, answer) = Waiter::new();
        self.enqueue(|queue| queue.writes.push((writes, now_ms, waiter)));
        received(answer.await, count)
    }

    fn enqueue(self: &Arc<Self>, push: impl FnOnce(&mut Queue)) {
        let coalescer = &self.coalescer;
        if !coalescer.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().run_batcher());
        }
        push(&mut coalescer.queue.lock().unwrap_or_else(|p| p.into_inner()));
        coalescer.wake.notify_one();
    }

    /// Takes what is queued each time it is woken and runs it as batches
    /// (each on a task of its own, so the next batch need not wait).
    async fn run_batcher(self: Arc<Self>) {
        loop {
            self.coalescer.wake.notified().await;
            // Let the tasks already woken, and the sockets that became
            // readable meanwhile, add their requests first.
            tokio::task::yield_now().await;
            let queue = std::mem::take(
                &mut *self
                    .coalescer
                    .queue
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            let stats = self.replica().stats();
            let requests = queue.reads.len() + queue.writes.len();
            let reads = batches(queue.reads, |r| r.0.len());
            let writes = batches(queue.writes, |w| w.0.len());
            stats
                .coalesced_requests
                .fetch_add(requests as u64, Ordering::Relaxed);
            stats
                .coalesced_batches
                .fetch_add((reads.len() + writes.len()) as u64, Ordering::Relaxed);
            for batch in reads {
                tokio::spawn(self.clone().run_reads(batch));
            }
            for batch in writes {
                tokio::spawn(self.clone().run_writes(batch));
            }
        }
    }

    async fn run_reads(self: Arc<Self>, reads: Vec<QueuedRead>) {
        let mut keys = Vec::with_capacity(reads.iter().map(|r| r.0.len()).sum());
        let mut waiters = Vec::with_capacity(reads.len());
        for (request, waiter) in reads {
            waiters.push((request.len(), waiter));
            keys.extend(request);
        }
        let traced = waiters.iter().any(|(_, w)| w.traced);
        let (results, calls) = traced_if(traced, self.get_many_now(&keys)).await;
        answer_all(waiters, results, &calls);
    }

    async fn run_writes(self: Arc<Self>, writes: Vec<QueuedWrite>) {
        let now_ms = writes.iter().map(|w| w.1).max().unwrap_or(0);
        let mut batch = Vec::with_capacity(writes.iter().map(|w| w.0.len()).sum());
        let mut waiters = Vec::with_capacity(writes.len());
        for (request, _, waiter) in writes {
            waiters.push((request.len(), waiter));
            batch.extend(request);
        }
        let traced = waiters.iter().any(|(_, w)| w.traced);
        let (results, calls) = traced_if(traced, self.put_many_now(batch, now_ms)).await;
        answer_all(waiters, results, &calls);
    }
}

/// Cuts the queue, in order, into batches of whole requests that close
/// once they hold [`BATCH_KEYS`] keys (`keys` counts a request's).
fn batches<T>(queue: Vec<T>, keys: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut open = Vec::new();
    let mut open_keys = 0;
    for request in queue {
        open_keys += keys(&request);
        open.push(request);
        if open_keys >= BATCH_KEYS {
            batches.push(std::mem::take(&mut open));
            open_keys = 0;
        }
    }
    if !open.is_empty() {
        batches.push(open);
    }
    batches
}

/// Runs `run`, collecting its replica calls only when someone wants them.
async fn traced_if<T>(
    wanted: bool,
    run: impl std::future::Future<Output = T>,
) -> (T, Vec<ReplicaCall>) {
    if wanted {
        trace::traced(run).await
    } else {
        (run.await, Vec::new())
    }
}

/// Hands each waiter its own slice of the batch's results (they are in
/// queue order, `count` per waiter).
fn answer_all(
    waiters: Vec<(usize, Waiter)>,
    results: Vec<Result<Siblings, ClusterError>>,
    calls: &[ReplicaCall],
) {
    let mut results = results.into_iter();
    for (count, waiter) in waiters {
        let result: Vec<_> = results.by_ref().take(count).collect();
        let calls = if waiter.traced {
            calls.to_vec()
        } else {
            Vec::new()
        };
        // The caller may have gone (its client left): nothing to tell.
        let _ = waiter.reply.send((result, calls));
    }
}

/// The caller's side: its `count` results, and its batch's calls noted in
/// its trace.
fn received(
    answer: Result<Answer, oneshot::error::RecvError>,
    count: usize,
) -> Vec<Result<Siblings, ClusterError>> {
    match answer {
        Ok((results, calls)) => {
            trace::record_all(&calls);
            results
        }
        // Only when the runtime stops under the batch.
        Err(_) => (0..count)
            .map(|_| {
                Err(ClusterError::Remote(
                    "the request's batch was dropped".into(),
                ))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_close_at_batch_keys_keep_order_and_never_split_a_request() {
        // Requests of 16 keys: four per batch.
        let queue: Vec<usize> = (0..10).collect();
        let cut = batches(queue, |_| 16);
        assert_eq!(cut, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        // A request larger than a batch is one batch of its own.
        let sizes = [1, 200, 1, 63, 1];
        let cut = batches((0..sizes.len()).collect(), |&i| sizes[i]);
        assert_eq!(cut, vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert!(batches(Vec::<usize>::new(), |_| 1).is_empty());
    }
}
