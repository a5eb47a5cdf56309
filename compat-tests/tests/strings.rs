//! String commands, compared with the replies documented at redis.io.

use compat_tests::{bulk, now_ms, q, qerr, qv, status, Server};
use redis::Value;

fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    q(con, &["GET", key])
}

fn ttl(con: &mut redis::Connection, key: &str) -> i64 {
    q(con, &["TTL", key])
}

fn pttl(con: &mut redis::Connection, key: &str) -> i64 {
    q(con, &["PTTL", key])
}

#[test]
fn set_and_get() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("v"));
    assert_eq!(qv(&mut c, &["GET", "missing"]), Value::Nil);
    assert_eq!(qv(&mut c, &["SET", "k", "v2"]), Value::Okay);
    assert_eq!(get(&mut c, "k").as_deref(), Some("v2"));
}

#[test]
fn set_with_expiry_options() {
    let server = Server::start(&[]);
    let mut c = server.client();

    assert_eq!(qv(&mut c, &["SET", "ex", "v", "EX", "100"]), Value::Okay);
    assert!(
        (90..=100).contains(&ttl(&mut c, "ex")),
        "{}",
        ttl(&mut c, "ex")
    );

    assert_eq!(qv(&mut c, &["SET", "px", "v", "PX", "100000"]), Value::Okay);
    let p = pttl(&mut c, "px");
    assert!((90_000..=100_000).contains(&p), "PTTL {p}");

    let exat = (now_ms() / 1000 + 200).to_string();
    assert_eq!(
        qv(&mut c, &["SET", "exat", "v", "EXAT", &exat]),
        Value::Okay
    );
    let t = ttl(&mut c, "exat");
    assert!((190..=200).contains(&t), "TTL {t}");
    assert_eq!(q::<String>(&mut c, &["EXPIRETIME", "exat"]), exat);

    let pxat = (now_ms() + 300_000).to_string();
    assert_eq!(
        qv(&mut c, &["SET", "pxat", "v", "PXAT", &pxat]),
        Value::Okay
    );
    let p = pttl(&mut c, "pxat");
    assert!((290_000..=300_000).contains(&p), "PTTL {p}");
    assert_eq!(q::<String>(&mut c, &["PEXPIRETIME", "pxat"]), pxat);

    // KEEPTTL keeps the TTL; a plain SET clears it.
    assert_eq!(qv(&mut c, &["SET", "ex", "v2", "KEEPTTL"]), Value::Okay);
    assert_eq!(get(&mut c, "ex").as_deref(), Some("v2"));
    assert!(ttl(&mut c, "ex") > 0);
    assert_eq!(qv(&mut c, &["SET", "ex", "v3"]), Value::Okay);
    assert_eq!(ttl(&mut c, "ex"), -1);
    assert_eq!(get(&mut c, "ex").as_deref(), Some("v3"));
}

#[test]
fn set_rejects_bad_option_combinations() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        qerr(&mut c, &["SET", "k", "v", "NX", "XX"]),
        "ERR syntax error"
    );
    assert_eq!(
        qerr(&mut c, &["SET", "k", "v", "EX", "10", "PX", "100"]),
        "ERR syntax error"
    );
    assert_eq!(
        qerr(&mut c, &["SET", "k", "v", "BOGUS"]),
        "ERR syntax error"
    );
    assert_eq!(
        qerr(&mut c, &["SET", "k", "v", "EX", "0"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        qerr(&mut c, &["SET", "k", "v", "PX", "-5"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(get(&mut c, "k"), None, "a rejected SET stored something");
}

#[test]
fn set_nx_xx_get() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["SET", "k", "v1", "NX"]), Value::Okay);
    assert_eq!(qv(&mut c, &["SET", "k", "v2", "NX"]), Value::Nil);
    assert_eq!(get(&mut c, "k").as_deref(), Some("v1"));

    assert_eq!(qv(&mut c, &["SET", "other", "v", "XX"]), Value::Nil);
    assert_eq!(get(&mut c, "other"), None);
    assert_eq!(qv(&mut c, &["SET", "k", "v3", "XX"]), Value::Okay);
    assert_eq!(get(&mut c, "k").as_deref(), Some("v3"));

    // SET ... GET returns the old value (nil if none).
    assert_eq!(qv(&mut c, &["SET", "g", "first", "GET"]), Value::Nil);
    assert_eq!(qv(&mut c, &["SET", "g", "second", "GET"]), bulk("first"));
    assert_eq!(get(&mut c, "g").as_deref(), Some("second"));
    assert_eq!(
        qv(&mut c, &["SET", "g", "third", "GET", "EX", "100"]),
        bulk("second")
    );
    assert!(ttl(&mut c, "g") > 0);
}

#[test]
fn setnx_setex_psetex() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["SETNX", "k", "a"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["SETNX", "k", "b"]), Value::Int(0));
    assert_eq!(get(&mut c, "k").as_deref(), Some("a"));

    assert_eq!(qv(&mut c, &["SETEX", "se", "100", "v"]), Value::Okay);
    assert_eq!(get(&mut c, "se").as_deref(), Some("v"));
    assert!((90..=100).contains(&ttl(&mut c, "se")));
    assert_eq!(
        qerr(&mut c, &["SETEX", "se2", "0", "v"]),
        "ERR invalid expire time in 'setex' command"
    );

    assert_eq!(qv(&mut c, &["PSETEX", "pse", "100000", "v"]), Value::Okay);
    assert_eq!(get(&mut c, "pse").as_deref(), Some("v"));
    let p = pttl(&mut c, "pse");
    assert!((90_000..=100_000).contains(&p), "PTTL {p}");
}

