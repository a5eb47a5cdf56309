//! Bad input: malformed RESP, oversized requests, wrong arity, bad
//! arguments, limits. After each, the server must still serve others.

use std::io::Write;
use std::time::Duration;

use compat_tests::{assert_healthy, bulk, encode_command, q, qerr, qv, RawConn, Reply, Server};
use redis::Value;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

fn expect_protocol_error_and_close(raw: &mut RawConn, what: &str) {
    let reply = raw
        .read_reply()
        .unwrap_or_else(|e| panic!("{what}: no error reply before close: {e}"));
    let e = reply
        .error()
        .unwrap_or_else(|| panic!("{what}: expected an error reply, got {reply:?}"));
    assert!(
        e.starts_with("ERR Protocol error"),
        "{what}: error should start with 'ERR Protocol error', got {e:?}"
    );
    assert!(
        raw.closed_within(CLOSE_TIMEOUT),
        "{what}: connection not closed after a protocol error"
    );
}

#[test]
fn malformed_bulk_length() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    raw.send(b"*1\r\n$x\r\n").unwrap();
    expect_protocol_error_and_close(&mut raw, "$x");
    assert_healthy(&server);
}

#[test]
fn malformed_multibulk_length() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    raw.send(b"*abc\r\n").unwrap();
    expect_protocol_error_and_close(&mut raw, "*abc");
    assert_healthy(&server);

    // An array element that is not a bulk string.
    let mut raw = server.raw_conn();
    raw.send(b"*1\r\n:5\r\n").unwrap();
    expect_protocol_error_and_close(&mut raw, "*1 :5");
    assert_healthy(&server);
}

#[test]
fn bulk_length_beyond_proto_max_bulk_len() {
    let server = Server::start(&["--proto-max-bulk-len", "1048576"]);
    let mut other = server.client();
    let mut raw = server.raw_conn();
    raw.send(b"*2\r\n$3\r\nGET\r\n$999999999\r\n").unwrap();
    expect_protocol_error_and_close(&mut raw, "$999999999");
    // Existing and new clients are fine.
    assert_eq!(
        qv(&mut other, &["PING"]),
        Value::SimpleString("PONG".into())
    );
    assert_healthy(&server);
    // Just under the limit still works.
    let value = vec![b'x'; 1000];
    let () = redis::cmd("SET")
        .arg("k")
        .arg(&value)
        .query(&mut other)
        .unwrap();
    assert_eq!(qv(&mut other, &["STRLEN", "k"]), Value::Int(1000));
}

#[test]
fn huge_array_length() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    raw.send(b"*2147483648\r\n").unwrap();
    expect_protocol_error_and_close(&mut raw, "*2147483648");
    assert_healthy(&server);

    let mut raw = server.raw_conn();
    raw.send(b"*-5\r\n$4\r\nPING\r\n").unwrap();
    // Redis ignores a negative multibulk count; either way the server must
    // not die. Whatever the reply, the server stays healthy.
    let _ = raw.closed_within(Duration::from_millis(500));
    assert_healthy(&server);
}

#[test]
fn inline_commands() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    raw.send(b"PING\r\n").unwrap();
    assert_eq!(raw.read_reply().unwrap(), Reply::Simple("PONG".into()));
    raw.send(b"SET inl bar\r\n").unwrap();
    assert_eq!(raw.read_reply().unwrap(), Reply::Simple("OK".into()));
    raw.send(b"GET inl\r\n").unwrap();
    assert_eq!(
        raw.read_reply().unwrap(),
        Reply::Bulk(Some(b"bar".to_vec()))
    );
    // Bare LF line endings are accepted inline too (as in Redis).
    raw.send(b"EXISTS inl\n").unwrap();
    assert_eq!(raw.read_reply().unwrap(), Reply::Int(1));
    // Inline and RESP arrays mixed in one write.
    let mut bytes = b"PING\r\n".to_vec();
    bytes.extend(encode_command(&["ECHO", "hi"]));
    bytes.extend(b"PING\r\n");
    raw.send(&bytes).unwrap();
    assert_eq!(raw.read_reply().unwrap(), Reply::Simple("PONG".into()));
    assert_eq!(raw.read_reply().unwrap(), Reply::Bulk(Some(b"hi".to_vec())));
    assert_eq!(raw.read_reply().unwrap(), Reply::Simple("PONG".into()));
}

