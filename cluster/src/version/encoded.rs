//! [`EncodedSiblings`]: a sibling set in its storage encoding, as replicas
//! ship it on the quorum path.
//!
//! A replica answers a read with the bytes it stores, without decoding them,
//! and a coordinator replicates a write with the bytes it just stored, one
//! shared buffer for every target. The encoding is canonical (versions
//! sorted by dot, the context a sorted map, postcard's varints have one
//! form), so two encodings are equal exactly when the states are: a
//! coordinator compares the answers of replicas that agree, the common case,
//! as bytes, and decodes one of them.
//!
//! CAVEATS:
//! - The bytes are not checked until [`EncodedSiblings::decode`]: whatever
//!   comes from a peer must be decoded (validated) before it is trusted or
//!   stored, or compared with bytes that were.
//! - Equal bytes for equal states hold for bytes this code encoded. A peer
//!   that encoded a state some other way (not one of ours: postcard may
//!   accept a padded varint) would make equal states look different, which
//!   costs extra merges and anti-entropy rounds but loses nothing: a merge
//!   that changes nothing stores nothing.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Siblings, VersionError};

/// A [`Siblings`] as [`Siblings::encode`] writes it; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncodedSiblings(Bytes);

impl EncodedSiblings {
    /// Encodes `state`.
    pub fn encode(state: &Siblings) -> EncodedSiblings {
        EncodedSiblings(Bytes::from(state.encode()))
    }

    /// Bytes read from storage, as they are (checked on decode).
    pub fn from_stored(bytes: Bytes) -> EncodedSiblings {
        EncodedSiblings(bytes)
    }

    /// The encoding of the empty state (a key never written here): the
    /// format byte, no versions, an empty context.
    pub fn empty() -> EncodedSiblings {
        EncodedSiblings(Bytes::from_static(&[1, 0, 0]))
    }

    /// Decodes and validates the state (see [`Siblings::decode`]).
    /// Values share this encoding's buffer, which holds just this state.
    pub fn decode(&self) -> Result<Siblings, VersionError> {
        Siblings::decode_shared(&self.0)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length of the encoding, for bounding batches.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes at all (never a valid encoding).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&Siblings> for EncodedSiblings {
    fn from(state: &Siblings) -> EncodedSiblings {
        EncodedSiblings::encode(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Dot, Version, VersionVector};

    fn written(values: &[(u64, u64, &str)]) -> Siblings {
        let mut s = Siblings::default();
        for &(node, counter, value) in values {
            s.apply_write(
                &VersionVector::default(),
                Version::put(
                    Dot { node, counter },
                    5,
                    None,
                    Bytes::from(value.to_owned()),
                ),
            );
        }
        s
    }

    #[test]
    fn equal_states_have_equal_encodings_and_different_ones_do_not() {
        // The same versions reached in another order encode the same.
        let a = written(&[(1, 1, "x"), (2, 1, "y")]);
        let mut b = written(&[(2, 1, "y")]);
        b.merge(&written(&[(1, 1, "x")]));
        assert_eq!(a, b);
        assert_eq!(EncodedSiblings::encode(&a), EncodedSiblings::encode(&b));
        let c = written(&[(1, 1, "x"), (2, 1, "z")]);
        assert_ne!(EncodedSiblings::encode(&a), EncodedSiblings::encode(&c));
        assert_eq!(EncodedSiblings::encode(&a).decode().unwrap(), a);
    }

    #[test]
    fn garbage_is_refused_on_decode() {
        assert!(EncodedSiblings::from_stored(Bytes::from_static(b""))
            .decode()
            .is_err());
        assert!(
            EncodedSiblings::from_stored(Bytes::from_static(b"\x01\xff\xff"))
                .decode()
                .is_err()
        );
        assert_eq!(
            EncodedSiblings::empty().decode().unwrap(),
            Siblings::default()
        );
        assert_eq!(
            EncodedSiblings::empty(),
            EncodedSiblings::encode(&Siblings::default())
        );
    }

    #[test]
    fn it_travels_as_plain_bytes() {
        let state = written(&[(3, 7, "v")]);
        let encoded = EncodedSiblings::encode(&state);
        let wire = postcard::to_allocvec(&encoded).unwrap();
        let back: EncodedSiblings = postcard::from_bytes(&wire).unwrap();
        assert_eq!(back, encoded);
        assert_eq!(back.decode().unwrap(), state);
    }
}
