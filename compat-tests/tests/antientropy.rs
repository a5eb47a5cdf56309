//! Merkle anti-entropy with real processes: a replica that missed writes
//! (with hinted handoff switched off) is repaired without any read, and the
//! exchange moves bytes in proportion to the differing keys.

use std::time::{Duration, Instant};

use compat_tests::{holds, info_field, q, Cluster};

const QUORUM: (usize, usize, usize) = (3, 2, 2);

#[test]
fn anti_entropy_repairs_a_replica_with_bytes_proportional_to_the_difference() {
    const KEYS: usize = 50_000;
    const MISSED: usize = 10;
    let mut cluster = Cluster::start(
        3,
        QUORUM,
        &[
            "--max-hints",
            "0",
            "--read-repair-chance",
            "0",
            "--anti-entropy-interval-ms",
            "300",
        ],
    );
    let value = "x".repeat(100);
    {
        let mut a = cluster.node(0).client();
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd("SET")
                    .arg(format!("bulk:{i}"))
                    .arg(&value)
                    .ignore();
            }
            let () = pipe.query(&mut a).unwrap();
        }
    }
    // Let the replicas agree before cutting one off.
    std::thread::sleep(Duration::from_secs(1));
    cluster.nodes[2].kill9();
    {
        let mut a = cluster.node(0).client();
        for i in 0..MISSED {
            let _: () = q(&mut a, &["SET", &format!("missed:{i}"), &value]);
        }
    }
    assert_eq!(
        info_field(cluster.node(0), "hints_dropped") as usize,
        MISSED
    );
    cluster.nodes[2].restart();
    let before: u64 = cluster
        .nodes
        .iter()
        .map(|n| info_field(n, "anti_entropy_bytes"))
        .sum();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    while !(0..MISSED).all(|i| holds(cluster.node(2), &format!("missed:{i}"))) {
        assert!(
            Instant::now() < deadline,
            "anti-entropy did not repair the replica in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after: u64 = cluster
        .nodes
        .iter()
        .map(|n| info_field(n, "anti_entropy_bytes"))
        .sum();
    let data_bytes = (KEYS * (value.len() + 10)) as u64;
    let moved = after - before;
    eprintln!(
        "repaired {MISSED} keys in {:?}; anti-entropy moved {moved} bytes for {data_bytes} bytes of data ({:.3}%)",
        started.elapsed(),
        moved as f64 * 100.0 / data_bytes as f64
    );
    assert!(
        moved * 100 < data_bytes,
        "anti-entropy moved {moved} bytes, not under 1% of {data_bytes}"
    );
    // Of each pair of replicas the one with the lower (random) id starts the
    // exchanges, so the repair of node 2 may have been started by any node.
    let rounds: u64 = cluster
        .nodes
        .iter()
        .map(|n| info_field(n, "anti_entropy_rounds"))
        .sum();
    assert!(rounds > 0, "no anti-entropy round ran");
    // Nothing was read: the repair was anti-entropy's, not read repair's.
    let repairs: u64 = cluster
        .nodes
        .iter()
        .map(|n| info_field(n, "read_repairs"))
        .sum();
    assert_eq!(repairs, 0);
}

#[test]
fn background_work_backs_off_under_foreground_load() {
    let cluster = Cluster::start(
        3,
        QUORUM,
        &[
            "--anti-entropy-interval-ms",
            "20",
            "--background-max-foreground",
            "0",
            "--background-max-replica-rate",
            "1",
        ],
    );
    // Under a steady pipelined load, rounds find requests in flight and skip.
    let mut a = cluster.node(0).client();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let mut pipe = redis::pipe();
        for i in 0..500 {
            pipe.cmd("GET").arg(format!("load:{i}")).ignore();
        }
        let () = pipe.query(&mut a).unwrap();
    }
    let deferred = info_field(cluster.node(0), "background_deferrals");
    assert!(deferred > 0, "no background round was deferred under load");
    // Node 1 has no clients, but serves replica reads for node 0's: it
    // slows its background work down too.
    let replica_deferred = info_field(cluster.node(1), "background_deferrals");
    assert!(
        replica_deferred > 0,
        "a busy replica did not slow its background work"
    );
    // Idle again: rounds run (started by the lower id of each pair).
    let rounds = || -> u64 {
        cluster
            .nodes
            .iter()
            .map(|n| info_field(n, "anti_entropy_rounds"))
            .sum()
    };
    let before = rounds();
    std::thread::sleep(Duration::from_millis(500));
    assert!(rounds() > before);
    eprintln!("{deferred} background rounds deferred under load");
}

