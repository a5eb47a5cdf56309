//! The nodes of a fault-harness cluster, each behind its peer proxy.
//!
//! Each node is a harness [`Server`] started with [`Server::start_at`] on an
//! address chosen before its proxy's address was bound, announcing the
//! proxy to the other nodes.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use super::clock::SkewableClock;
use super::proxy::Proxies;
use crate::server::{random_u64, send_signal};
use crate::{pick_address, Server};

/// Client connections the harness itself opens (status, checks): connect
/// and per-command timeout.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fresh cluster may take to agree on its ring.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// One `dynamo-server` process (a harness [`Server`] on an address chosen
/// beforehand) with its proxy address, what the other nodes know it by.
pub struct Node {
    /// Index in the cluster (0 is the seed).
    pub index: usize,
    server: Server,
    proxy: SocketAddr,
    paused: bool,
    /// The offset file libfaketime follows, when clocks can be skewed.
    clock: Option<SkewableClock>,
    clock_offset: i64,
}

impl Node {
    fn start(
        index: usize,
        addr: SocketAddr,
        proxy: SocketAddr,
        extra: &[String],
        clock: Option<(SkewableClock, &Path)>,
    ) -> Node {
        let (proxy_ip, proxy_port) = (proxy.ip().to_string(), proxy.port().to_string());
        let mut args = vec!["--announce-ip", &proxy_ip, "--peer-port", &proxy_port];
        args.extend(extra.iter().map(String::as_str));
        let env = clock
            .as_ref()
            .map_or_else(Vec::new, |(clock, library)| clock.env(library));
        Node {
            index,
            server: Server::start_at_with_env(addr, &args, &env),
            proxy,
            paused: false,
            clock: clock.map(|(clock, _)| clock),
            clock_offset: 0,
        }
    }

    /// Moves the node's wall clock `offset_secs` from the true time (0:
    /// right again); it follows within a second. Panics when the cluster
    /// was started without skewable clocks.
    pub fn skew_clock(&mut self, offset_secs: i64) {
        let clock = self
            .clock
            .as_ref()
            .expect("clock skew needs a cluster started with libfaketime");
        clock.set(offset_secs);
        self.clock_offset = offset_secs;
    }

    /// The node's wall clock minus the harness's, in seconds, from `TIME`;
    /// `None` if it does not answer.
    pub fn observed_clock_offset(&self) -> Option<f64> {
        let mut con = self.admin().ok()?;
        let (secs, micros): (String, String) = redis::cmd("TIME").query(&mut con).ok()?;
        let theirs = secs.parse::<f64>().ok()? + micros.parse::<f64>().ok()? / 1e6;
        let ours = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        Some(theirs - ours)
    }

    /// The node's clock offset now, in seconds.
    pub fn clock_offset(&self) -> i64 {
        self.clock_offset
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The peer address the other nodes use: the proxy in front of it.
    pub fn proxy(&self) -> SocketAddr {
        self.proxy
    }

    /// `redis://ip:port/`
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Running (possibly paused)?
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// Stopped with SIGSTOP and not resumed yet?
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Process id of the running node.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        self.server.kill9();
        self.paused = false;
    }

    /// Starts the node again with the same address, data and arguments.
    pub fn restart(&mut self) {
        self.server.restart();
        self.paused = false;
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    pub fn pause(&mut self) {
        send_signal(self.pid(), "STOP");
        self.paused = true;
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&mut self) {
        send_signal(self.pid(), "CONT");
        self.paused = false;
    }

    /// A connection with the harness's admin timeouts.
    pub fn admin(&self) -> redis::RedisResult<redis::Connection> {
        connect(&self.url(), ADMIN_TIMEOUT)
    }

    /// `DYNAMO STATUS` as name -> text, `None` if the node does not answer.
    pub fn status(&self) -> Option<HashMap<String, String>> {
        crate::cluster::query_status(&mut self.admin().ok()?)
    }

    /// Everything the node wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        self.server.log()
    }
}

