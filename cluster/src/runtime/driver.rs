//! The quorum driver: runs the state machines of
//! [`crate::coordinator::fsm`] over the transport, for one key or for a
//! batch of keys at once.
//!
//! # The idea
//!
//! A batch (a client's pipelined GETs or SETs, an MGET, an MSET) runs one
//! state machine per key, but the messages of all of them to one peer travel
//! together: reads become one [`Request::ReadBatch`], writes one
//! [`Request::MergeBatch`]. A batch of k keys thus costs one request, one
//! pending answer and one task wake-up per peer instead of k; per-operation
//! round trips are what costs most between nodes. Each machine still gets its
//! own answer, so R, W, hedging, read repair and hints work per key exactly
//! as for a single request (which is a batch of one, sent as a plain
//! [`Request::Read`] or [`Request::Merge`]).
//!
//! One timer serves the whole batch: it fires at the hedge time (reads that
//! have not replied ask one more replica), then at the deadline (every
//! machine without a reply answers `Unavailable`). Once every machine has
//! replied, answers still on their way are collected on a background task
//! for read repair and hints.
//!
//! CAVEATS:
//! - A failed batch call fails every key it carried, on that replica only.
//! - A batch shares its deadline: a key of a batch waits no longer than a
//!   request of its own would.

use std::{future::Future, sync::Arc};

use bytes::Bytes;
use futures_util::{stream::FuturesUnordered, StreamExt};

use super::{
    node::Node,
    trace::{self, CallOutcome},
    transport::TransportError,
};
use crate::{
    coordinator::{
        fsm::{FsmOutput, GetFsm, PutFsm, ReplicaAnswer},
        ClusterError,
    },
    stats::CoordinatorStats,
    version::{EncodedSiblings, NodeId, Siblings},
    wire::{Request, Response, MAX_BATCH_REPLY_BYTES},
};

/// Most keys one batch call carries (and a receiver serves from one).
pub const MAX_BATCH_KEYS: usize = 256;

/// Either quorum machine, so one driver runs both.
pub(super) enum Quorum {
    Get(GetFsm),
    Put(PutFsm),
}

impl Quorum {
    fn on_answer(&mut self, from: NodeId, answer: ReplicaAnswer) -> Vec<FsmOutput> {
        match self {
            Quorum::Get(f) => f.on_answer(from, answer),
            Quorum::Put(f) => f.on_answer(from, answer),
        }
    }

    fn on_timeout(&mut self) -> Vec<FsmOutput> {
        match self {
            Quorum::Get(f) => f.on_timeout(),
            Quorum::Put(f) => f.on_timeout(),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            Quorum::Get(f) => f.is_finished(),
            Quorum::Put(f) => f.is_finished(),
        }
    }

    /// No reply after the hedge delay. A write already went to every
    /// target; a read may ask one more.
    fn on_hedge(&mut self) -> Vec<FsmOutput> {
        match self {
            Quorum::Get(f) => f.on_hedge(),
            Quorum::Put(_) => Vec::new(),
        }
    }
}

/// One call to a peer: the request and the machines its answer belongs to,
/// in the order of the keys it carries.
#[derive(Debug)]
pub(super) struct Call {
    pub to: NodeId,
    pub members: Vec<usize>,
    pub request: Request,
}

/// Groups the sends of a batch into calls: per destination, reads into
/// [`Request::ReadBatch`]es and merges into [`Request::MergeBatch`]es (cut
/// at [`MAX_BATCH_KEYS`] keys and about [`MAX_BATCH_REPLY_BYTES`] of
/// values); a lone read or merge, and anything else, goes as it is.
pub(super) fn group(sends: Vec<(usize, NodeId, Request)>) -> Vec<Call> {
    struct Open {
        to: NodeId,
        reads: Vec<(usize, Bytes)>,
        merges: Vec<(usize, Bytes, EncodedSiblings)>,
        merge_bytes: usize,
    }
    let mut open: Vec<Open> = Vec::new();
    let mut calls = Vec::new();
    for (member, to, request) in sends {
        let slot = match open.iter().position(|o| o.to == to) {
            Some(i) => i,
            None => {
                open.push(Open {
                    to,
                    reads: Vec::new(),
                    merges: Vec::new(),
                    merge_bytes: 0,
                });
                open.len() - 1
            }
        };
        let o = &mut open[slot];
        match request {
            Request::Read { key } => {
                o.reads.push((member, key));
                if o.reads.len() == MAX_BATCH_KEYS {
                    calls.push(reads_call(to, std::mem::take(&mut o.reads)));
                }
            }
            Request::Merge { key, state } => {
                let bytes = state.len();
                if !o.merges.is_empty()
                    && (o.merges.len() == MAX_BATCH_KEYS
                        || o.merge_bytes + bytes > MAX_BATCH_REPLY_BYTES)
                {
                    calls.push(merges_call(to, std::mem::take(&mut o.merges)));
                    o.merge_bytes = 0;
                }
                o.merge_bytes += bytes;
                o.merges.push((member, key, state));
            }
            other => calls.push(Call {
                to,
                members: vec![member],
                request: other,
            }),
        }
    }
    for o in open {
        if !o.reads.is_empty() {
            calls.push(reads_call(o.to, o.reads));
        }
        if !o.merges.is_empty() {
            calls.push(merges_call(o.to, o.merges));
        }
    }
    calls
}

