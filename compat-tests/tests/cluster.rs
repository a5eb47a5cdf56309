//! Several real `dynamo-server` processes forming one cluster: any node
//! serves any key, quorums, siblings across coordinators, a killed node,
//! read repair checked on the repaired replica's own store.

use std::time::Duration;

use compat_tests::{q, qerr, status_of, wait_for, Cluster};
use redis::Value;

const QUORUM: (usize, usize, usize) = (3, 2, 2);

/// `DGET`/`DYNAMO LOCALGET` reply as (context, sorted values).
fn dget(con: &mut redis::Connection, parts: &[&str]) -> (Vec<u8>, Vec<String>) {
    let (context, mut values): (Vec<u8>, Vec<String>) = q(con, parts);
    values.sort();
    (context, values)
}

#[test]
fn three_nodes_form_one_ring_and_serve_every_key_from_every_node() {
    let cluster = Cluster::start(3, QUORUM, &[]);
    let status = cluster.status(1);
    assert_eq!(status["mode"], "cluster");
    assert_eq!(status["members"], "3");

    let mut a = cluster.node(0).client();
    let mut b = cluster.node(1).client_resp3();
    let mut c = cluster.node(2).client();
    for i in 0..200 {
        let key = format!("key:{i}");
        let _: () = q(&mut a, &["SET", &key, &format!("value-{i}")]);
    }
    for i in 0..200 {
        let key = format!("key:{i}");
        let expected = format!("value-{i}");
        let via_b: String = q(&mut b, &["GET", &key]);
        let via_c: String = q(&mut c, &["GET", &key]);
        assert_eq!(
            (via_b.as_str(), via_c.as_str()),
            (expected.as_str(), expected.as_str())
        );
    }
    // Multi-key commands run per key, through any node.
    let _: () = q(&mut c, &["MSET", "m1", "x", "m2", "y"]);
    let got: Vec<Option<String>> = q(&mut b, &["MGET", "m1", "m2", "missing"]);
    assert_eq!(got, vec![Some("x".into()), Some("y".into()), None]);
    let n: i64 = q(&mut b, &["INCR", "counter"]);
    assert_eq!(n, 1);
    let n: i64 = q(&mut a, &["INCRBY", "counter", "5"]);
    assert_eq!(n, 6);
    let deleted: i64 = q(&mut a, &["DEL", "m1", "m2", "missing"]);
    assert_eq!(deleted, 2);
    let exists: i64 = q(&mut c, &["EXISTS", "m1", "m2", "key:1"]);
    assert_eq!(exists, 1);

    // Whole-cluster views: every node sees all 201 keys.
    for con in [&mut a, &mut b, &mut c] {
        let size: i64 = q(con, &["DBSIZE"]);
        assert_eq!(size, 201);
        let mut keys: Vec<String> = q(con, &["KEYS", "key:1*"]);
        keys.sort();
        assert_eq!(keys.len(), 111, "key:1, key:10-19, key:100-199");
    }
    // SCAN over the cluster visits every key exactly once.
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    loop {
        let (next, batch): (String, Vec<String>) = q(&mut b, &["SCAN", &cursor, "COUNT", "37"]);
        for key in batch {
            assert!(seen.insert(key), "SCAN returned a key twice");
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 201);

    // Each key is stored on exactly N = 3 nodes: here, all of them.
    for node in &cluster.nodes {
        let mut con = node.client();
        let (_, values) = dget(&mut con, &["DYNAMO", "LOCALGET", "key:7"]);
        assert_eq!(values, vec!["value-7".to_string()]);
    }

    let _: () = q(&mut b, &["FLUSHALL"]);
    for node in &cluster.nodes {
        let size: i64 = q(&mut node.client(), &["DBSIZE"]);
        assert_eq!(size, 0);
    }
}

#[test]
fn dput_with_one_context_through_two_nodes_makes_siblings_and_the_merged_context_collapses_them() {
    let cluster = Cluster::start(3, QUORUM, &[]);
    let mut a = cluster.node(0).client();
    let mut b = cluster.node(1).client();
    let mut c = cluster.node(2).client_resp3();

    let _: () = q(&mut a, &["SET", "cart", "base"]);
    let (context, values) = dget(&mut c, &["DGET", "cart"]);
    assert_eq!(values, vec!["base".to_string()]);
    assert!(!context.is_empty(), "a written key has a context");
    let dput = |con: &mut redis::Connection, value: &str| {
        let ok: String = redis::cmd("DPUT")
            .arg("cart")
            .arg(&context)
            .arg(value)
            .query(con)
            .unwrap();
        assert_eq!(ok, "OK");
    };
    dput(&mut a, "with-apple");
    dput(&mut b, "with-pear");

    let (merged_context, values) = dget(&mut c, &["DGET", "cart"]);
    assert_eq!(
        values,
        vec!["with-apple".to_string(), "with-pear".to_string()]
    );
    // GET picks one winner, the same from every node.
    let winners: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| q(&mut n.client(), &["GET", "cart"]))
        .collect();
    assert!(winners.windows(2).all(|w| w[0] == w[1]), "{winners:?}");

    let ok: String = redis::cmd("DPUT")
        .arg("cart")
        .arg(&merged_context)
        .arg("apple+pear")
        .query(&mut b)
        .unwrap();
    assert_eq!(ok, "OK");
    let (_, values) = dget(&mut a, &["DGET", "cart"]);
    assert_eq!(values, vec!["apple+pear".to_string()]);
}

