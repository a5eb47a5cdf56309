//! What operators look at: SLOWLOG, INFO commandstats / latencystats, the
//! Prometheus endpoint during a workload with a node down, SHUTDOWN, and the
//! one-command demo cluster.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use compat_tests::{
    binary, node_id, pick_address, q, qv, wait_for, Cluster, Reply, Server, EXIT_TIMEOUT,
};
use redis::Value;

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        other => panic!("not an array: {other:?}"),
    }
}

/// SLOWLOG GET's entries as (id, micros, args, client, replicas).
type Entry = (i64, i64, Vec<String>, String, Vec<String>);

fn slowlog(con: &mut redis::Connection, count: i64) -> Vec<Entry> {
    let reply = qv(con, &["SLOWLOG", "GET", &count.to_string()]);
    items(&reply)
        .iter()
        .map(|entry| {
            let fields = items(entry);
            assert_eq!(fields.len(), 7, "entry shape: {fields:?}");
            let int = |v: &Value| match v {
                Value::Int(i) => *i,
                other => panic!("not an integer: {other:?}"),
            };
            (
                int(&fields[0]),
                int(&fields[2]),
                items(&fields[3]).iter().map(text).collect(),
                text(&fields[4]),
                items(&fields[6]).iter().map(text).collect(),
            )
        })
        .collect()
}

#[test]
fn slowlog_keeps_the_slowest_commands_as_redis_does() {
    let server = Server::start(&["--slowlog-log-slower-than", "0"]);
    let mut con = server.client();
    let _: () = q(&mut con, &["SLOWLOG", "RESET"]);
    let _: () = q(&mut con, &["SET", "k1", "v1"]);
    let long = "x".repeat(300);
    let _: () = q(&mut con, &["SET", "k2", &long]);
    let _: Option<String> = q(&mut con, &["GET", "k1"]);
    // Refused (no password is set), but a command all the same.
    let _ = compat_tests::cmd(&["AUTH", "some-secret"]).query::<Value>(&mut con);
    let entries = slowlog(&mut con, -1);
    // Newest first; AUTH (a password) is never logged.
    let commands: Vec<&str> = entries.iter().map(|e| e.2[0].as_str()).collect();
    assert!(
        !commands.iter().any(|c| c.eq_ignore_ascii_case("auth")),
        "{commands:?}"
    );
    let position = |name: &str| {
        commands
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("{name} not in {commands:?}"))
    };
    assert!(position("GET") < position("SET"), "{commands:?}");
    let get = &entries[position("GET")];
    assert_eq!(get.2, vec!["GET", "k1"]);
    assert!(get.1 >= 0);
    assert!(
        get.3.parse::<std::net::SocketAddr>().is_ok(),
        "client address {}",
        get.3
    );
    assert!(
        get.4.is_empty(),
        "a single node asks no replicas: {:?}",
        get.4
    );
    let long_set = entries
        .iter()
        .find(|e| e.2.get(1).map(String::as_str) == Some("k2"))
        .expect("the SET of k2 is logged");
    assert!(
        long_set.2[2].ends_with("... (172 more bytes)"),
        "{:?}",
        long_set.2[2]
    );
    // Ids grow; LEN counts; the bound and RESET apply.
    assert!(entries.windows(2).all(|w| w[0].0 > w[1].0));
    let len: i64 = q(&mut con, &["SLOWLOG", "LEN"]);
    assert!(len >= 4, "len {len}");
    let _: () = q(&mut con, &["CONFIG", "SET", "slowlog-max-len", "2"]);
    let len: i64 = q(&mut con, &["SLOWLOG", "LEN"]);
    assert_eq!(len, 2);
    assert_eq!(slowlog(&mut con, 10).len(), 2);
    let _: () = q(&mut con, &["SLOWLOG", "RESET"]);
    // A threshold no command reaches logs nothing.
    let _: () = q(
        &mut con,
        &["CONFIG", "SET", "slowlog-log-slower-than", "10000000"],
    );
    let _: () = q(&mut con, &["SET", "k3", "v"]);
    let len: i64 = q(&mut con, &["SLOWLOG", "LEN"]);
    assert_eq!(len, 1, "only the CONFIG SET that raised the threshold");
    let err = compat_tests::qerr(&mut con, &["SLOWLOG", "GET", "-2"]);
    assert!(err.contains("count"), "{err}");
    let err = compat_tests::qerr(&mut con, &["SLOWLOG", "NOPE"]);
    assert!(err.contains("unknown subcommand"), "{err}");
}

