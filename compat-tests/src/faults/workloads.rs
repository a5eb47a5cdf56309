//! The concurrent client workloads of a fault run, and what they recorded.
//!
//! Every client is a thread with one `redis::Connection` to a node drawn
//! from its seeded [`Rng`], with a short per-command timeout
//! ([`CLIENT_TIMEOUT`]); after any error it drops the connection and
//! reconnects to a node drawn again, and now and then it redraws its node
//! anyway, so that clients keep hitting the nodes on every side of a fault. An answer is *acknowledged*; an error
//! or a timeout is *indeterminate* (the operation may or may not have taken
//! effect) and is never counted as lost.
//!
//! - **set-union** (`fu:set:{k}`): `DGET`, add a unique element
//!   `c{client}-{n}` to the union of the siblings, `DPUT` with the context;
//!   when the node answers the `DGET` with an error (no read quorum), the
//!   element is written blind (`DPUT key "" element`, a new sibling).
//! - **register** (`fu:reg:{k}`): plain `SET` of increasing values
//!   `c{client}-{seq}` per (client, key), times of invocation and answer
//!   recorded to judge last-write-wins afterwards.
//! - **deletes** (`fu:del:c{client}-{n}`): each key is written once with
//!   `SET` and, once acknowledged, deleted a second or more later with `DEL`
//!   (`:1` and `:0` are both acknowledged), then never written again. Keys
//!   still waiting for their `DEL` when the run ends are *kept*: their value
//!   must survive.
//! - **batches** (`fu:batch:c{client}-{n}:{i}`): write-once keys written
//!   [`BATCH_KEYS`] at a time, as one `MSET` or as a pipeline of plain
//!   `SET`s (the coordinator's batched path: one quorum per key, one
//!   message per replica); a key is acknowledged when its `MSET` or its own
//!   `SET` in the pipeline answered `OK`, and must then read back its value.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::node::connect;
use super::rng::Rng;

/// Connect and per-command timeout of every workload client.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after an error, so that a dead node is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// A delete workload key is deleted at least this long after its `SET`
/// was acknowledged.
const DELETE_AFTER: Duration = Duration::from_secs(1);
/// Chance that a client drops a healthy connection before a request and
/// draws a node again: without it, clients would drift off the nodes that
/// fail (a client only moves after an error) and stay on the majority side.
const REDRAW_CHANCE: f64 = 0.02;

/// Keys one batch-workload operation writes.
pub const BATCH_KEYS: usize = 4;

/// How many clients and keys each workload uses.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Keys of the set-union workload.
    pub set_keys: usize,
    /// Its clients.
    pub set_clients: usize,
    /// Keys of the register workload.
    pub register_keys: usize,
    /// Its clients.
    pub register_clients: usize,
    /// Clients of the delete workload (each with its own keys).
    pub delete_clients: usize,
    /// Clients of the batch workload (each with its own keys).
    pub batch_clients: usize,
    /// Least time between two operations of one client.
    pub pace: Duration,
}

/// The name of set-union key `k`.
pub fn set_key(k: usize) -> String {
    format!("fu:set:{k}")
}

/// The name of register key `k`.
pub fn register_key(k: usize) -> String {
    format!("fu:reg:{k}")
}

/// Errors by kind (`unavailable`, `timeout`, `refused`, `connection`,
/// `other`), with the first example of each kind.
#[derive(Debug, Default, Clone)]
pub struct Errors {
    /// Kind -> count.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Kind -> the first message of that kind.
    pub examples: BTreeMap<&'static str, String>,
}

impl Errors {
    fn note(&mut self, what: &str, error: &str) {
        let kind = classify(error);
        *self.by_kind.entry(kind).or_default() += 1;
        self.examples
            .entry(kind)
            .or_insert_with(|| format!("{what}: {error}"));
    }

    fn merge(&mut self, other: Errors) {
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        for (kind, example) in other.examples {
            self.examples.entry(kind).or_insert(example);
        }
    }

    /// Total errors.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// `12 (timeout 7, unavailable 5)`
    pub fn summary(&self) -> String {
        if self.by_kind.is_empty() {
            return "0".to_string();
        }
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!("{} ({})", self.total(), kinds.join(", "))
    }
}

