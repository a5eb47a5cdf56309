//! The figures read at scrape time: counters and gauges from the server,
//! the coordinator and the cluster node, put in a registry built per scrape
//! (they live in the state, not in the registry, and INFO reads the same
//! atomics).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::{
    metrics::{
        counter::ConstCounter,
        family::Family,
        gauge::{ConstGauge, Gauge},
    },
    registry::Registry,
};

use crate::{state::ServerState, stats::ServerStats};

type Labels = Vec<(&'static str, String)>;

struct Builder(Registry);

impl Builder {
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.0.register(name, help, ConstCounter::new(value));
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.0.register(name, help, ConstGauge::new(value));
    }

    /// A labelled gauge family from (labels, value) rows.
    fn gauges(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, f64)>) {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (labels, value) in rows {
            family.get_or_create(&labels).set(value);
        }
        self.0.register(name, help, family);
    }

    /// A labelled counter family from (labels, value) rows.
    fn counters(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, u64)>) {
        let family = Family::<Labels, prometheus_client::metrics::counter::Counter>::default();
        for (labels, value) in rows {
            family.get_or_create(&labels).inc_by(value);
        }
        self.0.register(name, help, family);
    }
}

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Everything but the command histograms.
pub(super) fn snapshot(state: &ServerState) -> Registry {
    let mut b = Builder(Registry::default());
    let s = &state.stats;
    let c = &state.coordinator;
    let cs = c.stats();
    b.gauge(
        "dynamo_connected_clients",
        "Client connections open",
        state.clients.connected() as f64,
    );
    b.counter(
        "dynamo_connections_received",
        "Client connections accepted since start",
        ServerStats::get(&s.connections_received),
    );
    b.counter(
        "dynamo_commands_processed",
        "Client commands executed since start",
        ServerStats::get(&s.commands_processed),
    );
    b.gauge(
        "dynamo_uptime_seconds",
        "Seconds since the node started",
        state.started.elapsed().as_secs_f64(),
    );
    b.gauge(
        "dynamo_storage_size_bytes",
        "Bytes the storage engine uses on disk (or in memory)",
        c.engine().size_bytes() as f64,
    );
    b.gauge(
        "dynamo_stored_keys",
        "Keys with a live value in this node's store",
        c.stored_keys() as f64,
    );
    for (name, help, counter) in [
        ("dynamo_coordinator_reads", "Reads coordinated", &cs.reads),
        ("dynamo_coordinator_writes", "Writes stored", &cs.writes),
        (
            "dynamo_read_repairs",
            "Repairs sent to stale or missing replicas after a read",
            &cs.read_repairs,
        ),
        (
            "dynamo_quorum_failures",
            "Requests answered UNAVAILABLE",
            &cs.quorum_failures,
        ),
        (
            "dynamo_writes_forwarded",
            "Writes sent to an owner of the key to coordinate",
            &cs.writes_forwarded,
        ),
        (
            "dynamo_sibling_writes",
            "Writes after which the key held more than one live sibling",
            &cs.sibling_writes,
        ),
        (
            "dynamo_sibling_limit_rejections",
            "Writes refused by max-siblings",
            &cs.sibling_limit_rejections,
        ),
        (
            "dynamo_anti_entropy_rounds",
            "Merkle anti-entropy exchanges started",
            &cs.ae_rounds,
        ),
        (
            "dynamo_anti_entropy_partitions_synced",
            "Partitions whose Merkle roots differed and were descended into",
            &cs.ae_partitions_synced,
        ),
        (
            "dynamo_anti_entropy_keys_repaired",
            "Keys anti-entropy merged into either side",
            &cs.ae_keys_repaired,
        ),
        (
            "dynamo_anti_entropy_bytes",
            "Bytes of anti-entropy messages sent and received",
            &cs.ae_bytes,
        ),
        (
            "dynamo_tombstones_collected",
            "Keys whose tombstones were collected on every replica",
            &cs.tombstones_collected,
        ),
        (
            "dynamo_background_deferrals",
            "Background rounds skipped because foreground load was high",
            &cs.background_deferrals,
        ),
        (
            "dynamo_transfer_keys_received",
            "Keys fetched as a partition's new replica",
            &cs.transfer_keys_received,
        ),
        (
            "dynamo_transfer_bytes_received",
            "Bytes of the keys fetched as a new replica",
            &cs.transfer_bytes_received,
        ),
        (
            "dynamo_transfer_keys_sent",
            "Keys sent to new replicas",
            &cs.transfer_keys_sent,
        ),
        (
            "dynamo_transfer_bytes_sent",
            "Bytes of the keys sent to new replicas",
            &cs.transfer_bytes_sent,
        ),
        (
            "dynamo_handoff_keys_sent",
            "Keys of partitions no longer replicated here handed to their owners",
            &cs.handoff_keys_sent,
        ),
    ] {
        b.counter(name, help, get(counter));
    }
    b.counters(
        "dynamo_read_versions",
        "Reads that found the key, by the number of versions the answer held (the paper's 6.3 table)",
        ["1", "2", "3", "4+"]
            .into_iter()
            .zip(&cs.read_versions)
            .map(|(n, counter)| (vec![("versions", n.to_string())], get(counter))),
    );
    b.gauge(
        "dynamo_max_siblings_seen",
        "The most siblings any key has held",
        get(&cs.max_siblings_seen) as f64,
    );
    b.gauge(
        "dynamo_tombstones_pending",
        "Dead keys the last collection pass could not collect yet",
        get(&cs.tombstones_pending) as f64,
    );
    if let Some(node) = c.node() {
        node_metrics(&mut b, node);
    }
    b.0
}

