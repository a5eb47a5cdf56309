//! What every connection shares: the coordinator, the configuration, the
//! counters and the client registry.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        RwLock,
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use cluster::coordinator::Coordinator;
use resp::DecoderLimits;

use crate::{
    config::Config,
    metrics::Metrics,
    slowlog::SlowLog,
    stats::{Clients, ServerStats},
};

/// Shared server state.
pub struct ServerState {
    /// Every data command goes through it.
    pub coordinator: Coordinator,
    config: RwLock<Config>,
    max_value_bytes: AtomicUsize,
    max_key_bytes: AtomicUsize,
    /// Counters for INFO.
    pub stats: ServerStats,
    /// Connected clients.
    pub clients: Clients,
    /// When the server started.
    pub started: Instant,
    /// A random id for this run (INFO run_id).
    pub run_id: String,
    /// Prometheus metrics and the latency history.
    pub metrics: Metrics,
    /// SLOWLOG entries.
    pub slowlog: SlowLog,
    /// Woken by the SHUTDOWN command.
    pub shutdown_requested: tokio::sync::Notify,
}

impl ServerState {
    /// Builds the state around an opened coordinator.
    pub fn new(coordinator: Coordinator, config: Config) -> ServerState {
        let run_id = (0..40)
            .map(|_| fastrand::alphanumeric().to_ascii_lowercase())
            .collect();
        let slowlog = SlowLog::new(config.slowlog_log_slower_than, config.slowlog_max_len);
        ServerState {
            coordinator,
            max_value_bytes: AtomicUsize::new(config.max_value_bytes),
            max_key_bytes: AtomicUsize::new(config.max_key_bytes),
            config: RwLock::new(config),
            stats: ServerStats::default(),
            clients: Clients::default(),
            started: Instant::now(),
            run_id,
            metrics: Metrics::default(),
            slowlog,
            shutdown_requested: tokio::sync::Notify::new(),
        }
    }

    /// A snapshot of the configuration.
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the configuration after CONFIG SET validated it.
    pub fn set_config(&self, config: Config) {
        self.max_value_bytes
            .store(config.max_value_bytes, Ordering::Relaxed);
        self.max_key_bytes
            .store(config.max_key_bytes, Ordering::Relaxed);
        self.coordinator.set_max_siblings(config.max_siblings);
        self.slowlog
            .configure(config.slowlog_log_slower_than, config.slowlog_max_len);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Largest storable value.
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes.load(Ordering::Relaxed)
    }

    /// Largest storable key.
    pub fn max_key_bytes(&self) -> usize {
        self.max_key_bytes.load(Ordering::Relaxed)
    }

    /// Framing limits for new connections.
    pub fn decoder_limits(&self) -> DecoderLimits {
        DecoderLimits {
            max_bulk_len: self.config().proto_max_bulk_len,
            ..DecoderLimits::default()
        }
    }
}

/// Wall-clock time in Unix milliseconds. The only clock data commands use.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
