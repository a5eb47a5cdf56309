//! Sloppy quorum and hinted handoff with real processes: writes keep
//! succeeding while a replica is down, and the replica gets every write it
//! missed once it is back, checked in its own store.

use std::time::{Duration, Instant};

use compat_tests::{holds, info_field, node_id, owners_of, q, wait_for, Cluster};

const QUORUM: (usize, usize, usize) = (3, 2, 2);
const FAST_HANDOFF: &[&str] = &["--hint-delivery-interval-ms", "200"];

#[test]
fn a_restarted_replica_gets_every_write_it_missed_from_hints() {
    let mut cluster = Cluster::start(3, QUORUM, FAST_HANDOFF);
    cluster.nodes[2].kill9();
    {
        let mut a = cluster.node(0).client();
        for i in 0..200 {
            // W = 2 of the two nodes left: no write is refused.
            let _: () = q(&mut a, &["SET", &format!("missed:{i}"), &i.to_string()]);
        }
    }
    // Three nodes, N = 3: no node can stand in for the dead one, so the
    // coordinator keeps the hints itself (the first one once the failed
    // send to the dead node is noticed, a moment after the reply).
    wait_for("200 hints held", Duration::from_secs(5), || {
        info_field(cluster.node(0), "hints_pending") == 200
    });
    cluster.nodes[2].restart();
    let started = Instant::now();
    wait_for("hint delivery", Duration::from_secs(20), || {
        info_field(cluster.node(0), "hints_pending") == 0
    });
    let c = cluster.node(2);
    for i in 0..200 {
        assert!(
            holds(c, &format!("missed:{i}")),
            "missed:{i} not on the restarted node"
        );
    }
    assert_eq!(info_field(cluster.node(0), "hints_delivered"), 200);
    eprintln!(
        "200 hints delivered {:?} after the restart",
        started.elapsed()
    );
}

#[test]
fn a_fallback_node_holds_hints_for_a_dead_owner_and_hands_them_back() {
    let mut cluster = Cluster::start(
        5,
        QUORUM,
        &["--q", "64", "--hint-delivery-interval-ms", "200"],
    );
    cluster.nodes[4].kill9();
    let keys: Vec<String> = (0..300).map(|i| format!("sloppy:{i}")).collect();
    {
        let mut a = cluster.node(0).client();
        for key in &keys {
            let _: () = q(&mut a, &["SET", key, "v"]);
        }
    }
    // Reads see everything while the owner is down.
    let mut b = cluster.node(1).client();
    for key in keys.iter().step_by(10) {
        let value: String = q(&mut b, &["GET", key]);
        assert_eq!(value, "v");
    }
    let held: u64 = cluster.nodes[..4]
        .iter()
        .map(|n| info_field(n, "hints_pending"))
        .sum();
    assert!(held > 0, "no hints held for the dead node");
    cluster.nodes[4].restart();
    wait_for("every hint delivered", Duration::from_secs(30), || {
        cluster
            .nodes
            .iter()
            .map(|n| info_field(n, "hints_pending"))
            .sum::<u64>()
            == 0
    });
    // Hints live apart from the data, so after handoff each key is in the
    // stores of exactly its N = 3 owners, the restarted one included.
    for key in &keys {
        let holders = cluster.nodes.iter().filter(|n| holds(n, key)).count();
        assert_eq!(holders, 3, "{key} is on {holders} nodes after handoff");
    }
}

#[test]
fn hints_survive_a_restart_of_the_node_holding_them() {
    let mut cluster = Cluster::start(3, QUORUM, FAST_HANDOFF);
    cluster.nodes[2].kill9();
    {
        let mut a = cluster.node(0).client();
        for i in 0..50 {
            let _: () = q(&mut a, &["SET", &format!("kept:{i}"), "v"]);
        }
    }
    wait_for("50 hints held", Duration::from_secs(5), || {
        info_field(cluster.node(0), "hints_pending") == 50
    });
    // The holder stops cleanly (flushing its storage) and comes back.
    assert!(cluster.nodes[0].terminate().success());
    cluster.nodes[0].restart();
    assert_eq!(info_field(cluster.node(0), "hints_pending"), 50);
    cluster.nodes[2].restart();
    wait_for("hint delivery", Duration::from_secs(20), || {
        info_field(cluster.node(0), "hints_pending") == 0
    });
    for i in 0..50 {
        assert!(holds(cluster.node(2), &format!("kept:{i}")));
    }
}

