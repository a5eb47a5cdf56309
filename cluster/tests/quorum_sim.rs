//! Seeded simulation of quorum reads and writes over an unreliable network.
//!
//! Three replicas (N = 3, R = 2, W = 2) run the real [`GetFsm`], [`PutFsm`]
//! and [`Replica`] code; only the network is simulated: in-flight messages
//! are delivered in random order, dropped, duplicated, and requests time out.
//! Clients run a set-union workload (read the key's siblings, write back the
//! union plus one new element with the read's context).
//!
//! Checked for every seed: every element whose write was acknowledged is
//! present in the merge of *any* two replicas (R + W > N: every read quorum
//! meets every write quorum), and after a full exchange all replicas hold the
//! same state. A failing seed is printed so it can be replayed.

use bytes::Bytes;
use cluster::{
    coordinator::{
        fsm::{FsmOutput, GetFsm, PutFsm, ReplicaAnswer},
        Write,
    },
    replica::Replica,
    version::{NodeId, Siblings},
    wire::Request,
};

mod common;
use common::{elements, encode};

const NODES: usize = 3;
const KEYS: [&str; 2] = ["a", "b"];

struct Sim {
    rng: fastrand::Rng,
    replicas: Vec<Replica>,
    ids: Vec<NodeId>,
    /// (operation, from replica index, to replica index, message)
    inflight: Vec<(usize, usize, usize, Message)>,
    drop_chance: f64,
}

enum Message {
    Request(Request),
    Answer(ReplicaAnswer),
}

enum Op {
    Reading {
        fsm: GetFsm,
        key: &'static str,
        coordinator: usize,
        element: u64,
        age: u32,
    },
    Writing {
        fsm: PutFsm,
        key: &'static str,
        element: u64,
        age: u32,
    },
    Done,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = fastrand::Rng::with_seed(seed);
        let replicas: Vec<Replica> = (0..NODES).map(|_| common::memory_replica(1000)).collect();
        let ids = replicas.iter().map(Replica::node_id).collect();
        let drop_chance = [0.0, 0.1, 0.3][rng.usize(..3)];
        Sim {
            rng,
            replicas,
            ids,
            inflight: Vec::new(),
            drop_chance,
        }
    }

    fn index(&self, id: NodeId) -> usize {
        self.ids.iter().position(|n| *n == id).unwrap()
    }

    /// Queues the sends among `outputs`; returns the reply, if any.
    fn route(
        &mut self,
        op: usize,
        from: usize,
        outputs: Vec<FsmOutput>,
    ) -> Option<Result<Siblings, String>> {
        let mut reply = None;
        for output in outputs {
            match output {
                FsmOutput::Send { to, request, .. } => {
                    let to = self.index(to);
                    self.inflight
                        .push((op, from, to, Message::Request(request)));
                }
                FsmOutput::Reply(result) => reply = Some(result.map_err(|e| e.to_string())),
            }
        }
        reply
    }

    fn handle(&self, at: usize, request: Request) -> ReplicaAnswer {
        match request {
            Request::Read { key } => {
                ReplicaAnswer::State(self.replicas[at].read_encoded(&key).unwrap())
            }
            Request::Merge { key, state } => {
                self.replicas[at].merge_encoded(&key, &state, 0).unwrap();
                ReplicaAnswer::Stored
            }
            other => panic!("unexpected request {other:?}"),
        }
    }
}

