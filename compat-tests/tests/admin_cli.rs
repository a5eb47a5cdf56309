//! `dynamo-server admin <addr> <command>`: the operator's command line,
//! run as a process against real nodes; the tests read its tables.

use std::collections::HashMap;
use std::process::Output;
use std::time::{Duration, Instant};

use compat_tests::{
    node_id, partition_counts, peer_addr, pick_address, q, ring_owners, run_to_exit, Cluster,
    Server,
};

/// Partitions in the test rings.
const Q: usize = 64;
const Q64: &[&str] = &["--q", "64"];
const QUORUM: (usize, usize, usize) = (3, 2, 2);
/// How long one admin run may take (`--wait` runs pass a smaller --timeout).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn admin(args: &[&str]) -> Run {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    let Output {
        status,
        stdout,
        stderr,
    } = run_to_exit(&all, RUN_TIMEOUT);
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `admin` expecting exit 0; returns stdout.
fn admin_ok(args: &[&str]) -> String {
    let run = admin(args);
    assert_eq!(
        run.code,
        Some(0),
        "admin {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// Runs `admin` expecting exit `code` and a one-line message on stderr;
/// returns that line.
fn admin_fails(args: &[&str], code: i32) -> String {
    let run = admin(args);
    assert_eq!(
        run.code,
        Some(code),
        "admin {args:?}\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let line = run.stderr.lines().next().unwrap_or_default().to_string();
    assert!(!line.is_empty(), "admin {args:?}: nothing on stderr");
    assert!(
        !run.stderr.contains("panicked"),
        "admin {args:?} panicked: {}",
        run.stderr
    );
    line
}

/// The rows of the last "Members (n):" table in `stdout`, by node id.
fn member_rows(stdout: &str) -> HashMap<String, String> {
    let table = stdout
        .rsplit_once("Members (")
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no member table in:\n{stdout}"));
    table
        .lines()
        .skip(2) // "n):" and the header
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let id = l.split_whitespace().next()?;
            Some((id.to_string(), l.to_string()))
        })
        .collect()
}

/// `PARTITIONS` (4th column) of the per-node table of `ring`, by node id.
fn ring_counts(stdout: &str) -> HashMap<String, usize> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("NODE"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            let count = cells[3]
                .parse()
                .unwrap_or_else(|_| panic!("partitions in {l:?}"));
            (cells[0].to_string(), count)
        })
        .collect()
}

