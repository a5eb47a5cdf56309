//! Starting, stopping and restarting one `dynamo-server` process.

use std::collections::hash_map::RandomState;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::RawConn;

/// How long a server may take to accept connections and answer PING.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read/write timeout of every client connection the harness hands out.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `terminate()` waits for the process to exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Path of the `dynamo-server` binary under test: `DYNAMO_SERVER_BIN`, else
/// `$CARGO_TARGET_DIR` (or the workspace's `target/`) `/release` then `/debug`.
///
/// Panics with a hint to build it when it cannot be found.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DYNAMO_SERVER_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "DYNAMO_SERVER_BIN={} does not exist; build it first with: \
             cargo build --release --bin dynamo-server",
            path.display()
        );
        return path;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    for profile in ["release", "debug"] {
        let path = target.join(profile).join("dynamo-server");
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "dynamo-server binary not found under {}/{{release,debug}}; \
         build it first with: cargo build --release --bin dynamo-server",
        target.display()
    );
}

/// A random-ish number: process id, a per-process counter and std's
/// randomly seeded hasher, mixed together.
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Picks a loopback address 127.0.0.X (X in 2..=250) and a port P <= 55000
/// such that both P and P + 10000 (the default peer port) are free.
pub fn pick_address() -> SocketAddr {
    for _ in 0..1000 {
        let x = 2 + (random_u64() % 249) as u8;
        let ip = Ipv4Addr::new(127, 0, 0, x);
        let Ok(listener) = TcpListener::bind((ip, 0)) else {
            continue;
        };
        let Ok(port) = listener.local_addr().map(|a| a.port()) else {
            continue;
        };
        drop(listener);
        if !(1024..=55000).contains(&port) || port == 6379 {
            continue;
        }
        if TcpListener::bind((ip, port + 10000)).is_err() {
            continue;
        }
        return SocketAddr::from((ip, port));
    }
    panic!("could not find a free loopback address/port pair");
}

/// Sends a signal through the `kill` command (no libc needed).
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running the kill command");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Waits for a child to exit, up to `timeout`.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(e) => panic!("waiting for the server process: {e}"),
        }
    }
}

