//! `GET /api/cluster`: this node's view of the cluster as one JSON document,
//! for the dashboard (and for scripts). Read-only: it gathers what INFO and
//! `DYNAMO STATUS | MEMBERS | RING` show, from the same sources.
//!
//! Node ids are 16 lowercase hex digits (as `DYNAMO MEMBERS` prints them):
//! JSON numbers cannot carry every u64 into JavaScript exactly.

use std::sync::atomic::{AtomicU64, Ordering};

use cluster::{
    membership::{ClusterState, MemberStatus},
    runtime::Node,
    version::NodeId,
};
use serde::Serialize;

use crate::{
    metrics::LatencySample,
    state::{now_ms, ServerState},
};

/// The whole document.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// Unix milliseconds when this view was taken.
    pub generated_at_ms: u64,
    /// The node answering.
    pub node: NodeInfo,
    /// N, R, W.
    pub quorum: Quorum,
    /// Every member this node knows of (removed ones included), by id.
    pub members: Vec<MemberView>,
    /// The current ring and, during a transition, its target.
    pub ring: RingView,
    /// The ring change in progress, if any.
    pub transition: Option<TransitionView>,
    /// Partitions this node is fetching as a new replica.
    pub transfers: Vec<TransferView>,
    /// Hints this node holds for other nodes.
    pub hints: HintsView,
    /// Merkle-tree anti-entropy counters (cumulative).
    pub anti_entropy: AntiEntropyView,
    /// Tombstone collection.
    pub tombstones: TombstonesView,
    /// Repairs sent after a read found a stale replica (cumulative).
    pub read_repairs: u64,
    /// Sibling counters.
    pub siblings: SiblingsView,
    /// Client connections.
    pub clients: ClientsView,
    /// Requests and the load of this node.
    pub requests: RequestsView,
    /// Client request latency per second, oldest first.
    pub latency: Vec<LatencySample>,
}

/// The node answering.
#[derive(Debug, Serialize)]
pub struct NodeInfo {
    /// Node id (16 hex digits).
    pub id: String,
    /// `single-node` or `cluster`.
    pub mode: &'static str,
    /// The cluster's name (empty for a single node).
    pub cluster_name: String,
    /// Address clients reach it on.
    pub client_addr: String,
    /// Address peers reach it on (empty for a single node).
    pub peer_addr: String,
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// The server's version.
    pub version: &'static str,
    /// Storage engine name.
    pub engine: String,
    /// Keys stored on this node.
    pub keys: u64,
}

/// The quorum settings.
#[derive(Debug, Serialize)]
pub struct Quorum {
    /// Replicas per key.
    pub n: usize,
    /// Read quorum.
    pub r: usize,
    /// Write quorum.
    pub w: usize,
}

/// One member as this node sees it.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Node id.
    pub id: String,
    /// Client address.
    pub client_addr: String,
    /// Peer address.
    pub peer_addr: String,
    /// Whether this is the node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// `up` or `down`, as this node's failure detector sees it.
    pub status: &'static str,
    /// Unix milliseconds since when it is thought down.
    pub down_since_ms: Option<u64>,
    /// `active`, `joining`, `leaving` or `removed`.
    pub membership: &'static str,
    /// Relative capacity.
    pub weight: u32,
    /// Partitions it owns in the current ring.
    pub partitions: usize,
    /// Partitions it owns in the target ring (= `partitions` when settled).
    pub target_partitions: usize,
    /// Its fair share of the current ring's partitions.
    pub fair_share: f64,
    /// Hints this node holds for it.
    pub hints_pending: u64,
}

/// The ring.
#[derive(Debug, Serialize)]
pub struct RingView {
    /// Number of partitions.
    pub q: usize,
    /// Ring version.
    pub version: u64,
    /// Digest of the gossiped state (equal on nodes that agree).
    pub digest: String,
    /// Largest ratio of a member's partitions to its fair share.
    pub balance: f64,
    /// Owner of each partition, by partition index (empty for an empty ring).
    pub owners: Vec<String>,
    /// The ring being moved to while a transition runs.
    pub target: Option<TargetRing>,
}

