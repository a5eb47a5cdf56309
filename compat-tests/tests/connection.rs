//! Connection and server commands: PING, HELLO, AUTH, CLIENT, COMMAND,
//! CONFIG, INFO, QUIT, RESET.

use std::time::Duration;

use compat_tests::{assert_healthy, bulk, err_line, q, qerr, qv, status, Reply, Server};
use redis::Value;

/// The keys of a HELLO reply (RESP2 flat array or RESP3 map).
fn hello_fields(v: &Value) -> Vec<(String, Value)> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs.clone(),
        Value::Array(items) => {
            assert!(
                items.chunks_exact(2).remainder().is_empty(),
                "odd HELLO array: {v:?}"
            );
            items
                .chunks(2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect()
        }
        other => panic!("HELLO reply is neither map nor array: {other:?}"),
    };
    pairs
        .into_iter()
        .map(|(k, v)| {
            let k: String = redis::from_redis_value(k).expect("HELLO key");
            (k, v)
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> &'a Value {
    &fields
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("HELLO reply lacks {name:?}: {fields:?}"))
        .1
}

fn check_hello(v: &Value, proto: i64) {
    let fields = hello_fields(v);
    for name in [
        "server", "version", "proto", "id", "mode", "role", "modules",
    ] {
        field(&fields, name);
    }
    assert_eq!(field(&fields, "proto"), &Value::Int(proto));
    assert!(matches!(field(&fields, "id"), Value::Int(id) if *id > 0));
    assert!(matches!(
        field(&fields, "modules"),
        Value::Array(_) | Value::Set(_)
    ));
}

fn reply_map_keys(r: &Reply) -> Vec<String> {
    let Reply::Map(pairs) = r else {
        panic!("expected a RESP3 map, got {r:?}");
    };
    pairs
        .iter()
        .map(|(k, _)| match k {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Simple(s) => s.clone(),
            other => panic!("map key {other:?}"),
        })
        .collect()
}

#[test]
fn ping_and_echo() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["PING"]), status("PONG"));
    assert_eq!(qv(&mut c, &["PING", "hello"]), bulk("hello"));
    assert_eq!(qv(&mut c, &["ECHO", "hello world"]), bulk("hello world"));
    assert_eq!(
        qerr(&mut c, &["ECHO"]),
        "ERR wrong number of arguments for 'echo' command"
    );

    let mut c3 = server.client_resp3();
    assert_eq!(qv(&mut c3, &["PING"]), status("PONG"));
    assert_eq!(qv(&mut c3, &["ECHO", "x"]), bulk("x"));
}

#[test]
fn hello_2_and_3() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let v = qv(&mut c, &["HELLO", "2"]);
    check_hello(&v, 2);
    let fields = hello_fields(&v);
    assert_eq!(
        field(&fields, "role"),
        &bulk("master"),
        "role should be master"
    );

    // HELLO 3 on a raw socket switches the connection to RESP3.
    let mut raw = server.raw_conn();
    let r = raw.cmd(&["HELLO", "3"]);
    let keys = reply_map_keys(&r);
    for k in [
        "server", "version", "proto", "id", "mode", "role", "modules",
    ] {
        assert!(keys.contains(&k.to_string()), "HELLO 3 lacks {k}: {keys:?}");
    }
    let Reply::Map(pairs) = &r else {
        unreachable!()
    };
    let proto = pairs
        .iter()
        .find(|(k, _)| *k == Reply::Bulk(Some(b"proto".to_vec())))
        .map(|(_, v)| v.clone());
    assert_eq!(proto, Some(Reply::Int(3)));
    // RESP3 null for a missing key, and HELLO 2 switches back.
    assert_eq!(raw.cmd(&["GET", "missing"]), Reply::Null);
    assert!(matches!(raw.cmd(&["HELLO", "2"]), Reply::Array(Some(_))));
    assert_eq!(raw.cmd(&["GET", "missing"]), Reply::Bulk(None));

    // The redis crate in RESP3 mode already sent HELLO 3.
    let mut c3 = server.client_resp3();
    let v = qv(&mut c3, &["HELLO", "3"]);
    assert!(matches!(v, Value::Map(_)), "HELLO 3 must be a map: {v:?}");
    check_hello(&v, 3);
    // HELLO without arguments reports the current protocol.
    check_hello(&qv(&mut c3, &["HELLO"]), 3);
}

