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
        let cluster = Cluster { nodes };
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

    /// Waits until every running node knows `members` members and all of
    /// them report the same ring version and state digest.
    pub fn wait_converged(&self, members: usize) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let statuses: Vec<Status> = self.nodes.iter().map(status_of).collect();
            let agreed = statuses.iter().all(|s| {
                s.get("members").map(String::as_str) == Some(members.to_string().as_str())
                    && s.get("ring_digest") == statuses[0].get("ring_digest")
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
