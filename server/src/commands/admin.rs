//! Server commands: INFO, CONFIG, COMMAND, TIME.

use bytes::Bytes;
use resp::{
    command::{
        table::{CommandSpec, COMMANDS},
        CommandCmd, ConfigCmd,
    },
    glob, Reply,
};

use crate::{info, state::ServerState};

/// `TIME`: seconds and microseconds.
pub fn time(now_ms: u64) -> Reply {
    Reply::Array(vec![
        Reply::bulk((now_ms / 1000).to_string()),
        Reply::bulk(((now_ms % 1000) * 1000).to_string()),
    ])
}

/// `INFO [section ...]`
pub fn info(state: &ServerState, sections: &[String]) -> Reply {
    Reply::Verbatim(info::render(state, sections))
}

/// Options CONFIG SET may change while the server runs.
const RUNTIME_OPTIONS: &[&str] = &[
    "requirepass",
    "maxclients",
    "proto-max-bulk-len",
    "max-value-bytes",
    "max-key-bytes",
    "max-siblings",
    "timeout",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "protected-mode",
];

/// Redis options that clients and tools ask for, with fixed answers that are
/// true of this server (no RDB snapshots, no AOF, one database).
const REDIS_COMPAT_OPTIONS: &[(&str, &str)] =
    &[("save", ""), ("appendonly", "no"), ("databases", "1")];

/// `CONFIG GET | SET | RESETSTAT`
pub fn config(state: &ServerState, cmd: ConfigCmd) -> Reply {
    match cmd {
        ConfigCmd::Get(patterns) => {
            let config = state.config();
            let mut pairs = Vec::new();
            let entries = config
                .entries()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v));
            let compat = REDIS_COMPAT_OPTIONS
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()));
            for (name, value) in entries.chain(compat) {
                let wanted = patterns
                    .iter()
                    .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()));
                if wanted {
                    pairs.push((Reply::bulk(name), Reply::bulk(value)));
                }
            }
            Reply::Map(pairs)
        }
        ConfigCmd::Set(pairs) => config_set(state, pairs),
        ConfigCmd::ResetStat => {
            state.stats.reset();
            Reply::Ok
        }
    }
}

fn config_set(state: &ServerState, pairs: Vec<(String, String)>) -> Reply {
    let mut config = state.config();
    for (name, value) in pairs {
        if !RUNTIME_OPTIONS.contains(&name.as_str()) {
            return Reply::err(format!(
                "CONFIG SET failed (possibly related to argument '{name}') - not a runtime option (runtime options: {})",
                RUNTIME_OPTIONS.join(", ")
            ));
        }
        let parse = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("argument '{name}' must be a non-negative integer"))
        };
        let applied = match name.as_str() {
            "requirepass" => {
                config.requirepass = value;
                Ok(())
            }
            "maxclients" => parse(&value).map(|v| config.maxclients = v),
            "proto-max-bulk-len" => parse(&value).map(|v| config.proto_max_bulk_len = v),
            "max-value-bytes" => parse(&value).map(|v| config.max_value_bytes = v),
            "max-key-bytes" => parse(&value).map(|v| config.max_key_bytes = v),
            "max-siblings" => parse(&value).map(|v| config.max_siblings = v),
            "slowlog-max-len" => parse(&value).map(|v| config.slowlog_max_len = v),
            "protected-mode" => match value.to_ascii_lowercase().as_str() {
                "yes" => Ok(true),
                "no" => Ok(false),
                _ => Err(format!("argument '{name}' must be yes or no")),
            }
            .map(|on| config.protected_mode = on),
            "slowlog-log-slower-than" => value
                .parse::<i64>()
                .map(|v| config.slowlog_log_slower_than = v)
                .map_err(|_| format!("argument '{name}' must be an integer")),
            _ => parse(&value).map(|v| config.timeout = v as u64),
        };
        if let Err(e) = applied {
            return Reply::err(format!(
                "CONFIG SET failed (possibly related to argument '{name}') - {e}"
            ));
        }
    }
    if let Err(e) = config.validate() {
        return Reply::err(format!("CONFIG SET failed - {e}"));
    }
    state.set_config(config);
    Reply::Ok
}

/// `COMMAND [COUNT | LIST | INFO ... | DOCS ...]`
pub fn command(cmd: CommandCmd) -> Reply {
    match cmd {
        CommandCmd::All => Reply::Array(COMMANDS.iter().map(command_info_reply).collect()),
        CommandCmd::Count => Reply::Int(COMMANDS.len() as i64),
        CommandCmd::List => Reply::Array(COMMANDS.iter().map(|c| Reply::bulk(c.name)).collect()),
        CommandCmd::Info(names) if names.is_empty() => {
            Reply::Array(COMMANDS.iter().map(command_info_reply).collect())
        }
        CommandCmd::Info(names) => Reply::Array(
            names
                .iter()
                .map(|n| {
                    resp::command::table::lookup(n.as_bytes())
                        .map_or(Reply::Nil, command_info_reply)
                })
                .collect(),
        ),
        CommandCmd::Docs(names) => {
            let wanted: Vec<&CommandSpec> = if names.is_empty() {
                COMMANDS.iter().collect()
            } else {
                names
                    .iter()
                    .filter_map(|n| resp::command::table::lookup(n.as_bytes()))
                    .collect()
            };
            Reply::Map(
                wanted
                    .into_iter()
                    .map(|c| (Reply::bulk(c.name), command_docs_reply(c)))
                    .collect(),
            )
        }
    }
}

/// One command in COMMAND INFO's shape.
pub fn command_info_reply(spec: &CommandSpec) -> Reply {
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Int(spec.arity),
        Reply::Set(
            spec.flags
                .iter()
                .map(|f| Reply::Simple(f.to_string()))
                .collect(),
        ),
        Reply::Int(spec.first_key),
        Reply::Int(spec.last_key),
        Reply::Int(spec.step),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// One command in COMMAND DOCS's shape.
pub fn command_docs_reply(spec: &CommandSpec) -> Reply {
    let text = |s: &'static str| Reply::Bulk(Bytes::from_static(s.as_bytes()));
    Reply::Map(vec![
        (text("summary"), text(spec.summary)),
        (text("since"), text("1.0.0")),
        (text("group"), text(spec.group)),
    ])
}