#[test]
fn hello_unsupported_protocol() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let e = qerr(&mut c, &["HELLO", "4"]);
    assert!(e.starts_with("NOPROTO"), "HELLO 4 gave {e:?}");
    assert_eq!(qv(&mut c, &["PING"]), status("PONG"));
    let e = qerr(&mut c, &["HELLO", "abc"]);
    assert!(
        e.starts_with("ERR") || e.starts_with("NOPROTO"),
        "HELLO abc gave {e:?}"
    );
    assert_eq!(qv(&mut c, &["PING"]), status("PONG"));
}

#[test]
fn hello_3_with_auth_and_setname() {
    let server = Server::start(&["--requirepass", "s3cret"]);
    let mut raw = server.raw_conn();
    let r = raw.cmd(&["HELLO", "3", "AUTH", "default", "wrong"]);
    let e = r
        .error()
        .unwrap_or_else(|| panic!("bad password accepted: {r:?}"));
    assert!(e.starts_with("WRONGPASS"), "got {e:?}");
    let r = raw.cmd(&["GET", "k"]);
    assert_eq!(r, Reply::Error("NOAUTH Authentication required.".into()));

    let r = raw.cmd(&[
        "HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "myconn",
    ]);
    let keys = reply_map_keys(&r);
    assert!(keys.contains(&"proto".to_string()));
    assert_eq!(raw.cmd(&["GET", "k"]), Reply::Null);
    assert_eq!(
        raw.cmd(&["CLIENT", "GETNAME"]),
        Reply::Bulk(Some(b"myconn".to_vec()))
    );

    // The redis crate authenticates with HELLO 3 AUTH in RESP3 mode.
    let url = format!("redis://:s3cret@{}/?protocol=resp3", server.addr());
    let mut c = server.client_url(&url);
    assert_eq!(qv(&mut c, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("v"));
}

#[test]
fn auth_with_requirepass() {
    let server = Server::start(&["--requirepass", "s3cret"]);
    let mut raw = server.raw_conn();
    assert_eq!(
        raw.cmd(&["GET", "k"]),
        Reply::Error("NOAUTH Authentication required.".into())
    );
    assert_eq!(
        raw.cmd(&["SET", "k", "v"]),
        Reply::Error("NOAUTH Authentication required.".into())
    );
    let r = raw.cmd(&["AUTH", "wrong"]);
    let e = r
        .error()
        .unwrap_or_else(|| panic!("bad password accepted: {r:?}"));
    assert!(e.starts_with("WRONGPASS"), "got {e:?}");
    let r = raw.cmd(&["AUTH", "default", "wrong"]);
    assert!(
        r.error().is_some_and(|e| e.starts_with("WRONGPASS")),
        "{r:?}"
    );
    assert_eq!(raw.cmd(&["AUTH", "s3cret"]), Reply::Simple("OK".into()));
    assert_eq!(raw.cmd(&["GET", "k"]), Reply::Bulk(None));
    assert_eq!(raw.cmd(&["SET", "k", "v"]), Reply::Simple("OK".into()));

    // A second connection authenticates with the user name form.
    let mut raw2 = server.raw_conn();
    assert_eq!(
        raw2.cmd(&["AUTH", "default", "s3cret"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(raw2.cmd(&["GET", "k"]), Reply::Bulk(Some(b"v".to_vec())));
    // RESET logs the connection out again.
    assert_eq!(raw2.cmd(&["RESET"]), Reply::Simple("RESET".into()));
    assert_eq!(
        raw2.cmd(&["GET", "k"]),
        Reply::Error("NOAUTH Authentication required.".into())
    );

    // The redis crate with a password in the URL (RESP2: AUTH).
    let url = format!("redis://:s3cret@{}/", server.addr());
    let mut c = server.client_url(&url);
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("v"));
    let bad = format!("redis://:nope@{}/", server.addr());
    assert!(
        server.try_client_url(&bad).is_err(),
        "wrong password accepted"
    );
}

#[test]
fn auth_without_password_configured_is_an_error() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let e = qerr(&mut c, &["AUTH", "whatever"]);
    assert!(e.starts_with("ERR"), "got {e:?}");
    assert_eq!(qv(&mut c, &["PING"]), status("PONG"));
}

#[test]
fn select_only_db0() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["SELECT", "0"]), Value::Okay);
    let e = qerr(&mut c, &["SELECT", "1"]);
    assert!(e.starts_with("ERR"), "got {e:?}");
    assert_eq!(qv(&mut c, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("v"));
}