#[test]
fn command_split_across_writes() {
    let server = Server::start(&[]);
    let raw = server.raw();
    let mut conn = RawConn::new(raw.try_clone().unwrap());
    let bytes = encode_command(&["SET", "split", "value"]);
    let mut w = raw;
    for b in &bytes {
        w.write_all(&[*b]).unwrap();
        w.flush().unwrap();
    }
    assert_eq!(conn.read_reply().unwrap(), Reply::Simple("OK".into()));
    assert_eq!(
        conn.cmd(&["GET", "split"]),
        Reply::Bulk(Some(b"value".to_vec()))
    );
}

#[test]
fn wrong_arity() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let get = "ERR wrong number of arguments for 'get' command";
    assert_eq!(qerr(&mut c, &["GET"]), get);
    assert_eq!(qerr(&mut c, &["GET", "a", "b"]), get);
    assert_eq!(qerr(&mut c, &["get", "a", "b"]), get);
    assert_eq!(
        qerr(&mut c, &["SET", "k"]),
        "ERR wrong number of arguments for 'set' command"
    );
    assert_eq!(
        qerr(&mut c, &["DEL"]),
        "ERR wrong number of arguments for 'del' command"
    );
    assert_eq!(
        qerr(&mut c, &["EXPIRE", "k"]),
        "ERR wrong number of arguments for 'expire' command"
    );
    assert_eq!(qv(&mut c, &["PING"]), Value::SimpleString("PONG".into()));
    assert_healthy(&server);
}

#[test]
fn non_integer_arguments() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let not_int = "ERR value is not an integer or out of range";
    assert_eq!(qerr(&mut c, &["SET", "k", "v", "EX", "abc"]), not_int);
    assert_eq!(qerr(&mut c, &["SET", "k", "v", "PX", "1.5"]), not_int);
    assert_eq!(qv(&mut c, &["GET", "k"]), Value::Nil, "rejected SET stored");
    q::<()>(&mut c, &["SET", "k", "v"]);
    assert_eq!(qerr(&mut c, &["EXPIRE", "k", "abc"]), not_int);
    assert_eq!(qerr(&mut c, &["PEXPIRE", "k", "12x"]), not_int);
    assert_eq!(qerr(&mut c, &["EXPIREAT", "k", ""]), not_int);
    assert_eq!(qerr(&mut c, &["SETEX", "k2", "abc", "v"]), not_int);
    assert_eq!(qerr(&mut c, &["GETEX", "k", "EX", "abc"]), not_int);
    assert_eq!(qv(&mut c, &["TTL", "k"]), Value::Int(-1));
    assert_eq!(qv(&mut c, &["GET", "k2"]), Value::Nil);
    assert_healthy(&server);
}

#[test]
fn value_larger_than_max_value_bytes() {
    let server = Server::start(&["--max-value-bytes", "1024"]);
    let mut c = server.client();
    let too_large = "ERR value too large (max 1024 bytes)";
    let big = "x".repeat(1025);
    let fits = "y".repeat(1024);

    assert_eq!(qerr(&mut c, &["SET", "k", &big]), too_large);
    assert_eq!(qv(&mut c, &["GET", "k"]), Value::Nil);
    assert_eq!(qv(&mut c, &["EXISTS", "k"]), Value::Int(0));

    assert_eq!(qv(&mut c, &["SET", "k", &fits]), Value::Okay);
    assert_eq!(qv(&mut c, &["STRLEN", "k"]), Value::Int(1024));

    // Every write path checks the limit, and nothing is stored.
    assert_eq!(qerr(&mut c, &["APPEND", "k", "z"]), too_large);
    assert_eq!(qerr(&mut c, &["SETRANGE", "k", "1024", "z"]), too_large);
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk(&fits));
    assert_eq!(qerr(&mut c, &["MSET", "a", "1", "b", &big]), too_large);
    assert_eq!(qerr(&mut c, &["DPUT", "d", "", &big]), too_large);
    assert_eq!(qv(&mut c, &["GET", "d"]), Value::Nil);
    assert_eq!(qerr(&mut c, &["GETSET", "k", &big]), too_large);
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk(&fits));
    assert_healthy(&server);
}

