//! A set-union workload for membership tests: writers keep adding unique
//! elements to a few keys through `DGET` / `DPUT`, so that every write that
//! was acknowledged can be looked for afterwards.
//!
//! A key's value is a comma-separated set of elements (the empty string is
//! the empty set). A writer reads the key through some node, unions every
//! sibling, adds its own new element `w{writer}-{seq}` and writes the union
//! back with the context it read, so concurrent siblings are folded together
//! and no element is ever dropped by a correct store.
//!
//! - `+OK` to the `DPUT`: the element is *acknowledged* and must be present
//!   in every later read of the key.
//! - Any error (`-UNAVAILABLE`, a refused or reset connection, a timeout): the
//!   element is *indeterminate*: it may or may not be stored, and is never
//!   counted as lost.
//! - Right after each acknowledged write the writer reads the key back
//!   through another node (when there is one); an answer that lacks the
//!   element is a read-after-write violation. A failed read-back proves
//!   nothing and is only counted.
//!
//! The node list is shared and can be replaced while the writers run
//! ([`SetUnion::set_nodes`]) as nodes join, leave or are killed. The writers
//! connect only to the loopback addresses in that list, pace themselves, and
//! stop on [`SetUnion::stop`], after [`MAX_RUN`], or after
//! [`MAX_WRITES_PER_WRITER`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{wait_for, Server};

/// A writer stops on its own after this long, even if nobody stops it.
pub const MAX_RUN: Duration = Duration::from_secs(600);
/// A writer stops on its own after this many write attempts.
pub const MAX_WRITES_PER_WRITER: u64 = 100_000;
/// A writer starts at most one read-modify-write per this interval (about
/// 200 a second): values grow by one element per write, and at this pace
/// they stay far below the servers' value size limit (1 MiB) for as long as
/// a test runs, while the cluster keeps time for its own work.
const PACE: Duration = Duration::from_millis(5);
/// Connecting to a node; a killed node on loopback refuses at once anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Per request: well above the servers' 2 s request timeout, well below the
/// time a test waits for anything.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an error, so a dead node is not hammered with reconnects.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);
/// Examples (violations, errors) kept per writer.
const MAX_EXAMPLES: usize = 10;

/// Running writers; see the module documentation.
pub struct SetUnion {
    nodes: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    writers: Vec<JoinHandle<WriterLog>>,
    keys: usize,
    started: Instant,
}

/// What the writers did, from [`SetUnion::stop`].
#[derive(Debug, Default)]
pub struct SetUnionReport {
    /// Key -> acknowledged elements, in the order they were acknowledged
    /// per writer.
    pub acknowledged: BTreeMap<String, Vec<String>>,
    /// `DPUT`s sent (acknowledged + indeterminate).
    pub writes: u64,
    /// `DPUT`s that got an error (the element may or may not be stored).
    pub indeterminate: u64,
    /// `DGET`s before a write that failed (nothing was written then).
    pub failed_reads: u64,
    /// Read-backs after an acknowledged write that got an answer.
    pub read_backs: u64,
    /// Read-backs that got an error (they prove nothing either way).
    pub read_back_failures: u64,
    /// Read-backs that answered without the element just acknowledged.
    pub read_after_write_violations: u64,
    /// A few of those, described.
    pub violation_examples: Vec<String>,
    /// A few of the errors the writers met, for the log.
    pub error_examples: Vec<String>,
    /// How long the writers ran.
    pub elapsed: Duration,
}

impl SetUnionReport {
    /// Number of acknowledged elements over all keys.
    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.values().map(Vec::len).sum()
    }

    /// Keys with at least one acknowledged element (so they are stored).
    pub fn keys(&self) -> Vec<String> {
        self.acknowledged.keys().cloned().collect()
    }

    /// One line of figures for the test log.
    pub fn summary(&self) -> String {
        format!(
            "{} writes in {:.1?} over {} keys: {} acknowledged, {} indeterminate, \
             {} failed reads; {} read-backs ({} failed), {} read-after-write violations",
            self.writes,
            self.elapsed,
            self.acknowledged.len(),
            self.acknowledged_count(),
            self.indeterminate,
            self.failed_reads,
            self.read_backs,
            self.read_back_failures,
            self.read_after_write_violations,
        )
    }
}

impl SetUnion {
    /// Starts `writers` threads writing to keys `su:0` .. `su:{keys - 1}`
    /// through the nodes in `nodes` (`redis://ip:port/` URLs or `ip:port`,
    /// loopback only). `seed` makes the key choices reproducible.
    pub fn start(nodes: Vec<String>, keys: usize, writers: usize, seed: u64) -> SetUnion {
        assert!(keys > 0, "a workload needs at least one key");
        assert!(
            (1..=64).contains(&writers),
            "1 to 64 writers, not {writers}"
        );
        let mut workload = SetUnion {
            nodes: Arc::new(Mutex::new(loopback_urls(nodes))),
            stop: Arc::new(AtomicBool::new(false)),
            acknowledged: Arc::new(AtomicU64::new(0)),
            writers: Vec::with_capacity(writers),
            keys,
            started: Instant::now(),
        };
        for id in 0..writers {
            let writer = Writer {
                id,
                keys,
                rng: Rng::new(seed, id),
                nodes: Arc::clone(&workload.nodes),
                stop: Arc::clone(&workload.stop),
                acknowledged: Arc::clone(&workload.acknowledged),
            };
            let handle = std::thread::Builder::new()
                .name(format!("set-union-{id}"))
                .spawn(move || writer.run())
                .expect("spawning a workload writer");
            workload.writers.push(handle);
        }
        workload
    }

