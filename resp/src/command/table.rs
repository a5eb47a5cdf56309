//! The command table: arity, key positions and docs for every command.
//!
//! One row per command drives arity checking, `COMMAND INFO`, `COMMAND DOCS`,
//! `COMMAND COUNT` and `COMMAND LIST`, so they can never disagree.

/// One command's metadata, as Redis's `COMMAND INFO` describes it.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i64,
    /// Flags shown by COMMAND INFO.
    pub flags: &'static [&'static str],
    /// Position of the first key (0: none).
    pub first_key: i64,
    /// Position of the last key (-1: the last argument).
    pub last_key: i64,
    /// Step between keys.
    pub step: i64,
    /// Group for COMMAND DOCS (`string`, `generic`, `connection`, ...).
    pub group: &'static str,
    /// One-line summary for COMMAND DOCS.
    pub summary: &'static str,
}

impl CommandSpec {
    /// Whether `argc` (name included) satisfies the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }
}

const W: &[&str] = &["write"];
const WD: &[&str] = &["write", "denyoom"];
const R: &[&str] = &["readonly", "fast"];
const RS: &[&str] = &["readonly"];
const F: &[&str] = &["fast"];
const A: &[&str] = &["admin"];
const C: &[&str] = &["noscript", "loading", "stale", "fast"];

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $first:expr, $last:expr, $step:expr, $group:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $first,
            last_key: $last,
            step: $step,
            group: $group,
            summary: $summary,
        }
    };
}