fn reads_call(to: NodeId, mut reads: Vec<(usize, Bytes)>) -> Call {
    if reads.len() == 1 {
        let (member, key) = reads.pop().expect("one read");
        return Call {
            to,
            members: vec![member],
            request: Request::Read { key },
        };
    }
    let (members, keys) = reads.into_iter().unzip();
    Call {
        to,
        members,
        request: Request::ReadBatch { keys },
    }
}

fn merges_call(to: NodeId, mut merges: Vec<(usize, Bytes, EncodedSiblings)>) -> Call {
    if merges.len() == 1 {
        let (member, key, state) = merges.pop().expect("one merge");
        return Call {
            to,
            members: vec![member],
            request: Request::Merge { key, state },
        };
    }
    let mut members = Vec::with_capacity(merges.len());
    let entries = merges
        .into_iter()
        .map(|(member, key, state)| {
            members.push(member);
            (key, state)
        })
        .collect();
    Call {
        to,
        members,
        request: Request::MergeBatch { entries },
    }
}

/// What a call's answer means for each machine it carried.
#[derive(Debug)]
pub(super) struct Split {
    /// Answers to feed, per machine.
    pub answers: Vec<(usize, ReplicaAnswer)>,
    /// Reads the answer stopped before (it reached its byte limit): to ask
    /// again.
    pub unanswered: Vec<(usize, Bytes)>,
}

/// What `call`'s answer `result` gives each machine it carried; `keys` are
/// the keys of a [`Request::ReadBatch`] (empty otherwise).
pub(super) fn split(
    members: Vec<usize>,
    keys: Vec<Bytes>,
    result: Result<Response, TransportError>,
) -> Split {
    let failed = |members: Vec<usize>| Split {
        answers: members
            .into_iter()
            .map(|m| (m, ReplicaAnswer::Failed))
            .collect(),
        unanswered: Vec::new(),
    };
    if keys.is_empty() {
        let answer = answer_of(result);
        return Split {
            answers: members.into_iter().map(|m| (m, answer.clone())).collect(),
            unanswered: Vec::new(),
        };
    }
    match result {
        // At least one state, and no more than were asked for.
        Ok(Response::States(states)) if !states.is_empty() && states.len() <= members.len() => {
            let given = states.len();
            Split {
                answers: members[..given]
                    .iter()
                    .copied()
                    .zip(states.into_iter().map(ReplicaAnswer::State))
                    .collect(),
                unanswered: members[given..]
                    .iter()
                    .copied()
                    .zip(keys.into_iter().skip(given))
                    .collect(),
            }
        }
        _ => failed(members),
    }
}

fn answer_of(result: Result<Response, TransportError>) -> ReplicaAnswer {
    match result {
        Ok(Response::State(state)) => ReplicaAnswer::State(state),
        Ok(Response::Ack) => ReplicaAnswer::Stored,
        _ => ReplicaAnswer::Failed,
    }
}

/// When each replica of a traced request was asked, until it answers.
#[derive(Default)]
struct CallTimes {
    waiting: Vec<(NodeId, std::time::Instant)>,
}

impl CallTimes {
    fn sent(&mut self, to: NodeId, at: std::time::Instant) {
        self.waiting.push((to, at));
    }

    fn answered(&mut self, from: NodeId, failed: bool) {
        if let Some(i) = self.waiting.iter().position(|(n, _)| *n == from) {
            let (_, at) = self.waiting.swap_remove(i);
            let outcome = if failed {
                CallOutcome::Failed
            } else {
                CallOutcome::Answered
            };
            trace::record(from, at.elapsed(), outcome);
        }
    }

