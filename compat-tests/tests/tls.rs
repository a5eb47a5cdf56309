//! TLS on the client port: redis-cli and redis-benchmark over `tls-port`
//! with a certificate from a test CA, client certificates when
//! `tls-auth-clients yes`, and bad TLS options refused at start.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use compat_tests::{pick_address, run_tool, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A CA, a server certificate for `ip` and a client certificate, as PEM
/// files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(ip: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "dynamo test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        for (name, purpose) in [
            ("server", ExtendedKeyUsagePurpose::ServerAuth),
            ("client", ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let mut params = CertificateParams::new(vec![ip.to_string()]).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("dynamo test {name}"));
            params.extended_key_usages = vec![purpose];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn file(&self, name: &str) -> String {
        path_text(&self.dir.path().join(name))
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("utf-8 temp path").to_string()
}

/// A free port on `addr`'s IP other than `addr`'s and its peer port.
fn free_port_beside(addr: SocketAddr) -> u16 {
    loop {
        let listener = TcpListener::bind((addr.ip(), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        if port != addr.port() && port != addr.port() + 10_000 && port != 6379 {
            return port;
        }
    }
}

/// A fresh address, a PKI whose server certificate names its IP, and a
/// node there with TLS on a second port (returned too); with
/// `client_certificates`, `--tls-auth-clients yes` and the PKI's CA.
fn start_tls(client_certificates: bool) -> (Server, Pki, u16) {
    let addr = pick_address();
    let pki = Pki::new(&addr.ip().to_string());
    let tls_port = free_port_beside(addr).to_string();
    let (cert, key, ca) = (
        pki.file("server.pem"),
        pki.file("server.key"),
        pki.file("ca.pem"),
    );
    let mut args = vec![
        "--tls-port",
        tls_port.as_str(),
        "--tls-cert-file",
        cert.as_str(),
        "--tls-key-file",
        key.as_str(),
    ];
    if client_certificates {
        args.extend_from_slice(&["--tls-ca-cert-file", &ca, "--tls-auth-clients", "yes"]);
    }
    let server = Server::start_at(addr, &args);
    (server, pki, tls_port.parse().unwrap())
}

/// redis-cli over TLS to `server`'s TLS port, with extra options first.
fn cli_tls(server: &Server, port: u16, options: &[&str], command: &[&str]) -> (bool, String) {
    let port = port.to_string();
    let host = server.host();
    let mut args = vec!["--tls", "-h", host.as_str(), "-p", port.as_str()];
    args.extend_from_slice(options);
    args.extend_from_slice(command);
    let out = run_tool("redis-cli", &args, b"", TOOL_TIMEOUT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

#[test]
fn redis_cli_and_benchmark_talk_tls_and_the_plain_port_stays() {
    let (server, pki, tls_port) = start_tls(false);
    let ca = pki.file("ca.pem");

    let (ok, out) = cli_tls(
        &server,
        tls_port,
        &["--cacert", &ca],
        &["SET", "tls:k", "over tls"],
    );
    assert!(ok && out == "OK", "{out}");
    let (ok, out) = cli_tls(&server, tls_port, &["--cacert", &ca], &["GET", "tls:k"]);
    assert!(ok && out == "over tls", "{out}");
    // The same store through the plain port.
    let mut plain = server.client();
    let value: String = redis::cmd("GET").arg("tls:k").query(&mut plain).unwrap();
    assert_eq!(value, "over tls");

    // A pipelined benchmark over TLS: every request answered.
    let port = tls_port.to_string();
    let host = server.host();
    let out = run_tool(
        "redis-benchmark",
        &[
            "--tls", "--cacert", &ca, "-h", &host, "-p", &port, "-n", "20000", "-c", "8", "-P",
            "16", "-t", "set,get", "-q",
        ],
        b"",
        TOOL_TIMEOUT,
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("SET:") && report.contains("GET:"),
        "{report}"
    );
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut plain).unwrap();
    let processed: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_commands_processed");
    assert!(processed >= 40_000, "{processed} commands processed");

    // A client that speaks plain RESP to the TLS port gets no service, and
    // the node keeps serving everyone else.
    let mut raw = std::net::TcpStream::connect((server.addr().ip(), tls_port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut raw, b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut raw, &mut answer);
    assert!(!answer.starts_with(b"+PONG"), "{answer:?}");
    // And a TLS client that does not trust the CA is refused by redis-cli's
    // own verification (no CA given: the system store does not know ours).
    let (_, out) = cli_tls(&server, tls_port, &[], &["PING"]);
    assert!(!out.contains("PONG"), "{out}");
    let pong: String = redis::cmd("PING").query(&mut plain).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn client_certificates_are_required_when_asked_for() {
    let (server, pki, tls_port) = start_tls(true);
    let ca = pki.file("ca.pem");
    let (_, out) = cli_tls(&server, tls_port, &["--cacert", &ca], &["PING"]);
    assert!(!out.contains("PONG"), "without a client certificate: {out}");
    let (client_cert, client_key) = (pki.file("client.pem"), pki.file("client.key"));
    let (ok, out) = cli_tls(
        &server,
        tls_port,
        &[
            "--cacert",
            &ca,
            "--cert",
            &client_cert,
            "--key",
            &client_key,
        ],
        &["PING"],
    );
    assert!(ok && out == "PONG", "with a client certificate: {out}");
    let mut con = server.client();
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-auth-clients")
        .query(&mut con)
        .unwrap();
    assert_eq!(shown, ["tls-auth-clients", "yes"]);
}

#[test]
fn bad_tls_options_stop_the_server_with_the_option_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing: PathBuf = dir.path().join("missing.pem");
    let missing = path_text(&missing);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = path_text(&garbage);
    let pki = Pki::new("127.0.0.1");
    let (cert, key, client_key) = (
        pki.file("server.pem"),
        pki.file("server.key"),
        pki.file("client.key"),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--tls-port", "1"], "tls-cert-file"),
        (
            vec![
                "--tls-port",
                "1",
                "--tls-cert-file",
                &missing,
                "--tls-key-file",
                &key,
            ],
            "tls-cert-file",
        ),
        (
            vec![
                "--tls-port",
                "1",
                "--tls-cert-file",
                &garbage,
                "--tls-key-file",
                &key,
            ],
            "tls-cert-file",
        ),
        (
            vec![
                "--tls-port",
                "1",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &client_key,
            ],
            "tls-key-file",
        ),
        (
            vec![
                "--tls-port",
                "1",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-auth-clients",
                "yes",
            ],
            "tls-ca-cert-file",
        ),
        (
            vec![
                "--tls-port",
                "1",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-auth-clients",
                "sometimes",
            ],
            "tls-auth-clients",
        ),
    ];
    for (args, option) in cases {
        let addr = pick_address();
        let port = addr.port().to_string();
        let data = tempfile::tempdir().unwrap();
        let data_dir = path_text(data.path());
        let mut full = vec![
            "--bind",
            "127.0.0.1",
            "--port",
            port.as_str(),
            "--data-dir",
            data_dir.as_str(),
        ];
        full.extend_from_slice(&args);
        let out = compat_tests::run_to_exit(&full, compat_tests::EXIT_TIMEOUT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started: {stderr}");
        assert!(
            stderr.contains(&format!("'{option}'")),
            "{args:?}: expected a message naming '{option}': {stderr}"
        );
    }
}