#[test]
fn a_write_survives_the_kill_of_the_node_it_went_through() {
    let mut cluster = Cluster::start(3, QUORUM, &[]);
    {
        let mut a = cluster.node(0).client();
        for i in 0..100 {
            let _: () = q(&mut a, &["SET", &format!("durable:{i}"), &i.to_string()]);
        }
    }
    cluster.nodes[0].kill9();
    let mut c = cluster.node(2).client();
    for i in 0..100 {
        let value: Option<String> = q(&mut c, &["GET", &format!("durable:{i}")]);
        assert_eq!(value, Some(i.to_string()), "durable:{i} lost after kill -9");
    }
    // Every key has N = 3 replicas: KEYS over the two live nodes is complete.
    let keys: Vec<String> = q(&mut c, &["KEYS", "durable:*"]);
    assert_eq!(keys.len(), 100);
    // Writes keep working with one node down (W = 2 of the 2 left).
    let _: () = q(&mut c, &["SET", "after-kill", "yes"]);
    let value: String = q(&mut cluster.node(1).client(), &["GET", "after-kill"]);
    assert_eq!(value, "yes");
}

#[test]
fn read_repair_brings_a_replica_that_missed_a_write_back_in_line() {
    let mut cluster = Cluster::start(3, QUORUM, &[]);
    cluster.nodes[2].kill9();
    let _: () = q(&mut cluster.node(0).client(), &["SET", "repair-me", "v1"]);
    cluster.nodes[2].restart();
    let mut c = cluster.node(2).client();
    // The restarted replica's own store does not have the write...
    let (_, values) = dget(&mut c, &["DYNAMO", "LOCALGET", "repair-me"]);
    assert!(values.is_empty(), "replica unexpectedly has {values:?}");
    // ...a quorum read through it finds the value on the others...
    let value: String = q(&mut c, &["GET", "repair-me"]);
    assert_eq!(value, "v1");
    // ...and repairs it in the background.
    wait_for("read repair of node 2", Duration::from_secs(10), || {
        dget(&mut c, &["DYNAMO", "LOCALGET", "repair-me"]).1 == vec!["v1".to_string()]
    });
    let info: String = q(&mut c, &["INFO", "dynamo"]);
    let repairs = info
        .lines()
        .find_map(|l| l.strip_prefix("read_repairs:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(repairs >= 1, "read_repairs not counted:\n{info}");
}

#[test]
fn a_write_that_cannot_reach_w_replicas_answers_unavailable() {
    let mut cluster = Cluster::start(3, QUORUM, &[]);
    cluster.nodes[1].kill9();
    cluster.nodes[2].kill9();
    let mut a = cluster.node(0).client();
    let error = qerr(&mut a, &["SET", "k", "v"]);
    assert!(
        error.starts_with("UNAVAILABLE needed 2 replicas, got 1"),
        "{error}"
    );
    let error = qerr(&mut a, &["GET", "k"]);
    assert!(error.starts_with("UNAVAILABLE needed 2"), "{error}");
}

#[test]
fn five_nodes_forward_writes_to_owners_and_agree_on_everything() {
    let cluster = Cluster::start(5, QUORUM, &["--q", "64"]);
    // Every node sees the same ring.
    let rings: Vec<Value> = cluster
        .nodes
        .iter()
        .map(|n| q(&mut n.client(), &["DYNAMO", "RING"]))
        .collect();
    assert!(rings.windows(2).all(|w| w[0] == w[1]));

    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut con = node.client();
        for j in 0..60 {
            let _: () = q(
                &mut con,
                &["SET", &format!("k:{i}:{j}"), &format!("{i}-{j}")],
            );
        }
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut con = node.client_resp3();
        for writer in 0..5 {
            for j in (0..60).step_by(7) {
                let value: String = q(&mut con, &["GET", &format!("k:{writer}:{j}")]);
                assert_eq!(value, format!("{writer}-{j}"), "read through node {i}");
            }
        }
    }
    // With 5 nodes and N = 3, some writes landed on a node that does not own
    // the key and were forwarded to an owner.
    let forwarded: u64 = cluster
        .nodes
        .iter()
        .map(|n| {
            let info: String = q(&mut n.client(), &["INFO", "dynamo"]);
            info.lines()
                .find_map(|l| l.strip_prefix("writes_forwarded:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(forwarded > 0, "no write was forwarded");
    // Each key is on exactly 3 of the 5 nodes' own stores.
    for j in 0..10 {
        let key = format!("k:0:{j}");
        let holders = || {
            cluster
                .nodes
                .iter()
                .filter(|n| {
                    let (_, values) = dget(&mut n.client(), &["DYNAMO", "LOCALGET", &key]);
                    !values.is_empty()
                })
                .count()
        };
        // W = 2 answers before the third replica stored it: allow it a moment.
        wait_for(&format!("{key} on 3 nodes"), Duration::from_secs(5), || {
            holders() >= 3
        });
        assert_eq!(holders(), 3, "{key} is on more than N nodes");
    }
    let status = status_of(cluster.node(3));
    assert_eq!(status["members"], "5");

    // Read-modify-write through every node in turn, owners or not: each
    // INCR reads a quorum (or the owner's state) that includes the last one.
    for round in 0..4 {
        for node in &cluster.nodes {
            let _: i64 = q(&mut node.client(), &["INCR", "shared-counter"]);
        }
        let total: i64 = q(
            &mut cluster.node(round).client(),
            &["GET", "shared-counter"],
        );
        assert_eq!(total, 5 * (round as i64 + 1));
    }
}

#[test]
fn pipelines_keep_their_order_per_key_when_commands_run_concurrently() {
    let cluster = Cluster::start(3, QUORUM, &[]);
    let mut a = cluster.node(0).client();
    // Distinct keys: one batch, executed concurrently, replies in order.
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("p:{i}")).arg(i);
    }
    let replies: Vec<Value> = pipe.query(&mut a).unwrap();
    assert!(replies.iter().all(|r| *r == Value::Okay), "{replies:?}");
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("GET").arg(format!("p:{i}"));
    }
    let replies: Vec<Value> = pipe.query(&mut a).unwrap();
    assert_eq!(replies.len(), 200);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply, &Value::BulkString(i.to_string().into_bytes()));
    }
    // One key written and read in the same pipeline: strictly in order.
    let mut pipe = redis::pipe();
    for i in 0..50 {
        pipe.cmd("SET").arg("same").arg(i).cmd("GET").arg("same");
        pipe.cmd("INCR").arg("n");
    }
    let replies: Vec<Value> = pipe.query(&mut a).unwrap();
    for i in 0..50 {
        assert_eq!(
            replies[i * 3 + 1],
            Value::BulkString(i.to_string().into_bytes())
        );
        assert_eq!(replies[i * 3 + 2], Value::Int(i as i64 + 1));
    }
}