/// The target ring of a transition.
#[derive(Debug, Serialize)]
pub struct TargetRing {
    /// Its version.
    pub version: u64,
    /// Owner of each partition.
    pub owners: Vec<String>,
}

/// A transition in progress.
#[derive(Debug, Serialize)]
pub struct TransitionView {
    /// `announced`, `syncing`, `switching-reads` or `done`.
    pub phase: &'static str,
    /// Who the phase waits for (count: partitions left to fetch, when syncing).
    pub waiting_for: Vec<Waiting>,
    /// Partition moves not yet synced (cluster-wide).
    pub pending_moves: usize,
    /// Partition moves of the whole transition.
    pub moves: usize,
}

/// A member a transition waits for.
#[derive(Debug, Serialize)]
pub struct Waiting {
    /// Node id.
    pub node: String,
    /// Partitions it still fetches (0 outside the syncing phase).
    pub count: usize,
}

/// One partition transfer into this node.
#[derive(Debug, Serialize)]
pub struct TransferView {
    /// Partition index.
    pub partition: u32,
    /// The replica streaming it (empty before one is chosen).
    pub from: String,
    /// Keys received.
    pub keys: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Share of the partition's key range covered.
    pub percent: f64,
    /// Keys per second.
    pub rate: f64,
    /// Why it is not progressing, if it is not.
    pub waiting: Option<String>,
}

/// Hinted handoff.
#[derive(Debug, Serialize)]
pub struct HintsView {
    /// Hints held per target node.
    pub pending: Vec<HintTarget>,
    /// Hints held in all.
    pub total: u64,
    /// Hints written (cumulative).
    pub stored: u64,
    /// Hints delivered (cumulative).
    pub delivered: u64,
    /// Hints refused because the store was full (cumulative).
    pub dropped: u64,
}

/// Hints held for one node.
#[derive(Debug, Serialize)]
pub struct HintTarget {
    /// The node they are for.
    pub node: String,
    /// How many.
    pub count: u64,
}

/// Anti-entropy counters.
#[derive(Debug, Serialize)]
pub struct AntiEntropyView {
    /// Exchanges started by this node.
    pub rounds: u64,
    /// Partitions whose trees differed.
    pub partitions_synced: u64,
    /// Keys merged into either side.
    pub keys_repaired: u64,
    /// Bytes sent and received.
    pub bytes: u64,
}

/// Tombstone collection.
#[derive(Debug, Serialize)]
pub struct TombstonesView {
    /// Keys with only tombstones the last pass could not collect yet.
    pub pending: u64,
    /// Keys whose tombstones were collected everywhere (cumulative).
    pub collected: u64,
}

/// Sibling counters.
#[derive(Debug, Serialize)]
pub struct SiblingsView {
    /// Writes that left a key with more than one live sibling.
    pub sibling_writes: u64,
    /// The most siblings any key has held.
    pub max_seen: u64,
    /// Writes refused for exceeding `max-siblings`.
    pub limit_rejections: u64,
    /// The `max-siblings` setting.
    pub max_siblings: usize,
}

/// Client connections.
#[derive(Debug, Serialize)]
pub struct ClientsView {
    /// Connected now.
    pub connected: usize,
    /// The `maxclients` setting.
    pub max: usize,
}

/// Requests and load.
#[derive(Debug, Serialize)]
pub struct RequestsView {
    /// Reads served by this node's replica (cumulative).
    pub reads: u64,
    /// Writes stored by this node's replica (cumulative).
    pub writes: u64,
    /// Requests answered UNAVAILABLE (cumulative).
    pub quorum_failures: u64,
    /// Mean client request latency over the last half second, µs.
    pub foreground_latency_us: Option<f64>,
    /// Its baseline, µs.
    pub foreground_latency_baseline_us: Option<f64>,
    /// Client requests in flight.
    pub foreground_in_flight: usize,
    /// Replica requests per second this node serves for peers.
    pub replica_requests_per_sec: f64,
}

