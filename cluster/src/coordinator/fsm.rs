//! Quorum reads and writes as state machines (the paper's sections 4.5, 5).
//!
//! # The idea
//!
//! A coordinated request is a value fed events: replica answers and one
//! timeout. Each call returns what to do next as [`FsmOutput`]s (send this
//! request to that node, reply to the client with this result). The runtime
//! sends the messages over TCP and calls back with the answers; tests call the
//! same methods by hand and can drop, delay, duplicate and reorder answers at
//! will. No sockets, clocks or tasks in here.
//!
//! - [`GetFsm`]: ask the first `fanout` targets (at least R; all N in the
//!   paper) for their state of the key, and the next target whenever one
//!   fails; once R have answered, reply with the merge of what they sent (the
//!   sibling set DGET returns). Keep collecting late answers until every asked
//!   target answered or the timeout fires, then send the final merge to every
//!   replica whose state differed from it (read repair). Merging is a join, so
//!   a repair can only add what the replica missed.
//! - [`PutFsm`]: the coordinator has already applied the write locally (with
//!   a fresh dot) and counts as the first acknowledgement; send the resulting
//!   sibling set to the other targets to merge, and reply once W
//!   acknowledgements are in.
//!
//! Either machine replies `Unavailable { needed, got }` as soon as the quorum
//! can no longer be reached (too many failures) or when the timeout fires
//! first. A failed write may still have reached some replicas; the error says
//! how many acknowledged it.
//!
//! CAVEATS:
//! - Answers from nodes that are not targets, and second answers from one
//!   node, are ignored, so duplicated or misrouted messages are harmless.

use bytes::Bytes;
use smallvec::SmallVec;

use super::ClusterError;
use crate::{
    version::{EncodedSiblings, NodeId, Siblings},
    wire::Request,
};

/// A replica's answer as the state machines see it.
#[derive(Debug, Clone)]
pub enum ReplicaAnswer {
    /// The replica's stored state of the key, as it stores it (decoded, and
    /// so validated, by the read before it counts).
    State(EncodedSiblings),
    /// The replica merged and stored what it was sent.
    Stored,
    /// The replica could not be reached or failed the request.
    Failed,
}

impl ReplicaAnswer {
    /// The answer of a replica that holds `state`.
    pub fn of(state: &Siblings) -> ReplicaAnswer {
        ReplicaAnswer::State(EncodedSiblings::encode(state))
    }
}

/// A few replicas, kept inline: a machine is read again when its answers
/// come, often after its lines left the cache, and lists on the heap would
/// cost a miss each (N is small).
pub type NodeList = SmallVec<[NodeId; 4]>;

/// What the runtime must do next.
#[derive(Debug)]
pub enum FsmOutput {
    /// Send `request` to node `to` and feed its answer back.
    Send {
        /// Destination node.
        to: NodeId,
        /// The request.
        request: Request,
        /// True for read repairs sent after the reply (for counting).
        repair: bool,
    },
    /// Answer the client; emitted exactly once per request.
    Reply(Result<Siblings, ClusterError>),
}

/// A quorum read of one key.
#[derive(Debug)]
pub struct GetFsm {
    key: Bytes,
    targets: NodeList,
    no_repair: NodeList,
    sent: usize,
    r: usize,
    /// Who answered: `None` for a failure, else whether the state it sent
    /// equals [`GetFsm::merged`] as it is now.
    answered: SmallVec<[(NodeId, Option<bool>); 4]>,
    merged: Option<Merged>,
    replied: bool,
    finished: bool,
}

/// The merge of the states read so far, decoded and encoded.
#[derive(Debug)]
struct Merged {
    state: Siblings,
    encoded: EncodedSiblings,
}

impl GetFsm {
    /// Starts a read of `key` from `targets` (distinct nodes) needing `r`
    /// answers, asking all of them at once.
    pub fn start(key: Bytes, targets: Vec<NodeId>, r: usize) -> (GetFsm, Vec<FsmOutput>) {
        let fanout = targets.len();
        GetFsm::start_with_fanout(key, targets, r, fanout)
    }

    /// Like [`GetFsm::start`], asking only the first `fanout` targets (raised
    /// to `r`) at first; each failure asks the next target instead.
    pub fn start_with_fanout(
        key: Bytes,
        targets: Vec<NodeId>,
        r: usize,
        fanout: usize,
    ) -> (GetFsm, Vec<FsmOutput>) {
        let r = r.max(1);
        let sent = fanout.max(r).min(targets.len());
        let mut out: Vec<FsmOutput> = targets[..sent]
            .iter()
            .map(|&to| FsmOutput::Send {
                to,
                request: Request::Read { key: key.clone() },
                repair: false,
            })
            .collect();
        let mut fsm = GetFsm {
            key,
            targets: NodeList::from_vec(targets),
            no_repair: NodeList::new(),
            sent,
            r,
            answered: SmallVec::new(),
            merged: None,
            replied: false,
            finished: false,
        };
        if fsm.targets.len() < fsm.r {
            out.clear();
            fsm.reply_unavailable(&mut out);
            fsm.finished = true;
        }
        (fsm, out)
    }

