//! The Dynamo commands of SPEC.md: DGET, DPUT, DDEL, DYNAMO ...

use std::time::Duration;

use compat_tests::{bulk, q, qerr, qv, Server};
use redis::Value;

/// `[context, values]` of a DGET-shaped reply; values sorted.
fn split_dget(v: Value) -> (Vec<u8>, Vec<Vec<u8>>) {
    let Value::Array(parts) = v else {
        panic!("DGET reply must be an array, got {v:?}")
    };
    assert_eq!(
        parts.len(),
        2,
        "DGET reply must be [context, values]: {parts:?}"
    );
    let mut it = parts.into_iter();
    let ctx = match it.next().unwrap() {
        Value::BulkString(b) => b,
        other => panic!("DGET context must be a bulk string: {other:?}"),
    };
    let values = match it.next().unwrap() {
        Value::Array(vs) => vs
            .into_iter()
            .map(|v| match v {
                Value::BulkString(b) => b,
                other => panic!("DGET value must be a bulk string: {other:?}"),
            })
            .collect::<Vec<_>>(),
        other => panic!("DGET values must be an array: {other:?}"),
    };
    let mut values = values;
    values.sort();
    (ctx, values)
}

fn dget(c: &mut redis::Connection, key: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    split_dget(qv(c, &["DGET", key]))
}

fn dput(c: &mut redis::Connection, key: &str, ctx: &[u8], value: &[u8]) -> Value {
    use redis::ConnectionLike;
    c.req_command(redis::cmd("DPUT").arg(key).arg(ctx).arg(value))
        .expect("DPUT")
}

fn ddel(c: &mut redis::Connection, key: &str, ctx: &[u8]) -> Value {
    use redis::ConnectionLike;
    c.req_command(redis::cmd("DDEL").arg(key).arg(ctx))
        .expect("DDEL")
}

fn strs(v: &[&str]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = v.iter().map(|s| s.as_bytes().to_vec()).collect();
    v.sort();
    v
}

#[test]
fn dget_missing_key() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        qv(&mut c, &["DGET", "missing"]),
        Value::Array(vec![bulk(""), Value::Array(vec![])])
    );
}

#[test]
fn set_then_dget_shows_one_value() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "v"]);
    let (ctx, values) = dget(&mut c, "k");
    assert!(
        !ctx.is_empty(),
        "context of a written key must not be empty"
    );
    assert_eq!(values, strs(&["v"]));
    // Plain SETs supersede: still one value.
    q::<()>(&mut c, &["SET", "k", "v2"]);
    q::<()>(&mut c, &["SET", "k", "v3"]);
    assert_eq!(dget(&mut c, "k").1, strs(&["v3"]));
}

#[test]
fn blind_dputs_become_siblings_and_context_resolves_them() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(dput(&mut c, "k", b"", b"v1"), Value::Okay);
    assert_eq!(dput(&mut c, "k", b"", b"v2"), Value::Okay);
    let (ctx, values) = dget(&mut c, "k");
    assert_eq!(values, strs(&["v1", "v2"]), "both concurrent writes kept");
    let winner: String = q(&mut c, &["GET", "k"]);
    assert!(winner == "v1" || winner == "v2", "GET gave {winner}");
    // GET is deterministic for the same siblings.
    for _ in 0..5 {
        assert_eq!(q::<String>(&mut c, &["GET", "k"]), winner);
    }

    // A write with the context from DGET supersedes both.
    assert_eq!(dput(&mut c, "k", &ctx, b"merged"), Value::Okay);
    assert_eq!(dget(&mut c, "k").1, strs(&["merged"]));
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("merged"));
}

#[test]
fn stale_context_keeps_concurrent_sibling() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "base"]);
    let (ctx_a, _) = dget(&mut c, "k");
    let (ctx_b, _) = dget(&mut c, "k");
    // Two clients read the same version and write concurrently.
    assert_eq!(dput(&mut c, "k", &ctx_a, b"from-a"), Value::Okay);
    assert_eq!(dput(&mut c, "k", &ctx_b, b"from-b"), Value::Okay);
    assert_eq!(dget(&mut c, "k").1, strs(&["from-a", "from-b"]));
}

#[test]
fn invalid_context_is_rejected_and_nothing_written() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let e = qerr(&mut c, &["DPUT", "k", "garbage", "v"]);
    assert_eq!(e, "ERR invalid context");
    assert_eq!(
        qv(&mut c, &["DGET", "k"]),
        Value::Array(vec![bulk(""), Value::Array(vec![])])
    );
    assert_eq!(qv(&mut c, &["GET", "k"]), Value::Nil);
    assert_eq!(qv(&mut c, &["EXISTS", "k"]), Value::Int(0));

    q::<()>(&mut c, &["SET", "e", "old"]);
    let e = qerr(&mut c, &["DPUT", "e", "\u{1}\u{2}garbage\u{ff}", "new"]);
    assert_eq!(e, "ERR invalid context");
    let e = qerr(&mut c, &["DDEL", "e", "garbage"]);
    assert_eq!(e, "ERR invalid context");
    assert_eq!(dget(&mut c, "e").1, strs(&["old"]));
    assert_eq!(qv(&mut c, &["GET", "e"]), bulk("old"));
}