#[test]
fn slowlog_names_the_replicas_a_cluster_command_waited_on() {
    let cluster = Cluster::start(3, (3, 2, 2), &["--slowlog-log-slower-than", "0"]);
    let ids: Vec<String> = (0..3).map(|i| node_id(cluster.node(i))).collect();
    let mut con = cluster.node(0).client();
    let _: () = q(&mut con, &["SLOWLOG", "RESET"]);
    for i in 0..20 {
        let _: () = q(&mut con, &["SET", &format!("key{i}"), "v"]);
        let _: Option<String> = q(&mut con, &["GET", &format!("key{i}")]);
    }
    let entries = slowlog(&mut con, -1);
    let data: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e.2[0].to_ascii_uppercase().as_str(), "SET" | "GET"))
        .collect();
    assert_eq!(
        data.len(),
        40,
        "every data command is logged at threshold 0"
    );
    for entry in &data {
        assert!(!entry.4.is_empty(), "no replicas for {:?}", entry.2);
        for line in &entry.4 {
            // "<node-id> <micros>us <outcome>"
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 3, "{line}");
            assert!(
                ids.contains(&parts[0].to_string()),
                "{line} names no member"
            );
            assert!(parts[1].ends_with("us"), "{line}");
            assert!(["ok", "failed", "no-answer"].contains(&parts[2]), "{line}");
        }
    }
    // A GET waits on R = 2 replicas, its own (answered in place) included.
    assert!(
        data.iter()
            .filter(|e| e.2[0].eq_ignore_ascii_case("GET"))
            .all(|e| e.4.len() >= 2 && e.4.iter().any(|l| l.starts_with(&ids[0]))),
        "{data:?}"
    );
    // A SET owned here waits on at least W = 2 replicas (itself included);
    // a forwarded one names the owner it went to.
    assert!(
        data.iter()
            .filter(|e| e.2[0].eq_ignore_ascii_case("SET"))
            .any(|e| e.4.len() >= 2),
        "{data:?}"
    );
}

fn info_section(con: &mut redis::Connection, section: &str) -> HashMap<String, String> {
    let info: String = q(con, &["INFO", section]);
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn fields(value: &str) -> HashMap<String, f64> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        .collect()
}

#[test]
fn info_commandstats_and_latencystats_count_every_command() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let default: String = q(&mut con, &["INFO"]);
    assert!(
        !default.contains("# Commandstats"),
        "only on request, as in Redis"
    );
    for i in 0..30 {
        let _: () = q(&mut con, &["SET", &format!("k{i}"), "v"]);
    }
    let err = compat_tests::qerr(&mut con, &["INCR", "k0"]);
    assert!(err.contains("not an integer"), "{err}");
    let stats = info_section(&mut con, "commandstats");
    let set = fields(&stats["cmdstat_set"]);
    assert_eq!(set["calls"], 30.0);
    assert_eq!(set["failed_calls"], 0.0);
    assert!(set["usec"] > 0.0 && set["usec_per_call"] > 0.0, "{set:?}");
    let incr = fields(&stats["cmdstat_incr"]);
    assert_eq!((incr["calls"], incr["failed_calls"]), (1.0, 1.0));
    let latency = info_section(&mut con, "latencystats");
    let set = fields(&latency["latency_percentiles_usec_set"]);
    assert!(set["p50"] > 0.0, "{set:?}");
    assert!(
        set["p50"] <= set["p99"] && set["p99"] <= set["p99.9"],
        "{set:?}"
    );
    let all: String = q(&mut con, &["INFO", "all"]);
    assert!(all.contains("# Latencystats") && all.contains("# Dynamo"));
}

/// GET `path` from an HTTP endpoint: (status code, body).
fn http_get(host: &str, port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect((host, port)).expect("connecting to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reading");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_string())
}

/// The value of one sample line of a Prometheus exposition (0 if absent).
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap_or(f64::NAN))
}

