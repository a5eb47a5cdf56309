//! Unit tests for [`Siblings`]; the algebraic laws live in
//! `cluster/tests/version_laws.rs`.

use bytes::Bytes;

use super::*;

fn put(node: NodeId, counter: u64, ts: u64, value: &'static [u8]) -> Version {
    Version::put(Dot::new(node, counter), ts, None, Bytes::from_static(value))
}

fn values(s: &Siblings, now: u64) -> Vec<&[u8]> {
    s.live(now).map(|v| v.value().unwrap().as_ref()).collect()
}

fn blind() -> VersionVector {
    VersionVector::new()
}

#[test]
fn new_is_empty() {
    let s = Siblings::new();
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
    assert!(s.winner(0).is_none());
    assert!(s.is_collectable(0));
}

#[test]
fn blind_writes_become_siblings() {
    let mut s = Siblings::new();
    assert_eq!(s.apply_write(&blind(), put(1, 1, 10, b"a")), 0);
    assert_eq!(s.apply_write(&blind(), put(1, 2, 20, b"b")), 0);
    assert_eq!(values(&s, 0), vec![&b"a"[..], b"b"]);
    assert_eq!(s.context().get(1), 2);
    assert!(!s.is_empty());
}

#[test]
fn write_with_full_context_replaces() {
    let mut s = Siblings::new();
    s.apply_write(&blind(), put(1, 1, 10, b"a"));
    s.apply_write(&blind(), put(2, 1, 10, b"b"));
    let ctx = s.context().clone();
    assert_eq!(s.apply_write(&ctx, put(1, 2, 30, b"c")), 2);
    assert_eq!(values(&s, 0), vec![&b"c"[..]]);
}

#[test]
fn same_context_twice_keeps_both() {
    let mut s = Siblings::new();
    s.apply_write(&blind(), put(1, 1, 10, b"a"));
    let ctx = s.context().clone();
    s.apply_write(&ctx, put(1, 2, 20, b"b"));
    s.apply_write(&ctx, put(1, 3, 20, b"c"));
    assert_eq!(values(&s, 0), vec![&b"b"[..], b"c"]);
}

#[test]
fn partial_context_keeps_unseen() {
    let mut s = Siblings::new();
    s.apply_write(&blind(), put(1, 1, 10, b"a"));
    let seen = s.context().clone();
    s.apply_write(&blind(), put(2, 1, 10, b"b"));
    s.apply_write(&seen, put(1, 2, 10, b"c"));
    assert_eq!(values(&s, 0), vec![&b"c"[..], b"b"]);
}

#[test]
fn tombstone_hides_value() {
    let mut s = Siblings::new();
    s.apply_write(&blind(), put(1, 1, 10, b"a"));
    let ctx = s.context().clone();
    s.apply_write(&ctx, Version::tombstone(Dot::new(1, 2), 20));
    assert_eq!(values(&s, 0).len(), 0);
    assert!(s.winner(0).unwrap().is_tombstone());
    assert_eq!(s.winner_value(0), None);
    assert!(s.is_collectable(0));
    assert!(!s.is_empty(), "the tombstone and context are still state");
}

#[test]
fn concurrent_write_survives_tombstone() {
    let mut a = Siblings::new();
    a.apply_write(&blind(), put(1, 1, 10, b"a"));
    let mut b = a.clone();
    let ctx = a.context().clone();
    a.apply_write(&ctx, Version::tombstone(Dot::new(1, 2), 20));
    b.apply_write(&ctx, put(2, 1, 15, b"b"));
    a.merge(&b);
    assert_eq!(values(&a, 0), vec![&b"b"[..]]);
    // The tombstone is newer, so plain GET sees nothing; DGET shows "b".
    assert!(a.winner(0).unwrap().is_tombstone());
    assert!(!a.is_collectable(0));
}

#[test]
fn winner_by_timestamp_then_dot() {
    let mut s = Siblings::new();
    s.apply_write(&blind(), put(2, 1, 50, b"late"));
    s.apply_write(&blind(), put(1, 1, 10, b"early"));
    assert_eq!(s.winner_value(0).unwrap().as_ref(), b"late");
    s.apply_write(&blind(), put(3, 1, 50, b"tie"));
    assert_eq!(s.winner_value(0).unwrap().as_ref(), b"tie");
    s.apply_write(&blind(), put(1, 2, 50, b"lower dot"));
    assert_eq!(s.winner_value(0).unwrap().as_ref(), b"tie");
}

#[test]
fn expiry() {
    let mut s = Siblings::new();
    let v = Version::put(Dot::new(1, 1), 100, Some(200), Bytes::from_static(b"x"));
    assert!(!v.is_expired(199) && v.is_expired(200));
    s.apply_write(&blind(), v);
    s.apply_write(&blind(), put(2, 1, 50, b"old"));
    assert_eq!(s.winner_value(150).unwrap().as_ref(), b"x");
    assert_eq!(s.winner_value(200).unwrap().as_ref(), b"old");
    assert_eq!(values(&s, 200), vec![&b"old"[..]]);
    let mut other = s.clone();
    assert_eq!(s.purge_expired(200), 1);
    assert_eq!(s.purge_expired(200), 0);
    assert_eq!(s.context().get(1), 1, "context still covers the purged dot");
    // A replica that did not purge yet cannot bring it back.
    s.merge(&other);
    assert_eq!(s.len(), 1);
    other.merge(&s);
    assert_eq!(other, s);
}