#[test]
fn getset_and_getdel() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["GETSET", "k", "v1"]), Value::Nil);
    assert_eq!(qv(&mut c, &["EXPIRE", "k", "100"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["GETSET", "k", "v2"]), bulk("v1"));
    assert_eq!(ttl(&mut c, "k"), -1, "GETSET must discard the TTL");
    assert_eq!(qv(&mut c, &["GETDEL", "k"]), bulk("v2"));
    assert_eq!(qv(&mut c, &["GET", "k"]), Value::Nil);
    assert_eq!(qv(&mut c, &["GETDEL", "k"]), Value::Nil);
}

#[test]
fn getex_options() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["GETEX", "missing", "EX", "10"]), Value::Nil);
    q::<()>(&mut c, &["SET", "k", "v"]);
    assert_eq!(qv(&mut c, &["GETEX", "k"]), bulk("v"));
    assert_eq!(ttl(&mut c, "k"), -1);

    assert_eq!(qv(&mut c, &["GETEX", "k", "EX", "100"]), bulk("v"));
    assert!((90..=100).contains(&ttl(&mut c, "k")));

    assert_eq!(qv(&mut c, &["GETEX", "k", "PX", "200000"]), bulk("v"));
    let p = pttl(&mut c, "k");
    assert!((190_000..=200_000).contains(&p), "PTTL {p}");

    let exat = (now_ms() / 1000 + 300).to_string();
    assert_eq!(qv(&mut c, &["GETEX", "k", "EXAT", &exat]), bulk("v"));
    assert_eq!(q::<String>(&mut c, &["EXPIRETIME", "k"]), exat);

    let pxat = (now_ms() + 400_000).to_string();
    assert_eq!(qv(&mut c, &["GETEX", "k", "PXAT", &pxat]), bulk("v"));
    assert_eq!(q::<String>(&mut c, &["PEXPIRETIME", "k"]), pxat);

    assert_eq!(qv(&mut c, &["GETEX", "k", "PERSIST"]), bulk("v"));
    assert_eq!(ttl(&mut c, "k"), -1);
    assert_eq!(get(&mut c, "k").as_deref(), Some("v"));
}

#[test]
fn mget_mset_msetnx() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        qv(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"]),
        Value::Okay
    );
    assert_eq!(
        qv(&mut c, &["MGET", "a", "b", "missing", "c"]),
        Value::Array(vec![bulk("1"), bulk("2"), Value::Nil, bulk("3")])
    );
    assert_eq!(
        qerr(&mut c, &["MSET", "a", "1", "b"]),
        "ERR wrong number of arguments for 'mset' command"
    );
    // One key exists: nothing is set.
    assert_eq!(qv(&mut c, &["MSETNX", "a", "x", "d", "4"]), Value::Int(0));
    assert_eq!(get(&mut c, "a").as_deref(), Some("1"));
    assert_eq!(get(&mut c, "d"), None);
    assert_eq!(qv(&mut c, &["MSETNX", "d", "4", "e", "5"]), Value::Int(1));
    assert_eq!(
        qv(&mut c, &["MGET", "d", "e"]),
        Value::Array(vec![bulk("4"), bulk("5")])
    );
}

#[test]
fn strlen_and_append() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["STRLEN", "k"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["APPEND", "k", "Hello"]), Value::Int(5));
    assert_eq!(qv(&mut c, &["APPEND", "k", " World"]), Value::Int(11));
    assert_eq!(get(&mut c, "k").as_deref(), Some("Hello World"));
    assert_eq!(qv(&mut c, &["STRLEN", "k"]), Value::Int(11));
}

