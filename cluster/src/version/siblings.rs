//! The causal state of one key on one replica: versions plus causal context.

use std::cmp::Ordering;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::{Dot, NodeId, VersionError, VersionVector};

/// First byte of [`Siblings::encode`]; bump it when the layout changes so old
/// data is recognised instead of misread.
const STORAGE_FORMAT: u8 = 1;

/// What a version holds: a value, or the fact that the key was deleted.
///
/// A tombstone is a real version with its own dot: it supersedes what its
/// write's context covered and stays around as a sibling of concurrent writes,
/// so a deletion can be replicated and ordered like any other write.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// A binary-safe value.
    Value(Bytes),
    /// A deletion marker.
    Tombstone,
}

/// One write of a key: its dot, metadata and payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Unique name of the write; decides causality.
    pub dot: Dot,
    /// Coordinator's wall clock at the write, in ms since the Unix epoch. Only
    /// used to pick a [`Siblings::winner`] for plain `GET`, never causality.
    pub timestamp_ms: u64,
    /// Absolute expiry in ms since the Unix epoch, if any.
    pub expires_at_ms: Option<u64>,
    /// Value or tombstone.
    pub payload: Payload,
}

impl Version {
    /// A version holding `value`.
    pub fn put(dot: Dot, timestamp_ms: u64, expires_at_ms: Option<u64>, value: Bytes) -> Version {
        Version {
            dot,
            timestamp_ms,
            expires_at_ms,
            payload: Payload::Value(value),
        }
    }

    /// A tombstone (never expires: it must outlive what it deleted).
    pub fn tombstone(dot: Dot, timestamp_ms: u64) -> Version {
        Version {
            dot,
            timestamp_ms,
            expires_at_ms: None,
            payload: Payload::Tombstone,
        }
    }

    /// Whether this version is a deletion marker.
    pub fn is_tombstone(&self) -> bool {
        matches!(self.payload, Payload::Tombstone)
    }

    /// Whether the version has expired at `now_ms` (`expires_at_ms <= now_ms`).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// The value, or `None` for a tombstone (expiry is not considered).
    pub fn value(&self) -> Option<&Bytes> {
        match &self.payload {
            Payload::Value(v) => Some(v),
            Payload::Tombstone => None,
        }
    }

    /// A value that has not expired at `now_ms`: what `DGET` lists.
    pub fn is_live(&self, now_ms: u64) -> bool {
        !self.is_tombstone() && !self.is_expired(now_ms)
    }

    /// Total order on everything but the dot. Two versions with one dot are
    /// normally identical; if a reused dot (a caller bug) ever produces two
    /// different ones, merge keeps the greater so replicas still converge.
    fn cmp_content(&self, other: &Version) -> Ordering {
        (self.timestamp_ms, self.expires_at_ms, &self.payload).cmp(&(
            other.timestamp_ms,
            other.expires_at_ms,
            &other.payload,
        ))
    }
}

/// All a replica knows about one key: the versions it holds (sorted by dot,
/// dots unique) and the causal context (every dot it has seen, including
/// superseded ones it no longer holds).
///
/// Invariant: the context covers every held dot. `Deserialize` and
/// [`Siblings::decode`] check it (and the ordering), so data from disk or the
/// network cannot break it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SiblingsWire")]
pub struct Siblings {
    #[serde(serialize_with = "serialize_versions")]
    versions: Versions,
    context: VersionVector,
}

/// A key's versions: nearly always one (siblings are the exception), kept
/// inline so decoding a state does not allocate for them.
type Versions = SmallVec<[Version; 1]>;

fn serialize_versions<S: serde::Serializer>(
    versions: &Versions,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(versions.iter())
}

/// Unvalidated wire shape of [`Siblings`] (same layout as its derive).
#[derive(Deserialize)]
struct SiblingsWire {
    versions: Vec<Version>,
    context: VersionVector,
}

/// Borrowing shape of an encoded [`Siblings`] (the same layout): values
/// stay in the input, so a decode copies each one once, or not at all.
#[derive(Deserialize)]
struct SiblingsView<'a> {
    #[serde(borrow, deserialize_with = "deserialize_views")]
    versions: SmallVec<[VersionView<'a>; 1]>,
    context: VersionVector,
}

/// The versions of a [`SiblingsView`], inline like [`Versions`].
fn deserialize_views<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SmallVec<[VersionView<'a>; 1]>, D::Error> {
    struct Views<'a>(std::marker::PhantomData<VersionView<'a>>);

    impl<'de: 'a, 'a> serde::de::Visitor<'de> for Views<'a> {
        type Value = SmallVec<[VersionView<'a>; 1]>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a sequence of versions")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut views = SmallVec::new();
            while let Some(view) = seq.next_element()? {
                views.push(view);
            }
            Ok(views)
        }
    }

    deserializer.deserialize_seq(Views(std::marker::PhantomData))
}