/// Runs the binary with `args`, expecting it to exit on its own within
/// `timeout` (e.g. because of a bad option). Kills it and panics if it is
/// still running then.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout.log");
    let err_path = dir.path().join("stderr.log");
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawning dynamo-server");
    let status = wait_timeout(&mut child, timeout);
    let status = match status {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "dynamo-server {args:?} did not exit within {timeout:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

/// One running `dynamo-server` process on its own address and data dir.
pub struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config_file: Option<PathBuf>,
    data_dir: PathBuf,
    log_path: PathBuf,
    // Dropped last: removes the data dir and the log.
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on a fresh address with `--bind`, `--port`,
    /// `--data-dir` and `--loglevel warn` set, plus `extra` arguments,
    /// and waits until it answers PING.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_inner(None, pick_address(), extra, &[])
    }

    /// Like `start`, with a config file of the given contents passed as
    /// the first argument (the command-line options still override it).
    pub fn start_with_config(config: &str, extra: &[&str]) -> Server {
        Server::start_inner(Some(config), pick_address(), extra, &[])
    }

    /// Like `start`, on an address the caller chose (and checked free).
    pub fn start_at(addr: SocketAddr, extra: &[&str]) -> Server {
        Server::start_inner(None, addr, extra, &[])
    }

    /// Like `start_at`, with environment variables for the process (kept
    /// for restarts), e.g. `LD_PRELOAD` of libfaketime.
    pub fn start_at_with_env(addr: SocketAddr, extra: &[&str], env: &[(String, String)]) -> Server {
        Server::start_inner(None, addr, extra, env)
    }

    fn start_inner(
        config: Option<&str>,
        addr: SocketAddr,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("dynamo-compat-")
            .tempdir()
            .expect("creating temp dir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("creating data dir");
        let log_path = dir.path().join("server.log");
        let config_file = config.map(|text| {
            let path = dir.path().join("dynamo.conf");
            std::fs::write(&path, text).expect("writing config file");
            path
        });
        let mut server = Server {
            child: None,
            addr,
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env.to_vec(),
            config_file,
            data_dir,
            log_path,
            _dir: dir,
        };
        server.spawn();
        server
    }

    fn command_line(&self) -> Vec<String> {
        let mut args: Vec<String> = self
            .config_file
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        args.extend([
            "--bind".to_string(),
            self.addr.ip().to_string(),
            "--port".to_string(),
            self.addr.port().to_string(),
            "--data-dir".to_string(),
            self.data_dir.display().to_string(),
        ]);
        if !self.args.iter().any(|a| a == "--loglevel") {
            args.extend(["--loglevel".to_string(), "warn".to_string()]);
        }
        args.extend(self.args.iter().cloned());
        args
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let args = self.command_line();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening server log");
        let _ = writeln!(&log, "=== starting dynamo-server {}", args.join(" "));
        let child = Command::new(binary())
            .args(&args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self._dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning log handle"))
            .stderr(log)
            .spawn()
            .expect("spawning dynamo-server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "dynamo-server exited during startup with {status}; log:\n{}",
                        self.log()
                    );
                }
            }
            if self.answers_ping() {
                return;
            }
            if Instant::now() >= deadline {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                panic!(
                    "dynamo-server on {} not ready after {READY_TIMEOUT:?}; log:\n{}",
                    self.addr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// True if the port accepts a connection and answers PING with any
    /// reply (`+PONG`, or `-NOAUTH` when a password is required).
    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)) else {
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

    /// The server's client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's IP as a string, for `redis-cli -h`.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The server's client port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The data directory (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    /// `redis://ip:port/`
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// A RESP2 connection through the `redis` crate.
    pub fn client(&self) -> redis::Connection {
        self.client_url(&self.url())
    }

    /// A RESP3 connection through the `redis` crate (`?protocol=resp3`).
    pub fn client_resp3(&self) -> redis::Connection {
        self.client_url(&format!("{}?protocol=resp3", self.url()))
    }

    /// A connection from an arbitrary URL (e.g. with a password).
    pub fn client_url(&self, url: &str) -> redis::Connection {
        self.try_client_url(url)
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
    }

    /// Like `client_url`, returning the error instead of panicking.
    pub fn try_client_url(&self, url: &str) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(url)?;
        let con = client.get_connection_with_timeout(IO_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// A raw TCP connection, with read/write timeouts set.
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.addr));
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// A raw connection wrapped in a RESP reader/writer.
    pub fn raw_conn(&self) -> RawConn {
        RawConn::new(self.raw())
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server not running");
        send_signal(child.id(), "KILL");
        let status = wait_timeout(&mut child, EXIT_TIMEOUT);
        assert!(status.is_some(), "server did not die after SIGKILL");
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop_with("TERM")
    }

    /// Sends `signal` (e.g. `"INT"`, `"TERM"`) and waits for the process
    /// to exit; returns its status.
    pub fn stop_with(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("server not running");
        send_signal(child.id(), signal);
        match wait_timeout(&mut child, EXIT_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dynamo-server did not exit within {EXIT_TIMEOUT:?} after SIG{signal}; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Adds arguments for the next (re)start.
    pub fn add_args(&mut self, extra: &[&str]) {
        self.args.extend(extra.iter().map(|s| s.to_string()));
    }

    /// Waits for the process to exit on its own (e.g. after SHUTDOWN);
    /// kills it and panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("server not running");
        match wait_timeout(&mut child, timeout) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dynamo-server did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Starts the server again with the same address, data dir and
    /// arguments (kills it first if it is still running).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
        self.spawn();
    }

    /// Kills the server, deletes its data directory (a lost disk), and starts
    /// it again on the same address with `extra` arguments added.
    pub fn restart_wiped(&mut self, extra: &[&str]) {
        if self.child.is_some() {
            self.kill9();
        }
        std::fs::remove_dir_all(&self.data_dir).expect("wiping the data dir");
        std::fs::create_dir_all(&self.data_dir).expect("recreating the data dir");
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn();
    }

    /// Everything the server wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "---- dynamo-server on {} log (last {} lines) ----\n{}\n---- end of log ----",
                self.addr,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}