#[test]
fn maxclients_rejects_extra_connection() {
    let server = Server::start(&["--maxclients", "3"]);
    // The harness's readiness probe may still count for a moment.
    let mut conns: Vec<RawConn> = (0..3).map(|_| admitted_conn(&server)).collect();
    let mut fourth = server.raw_conn();
    // The server speaks first: an error, then it closes the connection.
    let reply = fourth.read_reply().expect("error reply for the 4th client");
    assert_eq!(
        reply,
        Reply::Error("ERR max number of clients reached".into())
    );
    assert!(fourth.closed_within(CLOSE_TIMEOUT));
    // The first three are still served.
    for c in conns.iter_mut() {
        assert_eq!(c.cmd(&["PING"]), Reply::Simple("PONG".into()));
    }
    // Once one leaves, a new client gets in (the server may take a moment
    // to notice the close).
    drop(conns.pop());
    let mut again = admitted_conn(&server);
    assert_eq!(again.cmd(&["SET", "k", "v"]), Reply::Simple("OK".into()));
}

/// A connection that the server accepted (answers PING), retrying for a
/// while as long as the server says it is full.
fn admitted_conn(server: &Server) -> RawConn {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = server.raw_conn();
        c.send(&encode_command(&["PING"])).unwrap();
        match c.read_reply() {
            Ok(Reply::Simple(s)) if s == "PONG" => return c,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "connection not admitted: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[test]
fn unterminated_request_does_not_block_others() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    // Half a command: the server must wait for the rest without blocking
    // anybody else.
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva").unwrap();
    assert_healthy(&server);
    raw.send(b"lue\r\n").unwrap();
    assert_eq!(raw.read_reply().unwrap(), Reply::Simple("OK".into()));
}

#[test]
fn key_larger_than_max_key_bytes() {
    let server = Server::start(&["--max-key-bytes", "100"]);
    let mut c = server.client();
    let long_key = "k".repeat(101);
    let e = qerr(&mut c, &["SET", &long_key, "v"]);
    assert!(e.starts_with("ERR"), "got {e:?}");
    assert_eq!(
        qv(&mut c, &["DBSIZE"]),
        Value::Int(0),
        "an oversized key was stored"
    );
    let ok_key = "k".repeat(100);
    assert_eq!(qv(&mut c, &["SET", &ok_key, "v"]), Value::Okay);
    assert_eq!(qv(&mut c, &["GET", &ok_key]), bulk("v"));
    assert_healthy(&server);
}

#[test]
fn inline_quoting_and_empty_requests() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    raw.send(b"SET q \"a b\\x41\"\r\n").unwrap();
    assert_eq!(raw.read_reply().unwrap(), Reply::Simple("OK".into()));
    raw.send(b"GET 'q'\r\n").unwrap();
    assert_eq!(
        raw.read_reply().unwrap(),
        Reply::Bulk(Some(b"a bA".to_vec()))
    );
    // Empty lines and empty arrays get no reply at all.
    raw.send(b"\r\n*0\r\nPING\r\n").unwrap();
    assert_eq!(raw.read_reply().unwrap(), Reply::Simple("PONG".into()));

    let mut raw = server.raw_conn();
    raw.send(b"SET k \"unbalanced\r\n").unwrap();
    expect_protocol_error_and_close(&mut raw, "unbalanced quotes");
    assert_healthy(&server);
}

#[test]
fn too_big_inline_request() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    // 128 KiB with no newline: more than Redis's 64 KiB inline limit.
    let junk = vec![b'a'; 128 * 1024];
    // The server may close before all of it is written; ignore that.
    let _ = raw.send(&junk);
    expect_protocol_error_and_close(&mut raw, "huge inline request");
    assert_healthy(&server);
}

#[test]
fn client_disconnecting_mid_reply() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let big = vec![b'z'; 512 * 1024];
    let () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    for _ in 0..20 {
        let mut raw = server.raw_conn();
        let mut bytes = Vec::new();
        for _ in 0..20 {
            bytes.extend(encode_command(&["GET", "big"]));
        }
        raw.send(&bytes).unwrap();
        drop(raw);
    }
    assert_healthy(&server);
    let back: Vec<u8> = q(&mut c, &["GET", "big"]);
    assert!(back == big);
}