fn hex(id: NodeId) -> String {
    format!("{id:016x}")
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Builds this node's view.
pub fn build(state: &ServerState) -> ClusterView {
    let config = state.config();
    let coordinator = &state.coordinator;
    let stats = coordinator.stats();
    let me = coordinator.node_id();
    let node = coordinator.node();
    let mut view = ClusterView {
        generated_at_ms: now_ms(),
        node: NodeInfo {
            id: hex(me),
            mode: if node.is_some() {
                "cluster"
            } else {
                "single-node"
            },
            cluster_name: String::new(),
            client_addr: format!("{}:{}", config.bind, config.port),
            peer_addr: String::new(),
            uptime_s: state.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION"),
            engine: coordinator.engine().name().to_string(),
            keys: coordinator.stored_keys(),
        },
        quorum: Quorum {
            n: config.n,
            r: config.r,
            w: config.w,
        },
        members: Vec::new(),
        ring: RingView {
            q: 1,
            version: 0,
            digest: String::new(),
            balance: 1.0,
            owners: vec![hex(me)],
            target: None,
        },
        transition: None,
        transfers: Vec::new(),
        hints: HintsView {
            pending: Vec::new(),
            total: 0,
            stored: 0,
            delivered: 0,
            dropped: 0,
        },
        anti_entropy: AntiEntropyView {
            rounds: get(&stats.ae_rounds),
            partitions_synced: get(&stats.ae_partitions_synced),
            keys_repaired: get(&stats.ae_keys_repaired),
            bytes: get(&stats.ae_bytes),
        },
        tombstones: TombstonesView {
            pending: get(&stats.tombstones_pending),
            collected: get(&stats.tombstones_collected),
        },
        read_repairs: get(&stats.read_repairs),
        siblings: SiblingsView {
            sibling_writes: get(&stats.sibling_writes),
            max_seen: get(&stats.max_siblings_seen),
            limit_rejections: get(&stats.sibling_limit_rejections),
            max_siblings: coordinator.config().max_siblings,
        },
        clients: ClientsView {
            connected: state.clients.connected(),
            max: config.maxclients,
        },
        requests: RequestsView {
            reads: get(&stats.reads),
            writes: get(&stats.writes),
            quorum_failures: get(&stats.quorum_failures),
            foreground_latency_us: None,
            foreground_latency_baseline_us: None,
            foreground_in_flight: 0,
            replica_requests_per_sec: 0.0,
        },
        latency: state.metrics.history(),
    };
    match node {
        Some(node) => add_cluster(&mut view, node),
        None => {
            view.members.push(MemberView {
                id: hex(me),
                client_addr: view.node.client_addr.clone(),
                peer_addr: String::new(),
                is_self: true,
                status: "up",
                down_since_ms: None,
                membership: "active",
                weight: 1,
                partitions: 1,
                target_partitions: 1,
                fair_share: 1.0,
                hints_pending: 0,
            });
        }
    }
    view
}

/// The parts only a cluster node has.
fn add_cluster(view: &mut ClusterView, node: &Node) {
    let cluster = node.cluster_state();
    let me = node.id();
    let config = node.config();
    let ring = cluster.ring();
    let target = cluster.write_target();
    let counts = ring.partition_counts();
    let target_counts = target.map(|t| t.partition_counts());
    let hints = node.hints();
    let pending = hints.pending();

    view.node.cluster_name = cluster.cluster_name().to_string();
    view.node.client_addr = config.client_addr.clone();
    view.node.peer_addr = config.peer_addr.clone();
    view.members = cluster
        .members()
        .values()
        .map(|m| {
            let is_self = m.id == me;
            let down_since_ms = if is_self { None } else { node.down_since(m.id) };
            let partitions = counts.get(&m.id).copied().unwrap_or(0);
            MemberView {
                id: hex(m.id),
                client_addr: m.client_addr.clone(),
                peer_addr: m.peer_addr.clone(),
                is_self,
                status: if down_since_ms.is_some() {
                    "down"
                } else {
                    "up"
                },
                down_since_ms,
                membership: membership_of(&cluster, m.id, m.status, m.weight),
                weight: m.weight,
                partitions,
                target_partitions: target_counts
                    .as_ref()
                    .map_or(partitions, |c| c.get(&m.id).copied().unwrap_or(0)),
                fair_share: ring.fair_share(m.id),
                hints_pending: pending.get(&m.id).copied().unwrap_or(0),
            }
        })
        .collect();
    view.ring = RingView {
        q: ring.q(),
        version: ring.version(),
        digest: format!("{:016x}", cluster.digest()),
        balance: ring.balance(),
        owners: ring.owners().iter().copied().map(hex).collect(),
        target: target.map(|t| TargetRing {
            version: t.version(),
            owners: t.owners().iter().copied().map(hex).collect(),
        }),
    };
    view.transition = cluster.phase().map(|phase| TransitionView {
        phase: phase.name(),
        waiting_for: cluster
            .waiting_for()
            .into_iter()
            .map(|(node, count)| Waiting {
                node: hex(node),
                count,
            })
            .collect(),
        pending_moves: cluster.pending_moves().count(),
        moves: cluster.moves().len(),
    });
    view.transfers = node
        .transfer_local()
        .transfers()
        .into_iter()
        .map(|t| TransferView {
            partition: t.partition,
            from: if t.from == 0 {
                String::new()
            } else {
                hex(t.from)
            },
            keys: t.keys,
            bytes: t.bytes,
            percent: (t.percent * 10.0).round() / 10.0,
            rate: t.rate.round(),
            waiting: t.waiting,
        })
        .collect();
    let hint_stats = hints.stats();
    view.hints = HintsView {
        pending: pending
            .iter()
            .map(|(&node, &count)| HintTarget {
                node: hex(node),
                count,
            })
            .collect(),
        total: hints.total(),
        stored: get(&hint_stats.stored),
        delivered: get(&hint_stats.delivered),
        dropped: get(&hint_stats.dropped),
    };
    let (latency, baseline) = node.foreground_latency_us();
    view.requests.foreground_latency_us = latency.map(|v| v.round());
    view.requests.foreground_latency_baseline_us = baseline.map(|v| v.round());
    view.requests.foreground_in_flight = node.foreground_in_flight();
    view.requests.replica_requests_per_sec = node.replica_rate().round();
}

/// A member's standing: `joining` is an active member with a weight that
/// the current ring does not include yet (a node waiting to hear from the
/// cluster it joins has an empty ring).
fn membership_of(
    cluster: &ClusterState,
    id: NodeId,
    status: MemberStatus,
    weight: u32,
) -> &'static str {
    match status {
        MemberStatus::Active if weight > 0 && !cluster.ring().contains(id) => "joining",
        MemberStatus::Active => "active",
        MemberStatus::Leaving => "leaving",
        MemberStatus::Removed => "removed",
    }
}

