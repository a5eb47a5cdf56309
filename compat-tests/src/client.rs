//! Helpers around the `redis` crate: terse commands, exact error lines,
//! value constructors and a health check.

use crate::server::random_u64;
use crate::Server;

/// `"CODE detail"` of a server error, e.g. `"ERR unknown command 'foo'"`,
/// as the server sent it (without the leading `-`).
pub fn err_line(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => format!("<not a server error: {e}>"),
    }
}

/// Runs `cmd`, expecting a server error; returns it as `err_line` does.
pub fn expect_err(con: &mut redis::Connection, cmd: &redis::Cmd) -> String {
    match cmd.query::<redis::Value>(con) {
        Ok(v) => panic!("expected an error reply, got {v:?}"),
        Err(e) => err_line(&e),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970")
        .as_millis() as i64
}

/// Builds a command from string parts: `cmd(&["SET", "k", "v"])`.
pub fn cmd(parts: &[&str]) -> redis::Cmd {
    let (name, args) = parts.split_first().expect("empty command");
    let mut c = redis::cmd(name);
    for a in args {
        c.arg(*a);
    }
    c
}

/// Runs a command and converts its reply; panics with the command and the
/// error if the server answers with an error.
pub fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, parts: &[&str]) -> T {
    cmd(parts)
        .query(con)
        .unwrap_or_else(|e| panic!("{parts:?} failed: {e}"))
}

/// Runs a command and returns the reply exactly as parsed, with error
/// replies (top-level or nested) as `Value::ServerError`.
pub fn qv(con: &mut redis::Connection, parts: &[&str]) -> redis::Value {
    use redis::ConnectionLike;
    con.req_command(&cmd(parts))
        .unwrap_or_else(|e| panic!("{parts:?}: connection failed: {e}"))
}

/// Runs a command that must fail; returns the error line (`"ERR ..."`).
pub fn qerr(con: &mut redis::Connection, parts: &[&str]) -> String {
    match cmd(parts).query::<redis::Value>(con) {
        Ok(v) => panic!("{parts:?}: expected an error reply, got {v:?}"),
        Err(e) => err_line(&e),
    }
}

/// A bulk string value, for comparing with `qv` results.
pub fn bulk(s: impl AsRef<[u8]>) -> redis::Value {
    redis::Value::BulkString(s.as_ref().to_vec())
}

/// A status (simple string) value, for comparing with `qv` results.
pub fn status(s: &str) -> redis::Value {
    if s == "OK" {
        redis::Value::Okay
    } else {
        redis::Value::SimpleString(s.to_string())
    }
}

/// Checks through a brand new connection that the server still serves
/// SET and GET correctly.
pub fn assert_healthy(server: &Server) {
    let mut con = server.client();
    let key = format!("health:{}", random_u64());
    let value = format!("v{}", random_u64());
    assert_eq!(q::<String>(&mut con, &["SET", &key, &value]), "OK");
    assert_eq!(
        q::<Option<String>>(&mut con, &["GET", &key]),
        Some(value),
        "server no longer serves GET correctly"
    );
}