#[test]
fn getrange_and_setrange() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "This is a string"]);
    assert_eq!(qv(&mut c, &["GETRANGE", "k", "0", "3"]), bulk("This"));
    assert_eq!(qv(&mut c, &["GETRANGE", "k", "-3", "-1"]), bulk("ing"));
    assert_eq!(
        qv(&mut c, &["GETRANGE", "k", "0", "-1"]),
        bulk("This is a string")
    );
    assert_eq!(qv(&mut c, &["GETRANGE", "k", "10", "100"]), bulk("string"));
    assert_eq!(qv(&mut c, &["GETRANGE", "k", "5", "3"]), bulk(""));
    assert_eq!(qv(&mut c, &["GETRANGE", "missing", "0", "-1"]), bulk(""));

    q::<()>(&mut c, &["SET", "s", "Hello World"]);
    assert_eq!(qv(&mut c, &["SETRANGE", "s", "6", "Redis"]), Value::Int(11));
    assert_eq!(get(&mut c, "s").as_deref(), Some("Hello Redis"));
    assert_eq!(
        qv(&mut c, &["SETRANGE", "pad", "6", "Redis"]),
        Value::Int(11)
    );
    assert_eq!(qv(&mut c, &["GET", "pad"]), bulk(b"\0\0\0\0\0\0Redis"));
    assert_eq!(
        qerr(&mut c, &["SETRANGE", "s", "-1", "x"]),
        "ERR offset is out of range"
    );
}

#[test]
fn incr_decr_family() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["INCR", "n"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["INCRBY", "n", "10"]), Value::Int(11));
    assert_eq!(qv(&mut c, &["DECR", "n"]), Value::Int(10));
    assert_eq!(qv(&mut c, &["DECRBY", "n", "15"]), Value::Int(-5));
    assert_eq!(qv(&mut c, &["INCRBY", "n", "-5"]), Value::Int(-10));
    assert_eq!(get(&mut c, "n").as_deref(), Some("-10"));
    assert_eq!(qv(&mut c, &["DECR", "fresh"]), Value::Int(-1));

    // INCR keeps the TTL of the key (the value is modified in place).
    q::<()>(&mut c, &["SET", "t", "5", "EX", "100"]);
    assert_eq!(qv(&mut c, &["INCR", "t"]), Value::Int(6));
    assert!(ttl(&mut c, "t") > 0);

    let not_int = "ERR value is not an integer or out of range";
    q::<()>(&mut c, &["SET", "s", "abc"]);
    assert_eq!(qerr(&mut c, &["INCR", "s"]), not_int);
    q::<()>(&mut c, &["SET", "s", " 1"]);
    assert_eq!(qerr(&mut c, &["INCR", "s"]), not_int);
    q::<()>(&mut c, &["SET", "s", "1.5"]);
    assert_eq!(qerr(&mut c, &["INCR", "s"]), not_int);
    assert_eq!(get(&mut c, "s").as_deref(), Some("1.5"));
    assert_eq!(qerr(&mut c, &["INCRBY", "n", "abc"]), not_int);
    assert_eq!(
        qerr(&mut c, &["INCRBY", "n", "9223372036854775808"]),
        not_int
    );

    let overflow = "ERR increment or decrement would overflow";
    q::<()>(&mut c, &["SET", "max", "9223372036854775807"]);
    assert_eq!(qerr(&mut c, &["INCR", "max"]), overflow);
    assert_eq!(get(&mut c, "max").as_deref(), Some("9223372036854775807"));
    q::<()>(&mut c, &["SET", "min", "-9223372036854775808"]);
    assert_eq!(qerr(&mut c, &["DECR", "min"]), overflow);
    assert_eq!(qerr(&mut c, &["INCRBY", "min", "-1"]), overflow);
}

