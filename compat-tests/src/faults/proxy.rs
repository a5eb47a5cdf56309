//! A fault-injecting TCP proxy in front of every node's peer port.
//!
//! Proxy k listens on its own loopback address `127.0.0.Yk` with the same
//! port number as node k's peer port, and forwards to node k's real peer
//! listener `127.0.0.Xk:peer-port`. Node k announces `127.0.0.Yk` as its
//! address (`--announce-ip`), so every other node reaches it through the
//! proxy, while its clients connect to its client port directly.
//!
//! Nodes open their outgoing peer connections from their `--bind` address,
//! so the source IP of an incoming connection tells the proxy which node is
//! calling. A cut ([`Proxies::partition`]) is a set of blocked node pairs:
//! new connections between a blocked pair are closed at once, and the
//! established ones are shut down (both sockets, both directions). Nothing
//! inside the nodes knows about it: their requests really fail.
//!
//! Limits: the proxy cuts whole TCP connections, it does not drop, delay,
//! duplicate or reorder single messages, and a cut is always symmetric
//! (no one-way partitions). A connection from a source IP that is not a
//! node's is forwarded and counted (`unknown_sources`): the harness treats
//! any such connection as a broken setup, since a cut could not apply to it.

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the proxy waits for the node behind it to accept.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often an idle accept loop checks whether it should stop.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// Counters of what the proxies did, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyStats {
    /// Connections forwarded.
    pub forwarded: u64,
    /// New connections closed at once because their pair was cut.
    pub refused: u64,
    /// Established connections shut down by a cut.
    pub severed: u64,
    /// Connections whose upstream (the node) could not be reached.
    pub upstream_failures: u64,
    /// Connections from a source IP that is no node's bind address.
    pub unknown_sources: u64,
}

/// One forwarded connection: both sockets kept to shut them down.
struct Link {
    from: Option<usize>,
    to: usize,
    downstream: TcpStream,
    upstream: TcpStream,
}

