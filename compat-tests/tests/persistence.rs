//! Durability with the sled engine: graceful shutdown, crash, restart.

use std::time::Duration;

use compat_tests::{assert_healthy, bulk, q, qv, Server};
use redis::Value;

fn write_keys(c: &mut redis::Connection, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value:{i}"))
            .ignore();
    }
    let () = pipe.query(c).expect("writing keys");
}

fn check_keys(c: &mut redis::Connection, n: usize) {
    let keys: Vec<String> = (0..n).map(|i| format!("key:{i}")).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(c).expect("MGET");
    for (i, v) in values.iter().enumerate() {
        assert_eq!(
            v.as_deref(),
            Some(format!("value:{i}").as_str()),
            "key:{i} lost"
        );
    }
}

#[test]
fn sigterm_flushes_and_restart_reads_back() {
    let mut server = Server::start(&["--engine", "sled"]);
    let mut c = server.client();
    write_keys(&mut c, 1000);
    drop(c);
    let status = server.terminate();
    assert!(status.success(), "SIGTERM exit status {status}");
    assert_eq!(status.code(), Some(0));

    server.restart();
    let mut c = server.client();
    check_keys(&mut c, 1000);
    assert_eq!(qv(&mut c, &["DBSIZE"]), Value::Int(1000));
}

#[test]
fn sigterm_with_idle_clients_exits_zero() {
    let mut server = Server::start(&["--engine", "sled"]);
    let mut idle = server.client();
    let _raw = server.raw();
    q::<()>(&mut idle, &["SET", "k", "v"]);
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    server.restart();
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("v"));
}

#[test]
fn kill9_after_flush_interval_keeps_data() {
    let mut server = Server::start(&["--engine", "sled"]);
    let mut c = server.client();
    write_keys(&mut c, 1000);
    drop(c);
    // Longer than the periodic flush interval.
    std::thread::sleep(Duration::from_millis(2000));
    server.kill9();

    server.restart();
    let mut c = server.client();
    check_keys(&mut c, 1000);
    assert_healthy(&server);
}

#[test]
fn deletes_and_expiry_survive_restart() {
    let mut server = Server::start(&["--engine", "sled"]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "gone", "v"]);
    assert_eq!(qv(&mut c, &["DEL", "gone"]), Value::Int(1));
    q::<()>(&mut c, &["SET", "ttl", "v", "EX", "100"]);
    q::<()>(&mut c, &["SET", "short", "v", "PX", "1500"]);
    drop(c);
    assert_eq!(server.terminate().code(), Some(0));

    server.restart();
    let mut c = server.client();
    assert_eq!(
        qv(&mut c, &["GET", "gone"]),
        Value::Nil,
        "deleted data came back"
    );
    assert_eq!(qv(&mut c, &["GET", "ttl"]), bulk("v"));
    let t: i64 = q(&mut c, &["TTL", "ttl"]);
    assert!((1..=100).contains(&t), "TTL after restart: {t}");
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(qv(&mut c, &["GET", "short"]), Value::Nil);
}

#[test]
fn siblings_survive_restart() {
    let mut server = Server::start(&["--engine", "sled"]);
    let mut c = server.client();
    for v in ["a", "b"] {
        let ok: Value = redis::cmd("DPUT")
            .arg("k")
            .arg("")
            .arg(v)
            .query(&mut c)
            .expect("DPUT");
        assert_eq!(ok, Value::Okay);
    }
    drop(c);
    assert_eq!(server.terminate().code(), Some(0));
    server.restart();
    let mut c = server.client();
    let Value::Array(parts) = qv(&mut c, &["DGET", "k"]) else {
        panic!("DGET shape")
    };
    let Value::Array(mut values) = parts[1].clone() else {
        panic!("DGET values shape")
    };
    values.sort_by_key(|v| format!("{v:?}"));
    assert_eq!(values, vec![bulk("a"), bulk("b")]);
}