fn classify(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("refused") {
        "refused"
    } else if e.contains("timed out")
        || e.contains("would block")
        || e.contains("os error 11)")
        || e.contains("resource temporarily unavailable")
    {
        "timeout"
    } else if e.contains("unavailable") {
        "unavailable"
    } else if e.contains("end of file")
        || e.contains("reset")
        || e.contains("broken pipe")
        || e.contains("closed")
        || e.contains("terminated")
        || e.contains("eof")
    {
        "connection"
    } else {
        "other"
    }
}

/// Why a request got no answer.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// No connection could be opened: the command was never sent, so it
    /// certainly did not happen.
    NotSent,
    /// The node answered with an error (e.g. `-UNAVAILABLE`): a write may
    /// or may not have happened. The connection is kept.
    Refused,
    /// Sent, then the connection failed or timed out: it may or may not
    /// have happened. The connection is dropped.
    Lost,
}

/// One client's connection: to a node drawn at random, reopened (to a node
/// drawn again) after any error, and now and then between operations.
struct Client {
    rng: Rng,
    urls: Arc<Vec<String>>,
    con: Option<redis::Connection>,
    /// Index of the node `con` is connected to (or was last tried).
    node: usize,
    errors: Errors,
}

impl Client {
    fn new(rng: Rng, urls: Arc<Vec<String>>) -> Client {
        Client {
            rng,
            urls,
            con: None,
            node: 0,
            errors: Errors::default(),
        }
    }

    /// Called before each operation: sometimes moves to another node.
    fn begin(&mut self) {
        if self.rng.chance(REDRAW_CHANCE) {
            self.con = None;
        }
    }

    /// Runs `cmd`; on an error notes it and backs off a little, and unless
    /// the node answered with an error reply, drops the connection.
    fn request<T: redis::FromRedisValue>(
        &mut self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, Failure> {
        let con = self.connection(what)?;
        cmd.query(con).map_err(|e| {
            self.errors.note(what, &e.to_string());
            std::thread::sleep(ERROR_BACKOFF);
            if e.code().is_some() {
                Failure::Refused
            } else {
                self.con = None;
                Failure::Lost
            }
        })
    }
}

impl Client {
    /// The connection, opened to a node drawn at random if there is none
    /// (`NotSent` if that fails).
    fn connection(&mut self, what: &str) -> Result<&mut redis::Connection, Failure> {
        if self.con.is_none() {
            self.node = self.rng.below(self.urls.len());
            let url = self.urls[self.node].clone();
            match connect(&url, CLIENT_TIMEOUT) {
                Ok(con) => self.con = Some(con),
                Err(e) => {
                    self.errors.note(what, &format!("{url}: {e}"));
                    std::thread::sleep(ERROR_BACKOFF);
                    return Err(Failure::NotSent);
                }
            }
        }
        Ok(self.con.as_mut().expect("connected"))
    }

