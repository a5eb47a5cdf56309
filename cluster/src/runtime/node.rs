//! A cluster node: membership view, peer links, and the async driver of the
//! quorum state machines.
//!
//! Reads run a [`GetFsm`] over the first N healthy nodes of the key's
//! preference list from whichever node the client reached. Writes are
//! coordinated by an owner: if this node is among the key's first N it
//! applies the write locally (new dot) and runs a [`PutFsm`]; otherwise it
//! ships the write to the owner that has answered fastest. Answers that come
//! after the client was answered still feed the read's state machine, which
//! then repairs stale replicas.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use bytes::Bytes;
use smallvec::SmallVec;
use tracing::{debug, info, warn};

use super::{
    coalesce::{Coalescer, MAX_COALESCED_KEYS},
    driver::Quorum,
    trace::{self, CallOutcome},
    transport::{Handled, PeerHandler, PeerPool, TransportError},
};
use crate::{
    coordinator::{
        fsm::{AckGroup, FsmOutput, GetFsm, PutFsm, ReplicaAnswer, WriteTarget},
        ClusterError, Write,
    },
    handoff::{Hint, HintStore},
    keyspace,
    membership::ClusterState,
    replica::Replica,
    ring::Ring,
    stats::CoordinatorStats,
    version::{EncodedSiblings, NodeId, Payload, Siblings},
    wire::{RemoteError, RemoteWrite, Request, Response, MAX_BATCH_REPLY_BYTES},
};

/// How a node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's member id, if pinned (`node-id`); else the store's id.
    pub node_id: Option<NodeId>,
    /// Nodes only talk to nodes with the same name.
    pub cluster_name: String,
    /// Replicas per key (N).
    pub n: usize,
    /// Answers a read waits for (R).
    pub r: usize,
    /// Acknowledgements a write waits for (W).
    pub w: usize,
    /// Partitions of the ring (Q), a power of two.
    pub q: usize,
    /// This node's share of partitions relative to the others.
    pub weight: u32,
    /// Address peers reach this node's peer port at.
    pub peer_addr: String,
    /// Address clients reach this node at (shown by DYNAMO MEMBERS).
    pub client_addr: String,
    /// Peer addresses to gossip with when the membership knows nobody else.
    pub seeds: Vec<String>,
    /// How long a coordinator waits for R or W answers.
    pub request_timeout: Duration,
    /// A read still short of R answers after this long also asks the next
    /// replica (`None`: never).
    pub read_hedge: Option<Duration>,
    /// Share of reads sent to all N replicas (the paper's behaviour) rather
    /// than to R of them; the extra answers feed read repair.
    pub read_repair_chance: f64,
    /// Time between hinted-handoff delivery rounds.
    pub hint_delivery_interval: Duration,
    /// Hints offered to their owners per delivery round (the background
    /// budget of hinted handoff).
    pub hint_batch: usize,
    /// Time between anti-entropy exchanges.
    pub anti_entropy_interval: Duration,
    /// Time between tombstone-collection passes.
    pub tombstone_gc_interval: Duration,
    /// Background work (handoff, anti-entropy, tombstone collection) skips
    /// its round while more client requests than this are in flight here.
    pub background_max_foreground: usize,
    /// Background work runs one round in eight while this node serves more
    /// replica requests per second than this for other nodes' clients.
    pub background_max_replica_rate: u64,
    /// Background work skips its rounds while the mean latency of client
    /// requests here is above this many times its recent baseline (0: off).
    pub background_latency_factor: f64,
    /// A key's newest tombstone must be this old before it is collected, so
    /// no message still in flight can carry an older version back.
    pub tombstone_grace: Duration,
    /// Most partitions one exchange descends into (its background budget).
    pub anti_entropy_partitions: usize,
    /// Most keys per second anti-entropy moves (pulled plus pushed) from this
    /// node's exchanges, spread evenly (0: no limit besides the budget).
    pub anti_entropy_max_keys_per_sec: u64,
    /// Whether a fallback node's acknowledgement counts toward W (the
    /// paper's and Riak's choice) or only owners' do (Cassandra's).
    pub fallback_acks_count: bool,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// Most keys per second a node fetches as a partition's new replica
    /// (0: no limit besides the background budget).
    pub transfer_max_keys_per_sec: u64,
    /// Keys per page of a partition transfer or hand-off.
    pub transfer_batch: usize,
}

/// A snapshot of what routing needs: the rings and where each node listens.
pub struct View {
    /// The ring in force (anti-entropy, hand-off and tombstones use it).
    pub ring: Ring,
    /// The ring reads use: `ring`, or a transition's target once every
    /// partition is in place there.
    pub read_ring: Ring,
    /// A transition's target: writes go to both rings meanwhile.
    pub target: Option<Ring>,
    /// Peer address of each known member.
    pub addrs: HashMap<NodeId, Arc<str>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct PeerHealth {
    down_since_ms: Option<u64>,
    latency_us: f64,
    last_ok_ms: Option<u64>,
}

/// What this node's failure detector knows of one peer (its local view).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerReport {
    /// The peer.
    pub node: NodeId,
    /// When it was marked down, if it is.
    pub down_since_ms: Option<u64>,
    /// When it last answered a request or a gossip round.
    pub last_ok_ms: Option<u64>,
    /// Smoothed answer latency in microseconds (0: not measured).
    pub latency_us: f64,
}

/// How a request starts: a quorum machine to run (with its first outputs),
/// or its answer already, when no other replica needs asking.
// The machine is moved once, into the driver's list; boxing it would cost
// an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Start<T> {
    Run(Quorum, Vec<FsmOutput>),
    Done(T),
}

/// The replicas of one request under the sloppy quorum: the first N healthy
/// nodes of the preference list, each down owner replaced by the next healthy
/// node beyond the first N (holding the write as a hint), and the down owners
/// no node could stand in for. During a ring change a write's plan is the
/// union of both rings' plans, with W acknowledgements needed in each.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The key's ring position (hashed once per request).
    pub position: u64,
    /// Owners that are up, then fallbacks.
    pub targets: SmallVec<[WriteTarget; 4]>,
    /// Down owners without a fallback: the coordinator keeps their hints.
    pub orphans: Vec<NodeId>,
    /// Owners under the ring reads use: the ones that may coordinate a write.
    pub coordinators: SmallVec<[NodeId; 4]>,
    /// Each ring's part of a write during a ring change (empty: one group
    /// of all targets).
    pub groups: Vec<PlanGroup>,
}

/// One ring's targets for a write during a ring change.
#[derive(Debug, Clone, Default)]
pub struct PlanGroup {
    /// The ring's targets: owners that are up, then stand-ins.
    pub nodes: Vec<NodeId>,
    /// Those standing in for a down owner of this ring.
    pub stand_ins: Vec<NodeId>,
    /// The ring's number of replicas of the key.
    pub replicas: usize,
}