#[test]
fn dynamo_join_brings_a_lone_node_into_the_cluster() {
    let cluster = Cluster::start(3, QUORUM, &[]);
    let _: () = q(&mut cluster.node(0).client(), &["SET", "before-join", "1"]);
    // A fourth node started on its own: n = 3 but nobody to talk to.
    let lone = compat_tests::Server::start(&[
        "--n",
        "3",
        "--r",
        "2",
        "--w",
        "2",
        "--gossip-interval-ms",
        "200",
    ]);
    assert_eq!(status_of(&lone)["members"], "1");
    let mut con = lone.client();
    let error = qerr(&mut con, &["DYNAMO", "JOIN", "not-an-address"]);
    assert!(error.starts_with("ERR"), "{error}");
    let ok: String = q(
        &mut con,
        &["DYNAMO", "JOIN", &compat_tests::peer_addr(cluster.node(1))],
    );
    assert_eq!(ok, "OK");
    wait_for("four members everywhere", Duration::from_secs(20), || {
        cluster
            .nodes
            .iter()
            .chain(std::iter::once(&lone))
            .all(|n| status_of(n)["members"] == "4")
    });
    wait_for("one ring", Duration::from_secs(20), || {
        let digest = status_of(&lone)["ring_digest"].clone();
        cluster
            .nodes
            .iter()
            .all(|n| status_of(n)["ring_digest"] == digest)
    });
    // The new node serves reads and writes for the whole cluster.
    let _: () = q(&mut con, &["SET", "after-join", "2"]);
    let value: String = q(&mut cluster.node(2).client(), &["GET", "after-join"]);
    assert_eq!(value, "2");
}

