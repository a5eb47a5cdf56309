//! Bad input at the front door: huge declared lengths that never arrive,
//! slowloris clients, 10k connections, a pipeline of a million commands and
//! binary garbage. The node stays up, its memory stays bounded (measured
//! from /proc), and a well-behaved client keeps being served.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use compat_tests::{encode_command, q, Server};

/// Resident memory of a process in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// The slowest of a few PINGs by a fresh well-behaved client.
fn ping_latency(server: &Server) -> Duration {
    let mut con = server.client();
    (0..5)
        .map(|_| {
            let started = Instant::now();
            let pong: String = q(&mut con, &["PING"]);
            assert_eq!(pong, "PONG");
            started.elapsed()
        })
        .max()
        .unwrap()
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[test]
fn stalled_huge_lengths_slowloris_and_garbage_leave_the_node_serving() {
    let server = Server::start(&[]);
    let before = rss_mib(server.pid());
    // 200 clients each declare a 500 MB value (under proto-max-bulk-len)
    // and then send 10 bytes of it and stall.
    let mut stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$524288000\r\n0123456789")
                .unwrap();
            s
        })
        .collect();
    // 300 slowloris clients trickle a valid command a byte at a time.
    let command = encode_command(&["SET", "slow", "loris"]);
    let mut slow: Vec<TcpStream> = (0..300).map(|_| connect(&server)).collect();
    for byte in &command[..command.len() - 1] {
        for s in &mut slow {
            s.write_all(&[*byte]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Binary garbage on 50 more: each is answered with a protocol error
    // and closed.
    for i in 0..50u32 {
        let mut s = connect(&server);
        let garbage: Vec<u8> = (0..4096u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        let _ = s.write_all(b"*");
        let _ = s.write_all(&garbage);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.contains("ERR") || answer.is_empty(),
            "garbage answered {text:?}"
        );
    }
    let during = rss_mib(server.pid());
    let latency = ping_latency(&server);
    eprintln!(
        "front door: RSS {before:.1} MiB before, {during:.1} MiB with 200 stalled 500 MB bulks + 300 slowloris + garbage; PING {latency:?}"
    );
    assert!(
        during - before < 64.0,
        "memory grew {:.1} MiB",
        during - before
    );
    assert!(
        latency < Duration::from_millis(200),
        "PING took {latency:?}"
    );
    // The slowloris clients finish their command and get their answer.
    for s in &mut slow {
        s.write_all(&command[command.len() - 1..]).unwrap();
    }
    for s in &mut slow {
        let mut reply = [0u8; 5];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"+OK\r\n");
    }
    drop(stalled.drain(..));
    assert_eq!(ping_latency(&server).as_secs(), 0);
}

#[test]
fn a_million_pipelined_commands_are_answered_with_bounded_memory() {
    let server = Server::start(&[]);
    let before = rss_mib(server.pid());
    let mut stream = connect(&server);
    let total = 1_000_000usize;
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk: Vec<u8> = (0..1000)
                .flat_map(|i| encode_command(&["SET", &format!("p{i}"), "v"]))
                .collect();
            for _ in 0..total / 1000 {
                stream.write_all(&chunk).unwrap();
            }
        })
    };
    // Read slowly at first: the server must stop reading rather than
    // buffer a million replies.
    std::thread::sleep(Duration::from_secs(2));
    let peak_unread = rss_mib(server.pid());
    let mut replies = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while replies < total {
        let n = stream.read(&mut buf).expect("reading replies");
        assert!(n > 0, "closed after {replies} replies");
        replies += buf[..n].iter().filter(|b| **b == b'\n').count();
    }
    writer.join().unwrap();
    let after = rss_mib(server.pid());
    eprintln!(
        "pipeline of {total}: RSS {before:.1} MiB before, {peak_unread:.1} MiB while the client did not read, {after:.1} MiB after"
    );
    assert_eq!(replies, total);
    assert!(
        peak_unread - before < 64.0,
        "an unread pipeline grew memory by {:.1} MiB",
        peak_unread - before
    );
    assert!(ping_latency(&server) < Duration::from_millis(200));
}

/// Raises this process's open-file soft limit to its hard limit (with the
/// util-linux `prlimit` command: no libc binding needed) and returns it.
fn raise_fd_limit() -> u64 {
    let pid = std::process::id().to_string();
    let hard = Command::new("prlimit")
        .args([
            "--pid",
            &pid,
            "--nofile",
            "--raw",
            "--noheadings",
            "--output=HARD",
        ])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(1024);
    let _ = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
        .status();
    Command::new("prlimit")
        .args([
            "--pid",
            &pid,
            "--nofile",
            "--raw",
            "--noheadings",
            "--output=SOFT",
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(1024)
}

#[test]
fn ten_thousand_connections_fit_in_bounded_memory() {
    let limit = raise_fd_limit();
    // The server inherits the raised limit from this process.
    let server = Server::start(&["--maxclients", "10100"]);
    let wanted = 10_000usize.min(limit.saturating_sub(500) as usize);
    assert!(
        wanted >= 1000,
        "open-file limit {limit} is too low to test many connections"
    );
    let before = rss_mib(server.pid());
    let mut open = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        let mut s = connect(&server);
        s.write_all(b"PING\r\n").unwrap();
        open.push(s);
    }
    let mut pong = [0u8; 7];
    for s in &mut open {
        s.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"+PONG\r\n");
    }
    let during = rss_mib(server.pid());
    let clients: String = q(&mut server.client(), &["INFO", "clients"]);
    let per_connection_kib = (during - before) * 1024.0 / wanted as f64;
    eprintln!(
        "{wanted} connections: RSS {before:.1} -> {during:.1} MiB ({per_connection_kib:.1} KiB each)"
    );
    assert!(
        clients.contains(&format!("connected_clients:{}", wanted + 1)),
        "{clients}"
    );
    assert!(
        per_connection_kib < 32.0,
        "{per_connection_kib:.1} KiB per idle connection"
    );
    assert!(ping_latency(&server) < Duration::from_millis(200));
}
