//! Nemeses: a seeded schedule of fault windows, and its execution.
//!
//! A schedule is a list of non-overlapping windows; each starts one fault
//! (or a mix of two), holds it for a while, then undoes it, followed by a
//! quiet gap in which the cluster heals. The last window's fault is left in
//! force when the nemesis phase ends, for the final heal. Every action is logged with its
//! time since the start of the run.
//!
//! Membership changes are reweights (`DYNAMO WEIGHT`): weight 0 moves all of
//! a node's partitions to the others, a higher weight pulls partitions to it,
//! and the undo puts the weight back, so partitions move twice, through the
//! transfer and hand-off machinery, while the other faults go on. (JOIN and
//! LEAVE are not used: a node that left is removed for good.)

use std::time::{Duration, Instant};

use super::node::FaultCluster;

/// How long a node may take to follow a new clock offset.
const SKEW_VISIBLE_WITHIN: Duration = Duration::from_secs(4);
use super::rng::Rng;

/// One fault (or a mix) held for a window.
#[derive(Debug, Clone)]
pub enum Fault {
    /// `kill -9` a node; restart it at the end of the window.
    Kill(usize),
    /// SIGSTOP a node; SIGCONT it at the end of the window.
    Pause(usize),
    /// Cut the peer links between `groups`; heal at the end of the window.
    Partition {
        /// `minority`, `halves`, ...
        kind: &'static str,
        /// Nodes that still reach each other.
        groups: Vec<Vec<usize>>,
    },
    /// Move a node's wall clock by `offset_secs` (libfaketime, see
    /// [`super::clock`]); set it right at the end of the window.
    Skew {
        /// The node.
        node: usize,
        /// Seconds ahead (positive) or behind (negative) the true time.
        offset_secs: i64,
    },
    /// Change a node's weight (a ring change: partitions move); put it
    /// back to 1 at the end of the window.
    Reweight {
        /// The node.
        node: usize,
        /// Its weight during the window (0: it owns nothing).
        weight: u32,
    },
    /// Several faults at once (e.g. a kill and a pause of two other nodes).
    Mix(Vec<Fault>),
}

impl Fault {
    /// One line for the log.
    pub fn describe(&self) -> String {
        match self {
            Fault::Kill(n) => format!("kill -9 node {n}"),
            Fault::Pause(n) => format!("pause (SIGSTOP) node {n}"),
            Fault::Partition { kind, groups } => {
                let sides: Vec<String> = groups
                    .iter()
                    .map(|g| g.iter().map(usize::to_string).collect::<Vec<_>>().join(" "))
                    .collect();
                format!("partition {kind} [{}]", sides.join(" | "))
            }
            Fault::Skew { node, offset_secs } => {
                format!("clock of node {node} skewed {offset_secs:+}s")
            }
            Fault::Reweight { node, weight } => format!("weight of node {node} set to {weight}"),
            Fault::Mix(faults) => faults
                .iter()
                .map(Fault::describe)
                .collect::<Vec<_>>()
                .join(" + "),
        }
    }
}

/// A fault held from `start` for `length`.
#[derive(Debug, Clone)]
pub struct Window {
    /// Since the start of the run.
    pub start: Duration,
    /// How long the fault is held.
    pub length: Duration,
    /// What is done.
    pub fault: Fault,
}

/// The whole nemesis phase.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// In time order, never overlapping.
    pub windows: Vec<Window>,
    /// When the nemesis phase (and the workloads) end: the end of the
    /// last window, whose fault is still in force then, so that the final
    /// heal ([`recover_all`]) has real work to do.
    pub end: Duration,
}

/// One node cut from all the others.
fn minority(rng: &mut Rng, nodes: usize) -> Fault {
    let alone = rng.below(nodes);
    Fault::Partition {
        kind: "minority",
        groups: vec![vec![alone], (0..nodes).filter(|&n| n != alone).collect()],
    }
}