#[test]
fn incrbyfloat() {
    let server = Server::start(&[]);
    let mut c = server.client();
    // The example from redis.io.
    q::<()>(&mut c, &["SET", "mykey", "10.50"]);
    assert_eq!(qv(&mut c, &["INCRBYFLOAT", "mykey", "0.1"]), bulk("10.6"));
    assert_eq!(qv(&mut c, &["INCRBYFLOAT", "mykey", "-5"]), bulk("5.6"));
    q::<()>(&mut c, &["SET", "mykey", "5.0e3"]);
    assert_eq!(qv(&mut c, &["INCRBYFLOAT", "mykey", "2.0e2"]), bulk("5200"));
    assert_eq!(get(&mut c, "mykey").as_deref(), Some("5200"));
    assert_eq!(qv(&mut c, &["INCRBYFLOAT", "new", "3"]), bulk("3"));
    assert_eq!(
        qerr(&mut c, &["INCRBYFLOAT", "mykey", "abc"]),
        "ERR value is not a valid float"
    );
    q::<()>(&mut c, &["SET", "s", "abc"]);
    assert_eq!(
        qerr(&mut c, &["INCRBYFLOAT", "s", "1"]),
        "ERR value is not a valid float"
    );
}

#[test]
fn binary_safe_keys_and_values() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let all: Vec<u8> = (0..=255u8).collect();
    let reversed: Vec<u8> = (0..=255u8).rev().collect();

    let ok: Value = redis::cmd("SET")
        .arg(&all)
        .arg(&reversed)
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, Value::Okay);
    let back: Vec<u8> = redis::cmd("GET").arg(&all).query(&mut c).unwrap();
    assert_eq!(back, reversed);
    let len: i64 = redis::cmd("STRLEN").arg(&all).query(&mut c).unwrap();
    assert_eq!(len, 256);
    let n: i64 = redis::cmd("EXISTS").arg(&all).query(&mut c).unwrap();
    assert_eq!(n, 1);

    // A value with CR LF and NUL inside, under a plain key.
    let () = redis::cmd("SET").arg("v").arg(&all).query(&mut c).unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("v").query(&mut c).unwrap();
    assert_eq!(back, all);
    let ranged: Vec<u8> = redis::cmd("GETRANGE")
        .arg("v")
        .arg(10)
        .arg(14)
        .query(&mut c)
        .unwrap();
    assert_eq!(ranged, vec![10, 11, 12, 13, 14]);
}

#[test]
fn one_mib_value() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
    assert!(back == big, "1 MiB value did not round-trip");
    assert_eq!(qv(&mut c, &["STRLEN", "big"]), Value::Int(1024 * 1024));
}

#[test]
fn empty_value_is_not_nil() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["SET", "e", ""]), Value::Okay);
    assert_eq!(qv(&mut c, &["GET", "e"]), bulk(""));
    assert_eq!(qv(&mut c, &["STRLEN", "e"]), Value::Int(0));
    assert_eq!(qv(&mut c, &["EXISTS", "e"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["TYPE", "e"]), status("string"));
    assert_eq!(qv(&mut c, &["APPEND", "e", "x"]), Value::Int(1));
}

#[test]
fn strings_over_resp3() {
    let server = Server::start(&[]);
    let mut c = server.client_resp3();
    assert_eq!(qv(&mut c, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("v"));
    assert_eq!(qv(&mut c, &["GET", "missing"]), Value::Nil);
    assert_eq!(qv(&mut c, &["SET", "k", "v2", "NX"]), Value::Nil);
    assert_eq!(qv(&mut c, &["SET", "k", "v2", "GET"]), bulk("v"));
    assert_eq!(qv(&mut c, &["INCR", "n"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["INCRBYFLOAT", "n", "1.5"]), bulk("2.5"));
    assert_eq!(
        qv(&mut c, &["MGET", "k", "missing", "n"]),
        Value::Array(vec![bulk("v2"), Value::Nil, bulk("2.5")])
    );
    assert_eq!(qv(&mut c, &["APPEND", "k", "x"]), Value::Int(3));
    assert_eq!(qv(&mut c, &["GETDEL", "k"]), bulk("v2x"));
    assert_eq!(
        qerr(&mut c, &["INCR", "n"]),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn duplicate_keys_in_multi_key_writes() {
    let server = Server::start(&[]);
    let mut c = server.client();
    // Redis applies MSET pairs in order: the last one wins, no siblings.
    assert_eq!(
        qv(&mut c, &["MSET", "a", "1", "a", "2", "a", "3"]),
        Value::Okay
    );
    assert_eq!(qv(&mut c, &["GET", "a"]), bulk("3"));
    let Value::Array(parts) = qv(&mut c, &["DGET", "a"]) else {
        panic!("DGET shape")
    };
    assert_eq!(
        parts[1],
        Value::Array(vec![bulk("3")]),
        "MSET left siblings"
    );
    assert_eq!(qv(&mut c, &["MSETNX", "b", "1", "b", "2"]), Value::Int(1));
    assert_eq!(qv(&mut c, &["GET", "b"]), bulk("2"));
    // DEL counts a key once however often it is named.
    assert_eq!(qv(&mut c, &["DEL", "a", "a", "b", "b"]), Value::Int(2));
    assert_eq!(
        qv(&mut c, &["MGET", "a", "a"]),
        Value::Array(vec![Value::Nil, Value::Nil])
    );
}

#[test]
fn empty_key_is_a_key() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["SET", "", "v"]), Value::Okay);
    assert_eq!(qv(&mut c, &["GET", ""]), bulk("v"));
    assert_eq!(qv(&mut c, &["EXISTS", ""]), Value::Int(1));
    assert_eq!(qv(&mut c, &["KEYS", "*"]), Value::Array(vec![bulk("")]));
    assert_eq!(qv(&mut c, &["DEL", ""]), Value::Int(1));
}

#[test]
fn modifying_commands_keep_the_ttl() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "abc", "EX", "100"]);
    assert_eq!(qv(&mut c, &["APPEND", "k", "def"]), Value::Int(6));
    assert!(ttl(&mut c, "k") > 0, "APPEND dropped the TTL");
    assert_eq!(qv(&mut c, &["SETRANGE", "k", "0", "X"]), Value::Int(6));
    assert!(ttl(&mut c, "k") > 0, "SETRANGE dropped the TTL");
    assert_eq!(get(&mut c, "k").as_deref(), Some("Xbcdef"));
    q::<()>(&mut c, &["SET", "f", "1.5", "EX", "100"]);
    assert_eq!(qv(&mut c, &["INCRBYFLOAT", "f", "1"]), bulk("2.5"));
    assert!(ttl(&mut c, "f") > 0, "INCRBYFLOAT dropped the TTL");
}

