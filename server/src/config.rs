//! Configuration: a TOML file plus `--name value` overrides.
//!
//! `dynamo-server [CONFIG_FILE] [--name value ...]`: the file is read first,
//! then each override replaces the option of the same (kebab-case) name, then
//! the whole is validated. Every error names the option at fault.

use std::{net::IpAddr, path::PathBuf};

use serde::Deserialize;

/// Most threads `worker-threads` may ask for.
const MAX_WORKER_THREADS: usize = 1024;

/// Every option, with the defaults of a single embedded node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub bind: String,
    /// Client (RESP) port.
    pub port: u16,
    /// Client port that speaks RESP over TLS (0: off), beside `port`.
    pub tls_port: u16,
    /// PEM certificate chain served on `tls-port`.
    pub tls_cert_file: String,
    /// PEM private key of `tls-cert-file`.
    pub tls_key_file: String,
    /// PEM CA certificates that client certificates must chain to.
    pub tls_ca_cert_file: String,
    /// Client certificates on `tls-port`: `no` (default), `yes` (required)
    /// or `optional` (checked when sent).
    pub tls_auth_clients: TlsAuthClients,
    /// Port of the node-to-node protocol (default `port + 10000`); listened
    /// on when the node is part of a cluster (n > 1 or seeds given).
    pub peer_port: Option<u16>,
    /// Nodes only talk to nodes of the same cluster name.
    pub cluster_name: String,
    /// This node's member id (16 hex digits); empty: the id stored with the
    /// data. Set it to rebuild a node on an empty disk in its old place.
    pub node_id: String,
    /// Peer addresses (host:peer-port) to contact to join a cluster.
    pub seeds: Vec<String>,
    /// Shared secret peers prove on the handshake (HMAC over nonces; never
    /// sent); empty: none, and nodes with one refuse this node.
    pub cluster_secret: String,
    /// Address other nodes reach this one at (default: `bind`, or 127.0.0.1
    /// when `bind` is a wildcard).
    pub announce_ip: String,
    /// Ring partitions (Q), a power of two; fixed for a cluster's life.
    pub q: usize,
    /// This node's share of partitions relative to the other nodes.
    pub weight: u32,
    /// How long a coordinator waits for R (or W) replicas.
    pub request_timeout_ms: u64,
    /// A read still short of R answers after this many ms also asks the
    /// next replica (0: never).
    pub read_hedge_ms: u64,
    /// Time between gossip rounds.
    pub gossip_interval_ms: u64,
    /// Share of reads sent to all N replicas instead of R (0.0-1.0); the
    /// extra answers let read repair fix the replicas a quorum skipped.
    pub read_repair_chance: f64,
    /// Most hints held for down replicas; past it hints are dropped and
    /// anti-entropy is relied on.
    pub max_hints: usize,
    /// Time between hinted-handoff delivery rounds.
    pub hint_delivery_interval_ms: u64,
    /// Hints offered per delivery round (the handoff's background budget).
    pub hint_batch: usize,
    /// Whether a fallback node's acknowledgement counts toward W.
    pub fallback_acks_count: bool,
    /// Time between Merkle anti-entropy exchanges with a random peer.
    pub anti_entropy_interval_ms: u64,
    /// Most partitions one exchange repairs (its background budget).
    pub anti_entropy_partitions: usize,
    /// Most keys per second this node's anti-entropy exchanges move, spread
    /// evenly (0: only the background budget limits them).
    pub anti_entropy_max_keys_per_sec: u64,
    /// Time between tombstone-collection passes (256 keys each).
    pub tombstone_gc_interval_ms: u64,
    /// Age a key's newest tombstone must reach before it may be collected.
    pub tombstone_grace_ms: u64,
    /// Background work skips its round while more client requests than this
    /// are in flight on the node (the background budget).
    pub background_max_foreground: usize,
    /// Background work slows to one round in eight while the node serves
    /// more replica requests per second than this for other nodes.
    pub background_max_replica_rate: u64,
    /// Background work skips its rounds while client requests' mean latency
    /// is above this many times its recent baseline (0: off).
    pub background_latency_factor: f64,
    /// Most keys per second a node fetches as a partition's new replica
    /// after a ring change (0: only the background budget limits it).
    pub transfer_max_keys_per_sec: u64,
    /// Keys per page of a partition transfer or hand-off.
    pub transfer_batch: usize,
    /// Where the storage engine keeps its files.
    pub data_dir: PathBuf,
    /// `sled` (on disk, default), `aof` (in memory, persisted by an
    /// append-only log) or `memory`.
    pub engine: String,
    /// `periodic` (flush every `flush-every-ms`) or `every-write` (fsync
    /// before acknowledging each write).
    pub durability: String,
    /// Flush interval for `periodic` durability.
    pub flush_every_ms: u64,
    /// Replicas per key (N).
    pub n: usize,
    /// Read quorum (R).
    pub r: usize,
    /// Write quorum (W).
    pub w: usize,
    /// Password for AUTH / HELLO AUTH; empty: no authentication.
    pub requirepass: String,
    /// With no `requirepass` and a non-loopback `bind`, accept only
    /// loopback clients (Redis's protected mode).
    pub protected_mode: bool,
    /// Most simultaneous client connections.
    pub maxclients: usize,
    /// Largest bulk string a client may send.
    pub proto_max_bulk_len: usize,
    /// Largest value that may be stored.
    pub max_value_bytes: usize,
    /// Largest key that may be stored.
    pub max_key_bytes: usize,
    /// Most versions (siblings) one key may hold.
    pub max_siblings: usize,
    /// Bytes of the read cache in front of the sled engine (0: none).
    pub read_cache_bytes: usize,
    /// How often the background expiry purge runs.
    pub expiry_purge_interval_ms: u64,
    /// Close connections idle this many seconds (0: never).
    pub timeout: u64,
    /// Log level: error, warn, info, debug, trace (Redis's warning, notice,
    /// verbose are accepted too). `RUST_LOG` overrides it.
    pub loglevel: String,
    /// Port of the HTTP endpoint with Prometheus metrics (`/metrics`) and
    /// the cluster dashboard (`/`); 0: off.
    pub metrics_port: u16,
    /// Commands slower than this many microseconds go to the slow log
    /// (0: every command; negative: none), as Redis's option.
    pub slowlog_log_slower_than: i64,
    /// Most entries the slow log keeps.
    pub slowlog_max_len: usize,
    /// Threads that run client connections, peer links and quorums: 1 (the
    /// default) runs them all on one event loop, as Redis does, which costs
    /// the least per request; more spread them over that many threads (0:
    /// one per core) for a node alone on a many-core machine.
    pub worker_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            port: 6379,
            tls_port: 0,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_ca_cert_file: String::new(),
            tls_auth_clients: TlsAuthClients::No,
            peer_port: None,
            cluster_name: "dynamo".into(),
            node_id: String::new(),
            seeds: Vec::new(),
            cluster_secret: String::new(),
            announce_ip: String::new(),
            q: 256,
            weight: 1,
            request_timeout_ms: 1000,
            read_hedge_ms: 20,
            gossip_interval_ms: 1000,
            read_repair_chance: 0.1,
            max_hints: 1_000_000,
            hint_delivery_interval_ms: 1000,
            hint_batch: 256,
            fallback_acks_count: true,
            anti_entropy_interval_ms: 10_000,
            anti_entropy_partitions: 16,
            anti_entropy_max_keys_per_sec: 0,
            tombstone_gc_interval_ms: 5_000,
            tombstone_grace_ms: 60_000,
            background_max_foreground: 64,
            background_max_replica_rate: 2_000,
            background_latency_factor: 2.0,
            transfer_max_keys_per_sec: 0,
            transfer_batch: 512,
            data_dir: PathBuf::from("./data"),
            engine: "sled".into(),
            durability: "periodic".into(),
            flush_every_ms: 1000,
            n: 1,
            r: 1,
            w: 1,
            requirepass: String::new(),
            protected_mode: true,
            maxclients: 10_000,
            proto_max_bulk_len: 512 * 1024 * 1024,
            max_value_bytes: 1024 * 1024,
            max_key_bytes: 64 * 1024,
            max_siblings: 64,
            read_cache_bytes: 64 * 1024 * 1024,
            expiry_purge_interval_ms: 100,
            timeout: 0,
            loglevel: "info".into(),
            metrics_port: 0,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            worker_threads: 1,
        }
    }
}