/// The nodes shuffled and split in two halves (1|2 on 3 nodes, 2|3 on 5).
fn halves(rng: &mut Rng, nodes: usize) -> Fault {
    let mut order: Vec<usize> = (0..nodes).collect();
    rng.shuffle(&mut order);
    let (a, b) = order.split_at(nodes / 2);
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    Fault::Partition {
        kind: "halves",
        groups: vec![a, b],
    }
}

/// A node's clock moved 2-60 s ahead or behind.
fn skew(rng: &mut Rng, nodes: usize) -> Fault {
    let node = rng.below(nodes);
    let magnitude = 2 + rng.below(59) as i64;
    let offset_secs = if rng.below(2) == 0 {
        magnitude
    } else {
        -magnitude
    };
    Fault::Skew { node, offset_secs }
}

/// A node's weight set to 0 (it hands everything over) or 3 (it takes
/// more).
fn reweight(rng: &mut Rng, nodes: usize) -> Fault {
    Fault::Reweight {
        node: rng.below(nodes),
        weight: if rng.below(2) == 0 { 0 } else { 3 },
    }
}

/// Two distinct nodes.
fn two_nodes(rng: &mut Rng, nodes: usize) -> (usize, usize) {
    let a = rng.below(nodes);
    let b = (a + 1 + rng.below(nodes - 1)) % nodes;
    (a, b)
}

impl Schedule {
    /// The short profile: a kill -9, a minority partition, a pause and a
    /// random-halves partition (and, with `clock_skew`, a skewed clock
    /// during a minority partition), in a seeded order on seeded nodes; each
    /// held 6-9 s with 3-5 s of quiet after it.
    pub fn short(rng: &mut Rng, nodes: usize, clock_skew: bool) -> Schedule {
        let mut faults = vec![
            Fault::Kill(rng.below(nodes)),
            minority(rng, nodes),
            Fault::Pause(rng.below(nodes)),
            halves(rng, nodes),
        ];
        if clock_skew {
            faults.push(Fault::Mix(vec![skew(rng, nodes), minority(rng, nodes)]));
        }
        rng.shuffle(&mut faults);
        let mut at = Duration::from_secs(3);
        let mut windows = Vec::new();
        let mut end = at;
        for fault in faults {
            let length = rng.millis(6_000, 9_000);
            windows.push(Window {
                start: at,
                length,
                fault,
            });
            end = at + length;
            at = end + rng.millis(3_000, 5_000);
        }
        Schedule { windows, end }
    }

    /// The long profile: windows of 5-15 s with 3-8 s of quiet between
    /// them, drawn from kills, pauses, minority and halves partitions, a
    /// kill plus a pause of another node, and a partition plus a pause (and,
    /// with `clock_skew`, a skewed clock alone or during a halves
    /// partition; with 5 nodes or more, a reweight alone or with a kill of
    /// another node), until `duration` is used up.
    pub fn long(rng: &mut Rng, nodes: usize, duration: Duration, clock_skew: bool) -> Schedule {
        assert!(nodes >= 3, "the long profile needs at least 3 nodes");
        let mut at = Duration::from_secs(3);
        let mut windows = Vec::new();
        let mut end = at;
        loop {
            let length = rng.millis(5_000, 15_000);
            if at + length > duration && !windows.is_empty() {
                break;
            }
            // Reweights need spare nodes: with N = 3, weight 0 on one of 5
            // still leaves N owners for every key.
            let kinds = if nodes >= 5 { 11 } else { 9 };
            let fault = match rng.below(kinds) {
                0 => Fault::Kill(rng.below(nodes)),
                1 => Fault::Pause(rng.below(nodes)),
                2 => minority(rng, nodes),
                3 | 4 => halves(rng, nodes),
                5 => {
                    let (kill, pause) = two_nodes(rng, nodes);
                    Fault::Mix(vec![Fault::Kill(kill), Fault::Pause(pause)])
                }
                6 => Fault::Mix(vec![halves(rng, nodes), Fault::Pause(rng.below(nodes))]),
                7 if clock_skew => skew(rng, nodes),
                8 if clock_skew => Fault::Mix(vec![skew(rng, nodes), halves(rng, nodes)]),
                7 | 8 => halves(rng, nodes),
                9 => reweight(rng, nodes),
                _ => {
                    let (changed, killed) = two_nodes(rng, nodes);
                    let weight = if rng.below(2) == 0 { 0 } else { 3 };
                    Fault::Mix(vec![
                        Fault::Reweight {
                            node: changed,
                            weight,
                        },
                        Fault::Kill(killed),
                    ])
                }
            };
            windows.push(Window {
                start: at,
                length,
                fault,
            });
            end = at + length;
            at = end + rng.millis(3_000, 8_000);
        }
        Schedule { windows, end }
    }
}