/// Runs one seeded history; returns the acknowledged elements per key.
fn run(seed: u64) -> (Sim, Vec<(&'static str, u64)>) {
    let mut sim = Sim::new(seed);
    let mut ops: Vec<Op> = Vec::new();
    let mut acked = Vec::new();
    let mut next_element = 1;
    for _step in 0..600 {
        // Start a new client operation now and then.
        let active = ops.iter().filter(|o| !matches!(o, Op::Done)).count();
        if active < 8 && ops.len() < 150 && sim.rng.f64() < 0.15 {
            let key = KEYS[sim.rng.usize(..KEYS.len())];
            let coordinator = sim.rng.usize(..NODES);
            let (fsm, out) = GetFsm::start(Bytes::from(key), sim.ids.clone(), 2);
            let op = ops.len();
            ops.push(Op::Reading {
                fsm,
                key,
                coordinator,
                element: next_element,
                age: 0,
            });
            next_element += 1;
            sim.route(op, coordinator, out);
        }
        // Time passes: old operations time out.
        for (op, state) in ops.iter_mut().enumerate() {
            let timed_out = match state {
                Op::Reading { fsm, age, .. } => {
                    *age += 1;
                    (*age > 60).then(|| fsm.on_timeout())
                }
                Op::Writing { fsm, age, .. } => {
                    *age += 1;
                    (*age > 60).then(|| fsm.on_timeout())
                }
                Op::Done => None,
            };
            if let Some(outputs) = timed_out {
                // A timed-out op replies with an error (indeterminate).
                let _ = sim.route(op, 0, outputs);
                *state = Op::Done;
            }
        }
        if sim.inflight.is_empty() {
            continue;
        }
        // Deliver (or drop, or duplicate) one message, in random order.
        let pick = sim.rng.usize(..sim.inflight.len());
        let (op, from, to, message) = sim.inflight.swap_remove(pick);
        if sim.rng.f64() < sim.drop_chance {
            continue;
        }
        match message {
            Message::Request(request) => {
                if sim.rng.f64() < 0.05 {
                    let again = request.clone();
                    sim.inflight.push((op, from, to, Message::Request(again)));
                }
                let answer = sim.handle(to, request);
                sim.inflight.push((op, to, from, Message::Answer(answer)));
            }
            Message::Answer(answer) => {
                let sender = sim.ids[from];
                let outputs = match &mut ops[op] {
                    Op::Reading { fsm, .. } => fsm.on_answer(sender, answer),
                    Op::Writing { fsm, .. } => fsm.on_answer(sender, answer),
                    Op::Done => continue,
                };
                let coordinator = to;
                if let Some(reply) = sim.route(op, coordinator, outputs) {
                    let state = std::mem::replace(&mut ops[op], Op::Done);
                    match (state, reply) {
                        (
                            Op::Reading {
                                key,
                                coordinator,
                                element,
                                ..
                            },
                            Ok(read),
                        ) => {
                            // The client writes back the union plus one element,
                            // through the read's coordinator.
                            let mut set = elements(&read);
                            set.insert(element);
                            let write = Write::value(read.context().clone(), encode(&set), None);
                            let (_, stored) = sim.replicas[coordinator]
                                .write(key.as_bytes(), 0, |_| (Some(write), ()))
                                .unwrap();
                            let others = sim
                                .ids
                                .iter()
                                .copied()
                                .filter(|n| *n != sim.ids[coordinator])
                                .collect();
                            let (fsm, out) =
                                PutFsm::start(Bytes::from(key), stored.unwrap(), others, 2);
                            ops[op] = Op::Writing {
                                fsm,
                                key,
                                element,
                                age: 0,
                            };
                            if let Some(Ok(_)) = sim.route(op, coordinator, out) {
                                unreachable!("W = 2 needs a remote acknowledgement");
                            }
                        }
                        (Op::Writing { key, element, .. }, Ok(stored)) => {
                            assert!(elements(&stored).contains(&element));
                            acked.push((key, element));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    (sim, acked)
}

#[test]
fn acknowledged_writes_survive_drops_reordering_and_duplicates() {
    let mut total_acked = 0;
    for seed in 0..300u64 {
        let (sim, acked) = run(seed);
        total_acked += acked.len();
        // Any two replicas together (a read quorum) hold every acknowledged
        // element of the key.
        for a in 0..NODES {
            for b in (a + 1)..NODES {
                for key in KEYS {
                    let mut merged = sim.replicas[a].read(key.as_bytes()).unwrap();
                    merged.merge(&sim.replicas[b].read(key.as_bytes()).unwrap());
                    let present = elements(&merged);
                    for (_, element) in acked.iter().filter(|(k, _)| *k == key) {
                        assert!(
                            present.contains(element),
                            "seed {seed}: acknowledged element {element} of {key} missing from replicas {a}+{b}"
                        );
                    }
                }
            }
        }
        // A full exchange makes every replica identical.
        for key in KEYS {
            let mut all = Siblings::default();
            for r in &sim.replicas {
                all.merge(&r.read(key.as_bytes()).unwrap());
            }
            for r in &sim.replicas {
                r.merge(key.as_bytes(), &all, 0).unwrap();
            }
            let first = sim.replicas[0].read(key.as_bytes()).unwrap();
            for r in &sim.replicas[1..] {
                assert_eq!(r.read(key.as_bytes()).unwrap(), first, "seed {seed}");
            }
        }
    }
    eprintln!("acknowledged writes over all seeds: {total_acked}");
    // The workload really wrote: most seeds acknowledge many writes.
    assert!(total_acked > 1000, "only {total_acked} writes acknowledged");
}