#[test]
fn the_peer_port_survives_garbage_and_strangers() {
    use std::io::{Read, Write};
    let cluster = Cluster::start(3, QUORUM, &[]);
    let peer = compat_tests::peer_addr(cluster.node(0));
    let send = |bytes: &[u8]| {
        let mut s = std::net::TcpStream::connect(&peer).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        // The node closes the connection; reading hits EOF (or a reset).
        let mut buf = [0u8; 256];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
            assert!(total < 4096, "node kept talking to garbage");
        }
    };
    send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    send(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]); // 4 GiB frame announced
    send(&[0, 0, 0, 3, 9, 9, 9]); // undecodable frame body
                                  // After all that the node still serves clients and its peers.
    let _: () = q(&mut cluster.node(0).client(), &["SET", "still", "alive"]);
    let value: String = q(&mut cluster.node(2).client(), &["GET", "still"]);
    assert_eq!(value, "alive");
    assert_eq!(status_of(cluster.node(0))["members_up"], "3");
}

#[test]
fn a_node_from_another_cluster_is_refused() {
    let cluster = Cluster::start(3, QUORUM, &[]);
    let stranger = compat_tests::Server::start(&[
        "--n",
        "3",
        "--cluster-name",
        "someone-else",
        "--seeds",
        &compat_tests::peer_addr(cluster.node(0)),
        "--gossip-interval-ms",
        "200",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status_of(&stranger)["members"], "1");
    assert_eq!(cluster.status(0)["members"], "3");
    let error = qerr(
        &mut stranger.client(),
        &["DYNAMO", "JOIN", &compat_tests::peer_addr(cluster.node(1))],
    );
    assert!(error.contains("refused"), "{error}");
}

/// Reads through node 1 with node 3 frozen (SIGSTOP: its sockets stay open
/// and nothing answers), before anyone has marked it down; `hedge_ms` is
/// `read-hedge-ms`. Returns (reads answered with the value, node 1's INFO
/// `hedged_reads`).
fn reads_with_a_frozen_replica(hedge_ms: &str) -> (usize, usize, u64) {
    const KEYS: usize = 30;
    let cluster = Cluster::start(
        3,
        QUORUM,
        &[
            "--read-hedge-ms",
            hedge_ms,
            "--request-timeout-ms",
            "3000",
            "--read-repair-chance",
            "0",
        ],
    );
    let mut a = cluster.node(0).client();
    for i in 0..KEYS {
        let _: () = q(&mut a, &["SET", &format!("h:{i}"), &format!("v{i}")]);
    }
    let frozen = cluster.node(2).pid().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &frozen])
        .status();
    assert!(stop.is_ok_and(|s| s.success()), "kill -STOP failed");
    let mut answered = 0;
    for i in 0..KEYS {
        let reply: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg(format!("h:{i}")).query(&mut a);
        if reply.ok().flatten() == Some(format!("v{i}")) {
            answered += 1;
        }
    }
    // The same reads as one pipeline: one batch, whose reads hedge together.
    let mut pipe = redis::pipe();
    for i in 0..KEYS {
        pipe.cmd("GET").arg(format!("h:{i}"));
    }
    let batch: redis::RedisResult<Vec<Option<String>>> = pipe.query(&mut a);
    let pipelined = batch.map_or(0, |values| {
        (0..KEYS)
            .filter(|i| values.get(*i).cloned().flatten() == Some(format!("v{i}")))
            .count()
    });
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &frozen])
        .status();
    (
        answered,
        pipelined,
        compat_tests::info_field(cluster.node(0), "hedged_reads"),
    )
}

