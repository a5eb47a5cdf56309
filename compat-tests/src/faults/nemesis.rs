//! Nemeses: a seeded schedule of fault windows, and its execution.
//!
//! A schedule is a list of non-overlapping windows; each starts one fault
//! (or a mix of two), holds it for a while, then undoes it, followed by a
//! quiet gap in which the cluster heals. The last window's fault is left in
//! force when the nemesis phase ends, for the final heal. Every action is logged with its
//! time since the start of the run.
//!
//! Not built yet (hooks for later):
//! - TODO(clock skew): the nodes take LWW timestamps and tombstone ages from
//!   the wall clock; skewing one node needs a fake clock (libfaketime or a
//!   server option), then a `Fault::Skew(node, offset)` here.
//! - TODO(membership): JOIN / LEAVE / REMOVE during faults, as a
//!   `Fault::Membership` whose undo waits for the transition to settle.

use std::time::{Duration, Instant};

use super::node::FaultCluster;
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

/// Two distinct nodes.
fn two_nodes(rng: &mut Rng, nodes: usize) -> (usize, usize) {
    let a = rng.below(nodes);
    let b = (a + 1 + rng.below(nodes - 1)) % nodes;
    (a, b)
}

impl Schedule {
    /// The short profile: a kill -9, a minority partition, a pause and a
    /// random-halves partition, in a seeded order on seeded nodes; each held
    /// 6-9 s with 3-5 s of quiet after it.
    pub fn short(rng: &mut Rng, nodes: usize) -> Schedule {
        let mut faults = vec![
            Fault::Kill(rng.below(nodes)),
            minority(rng, nodes),
            Fault::Pause(rng.below(nodes)),
            halves(rng, nodes),
        ];
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
    /// kill plus a pause of another node, and a partition plus a pause,
    /// until `duration` is used up.
    pub fn long(rng: &mut Rng, nodes: usize, duration: Duration) -> Schedule {
        assert!(nodes >= 3, "the long profile needs at least 3 nodes");
        let mut at = Duration::from_secs(3);
        let mut windows = Vec::new();
        let mut end = at;
        loop {
            let length = rng.millis(5_000, 15_000);
            if at + length > duration && !windows.is_empty() {
                break;
            }
            let fault = match rng.below(7) {
                0 => Fault::Kill(rng.below(nodes)),
                1 => Fault::Pause(rng.below(nodes)),
                2 => minority(rng, nodes),
                3 | 4 => halves(rng, nodes),
                5 => {
                    let (kill, pause) = two_nodes(rng, nodes);
                    Fault::Mix(vec![Fault::Kill(kill), Fault::Pause(pause)])
                }
                _ => Fault::Mix(vec![halves(rng, nodes), Fault::Pause(rng.below(nodes))]),
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
        Fault::Mix(faults) => faults.iter().for_each(|f| apply(f, cluster, log)),
    }
}

fn undo(fault: &Fault, cluster: &mut FaultCluster, log: &mut NemesisLog) {
    match fault {
        Fault::Kill(n) => {
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
        Fault::Mix(faults) => faults.iter().rev().for_each(|f| undo(f, cluster, log)),
    }
}

/// Undoes whatever may still be in force: heals the proxies, resumes paused
/// nodes and restarts dead ones.
pub fn recover_all(cluster: &mut FaultCluster, log: &mut NemesisLog) {
    if cluster.proxies.blocked_pairs() > 0 {
        log.note("heal partition");
    }
    cluster.proxies.heal();
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
    log.note("all healed: no cut, every node running");
}
