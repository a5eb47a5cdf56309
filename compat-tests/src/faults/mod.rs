//! A Jepsen-style fault harness: real processes, real network partitions,
//! concurrent clients, and a checker that judges the history afterwards.
//!
//! A run ([`run`]):
//!
//! 1. plans a loopback address per node and one per node's peer proxy
//!    ([`proxy`]), starts the proxies and the nodes ([`node`]): node k binds
//!    `127.0.0.Xk` and announces `127.0.0.Yk`, the proxy's address, so that
//!    every peer connection to it crosses its proxy, while its outgoing peer
//!    connections start from `127.0.0.Xk` so the proxy knows the caller;
//! 2. starts the workloads ([`workloads`]: set-union, register, deletes,
//!    batches),
//!    each client a thread talking straight to the nodes' client ports;
//! 3. runs a seeded nemesis schedule ([`nemesis`]): kill -9 and restart,
//!    SIGSTOP / SIGCONT, partitions through the proxies, and mixes;
//! 4. stops the clients while the last fault is still in force, heals
//!    everything, waits until every node sees every member up with no hint
//!    left, then until every replica of every key holds the same sibling
//!    values (`DYNAMO LOCALGET`), bounded;
//! 5. checks ([`checker`]): every acknowledged set-union element is
//!    present and nothing never attempted is; registers: what
//!    last-write-wins hid (reported, not a failure); no deleted key reads
//!    back a value; acknowledged but never deleted keys keep theirs; every
//!    acknowledged key of a batched write (MSET, pipelined SETs) reads back.
//!
//! `FAULTS_NODE_ARGS` (whitespace-separated) appends options to every
//! node's command line, e.g. `FAULTS_NODE_ARGS="--fallback-acks-count false"`.
//!
//! **Reproducibility**: the seed (printed first; `FAULTS_SEED` replays it)
//! drives the nemesis schedule, every client's key choices and the node each
//! client (re)connects to. Thread timing, and so the exact interleaving of
//! requests and faults, is up to the OS scheduler and is *not* replayed: a
//! seed gives the same faults at the same times on the same nodes and the
//! same client choices, not the same history.

pub mod checker;
pub mod clock;
pub mod nemesis;
pub mod node;
pub mod proxy;
pub mod rng;
pub mod workloads;

use std::time::{Duration, Instant};

pub use node::{FaultCluster, Node};
pub use proxy::{Proxies, ProxyStats};
pub use rng::{seed_from_env, Rng};
pub use workloads::WorkloadConfig;

use checker::{BatchVerdict, DeleteVerdict, RegisterVerdict, SetVerdict};
use nemesis::{Fault, NemesisLog, Schedule};
use workloads::{register_key, set_key, History, Workloads};

/// After the convergence wait: one tombstone grace period plus a collection
/// pass, so a tombstone collected too early would show as a resurrection.
const SETTLE: Duration = Duration::from_secs(3);

/// `max-hints` of the long profile's nodes: a few seconds of the workloads'
/// writes for a dead node.
pub const LONG_MAX_HINTS: usize = 300;

/// Which schedule a profile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// One kill, one minority partition, one pause, one halves partition.
    Short,
    /// Mixed windows until the duration is used up.
    Long,
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Profile {
    /// `short` / `long`.
    pub name: &'static str,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// N, R, W.
    pub quorum: (usize, usize, usize),
    /// Node options besides the addresses and quorum.
    pub node_args: Vec<String>,
    /// Schedule kind.
    pub schedule: ScheduleKind,
    /// Length of the nemesis phase (long profile; the short one's is set
    /// by its schedule).
    pub duration: Duration,
    /// Clients and keys.
    pub workloads: WorkloadConfig,
    /// Bound on recovery plus convergence after the heal.
    pub convergence_timeout: Duration,
}