#[test]
fn a_frozen_replica_does_not_fail_reads_that_hedge() {
    let (answered, pipelined, hedged) = reads_with_a_frozen_replica("20");
    assert_eq!(answered, 30, "every read answered from node 1 and node 2");
    assert_eq!(pipelined, 30, "every pipelined read answered");
    assert!(hedged > 0, "no read hedged although node 3 answered none");
    // Without hedging, the reads that asked node 3 wait out the timeout and
    // fail (until node 3 is marked down): the test above is not vacuous.
    let (answered, _, hedged) = reads_with_a_frozen_replica("0");
    assert!(answered < 30, "every read answered without hedging");
    assert_eq!(hedged, 0);
}

#[test]
fn pipelined_gets_and_sets_run_as_batches_that_replicate_and_survive_a_kill() {
    const KEYS: usize = 300;
    let mut cluster = Cluster::start(3, QUORUM, &[]);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("batch:{i}")).collect();
    let set_all = |con: &mut redis::Connection, keys: &[String], tag: &str| {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("SET").arg(key).arg(format!("{key}={tag}"));
        }
        let replies: Vec<Value> = pipe.query(con).unwrap();
        assert!(replies.iter().all(|r| *r == Value::Okay), "{replies:?}");
    };
    let mut a = cluster.node(0).client();
    set_all(&mut a, &keys, "one");
    // Every replica's own store gets every write of the batch (W = 2 acked
    // before the reply; the third copy follows).
    for node in [1, 2] {
        wait_for(
            &format!("node {node} holds the batch"),
            Duration::from_secs(10),
            || {
                compat_tests::holds_many(cluster.node(node), &keys)
                    .iter()
                    .all(|held| *held)
            },
        );
    }
    // Overwrite through the batch path, then lose node 1 to kill -9: the
    // acknowledged batch survives, and batches keep working on two nodes.
    set_all(&mut a, &keys, "two");
    cluster.nodes[1].kill9();
    let mut c = cluster.node(2).client();
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("GET").arg(key);
    }
    let values: Vec<Option<String>> = pipe.query(&mut c).unwrap();
    for (key, value) in keys.iter().zip(&values) {
        assert_eq!(value.as_deref(), Some(format!("{key}=two").as_str()));
    }
    set_all(&mut c, &keys[..100], "three");
    let mut mget = redis::cmd("MGET");
    for key in &keys[..150] {
        mget.arg(key);
    }
    let values: Vec<Option<String>> = mget.query(&mut a).unwrap();
    for (i, value) in values.iter().enumerate() {
        let tag = if i < 100 { "three" } else { "two" };
        assert_eq!(value.as_deref(), Some(format!("batch:{i}={tag}").as_str()));
    }
    let _: () = q(&mut a, &["MSET", "m:1", "x", "m:2", "y"]);
    let values: Vec<Option<String>> = q(&mut c, &["MGET", "m:1", "m:2", "m:none"]);
    assert_eq!(values, vec![Some("x".into()), Some("y".into()), None]);
}

