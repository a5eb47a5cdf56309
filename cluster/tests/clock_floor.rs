//! Write timestamps never run behind what a replica has seen: a node whose
//! clock is behind still stamps its writes after the versions it took in
//! from other nodes, so last-write-wins orders them as they happened.

mod common;

use bytes::Bytes;
use cluster::{
    coordinator::Write,
    replica::Replica,
    version::{Siblings, VersionVector},
};

fn replica() -> Replica {
    common::memory_replica(64)
}

/// A blind write (empty context) of `value` (`None`: a tombstone) at `now`.
fn blind(replica: &Replica, key: &[u8], value: Option<&str>, now: u64) -> Siblings {
    let write = match value {
        Some(v) => Write::value(VersionVector::default(), Bytes::from(v.to_string()), None),
        None => Write::tombstone(VersionVector::default()),
    };
    replica
        .write(key, now, |_| (Some(write), ()))
        .unwrap()
        .1
        .unwrap()
}

#[test]
fn a_replica_behind_stamps_after_what_it_took_in() {
    let (good, behind) = (replica(), replica());
    let t = 1_800_000_000_000;
    // The good node writes k1, then k2 a second later; the node 30 s behind
    // receives k2 only (k1 went elsewhere, e.g. to a fallback).
    blind(&good, b"k1", Some("written"), t);
    let k2 = blind(&good, b"k2", Some("other"), t + 1_000);
    behind.merge(b"k2", &k2, t + 1_000 - 30_000).unwrap();

    // It deletes k1 without having seen it, by its clock 30 s in the past.
    let tombstone = blind(&behind, b"k1", None, t + 2_000 - 30_000);
    assert!(tombstone.versions()[0].timestamp_ms >= t + 1_000);
    // Where the two meet, the delete wins last-write-wins; the missed write
    // stays a sibling.
    good.merge(b"k1", &tombstone, t + 2_000).unwrap();
    let merged = good.read(b"k1").unwrap();
    assert_eq!(merged.versions().len(), 2);
    assert!(merged.winner(t + 2_000).unwrap().is_tombstone());
}

#[test]
fn a_write_is_stamped_after_the_versions_it_supersedes() {
    let replica = replica();
    let t = 1_800_000_000_000;
    blind(&replica, b"k", Some("first"), t);
    // The clock stepped back a minute: the next write still comes after.
    let next = replica
        .write(b"k", t - 60_000, |current| {
            let context = current.context().clone();
            (Some(Write::value(context, Bytes::from("second"), None)), ())
        })
        .unwrap()
        .1
        .unwrap();
    assert_eq!(next.versions().len(), 1);
    assert!(next.versions()[0].timestamp_ms >= t);
    assert_eq!(next.winner_value(t).unwrap().as_ref(), b"second");
}

#[test]
fn timestamps_far_in_the_future_are_not_followed() {
    let (wild, sane) = (replica(), replica());
    let t = 1_800_000_000_000;
    let hour = 3_600_000;
    let from_the_future = blind(&wild, b"k", Some("far ahead"), t + hour);
    sane.merge(b"k", &from_the_future, t).unwrap();
    let own = blind(&sane, b"other", Some("now"), t);
    assert_eq!(own.versions()[0].timestamp_ms, t);
}
