//! The connection to one node (the `redis` crate, RESP2) and the shapes of
//! the `DYNAMO` replies, turned into text.

use std::time::Duration;

use redis::{IntoConnectionInfo, RedisConnectionInfo, Value};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one reply may take (`DYNAMO JOIN` waits for a gossip exchange).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// An open, authenticated connection to a node's client port.
pub struct Node {
    con: redis::Connection,
    /// `host:port` as the user gave it, for messages.
    pub addr: String,
    password: Option<String>,
}

/// Splits `host:port` (or `[v6]:port`); `None` if it is not of that form.
pub fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

impl Node {
    /// Connects to `addr` and authenticates with `password` if given.
    pub fn connect(addr: &str, password: Option<&str>) -> Result<Node, String> {
        let (host, port) = split_addr(addr).ok_or_else(|| format!("{addr} is not host:port"))?;
        let info = (host, port)
            .into_connection_info()
            .map_err(|e| describe(addr, &e))?
            .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
        let con = redis::Client::open(info)
            .and_then(|client| client.get_connection_with_timeout(CONNECT_TIMEOUT))
            .map_err(|e| describe(addr, &e))?;
        con.set_read_timeout(Some(REPLY_TIMEOUT))
            .and_then(|()| con.set_write_timeout(Some(REPLY_TIMEOUT)))
            .map_err(|e| describe(addr, &e))?;
        let mut node = Node {
            con,
            addr: addr.to_string(),
            password: password.map(str::to_string),
        };
        if let Some(password) = password {
            match redis::cmd("AUTH")
                .arg(password)
                .query::<Value>(&mut node.con)
            {
                Ok(_) => {}
                // A node without a password accepts everyone: say so, go on.
                Err(e)
                    if e.detail()
                        .is_some_and(|d| d.contains("without any password")) =>
                {
                    super::note(&format!(
                        "note: {addr} has no password set; --password is not needed"
                    ));
                }
                Err(e) => return Err(describe(addr, &e)),
            }
        }
        Ok(node)
    }

    /// Opens a fresh connection (after the node dropped this one).
    pub fn reconnect(&mut self) -> Result<(), String> {
        *self = Node::connect(&self.addr, self.password.as_deref())?;
        Ok(())
    }

    /// Runs one command; an error reply becomes a one-line message.
    pub fn query(&mut self, args: &[&str]) -> Result<Value, String> {
        let mut cmd = redis::cmd(args.first().copied().unwrap_or("PING"));
        for arg in args.iter().skip(1) {
            cmd.arg(*arg);
        }
        match cmd.query::<Value>(&mut self.con) {
            Ok(Value::ServerError(e)) => Err(format!(
                "{}: {} {}",
                self.addr,
                e.code(),
                e.details().unwrap_or("")
            )),
            Ok(value) => Ok(value),
            Err(e) => Err(describe(&self.addr, &e)),
        }
    }

    /// `DYNAMO STATUS` as name/value pairs, in the node's order.
    pub fn status(&mut self) -> Result<Fields, String> {
        self.query(&["DYNAMO", "STATUS"]).map(|v| Fields(pairs(v)))
    }

    /// `DYNAMO MEMBERS`.
    pub fn members(&mut self) -> Result<Vec<Member>, String> {
        let reply = self.query(&["DYNAMO", "MEMBERS"])?;
        Ok(items(reply)
            .into_iter()
            .map(|row| {
                let cells: Vec<String> = items(row).iter().map(text).collect();
                let cell = |i: usize| cells.get(i).cloned().unwrap_or_default();
                Member {
                    id: cell(0),
                    client: cell(1),
                    peer: cell(2),
                    health: cell(3),
                    state: cell(4),
                    weight: cell(5).parse().unwrap_or(0),
                    partitions: cell(6).parse().unwrap_or(0),
                }
            })
            .collect())
    }

    /// `INFO dynamo` as name/value pairs (empty if the node has none).
    pub fn info_dynamo(&mut self) -> Vec<(String, String)> {
        let Ok(reply) = self.query(&["INFO", "dynamo"]) else {
            return Vec::new();
        };
        text(&reply)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }
}

/// A one-line description of a failed request to `addr`.
pub fn describe(addr: &str, err: &redis::RedisError) -> String {
    if let Some(code) = err.code() {
        let detail = err.detail().unwrap_or("");
        return match code {
            "NOAUTH" => format!("{addr} requires a password (NOAUTH {detail}); pass --password"),
            "WRONGPASS" => format!("authentication failed at {addr}: WRONGPASS {detail}"),
            "ERR" if detail.starts_with("unknown command") => {
                format!("{addr} does not know this command (is it a dynamo-server?): ERR {detail}")
            }
            _ => format!("{addr}: {code} {detail}"),
        };
    }
    if err.is_connection_refusal() {
        format!("cannot connect to {addr}: connection refused (is dynamo-server listening there? use the client port)")
    } else if err.is_timeout() {
        format!("{addr} did not answer in time")
    } else if err.is_connection_dropped() {
        format!("{addr} closed the connection")
    } else {
        format!("cannot talk to {addr}: {err}")
    }
}

/// One row of `DYNAMO MEMBERS`.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub client: String,
    pub peer: String,
    /// `self`, `up` or `down since <ms>`.
    pub health: String,
    /// `active`, `leaving` or `removed`.
    pub state: String,
    pub weight: u64,
    pub partitions: u64,
}

/// A map reply (RESP3) or a flat name/value array (RESP2), in order.
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, Value)>);

impl Fields {
    /// The field as text; `-` when missing.
    pub fn get(&self, name: &str) -> String {
        self.value(name).map_or_else(|| "-".to_string(), text)
    }

    pub fn value(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The field as a number (0 when missing or not a number).
    pub fn num(&self, name: &str) -> f64 {
        self.get(name).parse().unwrap_or(0.0)
    }

    /// A field holding an array of maps (`transfers`).
    pub fn list(&self, name: &str) -> Vec<Fields> {
        self.value(name)
            .map(|v| {
                items(v.clone())
                    .into_iter()
                    .map(|m| Fields(pairs(m)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The elements of an array (or set) reply; anything else is no elements.
pub fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        Value::Attribute { data, .. } => items(*data),
        _ => Vec::new(),
    }
}

/// Name/value pairs of a map reply or a flat RESP2 array of pairs.
pub fn pairs(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Map(pairs) => pairs.into_iter().map(|(k, v)| (text(&k), v)).collect(),
        other => {
            let mut flat = items(other).into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                out.push((text(&k), v));
            }
            out
        }
    }
}

/// A scalar reply as text (arrays are joined with spaces).
pub fn text(value: &Value) -> String {
    match value {
        Value::Nil => String::new(),
        Value::Int(i) => i.to_string(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".to_string(),
        Value::Double(d) => d.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Array(items) | Value::Set(items) => {
            items.iter().map(text).collect::<Vec<_>>().join(" ")
        }
        other => format!("{other:?}"),
    }
}
