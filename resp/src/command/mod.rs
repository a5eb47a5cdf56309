//! Typed commands: one variant per command, parsed from a request.
//!
//! [`Command::parse`] looks the name up in the [`table`], checks arity, then
//! hands the arguments to the parser of the command's family. Relative TTLs
//! stay relative here; the server turns them into absolute times with its
//! clock.

mod admin;
mod keys;
mod strings;
pub mod table;

use bytes::Bytes;

pub use admin::{ClientCmd, CommandCmd, ConfigCmd, DynamoCmd, Hello, PlanCmd, SlowlogCmd};
pub use keys::{ExpireCmd, ExpireCondition, ScanCmd};
pub use strings::{GetExOption, SetCmd, SetCondition};

use crate::{args::Args, error::CommandError};

/// When a value expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// In this many milliseconds from now.
    In(i64),
    /// At this Unix time in milliseconds.
    At(i64),
}

/// A parsed client command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `PING [message]`
    Ping(Option<Bytes>),
    /// `ECHO message`
    Echo(Bytes),
    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
    Hello(Hello),
    /// `AUTH [username] password`
    Auth {
        username: Option<Bytes>,
        password: Bytes,
    },
    /// `QUIT`
    Quit,
    /// `RESET`
    Reset,
    /// `SELECT index`
    Select(i64),
    /// `CLIENT subcommand ...`
    Client(ClientCmd),
    /// `COMMAND [subcommand ...]`
    Command(CommandCmd),
    /// `CONFIG subcommand ...`
    Config(ConfigCmd),
    /// `INFO [section ...]`
    Info(Vec<String>),
    /// `TIME`
    Time,
    /// `SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]`
    Shutdown {
        /// `ABORT`: cancel a shutdown in progress (there never is one to
        /// cancel: shutdown starts at once).
        abort: bool,
    },
    /// `SLOWLOG GET | LEN | RESET | HELP`
    Slowlog(SlowlogCmd),
    /// `DBSIZE`
    DbSize,
    /// `FLUSHALL [ASYNC|SYNC]` / `FLUSHDB [ASYNC|SYNC]`
    FlushAll,
    /// `TYPE key`
    Type(Bytes),
    /// `GET key`
    Get(Bytes),
    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`,
    /// and SETNX, SETEX, PSETEX, GETSET, which are forms of it.
    Set(SetCmd),
    /// `GETDEL key`
    GetDel(Bytes),
    /// `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`
    GetEx { key: Bytes, option: GetExOption },
    /// `MGET key [key ...]`
    MGet(Vec<Bytes>),
    /// `MSET key value [key value ...]`; `MSETNX` when `only_if_none_exist`.
    MSet {
        pairs: Vec<(Bytes, Bytes)>,
        only_if_none_exist: bool,
    },
    /// `DEL key [key ...]` / `UNLINK key [key ...]`
    Del(Vec<Bytes>),
    /// `EXISTS key [key ...]`
    Exists(Vec<Bytes>),
    /// `STRLEN key`
    Strlen(Bytes),
    /// `APPEND key value`
    Append { key: Bytes, value: Bytes },
    /// `GETRANGE key start end`
    GetRange { key: Bytes, start: i64, end: i64 },
    /// `SETRANGE key offset value`
    SetRange {
        key: Bytes,
        offset: i64,
        value: Bytes,
    },
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`
    IncrBy { key: Bytes, delta: i64 },
    /// `INCRBYFLOAT key increment`
    IncrByFloat { key: Bytes, delta: f64 },
    /// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`
    Expire(ExpireCmd),
    /// `TTL` / `PTTL` (`millis`)
    Ttl { key: Bytes, millis: bool },
    /// `EXPIRETIME` / `PEXPIRETIME` (`millis`)
    ExpireTime { key: Bytes, millis: bool },
    /// `PERSIST key`
    Persist(Bytes),
    /// `KEYS pattern`
    Keys(Bytes),
    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
    Scan(ScanCmd),
    /// `RANDOMKEY`
    RandomKey,
    /// `MULTI`
    Multi,
    /// `EXEC`
    Exec,
    /// `DISCARD`
    Discard,
    /// `WATCH key [key ...]`
    Watch(Vec<Bytes>),
    /// `UNWATCH`
    Unwatch,
    /// `DGET key`
    DGet(Bytes),
    /// `DPUT key context value`
    DPut {
        key: Bytes,
        context: Bytes,
        value: Bytes,
    },
    /// `DDEL key context`
    DDel { key: Bytes, context: Bytes },
    /// `DYNAMO subcommand ...`
    Dynamo(DynamoCmd),
}

impl Command {
    /// Parses a request (command name first).
    pub fn parse(request: Vec<Bytes>) -> Result<Command, CommandError> {
        Command::parse_ref(&request)
    }

    /// Parses a request the caller keeps (arguments are shared, not copied).
    pub fn parse_ref(request: &[Bytes]) -> Result<Command, CommandError> {
        Command::parse_indexed(request).1
    }

    /// Parses a request, also returning the command's index in
    /// [`table::COMMANDS`] when the name is known.
    pub fn parse_indexed(request: &[Bytes]) -> (Option<usize>, Result<Command, CommandError>) {
        let Some((name, rest)) = request.split_first() else {
            return (None, Err(CommandError::Syntax));
        };
        let Some(index) = table::position(name) else {
            return (None, Err(unknown_command(name, rest)));
        };
        (
            Some(index),
            Command::parse_known(&table::COMMANDS[index], rest),
        )
    }