#[test]
fn client_subcommands() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut other = server.client();
    let id: i64 = q(&mut c, &["CLIENT", "ID"]);
    let other_id: i64 = q(&mut other, &["CLIENT", "ID"]);
    assert!(id > 0 && other_id > 0 && id != other_id);

    assert_eq!(qv(&mut c, &["CLIENT", "GETNAME"]), Value::Nil);
    assert_eq!(qv(&mut c, &["CLIENT", "SETNAME", "alice"]), Value::Okay);
    assert_eq!(qv(&mut c, &["CLIENT", "GETNAME"]), bulk("alice"));
    let e = qerr(&mut c, &["CLIENT", "SETNAME", "has space"]);
    assert!(e.starts_with("ERR"), "got {e:?}");
    assert_eq!(qv(&mut c, &["CLIENT", "GETNAME"]), bulk("alice"));

    assert_eq!(
        qv(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "compatlib"]),
        Value::Okay
    );
    assert_eq!(
        qv(&mut c, &["CLIENT", "SETINFO", "LIB-VER", "9.9.9"]),
        Value::Okay
    );

    let info: String = q(&mut c, &["CLIENT", "INFO"]);
    assert!(info.contains(&format!("id={id} ")), "CLIENT INFO: {info}");
    assert!(info.contains("name=alice"), "CLIENT INFO: {info}");
    assert!(info.contains("lib-name=compatlib"), "CLIENT INFO: {info}");
    assert!(info.contains("lib-ver=9.9.9"), "CLIENT INFO: {info}");
    assert!(info.contains("addr=127.0.0.1:") || info.contains("addr="));

    let list: String = q(&mut c, &["CLIENT", "LIST"]);
    let lines: Vec<&str> = list.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 2, "CLIENT LIST: {list}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("id={id} ")) && l.contains("name=alice")),
        "CLIENT LIST lacks this client: {list}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("id={other_id} "))),
        "CLIENT LIST lacks the other client: {list}"
    );
}

#[test]
fn client_no_evict_keeps_connection() {
    let server = Server::start(&[]);
    let mut c = server.client();
    // Not meaningful for this server: OK or an -ERR, but never a dropped
    // connection.
    match qv(&mut c, &["CLIENT", "NO-EVICT", "ON"]) {
        Value::Okay => {}
        Value::ServerError(e) => {
            assert_eq!(e.code(), "ERR", "CLIENT NO-EVICT gave {e:?}");
        }
        other => panic!("CLIENT NO-EVICT gave {other:?}"),
    }
    let e = qerr(&mut c, &["CLIENT", "NO-SUCH-SUBCOMMAND"]);
    assert!(e.starts_with("ERR"), "got {e:?}");
    assert_eq!(qv(&mut c, &["PING"]), status("PONG"));
}

#[test]
fn command_introspection() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let count: i64 = q(&mut c, &["COMMAND", "COUNT"]);
    assert!(count >= 20, "COMMAND COUNT {count}");

    let all = qv(&mut c, &["COMMAND"]);
    let Value::Array(all) = all else {
        panic!("COMMAND must be an array")
    };
    assert_eq!(all.len() as i64, count, "COMMAND length vs COMMAND COUNT");

    let info = qv(&mut c, &["COMMAND", "INFO", "get", "nosuchcommand"]);
    let Value::Array(items) = info else {
        panic!("COMMAND INFO must be an array: {info:?}")
    };
    assert_eq!(items.len(), 2);
    assert_eq!(items[1], Value::Nil, "unknown command in COMMAND INFO");
    let Value::Array(get) = &items[0] else {
        panic!("COMMAND INFO get: {:?}", items[0])
    };
    assert_eq!(get[0], bulk("get"));
    assert_eq!(get[1], Value::Int(2), "GET arity");

    let info = qv(&mut c, &["COMMAND", "INFO", "set"]);
    let Value::Array(items) = info else { panic!() };
    let Value::Array(set) = &items[0] else {
        panic!()
    };
    assert_eq!(set[0], bulk("set"));
    assert_eq!(set[1], Value::Int(-3), "SET arity");

    let docs = qv(&mut c, &["COMMAND", "DOCS", "get"]);
    let Value::Array(docs) = docs else {
        panic!("COMMAND DOCS (RESP2) must be a flat array: {docs:?}")
    };
    assert_eq!(docs.len(), 2, "COMMAND DOCS get: {docs:?}");
    assert_eq!(docs[0], bulk("get"));
    assert!(matches!(&docs[1], Value::Array(d) if !d.is_empty()));

    let list: Vec<String> = q(&mut c, &["COMMAND", "LIST"]);
    for name in ["get", "set", "del", "ping", "dget", "dput"] {
        assert!(
            list.iter().any(|n| n == name),
            "COMMAND LIST lacks {name}: {list:?}"
        );
    }

    let mut c3 = server.client_resp3();
    let docs = qv(&mut c3, &["COMMAND", "DOCS", "get"]);
    assert!(
        matches!(&docs, Value::Map(m) if m.len() == 1),
        "COMMAND DOCS (RESP3) must be a map: {docs:?}"
    );
}

