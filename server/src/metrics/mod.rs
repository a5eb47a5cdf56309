//! Metrics: per-command latency histograms (recorded on every command), the
//! per-second latency history the dashboard draws, and the Prometheus text
//! exposition of those plus every counter INFO shows.

mod exposition;
mod histogram;

use std::{
    collections::VecDeque,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use prometheus_client::{encoding::text, metrics::family::Family, registry::Registry};
use resp::{command::table::COMMANDS, Reply};
use serde::Serialize;

pub use histogram::{LatencyHistogram, Snapshot};

use crate::state::ServerState;

/// Samples kept for the dashboard: five minutes at one a second.
const HISTORY_LEN: usize = 300;

/// How a command ended, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any reply but an error.
    Ok,
    /// `-UNAVAILABLE`: the quorum was not reached.
    Unavailable,
    /// Any other error reply.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Unavailable, Outcome::Error];

    /// The outcome of a reply.
    pub fn of(reply: &Reply) -> Outcome {
        match reply {
            Reply::Error(text) if text.starts_with("UNAVAILABLE") => Outcome::Unavailable,
            Reply::Error(_) => Outcome::Error,
            _ => Outcome::Ok,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }
}

/// One second of request latency, for the dashboard's chart.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencySample {
    /// Unix milliseconds at the end of the second.
    pub at_ms: u64,
    /// Commands completed in it.
    pub ops: u64,
    /// Median latency in microseconds.
    pub p50_us: f64,
    /// 99th percentile in microseconds.
    pub p99_us: f64,
    /// 99.9th percentile in microseconds.
    pub p999_us: f64,
}

/// One command's figures for INFO commandstats and latencystats.
#[derive(Debug, Clone, Copy)]
pub struct CommandStats {
    /// The command's name.
    pub name: &'static str,
    /// Every call's latency.
    pub all: Snapshot,
    /// Calls that answered an error (UNAVAILABLE included).
    pub failed: u64,
}

type CommandLabels = [(&'static str, &'static str); 2];

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    family: Family<CommandLabels, LatencyHistogram>,
    /// Per command (index into COMMANDS) and outcome, resolved from the
    /// family once so recording takes no lock.
    slots: Vec<[OnceLock<LatencyHistogram>; 3]>,
    /// Every command, for the history.
    all: LatencyHistogram,
    history: Mutex<History>,
}

#[derive(Default)]
struct History {
    last: Snapshot,
    samples: VecDeque<LatencySample>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let family = Family::<CommandLabels, LatencyHistogram>::default();
        registry.register(
            "dynamo_command_duration_seconds",
            "Client command latency by command and outcome (ok, unavailable: quorum not reached, error)",
            family.clone(),
        );
        Metrics {
            registry,
            family,
            slots: COMMANDS.iter().map(|_| Default::default()).collect(),
            all: LatencyHistogram::default(),
            history: Mutex::new(History::default()),
        }
    }
}

impl Metrics {
    /// Records one command; `index` is its row in the command table (none
    /// for unknown commands, which are only counted in the total).
    pub fn observe(&self, index: Option<usize>, outcome: Outcome, elapsed: Duration) {
        let micros = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.all.record(micros);
        let Some(slots) = index.and_then(|i| self.slots.get(i)) else {
            return;
        };
        let slot = &slots[outcome as usize];
        slot.get_or_init(|| {
            let name = COMMANDS[index.unwrap_or_default()].name;
            self.family
                .get_or_create(&[("command", name), ("outcome", outcome.label())])
                .clone()
        })
        .record(micros);
    }

    /// Each command's latency so far, in table order (only commands that
    /// ran).
    pub fn per_command(&self) -> Vec<CommandStats> {
        COMMANDS
            .iter()
            .zip(&self.slots)
            .filter_map(|(spec, slots)| {
                let mut all = Snapshot::default();
                let mut failed = 0;
                for (outcome, slot) in Outcome::ALL.iter().zip(slots) {
                    if let Some(histogram) = slot.get() {
                        let snapshot = histogram.snapshot();
                        if *outcome != Outcome::Ok {
                            failed += snapshot.count();
                        }
                        all.add(&snapshot);
                    }
                }
                (all.count() > 0).then_some(CommandStats {
                    name: spec.name,
                    all,
                    failed,
                })
            })
            .collect()
    }

    /// Closes one second of the history (called once a second).
    pub fn tick(&self, now_ms: u64) {
        let now = self.all.snapshot();
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let second = now.since(&history.last);
        history.last = now;
        if history.samples.len() == HISTORY_LEN {
            history.samples.pop_front();
        }
        history.samples.push_back(LatencySample {
            at_ms: now_ms,
            ops: second.count(),
            p50_us: second.quantile_us(0.5),
            p99_us: second.quantile_us(0.99),
            p999_us: second.quantile_us(0.999),
        });
    }

    /// Per-second latency samples, oldest first (at most five minutes).
    pub fn history(&self) -> Vec<LatencySample> {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.samples.iter().copied().collect()
    }

    /// The Prometheus (OpenMetrics) text exposition of every metric.
    pub fn encode(&self, state: &ServerState) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = text::encode_registry(&mut out, &self.registry);
        let _ = text::encode_registry(&mut out, &exposition::snapshot(state));
        let _ = text::encode_eof(&mut out);
        out
    }
}

const _: () = {
    // `Outcome as usize` indexes the slots.
    assert!(Outcome::ALL.len() == 3);
    assert!(Outcome::Error as usize == 2);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_of_replies() {
        assert_eq!(Outcome::of(&Reply::Ok), Outcome::Ok);
        assert_eq!(
            Outcome::of(&Reply::Error("UNAVAILABLE needed 2 replicas, got 1".into())),
            Outcome::Unavailable
        );
        assert_eq!(Outcome::of(&Reply::err("nope")), Outcome::Error);
    }

    #[test]
    fn observations_reach_command_stats_and_history() {
        let metrics = Metrics::default();
        let get = resp::command::table::position(b"get");
        metrics.observe(get, Outcome::Ok, Duration::from_micros(200));
        metrics.observe(get, Outcome::Error, Duration::from_micros(300));
        metrics.observe(None, Outcome::Error, Duration::from_micros(5));
        let stats = metrics.per_command();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].name, "get");
        assert_eq!(stats[0].all.count(), 2);
        assert_eq!(stats[0].failed, 1);
        metrics.tick(1_000);
        metrics.tick(2_000);
        let history = metrics.history();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].ops, 3);
        assert_eq!(history[1].ops, 0);
        let mut text = String::new();
        text::encode_registry(&mut text, &metrics.registry).unwrap();
        assert!(
            text.contains(r#"dynamo_command_duration_seconds_count{command="get",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"outcome="error"} 1"#), "{text}");
    }
}