#[test]
fn a_batch_of_large_values_is_answered_in_pages() {
    // Twenty values of 900 KB (about ten for each other replica): a
    // replica's answer to a batch stops after about 4 MiB, and the coordinator asks again for the rest. No hedging
    // and no extra read-repair reads: only that second ask can answer them.
    let cluster = Cluster::start(
        3,
        QUORUM,
        &["--read-hedge-ms", "0", "--read-repair-chance", "0"],
    );
    let mut a = cluster.node(0).client();
    let value = |i: usize| vec![b'a' + i as u8; 900_000];
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("big:{i}"))
            .arg(value(i))
            .query(&mut a)
            .unwrap();
    }
    for node in 0..3 {
        let mut con = cluster.node(node).client();
        let mut pipe = redis::pipe();
        for i in 0..20 {
            pipe.cmd("GET").arg(format!("big:{i}"));
        }
        let values: Vec<Vec<u8>> = pipe.query(&mut con).unwrap();
        assert_eq!(values.len(), 20);
        for (i, got) in values.iter().enumerate() {
            assert!(*got == value(i), "big:{i} through node {node} differs");
        }
    }
}

/// INFO `coalesced_requests` and `coalesced_batches` of `node`.
fn batcher_counts(node: &compat_tests::Server) -> (u64, u64) {
    (
        compat_tests::info_field(node, "coalesced_requests"),
        compat_tests::info_field(node, "coalesced_batches"),
    )
}

/// Since `before`, at least `expected` requests went through `node`'s
/// batcher, and concurrent clients' requests shared batches.
fn assert_batched_together(node: &compat_tests::Server, before: (u64, u64), expected: u64) {
    let (requests, batches) = batcher_counts(node);
    let (requests, batches) = (requests - before.0, batches - before.1);
    assert!(
        requests >= expected,
        "every request goes through the batcher: {requests} of {expected}"
    );
    assert!(
        batches < requests,
        "concurrent clients' requests share batches: {batches} batches for {requests} requests"
    );
}

