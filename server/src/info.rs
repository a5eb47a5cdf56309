//! INFO: Redis's standard sections plus a `dynamo` section.

use std::{fmt::Write as _, sync::atomic::Ordering};

use cluster::coordinator::CoordinatorStats;

use crate::{state::ServerState, stats::ServerStats};

/// The version Redis clients see (they gate features on it).
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "keyspace",
    "dynamo",
];

/// Sections shown only when asked for by name or with `all`, as in Redis.
const EXTRA_SECTIONS: &[&str] = &["commandstats", "latencystats"];

/// Renders the requested sections (all of them for none, `all`, `default` or
/// `everything`).
pub fn render(state: &ServerState, requested: &[String]) -> String {
    let all = requested
        .iter()
        .any(|s| matches!(s.as_str(), "all" | "everything"));
    let default = all || requested.is_empty() || requested.iter().any(|s| s == "default");
    let mut out = String::new();
    for section in SECTIONS.iter().chain(EXTRA_SECTIONS) {
        let by_default = SECTIONS.contains(section);
        if (by_default && default) || all || requested.iter().any(|r| r == section) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            section_text(state, section, &mut out);
        }
    }
    out
}

fn section_text(state: &ServerState, section: &str, out: &mut String) {
    let config = state.config();
    let c = &state.coordinator;
    let cs = c.stats();
    let mut title = section.to_string();
    title[..1].make_ascii_uppercase();
    let _ = write!(out, "# {title}\r\n");
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(out, "{name}:{value}\r\n");
    };
    match section {
        "server" => {
            line("redis_version", &REDIS_COMPAT_VERSION);
            line("dynamo_version", &env!("CARGO_PKG_VERSION"));
            line("redis_mode", &"standalone");
            line("os", &std::env::consts::OS);
            line("arch_bits", &64);
            line("process_id", &std::process::id());
            line("run_id", &state.run_id);
            line("tcp_port", &config.port);
            line("uptime_in_seconds", &state.started.elapsed().as_secs());
            line(
                "uptime_in_days",
                &(state.started.elapsed().as_secs() / 86_400),
            );
        }
        "clients" => {
            line("connected_clients", &state.clients.connected());
            line("maxclients", &config.maxclients);
            line("blocked_clients", &0);
        }
        "memory" => {
            let rss = resident_bytes();
            line("used_memory", &rss);
            line("used_memory_human", &human(rss));
            line("used_memory_rss", &rss);
            line("maxmemory", &0);
            line("maxmemory_policy", &"noeviction");
        }
        "persistence" => {
            line("loading", &0);
            line("storage_engine", &c.engine().name());
            line("durability", &config.durability);
            line("flush_every_ms", &config.flush_every_ms);
            line("data_dir", &config.data_dir.display());
            line("storage_size_bytes", &c.engine().size_bytes());
            line("rdb_changes_since_last_save", &0);
            line("aof_enabled", &0);
        }
        "stats" => {
            let s = &state.stats;
            line(
                "total_connections_received",
                &ServerStats::get(&s.connections_received),
            );
            line(
                "total_commands_processed",
                &ServerStats::get(&s.commands_processed),
            );
            line(
                "rejected_connections",
                &ServerStats::get(&s.rejected_connections),
            );
            line("expired_keys", &CoordinatorStats::get(&cs.expired_purged));
            line("keyspace_hits", &ServerStats::get(&s.keyspace_hits));
            line("keyspace_misses", &ServerStats::get(&s.keyspace_misses));
            line("total_error_replies", &0);
            line("protocol_errors", &ServerStats::get(&s.protocol_errors));
        }
        "replication" => {
            line("role", &"master");
            line("connected_slaves", &0);
        }
        "commandstats" => {
            for stats in state.metrics.per_command() {
                let calls = stats.all.count();
                line(
                    &format!("cmdstat_{}", stats.name),
                    &format!(
                        "calls={calls},usec={},usec_per_call={:.2},rejected_calls=0,failed_calls={}",
                        stats.all.sum_us(),
                        stats.all.sum_us() as f64 / calls as f64,
                        stats.failed
                    ),
                );
            }
        }
        "latencystats" => {
            for stats in state.metrics.per_command() {
                line(
                    &format!("latency_percentiles_usec_{}", stats.name),
                    &format!(
                        "p50={:.3},p99={:.3},p99.9={:.3}",
                        stats.all.quantile_us(0.5),
                        stats.all.quantile_us(0.99),
                        stats.all.quantile_us(0.999)
                    ),
                );
            }
        }
        "keyspace" => {
            let keys = c.stored_keys();
            if keys > 0 {
                // Keys with an expiry are not counted, so no `expires=` figure is made up.
                line("db0", &format!("keys={keys}"));
            }
        }
        _ => {
            let cfg = c.config();
            line("node_id", &format!("{:016x}", c.node_id()));
            match c.node() {
                Some(node) => {
                    let cluster = node.cluster_state();
                    line("mode", &"cluster");
                    line("cluster_name", &cluster.cluster_name());
                    line("members", &cluster.members().len());
                    line("ring_version", &cluster.ring().version());
                    line("q", &cluster.ring().q());
                    let hints = node.hints();
                    let hs = hints.stats();
                    line("hints_pending", &hints.total());
                    for (owner, count) in hints.pending() {
                        line(&format!("hints_pending_{owner:016x}"), &count);
                    }
                    line("hints_stored", &hs.stored.load(Ordering::Relaxed));
                    line("hints_delivered", &hs.delivered.load(Ordering::Relaxed));
                    line("hints_dropped", &hs.dropped.load(Ordering::Relaxed));
                    line("foreground_in_flight", &node.foreground_in_flight());
                    line(
                        "background_max_foreground",
                        &node.config().background_max_foreground,
                    );
                    line(
                        "background_max_replica_rate",
                        &node.config().background_max_replica_rate,
                    );
                    line("replica_requests_per_sec", &(node.replica_rate() as u64));
                    line(
                        "background_latency_factor",
                        &node.config().background_latency_factor,
                    );
                    line(
                        "anti_entropy_max_keys_per_sec",
                        &node.config().anti_entropy_max_keys_per_sec,
                    );
                    let (last, baseline) = node.foreground_latency_us();
                    line("foreground_latency_us", &last.map_or(0, |v| v as u64));
                    line(
                        "foreground_latency_baseline_us",
                        &baseline.map_or(0, |v| v as u64),
                    );
                    line("transition", &cluster.phase().map_or("none", |p| p.name()));
                    line(
                        "ring_target_version",
                        &cluster.write_target().map_or(0, |t| t.version()),
                    );
                    line("transfers_pending", &cluster.pending_moves().count());
                    let transfers = node.transfer_local().transfers();
                    line("transfers_active", &transfers.len());
                    for t in transfers {
                        line(
                            &format!("transfer_{}", t.partition),
                            &format!(
                                "from={:016x},keys={},bytes={},percent={:.1},keys_per_sec={:.0},waiting={}",
                                t.from,
                                t.keys,
                                t.bytes,
                                t.percent,
                                t.rate,
                                t.waiting.as_deref().unwrap_or("no")
                            ),
                        );
                    }
                    line("ring_balance", &format!("{:.3}", cluster.ring().balance()));
                    let ring = cluster.ring();
                    for (owner, count) in ring.partition_counts() {
                        line(
                            &format!("ring_partitions_{owner:016x}"),
                            &format!("{count}/{:.1}", ring.fair_share(owner)),
                        );
                    }
                }
                None => line("mode", &"single-node"),
            }
            line("n", &config.n);
            line("r", &config.r);
            line("w", &config.w);
            line("coordinator_reads", &CoordinatorStats::get(&cs.reads));
            line("coordinator_writes", &CoordinatorStats::get(&cs.writes));
            line("max_siblings", &cfg.max_siblings);
            line("sibling_writes", &CoordinatorStats::get(&cs.sibling_writes));
            line(
                "max_siblings_seen",
                &CoordinatorStats::get(&cs.max_siblings_seen),
            );
            line(
                "sibling_limit_rejections",
                &CoordinatorStats::get(&cs.sibling_limit_rejections),
            );
            line("keys_collected", &CoordinatorStats::get(&cs.keys_collected));
            line(
                "expired_versions_purged",
                &CoordinatorStats::get(&cs.expired_purged),
            );
            line("replica_merges", &CoordinatorStats::get(&cs.merges));
            line("read_repairs", &CoordinatorStats::get(&cs.read_repairs));
            line("hedged_reads", &CoordinatorStats::get(&cs.hedged_reads));
            line(
                "coalesced_requests",
                &CoordinatorStats::get(&cs.coalesced_requests),
            );
            line(
                "coalesced_batches",
                &CoordinatorStats::get(&cs.coalesced_batches),
            );
            line(
                "writes_forwarded",
                &CoordinatorStats::get(&cs.writes_forwarded),
            );
            line(
                "writes_coordinated_for_peers",
                &CoordinatorStats::get(&cs.writes_coordinated_for_peers),
            );
            line(
                "quorum_failures",
                &CoordinatorStats::get(&cs.quorum_failures),
            );
            line("anti_entropy_rounds", &CoordinatorStats::get(&cs.ae_rounds));
            line(
                "anti_entropy_partitions_synced",
                &CoordinatorStats::get(&cs.ae_partitions_synced),
            );
            line(
                "anti_entropy_keys_repaired",
                &CoordinatorStats::get(&cs.ae_keys_repaired),
            );
            line("anti_entropy_bytes", &CoordinatorStats::get(&cs.ae_bytes));
            line(
                "tombstones_pending",
                &CoordinatorStats::get(&cs.tombstones_pending),
            );
            line(
                "tombstones_collected",
                &CoordinatorStats::get(&cs.tombstones_collected),
            );
            line(
                "background_deferrals",
                &CoordinatorStats::get(&cs.background_deferrals),
            );
            for (name, counter) in [
                ("transfer_keys_received", &cs.transfer_keys_received),
                ("transfer_bytes_received", &cs.transfer_bytes_received),
                ("transfer_keys_sent", &cs.transfer_keys_sent),
                ("transfer_bytes_sent", &cs.transfer_bytes_sent),
                ("transfer_partitions_done", &cs.transfer_partitions_done),
                ("handoff_keys_sent", &cs.handoff_keys_sent),
                ("handoff_keys_dropped", &cs.handoff_keys_dropped),
            ] {
                line(name, &CoordinatorStats::get(counter));
            }
        }
    }
}

/// Resident set size from /proc (0 where unavailable).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn human(bytes: u64) -> String {
    format!("{:.2}M", bytes as f64 / (1024.0 * 1024.0))
}