/// Options that make a healed cluster converge within seconds.
fn fast_node_args() -> Vec<String> {
    [
        "--q",
        "64",
        "--gossip-interval-ms",
        "200",
        "--hint-delivery-interval-ms",
        "200",
        "--anti-entropy-interval-ms",
        "1000",
        "--request-timeout-ms",
        "1000",
        "--tombstone-grace-ms",
        "2000",
        "--tombstone-gc-interval-ms",
        "500",
        "--loglevel",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Profile {
    /// 3 nodes, N=3 R=2 W=2, a kill, a minority partition, a pause and a
    /// halves partition: about a minute in all.
    pub fn short() -> Profile {
        Profile {
            name: "short",
            nodes: 3,
            quorum: (3, 2, 2),
            node_args: fast_node_args(),
            schedule: ScheduleKind::Short,
            duration: Duration::ZERO,
            workloads: WorkloadConfig {
                set_keys: 40,
                set_clients: 4,
                register_keys: 4,
                register_clients: 2,
                delete_clients: 2,
                batch_clients: 1,
                pace: Duration::from_millis(15),
            },
            convergence_timeout: Duration::from_secs(120),
        }
    }

    /// 5 nodes, N=3 R=2 W=2, mixed nemeses for `duration`; at most
    /// [`LONG_MAX_HINTS`] hints per node, so that a node killed for a
    /// window stays down past the hint limit and the hints beyond it are
    /// dropped, leaving the rest to anti-entropy.
    pub fn long(duration: Duration) -> Profile {
        let mut node_args = fast_node_args();
        node_args.extend(["--max-hints".to_string(), LONG_MAX_HINTS.to_string()]);
        Profile {
            name: "long",
            nodes: 5,
            quorum: (3, 2, 2),
            node_args,
            schedule: ScheduleKind::Long,
            duration,
            workloads: WorkloadConfig {
                set_keys: 100,
                set_clients: 5,
                register_keys: 4,
                register_clients: 3,
                delete_clients: 2,
                batch_clients: 2,
                pace: Duration::from_millis(15),
            },
            convergence_timeout: Duration::from_secs(120),
        }
    }
}

/// Everything a run found; [`Report::summary`] prints it, and
/// [`Report::failures`] lists what fails the run.
pub struct Report {
    /// The seed (replay with `FAULTS_SEED`).
    pub seed: u64,
    /// The profile run.
    pub profile: Profile,
    /// One line per node: addresses and proxy.
    pub nodes: Vec<String>,
    /// Time to start the cluster.
    pub formed_in: Duration,
    /// Length of the nemesis phase (workloads running).
    pub nemesis_phase: Duration,
    /// The whole run.
    pub total: Duration,
    /// Timestamped nemesis actions.
    pub nemesis_log: Vec<String>,
    /// What the proxies did.
    pub proxy: ProxyStats,
    /// Whether the schedule held any partition.
    pub partitioned: bool,
    /// Clock skews scheduled, and how many the skewed node's `TIME` showed.
    pub skews: (usize, usize),
    /// Why the run had no clock-skew windows, if it had none.
    pub skew_skipped: Option<String>,
    /// Kill windows undone during the run (restarts before the final heal).
    pub kills_undone: usize,
    /// Hints the other nodes dropped (past `max-hints`) during them.
    pub hints_dropped_during_kills: u64,
    /// Heal -> every node sees every member up with no hint, or why not.
    pub recovered: Result<Duration, String>,
    /// Heal -> every replica holds the same values, or why not.
    pub converged: Result<Duration, String>,
    /// Keys compared for convergence.
    pub converged_keys: usize,
    /// set-union
    pub set: SetVerdict,
    /// register
    pub register: RegisterVerdict,
    /// deletes
    pub deletes: DeleteVerdict,
    /// batches
    pub batches: BatchVerdict,
    /// Errors the clients met, per workload.
    pub errors: [String; 4],
    /// The first error of each kind, per workload.
    pub error_examples: Vec<String>,
}

fn examples(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(20).map(String::as_str).collect();
    let more = items.len().saturating_sub(shown.len());
    let mut text = shown.join("\n      ");
    if more > 0 {
        text.push_str(&format!("\n      ... and {more} more"));
    }
    text
}

impl Report {
    /// What fails the run: losses, unexpected values, resurrections, no
    /// convergence, and a harness whose cuts could not have applied.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let mut list = |what: &str, items: &[String]| {
            if !items.is_empty() {
                failures.push(format!(
                    "{what}: {}\n      {}",
                    items.len(),
                    examples(items)
                ));
            }
        };
        list("set-union lost (acknowledged, absent)", &self.set.lost);
        list(
            "set-union unexpected (never attempted)",
            &self.set.unexpected,
        );
        list("register lost", &self.register.lost);
        list("register unexpected", &self.register.unexpected);
        list(
            "deletes resurrected (DEL :1, value back)",
            &self.deletes.resurrected,
        );
        list(
            "deletes not deleted (DEL :0 missed the acknowledged SET, GET reads it)",
            &self.deletes.undeleted,
        );
        list("deletes: kept keys lost", &self.deletes.kept_lost);
        list(
            "batches: acknowledged keys lost or changed",
            &self.batches.lost,
        );
        if let Err(e) = &self.recovered {
            failures.push(format!("recovery: {e}"));
        }
        if let Err(e) = &self.converged {
            failures.push(format!("convergence: {e}"));
        }
        if self.proxy.unknown_sources > 0 {
            failures.push(format!(
                "harness: {} peer connections came from an address that is no node's bind \
                 address, so partitions could not apply to them (are outgoing peer \
                 connections bound to --bind?)",
                self.proxy.unknown_sources
            ));
        }
        let hint_limited = self.profile.node_args.iter().any(|a| a == "--max-hints");
        if hint_limited && self.kills_undone > 0 && self.hints_dropped_during_kills == 0 {
            failures.push(format!(
                "harness: {} nodes were down for a window with a hint limit set, but no hint \
                 was dropped: no node was kept down past the limit",
                self.kills_undone
            ));
        }
        if self.skews.1 < self.skews.0 {
            failures.push(format!(
                "harness: {} clock skews scheduled but only {} seen in the nodes' TIME \
                 (is libfaketime preloaded?)",
                self.skews.0, self.skews.1
            ));
        }
        if self.partitioned && self.proxy.refused + self.proxy.severed == 0 {
            failures.push("harness: partitions were scheduled but the proxies cut nothing".into());
        }
        failures
    }

    /// One block with everything, for the test log.
    pub fn summary(&self) -> String {
        let (n, r, w) = self.profile.quorum;
        let time = |r: &Result<Duration, String>| match r {
            Ok(d) => format!("{:.1}s", d.as_secs_f64()),
            Err(_) => "NOT REACHED".to_string(),
        };
        let failures = self.failures();
        let mut out = vec![
            "==================== fault harness report ====================".to_string(),
            format!(
                "seed: {:#018x}   (replay: FAULTS_SEED={:#018x}; thread timing is not replayed)",
                self.seed, self.seed
            ),
            format!(
                "profile: {}, {} nodes, N={n} R={r} W={w}; formed in {:.1}s, nemesis phase {:.1}s, total {:.1}s",
                self.profile.name,
                self.profile.nodes,
                self.formed_in.as_secs_f64(),
                self.nemesis_phase.as_secs_f64(),
                self.total.as_secs_f64()
            ),
            format!("node options: {}", self.profile.node_args.join(" ")),
            match &self.skew_skipped {
                None => format!(
                    "clock skew: libfaketime; {} skews scheduled, {} seen in the nodes' TIME",
                    self.skews.0, self.skews.1
                ),
                Some(why) => format!("clock skew: none ({why})"),
            },
            if self.profile.node_args.iter().any(|a| a == "--max-hints") {
                format!(
                    "hint limit: {} kill windows undone; the other nodes dropped {} hints past \
                     max-hints while those nodes were down",
                    self.kills_undone, self.hints_dropped_during_kills
                )
            } else {
                format!(
                    "hint limit: the default; {} hints dropped while killed nodes were down",
                    self.hints_dropped_during_kills
                )
            },
            "nodes:".to_string(),
        ];
        out.extend(self.nodes.iter().map(|l| format!("  {l}")));
        out.push("nemesis log:".to_string());
        out.extend(self.nemesis_log.iter().map(|l| format!("  {l}")));
        out.push(format!(
            "proxies: {} connections forwarded, {} refused and {} severed by cuts, {} upstream \
             failures, {} from unknown sources",
            self.proxy.forwarded,
            self.proxy.refused,
            self.proxy.severed,
            self.proxy.upstream_failures,
            self.proxy.unknown_sources
        ));
        let s = &self.set;
        out.push(format!(
            "set-union ({} keys): {} DPUTs, acknowledged {}, lost {}, unexpected {}, \
             indeterminate {} ({} present, {} absent); {} failed DGETs, {} DPUTs not sent \
             (no connection); errors {}",
            s.keys,
            s.attempted,
            s.acknowledged,
            s.lost.len(),
            s.unexpected.len(),
            s.indeterminate,
            s.indeterminate_present,
            s.indeterminate - s.indeterminate_present,
            s.failed_reads,
            s.not_sent,
            self.errors[0]
        ));
        let g = &self.register;
        out.push(format!(
            "register ({} keys): acknowledged {}, indeterminate {}, LWW-hidden {} \
             (acknowledged siblings GET does not return) + {} (acknowledged writes begun \
             after GET's winner was answered), lost {}, unexpected {}; errors {}",
            g.keys,
            g.acknowledged,
            g.indeterminate,
            g.lww_hidden,
            g.hidden_later,
            g.lost.len(),
            g.unexpected.len(),
            self.errors[1]
        ));
        out.extend(g.finals.iter().map(|f| format!("  {f}")));
        let d = &self.deletes;
        out.push(format!(
            "deletes: {} written (+{} indeterminate SETs), deleted {} (:1 {}, :0 {}), \
             resurrected {}, DEL :0 yet readable {} (kept as a sibling under the tombstone {}; \
             readable because LWW followed a skewed clock {}), DEL indeterminate {} ({} still \
             present), kept {} (lost {}); errors {}",
            d.written,
            d.write_indeterminate,
            d.deleted_one + d.deleted_zero,
            d.deleted_one,
            d.deleted_zero,
            d.resurrected.len(),
            d.undeleted.len(),
            d.undeleted_sibling,
            d.undeleted_by_skew.len(),
            d.delete_indeterminate,
            d.delete_indeterminate_present,
            d.kept,
            d.kept_lost.len(),
            self.errors[2]
        ));
        if !d.undeleted_by_skew.is_empty() {
            out.push(format!(
                "  DEL :0 readable under clock skew (reported): {}\n      {}",
                d.undeleted_by_skew.len(),
                examples(&d.undeleted_by_skew)
            ));
        }
        let b = &self.batches;
        out.push(format!(
            "batches ({} MSETs, {} pipelines of SET): {} keys acknowledged, {} indeterminate, \
             lost {}; errors {}",
            b.batches.0,
            b.batches.1,
            b.written,
            b.indeterminate,
            b.lost.len(),
            self.errors[3]
        ));
        out.push(format!(
            "convergence: every node up with no hint {} after the heal; every replica of {} keys \
             identical {} after the heal (bound {:?})",
            time(&self.recovered),
            self.converged_keys,
            time(&self.converged),
            self.profile.convergence_timeout
        ));
        if !self.error_examples.is_empty() {
            out.push("error examples:".to_string());
            out.extend(self.error_examples.iter().map(|e| format!("  {e}")));
        }
        if failures.is_empty() {
            out.push("verdict: PASS".to_string());
        } else {
            out.push(format!("verdict: FAIL ({} findings)", failures.len()));
            out.extend(failures.iter().map(|f| format!("  - {f}")));
        }
        out.push("==============================================================".to_string());
        out.join("\n")
    }

    /// Panics with the summary if the run failed.
    pub fn assert_passed(&self) {
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "fault run FAILED (seed {:#018x}):\n{}",
            self.seed,
            self.summary()
        );
    }
}