#[test]
fn ddel_with_context_deletes() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "v"]);
    let (ctx, _) = dget(&mut c, "k");
    assert_eq!(ddel(&mut c, "k", &ctx), Value::Int(1));
    assert_eq!(qv(&mut c, &["GET", "k"]), Value::Nil);
    assert_eq!(qv(&mut c, &["EXISTS", "k"]), Value::Int(0));
    assert_eq!(dget(&mut c, "k").1, Vec::<Vec<u8>>::new());
    // Written again after the delete.
    q::<()>(&mut c, &["SET", "k", "again"]);
    assert_eq!(dget(&mut c, "k").1, strs(&["again"]));
}

#[test]
fn ddel_keeps_concurrent_write() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "v"]);
    let (ctx, _) = dget(&mut c, "k");
    // A blind write the delete's context does not cover.
    assert_eq!(dput(&mut c, "k", b"", b"concurrent"), Value::Okay);
    assert_eq!(ddel(&mut c, "k", &ctx), Value::Int(1));
    // The concurrent write survives as a sibling of the tombstone...
    assert_eq!(dget(&mut c, "k").1, strs(&["concurrent"]));
    // ...but GET picks the newest version, the tombstone: nil (SPEC: "nil
    // if none or if the winner is a tombstone").
    assert_eq!(qv(&mut c, &["GET", "k"]), Value::Nil);
    // A later blind write wins over the tombstone.
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(dput(&mut c, "k", b"", b"later"), Value::Okay);
    assert_eq!(dget(&mut c, "k").1, strs(&["concurrent", "later"]));
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("later"));
}

#[test]
fn set_and_del_supersede_siblings() {
    let server = Server::start(&[]);
    let mut c = server.client();
    dput(&mut c, "k", b"", b"a");
    dput(&mut c, "k", b"", b"b");
    assert_eq!(dget(&mut c, "k").1.len(), 2);
    q::<()>(&mut c, &["SET", "k", "c"]);
    assert_eq!(dget(&mut c, "k").1, strs(&["c"]));

    dput(&mut c, "d", b"", b"a");
    dput(&mut c, "d", b"", b"b");
    assert_eq!(qv(&mut c, &["DEL", "d"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["GET", "d"]), Value::Nil);
    assert_eq!(dget(&mut c, "d").1, Vec::<Vec<u8>>::new());
}

#[test]
fn expired_versions_are_not_listed() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "v", "PX", "100"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dget(&mut c, "k").1, Vec::<Vec<u8>>::new());
}

#[test]
fn binary_values_through_dput() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let all: Vec<u8> = (0..=255u8).collect();
    assert_eq!(dput(&mut c, "bin", b"", &all), Value::Okay);
    assert_eq!(dget(&mut c, "bin").1, vec![all.clone()]);
    let back: Vec<u8> = q(&mut c, &["GET", "bin"]);
    assert_eq!(back, all);
}

#[test]
fn dynamo_admin_subcommands() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for sub in ["STATUS", "RING", "MEMBERS"] {
        let v = qv(&mut c, &["DYNAMO", sub]);
        assert!(
            !matches!(v, Value::ServerError(_) | Value::Nil),
            "DYNAMO {sub} gave {v:?}"
        );
    }
    let e = qerr(&mut c, &["DYNAMO", "NO-SUCH-SUBCOMMAND"]);
    assert!(e.starts_with("ERR"), "got {e:?}");
    assert_eq!(qv(&mut c, &["PING"]), Value::SimpleString("PONG".into()));
}

#[test]
fn dynamo_localget_matches_dget() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        qv(&mut c, &["DYNAMO", "LOCALGET", "missing"]),
        Value::Array(vec![bulk(""), Value::Array(vec![])])
    );
    q::<()>(&mut c, &["SET", "k", "v"]);
    let (ctx, values) = split_dget(qv(&mut c, &["DYNAMO", "LOCALGET", "k"]));
    assert!(!ctx.is_empty());
    assert_eq!(values, strs(&["v"]));
    dput(&mut c, "k", b"", b"w");
    let local = split_dget(qv(&mut c, &["DYNAMO", "LOCALGET", "k"])).1;
    assert_eq!(local, dget(&mut c, "k").1);
    assert_eq!(local, strs(&["v", "w"]));
}

#[test]
fn dynamo_commands_arity() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        qerr(&mut c, &["DGET"]),
        "ERR wrong number of arguments for 'dget' command"
    );
    assert_eq!(
        qerr(&mut c, &["DPUT", "k", "ctx"]),
        "ERR wrong number of arguments for 'dput' command"
    );
    assert_eq!(
        qerr(&mut c, &["DDEL", "k"]),
        "ERR wrong number of arguments for 'ddel' command"
    );
}

#[test]
fn dynamo_over_resp3() {
    let server = Server::start(&[]);
    let mut c = server.client_resp3();
    assert_eq!(
        qv(&mut c, &["DGET", "missing"]),
        Value::Array(vec![bulk(""), Value::Array(vec![])])
    );
    assert_eq!(dput(&mut c, "k", b"", b"a"), Value::Okay);
    assert_eq!(dput(&mut c, "k", b"", b"b"), Value::Okay);
    let (ctx, values) = dget(&mut c, "k");
    assert_eq!(values, strs(&["a", "b"]));
    assert_eq!(dput(&mut c, "k", &ctx, b"c"), Value::Okay);
    let (ctx, values) = dget(&mut c, "k");
    assert_eq!(values, strs(&["c"]));
    assert_eq!(ddel(&mut c, "k", &ctx), Value::Int(1));
    assert_eq!(qv(&mut c, &["GET", "k"]), Value::Nil);
}