/// Every command the server knows.
pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "ping",
        -1,
        C,
        0,
        0,
        0,
        "connection",
        "Returns the server's liveliness response."
    ),
    spec!(
        "echo",
        2,
        C,
        0,
        0,
        0,
        "connection",
        "Returns the given string."
    ),
    spec!(
        "hello",
        -1,
        C,
        0,
        0,
        0,
        "connection",
        "Handshakes with the server: protocol version, AUTH, SETNAME."
    ),
    spec!(
        "auth",
        -2,
        C,
        0,
        0,
        0,
        "connection",
        "Authenticates the connection."
    ),
    spec!(
        "quit",
        -1,
        C,
        0,
        0,
        0,
        "connection",
        "Closes the connection."
    ),
    spec!(
        "reset",
        1,
        C,
        0,
        0,
        0,
        "connection",
        "Resets the connection."
    ),
    spec!(
        "select",
        2,
        C,
        0,
        0,
        0,
        "connection",
        "Changes the selected database (only 0 exists)."
    ),
    spec!(
        "client",
        -2,
        C,
        0,
        0,
        0,
        "connection",
        "A container for client connection commands."
    ),
    spec!(
        "command",
        -1,
        C,
        0,
        0,
        0,
        "server",
        "Returns detailed information about commands."
    ),
    spec!(
        "config",
        -2,
        A,
        0,
        0,
        0,
        "server",
        "A container for server configuration commands."
    ),
    spec!(
        "info",
        -1,
        C,
        0,
        0,
        0,
        "server",
        "Returns information and statistics about the server."
    ),
    spec!("time", 1, C, 0, 0, 0, "server", "Returns the server time."),
    spec!(
        "shutdown",
        -1,
        A,
        0,
        0,
        0,
        "server",
        "Stops the node: no new connections, in-flight requests finish, storage is flushed."
    ),
    spec!(
        "slowlog",
        -2,
        A,
        0,
        0,
        0,
        "server",
        "The slowest recent commands, with the replicas that answered slowly."
    ),
    spec!(
        "dbsize",
        1,
        R,
        0,
        0,
        0,
        "server",
        "Returns the number of keys held by this node."
    ),
    spec!(
        "flushall",
        -1,
        W,
        0,
        0,
        0,
        "server",
        "Removes all keys from this node."
    ),
    spec!(
        "flushdb",
        -1,
        W,
        0,
        0,
        0,
        "server",
        "Removes all keys from this node."
    ),
    spec!(
        "type",
        2,
        R,
        1,
        1,
        1,
        "generic",
        "Determines the type of value stored at a key."
    ),
    spec!(
        "get",
        2,
        R,
        1,
        1,
        1,
        "string",
        "Returns the string value of a key (the winner among siblings)."
    ),
    spec!(
        "set",
        -3,
        WD,
        1,
        1,
        1,
        "string",
        "Sets the string value of a key, superseding the versions this node knows."
    ),
    spec!(
        "setnx",
        3,
        WD,
        1,
        1,
        1,
        "string",
        "Sets a key only if it does not exist (best effort, not isolated)."
    ),
    spec!(
        "setex",
        4,
        WD,
        1,
        1,
        1,
        "string",
        "Sets a key with an expiry in seconds."
    ),
    spec!(
        "psetex",
        4,
        WD,
        1,
        1,
        1,
        "string",
        "Sets a key with an expiry in milliseconds."
    ),
    spec!(
        "getset",
        3,
        WD,
        1,
        1,
        1,
        "string",
        "Sets a key and returns its previous value."
    ),
    spec!(
        "getdel",
        2,
        W,
        1,
        1,
        1,
        "string",
        "Returns a key's value and deletes it."
    ),
    spec!(
        "getex",
        -2,
        W,
        1,
        1,
        1,
        "string",
        "Returns a key's value and changes its expiry."
    ),
    spec!(
        "mget",
        -2,
        RS,
        1,
        -1,
        1,
        "string",
        "Returns the values of several keys."
    ),
    spec!(
        "mset",
        -3,
        WD,
        1,
        -1,
        2,
        "string",
        "Sets several keys (not atomic across keys)."
    ),
    spec!(
        "msetnx",
        -3,
        WD,
        1,
        -1,
        2,
        "string",
        "Sets several keys if none exists (best effort, not isolated)."
    ),
    spec!(
        "del",
        -2,
        W,
        1,
        -1,
        1,
        "generic",
        "Deletes keys with causal tombstones."
    ),
    spec!(
        "unlink",
        -2,
        W,
        1,
        -1,
        1,
        "generic",
        "Deletes keys with causal tombstones."
    ),
    spec!(
        "exists",
        -2,
        R,
        1,
        -1,
        1,
        "generic",
        "Counts how many of the given keys exist."
    ),
    spec!(
        "strlen",
        2,
        R,
        1,
        1,
        1,
        "string",
        "Returns the length of a key's value."
    ),
    spec!(
        "append",
        3,
        WD,
        1,
        1,
        1,
        "string",
        "Appends to a key's value (not isolated)."
    ),
    spec!(
        "getrange",
        4,
        RS,
        1,
        1,
        1,
        "string",
        "Returns a substring of a key's value."
    ),
    spec!(
        "substr",
        4,
        RS,
        1,
        1,
        1,
        "string",
        "Returns a substring of a key's value."
    ),
    spec!(
        "setrange",
        4,
        WD,
        1,
        1,
        1,
        "string",
        "Overwrites part of a key's value (not isolated)."
    ),
    spec!(
        "incr",
        2,
        WD,
        1,
        1,
        1,
        "string",
        "Increments a key's integer value by one (not isolated)."
    ),
    spec!(
        "decr",
        2,
        WD,
        1,
        1,
        1,
        "string",
        "Decrements a key's integer value by one (not isolated)."
    ),
    spec!(
        "incrby",
        3,
        WD,
        1,
        1,
        1,
        "string",
        "Increments a key's integer value (not isolated)."
    ),
    spec!(
        "decrby",
        3,
        WD,
        1,
        1,
        1,
        "string",
        "Decrements a key's integer value (not isolated)."
    ),
    spec!(
        "incrbyfloat",
        3,
        WD,
        1,
        1,
        1,
        "string",
        "Increments a key's float value (not isolated)."
    ),
    spec!(
        "expire",
        -3,
        W,
        1,
        1,
        1,
        "generic",
        "Sets a key's time to live in seconds."
    ),
    spec!(
        "pexpire",
        -3,
        W,
        1,
        1,
        1,
        "generic",
        "Sets a key's time to live in milliseconds."
    ),
    spec!(
        "expireat",
        -3,
        W,
        1,
        1,
        1,
        "generic",
        "Sets a key's expiry as a Unix time in seconds."
    ),
    spec!(
        "pexpireat",
        -3,
        W,
        1,
        1,
        1,
        "generic",
        "Sets a key's expiry as a Unix time in milliseconds."
    ),
    spec!(
        "expiretime",
        2,
        R,
        1,
        1,
        1,
        "generic",
        "Returns a key's expiry as a Unix time in seconds."
    ),
    spec!(
        "pexpiretime",
        2,
        R,
        1,
        1,
        1,
        "generic",
        "Returns a key's expiry as a Unix time in milliseconds."
    ),
    spec!(
        "ttl",
        2,
        R,
        1,
        1,
        1,
        "generic",
        "Returns a key's time to live in seconds."
    ),
    spec!(
        "pttl",
        2,
        R,
        1,
        1,
        1,
        "generic",
        "Returns a key's time to live in milliseconds."
    ),
    spec!(
        "persist",
        2,
        W,
        1,
        1,
        1,
        "generic",
        "Removes a key's expiry."
    ),
    spec!(
        "keys",
        2,
        RS,
        0,
        0,
        0,
        "generic",
        "Returns the keys of this node that match a pattern."
    ),
    spec!(
        "scan",
        -2,
        RS,
        0,
        0,
        0,
        "generic",
        "Iterates over the keys of this node."
    ),
    spec!(
        "randomkey",
        1,
        RS,
        0,
        0,
        0,
        "generic",
        "Returns a random key of this node."
    ),
    spec!(
        "multi",
        1,
        F,
        0,
        0,
        0,
        "transactions",
        "Starts a batch (queued, run in order, not isolated)."
    ),
    spec!(
        "exec",
        1,
        &[],
        0,
        0,
        0,
        "transactions",
        "Runs the queued commands in order."
    ),
    spec!(
        "discard",
        1,
        F,
        0,
        0,
        0,
        "transactions",
        "Discards the queued commands."
    ),
    spec!(
        "watch",
        -2,
        F,
        1,
        -1,
        1,
        "transactions",
        "Best effort: EXEC aborts if a watched key's versions changed."
    ),
    spec!(
        "unwatch",
        1,
        F,
        0,
        0,
        0,
        "transactions",
        "Forgets the watched keys."
    ),
    spec!(
        "dget",
        2,
        R,
        1,
        1,
        1,
        "dynamo",
        "Returns every concurrent version of a key and the causal context."
    ),
    spec!(
        "dput",
        4,
        WD,
        1,
        1,
        1,
        "dynamo",
        "Writes a value superseding the versions the context covers."
    ),
    spec!(
        "ddel",
        3,
        W,
        1,
        1,
        1,
        "dynamo",
        "Writes a tombstone superseding the versions the context covers."
    ),
    spec!(
        "dynamo",
        -2,
        A,
        0,
        0,
        0,
        "dynamo",
        "Cluster administration: STATUS, RING, MEMBERS, OWNERS, LOCALGET, JOIN, LEAVE, REMOVE, WEIGHT, PLAN."
    ),
];

/// Looks a command up by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    position(name).map(|i| &COMMANDS[i])
}

/// The command's index in [`COMMANDS`] (metrics keep one slot per command).
pub fn position(name: &[u8]) -> Option<usize> {
    COMMANDS
        .iter()
        .position(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}