#[test]
fn config_get_and_set() {
    let server = Server::start(&["--maxclients", "77"]);
    let mut c = server.client();
    assert_eq!(
        qv(&mut c, &["CONFIG", "GET", "maxclients"]),
        Value::Array(vec![bulk("maxclients"), bulk("77")])
    );
    let v: Vec<String> = q(&mut c, &["CONFIG", "GET", "*max*"]);
    assert!(
        v.chunks_exact(2).remainder().is_empty() && !v.is_empty(),
        "CONFIG GET *max*: {v:?}"
    );
    let pairs: Vec<(&String, &String)> = v.chunks(2).map(|p| (&p[0], &p[1])).collect();
    assert!(pairs.iter().all(|(k, _)| k.contains("max")), "{pairs:?}");
    assert!(
        pairs
            .iter()
            .any(|(k, v)| k.as_str() == "maxclients" && v.as_str() == "77"),
        "{pairs:?}"
    );
    assert_eq!(
        qv(&mut c, &["CONFIG", "GET", "no-such-option"]),
        Value::Array(vec![])
    );

    assert_eq!(
        qv(&mut c, &["CONFIG", "SET", "maxclients", "55"]),
        Value::Okay
    );
    assert_eq!(
        qv(&mut c, &["CONFIG", "GET", "maxclients"]),
        Value::Array(vec![bulk("maxclients"), bulk("55")])
    );
    let e = qerr(&mut c, &["CONFIG", "SET", "no-such-option", "1"]);
    assert!(e.starts_with("ERR"), "got {e:?}");

    // RESP3: CONFIG GET is a map.
    let mut c3 = server.client_resp3();
    assert_eq!(
        qv(&mut c3, &["CONFIG", "GET", "maxclients"]),
        Value::Map(vec![(bulk("maxclients"), bulk("55"))])
    );
}

#[test]
fn info_sections() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"]);
    let info: String = q(&mut c, &["INFO"]);
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Keyspace",
        "# Dynamo",
    ] {
        assert!(
            info.lines().any(|l| l.trim_end() == section),
            "INFO lacks {section}:\n{info}"
        );
    }
    assert!(info.contains("\r\n"), "INFO lines must end in CRLF");
    assert!(info.contains("connected_clients:"), "{info}");

    let ks: String = q(&mut c, &["INFO", "keyspace"]);
    assert!(ks.contains("# Keyspace"), "{ks}");
    assert!(ks.contains("db0:keys=3"), "INFO keyspace: {ks}");
    assert!(
        !ks.contains("# Server"),
        "INFO keyspace shows other sections"
    );

    let server_section: String = q(&mut c, &["INFO", "server"]);
    assert!(server_section.contains("# Server"));
    assert!(server_section.contains(&format!("tcp_port:{}", server.port())));

    let dynamo: String = q(&mut c, &["INFO", "dynamo"]);
    assert!(dynamo.contains("# Dynamo"), "{dynamo}");

    // RESP3: INFO is a verbatim string in Redis; accept bulk too.
    let mut c3 = server.client_resp3();
    let v = qv(&mut c3, &["INFO", "keyspace"]);
    let text: String = redis::from_redis_value(v).expect("INFO as text");
    assert!(text.contains("db0:keys=3"), "{text}");
}

#[test]
fn unknown_command_keeps_connection() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let e = qerr(&mut c, &["FOOBAR", "a", "b"]);
    assert!(e.starts_with("ERR unknown command"), "got {e:?}");
    assert!(e.to_lowercase().contains("foobar"), "got {e:?}");
    assert_eq!(qv(&mut c, &["PING"]), status("PONG"));

    // Unsupported data types: a clear -ERR naming the command.
    for name in ["LPUSH", "HSET", "SADD", "ZADD"] {
        let e = qerr(&mut c, &[name, "k", "1", "x"]);
        assert!(e.starts_with("ERR"), "{name} gave {e:?}");
        assert!(
            e.to_lowercase().contains(&name.to_lowercase()),
            "{name}: error does not name the command: {e:?}"
        );
        assert_eq!(qv(&mut c, &["PING"]), status("PONG"));
    }
    assert_eq!(qv(&mut c, &["SET", "k", "v"]), Value::Okay);
}

