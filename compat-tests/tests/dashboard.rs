//! The HTTP endpoint on `metrics-port` and the cluster dashboard, in a real
//! browser: a 3-node `dynamo-server demo` cluster, `/metrics` and
//! `/api/cluster` over plain TCP, then headless Chromium loads node 0's
//! dashboard (`--dump-dom`) and must show all three nodes up; after a
//! `kill -9` of node 2 a fresh load must show it down within seconds.
//!
//! Needs `chromium` (Debian package; `.ci/run` installs it). Without it the
//! browser part is skipped with a notice, unless `DYNAMO_REQUIRE_BROWSER=1`,
//! which makes it a failure. `DYNAMO_DASHBOARD_SCREENSHOT=/path.png` also
//! saves a screenshot of the dashboard with node 2 down.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use compat_tests::{binary, pick_address, wait_for};
use serde_json::Value;

/// How long one Chromium run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
/// How soon after the kill the dashboard must show the node down.
const DOWN_WITHIN: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// The cluster: `dynamo-server demo --nodes 3` on a fresh loopback address.

/// How long `demo` may take to report the cluster ready.
const DEMO_READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running `dynamo-server demo`: SIGTERM on drop stops it and its nodes.
struct Demo {
    child: Child,
    /// Per node, in order: process id and dashboard address.
    nodes: Vec<(u32, SocketAddr)>,
    stderr_path: PathBuf,
    dir: tempfile::TempDir,
}

/// A loopback IP and client port P such that P..P+2 (clients),
/// P+1000..P+1002 (dashboards) and P+10000..P+10002 (peers) are all free.
fn demo_address() -> SocketAddr {
    for _ in 0..200 {
        let base = pick_address();
        let free = [0, 1000, 10_000].iter().all(|offset| {
            (0..3).all(|i| TcpListener::bind((base.ip(), base.port() + offset + i)).is_ok())
        });
        if free {
            return base;
        }
    }
    panic!("no loopback address with 9 free ports for the demo");
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::Builder::new()
            .prefix("dynamo-dashboard-")
            .tempdir()
            .expect("tempdir");
        let address = demo_address();
        let stderr_path = dir.path().join("demo.stderr");
        let mut child = Command::new(binary())
            .args(["demo", "--nodes", "3", "--dir"])
            .arg(dir.path().join("cluster"))
            .args(["--port", &address.port().to_string()])
            .args(["--bind", &address.ip().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("starting dynamo-server demo");
        // Every line of its stdout, read by a thread that drains it to the end.
        let stdout = child.stdout.take().expect("demo stdout");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            // On to the end even when nobody listens any more: a closed pipe
            // would make the demo's next line fail.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut demo = Demo {
            child,
            nodes: Vec::new(),
            stderr_path,
            dir,
        };
        let deadline = Instant::now() + DEMO_READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("demo: {line}");
                    if line.starts_with("demo cluster ready") {
                        break;
                    }
                    if let (Some(pid), Some(dashboard)) = (
                        word_after(&line, "pid "),
                        word_after(&line, "dashboard http://"),
                    ) {
                        let pid = pid.parse().expect("a pid");
                        let dashboard = dashboard
                            .trim_end_matches('/')
                            .parse()
                            .unwrap_or_else(|e| panic!("dashboard address in {line:?}: {e}"));
                        demo.nodes.push((pid, dashboard));
                    }
                    seen.push(line);
                }
                Err(_) => panic!(
                    "dynamo-server demo was not ready within {DEMO_READY_TIMEOUT:?} \
                     (or exited); stdout:\n{}\n{}",
                    seen.join("\n"),
                    demo.logs()
                ),
            }
        }
        assert_eq!(demo.nodes.len(), 3, "node lines: {seen:#?}");
        demo
    }

    /// The demo's stderr and the nodes' logs, for a failure message.
    fn logs(&self) -> String {
        let mut out = format!(
            "demo stderr:\n{}",
            std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
        );
        for i in 1..=3 {
            let path = self.dir.path().join("cluster").join(format!("node{i}.log"));
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            out.push_str(&format!("\nnode{i}.log (tail):\n{}", tail.join("\n")));
        }
        out
    }
}