    /// Every key the writers may write (`su:0` .. `su:{keys - 1}`).
    pub fn keys(&self) -> Vec<String> {
        (0..self.keys).map(key_name).collect()
    }

    /// Replaces the nodes the writers use from their next request on.
    pub fn set_nodes(&self, nodes: Vec<String>) {
        *self.nodes.lock().expect("workload node list") = loopback_urls(nodes);
    }

    /// Elements acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits until `more` elements beyond the current count are acknowledged:
    /// the cluster keeps taking writes in its current shape.
    pub fn wait_progress(&self, more: u64, timeout: Duration) {
        let target = self.acknowledged() + more;
        wait_for(
            &format!("{more} more acknowledged workload writes"),
            timeout,
            || self.acknowledged() >= target,
        );
    }

    /// Stops the writers, waits for them (each finishes its current request,
    /// bounded by the request timeout) and returns what they did.
    pub fn stop(mut self) -> SetUnionReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = SetUnionReport::default();
        for handle in std::mem::take(&mut self.writers) {
            let log = handle.join().expect("a workload writer panicked");
            for (key, element) in log.acknowledged {
                report.acknowledged.entry(key).or_default().push(element);
            }
            report.writes += log.writes;
            report.indeterminate += log.indeterminate;
            report.failed_reads += log.failed_reads;
            report.read_backs += log.read_backs;
            report.read_back_failures += log.read_back_failures;
            report.read_after_write_violations += log.violations;
            report.violation_examples.extend(log.violation_examples);
            report.error_examples.extend(log.error_examples);
        }
        report.elapsed = self.started.elapsed();
        report
    }
}

impl Drop for SetUnion {
    /// A test that panics before `stop` must not leave writers behind.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The acknowledged elements of `report` that a `DGET` through `node` does
/// not return, as `"key element"`.
pub fn check_all_present(report: &SetUnionReport, node: &Server) -> Vec<String> {
    let mut con = node.client();
    let mut missing = Vec::new();
    for (key, elements) in &report.acknowledged {
        let (_, seen) = dget(&mut con, key)
            .unwrap_or_else(|e| panic!("DGET {key} through {}: {e}", node.addr()));
        missing.extend(
            elements
                .iter()
                .filter(|e| !seen.contains(*e))
                .map(|e| format!("{key} {e}")),
        );
    }
    missing
}

/// The name of workload key number `k`.
fn key_name(k: usize) -> String {
    format!("su:{k}")
}

/// Normalises node addresses to `redis://ip:port/`, refusing anything that
/// is not a loopback IP address: the workload talks to test servers only.
fn loopback_urls(nodes: Vec<String>) -> Vec<String> {
    nodes
        .into_iter()
        .map(|node| {
            let host_port = node
                .strip_prefix("redis://")
                .unwrap_or(&node)
                .trim_end_matches('/');
            let addr: SocketAddr = host_port
                .parse()
                .unwrap_or_else(|e| panic!("workload node {node:?} is not ip:port: {e}"));
            assert!(
                addr.ip().is_loopback(),
                "workload node {node} is not a loopback address"
            );
            format!("redis://{addr}/")
        })
        .collect()
}

/// One writer thread's state.
struct Writer {
    id: usize,
    keys: usize,
    rng: Rng,
    nodes: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
}

/// What one writer did.
#[derive(Default)]
struct WriterLog {
    acknowledged: Vec<(String, String)>,
    writes: u64,
    indeterminate: u64,
    failed_reads: u64,
    read_backs: u64,
    read_back_failures: u64,
    violations: u64,
    violation_examples: Vec<String>,
    error_examples: Vec<String>,
}

impl WriterLog {
    fn note_error(&mut self, what: &str, url: &str, error: &str) {
        if self.error_examples.len() < MAX_EXAMPLES {
            self.error_examples
                .push(format!("{what} through {url}: {error}"));
        }
    }
}

impl Writer {
    fn run(mut self) -> WriterLog {
        let deadline = Instant::now() + MAX_RUN;
        let mut log = WriterLog::default();
        let mut connections = Connections::default();
        // The node the last request failed through: avoided next time.
        let mut avoid: Option<String> = None;
        let mut seq = 0u64;
        let mut next_start = Instant::now();
        while !self.stop.load(Ordering::Relaxed)
            && Instant::now() < deadline
            && log.writes < MAX_WRITES_PER_WRITER
        {
            std::thread::sleep(next_start.saturating_duration_since(Instant::now()));
            next_start = Instant::now() + PACE;
            let nodes = self.nodes.lock().expect("workload node list").clone();
            connections.keep_only(&nodes);
            let Some(through) = self.rng.pick(&nodes, avoid.as_deref()) else {
                std::thread::sleep(ERROR_BACKOFF);
                continue;
            };
            let key = key_name(self.rng.below(self.keys));

            let (context, mut set) = match connections.dget(&through, &key) {
                Ok(read) => read,
                Err(e) => {
                    log.failed_reads += 1;
                    log.note_error("DGET", &through, &e);
                    avoid = Some(through);
                    std::thread::sleep(ERROR_BACKOFF);
                    continue;
                }
            };
            seq += 1;
            let element = format!("w{}-{seq}", self.id);
            set.insert(element.clone());
            let value = set.into_iter().collect::<Vec<_>>().join(",");
            log.writes += 1;
            if let Err(e) = connections.dput(&through, &key, &context, &value) {
                log.indeterminate += 1;
                log.note_error("DPUT", &through, &e);
                avoid = Some(through);
                std::thread::sleep(ERROR_BACKOFF);
                continue;
            }
            log.acknowledged.push((key.clone(), element.clone()));
            self.acknowledged.fetch_add(1, Ordering::Relaxed);
            avoid = None;

            // Read it back through another node: a quorum read after a
            // quorum write must see it, whichever node coordinates.
            let reader = self
                .rng
                .pick(&nodes, Some(through.as_str()))
                .unwrap_or_else(|| through.clone());
            match connections.dget(&reader, &key) {
                Ok((_, seen)) => {
                    log.read_backs += 1;
                    if !seen.contains(&element) {
                        log.violations += 1;
                        if log.violation_examples.len() < MAX_EXAMPLES {
                            log.violation_examples.push(format!(
                                "{key}: {element} acknowledged through {through}, \
                                 missing from the DGET through {reader} ({} elements)",
                                seen.len()
                            ));
                        }
                    }
                }
                Err(e) => {
                    log.read_back_failures += 1;
                    log.note_error("read-back DGET", &reader, &e);
                }
            }
        }
        log
    }
}

/// A writer's connections, one per node URL, reopened after any error.
#[derive(Default)]
struct Connections(HashMap<String, redis::Connection>);

impl Connections {
    /// Drops the connections to nodes no longer in the list.
    fn keep_only(&mut self, nodes: &[String]) {
        self.0.retain(|url, _| nodes.contains(url));
    }