    /// Never sends read repairs to `nodes` (fallbacks standing in for a
    /// down owner: the key does not belong in their own store).
    pub fn without_repair_to(mut self, nodes: Vec<NodeId>) -> GetFsm {
        self.no_repair = NodeList::from_vec(nodes);
        self
    }

    /// Whether the machine has nothing more to do.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether the client has been answered.
    pub fn has_replied(&self) -> bool {
        self.replied
    }

    /// Feeds the answer of `from`.
    pub fn on_answer(&mut self, from: NodeId, answer: ReplicaAnswer) -> Vec<FsmOutput> {
        let mut out = Vec::new();
        if self.finished
            || !self.targets[..self.sent].contains(&from)
            || self.answered.iter().any(|(n, _)| *n == from)
        {
            return out;
        }
        let in_sync = match answer {
            ReplicaAnswer::State(encoded) => self.take_in(encoded),
            ReplicaAnswer::Stored | ReplicaAnswer::Failed => None,
        };
        self.answered.push((from, in_sync));
        if in_sync.is_none() {
            // Ask the next target in place of the failed one.
            self.ask_next(&mut out);
        }
        let ok = self.successes();
        let failed = self.answered.len() - ok;
        let all_in = self.answered.len() == self.sent;
        if !self.replied {
            if ok >= self.r {
                self.replied = true;
                let merged = self.merged.as_mut().expect("a state was read");
                // Nothing can change the merge once every asked replica
                // answered: it is handed over rather than copied.
                let state = if all_in {
                    std::mem::take(&mut merged.state)
                } else {
                    merged.state.clone()
                };
                out.push(FsmOutput::Reply(Ok(state)));
            } else if failed > self.targets.len() - self.r {
                self.reply_unavailable(&mut out);
            }
        }
        if all_in {
            self.finish(&mut out);
        }
        out
    }

    /// Folds a replica's state into the merge. Returns whether it equals the
    /// merge afterwards, or `None` if it does not decode (the replica then
    /// counts as failed). Replicas usually agree: an answer equal to the
    /// merge, byte for byte, is taken without decoding.
    fn take_in(&mut self, encoded: EncodedSiblings) -> Option<bool> {
        let Some(merged) = &mut self.merged else {
            let state = decode_answer(&encoded)?;
            self.merged = Some(Merged { state, encoded });
            return Some(true);
        };
        if merged.encoded == encoded {
            return Some(true);
        }
        let theirs = decode_answer(&encoded)?;
        let mut next = merged.state.clone();
        next.merge(&theirs);
        if next == merged.state {
            // It is behind the merge; the merge is unchanged.
            return Some(false);
        }
        // The merge grew: whoever matched it before is now behind.
        for (_, in_sync) in &mut self.answered {
            if *in_sync == Some(true) {
                *in_sync = Some(false);
            }
        }
        let same = next == theirs;
        merged.encoded = if same {
            encoded
        } else {
            EncodedSiblings::encode(&next)
        };
        merged.state = next;
        Some(same)
    }

    /// The read is slow (no reply yet after the hedge delay): ask the next
    /// target too, so that one stalled replica does not hold the read up
    /// while another could answer (a hedged request). Whichever R answers
    /// come first make the reply; the late one still feeds read repair.
    pub fn on_hedge(&mut self) -> Vec<FsmOutput> {
        let mut out = Vec::new();
        if !self.finished {
            self.ask_next(&mut out);
        }
        out
    }

    /// Asks the next target not asked yet, if the read still needs answers.
    fn ask_next(&mut self, out: &mut Vec<FsmOutput>) {
        if self.replied || self.sent >= self.targets.len() {
            return;
        }
        out.push(FsmOutput::Send {
            to: self.targets[self.sent],
            request: Request::Read {
                key: self.key.clone(),
            },
            repair: false,
        });
        self.sent += 1;
    }

    /// The deadline passed: reply if not done yet, and repair with what came.
    pub fn on_timeout(&mut self) -> Vec<FsmOutput> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if !self.replied {
            self.reply_unavailable(&mut out);
        }
        self.finish(&mut out);
        out
    }

    fn successes(&self) -> usize {
        self.answered.iter().filter(|(_, s)| s.is_some()).count()
    }

    fn reply_unavailable(&mut self, out: &mut Vec<FsmOutput>) {
        self.replied = true;
        out.push(FsmOutput::Reply(Err(ClusterError::Unavailable {
            needed: self.r,
            got: self.successes(),
        })));
    }

    /// Read repair: the merge goes to every replica whose state differed.
    fn finish(&mut self, out: &mut Vec<FsmOutput>) {
        self.finished = true;
        let Some(merged) = &self.merged else { return };
        for (node, in_sync) in &self.answered {
            if *in_sync == Some(false) && !self.no_repair.contains(node) {
                out.push(FsmOutput::Send {
                    to: *node,
                    request: Request::Merge {
                        key: self.key.clone(),
                        state: merged.encoded.clone(),
                    },
                    repair: true,
                });
            }
        }
    }
}

