//! `dynamo-server`: a Dynamo-style key-value store that speaks the Redis
//! protocol. See README.md and ARCHITECTURE.md.

mod admin_cli;
mod client_socket;
mod cluster_view;
mod commands;
mod config;
mod connection;
mod demo;
mod http;
mod info;
mod listener;
mod metrics;
mod session;
mod slowlog;
mod state;
mod stats;
mod tls;

use std::{process::ExitCode, sync::Arc, time::Duration};

use cluster::{
    coordinator::{Coordinator, CoordinatorConfig},
    handoff::HintStore,
    replica::{Replica, ReplicaConfig},
    runtime::{self, ClusterConfig, ClusterSecret, Identity, Node, PeerPool},
    storage::{open_engine, CachedEngine, Engine, EngineKind},
};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::{config::Invocation, state::ServerState};

// Many small, short-lived allocations cross threads here (frames, replies,
// sibling sets); glibc's allocator spent a fifth of a node's CPU on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => return demo::run(&args[1..]),
        Some("admin") => return admin_cli::run(&args[1..]),
        _ => {}
    }
    let config = match config::from_args(&args) {
        Ok(Invocation::Run(config)) => *config,
        Ok(Invocation::Print(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("dynamo-server: {message}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match runtime_builder(config.worker_threads).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dynamo-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("dynamo-server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One event loop for `worker-threads 1` (tokio's current-thread scheduler:
/// no work stealing, no cross-thread wake-ups, the cheapest per request);
/// otherwise the work-stealing scheduler on that many threads (0: one per
/// core).
fn runtime_builder(worker_threads: usize) -> tokio::runtime::Builder {
    match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    }
}

fn init_logging(config: &config::Config) {
    let default = config.log_filter().unwrap_or("info");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(config: config::Config) -> Result<(), String> {
    let kind = config.engine_kind()?;
    let durability = config.durability_mode()?;
    let engine = open_engine(kind, &config.data_dir, durability)
        .map_err(|e| format!("cannot open storage: {e}"))?;
    let engine: std::sync::Arc<dyn Engine> = match kind {
        EngineKind::Sled if config.read_cache_bytes > 0 => {
            Arc::new(CachedEngine::new(engine, config.read_cache_bytes))
        }
        _ => engine,
    };
    let coordinator_config = CoordinatorConfig {
        max_siblings: config.max_siblings,
        replicas: config.n,
    };
    let coordinator = if config.clustered() {
        start_cluster(&config, engine, coordinator_config).await?
    } else {
        Coordinator::open(engine, coordinator_config)
            .map_err(|e| format!("cannot open the coordinator: {e}"))?
    };
    let state = Arc::new(ServerState::new(coordinator, config));
    listener::serve(state).await
}

/// Opens the replica, joins the cluster protocol (peer listener, gossip) and
/// returns a coordinator that runs every request through it.
async fn start_cluster(
    config: &config::Config,
    engine: Arc<dyn Engine>,
    coordinator_config: CoordinatorConfig,
) -> Result<Coordinator, String> {
    let hint_engine = engine
        .namespace("hints")
        .map_err(|e| format!("cannot open the hint store: {e}"))?;
    let hints = HintStore::open(hint_engine, config.max_hints)
        .map_err(|e| format!("cannot open the hint store: {e}"))?;
    let replica = Replica::open(
        engine,
        ReplicaConfig {
            max_siblings: config.max_siblings,
            collect_dead_keys: false,
        },
    )
    .map_err(|e| format!("cannot open the replica: {e}"))?;
    let replica = Arc::new(replica);
    let announce = config.announce_ip();
    let identity = Identity {
        node_id: config
            .pinned_node_id()?
            .unwrap_or_else(|| replica.node_id()),
        cluster_name: config.cluster_name.clone(),
        max_frame_bytes: config
            .max_value_bytes
            .saturating_mul(config.max_siblings)
            .saturating_add(1 << 20)
            .clamp(16 << 20, 1 << 30),
        secret: Some(&config.cluster_secret)
            .filter(|s| !s.is_empty())
            .map(|s| ClusterSecret::new(s.as_bytes())),
        source_ip: config.bind.parse().ok(),
    };
    let cluster_config = ClusterConfig {
        node_id: config.pinned_node_id()?,
        cluster_name: config.cluster_name.clone(),
        n: config.n,
        r: config.r,
        w: config.w,
        q: config.q,
        weight: config.weight,
        peer_addr: format!("{announce}:{}", config.peer_port()),
        client_addr: format!("{announce}:{}", config.port),
        seeds: config.seeds.clone(),
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        read_hedge: (config.read_hedge_ms > 0).then(|| Duration::from_millis(config.read_hedge_ms)),
        read_repair_chance: config.read_repair_chance,
        hint_delivery_interval: Duration::from_millis(config.hint_delivery_interval_ms),
        hint_batch: config.hint_batch,
        anti_entropy_interval: Duration::from_millis(config.anti_entropy_interval_ms),
        anti_entropy_partitions: config.anti_entropy_partitions,
        anti_entropy_max_keys_per_sec: config.anti_entropy_max_keys_per_sec,
        tombstone_gc_interval: Duration::from_millis(config.tombstone_gc_interval_ms),
        tombstone_grace: Duration::from_millis(config.tombstone_grace_ms),
        background_max_foreground: config.background_max_foreground,
        background_max_replica_rate: config.background_max_replica_rate,
        background_latency_factor: config.background_latency_factor,
        fallback_acks_count: config.fallback_acks_count,
        gossip_interval: Duration::from_millis(config.gossip_interval_ms),
        transfer_max_keys_per_sec: config.transfer_max_keys_per_sec,
        transfer_batch: config.transfer_batch,
    };
    let node = Node::open(
        cluster_config,
        replica,
        Arc::new(hints),
        PeerPool::new(identity.clone()),
    )
    .map_err(|e| format!("cannot open the cluster state: {e}"))?;
    let node = Arc::new(node);
    let peer_address = format!("{}:{}", config.bind, config.peer_port());
    let listener = TcpListener::bind(&peer_address)
        .await
        .map_err(|e| format!("cannot listen on peer port {peer_address}: {e}"))?;
    tracing::info!(%peer_address, cluster = %config.cluster_name, seeds = ?config.seeds, "peer protocol listening");
    runtime::start(node.clone(), listener, identity);
    Ok(Coordinator::clustered(node, coordinator_config))
}