    /// Runs `pipe` (with `ignore_errors`: one result per command); errors
    /// as [`Client::request`].
    fn pipeline(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<redis::RedisResult<redis::Value>>, Failure> {
        let con = self.connection("pipeline")?;
        match pipe.query::<Vec<redis::RedisResult<redis::Value>>>(con) {
            Ok(results) => {
                for error in results.iter().filter_map(|r| r.as_ref().err()) {
                    self.errors.note("SET", &error.to_string());
                }
                Ok(results)
            }
            Err(e) => {
                self.errors.note("pipeline", &e.to_string());
                std::thread::sleep(ERROR_BACKOFF);
                self.con = None;
                Err(Failure::Lost)
            }
        }
    }
}

fn is_ok(value: &redis::Value) -> bool {
    match value {
        redis::Value::Okay => true,
        redis::Value::SimpleString(s) => s == "OK",
        _ => false,
    }
}

/// What the set-union clients did.
#[derive(Debug, Default)]
pub struct SetHistory {
    /// (key, element) of every `DPUT` answered `OK`.
    pub acknowledged: Vec<(String, String)>,
    /// (key, element) of every `DPUT` that got an error or no answer.
    pub indeterminate: Vec<(String, String)>,
    /// `DGET`s that failed (nothing was written then).
    pub failed_reads: u64,
    /// `DPUT`s never sent (no connection): certainly not applied.
    pub not_sent: u64,
    /// Errors met.
    pub errors: Errors,
}

/// One register write.
#[derive(Debug, Clone)]
pub struct RegisterWrite {
    /// The key.
    pub key: String,
    /// The value written (`c{client}-{seq}`).
    pub value: String,
    /// When it was sent, since the start of the run.
    pub invoked: Duration,
    /// When its answer (or error) came.
    pub completed: Duration,
    /// Answered `OK`?
    pub acknowledged: bool,
}

/// What the register clients did.
#[derive(Debug, Default)]
pub struct RegisterHistory {
    /// Every write, acknowledged or not.
    pub writes: Vec<RegisterWrite>,
    /// Errors met.
    pub errors: Errors,
}

/// Where and when one request ran (times since the workloads started).
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// The node the client sent it to.
    pub node: usize,
    /// Sent.
    pub invoked: Duration,
    /// Answered.
    pub completed: Duration,
}

/// What the delete clients did.
#[derive(Debug, Default)]
pub struct DeleteHistory {
    /// Keys whose `SET` was acknowledged, with their value.
    pub written: BTreeMap<String, String>,
    /// Keys whose `SET` got an error (not deleted, not checked).
    pub write_indeterminate: Vec<String>,
    /// Keys whose `DEL` was acknowledged, with its answer (1 or 0).
    pub deleted: BTreeMap<String, i64>,
    /// Keys whose `DEL` got an error (may read back either way).
    pub delete_indeterminate: Vec<String>,
    /// Acknowledged keys never deleted: their value must survive.
    pub kept: Vec<String>,
    /// Per key, what was done to it: `SET via node 3 t+1.200s..1.201s OK;
    /// DEL via node 1 t+2.500s..2.502s :1`.
    pub trace: HashMap<String, String>,
    /// Per acknowledged key, the node and times of its `SET`.
    pub set_ops: HashMap<String, Op>,
    /// Per acknowledged `DEL`, its node and times.
    pub del_ops: HashMap<String, Op>,
    /// Errors met.
    pub errors: Errors,
}

/// What the batch clients did.
#[derive(Debug, Default)]
pub struct BatchHistory {
    /// Acknowledged keys with their value: each must read back.
    pub written: BTreeMap<String, String>,
    /// Keys whose write got an error or no answer (not checked).
    pub indeterminate: Vec<String>,
    /// Batches sent as `MSET` and as pipelines.
    pub msets: u64,
    /// Batches sent as pipelines of `SET`.
    pub pipelines: u64,
    /// Per key: how, through which node and when it was written.
    pub trace: HashMap<String, String>,
    /// Errors met.
    pub errors: Errors,
}

/// Everything the workloads recorded.
#[derive(Debug, Default)]
pub struct History {
    /// set-union
    pub set: SetHistory,
    /// register
    pub register: RegisterHistory,
    /// deletes
    pub deletes: DeleteHistory,
    /// batches
    pub batches: BatchHistory,
}

/// Running workload threads.
pub struct Workloads {
    stop: Arc<AtomicBool>,
    set: Vec<JoinHandle<SetHistory>>,
    register: Vec<JoinHandle<RegisterHistory>>,
    deletes: Vec<JoinHandle<DeleteHistory>>,
    batches: Vec<JoinHandle<BatchHistory>>,
}

impl Workloads {
    /// Starts every client against `urls`; client randomness comes from
    /// `seed` (one stream per client), times count from `start`.
    pub fn start(
        config: &WorkloadConfig,
        urls: Vec<String>,
        seed: u64,
        start: Instant,
    ) -> Workloads {
        let urls = Arc::new(urls);
        let stop = Arc::new(AtomicBool::new(false));
        let mut workloads = Workloads {
            stop: Arc::clone(&stop),
            set: Vec::new(),
            register: Vec::new(),
            deletes: Vec::new(),
            batches: Vec::new(),
        };
        for id in 0..config.set_clients {
            let client = Client::new(Rng::stream(seed, 100 + id as u64), Arc::clone(&urls));
            let (stop, keys, pace) = (Arc::clone(&stop), config.set_keys, config.pace);
            workloads.set.push(
                std::thread::Builder::new()
                    .name(format!("faults-set-{id}"))
                    .spawn(move || set_union(id, client, keys, pace, &stop))
                    .expect("spawning a workload client"),
            );
        }
        for id in 0..config.register_clients {
            let client = Client::new(Rng::stream(seed, 200 + id as u64), Arc::clone(&urls));
            let (stop, keys, pace) = (Arc::clone(&stop), config.register_keys, config.pace);
            workloads.register.push(
                std::thread::Builder::new()
                    .name(format!("faults-register-{id}"))
                    .spawn(move || register(id, client, keys, pace * 2, start, &stop))
                    .expect("spawning a workload client"),
            );
        }
        for id in 0..config.delete_clients {
            let client = Client::new(Rng::stream(seed, 300 + id as u64), Arc::clone(&urls));
            let (stop, pace) = (Arc::clone(&stop), config.pace);
            workloads.deletes.push(
                std::thread::Builder::new()
                    .name(format!("faults-deletes-{id}"))
                    .spawn(move || deletes(id, client, pace, start, &stop))
                    .expect("spawning a workload client"),
            );
        }
        for id in 0..config.batch_clients {
            let client = Client::new(Rng::stream(seed, 400 + id as u64), Arc::clone(&urls));
            let (stop, pace) = (Arc::clone(&stop), config.pace);
            workloads.batches.push(
                std::thread::Builder::new()
                    .name(format!("faults-batches-{id}"))
                    .spawn(move || batches(id, client, pace * 2, start, &stop))
                    .expect("spawning a workload client"),
            );
        }
        workloads
    }