    fn parse_known(spec: &table::CommandSpec, rest: &[Bytes]) -> Result<Command, CommandError> {
        if !spec.arity_ok(rest.len() + 1) {
            return Err(CommandError::WrongArity(spec.name.to_string()));
        }
        let mut args = Args::new(rest);
        let command = match spec.name {
            "ping" if args.remaining() > 1 => return Err(CommandError::WrongArity("ping".into())),
            "ping" => Command::Ping(args.next_opt()),
            "echo" => Command::Echo(args.bytes()?),
            "hello" => Command::Hello(admin::parse_hello(&mut args)?),
            "auth" => admin::parse_auth(&mut args)?,
            "quit" => Command::Quit,
            "reset" => Command::Reset,
            "select" => Command::Select(args.int()?),
            "client" => Command::Client(admin::parse_client(&mut args)?),
            "command" => Command::Command(admin::parse_command(&mut args)?),
            "config" => Command::Config(admin::parse_config(&mut args)?),
            "info" => Command::Info(args.rest().iter().map(|s| lossy_lower(s)).collect()),
            "time" => Command::Time,
            "shutdown" => admin::parse_shutdown(&mut args)?,
            "slowlog" => Command::Slowlog(admin::parse_slowlog(&mut args)?),
            "dbsize" => Command::DbSize,
            "flushall" | "flushdb" => admin::parse_flush(&mut args)?,
            "dynamo" => Command::Dynamo(admin::parse_dynamo(&mut args)?),
            "multi" => Command::Multi,
            "exec" => Command::Exec,
            "discard" => Command::Discard,
            "watch" => Command::Watch(args.rest()),
            "unwatch" => Command::Unwatch,
            name => keys::parse(name, &mut args)
                .or_else(|| strings::parse(name, &mut args))
                .unwrap_or_else(|| {
                    Err(CommandError::err(format!("command '{name}' has no parser")))
                })?,
        };
        args.finish()?;
        Ok(command)
    }

    /// The one key of a data command that touches exactly one key and
    /// nothing else (no connection or server state), `None` otherwise. Such
    /// commands on distinct keys may run concurrently without a client
    /// seeing a difference in their replies.
    pub fn single_key(&self) -> Option<&Bytes> {
        match self {
            Command::Get(key)
            | Command::Type(key)
            | Command::GetDel(key)
            | Command::GetEx { key, .. }
            | Command::Strlen(key)
            | Command::Append { key, .. }
            | Command::GetRange { key, .. }
            | Command::SetRange { key, .. }
            | Command::IncrBy { key, .. }
            | Command::IncrByFloat { key, .. }
            | Command::Ttl { key, .. }
            | Command::ExpireTime { key, .. }
            | Command::Persist(key)
            | Command::DGet(key)
            | Command::DPut { key, .. }
            | Command::DDel { key, .. } => Some(key),
            Command::Set(cmd) => Some(&cmd.key),
            Command::Expire(cmd) => Some(&cmd.key),
            Command::Del(keys) | Command::Exists(keys) | Command::MGet(keys) if keys.len() == 1 => {
                keys.first()
            }
            _ => None,
        }
    }

    /// Whether the command may run while the connection is not authenticated.
    pub fn allowed_before_auth(&self) -> bool {
        matches!(
            self,
            Command::Auth { .. } | Command::Hello(_) | Command::Quit | Command::Reset
        )
    }
}

/// Redis's text for an unknown command, quoting the first arguments.
fn unknown_command(name: &[u8], rest: &[Bytes]) -> CommandError {
    let args = rest
        .iter()
        .take(3)
        .map(|a| format!("'{}' ", truncate_lossy(a, 128)))
        .collect::<String>();
    CommandError::UnknownCommand {
        name: truncate_lossy(name, 128),
        args,
    }
}

fn truncate_lossy(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

fn lossy_lower(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Command, CommandError> {
        Command::parse(words.iter().map(|w| Bytes::from(w.to_string())).collect())
    }

    #[test]
    fn arity_and_unknown() {
        assert_eq!(parse(&["GET"]), Err(CommandError::WrongArity("get".into())));
        assert!(matches!(
            parse(&["NOPE", "a"]),
            Err(CommandError::UnknownCommand { .. })
        ));
        assert_eq!(parse(&["get", "k"]), Ok(Command::Get(Bytes::from("k"))));
    }

    #[test]
    fn set_options() {
        let Command::Set(set) = parse(&["SET", "k", "v", "NX", "PX", "100", "GET"]).unwrap() else {
            panic!("not a SET");
        };
        assert_eq!(set.condition, SetCondition::IfAbsent);
        assert_eq!(set.expiry, Some(Expiry::In(100)));
        assert!(set.get);
        assert_eq!(
            parse(&["SET", "k", "v", "NX", "XX"]),
            Err(CommandError::Syntax)
        );
        assert_eq!(
            parse(&["SET", "k", "v", "EX", "abc"]),
            Err(CommandError::NotInteger)
        );
        assert_eq!(
            parse(&["SET", "k", "v", "EX", "0"]),
            Err(CommandError::InvalidExpire("set".into()))
        );
    }
}
