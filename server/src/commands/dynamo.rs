//! The Dynamo interface: DGET / DPUT / DDEL and `DYNAMO` administration.

use std::sync::Arc;

use bytes::Bytes;
use cluster::{
    coordinator::{ClusterError, Write},
    membership::MemberStatus,
    runtime::Node,
    version::{Context, NodeId, Siblings},
};
use cluster::{
    membership::ClusterState,
    runtime::changes::{Change, PlanRow, NEW_NODE},
};
use resp::{
    command::{DynamoCmd, PlanCmd},
    Reply,
};

use super::check_sizes;
use crate::state::ServerState;

type CommandResult = Result<Reply, ClusterError>;

/// DGET's reply shape: `[context, [value ...]]`, live siblings only.
fn siblings_reply(siblings: &Siblings, now: u64) -> Reply {
    let values = siblings
        .live(now)
        .filter_map(|v| v.value().cloned())
        .map(Reply::Bulk)
        .collect();
    Reply::Array(vec![
        Reply::Bulk(Context::of(siblings).encode()),
        Reply::Array(values),
    ])
}

fn decode_context(raw: &[u8]) -> Result<Context, ClusterError> {
    Context::decode(raw).map_err(|_| ClusterError::InvalidContext)
}

/// `DGET key`
pub async fn dget(state: &ServerState, key: &[u8], now: u64) -> CommandResult {
    Ok(siblings_reply(&state.coordinator.get(key).await?, now))
}

/// `DPUT key context value`
pub async fn dput(
    state: &ServerState,
    key: Bytes,
    context: &[u8],
    value: Bytes,
    now: u64,
) -> CommandResult {
    let context = decode_context(context)?;
    if let Err(reply) = check_sizes(state, &key, Some(&value)) {
        return Ok(reply);
    }
    state
        .coordinator
        .put(&key, Write::value(context.into_inner(), value, None), now)
        .await?;
    Ok(Reply::Ok)
}

/// `DDEL key context`
pub async fn ddel(state: &ServerState, key: Bytes, context: &[u8], now: u64) -> CommandResult {
    let context = decode_context(context)?;
    if let Err(reply) = check_sizes(state, &key, None) {
        return Ok(reply);
    }
    state
        .coordinator
        .put(&key, Write::tombstone(context.into_inner()), now)
        .await?;
    Ok(Reply::Int(1))
}

/// `DYNAMO STATUS | RING | MEMBERS | LOCALGET key | JOIN | LEAVE | REMOVE`
pub async fn admin(state: &ServerState, cmd: DynamoCmd, now: u64) -> CommandResult {
    if let DynamoCmd::LocalGet(key) = &cmd {
        return Ok(siblings_reply(&state.coordinator.local_get(key)?, now));
    }
    match state.coordinator.node() {
        Some(node) => cluster_admin(state, node, cmd).await,
        None => Ok(single_admin(state, cmd)),
    }
}

fn text(s: &str) -> Reply {
    Reply::bulk(s.to_string())
}

fn hex(node: NodeId) -> String {
    format!("{node:016x}")
}

