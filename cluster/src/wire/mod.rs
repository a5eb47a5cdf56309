//! The peer protocol: what nodes say to each other on the peer port.
//!
//! # The idea
//!
//! Nodes exchange [`Frame`]s over TCP: each is a 4-byte big-endian length and
//! then the frame encoded with postcard. A connection opens with a handshake
//! ([`Frame::Hello`], [`Frame::Challenge`], [`Frame::Prove`],
//! [`Frame::Welcome`]) that checks the protocol version and the cluster name,
//! so two clusters (or two releases that cannot talk) never mix data, and,
//! with `cluster-secret`, that both ends know the secret ([`secret`]). After that the client side sends [`Frame::Request`]s and the
//! server side answers [`Frame::Response`]s carrying the same request id, in
//! any order: many requests share one connection, and the sender batches the
//! frames that are ready into one write (per-operation round trips are what
//! costs most between nodes).
//!
//! Requests are the replica operations of the paper: read a key's sibling set,
//! merge a sibling set into a replica (replication and read repair), ask an
//! owner to coordinate a write, gossip the membership, and the whole-cluster
//! helpers behind KEYS/SCAN/DBSIZE/FLUSHALL.
//!
//! CAVEATS:
//! - Postcard is not self-describing: a new field is a new protocol version.
//!   [`PROTOCOL_VERSION`] is checked in the handshake for that reason.
//! - Frame size is bounded by the receiver ([`MAX_HANDSHAKE_BYTES`] before the
//!   handshake, then the configured limit); an oversized or undecodable frame
//!   closes the connection.

pub mod secret;

use bytes::Bytes;
use secret::{Nonce, Proof};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::version::{EncodedSiblings, NodeId, Siblings, VersionVector};

/// Version of the frame layout and message set; both sides must agree.
pub const PROTOCOL_VERSION: u16 = 6;

/// Largest frame accepted before the handshake completed.
pub const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

/// Bytes of the length prefix in front of every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// One unit on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Frame {
    /// First frame of the connecting side.
    Hello {
        /// The sender's [`PROTOCOL_VERSION`].
        protocol: u16,
        /// The sender's `cluster-name`; must equal the receiver's.
        cluster_name: String,
        /// The sender's node id.
        node_id: NodeId,
        /// A fresh random nonce the accepting side's proof must cover.
        nonce: Nonce,
    },
    /// The accepting side's answer to a compatible `Hello`.
    Challenge {
        /// The receiver's node id.
        node_id: NodeId,
        /// A fresh random nonce the connecting side's proof must cover.
        nonce: Nonce,
        /// Its proof of the cluster secret (none without one).
        proof: Option<Proof>,
    },
    /// The connecting side's proof of the cluster secret (none without one).
    Prove {
        /// HMAC over both nonces and ids; see [`secret`].
        proof: Option<Proof>,
    },
    /// The accepting side checked the proof: requests may flow.
    Welcome,
    /// The accepting side refuses the connection, and closes it.
    Refused {
        /// Why, for the log of the connecting side.
        reason: String,
    },
    /// A request; the answer carries the same `id`.
    Request {
        /// Chosen by the sender, unique per connection.
        id: u64,
        /// What is asked.
        body: Request,
    },
    /// The answer to the request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: Response,
    },
}

/// A write as the paper's `put(key, context, object)`, shipped to an owner of
/// the key that coordinates it (creates the dot and replicates it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteWrite {
    /// The versions this write supersedes.
    pub context: VersionVector,
    /// Also supersede whatever the coordinating owner holds (plain SET).
    pub supersede_known: bool,
    /// The value, or `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Absolute expiry in Unix milliseconds.
    pub expires_at_ms: Option<u64>,
}