    /// The request is answered: whoever is still silent is noted as such.
    fn unanswered(self) {
        for (node, at) in self.waiting {
            trace::record(node, at.elapsed(), CallOutcome::NoAnswer);
        }
    }
}

/// A finished call: who answered, for which machines, and what.
struct Answered {
    from: NodeId,
    members: Vec<usize>,
    keys: Vec<Bytes>,
    result: Result<Response, TransportError>,
}

/// The machines of one batch and their replies.
struct Batch {
    machines: Vec<Quorum>,
    replies: Vec<Option<Result<Siblings, ClusterError>>>,
    waiting: usize,
}

impl Batch {
    fn reply(&mut self, member: usize, result: Result<Siblings, ClusterError>) {
        if self.replies[member].is_none() {
            self.waiting -= 1;
        }
        self.replies[member] = Some(result);
    }

    fn all_finished(&self) -> bool {
        self.machines.iter().all(Quorum::is_finished)
    }
}

/// Feeds a call's answer to the machines it carried; what they do next
/// goes to `outbox` (with reads the answer left out, to ask again).
fn feed(machines: &mut [Quorum], answered: Answered, outbox: &mut Vec<(usize, FsmOutput)>) {
    let from = answered.from;
    let split = split(answered.members, answered.keys, answered.result);
    for (member, answer) in split.answers {
        outbox.extend(
            machines[member]
                .on_answer(from, answer)
                .into_iter()
                .map(|o| (member, o)),
        );
    }
    for (member, key) in split.unanswered {
        outbox.push((
            member,
            FsmOutput::Send {
                to: from,
                request: Request::Read { key },
                repair: false,
            },
        ));
    }
}

impl Node {
    /// Runs quorum machines (each with its first outputs) until every one
    /// has replied; answers that arrive later are collected on a background
    /// task (read repair, hints). Returns the replies in the given order.
    pub(super) async fn drive_all(
        self: &Arc<Self>,
        starts: Vec<(Quorum, Vec<FsmOutput>)>,
    ) -> Vec<Result<Siblings, ClusterError>> {
        let config = self.config();
        let started = tokio::time::Instant::now();
        let deadline = started + config.request_timeout;
        let mut outbox = Vec::with_capacity(starts.iter().map(|(_, first)| first.len()).sum());
        let mut batch = Batch {
            machines: Vec::with_capacity(starts.len()),
            replies: (0..starts.len()).map(|_| None).collect(),
            waiting: starts.len(),
        };
        for (member, (machine, first)) in starts.into_iter().enumerate() {
            batch.machines.push(machine);
            outbox.extend(first.into_iter().map(|o| (member, o)));
        }
        // Reads may hedge once: the one timer fires first at the hedge
        // time, then is moved to the deadline.
        let hedge_at = config
            .read_hedge
            .filter(|d| *d < config.request_timeout)
            .filter(|_| batch.machines.iter().any(|m| matches!(m, Quorum::Get(_))))
            .map(|d| started + d);
        let mut hedge_pending = hedge_at.is_some();
        let timer = tokio::time::sleep_until(hedge_at.unwrap_or(deadline));
        tokio::pin!(timer);
        let mut inflight = FuturesUnordered::new();
        let mut calls = trace::active().then(CallTimes::default);
        loop {
            let mut remote = Vec::new();
            while let Some((member, output)) = outbox.pop() {
                match output {
                    FsmOutput::Reply(result) => batch.reply(member, result),
                    FsmOutput::Send {
                        to,
                        request,
                        repair,
                    } if repair => self.send_repair(to, request),
                    FsmOutput::Send { to, request, .. } if to == self.id() => {
                        let at = std::time::Instant::now();
                        let answer = self.handle_now(request);
                        if let Some(calls) = &mut calls {
                            calls.sent(to, at);
                            calls.answered(to, matches!(answer, Response::Failed(_)));
                        }
                        let answer = answer_of(Ok(answer));
                        outbox.extend(
                            batch.machines[member]
                                .on_answer(to, answer)
                                .into_iter()
                                .map(|o| (member, o)),
                        );
                    }
                    FsmOutput::Send { to, request, .. } => remote.push((member, to, request)),
                }
            }
            for call in group(remote) {
                if let Some(calls) = &mut calls {
                    calls.sent(call.to, std::time::Instant::now());
                }
                inflight.push(self.send_call(call));
            }
            if batch.waiting == 0 || batch.all_finished() {
                break;
            }
            tokio::select! {
                Some(answered) = inflight.next() => {
                    if let Some(calls) = &mut calls {
                        let failed = !matches!(
                            answered.result,
                            Ok(Response::State(_) | Response::States(_) | Response::Ack)
                        );
                        calls.answered(answered.from, failed);
                    }
                    feed(&mut batch.machines, answered, &mut outbox);
                }
                _ = &mut timer => {
                    for (member, machine) in batch.machines.iter_mut().enumerate() {
                        if batch.replies[member].is_some() {
                            continue;
                        }
                        let next = if hedge_pending {
                            machine.on_hedge()
                        } else {
                            machine.on_timeout()
                        };
                        if hedge_pending && !next.is_empty() {
                            CoordinatorStats::bump(&self.replica().stats().hedged_reads);
                        }
                        outbox.extend(next.into_iter().map(|o| (member, o)));
                    }
                    if hedge_pending {
                        hedge_pending = false;
                        timer.as_mut().reset(deadline);
                    }
                }
            }
        }
        if let Some(calls) = calls {
            calls.unanswered();
        }
        let replies = std::mem::take(&mut batch.replies);
        if batch.all_finished() {
            self.finished(&batch.machines);
        } else if !inflight.is_empty() {
            let node = self.clone();
            tokio::spawn(async move { node.finish_all(batch.machines, inflight, deadline).await });
        } else {
            // Nothing more can arrive: settle it now.
            for machine in &mut batch.machines {
                for output in machine.on_timeout() {
                    if let FsmOutput::Send { to, request, .. } = output {
                        self.send_repair(to, request);
                    }
                }
            }
            self.finished(&batch.machines);
        }
        replies
            .into_iter()
            .map(|reply| {
                let result = reply.unwrap_or(Err(ClusterError::Unavailable { needed: 0, got: 0 }));
                if matches!(result, Err(ClusterError::Unavailable { .. })) {
                    CoordinatorStats::bump(&self.replica().stats().quorum_failures);
                }
                result
            })
            .collect()
    }