impl Plan {
    fn group(&self) -> PlanGroup {
        PlanGroup {
            nodes: self.nodes(),
            stand_ins: self
                .targets
                .iter()
                .filter(|t| t.hint_for.is_some())
                .map(|t| t.node)
                .collect(),
            replicas: self.coordinators.len(),
        }
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.targets.iter().map(|t| t.node).collect()
    }

    fn is_owner(&self, node: NodeId) -> bool {
        self.coordinators.contains(&node)
    }

    /// Adds `other`'s targets and orphans, keeping each plan's nodes as a
    /// quorum group. A node that is an owner in one ring and a stand-in in
    /// the other gets a plain merge (it is an owner); it then holds no hint,
    /// so the coordinator keeps one for the owner it stands in for, and the
    /// node counts as a stand-in in the group where it is one.
    fn union(mut self, other: Plan) -> Plan {
        self.groups = vec![self.group(), other.group()];
        for t in other.targets {
            match self.targets.iter_mut().find(|mine| mine.node == t.node) {
                Some(mine) => match (mine.hint_for, t.hint_for) {
                    (Some(stood_for), None) => {
                        mine.hint_for = None;
                        self.orphans.push(stood_for);
                    }
                    (None, Some(stood_for)) => self.orphans.push(stood_for),
                    _ => {}
                },
                None => self.targets.push(t),
            }
        }
        for o in other.orphans {
            if !self.orphans.contains(&o) {
                self.orphans.push(o);
            }
        }
        let targets = self.nodes();
        self.orphans.retain(|o| !targets.contains(o));
        self.orphans.sort_unstable();
        self.orphans.dedup();
        self
    }
}

/// One node of the cluster.
pub struct Node {
    config: ClusterConfig,
    replica: Arc<Replica>,
    hints: Arc<HintStore>,
    me: NodeId,
    state: Mutex<ClusterState>,
    view: RwLock<Arc<View>>,
    pool: PeerPool,
    health: Mutex<HashMap<NodeId, PeerHealth>>,
    /// Peers marked down in `health`: while 0 (the usual case), `is_up`
    /// answers without taking the lock.
    peers_down: AtomicUsize,
    foreground: AtomicUsize,
    replica_served: AtomicU64,
    load_sample: Mutex<LoadSample>,
    background_ticks: AtomicU64,
    transfer: super::transfer::TransferLocal,
    latency: Mutex<super::budget::LatencyWatch>,
    /// The pace of anti-entropy's key transfers.
    ae_rate: Mutex<super::budget::KeyRate>,
    /// Client reads and writes waiting to run in batches with other
    /// clients' (`coalesce.rs`).
    pub(super) coalescer: Coalescer,
}

/// The replica request rate, sampled for the background budget.
struct LoadSample {
    at: std::time::Instant,
    served: u64,
    rate: f64,
}

/// Counts client requests as in flight while it lives, and records their
/// latency when they end (the background budget watches both).
struct Foreground<'a> {
    node: &'a Node,
    requests: usize,
    started: std::time::Instant,
}

impl<'a> Foreground<'a> {
    fn enter(node: &'a Node, requests: usize) -> Foreground<'a> {
        node.foreground.fetch_add(requests, Ordering::Relaxed);
        Foreground {
            node,
            requests,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        self.node
            .foreground
            .fetch_sub(self.requests, Ordering::Relaxed);
        let now = std::time::Instant::now();
        self.node
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(now - self.started, now);
    }
}

const MEMBERSHIP_KEY: &str = "membership";

impl Node {
    /// Loads (or creates) this node's membership state and prepares the
    /// peer pool; nothing is started yet.
    pub fn open(
        config: ClusterConfig,
        replica: Arc<Replica>,
        hints: Arc<HintStore>,
        pool: PeerPool,
    ) -> Result<Node, ClusterError> {
        // The member id: pinned by the operator (a node rebuilt on an empty
        // disk keeps its place in the ring), else the store's own id. Dots
        // always use the store's id, which is new with every new store, so
        // a rebuilt node never reissues an old dot.
        let me = config.node_id.unwrap_or_else(|| replica.node_id());
        let stored = replica.engine().meta_get(MEMBERSHIP_KEY)?;
        let persisted = stored.and_then(|raw| match ClusterState::decode(&raw) {
            Ok(state) if state.cluster_name() == config.cluster_name => Some(state),
            Ok(state) => {
                warn!(persisted = state.cluster_name(), configured = %config.cluster_name, "stored membership is for another cluster; starting afresh");
                None
            }
            Err(error) => {
                warn!(%error, "stored membership unreadable; starting afresh");
                None
            }
        });
        let fresh = persisted.is_none();
        let joins = config.seeds.iter().any(|s| *s != config.peer_addr)
            && !config.seeds.contains(&config.peer_addr);
        let mut state = persisted.unwrap_or_else(|| {
            let me = self_member(&config, me, 0);
            if joins {
                // Nodes named in `seeds` found the cluster; any other new
                // node owns nothing until it has heard from them.
                ClusterState::joining(&config.cluster_name, me, config.q)
            } else {
                ClusterState::new(&config.cluster_name, me, config.q)
            }
        });
        if !fresh && joins && state.ring().is_empty() && state.transition().is_none() {
            state.prepare_join();
        }
        state.set_replicas(config.n);
        if state.ring().q() != config.q {
            warn!(
                stored_q = state.ring().q(),
                configured_q = config.q,
                "q differs from the stored ring; keeping the stored ring"
            );
        }
        // Anti-entropy compares per-partition hash trees of the stored keys:
        // built once here, then kept current by every write.
        replica.enable_merkle(state.ring().q())?;
        // Addresses follow the config at every start; the weight only for a
        // new member (later changes are DYNAMO WEIGHT's, kept in the
        // membership), and a leaving or removed node stays so.
        let wanted = self_member(&config, me, 0);
        state.update_member(me, |m| {
            m.peer_addr = wanted.peer_addr.clone();
            m.client_addr = wanted.client_addr.clone();
        });
        let ae_rate = super::budget::KeyRate::new(config.anti_entropy_max_keys_per_sec);
        let node = Node {
            view: RwLock::new(Arc::new(view_of(&state))),
            state: Mutex::new(state),
            config,
            replica,
            hints,
            me,
            pool,
            health: Mutex::new(HashMap::new()),
            peers_down: AtomicUsize::new(0),
            foreground: AtomicUsize::new(0),
            replica_served: AtomicU64::new(0),
            load_sample: Mutex::new(LoadSample {
                at: std::time::Instant::now(),
                served: 0,
                rate: 0.0,
            }),
            background_ticks: AtomicU64::new(0),
            transfer: super::transfer::TransferLocal::default(),
            latency: Mutex::new(super::budget::LatencyWatch::new(std::time::Instant::now())),
            ae_rate: Mutex::new(ae_rate),
            coalescer: Default::default(),
        };
        node.persist();
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The settings in force.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The local replica.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// The hints this node holds for others.
    pub fn hints(&self) -> &Arc<HintStore> {
        &self.hints
    }

    /// The current routing view.
    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A copy of the membership state.
    pub fn cluster_state(&self) -> ClusterState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether this node currently considers `node` reachable, and since
    /// when (ms) it has been down if not.
    pub fn down_since(&self, node: NodeId) -> Option<u64> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.get(&node).and_then(|h| h.down_since_ms)
    }

    /// The failure detector's view of every peer it has talked to.
    pub fn peer_reports(&self) -> Vec<PeerReport> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut reports: Vec<PeerReport> = health
            .iter()
            .map(|(&node, h)| PeerReport {
                node,
                down_since_ms: h.down_since_ms,
                last_ok_ms: h.last_ok_ms,
                latency_us: h.latency_us,
            })
            .collect();
        reports.sort_by_key(|r| r.node);
        reports
    }

    pub(crate) fn is_up(&self, node: NodeId) -> bool {
        node == self.me
            || self.peers_down.load(Ordering::Relaxed) == 0
            || self.down_since(node).is_none()
    }

    fn note_success(&self, node: NodeId, elapsed: Duration) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let entry = health.entry(node).or_default();
        if entry.down_since_ms.take().is_some() {
            self.peers_down.fetch_sub(1, Ordering::Relaxed);
            info!(node = format!("{node:016x}"), "peer is up");
        }
        entry.last_ok_ms = Some(super::now_ms());
        let sample = elapsed.as_secs_f64() * 1e6;
        entry.latency_us = if entry.latency_us == 0.0 {
            sample
        } else {
            entry.latency_us * 0.9 + sample * 0.1
        };
    }

