//! `dynamo-server demo`: a local cluster in one command.
//!
//! Starts N node processes of this same binary on one loopback address
//! (client ports P.., peer ports P+10000.., dashboard ports P+1000..), each
//! with its own data directory, waits until they agree on the ring, prints
//! how to reach them, and on Ctrl-C (or SIGTERM) stops each with SHUTDOWN so
//! they flush and exit cleanly. A node that dies meanwhile (kill one to see
//! the cluster cope) is reported and the rest keep running.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

/// Prints a line; a closed stdout (the reader went away) must not stop the
/// demo from stopping its nodes, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// How long the nodes get to find each other.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each node gets to stop after SHUTDOWN.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "\
usage: dynamo-server demo [--nodes N] [--port P] [--bind IP] [--dir DIR] [--keep]

Starts a local N-node cluster (default 3; N=3 R=2 W=2, fewer replicas when N < 3)
and stops it on Ctrl-C.
  --nodes N   nodes to start, 1-7 (default 3)
  --port P    client port of node 1 (default 7001); node k listens on P+k-1,
              its peer protocol on P+k-1+10000 and its dashboard on P+k-1+1000
  --bind IP   loopback address to use (default 127.0.0.1)
  --dir DIR   where the nodes keep data and logs (default: a new temporary
              directory, removed on exit unless --keep)
  --keep      keep the temporary directory on exit";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    nodes: u16,
    port: u16,
    bind: String,
    dir: Option<PathBuf>,
    keep: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        nodes: 3,
        port: 7001,
        bind: "127.0.0.1".into(),
        dir: None,
        keep: false,
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = |name: &str| {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--nodes" => {
                options.nodes = value("--nodes")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=7).contains(n))
                    .ok_or("--nodes must be from 1 to 7")?;
            }
            "--port" => {
                options.port = value("--port")?
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or("--port must be a port number")?;
            }
            "--bind" => {
                let ip = value("--bind")?;
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("--bind: '{ip}' is not an IP address"))?;
                options.bind = ip;
            }
            "--dir" => options.dir = Some(PathBuf::from(value("--dir")?)),
            "--keep" => options.keep = true,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if u32::from(options.port) + u32::from(options.nodes) - 1 + 10_000 > 65_535 {
        return Err("--port too high: the peer ports (port + 10000) would overflow".into());
    }
    Ok(options)
}

/// One started node.
struct DemoNode {
    number: u16,
    port: u16,
    child: Child,
    exited: bool,
}

/// Runs the demo (arguments after `demo`).
pub fn run(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        say!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("dynamo-server demo: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (dir, temporary) = match &options.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("dynamo-demo-{}", std::process::id())),
            true,
        ),
    };
    let result = run_cluster(&options, &dir);
    if temporary && !options.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dynamo-server demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_cluster(options: &Options, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let n = options.nodes.min(3);
    let (r, w) = (n.min(2), n.min(2));
    say!(
        "Starting a {}-node demo cluster in {} (N={n} R={r} W={w}) ...",
        options.nodes,
        dir.display()
    );
    let mut nodes = Vec::new();
    for number in 1..=options.nodes {
        match start_node(&exe, options, dir, number, (n, r, w)) {
            Ok(node) => nodes.push(node),
            Err(message) => {
                stop_all(&options.bind, &mut nodes);
                return Err(message);
            }
        }
    }
    if let Err(message) = wait_ready(&options.bind, &mut nodes) {
        stop_all(&options.bind, &mut nodes);
        return Err(message);
    }
    let signals = match Signals::catch() {
        Ok(signals) => signals,
        Err(message) => {
            stop_all(&options.bind, &mut nodes);
            return Err(message);
        }
    };
    for node in &nodes {
        say!(
            "node {}  redis-cli -h {} -p {}  dashboard http://{}:{}/  pid {}  log {}",
            node.number,
            options.bind,
            node.port,
            options.bind,
            node.port + 1000,
            node.child.id(),
            log_path(dir, node.number).display()
        );
    }
    say!(
        "demo cluster ready: {} nodes agree on the ring (N={n} R={r} W={w}). Ctrl-C stops it.",
        nodes.len()
    );
    say!(
        "try: redis-cli -h {bind} -p {first} SET hello world && redis-cli -h {bind} -p {last} GET hello",
        bind = options.bind,
        first = options.port,
        last = options.port + options.nodes - 1
    );
    signals.wait(&mut nodes);
    say!("stopping the demo cluster ...");
    stop_all(&options.bind, &mut nodes);
    say!("stopped.");
    Ok(())
}

fn log_path(dir: &Path, number: u16) -> PathBuf {
    dir.join(format!("node{number}.log"))
}

