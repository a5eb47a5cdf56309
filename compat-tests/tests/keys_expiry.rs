//! Generic key commands and expiry.

use std::collections::HashSet;
use std::time::Duration;

use compat_tests::{bulk, now_ms, q, qv, status, Server};
use redis::Value;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn del_and_unlink_count_removed_keys() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"]);
    assert_eq!(qv(&mut c, &["DEL", "a", "b", "missing"]), Value::Int(2));
    assert_eq!(qv(&mut c, &["DEL", "a"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["UNLINK", "c", "missing"]), Value::Int(1));
    assert_eq!(
        qv(&mut c, &["MGET", "a", "b", "c"]),
        Value::Array(vec![Value::Nil, Value::Nil, Value::Nil])
    );
    // A deleted key can be written again.
    q::<()>(&mut c, &["SET", "a", "again"]);
    assert_eq!(qv(&mut c, &["GET", "a"]), bulk("again"));
}

#[test]
fn exists_counts_duplicates() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "a", "1"]);
    assert_eq!(qv(&mut c, &["EXISTS", "a"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["EXISTS", "missing"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["EXISTS", "a", "a", "missing"]), Value::Int(2));
}

#[test]
fn type_of_keys() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "a", "1"]);
    assert_eq!(qv(&mut c, &["TYPE", "a"]), status("string"));
    assert_eq!(qv(&mut c, &["TYPE", "missing"]), status("none"));
}

#[test]
fn expire_ttl_and_persist() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["EXPIRE", "missing", "10"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["TTL", "missing"]), Value::Int(-2));
    assert_eq!(qv(&mut c, &["PTTL", "missing"]), Value::Int(-2));
    assert_eq!(qv(&mut c, &["EXPIRETIME", "missing"]), Value::Int(-2));
    assert_eq!(qv(&mut c, &["PEXPIRETIME", "missing"]), Value::Int(-2));

    q::<()>(&mut c, &["SET", "k", "v"]);
    assert_eq!(qv(&mut c, &["TTL", "k"]), Value::Int(-1));
    assert_eq!(qv(&mut c, &["PTTL", "k"]), Value::Int(-1));
    assert_eq!(qv(&mut c, &["EXPIRETIME", "k"]), Value::Int(-1));
    assert_eq!(qv(&mut c, &["PEXPIRETIME", "k"]), Value::Int(-1));

    assert_eq!(qv(&mut c, &["EXPIRE", "k", "100"]), Value::Int(1));
    let t: i64 = q(&mut c, &["TTL", "k"]);
    assert!((90..=100).contains(&t), "TTL {t}");

    assert_eq!(qv(&mut c, &["PEXPIRE", "k", "200000"]), Value::Int(1));
    let p: i64 = q(&mut c, &["PTTL", "k"]);
    assert!((190_000..=200_000).contains(&p), "PTTL {p}");

    let at = now_ms() / 1000 + 300;
    assert_eq!(
        qv(&mut c, &["EXPIREAT", "k", &at.to_string()]),
        Value::Int(1)
    );
    assert_eq!(qv(&mut c, &["EXPIRETIME", "k"]), Value::Int(at));
    let t: i64 = q(&mut c, &["TTL", "k"]);
    assert!((290..=300).contains(&t), "TTL {t}");

    let pat = now_ms() + 400_000;
    assert_eq!(
        qv(&mut c, &["PEXPIREAT", "k", &pat.to_string()]),
        Value::Int(1)
    );
    assert_eq!(qv(&mut c, &["PEXPIRETIME", "k"]), Value::Int(pat));
    // EXPIRETIME is in seconds (Redis rounds to the nearest second).
    let secs: i64 = q(&mut c, &["EXPIRETIME", "k"]);
    assert!(
        (pat / 1000..=pat / 1000 + 1).contains(&secs),
        "EXPIRETIME {secs}"
    );

    assert_eq!(qv(&mut c, &["PERSIST", "k"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["PERSIST", "k"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["PERSIST", "missing"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["TTL", "k"]), Value::Int(-1));
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("v"));
}

#[test]
fn expire_nx_xx_gt_lt() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "v"]);
    // No TTL yet: XX and GT fail (no TTL counts as infinite), NX succeeds.
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "100", "XX"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "100", "GT"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["TTL", "k"]), Value::Int(-1));
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "100", "NX"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "200", "NX"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "200", "XX"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "50", "GT"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "300", "GT"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "400", "LT"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "250", "LT"]), Value::Int(1));
    let t: i64 = q(&mut c, &["TTL", "k"]);
    assert!((240..=250).contains(&t), "TTL {t}");
}

