//! Live membership change with partition transfer, on real processes: nodes
//! join, leave, are removed after a kill, change weight, and die in the
//! middle of a transfer, all while a set-union workload keeps writing.
//!
//! After every change the tests check that the ring moved no more partitions
//! than needed and is balanced, that no acknowledged write was lost or
//! missed by a read right after it, and that every key ends up in the own
//! stores of exactly its owners (stale copies cleaned up).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use compat_tests::{
    check_all_present, holds_many, info_field, minimum_moves, moved, node_id, owners_of_many,
    partition_counts, q, qerr, ring_balance, ring_owners, status_of, try_status_of, wait_for,
    Cluster, Server, SetUnion, SetUnionReport,
};

const QUORUM: (usize, usize, usize) = (3, 2, 2);
/// Replicas per key (the N of `QUORUM`).
const N: usize = 3;
/// Partitions: few enough that a few nodes show how evenly they are spread.
const Q: usize = 64;
const Q64: &[&str] = &["--q", "64"];
/// Slow enough to kill a node while a transfer of `PRELOAD_KEYS` keys runs.
const SLOW_TRANSFER: &[&str] = &[
    "--q",
    "64",
    "--transfer-max-keys-per-sec",
    "2000",
    "--fallback-acks-count",
    "false",
];
/// Tests that kill a node check read-after-write with strict quorums: when
/// fallbacks' acknowledgements count toward W (the default, the paper's
/// sloppy quorum), a write made while some nodes still believe a restarted
/// node is down can be acknowledged by a fallback, and a read through a node
/// that believes it up may ask the two replicas without it until the hint
/// is delivered. That is the documented price of sloppy quorums, not of a
/// ring change.
const Q64_STRICT: &[&str] = &["--q", "64", "--fallback-acks-count", "false"];
const PRELOAD_KEYS: usize = 10_000;
/// Transferred keys after which a node is killed in the middle of the transfer.
const KILL_AFTER_KEYS: u64 = 1_000;

/// A membership change, transfers included, is done within this.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Stale copies on nodes that no longer own a key are gone within this.
const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(120);
/// The workload gets `STEP_WRITES` more writes acknowledged within this.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Acknowledged writes to wait for between steps, so that every shape of
/// the cluster (and every transition) is written through.
const STEP_WRITES: u64 = 200;

/// Moved partitions may exceed the minimum by 10% (rounded up).
const MOVE_SLACK: f64 = 1.1;
/// No node may own more than 110% of its fair share.
const MAX_BALANCE: f64 = 1.1;

/// Starts `count` nodes and waits until their first ring is settled (the
/// nodes joining one by one may have started transitions).
fn start_settled(count: usize, extra: &[&str]) -> Cluster {
    let cluster = Cluster::start(count, QUORUM, extra);
    let all: Vec<usize> = (0..count).collect();
    let took = cluster.wait_settled(&all, count, SETTLE_TIMEOUT);
    eprintln!("{count} nodes started, ring settled {took:.1?} after convergence");
    cluster
}

/// Sends a `DYNAMO` administration command to `node`, expecting `+OK`.
fn dynamo_ok(node: &Server, args: &[&str]) {
    let mut parts = vec!["DYNAMO"];
    parts.extend_from_slice(args);
    let reply: String = q(&mut node.client(), &parts);
    assert_eq!(reply, "OK", "{parts:?}");
}

/// Node id -> weight for the nodes at the given indices.
fn weights_of(cluster: &Cluster, weights: &[(usize, u32)]) -> HashMap<String, u32> {
    weights
        .iter()
        .map(|&(i, w)| (node_id(cluster.node(i)), w))
        .collect()
}

/// Weight 1 (the default) for each of `live`.
fn equal_weights(cluster: &Cluster, live: &[usize]) -> HashMap<String, u32> {
    let weights: Vec<(usize, u32)> = live.iter().map(|&i| (i, 1)).collect();
    weights_of(cluster, &weights)
}

/// Node id -> "node i", to make messages readable.
fn node_names(cluster: &Cluster, live: &[usize]) -> HashMap<String, String> {
    live.iter()
        .map(|&i| (node_id(cluster.node(i)), format!("node {i}")))
        .collect()
}

