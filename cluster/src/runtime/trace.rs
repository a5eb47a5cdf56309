//! Per-request replica timings, for the slow log.
//!
//! A caller that wants to know which replicas a request waited on runs it
//! inside [`traced`]; the quorum driver then notes, for every replica it
//! asked, how long the answer took. Outside [`traced`] nothing is recorded
//! and the cost is one failed task-local lookup per request.

use std::{cell::RefCell, future::Future, time::Duration};

use crate::version::NodeId;

/// How a replica's part of a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// It answered.
    Answered,
    /// It failed or refused.
    Failed,
    /// It had not answered when the request was answered (or timed out).
    NoAnswer,
}

impl CallOutcome {
    /// A short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            CallOutcome::Answered => "ok",
            CallOutcome::Failed => "failed",
            CallOutcome::NoAnswer => "no-answer",
        }
    }
}

/// One replica's part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaCall {
    /// The replica (or the owner a write was forwarded to).
    pub node: NodeId,
    /// From sending to the answer, or to giving up waiting.
    pub elapsed: Duration,
    /// How it ended.
    pub outcome: CallOutcome,
}

tokio::task_local! {
    static CALLS: RefCell<Vec<ReplicaCall>>;
}

/// Runs `request`, collecting the replica calls it makes.
pub async fn traced<F: Future>(request: F) -> (F::Output, Vec<ReplicaCall>) {
    CALLS
        .scope(RefCell::new(Vec::new()), async move {
            let output = request.await;
            let calls = CALLS.with(|calls| std::mem::take(&mut *calls.borrow_mut()));
            (output, calls)
        })
        .await
}

/// Whether the running request is traced.
pub(crate) fn active() -> bool {
    CALLS.try_with(|_| ()).is_ok()
}

/// Notes one replica call of the running request (if it is traced).
pub(crate) fn record(node: NodeId, elapsed: Duration, outcome: CallOutcome) {
    let _ = CALLS.try_with(|calls| {
        calls.borrow_mut().push(ReplicaCall {
            node,
            elapsed,
            outcome,
        })
    });
}

/// Notes replica calls made on the running request's behalf elsewhere
/// (a batch it joined), if it is traced.
pub(crate) fn record_all(made: &[ReplicaCall]) {
    if made.is_empty() {
        return;
    }
    let _ = CALLS.try_with(|calls| calls.borrow_mut().extend_from_slice(made));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_only_inside_traced() {
        record(1, Duration::from_millis(1), CallOutcome::Answered);
        assert!(!active());
        let ((), calls) = traced(async {
            assert!(active());
            record(7, Duration::from_millis(3), CallOutcome::Failed);
            record(9, Duration::from_millis(5), CallOutcome::NoAnswer);
        })
        .await;
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].node, 7);
        assert_eq!(calls[1].outcome, CallOutcome::NoAnswer);
        // Nested traces keep their own calls.
        let ((inner, ()), outer) = traced(async {
            let inner = traced(async { record(2, Duration::ZERO, CallOutcome::Answered) }).await;
            (inner.1, ())
        })
        .await;
        assert_eq!(inner.len(), 1);
        assert!(outer.is_empty());
    }
}