#[test]
fn quit_closes_connection() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    assert_eq!(raw.cmd(&["QUIT"]), Reply::Simple("OK".into()));
    assert!(raw.closed_within(Duration::from_secs(10)));
    assert_healthy(&server);
}

#[test]
fn reset_restores_defaults() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    assert_eq!(
        raw.cmd(&["CLIENT", "SETNAME", "named"]),
        Reply::Simple("OK".into())
    );
    assert!(matches!(raw.cmd(&["HELLO", "3"]), Reply::Map(_)));
    assert_eq!(raw.cmd(&["MULTI"]), Reply::Simple("OK".into()));
    assert_eq!(raw.cmd(&["RESET"]), Reply::Simple("RESET".into()));
    // Not in MULTI any more, back to RESP2, no name.
    assert_eq!(raw.cmd(&["CLIENT", "GETNAME"]), Reply::Bulk(None));
    assert_eq!(raw.cmd(&["GET", "missing"]), Reply::Bulk(None));
    assert_eq!(raw.cmd(&["SET", "k", "v"]), Reply::Simple("OK".into()));
}

#[test]
fn redis_crate_errors_are_typed() {
    // The redis crate must be able to parse our error lines into code and
    // detail (a sanity check of err_line itself).
    let server = Server::start(&[]);
    let mut c = server.client();
    let err = redis::cmd("GET").query::<Value>(&mut c).unwrap_err();
    assert_eq!(
        err_line(&err),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
    );
}

#[test]
fn exact_error_texts() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        qerr(&mut c, &["FOOBAR", "a", "b"]),
        "ERR unknown command 'FOOBAR', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        qerr(&mut c, &["PING", "a", "b"]),
        "ERR wrong number of arguments for 'ping' command"
    );
    assert_eq!(
        qerr(&mut c, &["SELECT", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(qv(&mut c, &["PING"]), status("PONG"));
}

#[test]
fn hello_setname_without_auth() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    assert!(matches!(
        raw.cmd(&["HELLO", "3", "SETNAME", "n1"]),
        Reply::Map(_)
    ));
    assert_eq!(
        raw.cmd(&["CLIENT", "GETNAME"]),
        Reply::Bulk(Some(b"n1".to_vec()))
    );
    // RESP3 nulls inside arrays.
    assert_eq!(raw.cmd(&["SET", "a", "1"]), Reply::Simple("OK".into()));
    assert_eq!(
        raw.cmd(&["MGET", "a", "missing"]),
        Reply::Array(Some(vec![Reply::Bulk(Some(b"1".to_vec())), Reply::Null]))
    );
}

#[test]
fn idle_timeout_closes_connections() {
    let server = Server::start(&["--timeout", "1"]);
    let mut raw = server.raw_conn();
    assert_eq!(raw.cmd(&["PING"]), Reply::Simple("PONG".into()));
    assert!(
        raw.closed_within(Duration::from_secs(15)),
        "idle connection not closed with --timeout 1"
    );
    assert_healthy(&server);
}

#[test]
fn info_stats_count_commands() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let field = |c: &mut redis::Connection, name: &str| -> i64 {
        let info: String = q(c, &["INFO", "stats"]);
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("INFO stats lacks {name}:\n{info}"))
            .trim()
            .parse()
            .unwrap()
    };
    let before = field(&mut c, "total_commands_processed");
    for _ in 0..10 {
        q::<()>(&mut c, &["PING"]);
    }
    let after = field(&mut c, "total_commands_processed");
    assert!(
        after >= before + 10,
        "total_commands_processed {before} -> {after}"
    );

    q::<()>(&mut c, &["SET", "k", "v"]);
    let hits = field(&mut c, "keyspace_hits");
    let misses = field(&mut c, "keyspace_misses");
    q::<()>(&mut c, &["GET", "k"]);
    q::<()>(&mut c, &["GET", "missing"]);
    assert_eq!(field(&mut c, "keyspace_hits"), hits + 1);
    assert_eq!(field(&mut c, "keyspace_misses"), misses + 1);
}

#[test]
fn auth_default_user_without_password() {
    // Without requirepass the default user is "nopass": Redis accepts
    // `AUTH default <anything>` (and rejects the one-argument form).
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["AUTH", "default", "anything"]), Value::Okay);
    assert_eq!(qv(&mut c, &["PING"]), status("PONG"));
}