/// A port free on `node`'s address, other than its client and peer ports
/// (picked while the node runs, so the OS cannot hand out its own port).
fn metrics_port(node: &Server) -> u16 {
    loop {
        let listener = std::net::TcpListener::bind((node.addr().ip(), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        if port != node.port() && port != node.port().wrapping_add(10_000) {
            return port;
        }
    }
}

#[test]
fn metrics_endpoint_follows_a_workload_and_a_down_node() {
    let mut cluster = Cluster::start(
        3,
        (3, 2, 2),
        &[
            "--hint-delivery-interval-ms",
            "200",
            "--read-repair-chance",
            "0",
        ],
    );
    // Restart each node with its own metrics port (the harness gives every
    // node the same extra arguments).
    let ports: Vec<u16> = cluster.nodes.iter().map(metrics_port).collect();
    for (i, port) in ports.iter().enumerate() {
        let node = &mut cluster.nodes[i];
        node.add_args(&["--metrics-port", &port.to_string()]);
        node.restart();
    }
    cluster.wait_converged(3);
    let host = cluster.node(0).host();
    let scrape = || {
        let (code, body) = http_get(&host, ports[0], "/metrics");
        assert_eq!(code, 200, "{body}");
        assert!(body.ends_with("# EOF\n"), "an OpenMetrics exposition");
        body
    };
    let before = scrape();
    let set_ok = r#"dynamo_command_duration_seconds_count{command="set",outcome="ok"}"#;
    let get_ok = r#"dynamo_command_duration_seconds_count{command="get",outcome="ok"}"#;
    let found_once = r#"dynamo_read_versions_total{versions="1"}"#;
    let mut con = cluster.node(0).client();
    for i in 0..50 {
        let _: () = q(&mut con, &["SET", &format!("m{i}"), "v"]);
        let _: Option<String> = q(&mut con, &["GET", &format!("m{i}")]);
    }
    let after = scrape();
    assert_eq!(sample(&after, set_ok) - sample(&before, set_ok), 50.0);
    assert_eq!(sample(&after, get_ok) - sample(&before, get_ok), 50.0);
    assert!(sample(&after, found_once) - sample(&before, found_once) >= 50.0);
    // The histogram's buckets fill: the +Inf bucket holds every SET.
    let inf = r#"dynamo_command_duration_seconds_bucket{le="+Inf",command="set",outcome="ok"}"#;
    assert_eq!(sample(&after, inf), sample(&after, set_ok));
    assert!(sample(&after, "dynamo_connected_clients") >= 1.0);
    assert!(sample(&after, "dynamo_stored_keys") >= 50.0);

    // One node down: writes through node 0 keep hints for it, and they
    // drain once it is back.
    let down = node_id(cluster.node(2));
    let hints = format!(r#"dynamo_hints_pending{{target="{down}"}}"#);
    cluster.nodes[2].kill9();
    for i in 0..30 {
        let _: () = q(&mut con, &["SET", &format!("d{i}"), "v"]);
    }
    let body = scrape();
    assert!(
        sample(&body, &hints) > 0.0,
        "no hints pending for {down}:\n{body}"
    );
    assert_eq!(
        sample(&body, &format!(r#"dynamo_peer_up{{peer="{down}"}}"#)),
        0.0
    );
    cluster.nodes[2].restart();
    wait_for("hints to drain", Duration::from_secs(30), || {
        sample(&scrape(), &hints) == 0.0
    });
    let body = scrape();
    assert!(
        sample(&body, "dynamo_hints_delivered_total") >= 30.0,
        "{body}"
    );
    assert_eq!(
        sample(&body, &format!(r#"dynamo_peer_up{{peer="{down}"}}"#)),
        1.0
    );
    // INFO answers with the same figures.
    let info = info_section(&mut con, "dynamo");
    assert!(info["hints_delivered"].parse::<f64>().unwrap() >= 30.0);
}

#[test]
fn shutdown_flushes_and_exits_like_redis() {
    let mut server = Server::start(&[]);
    let mut con = server.client();
    let _: () = q(&mut con, &["SET", "kept", "yes"]);
    let mut raw = server.raw_conn();
    assert!(matches!(
        raw.cmd(&["SHUTDOWN", "ABORT"]),
        Reply::Error(e) if e.contains("No shutdown in progress")
    ));
    assert!(matches!(raw.cmd(&["SHUTDOWN", "LATER"]), Reply::Error(_)));
    raw.send(&compat_tests::encode_command(&["SHUTDOWN", "NOSAVE"]))
        .unwrap();
    assert!(
        raw.closed_within(Duration::from_secs(10)),
        "SHUTDOWN closes the connection without a reply"
    );
    let status = server.wait_exit(EXIT_TIMEOUT);
    assert!(status.success(), "exit status {status}");
    server.restart();
    let mut con = server.client();
    let kept: Option<String> = q(&mut con, &["GET", "kept"]);
    assert_eq!(kept.as_deref(), Some("yes"));
}

#[test]
fn demo_starts_a_cluster_and_stops_it_on_sigint() {
    let address = pick_address();
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(binary())
        .args([
            "demo",
            "--nodes",
            "3",
            "--bind",
            &address.ip().to_string(),
            "--port",
            &address.port().to_string(),
            "--dir",
            &dir.path().display().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the demo");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.starts_with("demo cluster ready"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = demo.kill();
                let mut err = String::new();
                let _ = demo.stderr.take().unwrap().read_to_string(&mut err);
                panic!("demo not ready: {seen:#?}\n{err}");
            }
        }
    }
    let nodes: Vec<&String> = seen.iter().filter(|l| l.starts_with("node ")).collect();
    assert_eq!(nodes.len(), 3, "{seen:#?}");
    let pids: Vec<String> = nodes
        .iter()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "pid").expect("a pid");
            assert!(l.contains("dashboard http://"), "{l}");
            words[at + 1].to_string()
        })
        .collect();
    // A write through node 1 is read through node 3.
    let url = |port: u16| format!("redis://{}:{port}/", address.ip());
    let mut first = redis::Client::open(url(address.port()))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = q(&mut first, &["SET", "hello", "world"]);
    let mut third = redis::Client::open(url(address.port() + 2))
        .unwrap()
        .get_connection()
        .unwrap();
    let got: Option<String> = q(&mut third, &["GET", "hello"]);
    assert_eq!(got.as_deref(), Some("world"));
    let members: String = q(&mut third, &["INFO", "dynamo"]);
    assert!(members.contains("members:3"), "{members}");

    let status = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "demo exit status {status}");
    for pid in pids {
        let alive = Command::new("kill")
            .args(["-0", &pid])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(
            !alive,
            "node process {pid} still running after the demo stopped"
        );
    }
    // Each node flushed and left its data behind in --dir.
    assert!(dir.path().join("node1").exists());
}