impl Drop for Demo {
    /// SIGTERM (repeated every 2 s until it exits, 30 s at most, then
    /// SIGKILL); then SIGKILL for any of its nodes still running, e.g. if
    /// the demo itself did not stop them.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let pid = self.child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut next_term = Instant::now();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("dynamo-server demo did not stop after SIGTERM; killing it");
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            if Instant::now() >= next_term {
                let _ = Command::new("kill").args(["-TERM", &pid]).status();
                next_term = Instant::now() + Duration::from_secs(2);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let dir = self.dir.path().display().to_string();
        for (pid, _) in &self.nodes {
            // Only a process that is still one of this demo's nodes (its
            // command line names the demo's directory), not a reused pid.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&dir) {
                eprintln!("demo node pid {pid} still running after the demo; killing it");
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

/// The text after `marker` in `line`, up to the next space.
fn word_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let start = line.find(marker)? + marker.len();
    line[start..].split_whitespace().next()
}

// ---------------------------------------------------------------------------
// HTTP over a plain TcpStream.

struct HttpReply {
    status: u16,
    headers: String,
    body: String,
}

/// One HTTP/1.0 request (the server closes the connection after it).
fn http(addr: SocketAddr, method: &str, path: &str) -> HttpReply {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to http://{addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading {method} {path}: {e}"));
    let text = String::from_utf8(raw).expect("an HTTP reply in UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let status_line = head.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1."),
        "not an HTTP status line: {status_line:?}"
    );
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {status_line:?}"));
    HttpReply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// `GET /api/cluster` on `addr`, checked to be 200 and parsed.
fn cluster_doc(addr: SocketAddr) -> Value {
    let reply = http(addr, "GET", "/api/cluster");
    assert_eq!(reply.status, 200, "GET /api/cluster on {addr}");
    assert!(
        reply.headers.contains("content-type: application/json"),
        "GET /api/cluster content type: {}",
        reply.headers
    );
    serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("/api/cluster is not JSON ({e}):\n{}", reply.body))
}

fn browser_available() -> bool {
    Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs headless Chromium on `url` with `args` (e.g. `--dump-dom`) and
/// returns its stdout; panics if it does not finish within
/// [`BROWSER_TIMEOUT`]. Each run gets its own profile directory.
fn chromium(url: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let profile = format!("--user-data-dir={}", dir.path().join("profile").display());
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            &profile,
            "--virtual-time-budget=5000",
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("starting chromium");
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    loop {
        match child.try_wait().expect("waiting for chromium") {
            Some(_) => break,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium did not finish within {BROWSER_TIMEOUT:?} on {url}; stderr:\n{}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
        }
    }
    std::fs::read_to_string(&out_path).unwrap_or_default()
}

/// The `data-*` attributes of every `<tr data-node-id=...>` in a dumped DOM,
/// as (node id, status, the whole row's markup).
fn node_rows(dom: &str) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find("<tr ") {
        rest = &rest[start..];
        let end = rest.find("</tr>").map_or(rest.len(), |e| e + 5);
        let row = &rest[..end];
        let tag = &row[..row.find('>').unwrap_or(row.len())];
        if let (Some(id), Some(status)) = (attr(tag, "data-node-id"), attr(tag, "data-status")) {
            rows.push((id, status, row.to_string()));
        }
        rest = &rest[end..];
    }
    rows
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(tag[start..start + len].to_string())
}

/// Loads the dashboard until `check` accepts its node rows (each load runs
/// the page's polling for five seconds of virtual time); returns the last
/// DOM. Panics after `timeout` with what the page showed.
fn dashboard_until(
    url: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&[(String, String, String)]) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let dom = chromium(url, &["--dump-dom"]);
        let rows = node_rows(&dom);
        if check(&rows) {
            return dom;
        }
        if Instant::now() >= deadline {
            let shown: Vec<String> = rows.iter().map(|r| format!("{} {}", r.0, r.1)).collect();
            panic!(
                "the dashboard at {url} did not show {what} within {timeout:?}; rows: {shown:?}\nDOM:\n{}",
                &dom[..dom.len().min(4000)]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------

#[test]
fn dashboard_shows_the_cluster_and_a_killed_node() {
    let demo = Demo::start();
    let dashboards: Vec<SocketAddr> = demo.nodes.iter().map(|n| n.1).collect();
    let http0 = dashboards[0];
    let ids: Vec<String> = dashboards
        .iter()
        .map(|&addr| {
            let doc = cluster_doc(addr);
            let id = doc
                .get("node")
                .and_then(|n| n.get("id"))
                .and_then(Value::as_str);
            id.expect("node.id in /api/cluster").to_string()
        })
        .collect();

    // /metrics: 200 with the OpenMetrics content type, over HTTP/1.0.
    for &addr in &dashboards {
        let reply = http(addr, "GET", "/metrics");
        assert_eq!(reply.status, 200, "GET /metrics on {addr}");
        assert!(
            reply
                .headers
                .contains("content-type: application/openmetrics-text"),
            "GET /metrics content type: {}",
            reply.headers
        );
    }
    // Only GET and HEAD; unknown paths are 404; the page and its assets load.
    let post = http(http0, "POST", "/metrics");
    assert_eq!(post.status, 405, "POST /metrics");
    assert!(
        post.headers.contains("allow: get, head"),
        "{}",
        post.headers
    );
    let head = http(http0, "HEAD", "/api/cluster");
    assert_eq!(head.status, 200, "HEAD /api/cluster");
    assert!(head.body.is_empty(), "HEAD has no body: {:?}", head.body);
    assert_eq!(http(http0, "GET", "/no-such-page").status, 404);
    let page = http(http0, "GET", "/");
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("content-type: text/html"));
    assert!(page.body.contains("/assets/app.js") && page.body.contains("/assets/style.css"));
    for asset in ["/assets/app.js", "/assets/style.css"] {
        let reply = http(http0, "GET", asset);
        assert_eq!(reply.status, 200, "GET {asset}");
        assert!(!reply.body.is_empty(), "GET {asset} is empty");
    }

    // /api/cluster: valid JSON, node 0's view with the 3 members up (its
    // failure detector may take a moment after `demo` reports ready) and a
    // ring of Q owners among them.
    let members_up = |doc: &Value| {
        doc.get("members")
            .and_then(Value::as_array)
            .is_some_and(|members| {
                members.len() == 3
                    && members
                        .iter()
                        .all(|m| m.get("status").and_then(Value::as_str) == Some("up"))
            })
    };
    wait_for(
        "node 0 to see 3 members up",
        Duration::from_secs(30),
        || members_up(&cluster_doc(http0)),
    );
    let doc = cluster_doc(http0);
    let node = doc.get("node").expect("node");
    assert_eq!(
        node.get("id").and_then(Value::as_str),
        Some(ids[0].as_str())
    );
    assert_eq!(node.get("mode").and_then(Value::as_str), Some("cluster"));
    let members = doc
        .get("members")
        .and_then(Value::as_array)
        .expect("members");
    for id in &ids {
        let member = members
            .iter()
            .find(|m| m.get("id").and_then(Value::as_str) == Some(id))
            .unwrap_or_else(|| panic!("{id} missing from members: {members:?}"));
        assert_eq!(
            member.get("membership").and_then(Value::as_str),
            Some("active"),
            "{member:?}"
        );
    }
    let ring = doc.get("ring").expect("ring");
    let owners = ring
        .get("owners")
        .and_then(Value::as_array)
        .expect("owners");
    assert_eq!(
        ring.get("q").and_then(Value::as_u64),
        Some(owners.len() as u64)
    );
    assert!(owners
        .iter()
        .all(|o| o.as_str().is_some_and(|o| ids.iter().any(|id| id == o))));
    assert!(
        doc.get("latency").and_then(Value::as_array).is_some(),
        "latency"
    );

    if !browser_available() {
        assert!(
            std::env::var("DYNAMO_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "chromium is not installed and DYNAMO_REQUIRE_BROWSER=1 \
             (install it: apt-get install -y chromium)"
        );
        eprintln!(
            "SKIPPED: the dashboard browser checks need chromium \
             (apt-get install -y chromium); the HTTP checks passed"
        );
        return;
    }

    // The page, in a browser: all three nodes up.
    let url = format!("http://{http0}/");
    let all_up = |rows: &[(String, String, String)]| {
        rows.len() == 3
            && ids
                .iter()
                .all(|id| rows.iter().any(|r| &r.0 == id && r.1 == "up"))
    };
    let dom = dashboard_until(&url, "3 nodes up", Duration::from_secs(30), all_up);
    assert!(
        dom.contains("data-state=\"live\""),
        "the page did not reach its live state"
    );
    assert!(dom.contains("last update"), "no last-update time shown");
    assert!(
        dom.contains(&format!("data-legend-node=\"{}\"", ids[1])),
        "the ring legend lacks node 1"
    );

    // kill -9 node 2: node 0's dashboard shows it down, the others up.
    let killed = ids[2].clone();
    let pid = demo.nodes[2].0;
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -9 {pid}");
    let killed_at = Instant::now();
    let node2_down = |rows: &[(String, String, String)]| {
        rows.len() == 3
            && rows.iter().all(|(id, status, _)| {
                if *id == killed {
                    status == "down"
                } else {
                    status == "up"
                }
            })
    };
    let dom = dashboard_until(&url, "node 2 down", DOWN_WITHIN, node2_down);
    eprintln!("node 2 shown down {:?} after the kill", killed_at.elapsed());
    let row = node_rows(&dom)
        .into_iter()
        .find(|r| r.0 == killed)
        .expect("node 2's row");
    assert!(row.2.contains("since"), "no 'down since' in {}", row.2);

    if let Ok(path) = std::env::var("DYNAMO_DASHBOARD_SCREENSHOT") {
        let shot = format!("--screenshot={path}");
        chromium(&url, &["--window-size=1400,1000", &shot]);
        assert!(
            std::path::Path::new(&path).is_file(),
            "no screenshot at {path}"
        );
        eprintln!("screenshot of the dashboard with node 2 down: {path}");
    }
}
