//! MULTI/EXEC/DISCARD and pipelining.

use compat_tests::{bulk, q, qerr, qv, status, Reply, Server};
use redis::Value;

#[test]
fn multi_exec_returns_results_in_order() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(qv(&mut c, &["SET", "a", "1"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["INCR", "a"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["GET", "a"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["GET", "missing"]), status("QUEUED"));
    assert_eq!(
        qv(&mut c, &["EXEC"]),
        Value::Array(vec![Value::Okay, Value::Int(2), bulk("2"), Value::Nil])
    );
    assert_eq!(qv(&mut c, &["GET", "a"]), bulk("2"));
}

#[test]
fn commands_are_not_run_before_exec() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut other = server.client();
    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(qv(&mut c, &["SET", "k", "v"]), status("QUEUED"));
    assert_eq!(qv(&mut other, &["GET", "k"]), Value::Nil);
    assert_eq!(qv(&mut c, &["EXEC"]), Value::Array(vec![Value::Okay]));
    assert_eq!(qv(&mut other, &["GET", "k"]), bulk("v"));
}

#[test]
fn discard_drops_queued_commands() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(qv(&mut c, &["SET", "b", "1"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["DISCARD"]), Value::Okay);
    assert_eq!(qv(&mut c, &["GET", "b"]), Value::Nil);
    assert_eq!(qerr(&mut c, &["EXEC"]), "ERR EXEC without MULTI");
}

#[test]
fn transaction_errors() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qerr(&mut c, &["EXEC"]), "ERR EXEC without MULTI");
    assert_eq!(qerr(&mut c, &["DISCARD"]), "ERR DISCARD without MULTI");

    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(
        qerr(&mut c, &["MULTI"]),
        "ERR MULTI calls can not be nested"
    );
    assert_eq!(qv(&mut c, &["DISCARD"]), Value::Okay);

    // A command rejected while queueing aborts the whole transaction.
    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(qv(&mut c, &["SET", "x", "1"]), status("QUEUED"));
    assert_eq!(
        qerr(&mut c, &["SET", "onlykey"]),
        "ERR wrong number of arguments for 'set' command"
    );
    assert_eq!(
        qerr(&mut c, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(qv(&mut c, &["GET", "x"]), Value::Nil);

    // A command failing at run time fails alone.
    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(qv(&mut c, &["SET", "s", "abc"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["INCR", "s"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["SET", "t", "1"]), status("QUEUED"));
    let Value::Array(results) = qv(&mut c, &["EXEC"]) else {
        panic!("EXEC must return an array")
    };
    assert_eq!(results.len(), 3);
    assert_eq!(results[0], Value::Okay);
    match &results[1] {
        Value::ServerError(e) => assert_eq!(
            (e.code(), e.details()),
            ("ERR", Some("value is not an integer or out of range"))
        ),
        other => panic!("INCR on a string inside EXEC gave {other:?}"),
    }
    assert_eq!(results[2], Value::Okay);
    assert_eq!(qv(&mut c, &["GET", "t"]), bulk("1"));
}

#[test]
fn redis_crate_atomic_pipeline() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let (n, v): (i64, String) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("x")
        .arg(41)
        .ignore()
        .cmd("INCR")
        .arg("x")
        .cmd("GET")
        .arg("x")
        .query(&mut c)
        .expect("atomic pipeline");
    assert_eq!((n, v.as_str()), (42, "42"));

    let mut c3 = server.client_resp3();
    let (a, b): (Option<String>, i64) = redis::pipe()
        .atomic()
        .cmd("GET")
        .arg("x")
        .cmd("DEL")
        .arg("x")
        .query(&mut c3)
        .expect("atomic pipeline over RESP3");
    assert_eq!((a.as_deref(), b), (Some("42"), 1));
}

#[test]
fn pipeline_of_1000_commands_in_order() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("p:{i}")).arg(format!("v{i}"));
        pipe.cmd("GET").arg(format!("p:{i}"));
    }
    let replies: Vec<Value> = pipe.query(&mut c).expect("pipeline");
    assert_eq!(replies.len(), 1000);
    for i in 0..500 {
        assert_eq!(replies[2 * i], Value::Okay, "reply {}", 2 * i);
        assert_eq!(
            replies[2 * i + 1],
            bulk(format!("v{i}")),
            "reply {}",
            2 * i + 1
        );
    }
    let n: i64 = q(&mut c, &["DBSIZE"]);
    assert_eq!(n, 500);
}

#[test]
fn raw_pipeline_in_one_write() {
    let server = Server::start(&[]);
    let mut raw = server.raw_conn();
    let mut bytes = Vec::new();
    for i in 0..1000 {
        bytes.extend(compat_tests::encode_command(&["ECHO", &i.to_string()]));
    }
    raw.send(&bytes).unwrap();
    for i in 0..1000 {
        assert_eq!(
            raw.read_reply().unwrap(),
            Reply::Bulk(Some(i.to_string().into_bytes()))
        );
    }
}

#[test]
fn watch_aborts_exec_after_concurrent_change() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut other = server.client();
    q::<()>(&mut c, &["SET", "w", "1"]);
    assert_eq!(qv(&mut c, &["WATCH", "w"]), Value::Okay);
    q::<()>(&mut other, &["SET", "w", "2"]);
    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(qv(&mut c, &["SET", "w", "3"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["EXEC"]), Value::Nil, "EXEC must abort (nil)");
    assert_eq!(qv(&mut c, &["GET", "w"]), bulk("2"));

    // Unchanged watched key: EXEC runs; UNWATCH forgets.
    assert_eq!(qv(&mut c, &["WATCH", "w"]), Value::Okay);
    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(qv(&mut c, &["INCR", "w"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["EXEC"]), Value::Array(vec![Value::Int(3)]));
    assert_eq!(qv(&mut c, &["WATCH", "w"]), Value::Okay);
    assert_eq!(qv(&mut c, &["UNWATCH"]), Value::Okay);
    q::<()>(&mut other, &["SET", "w", "10"]);
    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(qv(&mut c, &["INCR", "w"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["EXEC"]), Value::Array(vec![Value::Int(11)]));
}

#[test]
fn dynamo_commands_inside_multi() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(qv(&mut c, &["DPUT", "k", "", "a"]), status("QUEUED"));
    assert_eq!(qv(&mut c, &["DGET", "k"]), status("QUEUED"));
    let Value::Array(results) = qv(&mut c, &["EXEC"]) else {
        panic!("EXEC shape")
    };
    assert_eq!(results[0], Value::Okay);
    let Value::Array(dget) = &results[1] else {
        panic!("DGET in EXEC: {:?}", results[1])
    };
    assert_eq!(dget[1], Value::Array(vec![bulk("a")]));
}