/// Borrowing shape of a [`Version`].
#[derive(Deserialize)]
struct VersionView<'a> {
    dot: Dot,
    timestamp_ms: u64,
    expires_at_ms: Option<u64>,
    #[serde(borrow)]
    payload: PayloadView<'a>,
}

/// Borrowing shape of a [`Payload`].
#[derive(Deserialize)]
enum PayloadView<'a> {
    Value(&'a [u8]),
    Tombstone,
}

impl TryFrom<SiblingsWire> for Siblings {
    type Error = String;

    fn try_from(wire: SiblingsWire) -> Result<Self, Self::Error> {
        Siblings::checked(Versions::from_vec(wire.versions), wire.context)
    }
}

impl Siblings {
    /// A state from foreign parts, if they keep the invariant: non-zero
    /// counters, dots strictly sorted and covered by the context.
    fn checked(versions: Versions, context: VersionVector) -> Result<Siblings, String> {
        for v in &versions {
            if v.dot.counter == 0 {
                return Err(format!("dot {} has counter 0", v.dot));
            }
            if !context.covers(&v.dot) {
                return Err(format!("context does not cover dot {}", v.dot));
            }
        }
        if let Some(w) = versions.windows(2).find(|w| w[0].dot >= w[1].dot) {
            return Err(format!("dots not strictly sorted at {}", w[1].dot));
        }
        Ok(Siblings { versions, context })
    }

    /// The state of a key never written (or never heard of) here.
    pub fn new() -> Siblings {
        Siblings::default()
    }

