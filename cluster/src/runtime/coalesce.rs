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
//! The batcher runs after the tasks already woken and one poll of the
//! sockets, so a batch is what the clients of that turn sent, and a request
//! that comes alone waits for a few task switches, not for company. Like
//! Nagle's algorithm, a batch that would not be full (under [`BATCH_KEYS`])
//! waits while a batch of its kind (reads or writes) is running, for at
//! most [`HOLD_AT_MOST`]: the requests that arrive meanwhile join it. A
//! small batch costs nearly what a full one does (a message to and a
//! wake-up of each replica, an answer back), so fifty clients without
//! pipelining ran batches of 8-14 requests, and node 1 and the replicas
//! spent much of their time on those per-batch costs; held back, batches
//! grow to 17-28 requests (GET and SET without pipelining about +10% on
//! average, p99 no worse; benches/README.md). A lone client never waits:
//! nothing of its kind runs when its request comes. Each request still gets
//! its own result (R, W, hints and read repair are per key in the driver);
//! a traced request (slow log) gets the replica calls of its batch, which
//! are the calls it waited on.
//!
//! CAVEATS:
//! - A write's timestamp floor is the batch's latest `now_ms` (the requests
//!   of one batch were sent within the same turn, well under a millisecond
//!   apart).
//! - Two writes of one key in one batch (of one client or of two) are
//!   applied in queue order on the coordinator (the later supersedes the
//!   earlier), as two pipelined SETs of one connection are.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
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

/// The longest a batch under [`BATCH_KEYS`] is held back for the running
/// one of its kind (which normally answers well within it; one stuck on a
/// slow replica must not hold the others up to the request timeout).
const HOLD_AT_MOST: Duration = Duration::from_millis(2);

/// The queue of requests waiting to be batched, the batcher's wake-up, and
/// the batches running.
#[derive(Default)]
pub(super) struct Coalescer {
    /// Whether the batcher task runs (it is started on first use).
    started: AtomicBool,
    queue: Mutex<Queue>,
    /// New requests, and batches that finished.
    wake: Notify,
    /// Batches of reads, and of writes, running.
    reads_running: AtomicUsize,
    writes_running: AtomicUsize,
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
    /// (each on a task of its own, so the next batch need not wait), but
    /// holds a kind's small batch back while one of that kind runs.
    async fn run_batcher(self: Arc<Self>) {
        let coalescer = &self.coalescer;
        // Until when requests held back may wait (from when they first were).
        let mut hold_until: Option<tokio::time::Instant> = None;
        loop {
            if let Some(until) = hold_until {
                tokio::select! {
                    () = coalescer.wake.notified() => {}
                    () = tokio::time::sleep_until(until) => {}
                }
            } else {
                coalescer.wake.notified().await;
            }
            // Let the tasks already woken, and the sockets that became
            // readable meanwhile, add their requests first.
            tokio::task::yield_now().await;
            let hold_over = hold_until.is_some_and(|until| tokio::time::Instant::now() >= until);
            let queue = {
                let mut queue = coalescer.queue.lock().unwrap_or_else(|p| p.into_inner());
                let reads = takes_now(
                    hold_over,
                    coalescer.reads_running.load(Ordering::Acquire),
                    queue.reads.iter().map(|r| r.0.len()).sum(),
                )
                .then(|| std::mem::take(&mut queue.reads));
                let writes = takes_now(
                    hold_over,
                    coalescer.writes_running.load(Ordering::Acquire),
                    queue.writes.iter().map(|w| w.0.len()).sum(),
                )
                .then(|| std::mem::take(&mut queue.writes));
                hold_until = if queue.reads.is_empty() && queue.writes.is_empty() {
                    None
                } else {
                    hold_until.or_else(|| Some(tokio::time::Instant::now() + HOLD_AT_MOST))
                };
                Queue {
                    reads: reads.unwrap_or_default(),
                    writes: writes.unwrap_or_default(),
                }
            };
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
                let running = Running::start(&self, |c| &c.reads_running);
                tokio::spawn(async move { running.node.run_reads(batch).await });
            }
            for batch in writes {
                let running = Running::start(&self, |c| &c.writes_running);
                tokio::spawn(async move { running.node.run_writes(batch).await });
            }
        }
    }

    async fn run_reads(self: &Arc<Self>, reads: Vec<QueuedRead>) {
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

    async fn run_writes(self: &Arc<Self>, writes: Vec<QueuedWrite>) {
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

/// Whether the queued requests of a kind (`queued_keys` keys in all) go
/// now: always when nothing of their kind runs, or they fill a batch, or
/// they were held back long enough (`hold_over`).
fn takes_now(hold_over: bool, running: usize, queued_keys: usize) -> bool {
    queued_keys > 0 && (hold_over || running == 0 || queued_keys >= BATCH_KEYS)
}

/// A running batch, counted from its start until its task ends (however
/// it ends), which then wakes the batcher for what it held back.
struct Running {
    node: Arc<Node>,
    counter: fn(&Coalescer) -> &AtomicUsize,
}

impl Running {
    fn start(node: &Arc<Node>, counter: fn(&Coalescer) -> &AtomicUsize) -> Running {
        counter(&node.coalescer).fetch_add(1, Ordering::AcqRel);
        Running {
            node: node.clone(),
            counter,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let coalescer = &self.node.coalescer;
        (self.counter)(coalescer).fetch_sub(1, Ordering::AcqRel);
        coalescer.wake.notify_one();
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
    fn a_small_batch_waits_only_while_one_of_its_kind_runs() {
        // Nothing running: even one key goes at once (a lone client).
        assert!(takes_now(false, 0, 1));
        // One running: a small batch waits, a full one goes.
        assert!(!takes_now(false, 1, 1));
        assert!(!takes_now(false, 3, BATCH_KEYS - 1));
        assert!(takes_now(false, 1, BATCH_KEYS));
        // Held back long enough: it goes anyway.
        assert!(takes_now(true, 1, 1));
        // Nothing queued: nothing to take.
        assert!(!takes_now(true, 0, 0));
    }

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