    fn note_failure(&self, node: NodeId, error: &TransportError) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let entry = health.entry(node).or_default();
        if entry.down_since_ms.is_none() {
            self.peers_down.fetch_add(1, Ordering::Relaxed);
            warn!(node = format!("{node:016x}"), %error, "peer marked down");
            entry.down_since_ms = Some(super::now_ms());
        }
    }

    /// The sloppy-quorum replicas a read of `key` asks (this node is always
    /// healthy to itself).
    pub fn plan(&self, key: &[u8]) -> Plan {
        self.plan_on(&self.view().read_ring, keyspace::ring_position(key))
    }

    /// R or W for a request with `plan`: capped at the key's number of
    /// replicas when the ring has fewer nodes than that (a key of a 1-node
    /// ring lives on that node alone); never below 1.
    fn quorum(&self, configured: usize, plan: &Plan) -> usize {
        match plan.coordinators.len() {
            0 => configured,
            replicas => configured.min(replicas),
        }
    }

    /// The replicas a write of `key` goes to: the read plan, plus during a
    /// ring change the other ring's (W acknowledgements needed in each).
    pub fn write_plan(&self, key: &[u8]) -> Plan {
        let view = self.view();
        let position = keyspace::ring_position(key);
        let read = self.plan_on(&view.read_ring, position);
        match &view.target {
            None => read,
            Some(target) => {
                let other = if view.read_ring == *target {
                    &view.ring
                } else {
                    target
                };
                read.union(self.plan_on(other, position))
            }
        }
    }

    fn plan_on(&self, ring: &Ring, position: u64) -> Plan {
        let mut list = ring.preference(position);
        let mut plan = Plan {
            position,
            coordinators: list.by_ref().take(self.config.n).collect(),
            ..Plan::default()
        };
        let mut down: SmallVec<[NodeId; 4]> = SmallVec::new();
        for &owner in &plan.coordinators {
            if self.is_up(owner) {
                plan.targets.push(WriteTarget {
                    node: owner,
                    hint_for: None,
                });
            } else {
                down.push(owner);
            }
        }
        // The rest of the list is walked only when an owner is down.
        let mut fallbacks = list.filter(|n| self.is_up(*n));
        for owner in down {
            match fallbacks.next() {
                Some(node) => plan.targets.push(WriteTarget {
                    node,
                    hint_for: Some(owner),
                }),
                None => plan.orphans.push(owner),
            }
        }
        plan
    }

    /// Sends `request` to `node` (locally when it is this node).
    pub async fn call(&self, node: NodeId, request: Request) -> Result<Response, TransportError> {
        if node == self.me {
            return Ok(self.handle_now(request));
        }
        let Some(addr) = self.view().addrs.get(&node).cloned() else {
            return Err(TransportError::Unreachable(format!("{node:016x}")));
        };
        let started = std::time::Instant::now();
        let result = self
            .pool
            .call(&addr, request, self.config.request_timeout)
            .await;
        self.note(node, started, &result);
        result
    }

    /// Like [`Node::call`] with no deadline of its own: for the quorum
    /// driver, whose single deadline bounds every call it makes.
    pub(super) async fn call_in_quorum(
        &self,
        node: NodeId,
        request: Request,
    ) -> Result<Response, TransportError> {
        if node == self.me {
            return Ok(self.handle_now(request));
        }
        let Some(addr) = self.view().addrs.get(&node).cloned() else {
            return Err(TransportError::Unreachable(format!("{node:016x}")));
        };
        let started = std::time::Instant::now();
        let result = self.pool.call_unbounded(&addr, request).await;
        self.note(node, started, &result);
        result
    }

    fn note(
        &self,
        node: NodeId,
        started: std::time::Instant,
        result: &Result<Response, TransportError>,
    ) {
        match result {
            Ok(_) => self.note_success(node, started.elapsed()),
            Err(error) => self.note_failure(node, error),
        }
    }

    /// `get(key)`: the merged sibling set of R replicas.
    pub async fn get(self: &Arc<Self>, key: &[u8]) -> Result<Siblings, ClusterError> {
        let key = Bytes::copy_from_slice(key);
        let mut results = self.get_many(std::slice::from_ref(&key)).await;
        results.pop().expect("one result per key")
    }

    /// `get(key)` of several keys at once (pipelined GETs, MGET): one quorum
    /// read per key, their messages to each replica batched (see
    /// [`super::driver`]). Results in the order of `keys`.
    pub async fn get_many(self: &Arc<Self>, keys: &[Bytes]) -> Vec<Result<Siblings, ClusterError>> {
        // A read joins the other clients' reads (`coalesce.rs`).
        if (1..=MAX_COALESCED_KEYS).contains(&keys.len()) {
            return self.coalesced_get(keys.to_vec()).await;
        }
        self.get_many_now(keys).await
    }

    /// [`Node::get_many`] of exactly these keys, as one batch.
    pub(super) async fn get_many_now(
        self: &Arc<Self>,
        keys: &[Bytes],
    ) -> Vec<Result<Siblings, ClusterError>> {
        let _foreground = Foreground::enter(self, keys.len());
        let stats = self.replica.stats();
        stats.reads.fetch_add(keys.len() as u64, Ordering::Relaxed);
        let mut results: Vec<Option<Result<Siblings, ClusterError>>> =
            (0..keys.len()).map(|_| None).collect();
        let plans: Vec<Plan> = keys.iter().map(|key| self.plan(key)).collect();
        self.replica.warm_at(
            keys.iter()
                .zip(&plans)
                .filter(|(_, plan)| plan.is_owner(self.me))
                .map(|(key, plan)| (plan.position, &key[..])),
        );
        let mut quorums = Vec::with_capacity(keys.len());
        let mut members = Vec::with_capacity(keys.len());
        for (i, (key, plan)) in keys.iter().zip(plans).enumerate() {
            match self.read_quorum(key, plan) {
                Start::Run(machine, first) => {
                    quorums.push((machine, first));
                    members.push(i);
                }
                Start::Done(local) => results[i] = Some(local),
            }
        }
        if !quorums.is_empty() {
            let replies = self.drive_all(quorums).await;
            for (i, reply) in members.into_iter().zip(replies) {
                results[i] = Some(reply);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every key answered"))
            .collect()
    }

    /// The quorum read of `key`, or its answer when no other replica needs
    /// asking (a key only this node holds, with R = 1).
    fn read_quorum(&self, key: &Bytes, plan: Plan) -> Start<Result<Siblings, ClusterError>> {
        // A fallback holds only what was handed to it while an owner was
        // down: when its acknowledgements do not count toward W, its
        // answers must not count toward R either, or R + W > N would not
        // hold (a read cut off from every owner would find nothing).
        let mut targets = if self.config.fallback_acks_count {
            plan.nodes()
        } else {
            plan.targets
                .iter()
                .filter(|t| t.hint_for.is_none())
                .map(|t| t.node)
                .collect()
        };
        let r = self.quorum(self.config.r, &plan);
        if targets == [self.me] && r <= 1 {
            return Start::Done(self.replica.read(key));
        }
        // Our own replica answers without a network round trip: ask it first.
        if let Some(i) = targets.iter().position(|n| *n == self.me) {
            targets[..=i].rotate_right(1);
        }
        let fanout = if fastrand::f64() < self.config.read_repair_chance {
            targets.len()
        } else {
            r
        };
        let fallbacks = plan
            .targets
            .iter()
            .filter(|t| t.hint_for.is_some())
            .map(|t| t.node)
            .collect();
        let (fsm, mut out) = GetFsm::start_with_fanout(key.clone(), targets, r, fanout);
        let mut fsm = fsm.without_repair_to(fallbacks);
        // Our own replica answers at once, from the position the plan
        // already hashed, instead of as a request through the driver.
        let local = out
            .iter()
            .position(|o| matches!(o, FsmOutput::Send { to, .. } if *to == self.me));
        if let Some(i) = local {
            out.swap_remove(i);
            let started = std::time::Instant::now();
            let answer = match self.read_with_hints_at(plan.position, key) {
                Ok(state) => ReplicaAnswer::State(state),
                Err(error) => {
                    debug!(%error, "own replica could not be read");
                    ReplicaAnswer::Failed
                }
            };
            if trace::active() {
                let outcome = match answer {
                    ReplicaAnswer::Failed => CallOutcome::Failed,
                    _ => CallOutcome::Answered,
                };
                trace::record(self.me, started.elapsed(), outcome);
            }
            out.extend(fsm.on_answer(self.me, answer));
        }
        Start::Run(Quorum::Get(fsm), out)
    }

    /// Writes `write` to `key`: coordinated here when this node is an owner,
    /// otherwise by the owner that answers fastest.
    pub async fn put(
        self: &Arc<Self>,
        key: &[u8],
        write: Write,
        now_ms: u64,
    ) -> Result<Siblings, ClusterError> {
        let mut results = self
            .put_many(vec![(Bytes::copy_from_slice(key), write)], now_ms)
            .await;
        results.pop().expect("one result per write")
    }

    /// [`Node::put`] of several keys at once (pipelined SETs, MSET): the
    /// writes this node coordinates replicate with their messages to each
    /// replica batched; the others are forwarded to an owner concurrently.
    /// Results in the order of `writes`.
    pub async fn put_many(
        self: &Arc<Self>,
        writes: Vec<(Bytes, Write)>,
        now_ms: u64,
    ) -> Vec<Result<Siblings, ClusterError>> {
        // A write joins the other clients' writes (`coalesce.rs`).
        if (1..=MAX_COALESCED_KEYS).contains(&writes.len()) {
            return self.coalesced_put(writes, now_ms).await;
        }
        self.put_many_now(writes, now_ms).await
    }

    /// [`Node::put_many`] of exactly these writes, as one batch.
    pub(super) async fn put_many_now(
        self: &Arc<Self>,
        writes: Vec<(Bytes, Write)>,
        now_ms: u64,
    ) -> Vec<Result<Siblings, ClusterError>> {
        let _foreground = Foreground::enter(self, writes.len());
        let mut results: Vec<Option<Result<Siblings, ClusterError>>> =
            (0..writes.len()).map(|_| None).collect();
        // Sized up front: a quorum machine is large, and growing the vector
        // would copy them all again.
        let mut quorums = Vec::with_capacity(writes.len());
        let mut members = Vec::with_capacity(writes.len());
        let mut forwards = Vec::new();
        let planned: Vec<(Bytes, Write, Plan)> = writes
            .into_iter()
            .map(|(key, write)| {
                let plan = self.write_plan(&key);
                (key, write, plan)
            })
            .collect();
        self.replica.warm_at(
            planned
                .iter()
                .filter(|(_, _, plan)| plan.is_owner(self.me))
                .map(|(key, _, plan)| (plan.position, &key[..])),
        );
        for (i, (key, write, plan)) in planned.into_iter().enumerate() {
            if !plan.is_owner(self.me) {
                forwards.push((i, key, write, plan));
                continue;
            }
            let stored = self
                .replica
                .write_encoded_at(plan.position, &key, now_ms, |_| (Some(write), ()))
                .map(|(_, stored)| stored.expect("a write was decided"));
            match stored.map(|stored| self.replication(key, stored, &plan)) {
                Ok(Start::Run(machine, first)) => {
                    quorums.push((machine, first));
                    members.push(i);
                }
                Ok(Start::Done(done)) => results[i] = Some(Ok(done)),
                Err(error) => results[i] = Some(Err(error)),
            }
        }
        let forwarded = futures_util::future::join_all(forwards.into_iter().map(
            |(i, key, write, plan)| async move { (i, self.forward(&key, write, &plan).await) },
        ));
        let (replies, forwarded) = if quorums.is_empty() {
            (Vec::new(), forwarded.await)
        } else {
            futures_util::future::join(self.drive_all(quorums), forwarded).await
        };
        for (i, reply) in members.into_iter().zip(replies).chain(forwarded) {
            results[i] = Some(reply);
        }
        results
            .into_iter()
            .map(|r| r.expect("every write answered"))
            .collect()
    }

    /// Read-modify-write: `decide` sees a quorum read (on an owner, merged
    /// into its replica first, and the write is coordinated here; on any
    /// other node the write goes to an owner with the read's context). Not
    /// isolated across nodes: concurrent updates become siblings.
    pub async fn update<R: Send>(
        self: &Arc<Self>,
        key: &[u8],
        now_ms: u64,
        decide: impl FnOnce(&Siblings) -> (Option<Write>, R) + Send,
    ) -> Result<R, ClusterError> {
        let _foreground = Foreground::enter(self, 1);
        let plan = self.write_plan(key);
        if plan.is_owner(self.me) {
            // A quorum read first (R + W > N: it sees every acknowledged
            // write), folded into our replica, so `decide` starts from it.
            let current = self.get(key).await?;
            if !current.is_empty() {
                self.replica.merge(key, &current, now_ms)?;
            }
            let (result, stored) = self.replica.write_encoded(key, now_ms, decide)?;
            if let Some(stored) = stored {
                self.replicate(Bytes::copy_from_slice(key), stored, &plan)
                    .await?;
            }
            return Ok(result);
        }
        let current = self.get(key).await?;
        let (write, result) = decide(&current);
        if let Some(write) = write {
            self.forward(key, write, &plan).await?;
        }
        Ok(result)
    }

    /// Replicates a write this node stored; the key's state once W acked.
    async fn replicate(
        self: &Arc<Self>,
        key: Bytes,
        stored: (Siblings, EncodedSiblings),
        plan: &Plan,
    ) -> Result<Siblings, ClusterError> {
        match self.replication(key, stored, plan) {
            Start::Run(machine, first) => {
                let mut replies = self.drive_all(vec![(machine, first)]).await;
                replies.pop().expect("one reply")
            }
            Start::Done(done) => Ok(done),
        }
    }

    /// The replication of a write this node stored (`stored`, its state of
    /// the key afterwards, decoded and encoded) to the other targets of
    /// `plan`, or that state when nobody else needs it.
    fn replication(
        &self,
        key: Bytes,
        stored: (Siblings, EncodedSiblings),
        plan: &Plan,
    ) -> Start<Siblings> {
        for &owner in &plan.orphans {
            self.hold_hint(owner, &key, &stored.0);
        }
        let others: SmallVec<[WriteTarget; 4]> = plan
            .targets
            .iter()
            .copied()
            .filter(|t| t.node != self.me)
            .collect();
        if others.is_empty() && self.quorum(self.config.w, plan) <= 1 && plan.groups.is_empty() {
            return Start::Done(stored.0);
        }
        // A ring with fewer than W nodes has fewer replicas of the key than
        // W: its group needs all of them (R and W are capped the same way).
        let groups: SmallVec<[AckGroup; 1]> = if plan.groups.is_empty() {
            let replicas = Some(plan.coordinators.len()).filter(|n| *n > 0);
            smallvec::smallvec![AckGroup::everyone(&others, replicas)]
        } else {
            plan.groups
                .iter()
                .map(|g| AckGroup {
                    nodes: g.nodes.iter().copied().filter(|n| *n != self.me).collect(),
                    // The coordinator stored the write itself; where it only
                    // stands in, it counts as fallbacks do.
                    with_coordinator: g.nodes.contains(&self.me)
                        && (self.config.fallback_acks_count || !g.stand_ins.contains(&self.me)),
                    needed: Some(g.replicas).filter(|n| *n > 0),
                    stand_ins: g.stand_ins.iter().copied().collect(),
                })
                .collect()
        };
        let (fsm, out) = PutFsm::start_grouped(
            key,
            stored,
            others,
            self.config.w,
            self.config.fallback_acks_count,
            groups,
        );
        Start::Run(Quorum::Put(fsm), out)
    }

    /// Keeps a hint here for `owner`, which did not get this write.
    pub(super) fn hold_hint(&self, owner: NodeId, key: &[u8], siblings: &Siblings) {
        if owner == self.me {
            return;
        }
        if let Err(error) = self.hints.store(owner, key, siblings) {
            warn!(%error, "could not store a hint");
        }
    }

    async fn forward(
        self: &Arc<Self>,
        key: &[u8],
        write: Write,
        plan: &Plan,
    ) -> Result<Siblings, ClusterError> {
        let owners: Vec<NodeId> = plan
            .coordinators
            .iter()
            .copied()
            .filter(|n| self.is_up(*n))
            .collect();
        let unavailable = ClusterError::Unavailable {
            needed: self.config.w,
            got: 0,
        };
        if owners.is_empty() {
            return Err(unavailable);
        }
        CoordinatorStats::bump(&self.replica.stats().writes_forwarded);
        let request = Request::Coordinate {
            key: Bytes::copy_from_slice(key),
            write: Box::new(RemoteWrite {
                context: write.context,
                supersede_known: write.supersede_known,
                value: match write.payload {
                    Payload::Value(v) => Some(v),
                    Payload::Tombstone => None,
                },
                expires_at_ms: write.expires_at_ms,
            }),
        };
        // Fastest owner first; the next one only if the write certainly did
        // not reach the previous (no connection), so it is never applied twice.
        for owner in self.by_latency(owners) {
            let started = std::time::Instant::now();
            let result = self.call(owner, request.clone()).await;
            let outcome = match &result {
                Ok(Response::Coordinated(Ok(_))) => CallOutcome::Answered,
                _ => CallOutcome::Failed,
            };
            trace::record(owner, started.elapsed(), outcome);
            match result {
                Ok(Response::Coordinated(Ok(siblings))) => return Ok(siblings),
                Ok(Response::Coordinated(Err(error))) => return Err(from_remote(error)),
                Ok(other) => {
                    return Err(ClusterError::Remote(format!("unexpected answer {other:?}")))
                }
                Err(TransportError::Unreachable(_) | TransportError::Refused(..)) => continue,
                Err(_) => return Err(unavailable),
            }
        }
        Err(unavailable)
    }

    /// `nodes` ordered by how fast they have answered (unmeasured first).
    pub(crate) fn by_latency(&self, mut nodes: Vec<NodeId>) -> Vec<NodeId> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let latency = |n: &NodeId| health.get(n).map_or(0.0, |h| h.latency_us);
        nodes.sort_by(|a, b| latency(a).total_cmp(&latency(b)));
        nodes
    }

    pub(super) fn send_repair(self: &Arc<Self>, to: NodeId, request: Request) {
        CoordinatorStats::bump(&self.replica.stats().read_repairs);
        let node = self.clone();
        tokio::spawn(async move {
            if let Err(error) = node.call(to, request).await {
                debug!(%error, "read repair not delivered");
            }
        });
    }

    /// Answers the requests that need no waiting.
    pub(super) fn handle_now(&self, request: Request) -> Response {
        let now = super::now_ms();
        let result = match request {
            Request::Ping => Ok(Response::Pong),
            Request::Read { key } => self.read_with_hints(&key).map(Response::State),
            Request::HintedMerge {
                key,
                siblings,
                owner,
            } => match self.hints.store(owner, &key, &siblings) {
                Ok(true) => Ok(Response::Ack),
                Ok(false) => Ok(Response::Failed("hint store full".into())),
                Err(e) => Err(e),
            },
            Request::Merge { key, state } => self
                .replica
                .merge_encoded(&key, &state, now)
                .map(|_| Response::Ack),
            Request::Gossip(raw) => Ok(self.receive_gossip(&raw)),
            Request::Scan { cursor, count } => self
                .replica
                .scan(cursor, count.clamp(1, 4096) as usize)
                .map(|(entries, next)| Response::Page { entries, next }),
            Request::CountLive => Ok(Response::Count(self.replica.value_keys())),
            Request::FlushAll => self
                .replica
                .clear()
                .and_then(|_| self.hints.clear())
                .map(|_| Response::Ack),
            Request::Coordinate { .. } => {
                Ok(Response::Failed("coordinate is not immediate".into()))
            }
            Request::MerkleRoots {
                partitions,
                summary,
            } => Ok(self.merkle_roots(&partitions, summary)),
            Request::MerkleChildren {
                partition,
                level,
                index,
            } => Ok(self.merkle_children(partition, level.into(), index.into())),
            Request::LeafDigests { partition, leaves } => {
                let leaves: Vec<usize> = leaves.into_iter().map(usize::from).collect();
                self.replica
                    .leaf_digests(partition as usize, &leaves)
                    .map(Response::Digests)
            }
            Request::ReadMany { keys } => keys
                .iter()
                .take(super::antientropy::MAX_KEYS_PER_MESSAGE)
                .map(|k| self.replica.read_encoded(k))
                .collect::<Result<Vec<_>, _>>()
                .map(Response::States),
            // A hint, or a copy this node keeps while not a replica of the key
            // (it is still to be handed off): either could bring a collected
            // tombstone's value back.
            Request::HintsFor { key } => self
                .holds_for_others(&key)
                .map(|held| Response::Count(u64::from(held))),
            Request::Fetch {
                partition,
                after,
                limit,
                digests_only,
            } => self.serve_fetch(partition, &after, limit, digests_only),
            Request::DigestMany { keys } => keys
                .iter()
                .take(super::antientropy::MAX_KEYS_PER_MESSAGE)
                .map(|k| self.replica.digest_of(k).map(|d| (k.clone(), d)))
                .collect::<Result<Vec<_>, _>>()
                .map(Response::Digests),
            Request::Collect { key, expected } => self
                .replica
                .collect_if_unchanged(&key, &expected, now)
                .map(|done| Response::Count(u64::from(done))),
            Request::MergeMany { entries } => entries
                .iter()
                .take(super::antientropy::MAX_KEYS_PER_MESSAGE)
                .try_for_each(|(k, s)| self.replica.merge(k, s, now).map(drop))
                .map(|_| Response::Ack),
            Request::ReadBatch { keys } => self.read_batch(&keys).map(Response::States),
            // An Ack must mean every entry is stored: a batch larger than
            // any sender makes is refused whole, never half-applied and acked.
            Request::MergeBatch { entries } if entries.len() > super::driver::MAX_BATCH_KEYS => {
                Ok(Response::Failed(format!(
                    "merge batch of {} keys (max {})",
                    entries.len(),
                    super::driver::MAX_BATCH_KEYS
                )))
            }
            Request::MergeBatch { entries } => self
                .replica
                .merge_encoded_batch(&entries, now)
                .map(|()| Response::Ack),
        };
        result.unwrap_or_else(|e| Response::Failed(e.to_string()))
    }

    /// Whether this node holds `key` for another node: a hint, or a stored
    /// copy while it is not among the key's replicas.
    fn holds_for_others(&self, key: &[u8]) -> Result<bool, ClusterError> {
        if !self.hints.read_key(key)?.is_empty() {
            return Ok(true);
        }
        let view = self.view();
        let position = keyspace::ring_position(key);
        let replica_here = view
            .ring
            .preference_list_n(position, self.config.n)
            .contains(&self.me)
            || view.target.as_ref().is_some_and(|t| {
                t.preference_list_n(position, self.config.n)
                    .contains(&self.me)
            });
        Ok(!replica_here && !self.replica.read(key)?.is_empty())
    }

    /// Changes the membership state with `f`; if it changed, refreshes the
    /// routing view and persists it. Returns whether it changed.
    pub fn change_state(&self, f: impl FnOnce(&mut ClusterState) -> bool) -> bool {
        let changed = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let changed = f(&mut state);
            if changed {
                *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view_of(&state));
            }
            changed
        };
        if changed {
            self.persist();
        }
        changed
    }

    /// Local bookkeeping of partition transfers.
    pub fn transfer_local(&self) -> &super::transfer::TransferLocal {
        &self.transfer
    }

    /// This replica's state of `key`, with the hints it holds for the key
    /// folded in (a fallback answers reads for the owner it stands in for).
    fn read_with_hints(&self, key: &[u8]) -> Result<EncodedSiblings, ClusterError> {
        self.read_with_hints_at(keyspace::ring_position(key), key)
    }

    /// [`Node::read_with_hints`] of a key whose ring position is known.
    fn read_with_hints_at(
        &self,
        position: u64,
        key: &[u8],
    ) -> Result<EncodedSiblings, ClusterError> {
        let stored = self.replica.read_encoded_at(position, key)?;
        if self.hints.total() == 0 {
            return Ok(stored);
        }
        let hinted = self.hints.read_key(key)?;
        if hinted.is_empty() {
            return Ok(stored);
        }
        let mut state = stored.decode()?;
        state.merge(&hinted);
        Ok(EncodedSiblings::encode(&state))
    }

    /// A coordinator's batch of reads: states as [`Request::Read`] answers
    /// them, stopping after [`MAX_BATCH_REPLY_BYTES`] of values (at least
    /// one state, so the sender always makes progress).
    fn read_batch(&self, keys: &[Bytes]) -> Result<Vec<EncodedSiblings>, ClusterError> {
        let mut states = Vec::with_capacity(keys.len().min(super::driver::MAX_BATCH_KEYS));
        let mut bytes = 0;
        let keys = &keys[..keys.len().min(super::driver::MAX_BATCH_KEYS)];
        let positions: Vec<u64> = keys.iter().map(|k| keyspace::ring_position(k)).collect();
        self.replica
            .warm_at(positions.iter().copied().zip(keys.iter().map(|k| &k[..])));
        for (key, &position) in keys.iter().zip(&positions) {
            if bytes >= MAX_BATCH_REPLY_BYTES {
                break;
            }
            let state = self.read_with_hints_at(position, key)?;
            bytes += state.len();
            states.push(state);
        }
        Ok(states)
    }

    /// Client requests in flight on this node.
    pub fn foreground_in_flight(&self) -> usize {
        self.foreground.load(Ordering::Relaxed)
    }

    /// Replica requests served for other nodes' clients per second, over
    /// the last 200 ms or more.
    pub fn replica_rate(&self) -> f64 {
        let served = self.replica_served.load(Ordering::Relaxed);
        let mut sample = self.load_sample.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = sample.at.elapsed().as_secs_f64();
        if elapsed >= 0.2 {
            sample.rate = served.saturating_sub(sample.served) as f64 / elapsed;
            sample.at = std::time::Instant::now();
            sample.served = served;
        }
        sample.rate
    }

    /// Admission control for background work. A round is skipped (and
    /// counted) while more than `background-max-foreground` client requests
    /// are in flight here (in flight = throughput x latency), or while the
    /// mean latency of client requests over the last half second is above
    /// `background-latency-factor` times its baseline (the lowest such mean
    /// of the last minute), so background work backs off as foreground
    /// latency rises and resumes as it falls; and it runs only one time in
    /// eight while this node serves more than `background-max-replica-rate`
    /// replica requests per second for other nodes' clients, so a sync slows
    /// down under load but still progresses.
    pub(crate) fn background_may_run(&self) -> bool {
        let busy_here = self.foreground_in_flight() > self.config.background_max_foreground;
        let slow_here = self.foreground_latency_elevated();
        let busy_replica = self.replica_rate() > self.config.background_max_replica_rate as f64;
        let tick = self.background_ticks.fetch_add(1, Ordering::Relaxed);
        if !busy_here && !slow_here && (!busy_replica || tick.is_multiple_of(8)) {
            return true;
        }
        CoordinatorStats::bump(&self.replica.stats().background_deferrals);
        false
    }

    /// The pace of anti-entropy's key transfers.
    pub(crate) fn ae_rate(&self) -> std::sync::MutexGuard<'_, super::budget::KeyRate> {
        self.ae_rate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn foreground_latency_elevated(&self) -> bool {
        let mut watch = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        watch.elevated(
            self.config.background_latency_factor,
            std::time::Instant::now(),
        )
    }

    /// Mean latency (µs) of client requests over the last half second (if
    /// there were enough to judge) and its baseline, for INFO.
    pub fn foreground_latency_us(&self) -> (Option<f64>, Option<f64>) {
        let mut watch = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        (
            watch.last_us(std::time::Instant::now()),
            watch.baseline_us(),
        )
    }

    /// One hinted-handoff round: offers up to `hint-batch` hints, from
    /// `cursor` on, to their owners that are up; removes those acknowledged.
    /// Returns where the next round continues.
    pub async fn deliver_hints(self: &Arc<Self>, cursor: Vec<u8>) -> Vec<u8> {
        if self.hints.total() == 0 {
            return Vec::new();
        }
        let (batch, next) = match self.hints.batch(&cursor, self.config.hint_batch) {
            Ok(page) => page,
            Err(error) => {
                warn!(%error, "cannot read hints");
                return Vec::new();
            }
        };
        let view = self.view();
        let deliveries = batch.into_iter().filter_map(|hint| {
            let targets = self.hint_targets(&view, &hint)?;
            let node = self.clone();
            Some(async move {
                let request = Request::Merge {
                    key: hint.key.clone(),
                    state: EncodedSiblings::encode(&hint.siblings),
                };
                let mut delivered = true;
                for target in targets {
                    delivered &=
                        matches!(node.call(target, request.clone()).await, Ok(Response::Ack));
                }
                (hint, delivered)
            })
        });
        for (hint, delivered) in futures_util::future::join_all(deliveries).await {
            if delivered {
                self.forget_delivered(&hint);
            }
        }
        next
    }

    /// Where a hint goes now: its owner when that is a member and up; for an
    /// owner that was removed (it will never come back), the key's current
    /// replicas, all of which must be up. `None`: not deliverable now.
    fn hint_targets(&self, view: &View, hint: &Hint) -> Option<Vec<NodeId>> {
        if hint.owner == self.me || view.addrs.contains_key(&hint.owner) {
            return (hint.owner == self.me || self.is_up(hint.owner)).then(|| vec![hint.owner]);
        }
        let replicas = view
            .read_ring
            .preference_list_n(keyspace::ring_position(&hint.key), self.config.n);
        (!replicas.is_empty() && replicas.iter().all(|n| self.is_up(*n))).then_some(replicas)
    }

    fn forget_delivered(&self, hint: &Hint) {
        if let Err(error) = self.hints.remove_delivered(hint) {
            warn!(%error, "cannot remove a delivered hint");
        }
    }

    /// Runs hinted-handoff rounds forever.
    pub async fn run_handoff(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.hint_delivery_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursor = Vec::new();
        loop {
            ticker.tick().await;
            if self.background_may_run() {
                cursor = self.deliver_hints(cursor).await;
            }
        }
    }

    async fn coordinate(self: Arc<Self>, key: Bytes, write: RemoteWrite) -> Response {
        CoordinatorStats::bump(&self.replica.stats().writes_coordinated_for_peers);
        let write = Write {
            context: write.context,
            supersede_known: write.supersede_known,
            payload: match write.value {
                Some(v) => Payload::Value(v),
                None => Payload::Tombstone,
            },
            expires_at_ms: write.expires_at_ms,
        };
        let now = super::now_ms();
        let plan = self.write_plan(&key);
        let result = match self.replica.write_encoded(&key, now, |_| (Some(write), ())) {
            Ok((_, Some(stored))) => self.replicate(key.clone(), stored, &plan).await,
            Ok((_, None)) => Err(ClusterError::Remote("nothing written".into())),
            Err(e) => Err(e),
        };
        Response::Coordinated(result.map_err(|e| to_remote(&e)))
    }

    fn receive_gossip(&self, raw: &[u8]) -> Response {
        match ClusterState::decode(raw) {
            Ok(theirs) => {
                self.merge_state(&theirs);
            }
            Err(error) => warn!(%error, "unreadable gossip"),
        }
        Response::Gossip(Bytes::from(self.cluster_state().encode()))
    }

    /// Merges a peer's membership state; refreshes the view if it changed.
    pub fn merge_state(&self, theirs: &ClusterState) -> bool {
        let changed = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if theirs.cluster_name() != state.cluster_name() {
                warn!(
                    theirs = theirs.cluster_name(),
                    "gossip from another cluster ignored"
                );
                return false;
            }
            let before = state.ring().version();
            let changed = state.merge(theirs);
            if changed {
                *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view_of(&state));
                if state.ring().version() != before {
                    info!(
                        ring_version = state.ring().version(),
                        members = state.members().len(),
                        "ring changed"
                    );
                }
            }
            changed
        };
        if changed {
            self.persist();
        }
        changed
    }

    fn persist(&self) {
        let raw = self.cluster_state().encode();
        if let Err(error) = self.replica.engine().meta_put(MEMBERSHIP_KEY, &raw) {
            warn!(%error, "could not persist the membership");
        }
    }

    /// One gossip round: exchange state with a random live member (or a
    /// seed, sometimes, or when nobody else is known), and probe members
    /// marked down.
    pub async fn gossip_round(self: &Arc<Self>) {
        let view = self.view();
        let others: Vec<NodeId> = view
            .addrs
            .keys()
            .copied()
            .filter(|n| *n != self.me && self.member_active(*n))
            .collect();
        let up: Vec<NodeId> = others.iter().copied().filter(|n| self.is_up(*n)).collect();
        if let Some(&peer) = up.get(fastrand::usize(..up.len().max(1))) {
            self.exchange_with(peer).await;
        }
        let seeds: Vec<&String> = self
            .config
            .seeds
            .iter()
            .filter(|s| **s != self.config.peer_addr)
            .collect();
        let seed_chance = 1.0 / (others.len() as f64 + 1.0);
        if !seeds.is_empty() && (up.is_empty() || fastrand::f64() < seed_chance) {
            let seed = seeds[fastrand::usize(..seeds.len())].clone();
            let _ = self.gossip_with_addr(&seed).await;
        }
        for node in others.into_iter().filter(|n| !self.is_up(*n)) {
            let probe = self.clone();
            tokio::spawn(async move {
                let _ = probe.call(node, Request::Ping).await;
            });
        }
    }

    fn member_active(&self, node: NodeId) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .member(node)
            .is_some_and(|m| m.status != crate::membership::MemberStatus::Removed)
    }

    async fn exchange_with(self: &Arc<Self>, peer: NodeId) {
        let raw = Bytes::from(self.cluster_state().encode());
        if let Ok(Response::Gossip(theirs)) = self.call(peer, Request::Gossip(raw)).await {
            self.absorb(&theirs);
        }
    }

    /// Gossips with the peer at `addr` (a seed, or the target of DYNAMO
    /// JOIN); returns the number of members known afterwards.
    pub async fn gossip_with_addr(&self, addr: &str) -> Result<usize, TransportError> {
        let raw = Bytes::from(self.cluster_state().encode());
        let answer = self
            .pool
            .call(addr, Request::Gossip(raw), self.config.request_timeout)
            .await?;
        if let Response::Gossip(theirs) = answer {
            self.absorb(&theirs);
        }
        Ok(self.cluster_state().members().len())
    }

    fn absorb(&self, raw: &[u8]) {
        match ClusterState::decode(raw) {
            Ok(theirs) => {
                self.merge_state(&theirs);
            }
            Err(error) => warn!(%error, "unreadable gossip answer"),
        }
    }

    /// Runs gossip rounds forever.
    pub async fn run_gossip(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.gossip_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.gossip_round().await;
        }
    }

    /// Active members (not removed), in id order.
    pub fn active_members(&self) -> Vec<NodeId> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .members()
            .values()
            .filter(|m| m.status != crate::membership::MemberStatus::Removed)
            .map(|m| m.id)
            .collect()
    }

    /// Sends `request` to every active member (this one included) and
    /// returns each answer.
    pub async fn broadcast(
        self: &Arc<Self>,
        request: Request,
    ) -> Vec<(NodeId, Result<Response, TransportError>)> {
        let calls = self.active_members().into_iter().map(|node| {
            let request = request.clone();
            let this = self.clone();
            async move { (node, this.call(node, request).await) }
        });
        futures_util::future::join_all(calls).await
    }
}

