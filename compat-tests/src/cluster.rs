//! A local cluster of `dynamo-server` processes on loopback addresses.
//!
//! The first node is the seed: every node is started with `--seeds` naming
//! its peer address (client port + 10000), as a user would with the configs
//! in `conf/`. [`Cluster::wait_converged`] polls `DYNAMO STATUS` on every
//! node until they all know every member and agree on the ring.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::Server;

/// How long a fresh cluster may take to agree on one ring.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Several nodes of one cluster.
pub struct Cluster {
    /// The nodes, seed first.
    pub nodes: Vec<Server>,
    /// The arguments every node was started with (quorum, gossip, timeout,
    /// `extra`), without `--seeds`: [`Cluster::add_node`] starts more alike.
    base_args: Vec<String>,
}

/// `DYNAMO STATUS` of one node as name -> text.
pub type Status = HashMap<String, String>;

impl Cluster {
    /// Starts `count` nodes with `--n n --r r --w w`, fast gossip and a short
    /// request timeout, plus `extra` arguments; waits for them to converge.
    pub fn start(count: usize, (n, r, w): (usize, usize, usize), extra: &[&str]) -> Cluster {
        let quorum = [n.to_string(), r.to_string(), w.to_string()];
        let mut base: Vec<String> = vec![
            "--n".into(),
            quorum[0].clone(),
            "--r".into(),
            quorum[1].clone(),
            "--w".into(),
            quorum[2].clone(),
            "--gossip-interval-ms".into(),
            "200".into(),
            "--request-timeout-ms".into(),
            "2000".into(),
        ];
        base.extend(extra.iter().map(|s| s.to_string()));
        let mut nodes = Vec::with_capacity(count);
        let mut seed = String::new();
        for i in 0..count {
            let mut args = base.clone();
            if i > 0 {
                args.extend(["--seeds".to_string(), seed.clone()]);
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let node = Server::start(&refs);
            if i == 0 {
                seed = peer_addr(&node);
            }
            nodes.push(node);
        }
        let cluster = Cluster {
            nodes,
            base_args: base,
        };
        cluster.wait_converged(count);
        cluster
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Server {
        &self.nodes[i]
    }

    /// `DYNAMO STATUS` of node `i`.
    pub fn status(&self, i: usize) -> Status {
        status_of(&self.nodes[i])
    }

    /// Waits until every running node knows `members` members, all of them
    /// report the same state digest, and no ring change is in progress.
    pub fn wait_converged(&self, members: usize) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let statuses: Vec<Status> = self.nodes.iter().map(status_of).collect();
            // Agreed on the members and the ring, and no ring change still
            // moving data.
            let agreed = statuses.iter().all(|s| {
                s.get("members").map(String::as_str) == Some(members.to_string().as_str())
                    && s.get("ring_digest") == statuses[0].get("ring_digest")
                    && s.get("transition").map(String::as_str) == Some("none")
            });
            if agreed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster did not converge within {CONVERGE_TIMEOUT:?}: {statuses:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The peer address of a node started with the default peer port.
pub fn peer_addr(node: &Server) -> String {
    format!("{}:{}", node.host(), node.port() + 10_000)
}

/// `DYNAMO STATUS` of `node` as name -> text (RESP2 map: flat pairs).
pub fn status_of(node: &Server) -> Status {
    let mut con = node.client();
    let value: redis::Value = redis::cmd("DYNAMO")
        .arg("STATUS")
        .query(&mut con)
        .expect("DYNAMO STATUS");
    let items = match value {
        redis::Value::Array(items) => items,
        redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        other => panic!("DYNAMO STATUS answered {other:?}"),
    };
    items
        .chunks(2)
        .filter_map(|pair| match pair {
            [k, v] => Some((text(k), text(v))),
            _ => None,
        })
        .collect()
}

fn text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        redis::Value::Double(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Waits until `check` holds, polling every 50 ms; panics naming `what`
/// after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A numeric field of `node`'s `INFO dynamo`; panics if it is missing.
pub fn info_field(node: &Server, name: &str) -> u64 {
    let mut con = node.client();
    let info: String = redis::cmd("INFO")
        .arg("dynamo")
        .query(&mut con)
        .expect("INFO dynamo");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO dynamo:\n{info}"))
}

/// Whether `node`'s own store holds a live value for `key`
/// (`DYNAMO LOCALGET`).
pub fn holds(node: &Server, key: &str) -> bool {
    let mut con = node.client();
    let (_, values): (Vec<u8>, Vec<Vec<u8>>) = redis::cmd("DYNAMO")
        .arg("LOCALGET")
        .arg(key)
        .query(&mut con)
        .expect("DYNAMO LOCALGET");
    !values.is_empty()
}

/// The `DYNAMO STATUS` fields [`Cluster::wait_settled`] looks at (and prints
/// when it gives up).
const SETTLE_FIELDS: [&str; 7] = [
    "node_id",
    "membership",
    "transition",
    "transfers_pending",
    "ring_digest",
    "members",
    "balance",
];

impl Cluster {
    /// Starts one more node with the arguments the cluster was started with
    /// plus `extra`, seeded with node 0's peer address so that it joins by
    /// itself; returns its index. Does not wait for the join: see
    /// [`Cluster::wait_settled`].
    pub fn add_node(&mut self, extra: &[&str]) -> usize {
        let mut args = self.base_args.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--seeds".to_string(), peer_addr(&self.nodes[0])]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nodes.push(Server::start(&refs));
        self.nodes.len() - 1
    }

    /// The client URLs of the nodes at `indices`, e.g. for a workload.
    pub fn urls(&self, indices: &[usize]) -> Vec<String> {
        indices.iter().map(|&i| self.nodes[i].url()).collect()
    }

    /// Waits until every node in `live` (running nodes the test still counts
    /// as part of the cluster) reports a settled ring: `transition` "none",
    /// `transfers_pending` 0, `members` == `members` (removed entries
    /// included) and one `ring_digest`. Returns how long that took; panics
    /// with the nodes' relevant fields after `timeout`. A node that does not
    /// answer (e.g. still restarting) counts as not settled.
    pub fn wait_settled(&self, live: &[usize], members: usize, timeout: Duration) -> Duration {
        let started = Instant::now();
        let members = members.to_string();
        loop {
            let statuses: Vec<Option<Status>> = live
                .iter()
                .map(|&i| try_status_of(&self.nodes[i]))
                .collect();
            let first_digest = statuses
                .first()
                .and_then(|s| s.as_ref())
                .and_then(|s| s.get("ring_digest"));
            let settled = statuses.iter().all(|s| {
                s.as_ref().is_some_and(|s| {
                    s.get("transition").map(String::as_str) == Some("none")
                        && s.get("transfers_pending").map(String::as_str) == Some("0")
                        && s.get("members") == Some(&members)
                        && s.get("ring_digest") == first_digest
                })
            });
            if settled {
                return started.elapsed();
            }
            if started.elapsed() >= timeout {
                let shown: Vec<String> = live
                    .iter()
                    .zip(&statuses)
                    .map(|(i, s)| match s {
                        None => format!("node {i}: no answer"),
                        Some(s) => {
                            let fields: Vec<String> = SETTLE_FIELDS
                                .iter()
                                .map(|f| format!("{f}={}", s.get(*f).map_or("-", String::as_str)))
                                .collect();
                            format!("node {i}: {}", fields.join(" "))
                        }
                    })
                    .collect();
                panic!(
                    "nodes {live:?} did not settle on {members} members within {timeout:?}:\n{}",
                    shown.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Like [`status_of`], but `None` instead of a panic when the node does not
/// answer (killed, restarting) or answers with an error.
pub fn try_status_of(node: &Server) -> Option<Status> {
    let mut con = node.try_client_url(&node.url()).ok()?;
    query_status(&mut con)
}

/// `DYNAMO STATUS` over `con` as name -> text (RESP2 array or RESP3 map);
/// `None` on an error.
pub fn query_status(con: &mut redis::Connection) -> Option<Status> {
    let value: redis::Value = redis::cmd("DYNAMO").arg("STATUS").query(con).ok()?;
    let items = match value {
        redis::Value::Array(items) => items,
        redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return None,
    };
    Some(
        items
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => Some((text(k), text(v))),
                _ => None,
            })
            .collect(),
    )
}

/// `node_id` from `node`'s `DYNAMO STATUS` (16 lowercase hex digits).
pub fn node_id(node: &Server) -> String {
    status_of(node)
        .remove("node_id")
        .expect("DYNAMO STATUS has no node_id")
}

/// The owner of every partition, in partition order, from `node`'s
/// `DYNAMO RING` (rows of [partition, start, end, owner id]).
pub fn ring_owners(node: &Server) -> Vec<String> {
    let mut con = node.client();
    let mut rows: Vec<(i64, String, String, String)> = redis::cmd("DYNAMO")
        .arg("RING")
        .query(&mut con)
        .expect("DYNAMO RING");
    rows.sort_by_key(|row| row.0);
    for (expected, row) in rows.iter().enumerate() {
        assert_eq!(row.0, expected as i64, "DYNAMO RING partitions: {rows:?}");
    }
    rows.into_iter().map(|row| row.3).collect()
}

/// The ids of `key`'s N replicas in the ring `node` serves reads from
/// (`DYNAMO OWNERS`).
pub fn owners_of(node: &Server, key: &str) -> Vec<String> {
    let mut con = node.client();
    redis::cmd("DYNAMO")
        .arg("OWNERS")
        .arg(key)
        .query(&mut con)
        .unwrap_or_else(|e| panic!("DYNAMO OWNERS {key}: {e}"))
}

/// [`owners_of`] for many keys at once (pipelined), in the order of `keys`.
pub fn owners_of_many(node: &Server, keys: &[String]) -> Vec<Vec<String>> {
    let mut con = node.client();
    let mut owners = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("DYNAMO").arg("OWNERS").arg(key);
        }
        let batch: Vec<Vec<String>> = pipe
            .query(&mut con)
            .unwrap_or_else(|e| panic!("pipelined DYNAMO OWNERS: {e}"));
        owners.extend(batch);
    }
    owners
}

/// [`holds`] for many keys at once (pipelined `DYNAMO LOCALGET`), in the
/// order of `keys`.
pub fn holds_many(node: &Server, keys: &[String]) -> Vec<bool> {
    let mut con = node.client();
    let mut held = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("DYNAMO").arg("LOCALGET").arg(key);
        }
        let batch: Vec<(Vec<u8>, Vec<Vec<u8>>)> = pipe
            .query(&mut con)
            .unwrap_or_else(|e| panic!("pipelined DYNAMO LOCALGET: {e}"));
        held.extend(batch.into_iter().map(|(_, values)| !values.is_empty()));
    }
    held
}

/// Partitions per owner of a ring as [`ring_owners`] gives it.
pub fn partition_counts(ring: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for owner in ring {
        *counts.entry(owner.clone()).or_insert(0) += 1;
    }
    counts
}

/// Partitions whose owner differs between two rings of the same size.
pub fn moved(before: &[String], after: &[String]) -> usize {
    assert_eq!(before.len(), after.len(), "rings of different sizes");
    before.iter().zip(after).filter(|(b, a)| b != a).count()
}

/// The fewest partitions any change from `before` to `after` must move:
/// each node gaining partitions must receive at least that many.
pub fn minimum_moves(before: &[String], after: &[String]) -> usize {
    let before = partition_counts(before);
    partition_counts(after)
        .iter()
        .map(|(node, &count)| count.saturating_sub(before.get(node).copied().unwrap_or(0)))
        .sum()
}

/// How far the ring is from proportional to `weights` (node id -> weight):
/// the largest partitions / fair share over the nodes, where a node's fair
/// share is partitions * weight / total weight. 1.0 is perfect; a node of
/// weight 0 owning anything makes it infinite. Panics if a partition's owner
/// is not in `weights`.
pub fn ring_balance(ring: &[String], weights: &HashMap<String, u32>) -> f64 {
    let total: u32 = weights.values().sum();
    assert!(total > 0, "no weights given");
    let counts = partition_counts(ring);
    if let Some(stranger) = counts.keys().find(|n| !weights.contains_key(*n)) {
        panic!("{stranger} owns partitions but is not among the weighted nodes {weights:?}");
    }
    weights
        .iter()
        .map(|(node, &w)| {
            let count = counts.get(node).copied().unwrap_or(0);
            if count == 0 {
                0.0
            } else if w == 0 {
                f64::INFINITY
            } else {
                count as f64 / (ring.len() as f64 * f64::from(w) / f64::from(total))
            }
        })
        .fold(0.0, f64::max)
}