    /// Sends one call; its answer comes back with what it carried.
    fn send_call(self: &Arc<Self>, call: Call) -> impl Future<Output = Answered> + Send + 'static {
        let node = self.clone();
        let keys = match &call.request {
            Request::ReadBatch { keys } => keys.clone(),
            _ => Vec::new(),
        };
        async move {
            let result = node.call_in_quorum(call.to, call.request).await;
            Answered {
                from: call.to,
                members: call.members,
                keys,
                result,
            }
        }
    }

    /// After the replies: late answers feed the machines (read repair)
    /// until every machine is done or the deadline passes.
    async fn finish_all<S>(
        self: Arc<Self>,
        mut machines: Vec<Quorum>,
        mut inflight: S,
        deadline: tokio::time::Instant,
    ) where
        S: futures_util::Stream<Item = Answered> + Unpin,
    {
        while !machines.iter().all(Quorum::is_finished) {
            let mut outbox = Vec::new();
            let answered = tokio::select! {
                next = inflight.next() => next,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            match answered {
                Some(answered) => feed(&mut machines, answered, &mut outbox),
                // Nothing more can come, or the deadline passed.
                None => machines.iter_mut().for_each(|m| {
                    outbox.extend(m.on_timeout().into_iter().map(|o| (0, o)));
                }),
            }
            for (_, output) in outbox {
                if let FsmOutput::Send {
                    to,
                    request: request @ Request::Merge { .. },
                    ..
                } = output
                {
                    self.send_repair(to, request);
                }
            }
        }
        self.finished(&machines);
    }

    /// The machines are done: hints for the owners that missed a write.
    fn finished(&self, machines: &[Quorum]) {
        for machine in machines {
            let Quorum::Put(put) = machine else { continue };
            let missed = put.unacknowledged();
            if missed.is_empty() {
                continue;
            }
            // Our own encoding of the state we stored: it decodes.
            match put.state().decode() {
                Ok(state) => {
                    for owner in missed {
                        self.hold_hint(owner, put.key(), &state);
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot keep hints for a write"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(key: &str) -> Request {
        Request::Read {
            key: Bytes::copy_from_slice(key.as_bytes()),
        }
    }

    fn merge(key: &str, value_bytes: usize) -> Request {
        let mut siblings = Siblings::default();
        siblings.apply_write(
            &Default::default(),
            crate::version::Version::put(
                crate::version::Dot {
                    node: 1,
                    counter: 1,
                },
                1,
                None,
                Bytes::from(vec![b'v'; value_bytes]),
            ),
        );
        Request::Merge {
            key: Bytes::copy_from_slice(key.as_bytes()),
            state: EncodedSiblings::encode(&siblings),
        }
    }

    #[test]
    fn reads_to_one_peer_travel_as_one_batch_and_a_lone_read_as_itself() {
        let sends = vec![
            (0, 2, read("a")),
            (1, 3, read("b")),
            (2, 2, read("c")),
            (3, 2, read("d")),
        ];
        let calls = group(sends);
        assert_eq!(calls.len(), 2);
        let to_2 = calls.iter().find(|c| c.to == 2).unwrap();
        assert_eq!(to_2.members, vec![0, 2, 3]);
        match &to_2.request {
            Request::ReadBatch { keys } => assert_eq!(keys, &vec!["a", "c", "d"]),
            other => panic!("expected a batch, got {other:?}"),
        }
        let to_3 = calls.iter().find(|c| c.to == 3).unwrap();
        assert_eq!(to_3.members, vec![1]);
        assert!(matches!(&to_3.request, Request::Read { key } if key == "b"));
    }

    #[test]
    fn batches_are_cut_by_key_count_and_merge_bytes() {
        let reads = (0..MAX_BATCH_KEYS + 1)
            .map(|i| (i, 2, read(&i.to_string())))
            .collect();
        let calls = group(reads);
        let sizes: Vec<usize> = calls.iter().map(|c| c.members.len()).collect();
        assert_eq!(sizes, vec![MAX_BATCH_KEYS, 1]);

        // Three merges of a third of the limit and a bit: two calls.
        let third = MAX_BATCH_REPLY_BYTES / 3 + 1;
        let merges = (0..3)
            .map(|i| (i, 2, merge(&i.to_string(), third)))
            .collect();
        let calls = group(merges);
        let sizes: Vec<usize> = calls.iter().map(|c| c.members.len()).collect();
        assert_eq!(sizes, vec![2, 1]);
        assert!(matches!(calls[0].request, Request::MergeBatch { .. }));
        assert!(matches!(calls[1].request, Request::Merge { .. }));
        // One state larger than the limit still goes (alone).
        let calls = group(vec![
            (0, 2, merge("big", 2 * MAX_BATCH_REPLY_BYTES)),
            (1, 2, merge("x", 1)),
        ]);
        let sizes: Vec<usize> = calls.iter().map(|c| c.members.len()).collect();
        assert_eq!(sizes, vec![1, 1]);
    }

    #[test]
    fn a_short_batch_answer_leaves_the_rest_to_ask_again_and_a_failure_fails_all() {
        let keys: Vec<Bytes> = ["a", "b", "c"].iter().map(|k| Bytes::from(*k)).collect();
        let state = EncodedSiblings::empty();
        let split_answer = split(
            vec![4, 5, 6],
            keys.clone(),
            Ok(Response::States(vec![state.clone()])),
        );
        assert_eq!(split_answer.answers.len(), 1);
        assert_eq!(split_answer.answers[0].0, 4);
        assert_eq!(
            split_answer.unanswered,
            vec![(5, Bytes::from("b")), (6, Bytes::from("c"))]
        );

        let failed = split(
            vec![4, 5, 6],
            keys.clone(),
            Ok(Response::Failed("x".into())),
        );
        assert!(failed.unanswered.is_empty());
        assert!(failed
            .answers
            .iter()
            .all(|(_, a)| matches!(a, ReplicaAnswer::Failed)));
        // An empty or too long answer is a failure, not progress.
        let empty = split(vec![4, 5, 6], keys.clone(), Ok(Response::States(vec![])));
        assert_eq!(empty.answers.len(), 3);
        let long = split(
            vec![4],
            keys[..1].to_vec(),
            Ok(Response::States(vec![state.clone(), state])),
        );
        assert!(matches!(long.answers[..], [(4, ReplicaAnswer::Failed)]));

        let merged = split(vec![7, 8], Vec::new(), Ok(Response::Ack));
        assert!(merged
            .answers
            .iter()
            .all(|(_, a)| matches!(a, ReplicaAnswer::Stored)));
    }
}