#[test]
fn merge_drops_superseded_keeps_unseen() {
    let mut a = Siblings::new();
    a.apply_write(&blind(), put(1, 1, 10, b"a"));
    let mut b = a.clone();
    let ctx = b.context().clone();
    b.apply_write(&ctx, put(2, 1, 20, b"b"));
    a.apply_write(&blind(), put(1, 2, 30, b"c"));
    let mut ab = a.clone();
    ab.merge(&b);
    let mut ba = b.clone();
    ba.merge(&a);
    assert_eq!(ab, ba);
    assert_eq!(values(&ab, 0), vec![&b"c"[..], b"b"]);
    let again = ab.clone();
    ab.merge(&again);
    assert_eq!(ab, again);
}

#[test]
fn min_fresh_counter() {
    let mut s = Siblings::new();
    s.apply_write(&blind(), put(1, 4, 0, b"a"));
    let client: VersionVector = [(1, 9)].into_iter().collect();
    assert_eq!(s.min_fresh_counter(1, &client), 10);
    assert_eq!(s.min_fresh_counter(1, &blind()), 5);
    assert_eq!(s.min_fresh_counter(2, &blind()), 1);
}

#[test]
fn encode_decode_round_trip() {
    let mut s = Siblings::new();
    assert_eq!(Siblings::decode(&s.encode()).unwrap(), s);
    s.apply_write(&blind(), put(1, 1, 10, b"a"));
    s.apply_write(&blind(), Version::tombstone(Dot::new(2, 7), 11));
    s.apply_write(
        &blind(),
        Version::put(
            Dot::new(3, 1),
            12,
            Some(99),
            Bytes::from(vec![0u8, 255, 10]),
        ),
    );
    let bytes = s.encode();
    assert_eq!(bytes[0], 1);
    assert_eq!(Siblings::decode(&bytes).unwrap(), s);
}

#[test]
fn a_shared_decode_equals_a_copying_one_and_its_values_point_into_the_input() {
    let mut s = Siblings::new();
    s.apply_write(&blind(), put(1, 1, 10, b"first"));
    s.apply_write(&blind(), Version::tombstone(Dot::new(2, 7), 11));
    s.apply_write(&blind(), put(3, 1, 12, b"third"));
    let bytes = Bytes::from(s.encode());
    let shared = Siblings::decode_shared(&bytes).unwrap();
    assert_eq!(shared, s);
    assert_eq!(shared, Siblings::decode(&bytes).unwrap());
    let within = bytes.as_ptr_range();
    let values: Vec<&Bytes> = shared
        .versions()
        .iter()
        .filter_map(Version::value)
        .collect();
    assert_eq!(values.len(), 2);
    for value in values {
        assert!(within.contains(&value.as_ptr()), "value copied out");
    }
    // Bad input is refused the same way.
    for cut in 1..bytes.len() {
        assert!(Siblings::decode_shared(&bytes.slice(..cut)).is_err());
    }
}

#[test]
fn corrupt_bytes_rejected() {
    let mut s = Siblings::new();
    s.apply_write(&blind(), put(1, 1, 10, b"hello"));
    let bytes = s.encode();
    assert!(Siblings::decode(&[]).is_err());
    assert!(Siblings::decode(&[2]).is_err());
    for cut in 1..bytes.len() {
        assert!(Siblings::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(Siblings::decode(&long).is_err());
    assert!(matches!(
        Siblings::decode(b"\x01garbage garbage"),
        Err(VersionError::Corrupt(_))
    ));
}

/// Builds raw storage bytes without going through the validating type.
fn raw(versions: Vec<Version>, context: &[(NodeId, u64)]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Raw {
        versions: Vec<Version>,
        context: std::collections::BTreeMap<NodeId, u64>,
    }
    let raw = Raw {
        versions,
        context: context.iter().copied().collect(),
    };
    let mut out = vec![1];
    out.extend(postcard::to_stdvec(&raw).unwrap());
    out
}

#[test]
fn decode_validates_invariant() {
    let ok = raw(
        vec![put(1, 1, 0, b"a"), put(2, 1, 0, b"b")],
        &[(1, 1), (2, 1)],
    );
    assert!(Siblings::decode(&ok).is_ok());
    let uncovered = raw(vec![put(1, 2, 0, b"a")], &[(1, 1)]);
    assert!(Siblings::decode(&uncovered).is_err());
    let unsorted = raw(
        vec![put(2, 1, 0, b"b"), put(1, 1, 0, b"a")],
        &[(1, 1), (2, 1)],
    );
    assert!(Siblings::decode(&unsorted).is_err());
    let dup = raw(vec![put(1, 1, 0, b"a"), put(1, 1, 0, b"a")], &[(1, 1)]);
    assert!(Siblings::decode(&dup).is_err());
    let zero = raw(vec![put(1, 0, 0, b"a")], &[(1, 1)]);
    assert!(Siblings::decode(&zero).is_err());
    let zero_ctx = raw(vec![], &[(1, 0)]);
    assert!(Siblings::decode(&zero_ctx).is_err());
    // The serde path validates too (peers may embed Siblings in messages).
    assert!(postcard::from_bytes::<Siblings>(&uncovered[1..]).is_err());
}