impl PeerHandler for Arc<Node> {
    fn handle(&self, _from: NodeId, request: Request) -> Handled {
        // Replica work for other nodes' clients: foreground load too.
        let served = match &request {
            Request::Read { .. }
            | Request::Merge { .. }
            | Request::HintedMerge { .. }
            | Request::Coordinate { .. } => 1,
            Request::ReadBatch { keys } => keys.len(),
            Request::MergeBatch { entries } => entries.len(),
            _ => 0,
        };
        if served > 0 {
            self.replica_served
                .fetch_add(served as u64, Ordering::Relaxed);
        }
        match request {
            Request::Coordinate { key, write } => {
                Handled::Later(Box::pin(self.clone().coordinate(key, *write)))
            }
            other => Handled::Now(self.handle_now(other)),
        }
    }
}

fn self_member(config: &ClusterConfig, me: NodeId, version: u64) -> crate::membership::Member {
    crate::membership::Member {
        id: me,
        peer_addr: config.peer_addr.clone(),
        client_addr: config.client_addr.clone(),
        weight: config.weight,
        status: crate::membership::MemberStatus::Active,
        version,
    }
}

fn view_of(state: &ClusterState) -> View {
    View {
        ring: state.ring().clone(),
        read_ring: state.read_ring().clone(),
        target: state.write_target().cloned(),
        addrs: state
            .members()
            .values()
            .filter(|m| m.status != crate::membership::MemberStatus::Removed)
            .map(|m| (m.id, Arc::from(m.peer_addr.as_str())))
            .collect(),
    }
}

fn to_remote(error: &ClusterError) -> RemoteError {
    match error {
        ClusterError::Unavailable { needed, got } => RemoteError::Unavailable {
            needed: *needed,
            got: *got,
        },
        ClusterError::InvalidContext => RemoteError::InvalidContext,
        ClusterError::TooManySiblings { max } => RemoteError::TooManySiblings { max: *max },
        other => RemoteError::Other(other.to_string()),
    }
}

fn from_remote(error: RemoteError) -> ClusterError {
    match error {
        RemoteError::Unavailable { needed, got } => ClusterError::Unavailable { needed, got },
        RemoteError::InvalidContext => ClusterError::InvalidContext,
        RemoteError::TooManySiblings { max } => ClusterError::TooManySiblings { max },
        RemoteError::Other(text) => ClusterError::Remote(text),
    }
}