#[test]
fn expiry_argument_edge_cases() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(
        qerr(&mut c, &["SET", "k", "v", "EX", "9223372036854775807"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        qerr(&mut c, &["SET", "k", "v", "KEEPTTL", "EX", "10"]),
        "ERR syntax error"
    );
    assert_eq!(
        qerr(&mut c, &["GETEX", "k", "EX", "10", "PX", "10"]),
        "ERR syntax error"
    );
    assert_eq!(qv(&mut c, &["GET", "k"]), Value::Nil);
    q::<()>(&mut c, &["SET", "k", "v"]);
    assert_eq!(
        qerr(&mut c, &["EXPIRE", "k", "9223372036854775807"]),
        "ERR invalid expire time in 'expire' command"
    );
    assert_eq!(
        qerr(&mut c, &["EXPIRE", "k", "10", "NX", "XX"]),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        qerr(&mut c, &["EXPIRE", "k", "10", "GT", "LT"]),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(ttl(&mut c, "k"), -1);
}

#[test]
fn getrange_edge_cases() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "Hello"]);
    assert_eq!(qv(&mut c, &["GETRANGE", "k", "-100", "-1"]), bulk("Hello"));
    assert_eq!(qv(&mut c, &["GETRANGE", "k", "4", "4"]), bulk("o"));
    assert_eq!(qv(&mut c, &["GETRANGE", "k", "5", "10"]), bulk(""));
    assert_eq!(
        qerr(&mut c, &["GETRANGE", "k", "a", "1"]),
        "ERR value is not an integer or out of range"
    );
    // SETRANGE with an empty value on a missing key creates nothing.
    assert_eq!(qv(&mut c, &["SETRANGE", "none", "5", ""]), Value::Int(0));
    assert_eq!(qv(&mut c, &["EXISTS", "none"]), Value::Int(0));
}

#[test]
fn incrbyfloat_rejects_infinity() {
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "f", "1.5"]);
    assert_eq!(
        qerr(&mut c, &["INCRBYFLOAT", "f", "inf"]),
        "ERR increment would produce NaN or Infinity"
    );
    assert_eq!(get(&mut c, "f").as_deref(), Some("1.5"));
}

#[test]
fn incrbyfloat_output_precision_matches_redis() {
    // Redis computes in long double and prints with 17 significant digits,
    // trailing zeros removed: 0.1 + 0.2 is "0.3", not f64's
    // "0.30000000000000004".
    let server = Server::start(&[]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "f", "0.1"]);
    assert_eq!(qv(&mut c, &["INCRBYFLOAT", "f", "0.2"]), bulk("0.3"));
    assert_eq!(get(&mut c, "f").as_deref(), Some("0.3"));
    q::<()>(&mut c, &["SET", "g", "1.1"]);
    assert_eq!(qv(&mut c, &["INCRBYFLOAT", "g", "2.2"]), bulk("3.3"));
}