/// Timestamped nemesis actions.
pub struct NemesisLog {
    start: Instant,
    entries: Vec<(Duration, String)>,
}

impl NemesisLog {
    /// A log whose times count from `start`.
    pub fn new(start: Instant) -> NemesisLog {
        NemesisLog {
            start,
            entries: Vec::new(),
        }
    }

    /// Records `what` now (and echoes it to stderr as it happens).
    pub fn note(&mut self, what: impl Into<String>) {
        let at = self.start.elapsed();
        let what = what.into();
        eprintln!("[faults t+{:7.3}s] {what}", at.as_secs_f64());
        self.entries.push((at, what));
    }

    /// Time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// `t+  12.345s  what` lines.
    pub fn lines(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(at, what)| format!("t+{:8.3}s  {what}", at.as_secs_f64()))
            .collect()
    }
}

fn sleep_until(start: Instant, at: Duration) {
    std::thread::sleep((start + at).saturating_duration_since(Instant::now()));
}

/// Runs `schedule` against `cluster` (times count from `start`), returning
/// at `schedule.end` with the last window's fault still in force: the
/// caller heals it with [`recover_all`].
pub fn run(schedule: &Schedule, cluster: &mut FaultCluster, start: Instant, log: &mut NemesisLog) {
    let last = schedule.windows.len().saturating_sub(1);
    for (i, window) in schedule.windows.iter().enumerate() {
        sleep_until(start, window.start);
        apply(&window.fault, cluster, log);
        sleep_until(start, window.start + window.length);
        if i < last {
            undo(&window.fault, cluster, log);
        }
    }
    sleep_until(start, schedule.end);
}