/// The view as JSON text.
pub fn to_json(state: &ServerState) -> String {
    serde_json::to_string(&build(state)).unwrap_or_else(|e| {
        tracing::warn!("cannot encode the cluster view: {e}");
        "{}".to_string()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use cluster::{
        coordinator::{Coordinator, CoordinatorConfig},
        storage::MemoryEngine,
    };

    use super::*;
    use crate::config::Config;

    /// A single-node server's state on the memory engine.
    pub(crate) fn single_node() -> ServerState {
        let coordinator = Coordinator::open(
            Arc::new(MemoryEngine::new()),
            CoordinatorConfig {
                max_siblings: 64,
                replicas: 1,
            },
        )
        .expect("a coordinator on the memory engine");
        ServerState::new(coordinator, Config::default())
    }

    #[test]
    fn a_single_node_is_its_only_member_and_owns_the_ring() {
        let state = single_node();
        let json: serde_json::Value =
            serde_json::from_str(&to_json(&state)).expect("the view is JSON");
        let id = format!("{:016x}", state.coordinator.node_id());
        assert_eq!(json["node"]["id"], id.as_str());
        assert_eq!(json["node"]["mode"], "single-node");
        let members = json["members"].as_array().expect("members");
        assert_eq!(members.len(), 1);
        assert_eq!(members[0]["id"], id.as_str());
        assert_eq!(members[0]["status"], "up");
        assert_eq!(members[0]["self"], true);
        assert_eq!(json["ring"]["owners"], serde_json::json!([id]));
        assert!(json["ring"]["target"].is_null());
        assert!(json["transition"].is_null());
        assert!(json["latency"].is_array());
        assert_eq!(json["hints"]["total"], 0);
    }
}