/// Options whose values are text even when they look like numbers.
const TEXT_OPTIONS: &[&str] = &[
    "bind",
    "tls-cert-file",
    "tls-key-file",
    "tls-ca-cert-file",
    "tls-auth-clients",
    "node-id",
    "cluster-name",
    "cluster-secret",
    "announce-ip",
    "data-dir",
    "engine",
    "durability",
    "requirepass",
    "loglevel",
];

/// What the command line asked for.
#[derive(Debug)]
pub enum Invocation {
    /// Run the server with this configuration.
    Run(Box<Config>),
    /// Print this text (help, version) and exit 0.
    Print(String),
}

/// Parses the command line (without the program name).
pub fn from_args(args: &[String]) -> Result<Invocation, String> {
    match args.first().map(String::as_str) {
        Some("-h" | "--help") => return Ok(Invocation::Print(usage())),
        Some("-v" | "--version") => {
            return Ok(Invocation::Print(format!(
                "dynamo-server v={}",
                env!("CARGO_PKG_VERSION")
            )))
        }
        _ => {}
    }
    let (file, overrides) = match args.first() {
        Some(first) if !first.starts_with("--") => (Some(first.as_str()), &args[1..]),
        _ => (None, args),
    };
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {path}: {e}"))?;
            text.parse::<toml::Table>()
                .map_err(|e| format!("config file {path}: {e}"))?
        }
        None => toml::Table::new(),
    };
    apply_overrides(&mut table, overrides)?;
    let config = parse_table(table)?;
    config.validate()?;
    Ok(Invocation::Run(Box::new(config)))
}