#[test]
fn pipelines_of_many_clients_share_batches_each_getting_its_own_replies() {
    const CLIENTS: usize = 16;
    const ROUNDS: usize = 20;
    const DEPTH: usize = 12;
    let mut cluster = Cluster::start(3, QUORUM, &[]);
    let node = cluster.node(0);
    let before = batcher_counts(node);
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            scope.spawn(move || {
                let mut con = node.client();
                for round in 0..ROUNDS {
                    let key = |i: usize| format!("pipe:{client}:{round}:{i}");
                    // A pipeline of SETs (one put_many), one of GETs with a
                    // missing key among them (one get_many).
                    let mut pipe = redis::pipe();
                    for i in 0..DEPTH {
                        pipe.cmd("SET")
                            .arg(key(i))
                            .arg(format!("{}={client}", key(i)));
                    }
                    pipe.cmd("SET").arg("pipe:shared").arg(client);
                    let replies: Vec<Value> = pipe.query(&mut con).unwrap();
                    assert!(replies.iter().all(|r| *r == Value::Okay), "{replies:?}");
                    let mut pipe = redis::pipe();
                    for i in (0..DEPTH).rev() {
                        pipe.cmd("GET").arg(key(i));
                    }
                    pipe.cmd("GET").arg(format!("pipe:none:{client}:{round}"));
                    let replies: Vec<Value> = pipe.query(&mut con).unwrap();
                    for (reply, i) in replies.iter().zip((0..DEPTH).rev()) {
                        let want = format!("{}={client}", key(i));
                        assert_eq!(reply, &Value::BulkString(want.into_bytes()));
                    }
                    assert_eq!(replies[DEPTH], Value::Nil);
                }
            });
        }
    });
    assert_batched_together(node, before, (CLIENTS * ROUNDS * 2) as u64);
    let mut b = cluster.node(1).client();
    let (_, values) = dget(&mut b, &["DGET", "pipe:shared"]);
    assert_eq!(values.len(), 1, "one coordinator, one version: {values:?}");
    // The acknowledged pipelined writes survive the kill of a replica.
    cluster.nodes[2].kill9();
    let mut pipe = redis::pipe();
    for client in 0..CLIENTS {
        pipe.cmd("GET")
            .arg(format!("pipe:{client}:{}:0", ROUNDS - 1));
    }
    let replies: Vec<Value> = pipe.query(&mut b).unwrap();
    for (client, reply) in replies.iter().enumerate() {
        let want = format!("pipe:{client}:{}:0={client}", ROUNDS - 1);
        assert_eq!(reply, &Value::BulkString(want.into_bytes()));
    }
}

#[test]
fn lone_requests_of_many_clients_run_in_shared_batches_each_with_its_own_answer() {
    const CLIENTS: usize = 32;
    const ROUNDS: usize = 60;
    let mut cluster = Cluster::start(3, QUORUM, &[]);
    let before = batcher_counts(cluster.node(0));
    let run_clients = |node: &compat_tests::Server, tag: &str| {
        std::thread::scope(|scope| {
            for client in 0..CLIENTS {
                let tag = tag.to_string();
                scope.spawn(move || {
                    let mut con = node.client();
                    for round in 0..ROUNDS {
                        let key = format!("lone:{client}:{round}");
                        let value = format!("{key}={tag}");
                        let _: () = q(&mut con, &["SET", &key, &value]);
                        let got: Option<String> = q(&mut con, &["GET", &key]);
                        assert_eq!(got.as_deref(), Some(value.as_str()));
                        let missing: Option<String> =
                            q(&mut con, &["GET", &format!("lone:none:{client}:{round}")]);
                        assert_eq!(missing, None);
                        // Every client writes this one key too: writes of one
                        // key in one batch supersede each other in turn.
                        let _: () = q(&mut con, &["SET", "lone:shared", &format!("{client}")]);
                    }
                });
            }
        });
    };
    run_clients(cluster.node(0), "one");
    assert_batched_together(cluster.node(0), before, (CLIENTS * ROUNDS * 4) as u64);
    // One coordinator, so the shared key holds one version, one client's.
    let mut b = cluster.node(1).client();
    let (_, values) = dget(&mut b, &["DGET", "lone:shared"]);
    assert_eq!(values.len(), 1, "{values:?}");
    assert!(values[0].parse::<usize>().is_ok_and(|c| c < CLIENTS));
    // Acknowledged batched writes survive the kill of a replica, and lone
    // requests keep working on the two nodes left.
    cluster.nodes[2].kill9();
    for client in [0, CLIENTS / 2, CLIENTS - 1] {
        for round in [0, ROUNDS - 1] {
            let key = format!("lone:{client}:{round}");
            let got: Option<String> = q(&mut b, &["GET", &key]);
            assert_eq!(got, Some(format!("{key}=one")));
        }
    }
    run_clients(cluster.node(1), "two");
    let mut a = cluster.node(0).client();
    let got: Option<String> = q(
        &mut a,
        &["GET", &format!("lone:{}:{}", CLIENTS - 1, ROUNDS - 1)],
    );
    assert_eq!(
        got,
        Some(format!("lone:{}:{}=two", CLIENTS - 1, ROUNDS - 1))
    );
}