/// What one node asks another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Liveness probe; answered with [`Response::Pong`].
    Ping,
    /// Gossip: the sender's encoded membership state; the receiver merges it
    /// and answers with its own ([`Response::Gossip`]).
    Gossip(Bytes),
    /// A replica's stored sibling set of a key ([`Response::State`]).
    Read {
        /// User key.
        key: Bytes,
    },
    /// Merge this sibling set into the replica's (replication, read repair);
    /// answered with [`Response::Ack`] once stored.
    Merge {
        /// User key.
        key: Bytes,
        /// The coordinator's state of the key after the write, encoded
        /// once for every target.
        state: EncodedSiblings,
    },
    /// Coordinate a write as an owner of the key: answered with
    /// [`Response::Coordinated`].
    Coordinate {
        /// User key.
        key: Bytes,
        /// The write.
        write: Box<RemoteWrite>,
    },
    /// Up to `count` of the receiver's own keys at or after ring position
    /// `cursor` ([`Response::Page`]).
    Scan {
        /// First ring position to visit.
        cursor: u64,
        /// Most keys to return.
        count: u32,
    },
    /// The receiver's count of keys with a live value ([`Response::Count`]).
    CountLive,
    /// Remove every key the receiver stores ([`Response::Ack`]).
    FlushAll,
    /// Hold this sibling set for `owner`, a replica of the key that is down
    /// (hinted handoff); answered with [`Response::Ack`] once stored durably,
    /// [`Response::Failed`] if the hint store is full.
    HintedMerge {
        /// User key.
        key: Bytes,
        /// The coordinator's state of the key after the write (boxed, as
        /// the other large fields: a request is moved several times on its
        /// way to the socket, and its size is its largest variant's).
        siblings: Box<Siblings>,
        /// The replica the write is meant for.
        owner: NodeId,
    },
    /// Anti-entropy, step 1: the receiver's Merkle root of each partition
    /// ([`Response::Hashes`], in the same order), or with `summary` a single
    /// hash of all those roots (so replicas in sync exchange 16 bytes).
    MerkleRoots {
        /// Partitions both sides replicate.
        partitions: Vec<u32>,
        /// Answer one hash over all the roots instead of each root.
        summary: bool,
    },
    /// Anti-entropy, step 2: the hashes of the children of one node of a
    /// partition's tree ([`Response::Hashes`]); level 0 is the root.
    MerkleChildren {
        /// The partition whose roots differed.
        partition: u32,
        /// Level of the node (0 = root).
        level: u8,
        /// Index of the node within its level.
        index: u16,
    },
    /// Anti-entropy, step 3: key digests of the keys in these leaves
    /// ([`Response::Digests`]).
    LeafDigests {
        /// The partition.
        partition: u32,
        /// Leaves whose hashes differed.
        leaves: Vec<u16>,
    },
    /// The receiver's states of several keys ([`Response::States`], same
    /// order; empty states for keys it does not hold).
    ReadMany {
        /// User keys.
        keys: Vec<Bytes>,
    },
    /// Merge several keys' states into the receiver ([`Response::Ack`]).
    MergeMany {
        /// Keys and the sender's states.
        entries: Vec<(Bytes, Siblings)>,
    },
    /// How many hints the receiver holds for `key`, for any owner
    /// ([`Response::Count`]); tombstone collection waits for zero everywhere.
    HintsFor {
        /// User key.
        key: Bytes,
    },
    /// Remove `key` if the receiver's stored state is exactly `expected` and
    /// holds nothing live ([`Response::Count`]: 1 if removed).
    Collect {
        /// User key.
        key: Bytes,
        /// The state every replica was seen to hold.
        expected: Box<Siblings>,
    },
    /// A page of one partition's stored keys, in storage order, after the
    /// storage key `after` (from the start if empty), for a node that is
    /// becoming one of its replicas ([`Response::Chunk`]).
    Fetch {
        /// The partition (of the sender's ring).
        partition: u32,
        /// Last storage key already received; empty for the beginning.
        after: Bytes,
        /// Most keys to return.
        limit: u32,
        /// Return each key's digest instead of its state (the receiver
        /// already has most of them from another old replica).
        digests_only: bool,
    },
    /// The digests of the receiver's stored states of `keys` (0 for none),
    /// answered with [`Response::Digests`] in the same order (handing off
    /// keys this node no longer owns: only differing ones are sent).
    DigestMany {
        /// User keys.
        keys: Vec<Bytes>,
    },
    /// Quorum reads of several keys for one coordinator's batch (pipelined
    /// GETs, MGET): the receiver's states with the hints it holds folded in,
    /// as [`Request::Read`] gives them ([`Response::States`], same order). A
    /// long answer stops early, after at least one state, once it holds
    /// [`MAX_BATCH_REPLY_BYTES`] of values; the sender asks again for the
    /// rest.
    ReadBatch {
        /// User keys.
        keys: Vec<Bytes>,
    },
    /// Replication of several keys' writes for one coordinator's batch:
    /// each merged as [`Request::Merge`]; answered [`Response::Ack`] when
    /// every one is stored, else [`Response::Failed`].
    MergeBatch {
        /// Keys and the coordinator's states after the writes.
        entries: Vec<(Bytes, EncodedSiblings)>,
    },
}

/// Bytes of values after which a [`Request::ReadBatch`] answer stops (the
/// senders also cut [`Request::MergeBatch`]es there), so that batching never
/// builds a frame larger than one key's largest state would.
pub const MAX_BATCH_REPLY_BYTES: usize = 4 << 20;

