//! Seeded simulation of sloppy quorums and hinted handoff under crashes.
//!
//! Four nodes: three owners of every key (N = 3, R = 2, W = 2) and one node
//! that can stand in for a down owner. The real [`PutFsm`], [`GetFsm`],
//! [`Replica`] and [`HintStore`] run; the network delivers messages in
//! random order and drops some; owners crash and come back (their stores,
//! like sled's, survive). Writes go to the up owners plus the stand-in with
//! a hint; owners a write did not reach get a hint on the coordinator.
//!
//! Checked for every seed: after healing and delivering every hint, each
//! owner's own store holds every acknowledged element (no anti-entropy
//! needed), and no hint is left anywhere.

use std::sync::Arc;

use bytes::Bytes;
use cluster::{
    coordinator::{
        fsm::{FsmOutput, GetFsm, PutFsm, ReplicaAnswer, WriteTarget},
        Write,
    },
    handoff::HintStore,
    replica::{Replica, ReplicaConfig},
    storage::{Engine, MemoryEngine},
    version::{NodeId, Siblings},
    wire::Request,
};

mod common;
use common::{elements, encode};

const OWNERS: usize = 3;
const NODES: usize = 4;
const KEYS: [&str; 2] = ["a", "b"];

struct Node {
    replica: Replica,
    hints: HintStore,
    up: bool,
}