impl Link {
    fn shutdown(&self) {
        let _ = self.downstream.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

#[derive(Default)]
struct Cut {
    /// Blocked pairs (smaller index first).
    blocked: HashSet<(usize, usize)>,
    links: HashMap<u64, Link>,
    next_id: u64,
}

impl Cut {
    fn blocks(&self, from: Option<usize>, to: usize) -> bool {
        from.is_some_and(|from| self.blocked.contains(&pair(from, to)))
    }
}

struct Shared {
    /// Source IP -> node index.
    sources: HashMap<IpAddr, usize>,
    cut: Mutex<Cut>,
    stop: AtomicBool,
    forwarded: AtomicU64,
    refused: AtomicU64,
    severed: AtomicU64,
    upstream_failures: AtomicU64,
    unknown_sources: AtomicU64,
}

impl Shared {
    fn cut(&self) -> MutexGuard<'_, Cut> {
        // A pump thread that panicked must not take the harness down with it.
        self.cut.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxies of every node; see the module documentation.
pub struct Proxies {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    accept_threads: Vec<JoinHandle<()>>,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Proxies {
    /// Starts proxy k on `listeners[k]` (already bound, so no other process
    /// can take the address in between) forwarding to `targets[k]`, the
    /// real peer listener of node k whose bind address is `sources[k]`.
    pub fn start(
        listeners: Vec<TcpListener>,
        targets: Vec<SocketAddr>,
        sources: &[IpAddr],
    ) -> Proxies {
        assert_eq!(listeners.len(), targets.len());
        assert_eq!(listeners.len(), sources.len());
        let shared = Arc::new(Shared {
            sources: sources.iter().enumerate().map(|(i, ip)| (*ip, i)).collect(),
            cut: Mutex::new(Cut::default()),
            stop: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            severed: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
            unknown_sources: AtomicU64::new(0),
        });
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr().expect("proxy listener address"))
            .collect();
        let accept_threads = listeners
            .into_iter()
            .zip(targets)
            .enumerate()
            .map(|(to, (listener, target))| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("proxy-{to}"))
                    .spawn(move || accept_loop(&shared, &listener, to, target))
                    .expect("spawning a proxy thread")
            })
            .collect();
        Proxies {
            shared,
            addrs,
            accept_threads,
        }
    }

    /// The address proxy `k` listens on (node k's announced peer address).
    pub fn addr(&self, k: usize) -> SocketAddr {
        self.addrs[k]
    }

    /// Cuts every pair of nodes in different `groups` (replacing the
    /// previous cut): new connections between them are refused and the
    /// established ones shut down. Nodes in no group are cut from everyone.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let nodes = self.addrs.len();
        let group_of = |n: usize| groups.iter().position(|g| g.contains(&n));
        let mut blocked = HashSet::new();
        for a in 0..nodes {
            for b in a + 1..nodes {
                let (ga, gb) = (group_of(a), group_of(b));
                if ga.is_none() || ga != gb {
                    blocked.insert(pair(a, b));
                }
            }
        }
        let mut cut = self.shared.cut();
        cut.blocked = blocked;
        let doomed: Vec<u64> = cut
            .links
            .iter()
            .filter(|(_, link)| cut.blocks(link.from, link.to))
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            if let Some(link) = cut.links.remove(&id) {
                link.shutdown();
                self.shared.severed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        self.shared.cut().blocked.clear();
    }

    /// Pairs currently cut.
    pub fn blocked_pairs(&self) -> usize {
        self.shared.cut().blocked.len()
    }

    /// What the proxies did so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            forwarded: s.forwarded.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            severed: s.severed.load(Ordering::Relaxed),
            upstream_failures: s.upstream_failures.load(Ordering::Relaxed),
            unknown_sources: s.unknown_sources.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for (_, link) in self.shared.cut().links.drain() {
            link.shutdown();
        }
        for handle in self.accept_threads.drain(..) {
            let _ = handle.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, to: usize, target: SocketAddr) {
    listener
        .set_nonblocking(true)
        .expect("non-blocking proxy listener");
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, from)) => handle(shared, stream, from, to, target),
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

fn handle(
    shared: &Arc<Shared>,
    downstream: TcpStream,
    from: SocketAddr,
    to: usize,
    target: SocketAddr,
) {
    let from = shared.sources.get(&from.ip()).copied();
    if from.is_none() {
        shared.unknown_sources.fetch_add(1, Ordering::Relaxed);
    }
    let refuse = |stream: &TcpStream| {
        let _ = stream.shutdown(Shutdown::Both);
        shared.refused.fetch_add(1, Ordering::Relaxed);
    };
    if shared.cut().blocks(from, to) {
        refuse(&downstream);
        return;
    }
    let _ = downstream.set_nonblocking(false);
    let upstream = match TcpStream::connect_timeout(&target, UPSTREAM_CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(_) => {
            shared.upstream_failures.fetch_add(1, Ordering::Relaxed);
            let _ = downstream.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = downstream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let clones = (
        downstream.try_clone(),
        upstream.try_clone(),
        downstream.try_clone(),
        upstream.try_clone(),
    );
    let (Ok(down_read), Ok(up_write), Ok(down_write), Ok(up_read)) = clones else {
        let _ = downstream.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return;
    };
    let id = {
        // Checked again under the lock: a cut made while connecting upstream
        // must not miss this link.
        let mut cut = shared.cut();
        if cut.blocks(from, to) {
            drop(cut);
            let _ = upstream.shutdown(Shutdown::Both);
            refuse(&downstream);
            return;
        }
        let id = cut.next_id;
        cut.next_id += 1;
        cut.links.insert(
            id,
            Link {
                from,
                to,
                downstream,
                upstream,
            },
        );
        id
    };
    shared.forwarded.fetch_add(1, Ordering::Relaxed);
    for (name, reader, writer) in [("up", down_read, up_write), ("down", up_read, down_write)] {
        let pump_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-{to}-{id}-{name}"))
            .spawn(move || pump(&pump_shared, id, reader, writer));
        if spawned.is_err() {
            close_link(shared, id);
        }
    }
}

/// Removes link `id` and shuts both its sockets (idempotent).
fn close_link(shared: &Shared, id: u64) {
    if let Some(link) = shared.cut().links.remove(&id) {
        link.shutdown();
    }
}

/// Copies one direction of link `id` until either side closes, then closes
/// the whole link (which ends the other direction's pump too).
fn pump(shared: &Shared, id: u64, mut reader: TcpStream, mut writer: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if writer.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = reader.shutdown(Shutdown::Both);
    let _ = writer.shutdown(Shutdown::Both);
    close_link(shared, id);
}