fn node_metrics(b: &mut Builder, node: &cluster::runtime::Node) {
    let cluster = node.cluster_state();
    let hints = node.hints();
    let hs = hints.stats();
    b.gauge(
        "dynamo_members",
        "Members in this node's view",
        cluster.members().len() as f64,
    );
    b.gauge(
        "dynamo_ring_version",
        "Version of the ring reads use",
        cluster.ring().version() as f64,
    );
    b.gauges(
        "dynamo_ring_partitions",
        "Partitions each node owns in the ring reads use",
        cluster
            .ring()
            .partition_counts()
            .into_iter()
            .map(|(owner, n)| (vec![("node", hex(owner))], n as f64)),
    );
    b.gauges(
        "dynamo_hints_pending",
        "Hints held for each down replica",
        hints
            .pending()
            .into_iter()
            .map(|(owner, n)| (vec![("target", hex(owner))], n as f64)),
    );
    b.counter(
        "dynamo_hints_stored",
        "Hints stored for down replicas",
        get(&hs.stored),
    );
    b.counter(
        "dynamo_hints_delivered",
        "Hints delivered to their owners",
        get(&hs.delivered),
    );
    b.counter(
        "dynamo_hints_dropped",
        "Hints dropped at the max-hints limit",
        get(&hs.dropped),
    );
    b.gauge(
        "dynamo_transition_in_progress",
        "1 while a ring change is in progress",
        f64::from(u8::from(cluster.phase().is_some())),
    );
    b.gauge(
        "dynamo_transfers_pending",
        "Partition moves of the ring change not finished cluster-wide",
        cluster.pending_moves().count() as f64,
    );
    let transfers = node.transfer_local().transfers();
    b.gauge(
        "dynamo_transfers_active",
        "Partition transfers this node is fetching",
        transfers.len() as f64,
    );
    b.gauges(
        "dynamo_transfer_progress_percent",
        "Progress of each partition transfer this node is fetching",
        transfers.iter().map(|t| {
            (
                vec![
                    ("partition", t.partition.to_string()),
                    ("from", hex(t.from)),
                ],
                t.percent,
            )
        }),
    );
    b.gauge(
        "dynamo_foreground_in_flight",
        "Client requests in flight (the background budget watches it)",
        node.foreground_in_flight() as f64,
    );
    let (latency, baseline) = node.foreground_latency_us();
    b.gauge(
        "dynamo_foreground_latency_microseconds",
        "Recent mean client request latency",
        latency.unwrap_or(0.0),
    );
    b.gauge(
        "dynamo_foreground_latency_baseline_microseconds",
        "Baseline the background budget compares the recent latency with",
        baseline.unwrap_or(0.0),
    );
    b.gauge(
        "dynamo_replica_requests_per_second",
        "Replica requests served for other nodes per second",
        node.replica_rate(),
    );
    let now = cluster::runtime::now_ms();
    let peers = node.peer_reports();
    b.gauges(
        "dynamo_peer_up",
        "1 if this node's failure detector sees the peer up",
        peers.iter().map(|p| {
            (
                vec![("peer", hex(p.node))],
                f64::from(u8::from(p.down_since_ms.is_none())),
            )
        }),
    );
    b.gauges(
        "dynamo_peer_view_age_seconds",
        "Seconds since the peer last answered this node (gossip or any request)",
        peers.iter().filter_map(|p| {
            p.last_ok_ms.map(|at| {
                (
                    vec![("peer", hex(p.node))],
                    now.saturating_sub(at) as f64 / 1000.0,
                )
            })
        }),
    );
    b.gauges(
        "dynamo_peer_latency_microseconds",
        "Smoothed latency of the peer's answers",
        peers
            .iter()
            .map(|p| (vec![("peer", hex(p.node))], p.latency_us)),
    );
}