/// A replica's state, or `None` (logged) if it does not decode.
fn decode_answer(encoded: &EncodedSiblings) -> Option<Siblings> {
    encoded
        .decode()
        .map_err(|error| tracing::warn!(%error, "a replica sent an unreadable state"))
        .ok()
}

/// A replica a write is sent to: an owner of the key, or a fallback node
/// holding it as a hint for the owner `hint_for` (sloppy quorum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteTarget {
    /// Where the write goes.
    pub node: NodeId,
    /// The down owner a fallback stands in for; `None` for an owner.
    pub hint_for: Option<NodeId>,
}

impl WriteTarget {
    /// The replica that must end up with the write.
    pub fn owner(&self) -> NodeId {
        self.hint_for.unwrap_or(self.node)
    }
}

/// The replication of one write the coordinator already stored locally.
#[derive(Debug)]
pub struct PutFsm {
    key: Bytes,
    /// The coordinator's state, until it is handed over in the reply.
    siblings: Option<Siblings>,
    encoded: EncodedSiblings,
    others: SmallVec<[WriteTarget; 4]>,
    w: usize,
    fallbacks_count: bool,
    groups: SmallVec<[AckGroup; 1]>,
    answered: SmallVec<[(NodeId, bool); 4]>,
    timed_out: bool,
    replied: bool,
}

/// A set of replicas that must give W acknowledgements: all targets
/// normally; during a ring change, the replicas under each ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckGroup {
    /// Targets (other than the coordinator) in the group.
    pub nodes: NodeList,
    /// Whether the coordinator's own write counts in this group.
    pub with_coordinator: bool,
    /// Acknowledgements this group needs, if fewer than W: a ring with
    /// fewer than W nodes keeps each key on all of them (at least 1).
    pub needed: Option<usize>,
    /// Nodes of the group that stand in for a down owner of this group's
    /// ring: their acknowledgements count only if fallbacks count.
    pub stand_ins: NodeList,
}

impl AckGroup {
    /// The one group of a write outside a ring change: the coordinator and
    /// every other target, fallbacks as stand-ins; `needed` as the field.
    pub fn everyone(others: &[WriteTarget], needed: Option<usize>) -> AckGroup {
        AckGroup {
            nodes: others.iter().map(|t| t.node).collect(),
            with_coordinator: true,
            needed,
            stand_ins: others
                .iter()
                .filter(|t| t.hint_for.is_some())
                .map(|t| t.node)
                .collect(),
        }
    }
}

impl PutFsm {
    /// Starts replicating `siblings` (the coordinator's state of `key` after
    /// its local write, which counts as one acknowledgement) to the owners
    /// `others`, needing `w` acknowledgements in all.
    pub fn start(
        key: Bytes,
        siblings: Siblings,
        others: Vec<NodeId>,
        w: usize,
    ) -> (PutFsm, Vec<FsmOutput>) {
        let others = others
            .into_iter()
            .map(|node| WriteTarget {
                node,
                hint_for: None,
            })
            .collect();
        PutFsm::start_sloppy(key, siblings, others, w, true)
    }

    /// Like [`PutFsm::start`] with fallback targets among `others`: they get
    /// the write as a hint for their owner, and their acknowledgements count
    /// toward `w` only if `fallbacks_count`.
    pub fn start_sloppy(
        key: Bytes,
        siblings: Siblings,
        others: Vec<WriteTarget>,
        w: usize,
        fallbacks_count: bool,
    ) -> (PutFsm, Vec<FsmOutput>) {
        let everyone = AckGroup::everyone(&others, None);
        let encoded = EncodedSiblings::encode(&siblings);
        PutFsm::start_grouped(
            key,
            (siblings, encoded),
            others,
            w,
            fallbacks_count,
            vec![everyone],
        )
    }

    /// Like [`PutFsm::start_sloppy`], but the write succeeds only once every
    /// group has `w` acknowledgements (a ring change: W under the old ring
    /// and W under the new one), and fails as soon as one group cannot.
    /// `stored` is the coordinator's state and its encoding, which every
    /// owner is sent as it is.
    pub fn start_grouped(
        key: Bytes,
        stored: (Siblings, EncodedSiblings),
        others: impl Into<SmallVec<[WriteTarget; 4]>>,
        w: usize,
        fallbacks_count: bool,
        groups: impl Into<SmallVec<[AckGroup; 1]>>,
    ) -> (PutFsm, Vec<FsmOutput>) {
        let (siblings, encoded) = stored;
        let others = others.into();
        let mut out: Vec<FsmOutput> = others
            .iter()
            .map(|target| FsmOutput::Send {
                to: target.node,
                request: match target.hint_for {
                    None => Request::Merge {
                        key: key.clone(),
                        state: encoded.clone(),
                    },
                    Some(owner) => Request::HintedMerge {
                        key: key.clone(),
                        siblings: Box::new(siblings.clone()),
                        owner,
                    },
                },
                repair: false,
            })
            .collect();
        let mut fsm = PutFsm {
            key,
            siblings: Some(siblings),
            encoded,
            others,
            w: w.max(1),
            fallbacks_count,
            groups: groups.into(),
            answered: SmallVec::new(),
            timed_out: false,
            replied: false,
        };
        fsm.check(&mut out);
        (fsm, out)
    }

