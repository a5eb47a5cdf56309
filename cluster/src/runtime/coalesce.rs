//! Cross-client batching of lone reads and writes.
//!
//! Without pipelining every client sends one GET or SET at a time, so each
//! would run a quorum of its own: its own message to each replica, its own
//! pending answer and wake-up on both sides. Instead a lone `get` or `put`
//! joins a queue, and a batcher task takes everything queued each time it
//! runs and hands it to [`Node::get_many_now`] / [`Node::put_many_now`],
//! whose messages to each replica travel together (`driver.rs`): fifty
//! clients' requests of one turn of the event loop cost one `ReadBatch` or
//! `MergeBatch` per replica instead of fifty messages.
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
//! - Two writes of one key in one batch are applied in queue order on the
//!   coordinator (the later supersedes the earlier), as two pipelined SETs
//!   of one connection are.

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
    stats::CoordinatorStats,
    version::Siblings,
};

/// A request's result and, if it asked, the replica calls of its batch.
type Answer = (Result<Siblings, ClusterError>, Vec<ReplicaCall>);

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
    reads: Vec<(Bytes, Waiter)>,
    writes: Vec<(Bytes, Write, u64, Waiter)>,
}

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
    /// `get(key)` through the batcher.
    pub(super) async fn coalesced_get(
        self: &Arc<Self>,
        key: Bytes,
    ) -> Result<Siblings, ClusterError> {
        let (waiter, answer) = Waiter::new();
        self.enqueue(|queue| queue.reads.push((key, waiter)));
        received(answer.await)
    }

    /// `put(key, write)` through the batcher.
    pub(super) async fn coalesced_put(
        self: &Arc<Self>,
        key: Bytes,
        write: Write,
        now_ms: u64,
    ) -> Result<Siblings, ClusterError> {
        let (waiter, answer) = Waiter::new();
        self.enqueue(|queue| queue.writes.push((key, write, now_ms, waiter)));
        received(answer.await)
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
            for batch in [queue.reads.len(), queue.writes.len()] {
                if batch > 0 {
                    stats
                        .coalesced_requests
                        .fetch_add(batch as u64, Ordering::Relaxed);
                    CoordinatorStats::bump(&stats.coalesced_batches);
                }
            }
            if !queue.reads.is_empty() {
                tokio::spawn(self.clone().run_reads(queue.reads));
            }
            if !queue.writes.is_empty() {
                tokio::spawn(self.clone().run_writes(queue.writes));
            }
        }
    }

    async fn run_reads(self: Arc<Self>, reads: Vec<(Bytes, Waiter)>) {
        let (keys, waiters): (Vec<Bytes>, Vec<Waiter>) = reads.into_iter().unzip();
        let traced = waiters.iter().any(|w| w.traced);
        let (results, calls) = traced_if(traced, self.get_many_now(&keys)).await;
        answer_all(waiters, results, &calls);
    }

    async fn run_writes(self: Arc<Self>, writes: Vec<(Bytes, Write, u64, Waiter)>) {
        let now_ms = writes.iter().map(|w| w.2).max().unwrap_or(0);
        let mut waiters = Vec::with_capacity(writes.len());
        let batch: Vec<(Bytes, Write)> = writes
            .into_iter()
            .map(|(key, write, _, waiter)| {
                waiters.push(waiter);
                (key, write)
            })
            .collect();
        let traced = waiters.iter().any(|w| w.traced);
        let (results, calls) = traced_if(traced, self.put_many_now(batch, now_ms)).await;
        answer_all(waiters, results, &calls);
    }
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

fn answer_all(
    waiters: Vec<Waiter>,
    results: Vec<Result<Siblings, ClusterError>>,
    calls: &[ReplicaCall],
) {
    for (waiter, result) in waiters.into_iter().zip(results) {
        let calls = if waiter.traced {
            calls.to_vec()
        } else {
            Vec::new()
        };
        // The caller may have gone (its client left): nothing to tell.
        let _ = waiter.reply.send((result, calls));
    }
}

/// The caller's side: its result, and its batch's calls noted in its trace.
fn received(answer: Result<Answer, oneshot::error::RecvError>) -> Result<Siblings, ClusterError> {
    match answer {
        Ok((result, calls)) => {
            trace::record_all(&calls);
            result
        }
        // Only when the runtime stops under the batch.
        Err(_) => Err(ClusterError::Remote(
            "the request's batch was dropped".into(),
        )),
    }
}
