//! Deletes in a cluster: tombstones are collected once every replica has
//! them and no hint is pending, and a deleted key never comes back, even
//! when a replica holding the old value was down during the delete.

use std::time::Duration;

use compat_tests::{q, status_of, wait_for, Cluster};

const QUORUM: (usize, usize, usize) = (3, 2, 2);
const FAST_GC: &[&str] = &[
    "--request-timeout-ms",
    "200",
    "--tombstone-grace-ms",
    "400",
    "--tombstone-gc-interval-ms",
    "200",
    "--hint-delivery-interval-ms",
    "200",
];

fn stored_keys(node: &compat_tests::Server) -> u64 {
    status_of(node)["keys"].parse().unwrap()
}

#[test]
fn tombstones_are_collected_on_every_replica() {
    let cluster = Cluster::start(3, QUORUM, FAST_GC);
    let mut a = cluster.node(0).client();
    for i in 0..20 {
        let _: () = q(&mut a, &["SET", &format!("gone:{i}"), "v"]);
    }
    let mut b = cluster.node(1).client();
    for i in 0..20 {
        let n: i64 = q(&mut b, &["DEL", &format!("gone:{i}")]);
        assert_eq!(n, 1);
    }
    wait_for("collection on all nodes", Duration::from_secs(20), || {
        cluster.nodes.iter().all(|n| stored_keys(n) == 0)
    });
    for node in &cluster.nodes {
        let value: Option<String> = q(&mut node.client(), &["GET", "gone:3"]);
        assert_eq!(value, None);
    }
}

#[test]
fn a_replica_down_during_a_delete_never_brings_the_value_back() {
    let mut cluster = Cluster::start(3, QUORUM, FAST_GC);
    {
        let mut a = cluster.node(0).client();
        for i in 0..10 {
            let _: () = q(&mut a, &["SET", &format!("old:{i}"), "stale"]);
        }
    }
    wait_for(
        "every replica holds the values",
        Duration::from_secs(10),
        || cluster.nodes.iter().all(|n| stored_keys(n) == 10),
    );
    cluster.nodes[2].kill9();
    {
        let mut a = cluster.node(0).client();
        for i in 0..10 {
            let n: i64 = q(&mut a, &["DEL", &format!("old:{i}")]);
            assert_eq!(n, 1);
        }
    }
    // Well past the grace period: nothing may be collected while a replica
    // that still holds the old values is down.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stored_keys(cluster.node(0)), 10);
    assert_eq!(stored_keys(cluster.node(1)), 10);
    cluster.nodes[2].restart();
    // Hints carry the tombstones to the restarted replica; then collection
    // removes the keys everywhere.
    wait_for(
        "collection after the replica returned",
        Duration::from_secs(30),
        || cluster.nodes.iter().all(|n| stored_keys(n) == 0),
    );
    for node in &cluster.nodes {
        let mut con = node.client();
        for i in 0..10 {
            let value: Option<String> = q(&mut con, &["GET", &format!("old:{i}")]);
            assert_eq!(value, None, "old:{i} came back");
        }
    }
    let (_, values): (Vec<u8>, Vec<String>) = q(
        &mut cluster.node(2).client(),
        &["DYNAMO", "LOCALGET", "old:0"],
    );
    assert!(values.is_empty());
}