/// The administration answers of a node that runs without peers.
fn single_admin(state: &ServerState, cmd: DynamoCmd) -> Reply {
    let config = state.config();
    let node = hex(state.coordinator.node_id());
    let address = format!("{}:{}", config.bind, config.port);
    match cmd {
        DynamoCmd::Status => Reply::Map(vec![
            (text("node_id"), text(&node)),
            (text("mode"), text("single-node")),
            (text("address"), text(&address)),
            (text("n"), Reply::Int(config.n as i64)),
            (text("r"), Reply::Int(config.r as i64)),
            (text("w"), Reply::Int(config.w as i64)),
            (text("members"), Reply::Int(1)),
            (text("keys"), Reply::Int(state.coordinator.stored_keys() as i64)),
            (text("transfers"), Reply::Array(Vec::new())),
        ]),
        // One node owns the whole ring: a single range held by this node.
        DynamoCmd::Ring => Reply::Array(vec![Reply::Array(vec![
            Reply::Int(0),
            text("0"),
            text(&u64::MAX.to_string()),
            text(&node),
        ])]),
        DynamoCmd::Members => Reply::Array(vec![Reply::Array(vec![
            text(&node),
            text(&address),
            text(""),
            text("self"),
            text("active"),
            Reply::Int(1),
            Reply::Int(1),
        ])]),
        DynamoCmd::Owners(_) => Reply::Array(vec![text(&node)]),
        DynamoCmd::Join(_)
        | DynamoCmd::Leave
        | DynamoCmd::Remove(_)
        | DynamoCmd::Weight(..)
        | DynamoCmd::Plan(_) => Reply::err(
            "this node runs without the cluster protocol: start it with n > 1 or with seeds to form a cluster",
        ),
        DynamoCmd::LocalGet(_) => Reply::err("unreachable"),
    }
}