#[test]
fn non_positive_expire_deletes() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "a", "v"]);
    assert_eq!(qv(&mut c, &["EXPIRE", "a", "-1"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["GET", "a"]), Value::Nil);
    assert_eq!(qv(&mut c, &["EXISTS", "a"]), Value::Int(0));

    q::<()>(&mut c, &["SET", "b", "v"]);
    let past = (now_ms() / 1000 - 100).to_string();
    assert_eq!(qv(&mut c, &["EXPIREAT", "b", &past]), Value::Int(1));
    assert_eq!(qv(&mut c, &["GET", "b"]), Value::Nil);
    assert_eq!(qv(&mut c, &["TTL", "b"]), Value::Int(-2));
}

#[test]
fn px_100_key_is_gone_after_300ms() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let start = std::time::Instant::now();
    q::<()>(&mut c, &["SET", "short", "v", "PX", "100"]);
    let got = qv(&mut c, &["GET", "short"]);
    // Only meaningful if the machine did not stall for 100 ms meanwhile.
    if start.elapsed() < Duration::from_millis(80) {
        assert_eq!(got, bulk("v"));
    }
    q::<()>(&mut c, &["SET", "long", "v", "EX", "100"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(qv(&mut c, &["GET", "short"]), Value::Nil);
    assert_eq!(qv(&mut c, &["EXISTS", "short"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["TTL", "short"]), Value::Int(-2));
    assert_eq!(qv(&mut c, &["GET", "long"]), bulk("v"));
    let keys: Vec<String> = q(&mut c, &["KEYS", "*"]);
    assert_eq!(keys, vec!["long".to_string()]);
}

#[test]
fn keys_patterns() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for k in [
        "hello", "hallo", "hxllo", "hllo", "heeello", "hbllo", "h*llo", "a?b", "axb",
    ] {
        q::<()>(&mut c, &["SET", k, "1"]);
    }
    let keys = |c: &mut redis::Connection, p: &str| sorted(q(c, &["KEYS", p]));
    let s = |v: &[&str]| sorted(v.iter().map(|s| s.to_string()).collect());

    assert_eq!(keys(&mut c, "*").len(), 9);
    assert_eq!(
        keys(&mut c, "h?llo"),
        s(&["hello", "hallo", "hxllo", "hbllo", "h*llo"])
    );
    assert_eq!(
        keys(&mut c, "h*llo"),
        s(&["hello", "hallo", "hxllo", "hllo", "heeello", "hbllo", "h*llo"])
    );
    assert_eq!(keys(&mut c, "h[ae]llo"), s(&["hello", "hallo"]));
    assert_eq!(
        keys(&mut c, "h[^e]llo"),
        s(&["hallo", "hxllo", "hbllo", "h*llo"])
    );
    assert_eq!(keys(&mut c, "h[a-b]llo"), s(&["hallo", "hbllo"]));
    assert_eq!(keys(&mut c, "h\\*llo"), s(&["h*llo"]));
    assert_eq!(keys(&mut c, "a\\?b"), s(&["a?b"]));
    assert_eq!(keys(&mut c, "a?b"), s(&["a?b", "axb"]));
    assert_eq!(keys(&mut c, "nomatch*"), s(&[]));
}

/// Iterates SCAN to cursor 0 and returns every key seen (bounded).
fn scan_all(c: &mut redis::Connection, extra: &[&str]) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    for _ in 0..100_000 {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let reply = qv(c, &args);
        let Value::Array(parts) = reply else {
            panic!("SCAN reply is not an array: {reply:?}");
        };
        assert_eq!(parts.len(), 2, "SCAN reply must be [cursor, keys]");
        let Value::BulkString(next) = &parts[0] else {
            panic!("SCAN cursor must be a bulk string: {:?}", parts[0]);
        };
        let Value::Array(keys) = &parts[1] else {
            panic!("SCAN keys must be an array: {:?}", parts[1]);
        };
        for k in keys {
            match k {
                Value::BulkString(b) => {
                    seen.insert(String::from_utf8(b.clone()).unwrap());
                }
                other => panic!("SCAN key is not a bulk string: {other:?}"),
            }
        }
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            return seen;
        }
    }
    panic!("SCAN did not return to cursor 0");
}

#[test]
fn scan_returns_every_key() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET").arg(format!("scan:{i}")).arg(i).ignore();
    }
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("other:{i}")).arg(i).ignore();
    }
    let () = pipe.query(&mut c).unwrap();

    let expected: HashSet<String> = (0..1000).map(|i| format!("scan:{i}")).collect();
    let seen = scan_all(&mut c, &["MATCH", "scan:*", "COUNT", "100"]);
    assert_eq!(seen, expected);

    let all = scan_all(&mut c, &[]);
    assert_eq!(all.len(), 1100);

    let small = scan_all(&mut c, &["COUNT", "7", "MATCH", "other:*"]);
    assert_eq!(small.len(), 100);

    let typed = scan_all(&mut c, &["MATCH", "scan:1*", "TYPE", "string"]);
    assert_eq!(typed.len(), 111);
}

