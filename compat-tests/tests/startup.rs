//! The command line: bad options fail fast with a clear message.

use std::time::Duration;

use compat_tests::{pick_address, run_to_exit};

fn bad_option_fails(option: &str, value: &str) {
    let addr = pick_address();
    let ip = addr.ip().to_string();
    let port = addr.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut args = vec!["--bind", ip.as_str(), "--data-dir", data.as_str()];
    if option != "--port" {
        args.extend(["--port", port.as_str()]);
    }
    args.extend([option, value]);
    let out = run_to_exit(&args, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{option} {value}: exit status {} (expected failure); stderr: {stderr}",
        out.status
    );
    let name = option.trim_start_matches('-');
    assert!(
        stderr.contains(name),
        "{option} {value}: stderr does not name the option: {stderr:?}"
    );
}

#[test]
fn non_numeric_port_is_rejected() {
    bad_option_fails("--port", "notanumber");
}

#[test]
fn unknown_option_is_rejected() {
    bad_option_fails("--no-such-option", "1");
}

#[test]
fn bad_engine_is_rejected() {
    bad_option_fails("--engine", "nosuchengine");
}

#[test]
fn missing_config_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.conf").display().to_string();
    let addr = pick_address();
    let ip = addr.ip().to_string();
    let port = addr.port().to_string();
    let out = run_to_exit(
        &[&missing, "--bind", &ip, "--port", &port],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("nope.conf"), "stderr: {stderr:?}");
}

#[test]
fn config_file_is_read_and_command_line_overrides_it() {
    use compat_tests::{q, Server};
    let config =
        "# a test config\nmaxclients = 42\nproto-max-bulk-len = 2000000\nengine = \"memory\"\n";
    let server = Server::start_with_config(config, &["--proto-max-bulk-len", "3000000"]);
    let mut c = server.client();
    let v: Vec<String> = q(&mut c, &["CONFIG", "GET", "maxclients"]);
    assert_eq!(v, ["maxclients", "42"]);
    let v: Vec<String> = q(&mut c, &["CONFIG", "GET", "proto-max-bulk-len"]);
    assert_eq!(v, ["proto-max-bulk-len", "3000000"]);
    let v: Vec<String> = q(&mut c, &["CONFIG", "GET", "port"]);
    assert_eq!(v, ["port".to_string(), server.port().to_string()]);
}