/// Runs `profile` with `seed`: see the module documentation.
pub fn run(profile: &Profile, seed: u64) -> Report {
    eprintln!(
        "[faults] {} profile, seed {seed:#018x} (replay with FAULTS_SEED={seed:#018x})",
        profile.name
    );
    let started = Instant::now();
    let (n, r, w) = profile.quorum;
    let mut args: Vec<String> = vec![
        "--n".into(),
        n.to_string(),
        "--r".into(),
        r.to_string(),
        "--w".into(),
        w.to_string(),
    ];
    args.extend(profile.node_args.iter().cloned());
    let mut profile = profile.clone();
    if let Ok(extra) = std::env::var("FAULTS_NODE_ARGS") {
        // Later options override earlier ones in dynamo-server's parser.
        profile
            .node_args
            .extend(extra.split_whitespace().map(String::from));
        args.extend(extra.split_whitespace().map(String::from));
    }
    let profile = &profile;
    let libfaketime = clock::libfaketime();
    assert!(
        libfaketime.is_some() || !clock::required(),
        "DYNAMO_REQUIRE_FAKETIME=1 but libfaketime is not installed (apt-get install faketime)"
    );
    if libfaketime.is_none() {
        eprintln!(
            "[faults] libfaketime not found (apt-get install faketime): no clock-skew windows"
        );
    }
    let clock_skew = libfaketime.is_some();
    let mut cluster = FaultCluster::start(profile.nodes, &args, libfaketime.as_deref());
    let formed_in = started.elapsed();
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| {
            format!(
                "node {}: id {} client {} peers reach it via proxy {}",
                node.index,
                cluster.ids[node.index],
                node.addr(),
                node.proxy()
            )
        })
        .collect();

    let mut schedule_rng = Rng::stream(seed, 1);
    let schedule = match profile.schedule {
        ScheduleKind::Short => Schedule::short(&mut schedule_rng, profile.nodes, clock_skew),
        ScheduleKind::Long => Schedule::long(
            &mut schedule_rng,
            profile.nodes,
            profile.duration,
            clock_skew,
        ),
    };
    let partitioned = schedule.windows.iter().any(|w| has_partition(&w.fault));
    let skews_scheduled: usize = schedule.windows.iter().map(|w| skews_in(&w.fault)).sum();
    let t0 = Instant::now();
    let mut log = NemesisLog::new(t0);
    log.note(format!(
        "cluster of {} formed in {:.1}s; workloads start; {} fault windows planned over {:.0}s",
        profile.nodes,
        formed_in.as_secs_f64(),
        schedule.windows.len(),
        schedule.end.as_secs_f64()
    ));
    let workloads = Workloads::start(&profile.workloads, cluster.urls(), seed, t0);
    nemesis::run(&schedule, &mut cluster, t0, &mut log);
    // The clients stop while the last fault is still in force, so that the
    // heal has real repair work (hints, anti-entropy) and the final state
    // keeps what both sides of a cut wrote.
    let history: History = workloads.stop();
    let nemesis_phase = t0.elapsed();
    log.note("workloads stopped");
    let heal = Instant::now();
    nemesis::recover_all(&mut cluster, &mut log);

    let recovered =
        checker::wait_recovered(&cluster, profile.convergence_timeout).map(|_| heal.elapsed());
    log.note(match &recovered {
        Ok(_) => "every node sees every member up, no hint pending".to_string(),
        Err(_) => "recovery not reached".to_string(),
    });
    let mut keys: Vec<String> = (0..profile.workloads.set_keys).map(set_key).collect();
    keys.extend((0..profile.workloads.register_keys).map(register_key));
    keys.extend(history.deletes.written.keys().cloned());
    keys.extend(history.deletes.write_indeterminate.iter().cloned());
    keys.extend(history.batches.written.keys().cloned());
    keys.extend(history.batches.indeterminate.iter().cloned());
    let owners = checker::owners(&cluster, &keys).unwrap_or_else(|e| panic!("DYNAMO OWNERS: {e}"));
    let remaining = profile.convergence_timeout.saturating_sub(heal.elapsed());
    let converged =
        checker::wait_converged(&cluster, &keys, &owners, remaining).map(|_| heal.elapsed());
    log.note(match &converged {
        Ok(_) => format!("every replica of {} keys holds the same values", keys.len()),
        Err(_) => "convergence not reached".to_string(),
    });
    std::thread::sleep(SETTLE);
    log.note("settled; checking");

    let set = checker::check_set_union(&cluster, &history.set, profile.workloads.set_keys, &owners)
        .unwrap_or_else(|e| panic!("set-union check: {e}"));
    let register =
        checker::check_registers(&cluster, &history.register, profile.workloads.register_keys)
            .unwrap_or_else(|e| panic!("register check: {e}"));
    let deletes = checker::check_deletes(&cluster, &history.deletes, &owners)
        .unwrap_or_else(|e| panic!("delete check: {e}"));
    let batches = checker::check_batches(&cluster, &history.batches, &owners)
        .unwrap_or_else(|e| panic!("batch check: {e}"));
    let mut error_examples = Vec::new();
    for (workload, errors) in [
        ("set-union", &history.set.errors),
        ("register", &history.register.errors),
        ("deletes", &history.deletes.errors),
        ("batches", &history.batches.errors),
    ] {
        error_examples.extend(
            errors
                .examples
                .iter()
                .map(|(kind, example)| format!("{workload} {kind}: {example}")),
        );
    }
    Report {
        seed,
        profile: profile.clone(),
        nodes,
        formed_in,
        nemesis_phase,
        total: started.elapsed(),
        nemesis_log: log.lines(),
        proxy: cluster.proxies.stats(),
        partitioned,
        skews: (skews_scheduled, cluster.skews_observed),
        kills_undone: schedule
            .windows
            .iter()
            .take(schedule.windows.len().saturating_sub(1))
            .map(|w| kills_in(&w.fault))
            .sum(),
        hints_dropped_during_kills: cluster.hints_dropped_during_kills,
        skew_skipped: (!clock_skew)
            .then(|| "libfaketime not installed: apt-get install faketime".to_string()),
        recovered,
        converged,
        converged_keys: keys.len(),
        set,
        register,
        deletes,
        batches,
        errors: [
            history.set.errors.summary(),
            history.register.errors.summary(),
            history.deletes.errors.summary(),
            history.batches.errors.summary(),
        ],
        error_examples,
    }
}

fn kills_in(fault: &Fault) -> usize {
    match fault {
        Fault::Kill(_) => 1,
        Fault::Mix(faults) => faults.iter().map(kills_in).sum(),
        _ => 0,
    }
}

fn skews_in(fault: &Fault) -> usize {
    match fault {
        Fault::Skew { .. } => 1,
        Fault::Mix(faults) => faults.iter().map(skews_in).sum(),
        _ => 0,
    }
}

fn has_partition(fault: &Fault) -> bool {
    match fault {
        Fault::Partition { .. } => true,
        Fault::Mix(faults) => faults.iter().any(has_partition),
        _ => false,
    }
}