    /// The key written.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The state replicated, encoded (what an owner that missed the write
    /// must get, e.g. as a hint).
    pub fn state(&self) -> &EncodedSiblings {
        &self.encoded
    }

    /// Whether every other replica answered (or the deadline passed) and the
    /// client was answered: nothing more can change.
    pub fn is_finished(&self) -> bool {
        self.replied && (self.timed_out || self.answered.len() == self.others.len())
    }

    /// Whether the client has been answered.
    pub fn has_replied(&self) -> bool {
        self.replied
    }

    /// Acknowledgements so far that count toward W (the coordinator's own
    /// included), in the group that has fewest.
    pub fn acks(&self) -> usize {
        self.groups
            .iter()
            .map(|g| self.group_acks(g))
            .min()
            .unwrap_or(0)
    }

    /// Whether `target`'s acknowledgement counts in `group`.
    fn counts_in(&self, group: &AckGroup, target: &WriteTarget) -> bool {
        group.nodes.contains(&target.node)
            && (self.fallbacks_count || !group.stand_ins.contains(&target.node))
    }

    fn group_acks(&self, group: &AckGroup) -> usize {
        let acked = self
            .others
            .iter()
            .filter(|t| self.counts_in(group, t))
            .filter(|t| self.answered.contains(&(t.node, true)))
            .count();
        acked + usize::from(group.with_coordinator)
    }

    /// What the error reports as needed: the largest group requirement.
    fn most_needed(&self) -> usize {
        self.groups
            .iter()
            .map(|g| self.needed(g))
            .max()
            .unwrap_or(self.w)
    }

    fn needed(&self, group: &AckGroup) -> usize {
        group.needed.map_or(self.w, |n| n.clamp(1, self.w))
    }

    fn group_pending(&self, group: &AckGroup) -> usize {
        self.others
            .iter()
            .filter(|t| self.counts_in(group, t))
            .filter(|t| !self.answered.iter().any(|(n, _)| *n == t.node))
            .count()
    }

    /// The owners that do not have the write (their target failed or did not
    /// answer): the coordinator keeps a hint for each.
    pub fn unacknowledged(&self) -> Vec<NodeId> {
        self.others
            .iter()
            .filter(|t| !self.answered.contains(&(t.node, true)))
            .map(WriteTarget::owner)
            .collect()
    }

    /// Feeds the answer of `from`.
    pub fn on_answer(&mut self, from: NodeId, answer: ReplicaAnswer) -> Vec<FsmOutput> {
        let mut out = Vec::new();
        if !self.others.iter().any(|t| t.node == from) {
            return out;
        }
        if self.timed_out || self.answered.iter().any(|(n, _)| *n == from) {
            return out;
        }
        let stored = matches!(answer, ReplicaAnswer::Stored);
        self.answered.push((from, stored));
        self.check(&mut out);
        out
    }

    /// The deadline passed.
    pub fn on_timeout(&mut self) -> Vec<FsmOutput> {
        let mut out = Vec::new();
        if !self.replied {
            self.replied = true;
            out.push(FsmOutput::Reply(Err(ClusterError::Unavailable {
                needed: self.most_needed(),
                got: self.acks(),
            })));
        }
        self.timed_out = true;
        out
    }

