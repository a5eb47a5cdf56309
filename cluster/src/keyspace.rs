//! Where a key lives: its position on the MD5 ring and its storage key.
//!
//! Every key is hashed with MD5 (as in the paper, section 4.2); the first 8
//! bytes of the digest, big-endian, are its ring position. The storage key is
//! that position followed by the user key, so the engine keeps keys in ring
//! order: a partition (a range of positions) is a contiguous key range, and a
//! SCAN cursor is simply the next position to visit.
//!
//! CAVEATS:
//! - Two keys whose positions collide in 64 bits are iterated together; a SCAN
//!   batch boundary never splits them only because a cursor is a position.

use md5::{Digest, Md5};

/// Bytes of ring position in front of every storage key.
pub const POSITION_BYTES: usize = 8;

/// The ring position of a key: the first 64 bits of its MD5 digest.
pub fn ring_position(key: &[u8]) -> u64 {
    let digest = Md5::digest(key);
    let mut head = [0u8; POSITION_BYTES];
    head.copy_from_slice(&digest[..POSITION_BYTES]);
    u64::from_be_bytes(head)
}

/// The engine key for a user key: position (big-endian) then the key.
pub fn storage_key(key: &[u8]) -> Vec<u8> {
    storage_key_at(ring_position(key), key)
}

/// [`storage_key`] of a key whose ring position is already known (`position`
/// must be `ring_position(key)`).
pub fn storage_key_at(position: u64, key: &[u8]) -> Vec<u8> {
    debug_assert_eq!(position, ring_position(key));
    let mut out = Vec::with_capacity(POSITION_BYTES + key.len());
    out.extend_from_slice(&position.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The smallest storage key at or after `position`.
pub fn position_start(position: u64) -> [u8; POSITION_BYTES] {
    position.to_be_bytes()
}

/// Splits a storage key into its position and user key; `None` if it is too
/// short to be one of ours.
pub fn split_storage_key(storage_key: &[u8]) -> Option<(u64, &[u8])> {
    if storage_key.len() < POSITION_BYTES {
        return None;
    }
    let (head, key) = storage_key.split_at(POSITION_BYTES);
    Some((u64::from_be_bytes(head.try_into().ok()?), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_key_round_trips_and_orders_by_position() {
        let a = storage_key(b"alpha");
        let (pos, key) = split_storage_key(&a).unwrap();
        assert_eq!(key, b"alpha");
        assert_eq!(pos, ring_position(b"alpha"));
        let b = storage_key(b"beta");
        assert_eq!(a < b, ring_position(b"alpha") < ring_position(b"beta"));
    }

    #[test]
    fn md5_position_is_stable() {
        // MD5("") = d41d8cd98f00b204...
        assert_eq!(ring_position(b""), 0xd41d8cd98f00b204);
    }
}