/// Why a remote operation failed, as the coordinator reports it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum RemoteError {
    /// The write's quorum was not reached.
    #[error("UNAVAILABLE needed {needed} replicas, got {got}")]
    Unavailable {
        /// Acknowledgements needed (W).
        needed: usize,
        /// Acknowledgements received.
        got: usize,
    },
    /// The context was refused.
    #[error("invalid context")]
    InvalidContext,
    /// Sibling cap reached.
    #[error("too many siblings for this key (max {max})")]
    TooManySiblings {
        /// The owner's `max-siblings`.
        max: usize,
    },
    /// Anything else (storage, corrupt data), as text.
    #[error("{0}")]
    Other(String),
}

/// What a node answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong,
    /// The receiver's encoded membership state after merging.
    Gossip(Bytes),
    /// The replica's sibling set as it stores it (the empty state's
    /// encoding if it holds nothing).
    State(EncodedSiblings),
    /// Done.
    Ack,
    /// Outcome of a coordinated write: the key's siblings afterwards.
    Coordinated(Result<Siblings, RemoteError>),
    /// A page of keys with their sibling sets; `next` is 0 when done.
    Page {
        /// Keys and their stored states, in ring order.
        entries: Vec<(Bytes, Siblings)>,
        /// Where to continue, 0 if the scan wrapped.
        next: u64,
    },
    /// A count.
    Count(u64),
    /// Merkle hashes (roots or leaves).
    Hashes(Vec<u128>),
    /// Keys and the digests of their stored states.
    Digests(Vec<(Bytes, u128)>),
    /// Several keys' stored states.
    States(Vec<EncodedSiblings>),
    /// A page of a partition transfer.
    Chunk {
        /// Keys with their stored states (empty when digests were asked).
        entries: Vec<(Bytes, Siblings)>,
        /// Keys with the digests of their stored states (when asked).
        digests: Vec<(Bytes, u128)>,
        /// Storage key to continue after; `None` when the partition is done.
        next: Option<Bytes>,
        /// Stored bytes (keys and states) the page covers.
        bytes: u64,
    },
    /// The request failed on the receiver.
    Failed(String),
}

/// A frame that could not be encoded or decoded.
#[derive(Debug, Error)]
#[error("peer frame: {0}")]
pub struct WireError(#[from] postcard::Error);

impl Frame {
    /// Encodes the frame body (without the length prefix).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        Ok(postcard::to_stdvec(self)?)
    }

    /// Appends the length prefix and the frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        // Straight into `out` (no buffer per frame), the length patched in
        // afterwards; on an error `out` is left as it was.
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        if let Err(error) = postcard::to_extend(self, Appender(out)) {
            out.truncate(start);
            return Err(error.into());
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Decodes a frame body; rejects trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Frame, WireError> {
        let (frame, rest) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            return Err(WireError(postcard::Error::DeserializeUnexpectedEnd));
        }
        Ok(frame)
    }
}

/// Appends what postcard writes to a borrowed buffer.
struct Appender<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Appender<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0.extend(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_stays_small_and_its_boxed_fields_encode_as_before() {
        // Every write moves its requests several times on the way to the
        // socket: large fields are boxed so that a request is not the size
        // of a whole sibling set.
        assert!(std::mem::size_of::<Request>() <= 80);
        // A box adds nothing on the wire: a HintedMerge encodes as its
        // fields do, in order.
        let siblings = Siblings::default();
        let request = Request::HintedMerge {
            key: Bytes::from_static(b"k"),
            siblings: Box::new(siblings.clone()),
            owner: 9,
        };
        let boxed = postcard::to_stdvec(&request).unwrap();
        let mut plain = postcard::to_stdvec(&request_tag(&request)).unwrap();
        plain.extend(postcard::to_stdvec(&(Bytes::from_static(b"k"), siblings, 9u64)).unwrap());
        assert_eq!(boxed, plain);
    }

    /// The variant index postcard writes first for `request`.
    fn request_tag(request: &Request) -> u32 {
        let encoded = postcard::to_stdvec(request).unwrap();
        postcard::from_bytes::<u32>(&encoded).unwrap()
    }

    #[test]
    fn frames_appended_to_one_buffer_decode_one_by_one() {
        let frames = [
            Frame::Request {
                id: 7,
                body: Request::ReadBatch {
                    keys: vec![Bytes::from("a"), Bytes::from("bb")],
                },
            },
            Frame::Response {
                id: 7,
                body: Response::States(vec![EncodedSiblings::empty(), EncodedSiblings::empty()]),
            },
            Frame::Welcome,
        ];
        let mut buf = b"earlier".to_vec();
        for frame in &frames {
            frame.encode_into(&mut buf).unwrap();
        }
        let mut rest = &buf[b"earlier".len()..];
        for frame in &frames {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let decoded = Frame::decode(&rest[4..4 + len]).unwrap();
            assert_eq!(format!("{decoded:?}"), format!("{frame:?}"));
            assert_eq!(frame.encode().unwrap(), rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        assert!(rest.is_empty());
    }
}