fn apply_overrides(table: &mut toml::Table, overrides: &[String]) -> Result<(), String> {
    let mut rest = overrides.iter();
    while let Some(flag) = rest.next() {
        let name = flag.strip_prefix("--").ok_or_else(|| {
            format!("unexpected argument '{flag}': options are given as --name value")
        })?;
        let value = rest
            .next()
            .ok_or_else(|| format!("option --{name} needs a value"))?;
        table.insert(name.to_string(), override_value(name, value));
    }
    Ok(())
}

fn override_value(name: &str, raw: &str) -> toml::Value {
    if name == "seeds" {
        let seeds = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| toml::Value::String(s.to_string()))
            .collect();
        return toml::Value::Array(seeds);
    }
    if TEXT_OPTIONS.contains(&name) {
        return toml::Value::String(raw.to_string());
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    match raw {
        "true" | "yes" => toml::Value::Boolean(true),
        "false" | "no" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

/// Deserializes option by option, so an error always names its option.
fn parse_table(table: toml::Table) -> Result<Config, String> {
    let defaults = Config::default();
    let known: Vec<&str> = defaults
        .entries()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for (name, value) in &table {
        if !known.contains(&name.as_str()) {
            return Err(format!(
                "unknown option '{name}' (see conf/single-node.toml for the options)"
            ));
        }
        let mut single = toml::Table::new();
        single.insert(name.clone(), value.clone());
        toml::Value::Table(single)
            .try_into::<Config>()
            .map_err(|e| format!("bad value for option '{name}': {}", e.message()))?;
    }
    toml::Value::Table(table)
        .try_into::<Config>()
        .map_err(|e| format!("bad configuration: {}", e.message()))
}

impl Config {
    /// Every option as (name, value text), for CONFIG GET and the option list.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bind", self.bind.clone()),
            ("port", self.port.to_string()),
            ("tls-port", self.tls_port.to_string()),
            ("tls-cert-file", self.tls_cert_file.clone()),
            ("tls-key-file", self.tls_key_file.clone()),
            ("tls-ca-cert-file", self.tls_ca_cert_file.clone()),
            ("tls-auth-clients", self.tls_auth_clients.as_str().into()),
            ("peer-port", self.peer_port().to_string()),
            ("cluster-name", self.cluster_name.clone()),
            ("node-id", self.node_id.clone()),
            ("seeds", self.seeds.join(",")),
            (
                "cluster-secret",
                if self.cluster_secret.is_empty() {
                    String::new()
                } else {
                    "(set, not shown)".into()
                },
            ),
            ("announce-ip", self.announce_ip().to_string()),
            ("q", self.q.to_string()),
            ("weight", self.weight.to_string()),
            ("request-timeout-ms", self.request_timeout_ms.to_string()),
            ("read-hedge-ms", self.read_hedge_ms.to_string()),
            ("gossip-interval-ms", self.gossip_interval_ms.to_string()),
            ("read-repair-chance", self.read_repair_chance.to_string()),
            ("max-hints", self.max_hints.to_string()),
            (
                "hint-delivery-interval-ms",
                self.hint_delivery_interval_ms.to_string(),
            ),
            ("hint-batch", self.hint_batch.to_string()),
            ("fallback-acks-count", self.fallback_acks_count.to_string()),
            (
                "anti-entropy-interval-ms",
                self.anti_entropy_interval_ms.to_string(),
            ),
            (
                "anti-entropy-partitions",
                self.anti_entropy_partitions.to_string(),
            ),
            (
                "anti-entropy-max-keys-per-sec",
                self.anti_entropy_max_keys_per_sec.to_string(),
            ),
            (
                "tombstone-gc-interval-ms",
                self.tombstone_gc_interval_ms.to_string(),
            ),
            ("tombstone-grace-ms", self.tombstone_grace_ms.to_string()),
            (
                "background-max-foreground",
                self.background_max_foreground.to_string(),
            ),
            (
                "background-max-replica-rate",
                self.background_max_replica_rate.to_string(),
            ),
            (
                "background-latency-factor",
                self.background_latency_factor.to_string(),
            ),
            (
                "transfer-max-keys-per-sec",
                self.transfer_max_keys_per_sec.to_string(),
            ),
            ("transfer-batch", self.transfer_batch.to_string()),
            ("data-dir", self.data_dir.display().to_string()),
            ("engine", self.engine.clone()),
            ("durability", self.durability.clone()),
            ("flush-every-ms", self.flush_every_ms.to_string()),
            ("n", self.n.to_string()),
            ("r", self.r.to_string()),
            ("w", self.w.to_string()),
            ("requirepass", self.requirepass.clone()),
            (
                "protected-mode",
                if self.protected_mode { "yes" } else { "no" }.into(),
            ),
            ("maxclients", self.maxclients.to_string()),
            ("proto-max-bulk-len", self.proto_max_bulk_len.to_string()),
            ("max-value-bytes", self.max_value_bytes.to_string()),
            ("max-key-bytes", self.max_key_bytes.to_string()),
            ("max-siblings", self.max_siblings.to_string()),
            ("read-cache-bytes", self.read_cache_bytes.to_string()),
            (
                "expiry-purge-interval-ms",
                self.expiry_purge_interval_ms.to_string(),
            ),
            ("timeout", self.timeout.to_string()),
            ("loglevel", self.loglevel.clone()),
            ("metrics-port", self.metrics_port.to_string()),
            (
                "slowlog-log-slower-than",
                self.slowlog_log_slower_than.to_string(),
            ),
            ("slowlog-max-len", self.slowlog_max_len.to_string()),
            ("worker-threads", self.worker_threads.to_string()),
        ]
    }

    /// Whether protected mode turns away a client from `peer`: no password,
    /// a bind address other clients can reach, and a client that is not on
    /// this machine's loopback.
    pub fn refuses(&self, peer: std::net::SocketAddr) -> bool {
        let bound_to_loopback = self.bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        self.protected_mode
            && self.requirepass.is_empty()
            && !bound_to_loopback
            && !peer.ip().to_canonical().is_loopback()
    }

    /// The peer port in force.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
            .unwrap_or_else(|| self.port.wrapping_add(10_000))
    }

    /// Whether this node runs the cluster protocol: more than one replica
    /// per key, or seeds to join.
    pub fn clustered(&self) -> bool {
        self.n > 1 || !self.seeds.is_empty()
    }

    /// The pinned member id, if any.
    pub fn pinned_node_id(&self) -> Result<Option<u64>, String> {
        if self.node_id.is_empty() {
            return Ok(None);
        }
        match u64::from_str_radix(&self.node_id, 16) {
            Ok(id) if id != 0 && self.node_id.len() <= 16 => Ok(Some(id)),
            _ => Err(format!(
                "bad value for option 'node-id': '{}' is not 1-16 hex digits (and not 0)",
                self.node_id
            )),
        }
    }

    /// The IP address peers reach this node at.
    pub fn announce_ip(&self) -> String {
        if !self.announce_ip.is_empty() {
            return self.announce_ip.clone();
        }
        match self.bind.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => "127.0.0.1".into(),
            _ => self.bind.clone(),
        }
    }

    /// Checks every option; the message names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        self.bind.parse::<IpAddr>().map_err(|_| {
            format!(
                "bad value for option 'bind': '{}' is not an IP address",
                self.bind
            )
        })?;
        if self.port == 0 {
            return Err("bad value for option 'port': must be 1-65535".into());
        }
        if self.peer_port.is_none() && self.port > 55_535 {
            return Err(
                "bad value for option 'peer-port': port + 10000 overflows; set peer-port".into(),
            );
        }
        self.engine_kind()?;
        self.durability_mode()?;
        if !(1..=7).contains(&self.n) {
            return Err("bad value for option 'n': must be between 1 and 7".into());
        }
        if !self.q.is_power_of_two() || self.q > 65_536 {
            return Err("bad value for option 'q': must be a power of two up to 65536".into());
        }
        positive("weight", u64::from(self.weight))?;
        positive("request-timeout-ms", self.request_timeout_ms)?;
        positive("gossip-interval-ms", self.gossip_interval_ms)?;
        positive("hint-delivery-interval-ms", self.hint_delivery_interval_ms)?;
        positive("hint-batch", self.hint_batch as u64)?;
        if !(self.background_latency_factor == 0.0
            || (1.0..=100.0).contains(&self.background_latency_factor))
        {
            return Err(
                "bad value for option 'background-latency-factor': 0 (off) or from 1 to 100".into(),
            );
        }
        self.validate_tls()?;
        if self.metrics_port != 0
            && (self.metrics_port == self.port || self.metrics_port == self.peer_port())
        {
            return Err(
                "bad value for option 'metrics-port': must differ from port and peer-port".into(),
            );
        }
        if self.slowlog_max_len > 100_000 {
            return Err("bad value for option 'slowlog-max-len': at most 100000".into());
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return Err(format!(
                "bad value for option 'worker-threads': at most {MAX_WORKER_THREADS} (0: one per core)"
            ));
        }
        if !(1..=4096).contains(&self.transfer_batch) {
            return Err("bad value for option 'transfer-batch': must be from 1 to 4096".into());
        }
        positive("anti-entropy-interval-ms", self.anti_entropy_interval_ms)?;
        positive(
            "anti-entropy-partitions",
            self.anti_entropy_partitions as u64,
        )?;
        if !(0.0..=1.0).contains(&self.read_repair_chance) {
            return Err(
                "bad value for option 'read-repair-chance': must be between 0 and 1".into(),
            );
        }
        self.pinned_node_id()?;
        if !self.cluster_secret.is_empty() && self.cluster_secret.len() < 16 {
            return Err(
                "bad value for option 'cluster-secret': at least 16 characters (e.g. `openssl rand -hex 16`)".into(),
            );
        }
        if self.cluster_name.is_empty() || self.cluster_name.len() > 128 {
            return Err("bad value for option 'cluster-name': must be 1-128 characters".into());
        }
        if !self.announce_ip.is_empty() && self.announce_ip.parse::<IpAddr>().is_err() {
            return Err(format!(
                "bad value for option 'announce-ip': '{}' is not an IP address",
                self.announce_ip
            ));
        }
        for seed in &self.seeds {
            if seed.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "bad value for option 'seeds': '{seed}' is not host:port (an IP address and the peer port)"
                ));
            }
        }
        for (name, q) in [("r", self.r), ("w", self.w)] {
            if q == 0 || q > self.n {
                return Err(format!(
                    "bad value for option '{name}': must be between 1 and n ({})",
                    self.n
                ));
            }
        }
        positive("maxclients", self.maxclients as u64)?;
        positive("proto-max-bulk-len", self.proto_max_bulk_len as u64)?;
        positive("max-key-bytes", self.max_key_bytes as u64)?;
        positive("max-siblings", self.max_siblings as u64)?;
        positive("expiry-purge-interval-ms", self.expiry_purge_interval_ms)?;
        if self.max_value_bytes == 0 || self.max_value_bytes > 512 * 1024 * 1024 {
            return Err(
                "bad value for option 'max-value-bytes': must be between 1 and 536870912".into(),
            );
        }
        self.log_filter()?;
        Ok(())
    }

    /// The TLS options hang together (the files themselves are read when
    /// the listener starts, see `tls.rs`).
    fn validate_tls(&self) -> Result<(), String> {
        if self.tls_port == 0 {
            return Ok(());
        }
        if self.tls_port == self.port
            || self.tls_port == self.peer_port()
            || self.tls_port == self.metrics_port
        {
            return Err(
                "bad value for option 'tls-port': must differ from port, peer-port and metrics-port"
                    .into(),
            );
        }
        for (name, value) in [
            ("tls-cert-file", &self.tls_cert_file),
            ("tls-key-file", &self.tls_key_file),
        ] {
            if value.is_empty() {
                return Err(format!(
                    "bad value for option '{name}': required when tls-port is set"
                ));
            }
        }
        if self.tls_auth_clients != TlsAuthClients::No && self.tls_ca_cert_file.is_empty() {
            return Err(
                "bad value for option 'tls-ca-cert-file': required when tls-auth-clients is yes or optional"
                    .into(),
            );
        }
        Ok(())
    }

    /// The storage engine asked for.
    pub fn engine_kind(&self) -> Result<cluster::storage::EngineKind, String> {
        self.engine
            .parse()
            .map_err(|e| format!("bad value for option 'engine': {e}"))
    }

    /// The durability mode asked for.
    pub fn durability_mode(&self) -> Result<cluster::storage::Durability, String> {
        use cluster::storage::Durability;
        match self.durability.as_str() {
            "periodic" if self.flush_every_ms > 0 => Ok(Durability::Periodic {
                flush_every_ms: self.flush_every_ms,
            }),
            "periodic" => Err("bad value for option 'flush-every-ms': must be positive".into()),
            "every-write" => Ok(Durability::EveryWrite),
            other => Err(format!(
                "bad value for option 'durability': '{other}' (expected periodic or every-write)"
            )),
        }
    }

    /// The tracing filter for `loglevel`.
    pub fn log_filter(&self) -> Result<&'static str, String> {
        Ok(match self.loglevel.to_ascii_lowercase().as_str() {
            "error" => "error",
            "warn" | "warning" => "warn",
            "info" | "notice" => "info",
            "debug" | "verbose" => "debug",
            "trace" => "trace",
            other => return Err(format!("bad value for option 'loglevel': '{other}'")),
        })
    }
}