    /// Stops every client (each finishes its current request, bounded by
    /// [`CLIENT_TIMEOUT`]) and merges what they recorded.
    pub fn stop(mut self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        let mut history = History::default();
        for handle in self.set.drain(..) {
            let log = handle.join().expect("a set-union client panicked");
            history.set.acknowledged.extend(log.acknowledged);
            history.set.indeterminate.extend(log.indeterminate);
            history.set.failed_reads += log.failed_reads;
            history.set.not_sent += log.not_sent;
            history.set.errors.merge(log.errors);
        }
        for handle in self.register.drain(..) {
            let log = handle.join().expect("a register client panicked");
            history.register.writes.extend(log.writes);
            history.register.errors.merge(log.errors);
        }
        for handle in self.deletes.drain(..) {
            let log = handle.join().expect("a delete client panicked");
            let d = &mut history.deletes;
            d.written.extend(log.written);
            d.write_indeterminate.extend(log.write_indeterminate);
            d.deleted.extend(log.deleted);
            d.delete_indeterminate.extend(log.delete_indeterminate);
            d.kept.extend(log.kept);
            d.trace.extend(log.trace);
            d.set_ops.extend(log.set_ops);
            d.del_ops.extend(log.del_ops);
            d.errors.merge(log.errors);
        }
        for handle in self.batches.drain(..) {
            let log = handle.join().expect("a batch client panicked");
            let b = &mut history.batches;
            b.written.extend(log.written);
            b.indeterminate.extend(log.indeterminate);
            b.msets += log.msets;
            b.pipelines += log.pipelines;
            b.trace.extend(log.trace);
            b.errors.merge(log.errors);
        }
        history
    }
}

impl Drop for Workloads {
    /// A run that panics before `stop` must not leave clients behind.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sleeps until `next`, then moves it `pace` further.
fn pace_to(next: &mut Instant, pace: Duration) {
    std::thread::sleep(next.saturating_duration_since(Instant::now()));
    *next = Instant::now() + pace;
}

/// `DGET key` as (context, union of the elements of every sibling).
pub fn parse_dget(reply: (Vec<u8>, Vec<Vec<u8>>)) -> (Vec<u8>, BTreeSet<String>) {
    let (context, siblings) = reply;
    let union = siblings
        .iter()
        .flat_map(|s| {
            String::from_utf8_lossy(s)
                .split(',')
                .filter(|e| !e.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    (context, union)
}

fn set_union(
    id: usize,
    mut client: Client,
    keys: usize,
    pace: Duration,
    stop: &AtomicBool,
) -> SetHistory {
    let mut log = SetHistory::default();
    let mut seq = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        pace_to(&mut next, pace);
        client.begin();
        let key = set_key(client.rng.below(keys));
        let read = client.request::<(Vec<u8>, Vec<Vec<u8>>)>("DGET", redis::cmd("DGET").arg(&key));
        let (context, mut union) = match read {
            Ok(reply) => parse_dget(reply),
            // The node answers but cannot reach a read quorum: write the
            // element blind (empty context, a new sibling) through it all
            // the same, as a client that must not drop it would.
            Err(Failure::Refused) => {
                log.failed_reads += 1;
                (Vec::new(), BTreeSet::new())
            }
            Err(_) => {
                log.failed_reads += 1;
                continue;
            }
        };
        seq += 1;
        let element = format!("c{id}-{seq}");
        union.insert(element.clone());
        let value = union.into_iter().collect::<Vec<_>>().join(",");
        let put = client
            .request::<redis::Value>("DPUT", redis::cmd("DPUT").arg(&key).arg(context).arg(value));
        match put {
            Ok(reply) if is_ok(&reply) => log.acknowledged.push((key, element)),
            Ok(reply) => {
                client
                    .errors
                    .note("DPUT", &format!("unexpected reply {reply:?}"));
                log.indeterminate.push((key, element));
            }
            Err(Failure::NotSent) => log.not_sent += 1,
            Err(_) => log.indeterminate.push((key, element)),
        }
    }
    log.errors = client.errors;
    log
}

fn register(
    id: usize,
    mut client: Client,
    keys: usize,
    pace: Duration,
    start: Instant,
    stop: &AtomicBool,
) -> RegisterHistory {
    let mut log = RegisterHistory::default();
    let mut seqs: HashMap<String, u64> = HashMap::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        pace_to(&mut next, pace);
        client.begin();
        let key = register_key(client.rng.below(keys));
        let seq = seqs.entry(key.clone()).or_default();
        *seq += 1;
        let value = format!("c{id}-{seq}");
        let invoked = start.elapsed();
        let reply = client.request::<redis::Value>("SET", redis::cmd("SET").arg(&key).arg(&value));
        let completed = start.elapsed();
        if matches!(reply, Err(Failure::NotSent)) {
            continue;
        }
        let acknowledged = matches!(&reply, Ok(r) if is_ok(r));
        if let Ok(r) = &reply {
            if !acknowledged {
                client
                    .errors
                    .note("SET", &format!("unexpected reply {r:?}"));
            }
        }
        log.writes.push(RegisterWrite {
            key,
            value,
            invoked,
            completed,
            acknowledged,
        });
    }
    log.errors = client.errors;
    log
}

/// `OP via node N t+a..b outcome`
fn traced(op: &str, node: usize, invoked: Duration, completed: Duration, outcome: &str) -> String {
    format!(
        "{op} via node {node} t+{:.3}s..{:.3}s {outcome}",
        invoked.as_secs_f64(),
        completed.as_secs_f64()
    )
}

fn outcome<T: std::fmt::Debug>(result: &Result<T, Failure>) -> String {
    match result {
        Ok(v) => format!("{v:?}"),
        Err(f) => format!("{f:?}"),
    }
}

fn deletes(
    id: usize,
    mut client: Client,
    pace: Duration,
    start: Instant,
    stop: &AtomicBool,
) -> DeleteHistory {
    let mut log = DeleteHistory::default();
    // Acknowledged keys waiting for their DEL, oldest first.
    let mut waiting: VecDeque<(String, Instant)> = VecDeque::new();
    let mut n = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        pace_to(&mut next, pace);
        client.begin();
        let due = waiting
            .front()
            .is_some_and(|(_, at)| at.elapsed() >= DELETE_AFTER);
        if due && (waiting.len() > 20 || client.rng.chance(0.5)) {
            let (key, written) = waiting.pop_front().expect("a waiting key");
            let invoked = start.elapsed();
            let result = client.request::<i64>("DEL", redis::cmd("DEL").arg(&key));
            let op = Op {
                node: client.node,
                invoked,
                completed: start.elapsed(),
            };
            let line = traced("DEL", op.node, invoked, op.completed, &outcome(&result));
            let trace = log.trace.entry(key.clone()).or_default();
            trace.push_str("; ");
            trace.push_str(&line);
            match result {
                Ok(answer) => {
                    log.del_ops.insert(key.clone(), op);
                    log.deleted.insert(key, answer);
                }
                // Never sent: try again later.
                Err(Failure::NotSent) => waiting.push_front((key, written)),
                Err(_) => log.delete_indeterminate.push(key),
            }
            continue;
        }
        n += 1;
        let key = format!("fu:del:c{id}-{n}");
        let value = format!("v{n}");
        let invoked = start.elapsed();
        let result = client.request::<redis::Value>("SET", redis::cmd("SET").arg(&key).arg(&value));
        let op = Op {
            node: client.node,
            invoked,
            completed: start.elapsed(),
        };
        log.trace.insert(
            key.clone(),
            traced("SET", op.node, invoked, op.completed, &outcome(&result)),
        );
        match result {
            Ok(reply) if is_ok(&reply) => {
                log.set_ops.insert(key.clone(), op);
                log.written.insert(key.clone(), value);
                waiting.push_back((key, Instant::now()));
            }
            Ok(reply) => {
                client
                    .errors
                    .note("SET", &format!("unexpected reply {reply:?}"));
                log.write_indeterminate.push(key);
            }
            // Never sent: the key was never written, and is forgotten.
            Err(Failure::NotSent) => {}
            Err(_) => log.write_indeterminate.push(key),
        }
    }
    log.kept = waiting.into_iter().map(|(key, _)| key).collect();
    log.errors = client.errors;
    log
}

fn batches(
    id: usize,
    mut client: Client,
    pace: Duration,
    start: Instant,
    stop: &AtomicBool,
) -> BatchHistory {
    let mut log = BatchHistory::default();
    let mut n = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        pace_to(&mut next, pace);
        client.begin();
        n += 1;
        let pairs: Vec<(String, String)> = (0..BATCH_KEYS)
            .map(|i| (format!("fu:batch:c{id}-{n}:{i}"), format!("v{n}-{i}")))
            .collect();
        let as_mset = client.rng.chance(0.5);
        let invoked = start.elapsed();
        // One answer per key: Some(true) acknowledged, Some(false) an
        // error for that key, None no answer at all.
        let (answers, how): (Vec<Option<bool>>, &str) = if as_mset {
            log.msets += 1;
            let mut cmd = redis::cmd("MSET");
            for (key, value) in &pairs {
                cmd.arg(key).arg(value);
            }
            let answer = match client.request::<redis::Value>("MSET", &cmd) {
                Ok(reply) => Some(is_ok(&reply)),
                Err(Failure::NotSent) => continue,
                Err(_) => None,
            };
            (vec![answer; BATCH_KEYS], "MSET")
        } else {
            log.pipelines += 1;
            let mut pipe = redis::pipe();
            for (key, value) in &pairs {
                pipe.cmd("SET").arg(key).arg(value);
            }
            // Per-command results: an error reply for one SET does not fail
            // the others.
            pipe.ignore_errors();
            match client.pipeline(&pipe) {
                Ok(replies) => (
                    replies
                        .iter()
                        .map(|r| Some(matches!(r, Ok(v) if is_ok(v))))
                        .chain(std::iter::repeat(None))
                        .take(BATCH_KEYS)
                        .collect(),
                    "pipelined SET",
                ),
                Err(Failure::NotSent) => continue,
                Err(_) => (vec![None; BATCH_KEYS], "pipelined SET"),
            }
        };
        let completed = start.elapsed();
        for ((key, value), answer) in pairs.into_iter().zip(answers) {
            let outcome = match answer {
                Some(true) => "OK",
                Some(false) => "error",
                None => "no answer",
            };
            log.trace.insert(
                key.clone(),
                traced(how, client.node, invoked, completed, outcome),
            );
            if answer == Some(true) {
                log.written.insert(key, value);
            } else {
                log.indeterminate.push(key);
            }
        }
    }
    log.errors = client.errors;
    log
}