#[test]
fn randomkey_dbsize_flush() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["DBSIZE"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["RANDOMKEY"]), Value::Nil);
    q::<()>(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"]);
    assert_eq!(qv(&mut c, &["DBSIZE"]), Value::Int(3));
    for _ in 0..10 {
        let k: String = q(&mut c, &["RANDOMKEY"]);
        assert!(["a", "b", "c"].contains(&k.as_str()), "RANDOMKEY gave {k}");
    }
    assert_eq!(qv(&mut c, &["FLUSHDB"]), Value::Okay);
    assert_eq!(qv(&mut c, &["DBSIZE"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["GET", "a"]), Value::Nil);
    q::<()>(&mut c, &["MSET", "a", "1", "d", "4"]);
    assert_eq!(qv(&mut c, &["DBSIZE"]), Value::Int(2));
    assert_eq!(qv(&mut c, &["FLUSHALL"]), Value::Okay);
    assert_eq!(qv(&mut c, &["DBSIZE"]), Value::Int(0));
    assert_eq!(
        qv(&mut c, &["MGET", "a", "d"]),
        Value::Array(vec![Value::Nil, Value::Nil])
    );
    let keys: Vec<String> = q(&mut c, &["KEYS", "*"]);
    assert!(keys.is_empty(), "keys left after FLUSHALL: {keys:?}");
    // Writable again after a flush.
    q::<()>(&mut c, &["SET", "a", "new"]);
    assert_eq!(qv(&mut c, &["GET", "a"]), bulk("new"));
}

#[test]
fn keys_over_resp3() {
    let server = Server::start(&[]);
    let mut c = server.client_resp3();
    q::<()>(&mut c, &["SET", "k", "v", "EX", "100"]);
    assert_eq!(qv(&mut c, &["EXISTS", "k", "k", "nope"]), Value::Int(2));
    let t: i64 = q(&mut c, &["TTL", "k"]);
    assert!((90..=100).contains(&t));
    assert_eq!(qv(&mut c, &["TTL", "nope"]), Value::Int(-2));
    assert_eq!(qv(&mut c, &["TYPE", "k"]), status("string"));
    assert_eq!(qv(&mut c, &["KEYS", "*"]), Value::Array(vec![bulk("k")]));
    assert_eq!(qv(&mut c, &["DBSIZE"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["RANDOMKEY"]), bulk("k"));
    assert_eq!(qv(&mut c, &["DEL", "k"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["RANDOMKEY"]), Value::Nil);
}

#[test]
fn scan_errors_and_binary_keys() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        compat_tests::qerr(&mut c, &["SCAN", "notacursor"]),
        "ERR invalid cursor"
    );
    let key: Vec<u8> = vec![0, 1, b'\r', b'\n', 0xff, b' '];
    let () = redis::cmd("SET").arg(&key).arg("v").query(&mut c).unwrap();
    assert_eq!(
        qv(&mut c, &["KEYS", "*"]),
        Value::Array(vec![Value::BulkString(key.clone())])
    );
    let Value::Array(parts) = qv(&mut c, &["SCAN", "0", "COUNT", "100"]) else {
        panic!("SCAN shape")
    };
    assert_eq!(parts[0], bulk("0"));
    assert_eq!(parts[1], Value::Array(vec![Value::BulkString(key)]));
}

#[test]
fn expired_keys_are_invisible_everywhere() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "gone", "v", "PX", "50"]);
    q::<()>(&mut c, &["SET", "kept", "v"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        qv(&mut c, &["MGET", "gone", "kept"]),
        Value::Array(vec![Value::Nil, bulk("v")])
    );
    assert_eq!(qv(&mut c, &["EXISTS", "gone"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["TYPE", "gone"]), status("none"));
    assert_eq!(qv(&mut c, &["STRLEN", "gone"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["GETEX", "gone", "PERSIST"]), Value::Nil);
    assert_eq!(qv(&mut c, &["PERSIST", "gone"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["EXPIRE", "gone", "100"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["SET", "gone", "new", "XX"]), Value::Nil);
    assert_eq!(qv(&mut c, &["SETNX", "gone", "fresh"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["TTL", "gone"]), Value::Int(-1));
    assert_eq!(qv(&mut c, &["GET", "gone"]), bulk("fresh"));
    assert_eq!(qv(&mut c, &["INCR", "ctr"]), Value::Int(1));
    q::<()>(&mut c, &["SET", "ctr", "10", "PX", "50"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        qv(&mut c, &["INCR", "ctr"]),
        Value::Int(1),
        "INCR saw an expired value"
    );
    assert_eq!(qv(&mut c, &["APPEND", "ctr", "x"]), Value::Int(2));
    assert_eq!(qv(&mut c, &["DBSIZE"]), Value::Int(3));
    assert_eq!(sorted(q(&mut c, &["KEYS", "*"])), ["ctr", "gone", "kept"]);
}