#[test]
fn help_and_usage_errors() {
    let help = admin_ok(&["--help"]);
    assert!(help.contains("Usage: dynamo-server admin"), "{help}");
    for command in [
        "status", "ring", "join", "leave", "remove", "weight", "plan",
    ] {
        assert!(help.contains(command), "--help does not mention {command}");
    }
    let missing = admin_fails(&[], 2);
    assert!(missing.contains("missing"), "{missing}");
    let unknown = admin_fails(&["127.0.0.1:7001", "frobnicate"], 2);
    assert!(unknown.contains("unknown command"), "{unknown}");
    let not_addr = admin_fails(&["localhost", "status"], 2);
    assert!(not_addr.contains("host:port"), "{not_addr}");
    let bad_weight = admin_fails(&["127.0.0.1:7001", "weight", "ab", "heavy"], 2);
    assert!(bad_weight.contains("weight"), "{bad_weight}");

    // Nothing listens there: exit 1, one line naming the address.
    let nobody = pick_address().to_string();
    let run = admin(&[&nobody, "status"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&nobody) && run.stderr.contains("connection refused"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn a_password_is_asked_for_and_checked() {
    let server = Server::start(&["--requirepass", "s3cret"]);
    let addr = server.addr().to_string();
    let none = admin_fails(&[&addr, "status"], 1);
    assert!(
        none.contains("NOAUTH") && none.contains("--password"),
        "{none}"
    );
    let wrong = admin_fails(&["--password", "nope", &addr, "status"], 1);
    assert!(
        wrong.contains("authentication failed") && wrong.contains("WRONGPASS"),
        "{wrong}"
    );
    let status = admin_ok(&["--password", "s3cret", &addr, "status"]);
    let id = node_id_with_password(&server);
    let rows = member_rows(&status);
    assert_eq!(rows.len(), 1, "{status}");
    assert!(rows[&id].contains("up (this node)"), "{status}");
    // A single node has no cluster protocol: membership changes are refused.
    let refused = admin_fails(&["-a", "s3cret", &addr, "leave"], 1);
    assert!(
        refused.contains("without the cluster protocol"),
        "{refused}"
    );
}

fn node_id_with_password(server: &Server) -> String {
    let url = format!("redis://:s3cret@{}/", server.addr());
    let mut con = server.client_url(&url);
    let status: Vec<redis::Value> = q(&mut con, &["DYNAMO", "STATUS"]);
    status
        .chunks(2)
        .find_map(|pair| match pair {
            [redis::Value::BulkString(k), redis::Value::BulkString(v)] if k == b"node_id" => {
                Some(String::from_utf8_lossy(v).into_owned())
            }
            _ => None,
        })
        .expect("node_id in DYNAMO STATUS")
}

/// status, ring and plan read a 3-node cluster right; after a kill -9,
/// status shows the node down, and `remove --wait` (by id prefix) drops it.
#[test]
fn status_ring_and_plan_then_a_node_dies_and_is_removed() {
    let mut cluster = Cluster::start(3, QUORUM, Q64);
    let ids: Vec<String> = (0..3).map(|i| node_id(cluster.node(i))).collect();
    let addr0 = cluster.node(0).addr().to_string();
    let addr1 = cluster.node(1).addr().to_string();

    let status = admin_ok(&[&addr1, "status"]);
    assert!(status.contains("3 members (3 up)"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("transition ") && l.trim_end().ends_with(" none")),
        "{status}"
    );
    let rows = member_rows(&status);
    assert_eq!(rows.len(), 3, "{status}");
    for (i, id) in ids.iter().enumerate() {
        let row = rows
            .get(id)
            .unwrap_or_else(|| panic!("{id} missing:\n{status}"));
        assert!(row.contains(" up"), "{row}");
        assert!(row.contains(" active "), "{row}");
        assert!(
            row.contains(&cluster.node(i).addr().to_string()),
            "{row} lacks the client address"
        );
    }
    assert!(rows[&ids[1]].contains("up (this node)"), "{status}");

    let ring = admin_ok(&[&addr0, "ring"]);
    let counts = ring_counts(&ring);
    assert_eq!(counts.values().sum::<usize>(), Q, "{ring}");
    let expected = partition_counts(&ring_owners(cluster.node(0)));
    for id in &ids {
        assert_eq!(counts.get(id), expected.get(id), "{id} in\n{ring}");
    }
    let full = admin_ok(&[&addr0, "ring", "--full"]);
    let partitions = full
        .split("\nPartitions:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no partition list:\n{full}"));
    assert_eq!(
        partitions.lines().count(),
        Q + 1,
        "header + Q rows:\n{full}"
    );

    let plan = admin_ok(&[&addr0, "plan", "join"]);
    let moves: HashMap<String, Vec<String>> = plan
        .lines()
        .skip_while(|l| !l.starts_with("NODE"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            (cells[0].clone(), cells)
        })
        .collect();
    assert_eq!(moves.len(), 4, "three members and the new node:\n{plan}");
    // "new (new node) 0 16 +16 ...": before, after, change.
    let new = &moves["new"];
    assert_eq!(&new[3..6], ["0", "16", "+16"], "{plan}");
    for id in &ids {
        assert_eq!(moves[id][3], "16", "{id} after the join:\n{plan}");
    }
    assert!(plan.contains("partition replicas to fetch"), "{plan}");

    cluster.nodes[2].kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = admin_ok(&[&addr0, "status"]);
        let rows = member_rows(&status);
        if rows.get(&ids[2]).is_some_and(|r| r.contains("down")) {
            assert!(status.contains("3 members (2 up)"), "{status}");
            assert!(rows[&ids[1]].contains(" up "), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 not shown down:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let prefix = &ids[2][..6];
    let removed = admin_ok(&[&addr0, "remove", prefix, "--wait", "--timeout", "40"]);
    assert!(
        removed.contains(&format!("OK: {} removed", ids[2])),
        "{removed}"
    );
    assert!(removed.contains("ring change done"), "{removed}");
    let rows = member_rows(&removed);
    assert!(rows[&ids[2]].contains(" removed "), "{removed}");
    let after = ring_counts(&admin_ok(&[&addr0, "ring"]));
    assert_eq!(after.get(&ids[0]).copied().unwrap_or(0), 32);
    assert_eq!(after.get(&ids[1]).copied().unwrap_or(0), 32);

    // An id no member has is refused before anything is sent.
    let unknown = admin_fails(&[&addr0, "weight", "zz", "2"], 1);
    assert!(unknown.contains("no member"), "{unknown}");
}

/// A lone node joins a 3-node cluster with `join --wait`: the command
/// returns once the ring change is done, listing 4 members, each with its
/// share of the partitions.
#[test]
fn join_wait_adds_a_fourth_node() {
    let cluster = Cluster::start(3, QUORUM, Q64);
    let mut con = cluster.node(0).client();
    for i in 0..300 {
        let _: () = q(&mut con, &["SET", &format!("admin:{i}"), &i.to_string()]);
    }
    // Alike the cluster's nodes, but without seeds: a cluster of its own.
    let lone = Server::start(&[
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
    ]);
    let lone_id = node_id(&lone);
    let addr = lone.addr().to_string();
    let seed = peer_addr(cluster.node(0));
    let out = admin_ok(&[&addr, "join", &seed, "--wait", "--timeout", "60"]);
    assert!(
        out.contains(&format!("OK: joined the cluster through {seed}")),
        "{out}"
    );
    // Without a terminal, progress comes as plain lines.
    assert!(out.contains(" transfers "), "{out}");
    assert!(!out.contains('\r'), "{out:?}");
    assert!(out.contains("ring change done"), "{out}");
    let rows = member_rows(&out);
    assert_eq!(rows.len(), 4, "{out}");
    let mut ids: Vec<String> = (0..3).map(|i| node_id(cluster.node(i))).collect();
    ids.push(lone_id.clone());
    for id in &ids {
        let row = rows
            .get(id)
            .unwrap_or_else(|| panic!("{id} missing:\n{out}"));
        assert!(row.contains(" active "), "{row}");
        assert!(row.ends_with(" 16"), "16 partitions each: {row}");
    }
    assert!(rows[&lone_id].contains("up (this node)"), "{out}");
    // The cluster sees it too.
    let status = admin_ok(&[&cluster.node(1).addr().to_string(), "status"]);
    assert!(member_rows(&status).contains_key(&lone_id), "{status}");
    let value: String = q(&mut lone.client(), &["GET", "admin:7"]);
    assert_eq!(value, "7");
}