struct Sim {
    rng: fastrand::Rng,
    nodes: Vec<Node>,
    ids: Vec<NodeId>,
    inflight: Vec<(usize, usize, usize, Message)>,
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
        coordinator: usize,
        element: u64,
        age: u32,
    },
    Done,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let nodes: Vec<Node> = (0..NODES)
            .map(|_| {
                let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
                let hints = HintStore::open(engine.namespace("hints").unwrap(), 1 << 20).unwrap();
                let config = ReplicaConfig {
                    max_siblings: 1000,
                    collect_dead_keys: false,
                };
                Node {
                    replica: Replica::open(engine, config).unwrap(),
                    hints,
                    up: true,
                }
            })
            .collect();
        let ids = nodes.iter().map(|n| n.replica.node_id()).collect();
        Sim {
            rng: fastrand::Rng::with_seed(seed),
            nodes,
            ids,
            inflight: Vec::new(),
        }
    }

    fn index(&self, id: NodeId) -> usize {
        self.ids.iter().position(|n| *n == id).unwrap()
    }

    /// Up owners, then the stand-in node for the first down owner; the
    /// other down owners are orphans.
    fn plan(&self) -> (Vec<WriteTarget>, Vec<NodeId>) {
        let mut targets = Vec::new();
        let mut down = Vec::new();
        for i in 0..OWNERS {
            if self.nodes[i].up {
                targets.push(WriteTarget {
                    node: self.ids[i],
                    hint_for: None,
                });
            } else {
                down.push(self.ids[i]);
            }
        }
        let mut orphans = Vec::new();
        for (k, owner) in down.into_iter().enumerate() {
            if k == 0 && self.nodes[OWNERS].up {
                targets.push(WriteTarget {
                    node: self.ids[OWNERS],
                    hint_for: Some(owner),
                });
            } else {
                orphans.push(owner);
            }
        }
        (targets, orphans)
    }

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
        let node = &self.nodes[at];
        match request {
            Request::Read { key } => {
                let mut state = node.replica.read(&key).unwrap();
                state.merge(&node.hints.read_key(&key).unwrap());
                ReplicaAnswer::of(&state)
            }
            Request::Merge { key, state } => {
                node.replica.merge_encoded(&key, &state, 0).unwrap();
                ReplicaAnswer::Stored
            }
            Request::HintedMerge {
                key,
                siblings,
                owner,
            } => {
                node.hints.store(owner, &key, &siblings).unwrap();
                ReplicaAnswer::Stored
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Every up node offers its hints to up owners; delivered ones go.
    fn deliver_hints(&mut self) {
        for holder in 0..NODES {
            if !self.nodes[holder].up {
                continue;
            }
            let (batch, _) = self.nodes[holder].hints.batch(&[], 1000).unwrap();
            for hint in batch {
                let owner = self.index(hint.owner);
                if self.nodes[owner].up {
                    self.nodes[owner]
                        .replica
                        .merge(&hint.key, &hint.siblings, 0)
                        .unwrap();
                    self.nodes[holder].hints.remove_delivered(&hint).unwrap();
                }
            }
        }
    }

    fn finished_write(&mut self, coordinator: usize, fsm: &PutFsm) {
        for owner in fsm.unacknowledged() {
            if owner != self.ids[coordinator] {
                self.nodes[coordinator]
                    .hints
                    .store(owner, fsm.key(), &fsm.state().decode().unwrap())
                    .unwrap();
            }
        }
    }
}

fn run(seed: u64) -> (Sim, Vec<(&'static str, u64)>) {
    let mut sim = Sim::new(seed);
    let mut ops: Vec<Op> = Vec::new();
    let mut acked = Vec::new();
    let mut next_element = 1;
    for _step in 0..800 {
        // Crashes and recoveries of owners (at most one down at a time keeps
        // R = 2 reachable often enough for progress).
        if sim.rng.f64() < 0.02 {
            let i = sim.rng.usize(..OWNERS);
            let down = sim.nodes.iter().take(OWNERS).filter(|n| !n.up).count();
            if sim.nodes[i].up && down == 0 {
                sim.nodes[i].up = false;
            } else if !sim.nodes[i].up {
                sim.nodes[i].up = true;
            }
        }
        if sim.rng.f64() < 0.05 {
            sim.deliver_hints();
        }
        let active = ops.iter().filter(|o| !matches!(o, Op::Done)).count();
        if active < 6 && ops.len() < 200 && sim.rng.f64() < 0.15 {
            let up: Vec<usize> = (0..OWNERS).filter(|i| sim.nodes[*i].up).collect();
            let coordinator = up[sim.rng.usize(..up.len())];
            let key = KEYS[sim.rng.usize(..KEYS.len())];
            let (targets, _) = sim.plan();
            let nodes = targets.iter().map(|t| t.node).collect();
            let (fsm, out) = GetFsm::start(Bytes::from(key), nodes, 2);
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
        for (op, state) in ops.iter_mut().enumerate() {
            let timed_out = match state {
                Op::Reading { fsm, age, .. } => {
                    *age += 1;
                    (*age > 60).then(|| (fsm.on_timeout(), None))
                }
                Op::Writing {
                    fsm,
                    age,
                    coordinator,
                    ..
                } => {
                    *age += 1;
                    (*age > 60).then(|| {
                        let out = fsm.on_timeout();
                        (out, Some(*coordinator))
                    })
                }
                Op::Done => None,
            };
            if let Some((outputs, write_coordinator)) = timed_out {
                let finished = std::mem::replace(state, Op::Done);
                if let (Some(c), Op::Writing { fsm, .. }) = (write_coordinator, &finished) {
                    sim.finished_write(c, fsm);
                }
                let _ = sim.route(op, 0, outputs);
            }
        }
        if sim.inflight.is_empty() {
            continue;
        }
        let pick = sim.rng.usize(..sim.inflight.len());
        let (op, from, to, message) = sim.inflight.swap_remove(pick);
        if sim.rng.f64() < 0.1 {
            continue; // dropped
        }
        match message {
            Message::Request(request) => {
                let answer = if sim.nodes[to].up {
                    sim.handle(to, request)
                } else {
                    ReplicaAnswer::Failed
                };
                sim.inflight.push((op, to, from, Message::Answer(answer)));
            }
            Message::Answer(answer) => {
                let sender = sim.ids[from];
                let outputs = match &mut ops[op] {
                    Op::Reading { fsm, .. } => fsm.on_answer(sender, answer),
                    Op::Writing { fsm, .. } => fsm.on_answer(sender, answer),
                    Op::Done => continue,
                };
                let reply = sim.route(op, to, outputs);
                if let Op::Writing {
                    fsm, coordinator, ..
                } = &ops[op]
                {
                    if fsm.is_finished() {
                        let c = *coordinator;
                        if let Op::Writing {
                            fsm, key, element, ..
                        } = std::mem::replace(&mut ops[op], Op::Done)
                        {
                            sim.finished_write(c, &fsm);
                            if matches!(reply, Some(Ok(_))) {
                                acked.push((key, element));
                            }
                        }
                        continue;
                    }
                }
                let Some(reply) = reply else { continue };
                match (&ops[op], reply) {
                    (
                        Op::Reading {
                            key,
                            coordinator,
                            element,
                            ..
                        },
                        Ok(read),
                    ) => {
                        let (key, coordinator, element) = (*key, *coordinator, *element);
                        if !sim.nodes[coordinator].up {
                            ops[op] = Op::Done;
                            continue;
                        }
                        let mut set = elements(&read);
                        set.insert(element);
                        let write = Write::value(read.context().clone(), encode(&set), None);
                        let (_, stored) = sim.nodes[coordinator]
                            .replica
                            .write(key.as_bytes(), 0, |_| (Some(write), ()))
                            .unwrap();
                        let stored = stored.unwrap();
                        let (targets, orphans) = sim.plan();
                        for orphan in orphans {
                            sim.nodes[coordinator]
                                .hints
                                .store(orphan, key.as_bytes(), &stored)
                                .unwrap();
                        }
                        let others = targets
                            .into_iter()
                            .filter(|t| t.node != sim.ids[coordinator])
                            .collect();
                        let (fsm, out) =
                            PutFsm::start_sloppy(Bytes::from(key), stored, others, 2, true);
                        ops[op] = Op::Writing {
                            fsm,
                            key,
                            coordinator,
                            element,
                            age: 0,
                        };
                        if let Some(Ok(_)) = sim.route(op, coordinator, out) {
                            // W reached at once is impossible with W = 2.
                            unreachable!();
                        }
                    }
                    (Op::Writing { key, element, .. }, Ok(_)) => {
                        acked.push((*key, *element));
                    }
                    (Op::Reading { .. }, Err(_)) => ops[op] = Op::Done,
                    _ => {}
                }
            }
        }
    }
    // Heal: everything up, late writes settle, every hint delivered.
    for node in &mut sim.nodes {
        node.up = true;
    }
    for state in &mut ops {
        if let Op::Writing {
            mut fsm,
            coordinator,
            ..
        } = std::mem::replace(state, Op::Done)
        {
            let _ = fsm.on_timeout();
            sim.finished_write(coordinator, &fsm);
        }
    }
    for _ in 0..3 {
        sim.deliver_hints();
    }
    (sim, acked)
}

#[test]
fn after_healing_every_owner_holds_every_acknowledged_write_through_hints_alone() {
    let mut total = 0;
    for seed in 0..300u64 {
        let (sim, acked) = run(seed);
        total += acked.len();
        for node in &sim.nodes {
            assert_eq!(node.hints.total(), 0, "seed {seed}: hints left undelivered");
        }
        for owner in 0..OWNERS {
            for key in KEYS {
                let present = elements(&sim.nodes[owner].replica.read(key.as_bytes()).unwrap());
                for (_, element) in acked.iter().filter(|(k, _)| *k == key) {
                    assert!(
                        present.contains(element),
                        "seed {seed}: owner {owner} lacks acknowledged element {element} of {key}"
                    );
                }
            }
        }
    }
    eprintln!("acknowledged writes over all seeds: {total}");
    assert!(total > 1000, "only {total} writes acknowledged");
}
