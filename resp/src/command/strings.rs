//! Parsers for the string commands.

use bytes::Bytes;

use super::{Command, Expiry};
use crate::{args::Args, error::CommandError};

/// When a SET applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetCondition {
    /// Always.
    #[default]
    Always,
    /// `NX`: only if the key has no value.
    IfAbsent,
    /// `XX`: only if the key has a value.
    IfPresent,
}

/// `SET` and the commands that are forms of it.
#[derive(Debug, Clone, PartialEq)]
pub struct SetCmd {
    /// The key.
    pub key: Bytes,
    /// The new value.
    pub value: Bytes,
    /// New expiry; `None` clears any expiry unless `keep_ttl`.
    pub expiry: Option<Expiry>,
    /// `KEEPTTL`: keep the current expiry.
    pub keep_ttl: bool,
    /// `NX` / `XX`.
    pub condition: SetCondition,
    /// `GET`: answer with the previous value.
    pub get: bool,
    /// Reply with `:1`/`:0` instead of `+OK`/nil (SETNX).
    pub reply_as_int: bool,
}

impl SetCmd {
    /// A plain `SET key value`: no options.
    pub fn plain(key: Bytes, value: Bytes) -> SetCmd {
        SetCmd {
            key,
            value,
            expiry: None,
            keep_ttl: false,
            condition: SetCondition::Always,
            get: false,
            reply_as_int: false,
        }
    }

    /// Whether the write depends on nothing stored: no NX/XX, GET or
    /// KEEPTTL, so it can be sent without reading the key first.
    pub fn is_plain(&self) -> bool {
        self.condition == SetCondition::Always && !self.get && !self.keep_ttl
    }
}

/// What GETEX does to the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetExOption {
    /// Leave it.
    Keep,
    /// Set a new one.
    Set(Expiry),
    /// `PERSIST`: remove it.
    Persist,
}

/// Parses the string commands; `None` if `name` is not one of them.
pub(super) fn parse(name: &str, args: &mut Args) -> Option<Result<Command, CommandError>> {
    let result = match name {
        "get" => args.bytes().map(Command::Get),
        "set" => parse_set(args),
        "setnx" => two(args).map(|(key, value)| {
            Command::Set(SetCmd {
                condition: SetCondition::IfAbsent,
                reply_as_int: true,
                ..SetCmd::plain(key, value)
            })
        }),
        "setex" | "psetex" => parse_setex(name, args),
        "getset" => two(args).map(|(key, value)| {
            Command::Set(SetCmd {
                get: true,
                ..SetCmd::plain(key, value)
            })
        }),
        "getdel" => args.bytes().map(Command::GetDel),
        "getex" => parse_getex(args),
        "mget" => Ok(Command::MGet(args.rest())),
        "mset" | "msetnx" => parse_mset(name, args),
        "strlen" => args.bytes().map(Command::Strlen),
        "append" => two(args).map(|(key, value)| Command::Append { key, value }),
        "getrange" | "substr" => (|| {
            Ok(Command::GetRange {
                key: args.bytes()?,
                start: args.int()?,
                end: args.int()?,
            })
        })(),
        "setrange" => (|| {
            Ok(Command::SetRange {
                key: args.bytes()?,
                offset: args.int()?,
                value: args.bytes()?,
            })
        })(),
        "incr" => args.bytes().map(|key| Command::IncrBy { key, delta: 1 }),
        "decr" => args.bytes().map(|key| Command::IncrBy { key, delta: -1 }),
        "incrby" => (|| {
            Ok(Command::IncrBy {
                key: args.bytes()?,
                delta: args.int()?,
            })
        })(),
        "decrby" => (|| {
            let key = args.bytes()?;
            let delta = args
                .int()?
                .checked_neg()
                .ok_or(CommandError::err("decrement would overflow"))?;
            Ok(Command::IncrBy { key, delta })
        })(),
        "incrbyfloat" => (|| {
            Ok(Command::IncrByFloat {
                key: args.bytes()?,
                delta: args.float()?,
            })
        })(),
        _ => return None,
    };
    Some(result)
}

fn two(args: &mut Args) -> Result<(Bytes, Bytes), CommandError> {
    Ok((args.bytes()?, args.bytes()?))
}

/// Reads a TTL argument for `cmd`: must be positive, and in milliseconds must
/// not overflow.
pub(super) fn ttl_arg(args: &mut Args, cmd: &str, unit_ms: i64) -> Result<i64, CommandError> {
    let value = args.int()?;
    if value <= 0 {
        return Err(CommandError::InvalidExpire(cmd.to_string()));
    }
    value
        .checked_mul(unit_ms)
        .ok_or_else(|| CommandError::InvalidExpire(cmd.to_string()))
}

/// Parses `EX s | PX ms | EXAT s | PXAT ms` given the upper-cased keyword.
fn expiry_option(
    keyword: &str,
    args: &mut Args,
    cmd: &str,
) -> Result<Option<Expiry>, CommandError> {
    Ok(Some(match keyword {
        "EX" => Expiry::In(ttl_arg(args, cmd, 1000)?),
        "PX" => Expiry::In(ttl_arg(args, cmd, 1)?),
        "EXAT" => Expiry::At(ttl_arg(args, cmd, 1000)?),
        "PXAT" => Expiry::At(ttl_arg(args, cmd, 1)?),
        _ => return Ok(None),
    }))
}

fn parse_set(args: &mut Args) -> Result<Command, CommandError> {
    let (key, value) = two(args)?;
    let mut set = SetCmd::plain(key, value);
    while args.remaining() > 0 {
        let keyword = args.keyword()?;
        match keyword.as_str() {
            "NX" if set.condition == SetCondition::Always => set.condition = SetCondition::IfAbsent,
            "XX" if set.condition == SetCondition::Always => {
                set.condition = SetCondition::IfPresent
            }
            "GET" => set.get = true,
            "KEEPTTL" if set.expiry.is_none() => set.keep_ttl = true,
            _ if set.expiry.is_none() && !set.keep_ttl => {
                match expiry_option(&keyword, args, "set")? {
                    Some(expiry) => set.expiry = Some(expiry),
                    None => return Err(CommandError::Syntax),
                }
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(Command::Set(set))
}

fn parse_setex(name: &str, args: &mut Args) -> Result<Command, CommandError> {
    let key = args.bytes()?;
    let unit = if name == "setex" { 1000 } else { 1 };
    let ms = ttl_arg(args, name, unit)?;
    let value = args.bytes()?;
    Ok(Command::Set(SetCmd {
        expiry: Some(Expiry::In(ms)),
        ..SetCmd::plain(key, value)
    }))
}

fn parse_getex(args: &mut Args) -> Result<Command, CommandError> {
    let key = args.bytes()?;
    let option = match args.remaining() {
        0 => GetExOption::Keep,
        _ => {
            let keyword = args.keyword()?;
            if keyword == "PERSIST" {
                GetExOption::Persist
            } else {
                let expiry = expiry_option(&keyword, args, "getex")?.ok_or(CommandError::Syntax)?;
                GetExOption::Set(expiry)
            }
        }
    };
    Ok(Command::GetEx { key, option })
}

fn parse_mset(name: &str, args: &mut Args) -> Result<Command, CommandError> {
    if !args.remaining().is_multiple_of(2) {
        return Err(CommandError::WrongArity(name.to_string()));
    }
    let mut pairs = Vec::with_capacity(args.remaining() / 2);
    while args.remaining() > 0 {
        pairs.push(two(args)?);
    }
    Ok(Command::MSet {
        pairs,
        only_if_none_exist: name == "msetnx",
    })
}
