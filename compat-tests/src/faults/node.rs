//! The nodes of a fault-harness cluster, each behind its peer proxy.
//!
//! [`crate::Server::start`] picks its address itself and waits for that
//! address to answer, so it cannot start a node on an address chosen (and
//! whose proxy address was bound) beforehand. This module therefore spawns
//! the processes itself, with the same conventions as `Server`: a temporary
//! directory per node for data and log, `--loglevel warn` unless overridden,
//! signals through the `kill` command, the log tail printed when a test
//! panics.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::proxy::Proxies;
use crate::server::{random_u64, wait_timeout};
use crate::{binary, pick_address, READY_TIMEOUT};

/// Client connections the harness itself opens (status, checks): connect
/// and per-command timeout.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fresh cluster may take to agree on its ring.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// One `dynamo-server` process with its client address, its proxy address
/// (what the other nodes know it by) and its data, kept across restarts.
pub struct Node {
    /// Index in the cluster (0 is the seed).
    pub index: usize,
    addr: SocketAddr,
    proxy: SocketAddr,
    args: Vec<String>,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
    // Dropped last: removes the data dir and the log.
    dir: tempfile::TempDir,
}

impl Node {
    fn start(index: usize, addr: SocketAddr, proxy: SocketAddr, extra: &[String]) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("dynamo-faults-")
            .tempdir()
            .expect("creating temp dir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("creating data dir");
        let mut args: Vec<String> = vec![
            "--bind".into(),
            addr.ip().to_string(),
            "--port".into(),
            addr.port().to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--announce-ip".into(),
            proxy.ip().to_string(),
            "--peer-port".into(),
            proxy.port().to_string(),
        ];
        if !extra.iter().any(|a| a == "--loglevel") {
            args.extend(["--loglevel".to_string(), "warn".to_string()]);
        }
        args.extend(extra.iter().cloned());
        let mut node = Node {
            index,
            addr,
            proxy,
            args,
            log_path: dir.path().join("server.log"),
            child: None,
            paused: false,
            dir,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.index);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening node log");
        let _ = writeln!(&log, "=== starting dynamo-server {}", self.args.join(" "));
        let child = Command::new(binary())
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning log handle"))
            .stderr(log)
            .spawn()
            .expect("spawning dynamo-server");
        self.child = Some(child);
        self.paused = false;
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "node {} exited during startup with {status}; log:\n{}",
                        self.index,
                        self.log()
                    );
                }
            }
            if answers_ping(self.addr) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} on {} not ready after {READY_TIMEOUT:?}; log:\n{}",
                self.index,
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The peer address the other nodes use: the proxy in front of it.
    pub fn proxy(&self) -> SocketAddr {
        self.proxy
    }

    /// `redis://ip:port/`
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Running (possibly paused)?
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stopped with SIGSTOP and not resumed yet?
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Process id of the running node.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node not running").id()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("node not running");
        send_signal(child.id(), "KILL");
        assert!(
            wait_timeout(&mut child, Duration::from_secs(30)).is_some(),
            "node {} did not die after SIGKILL",
            self.index
        );
        self.paused = false;
    }

    /// Starts the node again with the same address, data and arguments.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
        self.spawn();
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
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a stopped process.
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(100)..];
            eprintln!(
                "---- node {} ({}) log, last {} lines ----\n{}\n---- end of log ----",
                self.index,
                self.addr,
                tail.len(),
                tail.join("\n")
            );
        }
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

fn answers_ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    matches!(s.read(&mut first), Ok(1) if first[0] == b'+' || first[0] == b'-')
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running the kill command");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Nodes, their proxies and their ids.
pub struct FaultCluster {
    /// The nodes, seed first.
    pub nodes: Vec<Node>,
    /// The proxies in front of their peer ports.
    pub proxies: Proxies,
    /// `node_id` of every node, by index.
    pub ids: Vec<String>,
}

impl FaultCluster {
    /// Plans a client address `127.0.0.X:P` per node (`pick_address`: P and
    /// P + 10000 free there) and a proxy address `127.0.0.Y:P+10000` on
    /// another loopback address (bound at once, so it stays ours); starts
    /// the proxies, then node 0, then the others with `--seeds` naming node
    /// 0's proxy, each announcing its proxy's IP; waits until every node
    /// knows every member as up and they agree on the ring.
    pub fn start(count: usize, extra: &[String]) -> FaultCluster {
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
        let mut nodes = Vec::with_capacity(count);
        for (i, addr) in addrs.iter().enumerate() {
            let mut args = extra.to_vec();
            if i > 0 {
                args.extend(["--seeds".to_string(), proxies.addr(0).to_string()]);
            }
            nodes.push(Node::start(i, *addr, proxies.addr(i), &args));
        }
        let mut cluster = FaultCluster {
            nodes,
            proxies,
            ids: Vec::new(),
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