#[test]
fn a_node_rebuilt_on_an_empty_disk_gets_its_partitions_back() {
    const KEYS: usize = 2_000;
    let mut cluster = Cluster::start(
        3,
        QUORUM,
        &[
            "--q",
            "64",
            "--anti-entropy-interval-ms",
            "100",
            "--anti-entropy-partitions",
            "64",
        ],
    );
    let id = load_then_wipe_node_3(&mut cluster, KEYS);
    let fresh = compat_tests::status_of(cluster.node(2));
    assert_eq!(fresh["node_id"], id);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let keys: usize = compat_tests::status_of(cluster.node(2))["keys"]
            .parse()
            .unwrap();
        if keys == KEYS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rebuilt node holds {keys} of {KEYS} keys after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in (0..KEYS).step_by(97) {
        assert!(holds(cluster.node(2), &format!("k:{i}")));
    }
    assert_eq!(compat_tests::status_of(cluster.node(0))["members"], "3");
}

#[test]
fn with_the_hint_holder_dead_too_anti_entropy_alone_repairs_the_replica() {
    let mut cluster = Cluster::start(3, QUORUM, &["--anti-entropy-interval-ms", "200"]);
    cluster.nodes[2].kill9();
    {
        let mut a = cluster.node(0).client();
        for i in 0..50 {
            let _: () = q(&mut a, &["SET", &format!("lost-hint:{i}"), "v"]);
        }
    }
    // The coordinator, holding every hint for the dead node, dies as well.
    cluster.nodes[0].kill9();
    cluster.nodes[2].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(0..50).all(|i| holds(cluster.node(2), &format!("lost-hint:{i}"))) {
        assert!(
            Instant::now() < deadline,
            "anti-entropy did not repair the replica in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        info_field(cluster.node(2), "anti_entropy_keys_repaired") > 0
            || info_field(cluster.node(1), "anti_entropy_keys_repaired") > 0
    );
}

#[test]
fn anti_entropy_moves_keys_no_faster_than_its_key_rate() {
    const KEYS: usize = 3_000;
    const RATE: usize = 500;
    let mut cluster = Cluster::start(
        3,
        QUORUM,
        &[
            "--q",
            "64",
            "--anti-entropy-interval-ms",
            "100",
            "--anti-entropy-partitions",
            "64",
            "--anti-entropy-max-keys-per-sec",
            &RATE.to_string(),
        ],
    );
    load_then_wipe_node_3(&mut cluster, KEYS);
    let keys_on_3 = |cluster: &Cluster| -> usize {
        compat_tests::status_of(cluster.node(2))["keys"]
            .parse()
            .unwrap()
    };
    // Samples of node 3's key count; it is refilled by anti-entropy alone
    // (no client touches the keys), from the two other nodes' exchanges
    // and its own, each paced at RATE keys/s.
    let started = Instant::now();
    let mut samples = vec![(Duration::ZERO, keys_on_3(&cluster))];
    while samples.last().unwrap().1 < KEYS {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "rebuilt node holds {} of {KEYS} keys after 90 s",
            samples.last().unwrap().1
        );
        std::thread::sleep(Duration::from_millis(100));
        samples.push((started.elapsed(), keys_on_3(&cluster)));
    }
    // Node 3 is in every exchange that refills it: at most three paced
    // exchanges at once (one per node), each allowed one step ahead.
    let allowed = 3 * RATE + 3 * (RATE / 20);
    let mut fastest = 0;
    for (i, &(t0, k0)) in samples.iter().enumerate() {
        if let Some(&(t1, k1)) = samples[i..]
            .iter()
            .find(|(t, _)| *t >= t0 + Duration::from_secs(1))
        {
            let per_sec = (k1 - k0) as f64 / (t1 - t0).as_secs_f64();
            fastest = fastest.max(per_sec as usize);
        }
    }
    eprintln!(
        "{KEYS} keys back in {:?}; fastest second: {fastest} keys/s (allowed {allowed})",
        samples.last().unwrap().0
    );
    assert!(
        fastest <= allowed,
        "anti-entropy moved {fastest} keys/s, more than {allowed} allowed at {RATE} keys/s per node"
    );
}

/// Writes `keys` keys `k:i` through node 1, then wipes node 3's disk and
/// restarts it empty under its old member id; returns that id.
fn load_then_wipe_node_3(cluster: &mut Cluster, keys: usize) -> String {
    let mut a = cluster.node(0).client();
    let mut pipe = redis::pipe();
    for i in 0..keys {
        pipe.cmd("SET").arg(format!("k:{i}")).arg(i).ignore();
    }
    let () = pipe.query(&mut a).unwrap();
    let id = compat_tests::status_of(cluster.node(2))["node_id"].clone();
    // The disk is lost; the node comes back empty under its old member id.
    cluster.nodes[2].restart_wiped(&["--node-id", &id]);
    id
}