    fn get(&mut self, url: &str) -> Result<&mut redis::Connection, String> {
        match self.0.entry(url.to_string()) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => Ok(entry.insert(open(url).map_err(|e| e.to_string())?)),
        }
    }

    /// Runs `request` on the connection to `url`; after an error the
    /// connection is dropped (it may be broken or out of step).
    fn with<T>(
        &mut self,
        url: &str,
        request: impl FnOnce(&mut redis::Connection) -> Result<T, String>,
    ) -> Result<T, String> {
        let result = request(self.get(url)?);
        if result.is_err() {
            self.0.remove(url);
        }
        result
    }

    fn dget(&mut self, url: &str, key: &str) -> Result<(Vec<u8>, BTreeSet<String>), String> {
        self.with(url, |con| dget(con, key))
    }

    fn dput(&mut self, url: &str, key: &str, context: &[u8], value: &str) -> Result<(), String> {
        self.with(url, |con| {
            let reply: redis::Value = redis::cmd("DPUT")
                .arg(key)
                .arg(context)
                .arg(value)
                .query(con)
                .map_err(|e| e.to_string())?;
            match reply {
                redis::Value::Okay => Ok(()),
                redis::Value::SimpleString(s) if s == "OK" => Ok(()),
                other => Err(format!("unexpected DPUT reply {other:?}")),
            }
        })
    }
}

fn open(url: &str) -> redis::RedisResult<redis::Connection> {
    let con = redis::Client::open(url)?.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    con.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    Ok(con)
}

/// `DGET key` as (context, union of the elements of every sibling).
fn dget(con: &mut redis::Connection, key: &str) -> Result<(Vec<u8>, BTreeSet<String>), String> {
    let (context, siblings): (Vec<u8>, Vec<Vec<u8>>) = redis::cmd("DGET")
        .arg(key)
        .query(con)
        .map_err(|e| e.to_string())?;
    let mut union = BTreeSet::new();
    for sibling in &siblings {
        let text = std::str::from_utf8(sibling)
            .map_err(|_| format!("{key} holds a value that is not UTF-8: {sibling:?}"))?;
        union.extend(text.split(',').filter(|e| !e.is_empty()).map(String::from));
    }
    Ok((context, union))
}

/// SplitMix64: reproducible choices without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, writer: usize) -> Rng {
        Rng(seed ^ (writer as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A random node of `nodes`, other than `avoid` when there is another.
    fn pick(&mut self, nodes: &[String], avoid: Option<&str>) -> Option<String> {
        let others: Vec<&String> = nodes.iter().filter(|n| Some(n.as_str()) != avoid).collect();
        if others.is_empty() {
            return nodes.first().cloned();
        }
        Some(others[self.below(others.len())].clone())
    }
}
