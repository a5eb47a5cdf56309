//! `dynamo-server`: a Dynamo-style key-value store that speaks the Redis
//! protocol. See README.md and ARCHITECTURE.md.

mod commands;
mod config;
mod connection;
mod info;
mod listener;
mod session;
mod state;
mod stats;

use std::{process::ExitCode, sync::Arc};

use cluster::{
    coordinator::{Coordinator, CoordinatorConfig},
    storage::{open_engine, CachedEngine, Engine, EngineKind},
};
use tracing_subscriber::EnvFilter;

use crate::{config::Invocation, state::ServerState};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
    let coordinator = Coordinator::open(
        engine,
        CoordinatorConfig {
            max_siblings: config.max_siblings,
            replicas: config.n,
        },
    )
    .map_err(|e| format!("cannot open the coordinator: {e}"))?;
    let state = Arc::new(ServerState::new(coordinator, config));
    listener::serve(state).await
}