/// The administration answers of a cluster node: its own view.
async fn cluster_admin(state: &ServerState, node: &Arc<Node>, cmd: DynamoCmd) -> CommandResult {
    let cluster = node.cluster_state();
    let ring = cluster.ring();
    let me = node.id();
    let counts = ring.partition_counts();
    Ok(match cmd {
        DynamoCmd::Status => {
            let config = node.config();
            let stats = node.replica().stats();
            let stat = |c: &std::sync::atomic::AtomicU64| {
                Reply::Int(c.load(std::sync::atomic::Ordering::Relaxed) as i64)
            };
            let up = cluster
                .members()
                .values()
                .filter(|m| m.status != MemberStatus::Removed && node.down_since(m.id).is_none())
                .count();
            Reply::Map(vec![
                (text("node_id"), text(&hex(me))),
                (text("mode"), text("cluster")),
                (text("cluster_name"), text(cluster.cluster_name())),
                (text("address"), text(&config.client_addr)),
                (text("peer_address"), text(&config.peer_addr)),
                (text("n"), Reply::Int(config.n as i64)),
                (text("r"), Reply::Int(config.r as i64)),
                (text("w"), Reply::Int(config.w as i64)),
                (text("q"), Reply::Int(ring.q() as i64)),
                (text("ring_version"), Reply::Int(ring.version() as i64)),
                (
                    text("ring_digest"),
                    text(&format!("{:016x}", cluster.digest())),
                ),
                (text("members"), Reply::Int(cluster.members().len() as i64)),
                (text("members_up"), Reply::Int(up as i64)),
                (
                    text("partitions"),
                    Reply::Int(counts.get(&me).copied().unwrap_or(0) as i64),
                ),
                (text("fair_share"), Reply::Double(ring.fair_share(me))),
                (
                    text("keys"),
                    Reply::Int(state.coordinator.stored_keys() as i64),
                ),
                (
                    text("hints_pending"),
                    Reply::Int(node.hints().total() as i64),
                ),
                (
                    text("hints_delivered"),
                    stat(&node.hints().stats().delivered),
                ),
                (text("hints_dropped"), stat(&node.hints().stats().dropped)),
                (text("read_repairs"), stat(&stats.read_repairs)),
                (text("anti_entropy_rounds"), stat(&stats.ae_rounds)),
                (
                    text("anti_entropy_keys_repaired"),
                    stat(&stats.ae_keys_repaired),
                ),
                (text("anti_entropy_bytes"), stat(&stats.ae_bytes)),
                (text("tombstones_pending"), stat(&stats.tombstones_pending)),
                (
                    text("tombstones_collected"),
                    stat(&stats.tombstones_collected),
                ),
                (
                    text("background_max_foreground"),
                    Reply::Int(config.background_max_foreground as i64),
                ),
                (
                    text("background_deferrals"),
                    stat(&stats.background_deferrals),
                ),
                (text("membership"), text(membership_of(&cluster, me))),
                (
                    text("transition"),
                    text(cluster.phase().map_or("none", |p| p.name())),
                ),
                (
                    text("ring_target_version"),
                    Reply::Int(cluster.write_target().map_or(0, |t| t.version()) as i64),
                ),
                (
                    text("transfers_pending"),
                    Reply::Int(cluster.pending_moves().count() as i64),
                ),
                (
                    text("transition_waiting_for"),
                    text(&waiting_text(&cluster)),
                ),
                (
                    text("transfer_keys_received"),
                    stat(&stats.transfer_keys_received),
                ),
                (text("transfer_keys_sent"), stat(&stats.transfer_keys_sent)),
                (
                    text("handoff_keys_dropped"),
                    stat(&stats.handoff_keys_dropped),
                ),
                (text("balance"), Reply::Double(ring.balance())),
                (text("transfers"), transfers_reply(node)),
            ])
        }
        DynamoCmd::Owners(key) => {
            let read_ring = cluster.read_ring();
            let position = cluster::keyspace::ring_position(&key);
            Reply::Array(
                read_ring
                    .preference_list_n(position, node.config().n)
                    .into_iter()
                    .map(|id| text(&hex(id)))
                    .collect(),
            )
        }
        DynamoCmd::Leave => match node.apply(Change::Leave(me)) {
            Ok(()) => Reply::Ok,
            Err(error) => Reply::err(format!("cannot leave: {error}")),
        },
        DynamoCmd::Remove(id) => match parse_id(&id) {
            Some(id) => match node.apply(Change::Remove(id)) {
                Ok(()) => Reply::Ok,
                Err(error) => Reply::err(format!("cannot remove: {error}")),
            },
            None => Reply::err("node id must be 16 hex digits (see DYNAMO MEMBERS)"),
        },
        DynamoCmd::Weight(id, weight) => match parse_id(&id) {
            Some(id) => match node.apply(Change::Weight(id, weight)) {
                Ok(()) => Reply::Ok,
                Err(error) => Reply::err(format!("cannot change the weight: {error}")),
            },
            None => Reply::err("node id must be 16 hex digits (see DYNAMO MEMBERS)"),
        },
        DynamoCmd::Plan(plan) => {
            let change = match plan {
                PlanCmd::Join(weight) => Some(Change::Join(weight)),
                PlanCmd::Leave(None) => Some(Change::Leave(me)),
                PlanCmd::Leave(Some(id)) => parse_id(&id).map(Change::Leave),
                PlanCmd::Remove(id) => parse_id(&id).map(Change::Remove),
                PlanCmd::Weight(id, w) => parse_id(&id).map(|id| Change::Weight(id, w)),
            };
            let Some(change) = change else {
                return Ok(Reply::err(
                    "node id must be 16 hex digits (see DYNAMO MEMBERS)",
                ));
            };
            match node.preview(change) {
                Ok(rows) => plan_reply(&rows),
                Err(error) => Reply::err(format!("nothing to plan: {error}")),
            }
        }
        DynamoCmd::Ring => {
            let q = ring.q();
            Reply::Array(
                ring.owners()
                    .iter()
                    .enumerate()
                    .map(|(i, owner)| {
                        let start = ring.partition_start(i);
                        let end = if i + 1 == q {
                            u64::MAX
                        } else {
                            ring.partition_start(i + 1) - 1
                        };
                        Reply::Array(vec![
                            Reply::Int(i as i64),
                            text(&start.to_string()),
                            text(&end.to_string()),
                            text(&hex(*owner)),
                        ])
                    })
                    .collect(),
            )
        }
        DynamoCmd::Members => Reply::Array(
            cluster
                .members()
                .values()
                .map(|m| {
                    let health = if m.id == me {
                        "self".to_string()
                    } else {
                        match node.down_since(m.id) {
                            Some(since) => format!("down since {since}"),
                            None => "up".to_string(),
                        }
                    };
                    Reply::Array(vec![
                        text(&hex(m.id)),
                        text(&m.client_addr),
                        text(&m.peer_addr),
                        text(&health),
                        text(&format!("{:?}", m.status).to_lowercase()),
                        Reply::Int(i64::from(m.weight)),
                        Reply::Int(counts.get(&m.id).copied().unwrap_or(0) as i64),
                    ])
                })
                .collect(),
        ),
        DynamoCmd::Join(addr) => {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Ok(Reply::err(
                    "DYNAMO JOIN needs host:peer-port (an IP address and port)",
                ));
            }
            match node.join(&addr).await {
                Ok(_) => Reply::Ok,
                Err(error) => Reply::err(format!("cannot join through {addr}: {error}")),
            }
        }
        DynamoCmd::LocalGet(_) => Reply::err("unreachable"),
    })
}

