//! Real Redis tools against the server: redis-cli and redis-benchmark
//! (Debian package redis-tools). Missing tools make these tests FAIL.

use std::time::Duration;

use compat_tests::{q, run_tool, Server};

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn cli(server: &Server, args: &[&str], stdin: &str) -> (String, String) {
    let port = server.port().to_string();
    let host = server.host();
    let mut all = vec!["-h", host.as_str(), "-p", port.as_str()];
    all.extend_from_slice(args);
    let out = run_tool("redis-cli", &all, stdin.as_bytes(), TOOL_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "redis-cli {args:?} failed ({}): stdout {stdout:?} stderr {stderr:?}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn redis_cli_one_shot_commands() {
    let server = Server::start(&[]);
    assert_eq!(cli(&server, &["SET", "a", "b"], "").0, "OK\n");
    assert_eq!(cli(&server, &["GET", "a"], "").0, "b\n");
    assert_eq!(cli(&server, &["EXISTS", "a", "missing"], "").0, "1\n");
    assert_eq!(cli(&server, &["GET", "missing"], "").0, "\n");
    assert_eq!(cli(&server, &["PING"], "").0, "PONG\n");
    // RESP3 (-3): redis-cli sends HELLO 3 first.
    assert_eq!(cli(&server, &["-3", "GET", "a"], "").0, "b\n");
    let mut c = server.client();
    assert_eq!(q::<String>(&mut c, &["GET", "a"]), "b");
}

#[test]
fn redis_cli_reads_commands_from_stdin() {
    let server = Server::start(&[]);
    let (stdout, stderr) = cli(&server, &[], "SET x 1\nINCR x\nGET x\nDEL x\nGET x\n");
    assert_eq!(stdout, "OK\n2\n2\n1\n\n", "stderr: {stderr}");
}

#[test]
fn redis_cli_pipe_of_errors_keeps_going() {
    let server = Server::start(&[]);
    let (stdout, _) = cli(&server, &[], "NOSUCHCOMMAND\nSET y 1\nGET y\n");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "stdout: {stdout:?}");
    assert!(lines[0].starts_with("ERR unknown command"), "{stdout:?}");
    assert_eq!(&lines[1..], ["OK", "1"]);
}

#[test]
fn redis_benchmark_get_set() {
    let server = Server::start(&[]);
    let port = server.port().to_string();
    let host = server.host();
    let args = [
        "-h", &host, "-p", &port, "-t", "get,set", "-n", "2000", "-c", "10", "-q",
    ];
    let out = run_tool("redis-benchmark", &args, b"", Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-benchmark failed ({}): {stdout} {stderr}",
        out.status
    );
    for text in [&stdout, &stderr] {
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("err"),
            "redis-benchmark reported errors:\nstdout: {stdout}\nstderr: {stderr}"
        );
    }
    for name in ["SET", "GET"] {
        let ok = stdout
            .split(['\r', '\n'])
            .any(|l| l.starts_with(&format!("{name}: ")) && l.contains("requests per second"));
        assert!(ok, "no requests per second for {name}:\n{stdout}");
    }
}