/// `DYNAMO MEMBERS` of `node` as id -> (status, weight).
fn member_rows(node: &Server) -> HashMap<String, (String, i64)> {
    type Row = (String, String, String, String, String, i64, i64);
    let rows: Vec<Row> = q(&mut node.client(), &["DYNAMO", "MEMBERS"]);
    rows.into_iter()
        .map(|(id, _, _, _, status, weight, _)| (id, (status, weight)))
        .collect()
}

/// Checks a settled ring change from `before` to `after`: it changed
/// something, moved (almost) only what it had to, and spread the partitions
/// in proportion to `weights`, as `node`'s `balance` also says.
fn check_ring_change(
    what: &str,
    node: &Server,
    before: &[String],
    after: &[String],
    weights: &HashMap<String, u32>,
) {
    assert_eq!(
        after.len(),
        Q,
        "{what}: the ring has {} partitions",
        after.len()
    );
    let moved = moved(before, after);
    let minimum = minimum_moves(before, after);
    let balance = ring_balance(after, weights);
    eprintln!("{what}: {moved} partitions moved (minimum {minimum}), balance {balance:.3}");
    assert!(minimum > 0, "{what}: the ring did not change");
    let allowed = (minimum as f64 * MOVE_SLACK).ceil() as usize;
    assert!(
        moved <= allowed,
        "{what}: {moved} partitions moved, the minimum is {minimum}"
    );
    assert!(
        balance <= MAX_BALANCE,
        "{what}: balance {balance:.3}, partitions {:?}, weights {weights:?}",
        partition_counts(after)
    );
    let reported = try_status_of(node)
        .and_then(|s| s.get("balance").cloned())
        .unwrap_or_default();
    let reported: f64 = reported
        .parse()
        .unwrap_or_else(|_| panic!("{what}: STATUS balance {reported:?} is not a decimal"));
    assert!(
        (reported - balance).abs() < 0.01,
        "{what}: STATUS balance {reported}, computed from the ring {balance:.3}"
    );
}