    fn check(&mut self, out: &mut Vec<FsmOutput>) {
        if self.replied {
            return;
        }
        let met = self
            .groups
            .iter()
            .all(|g| self.group_acks(g) >= self.needed(g));
        let hopeless = self
            .groups
            .iter()
            .any(|g| self.group_acks(g) + self.group_pending(g) < self.needed(g));
        if met {
            self.replied = true;
            let state = self.siblings.take().expect("replied once");
            out.push(FsmOutput::Reply(Ok(state)));
        } else if hopeless {
            self.replied = true;
            out.push(FsmOutput::Reply(Err(ClusterError::Unavailable {
                needed: self.most_needed(),
                got: self.acks(),
            })));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Dot, Version, VersionVector};

    fn state(node: NodeId, counter: u64, value: &str) -> Siblings {
        let mut s = Siblings::default();
        s.apply_write(
            &VersionVector::default(),
            Version::put(
                Dot { node, counter },
                1,
                None,
                Bytes::from(value.to_string()),
            ),
        );
        s
    }

    fn replies(out: &[FsmOutput]) -> Vec<&Result<Siblings, ClusterError>> {
        out.iter()
            .filter_map(|o| match o {
                FsmOutput::Reply(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn repairs(out: &[FsmOutput]) -> Vec<NodeId> {
        out.iter()
            .filter_map(|o| match o {
                FsmOutput::Send {
                    to, repair: true, ..
                } => Some(*to),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn get_replies_after_r_answers_and_repairs_the_stale_replica_later() {
        let (mut fsm, out) = GetFsm::start(Bytes::from("k"), vec![1, 2, 3], 2);
        assert_eq!(out.len(), 3, "one read per target");
        let fresh = state(9, 1, "v");
        assert!(fsm.on_answer(2, ReplicaAnswer::of(&fresh)).is_empty());
        // A duplicate answer and an answer from a stranger change nothing.
        assert!(fsm.on_answer(2, ReplicaAnswer::of(&fresh)).is_empty());
        assert!(fsm.on_answer(7, ReplicaAnswer::of(&fresh)).is_empty());
        let out = fsm.on_answer(1, ReplicaAnswer::of(&Siblings::default()));
        match replies(&out)[..] {
            [Ok(merged)] => assert_eq!(merged, &fresh),
            ref other => panic!("expected one Ok reply, got {other:?}"),
        }
        assert!(!fsm.is_finished(), "still waiting for node 3");
        // The late answer is stale too; both stale replicas get the merge.
        let out = fsm.on_answer(3, ReplicaAnswer::of(&Siblings::default()));
        assert!(replies(&out).is_empty(), "replies exactly once");
        let mut repaired = repairs(&out);
        repaired.sort();
        assert_eq!(repaired, vec![1, 3]);
        assert!(fsm.is_finished());
    }

    #[test]
    fn get_never_repairs_a_fallback() {
        let (fsm, _) = GetFsm::start(Bytes::from("k"), vec![1, 2, 4], 2);
        let mut fsm = fsm.without_repair_to(vec![4]);
        fsm.on_answer(1, ReplicaAnswer::of(&state(9, 1, "v")));
        fsm.on_answer(2, ReplicaAnswer::of(&Siblings::default()));
        let out = fsm.on_answer(4, ReplicaAnswer::of(&Siblings::default()));
        assert_eq!(
            repairs(&out),
            vec![2],
            "owner 2 is repaired, fallback 4 is not"
        );
    }

    #[test]
    fn get_fails_fast_when_the_quorum_is_out_of_reach() {
        let (mut fsm, _) = GetFsm::start(Bytes::from("k"), vec![1, 2, 3], 2);
        assert!(fsm.on_answer(1, ReplicaAnswer::Failed).is_empty());
        let out = fsm.on_answer(3, ReplicaAnswer::Failed);
        match replies(&out)[..] {
            [Err(ClusterError::Unavailable { needed: 2, got: 0 })] => {}
            ref other => panic!("{other:?}"),
        }
        // Fewer targets than R: refused at once, nothing sent.
        let (fsm, out) = GetFsm::start(Bytes::from("k"), vec![1], 2);
        assert!(fsm.is_finished());
        assert!(matches!(
            replies(&out)[..],
            [Err(ClusterError::Unavailable { needed: 2, got: 0 })]
        ));
    }

    #[test]
    fn get_with_quorum_fanout_asks_r_targets_and_replaces_a_failed_one() {
        let (mut fsm, out) = GetFsm::start_with_fanout(Bytes::from("k"), vec![1, 2, 3], 2, 2);
        let asked: Vec<NodeId> = out
            .iter()
            .filter_map(|o| match o {
                FsmOutput::Send { to, .. } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(asked, vec![1, 2]);
        assert!(
            fsm.on_answer(3, ReplicaAnswer::of(&state(9, 1, "v")))
                .is_empty(),
            "3 was not asked"
        );
        let out = fsm.on_answer(2, ReplicaAnswer::Failed);
        assert!(matches!(
            &out[..],
            [FsmOutput::Send {
                to: 3,
                repair: false,
                ..
            }]
        ));
        fsm.on_answer(1, ReplicaAnswer::of(&Siblings::default()));
        let out = fsm.on_answer(3, ReplicaAnswer::of(&state(9, 1, "v")));
        assert_eq!(replies(&out).len(), 1);
        assert_eq!(repairs(&out), vec![1]);
        assert!(fsm.is_finished());
    }

    #[test]
    fn a_slow_read_asks_the_next_replica_and_replies_with_the_first_r() {
        let (a, b, c) = (1, 2, 3);
        let (mut fsm, out) =
            GetFsm::start_with_fanout(Bytes::from_static(b"k"), vec![a, b, c], 2, 2);
        assert_eq!(out.len(), 2, "R targets at first");
        let v1 = state(a, 1, "v1");
        assert!(replies(&fsm.on_answer(a, ReplicaAnswer::of(&v1))).is_empty());
        // b is stalled: the hedge asks c.
        let hedge = fsm.on_hedge();
        assert!(matches!(
            hedge.as_slice(),
            [FsmOutput::Send { to, repair: false, .. }] if *to == c
        ));
        let out = fsm.on_answer(c, ReplicaAnswer::of(&v1));
        match replies(&out)[..] {
            [Ok(merged)] => assert_eq!(merged, &v1),
            ref other => panic!("expected one reply, got {other:?}"),
        }
        assert!(!fsm.is_finished(), "b's answer is still awaited for repair");
        // Nothing is left to hedge with, and a replied read hedges no more.
        assert!(fsm.on_hedge().is_empty());
        // b answers late and stale: it is repaired, the reply is not repeated.
        let out = fsm.on_answer(b, ReplicaAnswer::of(&Siblings::default()));
        assert!(replies(&out).is_empty());
        assert_eq!(repairs(&out), vec![b]);
        assert!(fsm.is_finished());
    }

    #[test]
    fn a_hedge_after_the_reply_or_with_every_target_asked_does_nothing() {
        let (mut fsm, _) = GetFsm::start(Bytes::from_static(b"k"), vec![1, 2, 3], 2);
        assert!(fsm.on_hedge().is_empty(), "all three were asked already");
        let (mut fsm, _) = GetFsm::start_with_fanout(Bytes::from_static(b"k"), vec![1, 2, 3], 2, 2);
        let v = state(1, 1, "v");
        fsm.on_answer(1, ReplicaAnswer::of(&v));
        fsm.on_answer(2, ReplicaAnswer::of(&v));
        assert!(fsm.has_replied());
        assert!(fsm.on_hedge().is_empty());
    }

    #[test]
    fn get_timeout_replies_with_what_arrived_and_repairs_with_it() {
        let (mut fsm, _) = GetFsm::start(Bytes::from("k"), vec![1, 2, 3], 2);
        fsm.on_answer(1, ReplicaAnswer::of(&state(9, 1, "v")));
        let out = fsm.on_timeout();
        assert!(matches!(
            replies(&out)[..],
            [Err(ClusterError::Unavailable { needed: 2, got: 1 })]
        ));
        assert!(fsm.is_finished());
        assert!(fsm.on_timeout().is_empty(), "a second timeout is a no-op");
    }

    #[test]
    fn reordered_answers_merge_to_the_same_siblings() {
        let a = state(1, 1, "a");
        let b = state(2, 1, "b");
        let run = |order: [(NodeId, &Siblings); 2]| {
            let (mut fsm, _) = GetFsm::start(Bytes::from("k"), vec![1, 2, 3], 2);
            let mut out = Vec::new();
            for (from, s) in order {
                out.extend(fsm.on_answer(from, ReplicaAnswer::of(s)));
            }
            match out.into_iter().find_map(|o| match o {
                FsmOutput::Reply(r) => Some(r),
                _ => None,
            }) {
                Some(Ok(merged)) => merged,
                other => panic!("{other:?}"),
            }
        };
        let ab = run([(1, &a), (2, &b)]);
        let ba = run([(2, &b), (1, &a)]);
        assert_eq!(ab, ba);
        assert_eq!(ab.live(0).count(), 2, "concurrent versions both kept");
    }

    #[test]
    fn repairs_go_to_exactly_the_replicas_whose_state_differs_from_the_final_merge() {
        let a = state(1, 1, "a");
        let b = state(2, 1, "b");
        let mut ab = a.clone();
        ab.merge(&b);
        let newer = {
            // Supersedes both a and b.
            let mut s = ab.clone();
            s.apply_write(
                &ab.context().clone(),
                Version::put(
                    Dot {
                        node: 3,
                        counter: 1,
                    },
                    2,
                    None,
                    Bytes::from("c"),
                ),
            );
            s
        };
        // Answers in order -> nodes expected to be repaired.
        type Answers<'a> = Vec<(NodeId, &'a Siblings)>;
        let cases: Vec<(Answers, Vec<NodeId>)> = vec![
            // Equal states: no repair at all.
            (vec![(1, &a), (2, &a), (3, &a)], vec![]),
            // Two concurrent states: the merge differs from both.
            (vec![(1, &a), (2, &b), (3, &ab)], vec![1, 2]),
            // The merge grows twice: only the last, dominating, one is current.
            (vec![(1, &a), (2, &b), (3, &newer)], vec![1, 2]),
            (vec![(3, &newer), (1, &a), (2, &newer)], vec![1]),
            // A replica behind the merge, then one equal to the first.
            (vec![(1, &ab), (2, &a), (3, &ab)], vec![2]),
        ];
        for (answers, expected) in cases {
            let (mut fsm, _) = GetFsm::start(Bytes::from("k"), vec![1, 2, 3], 2);
            let mut out = Vec::new();
            for (from, s) in &answers {
                out.extend(fsm.on_answer(*from, ReplicaAnswer::of(s)));
            }
            assert!(fsm.is_finished());
            let mut repaired = repairs(&out);
            repaired.sort_unstable();
            assert_eq!(repaired, expected, "answers {answers:?}");
            let mut want = Siblings::default();
            for (_, s) in &answers[..2] {
                want.merge(s);
            }
            assert!(
                matches!(replies(&out)[..], [Ok(got)] if *got == want),
                "reply is the merge of the first R answers"
            );
            for o in &out {
                if let FsmOutput::Send {
                    request: Request::Merge { state, .. },
                    repair: true,
                    ..
                } = o
                {
                    let mut all = Siblings::default();
                    for (_, s) in &answers {
                        all.merge(s);
                    }
                    assert_eq!(
                        state.decode().unwrap(),
                        all,
                        "a repair carries the final merge"
                    );
                }
            }
        }
    }

    #[test]
    fn an_unreadable_state_counts_as_a_failure_and_the_next_replica_is_asked() {
        let (mut fsm, _) = GetFsm::start_with_fanout(Bytes::from("k"), vec![1, 2, 3], 2, 2);
        let good = state(1, 1, "v");
        assert!(fsm.on_answer(1, ReplicaAnswer::of(&good)).is_empty());
        let garbage = EncodedSiblings::from_stored(Bytes::from_static(b"\x01\x05junk"));
        let out = fsm.on_answer(2, ReplicaAnswer::State(garbage));
        assert!(
            matches!(
                &out[..],
                [FsmOutput::Send {
                    to: 3,
                    repair: false,
                    ..
                }]
            ),
            "{out:?}"
        );
        let out = fsm.on_answer(3, ReplicaAnswer::of(&good));
        assert!(matches!(replies(&out)[..], [Ok(got)] if *got == good));
        assert!(
            repairs(&out).is_empty(),
            "nothing is sent to the garbled replica"
        );
    }

    #[test]
    fn put_counts_the_coordinator_and_needs_w_minus_one_more() {
        let stored = state(1, 1, "v");
        let (mut fsm, out) = PutFsm::start(Bytes::from("k"), stored.clone(), vec![2, 3], 2);
        assert_eq!(out.len(), 2, "replicated to both others");
        assert!(replies(&out).is_empty());
        assert!(fsm.on_answer(2, ReplicaAnswer::Failed).is_empty());
        let out = fsm.on_answer(3, ReplicaAnswer::Stored);
        assert!(matches!(replies(&out)[..], [Ok(s)] if *s == stored));
        assert_eq!(fsm.acks(), 2);
        assert!(fsm.is_finished());

        // W = 1: acknowledged at once, replication still sent.
        let (fsm, out) = PutFsm::start(Bytes::from("k"), stored.clone(), vec![2, 3], 1);
        assert_eq!(replies(&out).len(), 1);
        assert!(fsm.has_replied() && !fsm.is_finished());
    }

    #[test]
    fn put_fails_when_w_cannot_be_reached_or_times_out() {
        let stored = state(1, 1, "v");
        let (mut fsm, _) = PutFsm::start(Bytes::from("k"), stored.clone(), vec![2, 3], 3);
        let out = fsm.on_answer(2, ReplicaAnswer::Failed);
        assert!(matches!(
            replies(&out)[..],
            [Err(ClusterError::Unavailable { needed: 3, got: 1 })]
        ));
        let (mut fsm, _) = PutFsm::start(Bytes::from("k"), stored, vec![2, 3], 2);
        let out = fsm.on_timeout();
        assert!(matches!(
            replies(&out)[..],
            [Err(ClusterError::Unavailable { needed: 2, got: 1 })]
        ));
        assert!(fsm.is_finished());
        // A late acknowledgement after the timeout changes nothing.
        assert!(fsm.on_answer(3, ReplicaAnswer::Stored).is_empty());
        assert_eq!(fsm.unacknowledged(), vec![2, 3]);
    }

    #[test]
    fn sloppy_put_sends_hints_to_fallbacks_and_counts_them_only_if_told() {
        let stored = state(1, 1, "v");
        let targets = vec![
            WriteTarget {
                node: 2,
                hint_for: None,
            },
            WriteTarget {
                node: 4,
                hint_for: Some(3),
            },
        ];
        let (mut fsm, out) =
            PutFsm::start_sloppy(Bytes::from("k"), stored.clone(), targets.clone(), 2, true);
        assert!(out.iter().any(|o| matches!(
            o,
            FsmOutput::Send {
                to: 4,
                request: Request::HintedMerge { owner: 3, .. },
                ..
            }
        )));
        let out = fsm.on_answer(4, ReplicaAnswer::Stored);
        assert_eq!(replies(&out).len(), 1, "the fallback's ack counts toward W");
        fsm.on_answer(2, ReplicaAnswer::Failed);
        assert_eq!(fsm.unacknowledged(), vec![2], "owner 2 needs a hint");

        // Fallback acks not counted: W = 2 needs owner 2.
        let (mut fsm, _) = PutFsm::start_sloppy(Bytes::from("k"), stored, targets, 2, false);
        assert!(fsm.on_answer(4, ReplicaAnswer::Stored).is_empty());
        let out = fsm.on_answer(2, ReplicaAnswer::Failed);
        assert!(matches!(
            replies(&out)[..],
            [Err(ClusterError::Unavailable { needed: 2, got: 1 })]
        ));
        assert_eq!(fsm.unacknowledged(), vec![2]);
    }

    /// During a ring change the coordinator (node 1, an old replica) writes
    /// to old replicas {1, 2, 3} and new ones {2, 3, 4}: W = 2 in each.
    #[test]
    fn grouped_put_needs_w_in_every_group() {
        let stored = state(1, 1, "v");
        let others: Vec<WriteTarget> = [2, 3, 4]
            .into_iter()
            .map(|node| WriteTarget {
                node,
                hint_for: None,
            })
            .collect();
        let groups = vec![
            AckGroup {
                nodes: smallvec::smallvec![2, 3],
                with_coordinator: true,
                needed: None,
                stand_ins: smallvec::smallvec![],
            },
            AckGroup {
                nodes: smallvec::smallvec![2, 3, 4],
                with_coordinator: false,
                needed: None,
                stand_ins: smallvec::smallvec![],
            },
        ];
        let start = |groups: Vec<AckGroup>| {
            PutFsm::start_grouped(
                Bytes::from("k"),
                (stored.clone(), EncodedSiblings::encode(&stored)),
                others.clone(),
                2,
                true,
                groups,
            )
        };
        let (mut fsm, out) = start(groups.clone());
        assert_eq!(out.len(), 3);
        // Node 4 alone gives the old group nothing: 1 of 2 there.
        assert!(replies(&fsm.on_answer(4, ReplicaAnswer::Stored)).is_empty());
        assert_eq!(fsm.acks(), 1);
        // Node 2 completes both groups (old: 1 + 2, new: 4 + 2).
        let out = fsm.on_answer(2, ReplicaAnswer::Stored);
        assert!(matches!(replies(&out)[..], [Ok(_)]));

        // Old group satisfied by 1 + 2, but the new group lost 3 and 4.
        let (mut fsm, _) = start(groups);
        assert!(replies(&fsm.on_answer(2, ReplicaAnswer::Stored)).is_empty());
        assert!(replies(&fsm.on_answer(3, ReplicaAnswer::Failed)).is_empty());
        let out = fsm.on_answer(4, ReplicaAnswer::Failed);
        assert!(matches!(
            replies(&out)[..],
            [Err(ClusterError::Unavailable { needed: 2, got: 1 })]
        ));
    }

    /// A ring of one node (a cluster growing from one) holds each key on
    /// that node alone: its group needs its one acknowledgement, not W.
    #[test]
    fn a_group_smaller_than_w_needs_all_its_replicas() {
        let stored = state(1, 1, "v");
        let others = vec![
            WriteTarget {
                node: 2,
                hint_for: None,
            },
            WriteTarget {
                node: 3,
                hint_for: None,
            },
        ];
        let groups = vec![
            AckGroup {
                nodes: smallvec::smallvec![],
                with_coordinator: true,
                needed: Some(1),
                stand_ins: smallvec::smallvec![],
            },
            AckGroup {
                nodes: smallvec::smallvec![2, 3],
                with_coordinator: true,
                needed: Some(3),
                stand_ins: smallvec::smallvec![],
            },
        ];
        let (mut fsm, out) = PutFsm::start_grouped(
            Bytes::from("k"),
            (stored.clone(), EncodedSiblings::encode(&stored)),
            others,
            2,
            true,
            groups,
        );
        assert!(replies(&out).is_empty(), "the 3-node group has 1 of 2");
        let out = fsm.on_answer(3, ReplicaAnswer::Stored);
        assert!(matches!(replies(&out)[..], [Ok(_)]), "W = 2 caps the 3");
    }

    /// During a ring change node 4 is an owner under the old ring and only
    /// stands in for a down owner under the new one: with fallbacks not
    /// counting, its acknowledgement counts in the old group only.
    #[test]
    fn a_stand_in_counts_only_where_it_is_an_owner_when_fallbacks_do_not_count() {
        let stored = state(1, 1, "v");
        let others: Vec<WriteTarget> = [2, 4]
            .into_iter()
            .map(|node| WriteTarget {
                node,
                hint_for: None,
            })
            .collect();
        let groups = |stand_ins: NodeList| {
            vec![
                AckGroup {
                    nodes: smallvec::smallvec![2, 4],
                    with_coordinator: true,
                    needed: None,
                    stand_ins: smallvec::smallvec![],
                },
                AckGroup {
                    nodes: smallvec::smallvec![2, 4],
                    with_coordinator: false,
                    needed: None,
                    stand_ins,
                },
            ]
        };
        let start = |fallbacks_count: bool| {
            PutFsm::start_grouped(
                Bytes::from("k"),
                (stored.clone(), EncodedSiblings::encode(&stored)),
                others.clone(),
                2,
                fallbacks_count,
                groups(smallvec::smallvec![4]),
            )
        };
        // Strict: the new group has one owner (2) that can count and needs
        // W = 2 there, so the write is refused at once.
        let (_, out) = start(false);
        assert!(matches!(
            replies(&out)[..],
            [Err(ClusterError::Unavailable { needed: 2, got: 0 })]
        ));
        // Sloppy (the paper's): the stand-in counts.
        let (mut fsm, _) = start(true);
        assert!(replies(&fsm.on_answer(4, ReplicaAnswer::Stored)).is_empty());
        let out = fsm.on_answer(2, ReplicaAnswer::Stored);
        assert!(matches!(replies(&out)[..], [Ok(_)]));
    }
}