    /// No versions and an empty context: nothing is known about the key, so
    /// dropping the state loses nothing. (A key with only a context still
    /// remembers deletions and is *not* empty.)
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.context.is_empty()
    }

    /// Held versions in dot order, tombstones and expired ones included.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// The causal context: every dot seen for this key.
    pub fn context(&self) -> &VersionVector {
        &self.context
    }

    /// Number of held versions (tombstones and expired ones included).
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Smallest counter `node` may use for a new write of this key given the
    /// client's context: one above anything the local state or the client
    /// context covers for `node`. A dot below it would be born superseded.
    /// This is a floor, not a counter source: take
    /// `max(node_counter.next(), floor)` and persist the result.
    pub fn min_fresh_counter(&self, node: NodeId, client_context: &VersionVector) -> u64 {
        self.context
            .get(node)
            .max(client_context.get(node))
            .saturating_add(1)
    }

    /// Applies a write coordinated by this replica.
    ///
    /// Removes every held version whose dot `client_context` covers (the
    /// client saw those, so its write replaces them), inserts `version`, and
    /// makes the context cover both `client_context` and the new dot. Versions
    /// the client did not see stay as siblings. Returns how many held versions
    /// were superseded.
    ///
    /// `version.dot` must be fresh: never issued before and not covered by
    /// `client_context` nor by this state's context (see
    /// [`Siblings::min_fresh_counter`]). A stale dot does not break the
    /// struct's invariants, but other replicas may discard the write as
    /// already superseded. If the dot is already held, the new version
    /// replaces it.
    pub fn apply_write(&mut self, client_context: &VersionVector, version: Version) -> usize {
        let before = self.versions.len();
        self.versions.retain(|v| !client_context.covers(&v.dot));
        let superseded = before - self.versions.len();
        self.context.join(client_context);
        self.context.add(version.dot);
        match self.versions.binary_search_by(|v| v.dot.cmp(&version.dot)) {
            Ok(i) => self.versions[i] = version,
            Err(i) => self.versions.insert(i, version),
        }
        superseded
    }

    /// Merges another replica's state of the same key into this one.
    ///
    /// A version survives if both sides hold it, or if one side holds it and
    /// the other's context does not cover its dot (the other has not heard of
    /// it). A version one side holds and the other has seen but dropped was
    /// superseded (or purged) there, so it goes. The context becomes the join.
    /// Commutative, associative and idempotent on well-formed states.
    pub fn merge(&mut self, other: &Siblings) {
        let mine = std::mem::take(&mut self.versions);
        let mut merged = Versions::with_capacity(mine.len().max(other.versions.len()));
        let mut theirs = other.versions.iter().peekable();
        let mut mine = mine.into_iter().peekable();
        loop {
            let order = match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.dot.cmp(&b.dot),
            };
            match order {
                Ordering::Less => {
                    let a = mine.next().expect("peeked");
                    if !other.context.covers(&a.dot) {
                        merged.push(a);
                    }
                }
                Ordering::Greater => {
                    let b = theirs.next().expect("peeked");
                    if !self.context.covers(&b.dot) {
                        merged.push(b.clone());
                    }
                }
                Ordering::Equal => {
                    let a = mine.next().expect("peeked");
                    let b = theirs.next().expect("peeked");
                    if b.cmp_content(&a) == Ordering::Greater {
                        merged.push(b.clone());
                    } else {
                        merged.push(a);
                    }
                }
            }
        }
        self.versions = merged;
        self.context.join(&other.context);
    }

    /// Values that are neither tombstones nor expired at `now_ms`, in dot
    /// order: what `DGET` returns.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &Version> + '_ {
        self.versions.iter().filter(move |v| v.is_live(now_ms))
    }

    /// Whether any live value remains at `now_ms`.
    pub fn has_live(&self, now_ms: u64) -> bool {
        self.live(now_ms).next().is_some()
    }

    /// The version a plain `GET` answers with: among versions not expired at
    /// `now_ms` (tombstones included), the one with the highest
    /// `(timestamp_ms, dot)`. The caller treats a tombstone winner as "no
    /// value". Depends only on the siblings, so every node agrees.
    pub fn winner(&self, now_ms: u64) -> Option<&Version> {
        self.versions
            .iter()
            .filter(|v| !v.is_expired(now_ms))
            .max_by_key(|v| (v.timestamp_ms, v.dot))
    }

    /// The winner's value, `None` if there is no winner or it is a tombstone.
    pub fn winner_value(&self, now_ms: u64) -> Option<&Bytes> {
        self.winner(now_ms).and_then(Version::value)
    }

    /// Drops versions expired at `now_ms` and returns how many. The context
    /// keeps covering them, so merging a replica that still holds them does
    /// not bring them back.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        let before = self.versions.len();
        self.versions.retain(|v| !v.is_expired(now_ms));
        before - self.versions.len()
    }

    /// No live value remains at `now_ms`: every held version is a tombstone
    /// or expired (or none is held). In a single-node store such a key can be
    /// deleted outright, because no other replica can resurrect it and fresh
    /// dots come from the node-wide counter, not from this context. In a
    /// cluster the caller must also know every replica has the tombstone and
    /// nothing is pending for the partition.
    pub fn is_collectable(&self, now_ms: u64) -> bool {
        !self.has_live(now_ms)
    }

    /// About how many bytes the state takes on the wire: its values plus a
    /// fixed allowance per version and per context entry (for bounding
    /// batches, not for accounting).
    pub fn approx_bytes(&self) -> usize {
        let values: usize = self
            .versions
            .iter()
            .map(|v| v.value().map_or(0, |b| b.len()))
            .sum();
        values + 48 * self.versions.len() + 16 * self.context.len()
    }

    /// Storage encoding: a format byte (currently 1) then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.approx_bytes());
        out.push(STORAGE_FORMAT);
        // Serialising plain data into a Vec cannot fail.
        postcard::to_extend(self, out).expect("postcard serialisation to a Vec")
    }

    /// Decodes [`Siblings::encode`] output, rejecting unknown formats,
    /// garbage, truncation, trailing bytes and states that break the
    /// invariant (unsorted or duplicate dots, dots the context does not
    /// cover, zero counters). Never panics. Values are copied out.
    pub fn decode(bytes: &[u8]) -> Result<Siblings, VersionError> {
        Siblings::decode_with(bytes, Bytes::copy_from_slice)
    }

    /// [`Siblings::decode`] whose values share `bytes`' buffer instead of
    /// being copied (they keep that buffer alive: use it on buffers that
    /// hold just this state).
    pub fn decode_shared(bytes: &Bytes) -> Result<Siblings, VersionError> {
        Siblings::decode_with(bytes, |value| bytes.slice_ref(value))
    }

    fn decode_with(
        bytes: &[u8],
        value_of: impl Fn(&[u8]) -> Bytes,
    ) -> Result<Siblings, VersionError> {
        let (&format, body) = bytes
            .split_first()
            .ok_or_else(|| VersionError::Corrupt("empty sibling data".into()))?;
        if format != STORAGE_FORMAT {
            return Err(VersionError::Corrupt(format!(
                "unknown sibling format {format}"
            )));
        }
        let (view, rest) = postcard::take_from_bytes::<SiblingsView>(body)
            .map_err(|e| VersionError::Corrupt(format!("sibling data: {e}")))?;
        if !rest.is_empty() {
            return Err(VersionError::Corrupt(format!(
                "{} trailing bytes after sibling data",
                rest.len()
            )));
        }
        let versions = view
            .versions
            .into_iter()
            .map(|v| Version {
                dot: v.dot,
                timestamp_ms: v.timestamp_ms,
                expires_at_ms: v.expires_at_ms,
                payload: match v.payload {
                    PayloadView::Value(value) => Payload::Value(value_of(value)),
                    PayloadView::Tombstone => Payload::Tombstone,
                },
            })
            .collect();
        Siblings::checked(versions, view.context).map_err(VersionError::Corrupt)
    }
}