/// Transfer counters of INFO dynamo, one line per node.
fn transfer_figures(cluster: &Cluster, live: &[usize]) -> String {
    live.iter()
        .map(|&i| {
            let n = cluster.node(i);
            format!(
                "node {i}: received {} keys / {} bytes, sent {} keys / {} bytes",
                info_field(n, "transfer_keys_received"),
                info_field(n, "transfer_bytes_received"),
                info_field(n, "transfer_keys_sent"),
                info_field(n, "transfer_bytes_sent"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `node` reports `membership` == `state`.
fn wait_membership(node: &Server, state: &str, timeout: Duration) {
    wait_for(&format!("membership {state}"), timeout, || {
        try_status_of(node).is_some_and(|s| s.get("membership").map(String::as_str) == Some(state))
    });
}

/// Prints the workload's figures and checks that no acknowledged element is
/// missing, neither right after its write nor now, through any live node.
fn assert_no_acknowledged_write_lost(cluster: &Cluster, live: &[usize], report: &SetUnionReport) {
    eprintln!("workload: {}", report.summary());
    for error in report.error_examples.iter().take(10) {
        eprintln!("  workload error (indeterminate): {error}");
    }
    assert!(
        report.acknowledged_count() > 0,
        "the workload got no write acknowledged"
    );
    assert_eq!(
        report.read_after_write_violations,
        0,
        "reads right after acknowledged writes missed them, e.g.:\n{}",
        report.violation_examples.join("\n")
    );
    for &i in live {
        let missing = check_all_present(report, cluster.node(i));
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged elements missing through node {i}, e.g. {:?}",
            missing.len(),
            report.acknowledged_count(),
            &missing[..missing.len().min(10)]
        );
    }
}

/// Keys not in the own stores of exactly their N owners among `live`
/// (`DYNAMO OWNERS` through the first of them), described.
fn misplaced_keys(cluster: &Cluster, live: &[usize], keys: &[String]) -> Vec<String> {
    let names = node_names(cluster, live);
    let name = |id: &String| {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("gone {id}"))
    };
    let owners = owners_of_many(cluster.node(live[0]), keys);
    let held: Vec<Vec<bool>> = live
        .iter()
        .map(|&i| holds_many(cluster.node(i), keys))
        .collect();
    let mut misplaced = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        let expected: BTreeSet<String> = owners[k].iter().map(name).collect();
        let actual: BTreeSet<String> = live
            .iter()
            .zip(&held)
            .filter(|(_, held)| held[k])
            .map(|(&i, _)| format!("node {i}"))
            .collect();
        if expected.len() != N || expected != actual {
            misplaced.push(format!("{key}: owners {expected:?}, held by {actual:?}"));
        }
    }
    misplaced
}

/// Waits until every key is stored by exactly its owners: transfers done and
/// stale copies on former owners removed.
fn wait_keys_on_exactly_their_owners(cluster: &Cluster, live: &[usize], keys: &[String]) {
    let started = Instant::now();
    loop {
        let misplaced = misplaced_keys(cluster, live, keys);
        if misplaced.is_empty() {
            eprintln!(
                "{} keys on exactly their owners {:.1?} after the check began",
                keys.len(),
                started.elapsed()
            );
            return;
        }
        assert!(
            started.elapsed() < PLACEMENT_TIMEOUT,
            "{} of {} keys not on exactly their owners after {PLACEMENT_TIMEOUT:?}, e.g.:\n{}",
            misplaced.len(),
            keys.len(),
            misplaced[..misplaced.len().min(10)].join("\n")
        );
        // Each check reads every key on every node: poll gently.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Writes `count` plain keys through `node` with pipelined SETs; returns
/// them with their values.
fn preload(node: &Server, count: usize) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = (0..count)
        .map(|i| (format!("pre:{i}"), format!("value-{i}")))
        .collect();
    let mut con = node.client();
    for chunk in pairs.chunks(1000) {
        let mut pipe = redis::pipe();
        for (key, value) in chunk {
            pipe.cmd("SET").arg(key).arg(value);
        }
        let replies: Vec<redis::Value> = pipe.query(&mut con).expect("pipelined SET");
        assert!(
            replies.iter().all(|r| *r == redis::Value::Okay),
            "a preloading SET failed: {:?}",
            replies.iter().find(|r| **r != redis::Value::Okay)
        );
    }
    pairs
}

/// Checks with pipelined GETs through `node` that every preloaded key still
/// has its value.
fn assert_preloaded_readable(node: &Server, preloaded: &[(String, String)]) {
    let mut con = node.client();
    let mut wrong = Vec::new();
    for chunk in preloaded.chunks(1000) {
        let mut pipe = redis::pipe();
        for (key, _) in chunk {
            pipe.cmd("GET").arg(key);
        }
        let values: Vec<Option<String>> = pipe.query(&mut con).expect("pipelined GET");
        for ((key, expected), got) in chunk.iter().zip(values) {
            if got.as_ref() != Some(expected) {
                wrong.push(format!("{key}: {got:?}, expected {expected}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} preloaded keys wrong through {}, e.g.:\n{}",
        wrong.len(),
        preloaded.len(),
        node.addr(),
        wrong[..wrong.len().min(10)].join("\n")
    );
}

#[test]
fn growing_3_to_5_keeps_every_write_and_moves_the_minimum() {
    let mut cluster = start_settled(3, Q64);
    let mut live = vec![0, 1, 2];
    let workload = SetUnion::start(cluster.urls(&live), 64, 3, 1);
    workload.wait_progress(STEP_WRITES, PROGRESS_TIMEOUT);
    for members in [4, 5] {
        let before = ring_owners(cluster.node(0));
        let new = cluster.add_node(&[]);
        live.push(new);
        // Clients use the new node at once, while it joins.
        workload.set_nodes(cluster.urls(&live));
        let took = cluster.wait_settled(&live, members, SETTLE_TIMEOUT);
        eprintln!("node {new} joined: ring settled on {members} members in {took:.1?}");
        eprintln!("{}", transfer_figures(&cluster, &live));
        let after = ring_owners(cluster.node(0));
        check_ring_change(
            &format!("join of node {new}"),
            cluster.node(0),
            &before,
            &after,
            &equal_weights(&cluster, &live),
        );
        let owned = partition_counts(&after)
            .get(&node_id(cluster.node(new)))
            .copied()
            .unwrap_or(0);
        assert!(
            (Q / members..=Q.div_ceil(members)).contains(&owned),
            "node {new} owns {owned} of {Q} partitions among {members} nodes"
        );
        workload.wait_progress(STEP_WRITES, PROGRESS_TIMEOUT);
    }
    let report = workload.stop();
    assert_no_acknowledged_write_lost(&cluster, &live, &report);
    wait_keys_on_exactly_their_owners(&cluster, &live, &report.keys());
}

#[test]
fn shrinking_5_to_3_with_leave() {
    let mut cluster = start_settled(5, Q64);
    let mut live: Vec<usize> = (0..5).collect();
    let workload = SetUnion::start(cluster.urls(&live), 64, 3, 2);
    workload.wait_progress(STEP_WRITES, PROGRESS_TIMEOUT);
    for leaving in [4, 3] {
        let id = node_id(cluster.node(leaving));
        let before = ring_owners(cluster.node(0));
        let started = Instant::now();
        dynamo_ok(cluster.node(leaving), &["LEAVE"]);
        // Clients keep using the leaving node until it has left.
        wait_membership(cluster.node(leaving), "left", SETTLE_TIMEOUT);
        eprintln!("node {leaving} left {:.1?} after LEAVE", started.elapsed());
        live.retain(|&i| i != leaving);
        workload.set_nodes(cluster.urls(&live));
        // It handed everything over before saying so, and drained its store.
        let kept: Vec<String> = workload
            .keys()
            .into_iter()
            .zip(holds_many(cluster.node(leaving), &workload.keys()))
            .filter_map(|(key, held)| held.then_some(key))
            .collect();
        assert!(
            kept.is_empty(),
            "node {leaving} left but still holds {kept:?}"
        );
        let exit = cluster.nodes[leaving].terminate();
        eprintln!("node {leaving} terminated: {exit}");
        // Members count removed entries too: still 5.
        let took = cluster.wait_settled(&live, 5, SETTLE_TIMEOUT);
        eprintln!("ring settled {took:.1?} after node {leaving} stopped");
        let after = ring_owners(cluster.node(0));
        check_ring_change(
            &format!("leave of node {leaving}"),
            cluster.node(0),
            &before,
            &after,
            &equal_weights(&cluster, &live),
        );
        assert_eq!(member_rows(cluster.node(0))[&id].0, "removed");
        workload.wait_progress(STEP_WRITES, PROGRESS_TIMEOUT);
    }
    eprintln!("{}", transfer_figures(&cluster, &live));
    let report = workload.stop();
    assert_no_acknowledged_write_lost(&cluster, &live, &report);
    wait_keys_on_exactly_their_owners(&cluster, &live, &report.keys());
}

#[test]
fn removing_a_killed_node_rebuilds_its_replicas() {
    let mut cluster = start_settled(4, Q64_STRICT);
    let workload = SetUnion::start(cluster.urls(&[0, 1, 2, 3]), 64, 3, 3);
    // Preload: every key written while all four nodes hold replicas.
    workload.wait_progress(4 * STEP_WRITES, PROGRESS_TIMEOUT);
    let dead = node_id(cluster.node(3));
    let before = ring_owners(cluster.node(0));
    let live = vec![0, 1, 2];
    workload.set_nodes(cluster.urls(&live));
    cluster.nodes[3].kill9();
    // Sloppy quorum: writes go on with the node dead and not yet removed.
    workload.wait_progress(STEP_WRITES, PROGRESS_TIMEOUT);
    dynamo_ok(cluster.node(0), &["REMOVE", &dead]);
    let took = cluster.wait_settled(&live, 4, SETTLE_TIMEOUT);
    eprintln!("node 3 removed: ring settled {took:.1?} after REMOVE");
    eprintln!("{}", transfer_figures(&cluster, &live));
    let after = ring_owners(cluster.node(0));
    assert!(
        !after.contains(&dead),
        "the removed node still owns partitions"
    );
    check_ring_change(
        "removal of node 3",
        cluster.node(0),
        &before,
        &after,
        &equal_weights(&cluster, &live),
    );
    assert_eq!(member_rows(cluster.node(0))[&dead].0, "removed");
    workload.wait_progress(STEP_WRITES, PROGRESS_TIMEOUT);
    let report = workload.stop();
    assert_no_acknowledged_write_lost(&cluster, &live, &report);
    // Three survivors, N = 3: every key ends up on all of them.
    wait_keys_on_exactly_their_owners(&cluster, &live, &report.keys());
}

#[test]
fn changing_a_weight_moves_partitions_in_proportion() {
    let cluster = start_settled(3, Q64);
    let live = vec![0, 1, 2];
    let workload = SetUnion::start(cluster.urls(&live), 64, 3, 4);
    workload.wait_progress(STEP_WRITES, PROGRESS_TIMEOUT);
    let heavy = node_id(cluster.node(2));
    let before = ring_owners(cluster.node(0));
    dynamo_ok(cluster.node(0), &["WEIGHT", &heavy, "2"]);
    let took = cluster.wait_settled(&live, 3, SETTLE_TIMEOUT);
    eprintln!("weight of node 2 set to 2: ring settled in {took:.1?}");
    eprintln!("{}", transfer_figures(&cluster, &live));
    let after = ring_owners(cluster.node(0));
    check_ring_change(
        "weight 2 for node 2",
        cluster.node(0),
        &before,
        &after,
        &weights_of(&cluster, &[(0, 1), (1, 1), (2, 2)]),
    );
    let owned = partition_counts(&after).get(&heavy).copied().unwrap_or(0);
    assert!(
        (Q / 2 - 1..=Q / 2 + 1).contains(&owned),
        "node 2 of weight 2 (of 4) owns {owned} of {Q} partitions"
    );
    assert_eq!(member_rows(cluster.node(1))[&heavy].1, 2);
    workload.wait_progress(STEP_WRITES, PROGRESS_TIMEOUT);
    let report = workload.stop();
    assert_no_acknowledged_write_lost(&cluster, &live, &report);
    wait_keys_on_exactly_their_owners(&cluster, &live, &report.keys());
}

/// Which side of a transfer is killed in the middle of it.
enum Victim {
    Receiver,
    Sender,
}

/// Joins a fourth node to three holding `PRELOAD_KEYS` keys, with transfers
/// slowed down; kills -9 and restarts a node once the new one has received
/// `KILL_AFTER_KEYS` keys; then checks that nothing was lost and every key
/// ends up on exactly its owners.
fn a_transfer_survives_kill9_of(victim: Victim) {
    let mut cluster = start_settled(3, SLOW_TRANSFER);
    let preloaded = preload(cluster.node(0), PRELOAD_KEYS);
    let workload = SetUnion::start(cluster.urls(&[0, 1, 2]), 16, 2, 5);
    workload.wait_progress(STEP_WRITES / 2, PROGRESS_TIMEOUT);

    // The new node gets the same rate limit from the cluster's arguments.
    let before = ring_owners(cluster.node(0));
    let new = cluster.add_node(&[]);
    let all: Vec<usize> = (0..=new).collect();
    workload.set_nodes(cluster.urls(&all));
    wait_for(
        &format!("node {new} to receive {KILL_AFTER_KEYS} keys"),
        SETTLE_TIMEOUT,
        || info_field(cluster.node(new), "transfer_keys_received") > KILL_AFTER_KEYS,
    );
    let received = info_field(cluster.node(new), "transfer_keys_received");
    assert!(
        received < PRELOAD_KEYS as u64,
        "node {new} already received {received} keys: the transfer was not slowed down"
    );

    // Which node sends is not visible from outside. Node 1 holds every key
    // (three nodes, N = 3), so it can send any partition, and it is not the
    // seed the new node and the harness rely on.
    let killed = match victim {
        Victim::Receiver => new,
        Victim::Sender => 1,
    };
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != killed).collect();
    workload.set_nodes(cluster.urls(&others));
    cluster.nodes[killed].kill9();
    eprintln!("killed node {killed} after node {new} had received {received} keys");
    // The cluster keeps taking writes in the middle of the transition.
    workload.wait_progress(STEP_WRITES / 4, PROGRESS_TIMEOUT);
    cluster.nodes[killed].restart();
    workload.set_nodes(cluster.urls(&all));
    let took = cluster.wait_settled(&all, 4, SETTLE_TIMEOUT);
    eprintln!("ring settled {took:.1?} after node {killed} restarted");
    eprintln!("{}", transfer_figures(&cluster, &all));
    check_ring_change(
        &format!("join of node {new} with node {killed} killed meanwhile"),
        cluster.node(0),
        &before,
        &ring_owners(cluster.node(0)),
        &equal_weights(&cluster, &all),
    );
    workload.wait_progress(STEP_WRITES / 2, PROGRESS_TIMEOUT);
    let report = workload.stop();

    assert_preloaded_readable(cluster.node(killed), &preloaded);
    assert_preloaded_readable(cluster.node(0), &preloaded);
    assert_no_acknowledged_write_lost(&cluster, &all, &report);
    let mut keys: Vec<String> = preloaded.into_iter().map(|(key, _)| key).collect();
    keys.extend(report.keys());
    wait_keys_on_exactly_their_owners(&cluster, &all, &keys);
}

#[test]
fn a_transfer_survives_kill9_of_the_receiver() {
    a_transfer_survives_kill9_of(Victim::Receiver);
}

#[test]
fn a_transfer_survives_kill9_of_the_sender() {
    a_transfer_survives_kill9_of(Victim::Sender);
}

/// `DYNAMO PLAN` rows (RESP2: flat name/value pairs) as name -> text maps.
fn plan_rows(node: &Server, args: &[&str]) -> Vec<HashMap<String, String>> {
    let mut parts = vec!["DYNAMO", "PLAN"];
    parts.extend_from_slice(args);
    let rows: Vec<Vec<redis::Value>> = q(&mut node.client(), &parts);
    rows.into_iter()
        .map(|row| {
            row.chunks(2)
                .map(|pair| {
                    let text = |v: &redis::Value| match v {
                        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                        redis::Value::Int(i) => i.to_string(),
                        other => format!("{other:?}"),
                    };
                    (text(&pair[0]), text(&pair[1]))
                })
                .collect()
        })
        .collect()
}

fn field(row: &HashMap<String, String>, name: &str) -> u64 {
    row[name]
        .parse()
        .unwrap_or_else(|_| panic!("{name} in {row:?}"))
}

/// PLAN previews a change without making it; bad changes are refused with
/// a clear error and change nothing either.
#[test]
fn plan_previews_changes_and_bad_changes_are_refused() {
    let cluster = start_settled(3, Q64);
    let node = cluster.node(0);
    let digest = status_of(node)["ring_digest"].clone();
    let ids: Vec<String> = (0..3).map(|i| node_id(cluster.node(i))).collect();

    let join = plan_rows(node, &["JOIN"]);
    assert_eq!(join.len(), 4, "three members and the new node: {join:?}");
    let new = join
        .iter()
        .find(|r| r["node"] == "new")
        .expect("a row for the new node");
    assert_eq!(field(new, "partitions_before"), 0);
    assert_eq!(field(new, "partitions_after"), 16);
    assert!(field(new, "replicas_in") >= 16, "{new:?}");
    let after: u64 = join.iter().map(|r| field(r, "partitions_after")).sum();
    assert_eq!(after, Q as u64);
    let leave = plan_rows(node, &["LEAVE", &ids[2]]);
    let leaving = leave.iter().find(|r| r["node"] == ids[2]).unwrap();
    assert_eq!(field(leaving, "partitions_after"), 0);
    // N = 3 of 3 nodes: every node already holds every key; nothing to fetch.
    assert!(
        leave.iter().all(|r| field(r, "replicas_in") == 0),
        "{leave:?}"
    );
    let heavier = plan_rows(node, &["WEIGHT", &ids[1], "2"]);
    let row = heavier.iter().find(|r| r["node"] == ids[1]).unwrap();
    assert_eq!(field(row, "partitions_after"), 32);

    let mut con = node.client();
    let unknown = qerr(&mut con, &["DYNAMO", "REMOVE", "00000000000000ff"]);
    assert!(
        unknown.starts_with("ERR cannot remove: no member"),
        "{unknown}"
    );
    let itself = qerr(&mut con, &["DYNAMO", "REMOVE", &ids[0]]);
    assert!(itself.contains("use DYNAMO LEAVE"), "{itself}");
    let bad_id = qerr(&mut con, &["DYNAMO", "WEIGHT", "not-hex", "2"]);
    assert!(bad_id.contains("16 hex digits"), "{bad_id}");
    let bad_weight = qerr(&mut con, &["DYNAMO", "WEIGHT", &ids[1], "-1"]);
    assert!(bad_weight.contains("weight must be"), "{bad_weight}");
    let same = qerr(&mut con, &["DYNAMO", "WEIGHT", &ids[1], "1"]);
    assert!(same.contains("nothing to change"), "{same}");
    let arity = qerr(&mut con, &["DYNAMO", "PLAN"]);
    assert!(arity.contains("wrong number of arguments"), "{arity}");
    assert_eq!(
        status_of(node)["ring_digest"],
        digest,
        "PLAN and refusals changed the ring"
    );
}

/// The last node with a weight cannot leave: nobody would own the data.
#[test]
fn the_last_owner_cannot_leave() {
    // n = 2 puts a lone node in cluster mode with a ring of its own.
    let cluster = Cluster::start(1, (2, 1, 1), &[]);
    let err = qerr(&mut cluster.node(0).client(), &["DYNAMO", "LEAVE"]);
    assert!(err.contains("no node with a weight left"), "{err}");
}

/// A cluster that starts as one node and grows: N = 3 with a 1-node ring
/// keeps each key on that node (R and W are capped at the ring's replicas),
/// and reads and writes keep working while the first ring change moves the
/// data to the nodes that join.
#[test]
fn a_cluster_growing_from_one_node_serves_reads_and_writes_throughout() {
    let base = [
        "--n",
        "3",
        "--r",
        "2",
        "--w",
        "2",
        "--q",
        "64",
        "--gossip-interval-ms",
        "200",
        "--request-timeout-ms",
        "2000",
    ];
    let first = Server::start(&base);
    let _: () = q(&mut first.client(), &["SET", "alone", "1"]);
    let value: String = q(&mut first.client(), &["GET", "alone"]);
    assert_eq!(value, "1");
    let seed = compat_tests::peer_addr(&first);
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["--seeds", &seed]);
    let mut nodes = vec![first];
    nodes.push(Server::start(&args));
    nodes.push(Server::start(&args));
    let settled = |nodes: &[Server]| {
        nodes.iter().all(|n| {
            try_status_of(n).is_some_and(|s| {
                s.get("members").map(String::as_str) == Some("3")
                    && s.get("transition").map(String::as_str) == Some("none")
            })
        })
    };
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut written = 0;
    let mut during_change = 0;
    while !settled(&nodes) || written < 50 {
        assert!(Instant::now() < deadline, "the cluster did not settle");
        let key = format!("grow:{written}");
        let writer = &nodes[written % 3];
        let reader = &nodes[(written + 1) % 3];
        let _: () = q(&mut writer.client(), &["SET", &key, &written.to_string()]);
        let value: String = q(&mut reader.client(), &["GET", &key]);
        assert_eq!(
            value,
            written.to_string(),
            "{key} read back through another node"
        );
        if try_status_of(writer).is_some_and(|s| s["transition"] != "none") {
            during_change += 1;
        }
        written += 1;
    }
    eprintln!("{written} keys written and read back, {during_change} during the ring change");
    for node in &nodes {
        let mut con = node.client();
        for i in 0..written {
            let value: String = q(&mut con, &["GET", &format!("grow:{i}")]);
            assert_eq!(value, i.to_string());
        }
        let value: String = q(&mut con, &["GET", "alone"]);
        assert_eq!(value, "1");
    }
}

/// A node that left can come back with `DYNAMO JOIN`: its newer entry beats
/// the removed one, and it gets its share of partitions again.
#[test]
fn a_node_that_left_can_join_again() {
    let cluster = start_settled(4, Q64);
    let all = [0, 1, 2, 3];
    let mut con = cluster.node(0).client();
    for i in 0..200 {
        let _: () = q(&mut con, &["SET", &format!("back:{i}"), &i.to_string()]);
    }
    dynamo_ok(cluster.node(3), &["LEAVE"]);
    wait_membership(cluster.node(3), "left", SETTLE_TIMEOUT);
    cluster.wait_settled(&all[..3], 4, SETTLE_TIMEOUT);
    let seed = compat_tests::peer_addr(cluster.node(0));
    dynamo_ok(cluster.node(3), &["JOIN", &seed]);
    wait_membership(cluster.node(3), "active", SETTLE_TIMEOUT);
    let took = cluster.wait_settled(&all, 4, SETTLE_TIMEOUT);
    eprintln!("node 3 rejoined: ring settled in {took:.1?}");
    let ring = ring_owners(cluster.node(0));
    let counts = partition_counts(&ring);
    assert_eq!(
        counts.get(&node_id(cluster.node(3))),
        Some(&16),
        "{counts:?}"
    );
    let mut back = cluster.node(3).client();
    for i in 0..200 {
        let value: String = q(&mut back, &["GET", &format!("back:{i}")]);
        assert_eq!(value, i.to_string());
    }
}