/// A node id as DYNAMO MEMBERS prints it (up to 16 hex digits).
fn parse_id(text: &str) -> Option<NodeId> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// Who the ring change waits for, e.g. `0a..(aware)` or `0b..(12 partitions)`.
fn waiting_text(cluster: &ClusterState) -> String {
    let what = match cluster.phase() {
        Some(cluster::membership::Phase::Announced) => "to learn the target ring",
        Some(cluster::membership::Phase::Syncing) => "partitions to fetch",
        Some(cluster::membership::Phase::SwitchingReads) => "to move its reads",
        _ => return String::new(),
    };
    cluster
        .waiting_for()
        .into_iter()
        .map(|(node, count)| match count {
            0 => format!("{} ({what})", hex(node)),
            n => format!("{} ({n} {what})", hex(node)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// This node's standing: active, leaving, or left (removed).
fn membership_of(cluster: &ClusterState, me: NodeId) -> &'static str {
    match cluster.member(me).map(|m| m.status) {
        Some(MemberStatus::Active) | None => "active",
        Some(MemberStatus::Leaving) => "leaving",
        Some(MemberStatus::Removed) => "left",
    }
}

/// Each transfer this node is fetching, as a map per transfer.
fn transfers_reply(node: &Arc<Node>) -> Reply {
    let me = hex(node.id());
    Reply::Array(
        node.transfer_local()
            .transfers()
            .into_iter()
            .map(|t| {
                Reply::Map(vec![
                    (text("partition"), Reply::Int(i64::from(t.partition))),
                    (text("from"), text(&hex(t.from))),
                    (text("to"), text(&me)),
                    (text("keys"), Reply::Int(t.keys as i64)),
                    (text("bytes"), Reply::Int(t.bytes as i64)),
                    (
                        text("percent"),
                        Reply::Double((t.percent * 10.0).round() / 10.0),
                    ),
                    (text("keys_per_sec"), Reply::Int(t.rate as i64)),
                    (text("waiting"), text(t.waiting.as_deref().unwrap_or(""))),
                ])
            })
            .collect(),
    )
}

/// DYNAMO PLAN's answer: one row per node.
fn plan_reply(rows: &[PlanRow]) -> Reply {
    Reply::Array(
        rows.iter()
            .map(|r| {
                let id = if r.node == NEW_NODE {
                    "new".to_string()
                } else {
                    hex(r.node)
                };
                Reply::Map(vec![
                    (text("node"), text(&id)),
                    (
                        text("partitions_before"),
                        Reply::Int(r.partitions_before as i64),
                    ),
                    (
                        text("partitions_after"),
                        Reply::Int(r.partitions_after as i64),
                    ),
                    (text("replicas_in"), Reply::Int(r.replicas_in as i64)),
                    (text("replicas_out"), Reply::Int(r.replicas_out as i64)),
                    (
                        text("estimated_keys_in"),
                        Reply::Int(r.estimated_keys_in as i64),
                    ),
                    (
                        text("estimated_bytes_in"),
                        Reply::Int(r.estimated_bytes_in as i64),
                    ),
                ])
            })
            .collect(),
    )
}
