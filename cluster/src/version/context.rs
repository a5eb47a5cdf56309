//! The opaque causal context exchanged with clients (`DGET` / `DPUT`).

use bytes::Bytes;

use super::{Siblings, VersionError, VersionVector};

/// Marks (and versions) a non-empty context encoding; a leading byte that is
/// not this is rejected at once.
const CONTEXT_MAGIC: u8 = 0xD1;
/// Trailing FNV-1a checksum length.
const CHECKSUM_LEN: usize = 4;

/// What a client gets from `DGET` and sends back with `DPUT`/`DDEL`: the
/// version vector of the state it read. It is opaque to clients; a write
/// carrying it supersedes exactly the versions it covers.
///
/// Encoding: the empty context (key never written, or a blind write) is the
/// empty byte string. Anything else is `0xD1`, the postcard encoding of the
/// vector (varints, so a few bytes per node), then a 4-byte little-endian
/// FNV-1a-32 of everything before it. Decoding accepts only the canonical
/// encoding, so a decoded context re-encodes to the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context(VersionVector);

impl Context {
    /// The context of a replica's (or a merged quorum's) state of a key.
    pub fn of(siblings: &Siblings) -> Context {
        Context(siblings.context().clone())
    }

    /// Wraps a version vector.
    pub fn new(vv: VersionVector) -> Context {
        Context(vv)
    }

    /// True for the context of a key never written: a blind write.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The version vector, borrowed.
    pub fn as_vv(&self) -> &VersionVector {
        &self.0
    }

    /// The version vector, owned.
    pub fn into_inner(self) -> VersionVector {
        self.0
    }

    /// The client-facing bytes (empty for the empty context).
    pub fn encode(&self) -> Bytes {
        if self.0.is_empty() {
            return Bytes::new();
        }
        let mut out = vec![CONTEXT_MAGIC];
        // Serialising a map of integers into a Vec cannot fail.
        let body = postcard::to_stdvec(&self.0).expect("postcard serialisation to a Vec");
        out.extend_from_slice(&body);
        let sum = fnv1a32(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Bytes::from(out)
    }

    /// Parses client-supplied bytes. Empty bytes are the empty context; any
    /// other input must be a canonical encoding with a matching checksum, or
    /// the result is [`VersionError::InvalidContext`]. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Context, VersionError> {
        if bytes.is_empty() {
            return Ok(Context::default());
        }
        if bytes.len() < 1 + CHECKSUM_LEN || bytes[0] != CONTEXT_MAGIC {
            return Err(VersionError::InvalidContext);
        }
        let (signed, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let sum = u32::from_le_bytes(sum.try_into().map_err(|_| VersionError::InvalidContext)?);
        if fnv1a32(signed) != sum {
            return Err(VersionError::InvalidContext);
        }
        let (vv, rest) = postcard::take_from_bytes::<VersionVector>(&signed[1..])
            .map_err(|_| VersionError::InvalidContext)?;
        if !rest.is_empty() {
            return Err(VersionError::InvalidContext);
        }
        let ctx = Context(vv);
        // Reject non-canonical forms (empty vector spelt out, overlong
        // varints, unsorted or duplicate nodes) so that bytes <-> context is a
        // bijection and equal contexts always look equal to clients.
        if ctx.encode().as_ref() != bytes {
            return Err(VersionError::InvalidContext);
        }
        Ok(ctx)
    }
}

impl From<VersionVector> for Context {
    fn from(vv: VersionVector) -> Context {
        Context(vv)
    }
}

/// 32-bit FNV-1a: a few lines, no dependency, and plenty to catch typos,
/// truncation and random bytes (it is not meant to resist forgery).
fn fnv1a32(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in data {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Dot;

    fn ctx(pairs: &[(u64, u64)]) -> Context {
        Context(pairs.iter().copied().collect())
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn empty_context_is_empty_bytes() {
        assert!(Context::default().encode().is_empty());
        assert_eq!(Context::decode(b"").unwrap(), Context::default());
        assert!(Context::decode(b"").unwrap().is_empty());
    }

    #[test]
    fn round_trip_and_compact() {
        let c = ctx(&[(1, 3), (2, 300), (u64::MAX, u64::MAX)]);
        let bytes = c.encode();
        assert_eq!(Context::decode(&bytes).unwrap(), c);
        let small = ctx(&[(1, 3), (2, 5), (3, 7)]);
        // magic + len + 3 * (node, counter) + checksum
        assert_eq!(small.encode().len(), 1 + 1 + 6 + 4);
    }

    #[test]
    fn corrupt_contexts_rejected() {
        let good = ctx(&[(1, 3), (2, 9)]).encode();
        for cut in 1..good.len() {
            assert_eq!(
                Context::decode(&good[..cut]),
                Err(VersionError::InvalidContext)
            );
        }
        for i in 0..good.len() {
            let mut bad = good.to_vec();
            bad[i] ^= 0x01;
            assert_eq!(Context::decode(&bad), Err(VersionError::InvalidContext));
        }
        let mut long = good.to_vec();
        long.push(0);
        assert!(Context::decode(&long).is_err());
        assert!(Context::decode(b"hello world").is_err());
        assert_eq!(VersionError::InvalidContext.to_string(), "invalid context");
    }

    #[test]
    fn non_canonical_rejected() {
        // An explicitly encoded empty vector: valid checksum, but the
        // canonical form of the empty context is the empty string.
        let mut bytes = vec![CONTEXT_MAGIC, 0];
        bytes.extend_from_slice(&fnv1a32(&bytes).to_le_bytes());
        assert!(Context::decode(&bytes).is_err());
        // Overlong varint for the node id (1 spelt as 0x81 0x00).
        let mut bytes = vec![CONTEXT_MAGIC, 1, 0x81, 0x00, 2];
        bytes.extend_from_slice(&fnv1a32(&bytes).to_le_bytes());
        assert!(Context::decode(&bytes).is_err());
        // A zero entry.
        let mut bytes = vec![CONTEXT_MAGIC, 1, 5, 0];
        bytes.extend_from_slice(&fnv1a32(&bytes).to_le_bytes());
        assert!(Context::decode(&bytes).is_err());
    }

    #[test]
    fn of_siblings() {
        let mut s = Siblings::new();
        assert!(Context::of(&s).encode().is_empty());
        s.apply_write(
            &VersionVector::new(),
            crate::version::Version::put(Dot::new(4, 2), 10, None, Bytes::from_static(b"v")),
        );
        let c = Context::of(&s);
        assert_eq!(c.as_vv().get(4), 2);
        assert_eq!(c.clone().into_inner(), *s.context());
        assert_eq!(Context::from(s.context().clone()), c);
    }
}