/// Opens a connection to `url` with `timeout` for connecting and for every
/// command.
pub fn connect(url: &str, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let con = redis::Client::open(url)?.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

/// Nodes, their proxies and their ids.
pub struct FaultCluster {
    /// The nodes, seed first.
    pub nodes: Vec<Node>,
    /// The proxies in front of their peer ports.
    pub proxies: Proxies,
    /// `node_id` of every node, by index.
    pub ids: Vec<String>,
    /// Clock skews the nodes' own `TIME` was seen to follow.
    pub skews_observed: usize,
    /// Every clock skew applied: (node, offset s, from, until), times since
    /// the workloads started; `until` is `None` while in force.
    pub skew_windows: Vec<(usize, i64, Duration, Option<Duration>)>,
    /// Every node's weight as last set through `DYNAMO WEIGHT` (1 at start).
    pub weights: Vec<u32>,
    /// Per node, the others' `hints_dropped` when it was killed.
    pub hints_dropped_at_kill: Vec<Vec<Option<u64>>>,
    /// Hints the others dropped (past `max-hints`) while a node was down.
    pub hints_dropped_during_kills: u64,
    /// Holds the clock offset files (when skewable).
    _clocks: Option<tempfile::TempDir>,
}

impl FaultCluster {
    /// Plans a client address `127.0.0.X:P` per node (`pick_address`: P and
    /// P + 10000 free there) and a proxy address `127.0.0.Y:P+10000` on
    /// another loopback address (bound at once, so it stays ours); starts
    /// the proxies, then node 0, then the others with `--seeds` naming node
    /// 0's proxy, each announcing its proxy's IP; waits until every node
    /// knows every member as up and they agree on the ring. With
    /// `libfaketime`, every node follows a clock offset file of its own
    /// ([`Node::skew_clock`]).
    pub fn start(count: usize, extra: &[String], libfaketime: Option<&Path>) -> FaultCluster {
        let mut used: HashSet<IpAddr> = HashSet::new();
        let mut addrs = Vec::with_capacity(count);
        let mut listeners = Vec::with_capacity(count);
        while addrs.len() < count {
            let addr = pick_address();
            if used.contains(&addr.ip()) {
                continue;
            }
            let proxy_ip = loop {
                let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (random_u64() % 249) as u8));
                if ip != addr.ip() && !used.contains(&ip) {
                    break ip;
                }
            };
            let Ok(listener) = TcpListener::bind((proxy_ip, addr.port() + 10_000)) else {
                continue;
            };
            used.insert(addr.ip());
            used.insert(proxy_ip);
            addrs.push(addr);
            listeners.push(listener);
        }
        let targets: Vec<SocketAddr> = addrs
            .iter()
            .map(|a| SocketAddr::new(a.ip(), a.port() + 10_000))
            .collect();
        let sources: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        let proxies = Proxies::start(listeners, targets, &sources);
        let clocks = libfaketime.map(|_| {
            tempfile::Builder::new()
                .prefix("dynamo-faults-clocks-")
                .tempdir()
                .expect("creating the clock directory")
        });
        let mut nodes = Vec::with_capacity(count);
        for (i, addr) in addrs.iter().enumerate() {
            let mut args = extra.to_vec();
            if i > 0 {
                args.extend(["--seeds".to_string(), proxies.addr(0).to_string()]);
            }
            let clock = clocks
                .as_ref()
                .zip(libfaketime)
                .map(|(dir, library)| (SkewableClock::new(dir.path(), i), library));
            nodes.push(Node::start(i, *addr, proxies.addr(i), &args, clock));
        }
        let mut cluster = FaultCluster {
            nodes,
            proxies,
            ids: Vec::new(),
            skews_observed: 0,
            skew_windows: Vec::new(),
            weights: vec![1; count],
            hints_dropped_at_kill: vec![Vec::new(); count],
            hints_dropped_during_kills: 0,
            _clocks: clocks,
        };
        cluster.wait_formed();
        cluster.ids = cluster
            .nodes
            .iter()
            .map(|n| {
                n.status()
                    .and_then(|mut s| s.remove("node_id"))
                    .expect("node_id")
            })
            .collect();
        cluster
    }

    /// Client URLs of every node, by index.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    fn wait_formed(&self) {
        let deadline = Instant::now() + FORM_TIMEOUT;
        let members = self.nodes.len().to_string();
        loop {
            let statuses: Vec<Option<HashMap<String, String>>> =
                self.nodes.iter().map(Node::status).collect();
            let digest = statuses[0]
                .as_ref()
                .and_then(|s| s.get("ring_digest").cloned());
            let formed = statuses.iter().all(|s| {
                s.as_ref().is_some_and(|s| {
                    s.get("members") == Some(&members)
                        && s.get("members_up") == Some(&members)
                        && s.get("transition").map(String::as_str) == Some("none")
                        && s.get("ring_digest") == digest.as_ref()
                })
            });
            if formed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the fault cluster did not form within {FORM_TIMEOUT:?}: {statuses:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