/// Hints meant for a node that is then removed for good cannot wait for it:
/// they go to the key's new replicas, and nothing is left pending.
#[test]
fn hints_for_a_removed_node_go_to_the_new_replicas() {
    let mut cluster = Cluster::start(
        4,
        QUORUM,
        &["--q", "64", "--hint-delivery-interval-ms", "200"],
    );
    let dead = node_id(cluster.node(3));
    cluster.nodes[3].kill9();
    let keys: Vec<String> = (0..300).map(|i| format!("orphan:{i}")).collect();
    {
        let mut a = cluster.node(0).client();
        for key in &keys {
            let _: () = q(&mut a, &["SET", key, "v"]);
        }
    }
    let pending = |cluster: &Cluster| -> u64 {
        cluster.nodes[..3]
            .iter()
            .map(|n| info_field(n, "hints_pending"))
            .sum()
    };
    wait_for(
        "hints held for the dead node",
        Duration::from_secs(5),
        || pending(&cluster) > 0,
    );
    let held = pending(&cluster);
    let reply: String = q(&mut cluster.node(0).client(), &["DYNAMO", "REMOVE", &dead]);
    assert_eq!(reply, "OK");
    let live = [0, 1, 2];
    cluster.wait_settled(&live, 4, Duration::from_secs(60));
    wait_for(
        "hints for the removed node delivered",
        Duration::from_secs(30),
        || pending(&cluster) == 0,
    );
    eprintln!("{held} hints for the removed node went to the new replicas");
    let mut b = cluster.node(1).client();
    for key in &keys {
        let value: String = q(&mut b, &["GET", key]);
        assert_eq!(value, "v", "{key}");
        let owners = owners_of(cluster.node(0), key);
        assert!(
            !owners.contains(&dead),
            "{key} still owned by the removed node"
        );
        for i in live {
            let owner = owners.contains(&node_id(cluster.node(i)));
            assert_eq!(holds(cluster.node(i), key), owner, "{key} on node {i}");
        }
    }
}

/// With `fallback-acks-count false`, a read cut off from every owner of a
/// key is refused instead of answered from fallbacks that do not hold it
/// (R counts owners only, as W does); with the default (the paper's sloppy
/// quorum) the same read answers from the fallbacks and misses the value.
#[test]
fn strict_reads_never_answer_from_fallbacks_alone() {
    for strict in [true, false] {
        let flag = if strict { "false" } else { "true" };
        let mut cluster = Cluster::start(5, QUORUM, &["--fallback-acks-count", flag]);
        let key = "strict-read";
        let owners = owners_of(cluster.node(0), key);
        let ids: Vec<String> = (0..5).map(|i| node_id(cluster.node(i))).collect();
        let owner_of = |i: usize| owners.contains(&ids[i]);
        let writer = (0..5).find(|&i| owner_of(i)).unwrap();
        let reader = (0..5).find(|&i| !owner_of(i)).unwrap();
        let _: () = q(&mut cluster.node(writer).client(), &["SET", key, "v"]);
        for i in (0..5).filter(|&i| owner_of(i)) {
            cluster.nodes[i].kill9();
        }
        let mut con = cluster.node(reader).client();
        // The first reads find the owners unreachable; later ones find them
        // marked down and go straight to the fallbacks (default) or refuse.
        let mut answers = Vec::new();
        for _ in 0..10 {
            let answer: redis::RedisResult<Option<String>> =
                redis::cmd("GET").arg(key).query(&mut con);
            answers.push(answer.map_err(|e| compat_tests::err_line(&e)));
            std::thread::sleep(Duration::from_millis(300));
        }
        if strict {
            assert!(
                answers
                    .iter()
                    .all(|a| matches!(a, Err(e) if e.contains("UNAVAILABLE"))),
                "strict reads answered without an owner: {answers:?}"
            );
        } else {
            assert!(
                answers.iter().any(|a| matches!(a, Ok(None))),
                "the sloppy read never answered from fallbacks: {answers:?}"
            );
        }
    }
}