/// Whether clients on `tls-port` must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsAuthClients {
    /// No client certificate is asked for.
    No,
    /// A client certificate signed by `tls-ca-cert-file` is required.
    Yes,
    /// A client certificate is checked when the client sends one.
    Optional,
}

impl TlsAuthClients {
    /// As the option is written.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsAuthClients::No => "no",
            TlsAuthClients::Yes => "yes",
            TlsAuthClients::Optional => "optional",
        }
    }
}

impl<'de> Deserialize<'de> for TlsAuthClients {
    /// `yes` / `no` / `optional`, or a TOML boolean.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Flag(true) => Ok(TlsAuthClients::Yes),
            Raw::Flag(false) => Ok(TlsAuthClients::No),
            Raw::Word(word) => match word.to_ascii_lowercase().as_str() {
                "yes" | "true" => Ok(TlsAuthClients::Yes),
                "no" | "false" => Ok(TlsAuthClients::No),
                "optional" => Ok(TlsAuthClients::Optional),
                _ => Err(serde::de::Error::custom(format!(
                    "'{word}' (expected yes, no or optional)"
                ))),
            },
        }
    }
}

fn positive(name: &str, value: u64) -> Result<(), String> {
    if value == 0 {
        Err(format!("bad value for option '{name}': must be positive"))
    } else {
        Ok(())
    }
}

