//! A replica takes in states as other replicas encoded them (replication,
//! read repair, transfer): equal bytes change nothing, a state that
//! supersedes the stored one is stored byte for byte as it came, concurrent
//! ones become siblings, and garbage is refused without touching the store.

mod common;

use bytes::Bytes;
use cluster::{
    coordinator::Write,
    replica::Replica,
    version::{EncodedSiblings, VersionVector},
};

fn replica() -> Replica {
    common::memory_replica(64)
}

/// A write of `value` with `context`, returning the stored encoding.
fn write(replica: &Replica, key: &[u8], context: VersionVector, value: &str) -> EncodedSiblings {
    let write = Write::value(context, Bytes::from(value.to_owned()), None);
    let (_, stored) = replica
        .write_encoded(key, 1_000, |_| (Some(write), ()))
        .unwrap();
    let (state, encoded) = stored.unwrap();
    assert_eq!(
        encoded.decode().unwrap(),
        state,
        "the encoding is of the state"
    );
    encoded
}

#[test]
fn a_newer_state_is_stored_as_it_came_and_equal_bytes_change_nothing() {
    let (a, b) = (replica(), replica());
    let first = write(&a, b"k", VersionVector::default(), "one");
    assert!(b.merge_encoded(b"k", &first, 1_000).unwrap());
    assert_eq!(b.read_encoded(b"k").unwrap(), first);
    assert!(!b.merge_encoded(b"k", &first, 1_000).unwrap(), "same bytes");

    // A write on `a` that saw "one" supersedes it on `b` too.
    let context = a.read(b"k").unwrap().context().clone();
    let second = write(&a, b"k", context, "two");
    assert!(b.merge_encoded(b"k", &second, 1_000).unwrap());
    assert_eq!(b.read_encoded(b"k").unwrap(), second);
    let held = b.read(b"k").unwrap();
    assert_eq!(held.live(0).count(), 1);
    assert_eq!(held.winner_value(0).unwrap().as_ref(), b"two");
    // An older state arriving late is already covered.
    assert!(!b.merge_encoded(b"k", &first, 1_000).unwrap());
    assert_eq!(b.read_encoded(b"k").unwrap(), second);
}

#[test]
fn concurrent_states_become_siblings() {
    let (a, b) = (replica(), replica());
    let on_a = write(&a, b"k", VersionVector::default(), "from a");
    let on_b = write(&b, b"k", VersionVector::default(), "from b");
    assert!(b.merge_encoded(b"k", &on_a, 1_000).unwrap());
    let held = b.read(b"k").unwrap();
    assert_eq!(held.live(0).count(), 2, "neither write is dropped");
    assert_ne!(b.read_encoded(b"k").unwrap(), on_a);
    assert_ne!(b.read_encoded(b"k").unwrap(), on_b);
    // Both sides end with the same bytes once each took the other's state.
    assert!(a
        .merge_encoded(b"k", &b.read_encoded(b"k").unwrap(), 1_000)
        .unwrap());
    assert_eq!(a.read_encoded(b"k").unwrap(), b.read_encoded(b"k").unwrap());
}

#[test]
fn garbage_is_refused_and_the_store_is_untouched() {
    let b = replica();
    let held = write(&b, b"k", VersionVector::default(), "kept");
    for junk in [&b""[..], b"\x01", b"\x01\x09\x09\x09", b"\x07abc"] {
        let junk = EncodedSiblings::from_stored(Bytes::copy_from_slice(junk));
        assert!(b.merge_encoded(b"k", &junk, 1_000).is_err());
        assert!(b.merge_encoded(b"new", &junk, 1_000).is_err());
    }
    assert_eq!(b.read_encoded(b"k").unwrap(), held);
    assert_eq!(b.read_encoded(b"new").unwrap(), EncodedSiblings::empty());
    assert_eq!(b.stored_keys(), 1);
}