fn start_node(
    exe: &Path,
    options: &Options,
    dir: &Path,
    number: u16,
    (n, r, w): (u16, u16, u16),
) -> Result<DemoNode, String> {
    let port = options.port + number - 1;
    let log = std::fs::File::create(log_path(dir, number))
        .map_err(|e| format!("cannot create the log of node {number}: {e}"))?;
    let mut command = Command::new(exe);
    command.args([
        "--bind",
        &options.bind,
        "--port",
        &port.to_string(),
        "--metrics-port",
        &(port + 1000).to_string(),
        "--data-dir",
        &dir.join(format!("node{number}")).display().to_string(),
        "--cluster-name",
        "demo",
        "--n",
        &n.to_string(),
        "--r",
        &r.to_string(),
        "--w",
        &w.to_string(),
    ]);
    if number > 1 {
        command.args([
            "--seeds",
            &format!("{}:{}", options.bind, options.port + 10_000),
        ]);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start node {number}: {e}"))?;
    Ok(DemoNode {
        number,
        port,
        child,
        exited: false,
    })
}

fn client(bind: &str, port: u16) -> Option<redis::Connection> {
    redis::Client::open(format!("redis://{bind}:{port}/"))
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()
}

/// A field of `INFO dynamo`.
fn info_field(connection: &mut redis::Connection, name: &str) -> Option<String> {
    let text: String = redis::cmd("INFO").arg("dynamo").query(connection).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Waits until every node answers, knows every member and no ring change
/// is in progress.
fn wait_ready(bind: &str, nodes: &mut [DemoNode]) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let members = nodes.len().to_string();
    loop {
        for node in nodes.iter_mut() {
            if let Ok(Some(status)) = node.child.try_wait() {
                return Err(format!(
                    "node {} exited during start-up ({status}); see its log",
                    node.number
                ));
            }
        }
        let ready = nodes.iter().all(|node| {
            client(bind, node.port).is_some_and(|mut c| {
                if nodes.len() == 1 {
                    return true;
                }
                info_field(&mut c, "members").as_deref() == Some(members.as_str())
                    && info_field(&mut c, "transition").as_deref() == Some("none")
            })
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the nodes did not agree on the ring within {READY_TIMEOUT:?}; see the logs"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGINT and SIGTERM, caught from the moment this exists: the demo must
/// not die of a Ctrl-C that arrives just after it said it was ready (the
/// default action would leave the nodes running).
struct Signals {
    runtime: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn catch() -> Result<Signals, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot wait for signals: {e}"))?;
        let (interrupt, terminate) = {
            let _context = runtime.enter();
            let catch = |kind| signal(kind).map_err(|e| format!("cannot catch signals: {e}"));
            (
                catch(SignalKind::interrupt())?,
                catch(SignalKind::terminate())?,
            )
        };
        Ok(Signals {
            runtime,
            interrupt,
            terminate,
        })
    }

    /// Blocks until SIGINT or SIGTERM, reporting nodes that exit meanwhile.
    fn wait(self, nodes: &mut [DemoNode]) {
        let Signals {
            runtime,
            mut interrupt,
            mut terminate,
        } = self;
        runtime.block_on(async {
            let mut ticks = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = interrupt.recv() => return,
                    _ = terminate.recv() => return,
                    _ = ticks.tick() => report_exits(nodes),
                }
            }
        });
    }
}

fn report_exits(nodes: &mut [DemoNode]) {
    for node in nodes.iter_mut().filter(|n| !n.exited) {
        if let Ok(Some(status)) = node.child.try_wait() {
            node.exited = true;
            say!(
                "node {} (port {}) exited: {status}; the others keep serving",
                node.number,
                node.port
            );
        }
    }
}

/// SHUTDOWN to every node still running, then waits for each to exit
/// (killing it after [`STOP_TIMEOUT`]).
fn stop_all(bind: &str, nodes: &mut [DemoNode]) {
    for node in nodes.iter_mut() {
        if matches!(node.child.try_wait(), Ok(Some(_))) {
            continue;
        }
        if let Some(mut c) = client(bind, node.port) {
            // The node closes the connection instead of answering.
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
        }
    }
    for node in nodes.iter_mut() {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match node.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("node {} did not stop in time; killing it", node.number);
                    let _ = node.child.kill();
                    let _ = node.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn options() {
        let defaults = parse(&[]).unwrap();
        assert_eq!((defaults.nodes, defaults.port), (3, 7001));
        let o = parse(&args(&[
            "--nodes",
            "5",
            "--port",
            "9000",
            "--bind",
            "127.0.0.9",
            "--keep",
        ]))
        .unwrap();
        assert_eq!(
            (o.nodes, o.port, o.bind.as_str(), o.keep),
            (5, 9000, "127.0.0.9", true)
        );
        assert!(parse(&args(&["--nodes", "0"])).is_err());
        assert!(parse(&args(&["--nodes", "8"])).is_err());
        assert!(parse(&args(&["--port", "60000"])).is_err());
        assert!(parse(&args(&["--bind", "localhost"])).is_err());
        assert!(parse(&args(&["--what"])).is_err());
        assert!(parse(&args(&["--dir"])).is_err());
    }
}