fn usage() -> String {
    let options = Config::default()
        .entries()
        .into_iter()
        .map(|(name, value)| format!("  --{name} {value}\n"))
        .collect::<String>();
    format!(
        "Usage: dynamo-server [CONFIG_FILE] [--name value ...]\n\n\
         Options (defaults shown; the same names are keys of the TOML file):\n{options}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_mode_turns_away_only_remote_clients_of_an_open_node() {
        let remote: std::net::SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let open = Config {
            bind: "0.0.0.0".into(),
            ..Config::default()
        };
        assert!(open.refuses(remote));
        assert!(!open.refuses(local));
        assert!(!open.refuses(mapped));
        // A password, a loopback bind, or protected mode off: accepted.
        for config in [
            Config {
                requirepass: "pw".into(),
                ..open.clone()
            },
            Config::default(),
            Config {
                protected_mode: false,
                ..open.clone()
            },
        ] {
            assert!(!config.refuses(remote), "{config:?}");
        }
    }

    fn run(args: &[&str]) -> Result<Config, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match from_args(&args)? {
            Invocation::Run(config) => Ok(*config),
            Invocation::Print(text) => Err(text),
        }
    }

    #[test]
    fn tls_auth_clients_takes_words_and_booleans() {
        let parse = |text: &str| parse_table(text.parse::<toml::Table>().unwrap());
        let cases = [
            ("tls-auth-clients = true", TlsAuthClients::Yes),
            ("tls-auth-clients = false", TlsAuthClients::No),
            ("tls-auth-clients = \"optional\"", TlsAuthClients::Optional),
            ("tls-auth-clients = \"YES\"", TlsAuthClients::Yes),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap().tls_auth_clients, expected, "{text}");
        }
        let error = parse("tls-auth-clients = \"maybe\"").unwrap_err();
        assert!(error.contains("'tls-auth-clients'"), "{error}");
        let error = run(&["--tls-port", "6380", "--tls-cert-file", "c.pem"]).unwrap_err();
        assert!(error.contains("'tls-key-file'"), "{error}");
        let error = run(&["--tls-port", "6379"]).unwrap_err();
        assert!(error.contains("'tls-port'"), "{error}");
    }

    #[test]
    fn worker_threads_default_to_one_loop_and_are_bounded() {
        assert_eq!(run(&[]).unwrap().worker_threads, 1);
        assert_eq!(run(&["--worker-threads", "0"]).unwrap().worker_threads, 0);
        assert_eq!(run(&["--worker-threads", "4"]).unwrap().worker_threads, 4);
        let error = run(&["--worker-threads", "5000"]).unwrap_err();
        assert!(error.contains("'worker-threads'"), "{error}");
        let error = run(&["--worker-threads", "-1"]).unwrap_err();
        assert!(error.contains("worker-threads"), "{error}");
    }

    #[test]
    fn defaults_are_a_single_local_node() {
        let config = run(&[]).unwrap();
        assert_eq!(config.port, 6379);
        assert_eq!(config.peer_port(), 16379);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!((config.n, config.r, config.w), (1, 1, 1));
    }

    #[test]
    fn overrides_and_errors_name_the_option() {
        let config = run(&[
            "--port",
            "7001",
            "--requirepass",
            "123",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(config.port, 7001);
        assert_eq!(config.requirepass, "123");
        assert!(run(&["--port", "notanumber"])
            .unwrap_err()
            .contains("'port'"));
        assert!(run(&["--no-such-option", "1"])
            .unwrap_err()
            .contains("no-such-option"));
        assert!(run(&["--engine", "rocks"])
            .unwrap_err()
            .contains("'engine'"));
        assert!(run(&["--port"]).unwrap_err().contains("--port"));
        assert!(run(&["--q", "100"]).unwrap_err().contains("'q'"));
        assert!(run(&["--n", "3", "--r", "4"]).unwrap_err().contains("'r'"));
        assert!(run(&["--seeds", "nohost"]).unwrap_err().contains("'seeds'"));
    }

    #[test]
    fn cluster_options() {
        let config = run(&[
            "--n",
            "3",
            "--r",
            "2",
            "--w",
            "2",
            "--seeds",
            "127.0.0.1:17000,127.0.0.2:17000",
            "--cluster-name",
            "blue",
        ])
        .unwrap();
        assert!(config.clustered());
        assert_eq!(config.seeds.len(), 2);
        assert_eq!(config.cluster_name, "blue");
        assert_eq!(config.announce_ip(), "127.0.0.1");
        assert!(!run(&[]).unwrap().clustered());
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "port = 7100\nengine = \"memory\"\n").unwrap();
        let config = run(&[path.to_str().unwrap(), "--port", "7200"]).unwrap();
        assert_eq!((config.port, config.engine.as_str()), (7200, "memory"));
    }
}