#[test]
fn memory_engine_serves() {
    let server = Server::start(&["--engine", "memory"]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "v"]);
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("v"));
}

#[test]
fn flushall_survives_restart() {
    let mut server = Server::start(&["--engine", "sled"]);
    let mut c = server.client();
    write_keys(&mut c, 100);
    assert_eq!(qv(&mut c, &["FLUSHALL"]), Value::Okay);
    q::<()>(&mut c, &["SET", "after", "flush"]);
    drop(c);
    assert_eq!(server.terminate().code(), Some(0));
    server.restart();
    let mut c = server.client();
    assert_eq!(
        qv(&mut c, &["DBSIZE"]),
        Value::Int(1),
        "flushed keys came back"
    );
    assert_eq!(qv(&mut c, &["GET", "after"]), bulk("flush"));
}

#[test]
fn sigint_also_exits_zero() {
    let mut server = Server::start(&["--engine", "sled"]);
    let mut c = server.client();
    q::<()>(&mut c, &["SET", "k", "v"]);
    assert_eq!(server.stop_with("INT").code(), Some(0));
    server.restart();
    let mut c = server.client();
    assert_eq!(qv(&mut c, &["GET", "k"]), bulk("v"));
}

#[test]
fn sigterm_under_load_keeps_every_acknowledged_write() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    let mut server = Server::start(&["--engine", "sled"]);
    let acked = Arc::new(AtomicI64::new(-1));
    let writer = {
        let mut c = server.client();
        let acked = Arc::clone(&acked);
        std::thread::spawn(move || {
            for i in 0..1_000_000i64 {
                let r: redis::RedisResult<Value> = redis::cmd("SET")
                    .arg(format!("load:{i}"))
                    .arg(i)
                    .query(&mut c);
                match r {
                    Ok(Value::Okay) => acked.store(i, Ordering::SeqCst),
                    _ => return,
                }
            }
        })
    };
    // Let the writer get going, then stop the server under it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.load(Ordering::SeqCst) < 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = server.terminate();
    writer.join().unwrap();
    assert_eq!(status.code(), Some(0), "exit status under load");
    let last = acked.load(Ordering::SeqCst);
    assert!(last >= 200, "writer made no progress");

    server.restart();
    let mut c = server.client();
    let keys: Vec<String> = (0..=last).map(|i| format!("load:{i}")).collect();
    for chunk in keys.chunks(1000) {
        let values: Vec<Option<i64>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
        for (k, v) in chunk.iter().zip(values) {
            assert!(v.is_some(), "acknowledged write {k} lost after SIGTERM");
        }
    }
}

#[test]
fn aof_engine_keeps_data_through_kill9_and_restart() {
    let mut server = Server::start(&["--engine", "aof"]);
    let mut c = server.client();
    write_keys(&mut c, 1000);
    let _: i64 = q(&mut c, &["DEL", "key:7"]);
    drop(c);
    // Longer than the periodic flush interval.
    std::thread::sleep(Duration::from_millis(2000));
    server.kill9();
    server.restart();
    let mut c = server.client();
    let gone: Option<String> = q(&mut c, &["GET", "key:7"]);
    assert_eq!(gone, None);
    let _: () = q(&mut c, &["SET", "key:7", "value:7"]);
    check_keys(&mut c, 1000);
    let info: String = q(&mut c, &["INFO", "persistence"]);
    assert!(info.contains("storage_engine:aof"), "{info}");
    drop(c);
    assert_eq!(server.terminate().code(), Some(0));
    server.restart();
    check_keys(&mut server.client(), 1000);
    assert_healthy(&server);
}

#[test]
fn aof_engine_with_every_write_durability_loses_nothing_to_kill9() {
    let mut server = Server::start(&["--engine", "aof", "--durability", "every-write"]);
    let mut c = server.client();
    write_keys(&mut c, 500);
    drop(c);
    server.kill9();
    server.restart();
    check_keys(&mut server.client(), 500);
}