fn apply(fault: &Fault, cluster: &mut FaultCluster, log: &mut NemesisLog) {
    match fault {
        Fault::Kill(n) => {
            cluster.hints_dropped_at_kill[*n] = hints_dropped(cluster);
            let pid = cluster.nodes[*n].pid();
            cluster.nodes[*n].kill9();
            log.note(format!("kill -9 node {n} (pid {pid})"));
        }
        Fault::Pause(n) => {
            cluster.nodes[*n].pause();
            log.note(format!("pause (SIGSTOP) node {n}"));
        }
        Fault::Partition { groups, .. } => {
            cluster.proxies.partition(groups);
            log.note(fault.describe());
        }
        Fault::Skew { node, offset_secs } => {
            cluster.nodes[*node].skew_clock(*offset_secs);
            cluster
                .skew_windows
                .push((*node, *offset_secs, log.elapsed(), None));
            log.note(fault.describe());
            // libfaketime rereads its file every second: wait until the
            // node's own TIME shows the offset, so the run proves it.
            let deadline = Instant::now() + SKEW_VISIBLE_WITHIN;
            loop {
                let seen = cluster.nodes[*node].observed_clock_offset();
                if let Some(seen) = seen.filter(|s| (s - *offset_secs as f64).abs() < 1.0) {
                    cluster.skews_observed += 1;
                    log.note(format!("node {node} TIME is {seen:+.1}s off the true time"));
                    break;
                }
                if Instant::now() >= deadline {
                    log.note(format!(
                        "node {node} TIME does not show the skew (offset seen: {seen:?})"
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Fault::Reweight { node, weight } => reweight_node(cluster, *node, *weight, log),
        Fault::Mix(faults) => faults.iter().for_each(|f| apply(f, cluster, log)),
    }
}

/// Offset 0 for `node`, closing its skew window.
fn set_clock_right(cluster: &mut FaultCluster, node: usize, log: &mut NemesisLog) {
    cluster.nodes[node].skew_clock(0);
    let now = log.elapsed();
    for window in &mut cluster.skew_windows {
        if window.0 == node && window.3.is_none() {
            window.3 = Some(now);
        }
    }
    log.note(format!("clock of node {node} set right"));
}

/// Every node's `hints_dropped` (`None`: it does not answer).
fn hints_dropped(cluster: &FaultCluster) -> Vec<Option<u64>> {
    cluster
        .nodes
        .iter()
        .map(|node| {
            if node.is_paused() {
                return None;
            }
            node.status()?.get("hints_dropped")?.parse().ok()
        })
        .collect()
}

/// `DYNAMO WEIGHT <id> <weight>` through the first node that takes it (the
/// change then spreads by gossip). Logged either way.
fn reweight_node(cluster: &mut FaultCluster, node: usize, weight: u32, log: &mut NemesisLog) {
    let id = &cluster.ids[node];
    for via in &cluster.nodes {
        if via.is_paused() {
            continue;
        }
        let Ok(mut con) = via.admin() else { continue };
        let answer: redis::RedisResult<redis::Value> = redis::cmd("DYNAMO")
            .arg("WEIGHT")
            .arg(id)
            .arg(weight)
            .query(&mut con);
        match answer {
            Ok(_) => {
                log.note(format!(
                    "weight of node {node} set to {weight} (DYNAMO WEIGHT via node {})",
                    via.index
                ));
                cluster.weights[node] = weight;
                return;
            }
            Err(e) => log.note(format!(
                "DYNAMO WEIGHT {node} {weight} via node {} refused: {e}",
                via.index
            )),
        }
    }
    log.note(format!(
        "weight of node {node} NOT changed: no node took it"
    ));
}

fn undo(fault: &Fault, cluster: &mut FaultCluster, log: &mut NemesisLog) {
    match fault {
        Fault::Kill(n) => {
            // Hints the others dropped (past max-hints) while it was down.
            let before = std::mem::take(&mut cluster.hints_dropped_at_kill[*n]);
            let dropped: u64 = hints_dropped(cluster)
                .iter()
                .zip(&before)
                .filter_map(|(after, before)| Some(after.as_ref()?.saturating_sub((*before)?)))
                .sum();
            cluster.hints_dropped_during_kills += dropped;
            log.note(format!("hints dropped while node {n} was down: {dropped}"));
            log.note(format!("restart node {n}"));
            cluster.nodes[*n].restart();
            log.note(format!(
                "node {n} answers again (pid {})",
                cluster.nodes[*n].pid()
            ));
        }
        Fault::Pause(n) => {
            cluster.nodes[*n].resume();
            log.note(format!("resume (SIGCONT) node {n}"));
        }
        Fault::Partition { .. } => {
            cluster.proxies.heal();
            log.note("heal partition");
        }
        Fault::Skew { node, .. } => set_clock_right(cluster, *node, log),
        Fault::Reweight { node, .. } => reweight_node(cluster, *node, 1, log),
        Fault::Mix(faults) => faults.iter().rev().for_each(|f| undo(f, cluster, log)),
    }
}

/// Undoes whatever may still be in force: heals the proxies, sets clocks
/// right, resumes paused nodes, restarts dead ones and puts weights back.
pub fn recover_all(cluster: &mut FaultCluster, log: &mut NemesisLog) {
    if cluster.proxies.blocked_pairs() > 0 {
        log.note("heal partition");
    }
    cluster.proxies.heal();
    for node in 0..cluster.nodes.len() {
        if cluster.nodes[node].clock_offset() != 0 {
            set_clock_right(cluster, node, log);
        }
    }
    for node in &mut cluster.nodes {
        if node.is_paused() {
            node.resume();
            log.note(format!("resume (SIGCONT) node {}", node.index));
        }
        if !node.is_running() {
            node.restart();
            log.note(format!("restart node {}", node.index));
        }
    }
    for node in 0..cluster.nodes.len() {
        if cluster.weights[node] != 1 {
            reweight_node(cluster, node, 1, log);
        }
    }
    log.note("all healed: no cut, every clock right, every node running with weight 1");
}
