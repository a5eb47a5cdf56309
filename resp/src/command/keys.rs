//! Parsers for the generic key commands: deletion, expiry, iteration, and
//! the Dynamo data commands.

use bytes::Bytes;

use super::{Command, Expiry};
use crate::{args::Args, error::CommandError};

/// `EXPIRE` flags (Redis 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpireCondition {
    /// No flag.
    #[default]
    Always,
    /// `NX`: only if the key has no expiry.
    IfNoExpiry,
    /// `XX`: only if the key has an expiry.
    IfExpiry,
    /// `GT`: only if the new expiry is later.
    IfGreater,
    /// `LT`: only if the new expiry is earlier.
    IfLess,
}

/// `EXPIRE key seconds [NX|XX|GT|LT]` and its millisecond / absolute forms.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpireCmd {
    /// The key.
    pub key: Bytes,
    /// The new expiry (may be in the past: the key is then deleted).
    pub expiry: Expiry,
    /// The flag.
    pub condition: ExpireCondition,
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
#[derive(Debug, Clone, PartialEq)]
pub struct ScanCmd {
    /// Where to resume (0 starts).
    pub cursor: u64,
    /// Glob the keys must match.
    pub pattern: Option<Bytes>,
    /// About how many keys to look at.
    pub count: usize,
    /// Only keys of this type (only `string` exists).
    pub type_filter: Option<String>,
}

/// Parses the key commands; `None` if `name` is not one of them.
pub(super) fn parse(name: &str, args: &mut Args) -> Option<Result<Command, CommandError>> {
    let result = match name {
        "del" | "unlink" => Ok(Command::Del(args.rest())),
        "exists" => Ok(Command::Exists(args.rest())),
        "type" => args.bytes().map(Command::Type),
        "expire" | "pexpire" | "expireat" | "pexpireat" => parse_expire(name, args),
        "ttl" | "pttl" => args.bytes().map(|key| Command::Ttl {
            key,
            millis: name == "pttl",
        }),
        "expiretime" | "pexpiretime" => args.bytes().map(|key| Command::ExpireTime {
            key,
            millis: name == "pexpiretime",
        }),
        "persist" => args.bytes().map(Command::Persist),
        "keys" => args.bytes().map(Command::Keys),
        "scan" => parse_scan(args),
        "randomkey" => Ok(Command::RandomKey),
        "dget" => args.bytes().map(Command::DGet),
        "dput" => (|| {
            Ok(Command::DPut {
                key: args.bytes()?,
                context: args.bytes()?,
                value: args.bytes()?,
            })
        })(),
        "ddel" => (|| {
            Ok(Command::DDel {
                key: args.bytes()?,
                context: args.bytes()?,
            })
        })(),
        _ => return None,
    };
    Some(result)
}

fn parse_expire(name: &str, args: &mut Args) -> Result<Command, CommandError> {
    let key = args.bytes()?;
    let amount = args.int()?;
    let overflow = || CommandError::InvalidExpire(name.to_string());
    let expiry = match name {
        "expire" => Expiry::In(amount.checked_mul(1000).ok_or_else(overflow)?),
        "pexpire" => Expiry::In(amount),
        "expireat" => Expiry::At(amount.checked_mul(1000).ok_or_else(overflow)?),
        _ => Expiry::At(amount),
    };
    let mut flags = Vec::new();
    while args.remaining() > 0 {
        let flag = args.keyword()?;
        if !matches!(flag.as_str(), "NX" | "XX" | "GT" | "LT") {
            return Err(CommandError::err(format!("Unsupported option {flag}")));
        }
        flags.push(flag);
    }
    let has = |f: &str| flags.iter().any(|x| x == f);
    if has("NX") && (has("XX") || has("GT") || has("LT")) {
        return Err(CommandError::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if has("GT") && has("LT") {
        return Err(CommandError::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    let condition = if has("NX") {
        ExpireCondition::IfNoExpiry
    } else if has("GT") {
        ExpireCondition::IfGreater
    } else if has("LT") {
        ExpireCondition::IfLess
    } else if has("XX") {
        ExpireCondition::IfExpiry
    } else {
        ExpireCondition::Always
    };
    Ok(Command::Expire(ExpireCmd {
        key,
        expiry,
        condition,
    }))
}

fn parse_scan(args: &mut Args) -> Result<Command, CommandError> {
    let cursor = std::str::from_utf8(&args.bytes()?)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| CommandError::err("invalid cursor"))?;
    let mut scan = ScanCmd {
        cursor,
        pattern: None,
        count: 10,
        type_filter: None,
    };
    while args.remaining() > 0 {
        match args.keyword()?.as_str() {
            "MATCH" => scan.pattern = Some(args.bytes()?),
            "COUNT" => {
                let count = args.int()?;
                if count < 1 {
                    return Err(CommandError::Syntax);
                }
                scan.count = count.min(100_000) as usize;
            }
            "TYPE" => scan.type_filter = Some(args.string()?.to_ascii_lowercase()),
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(Command::Scan(scan))
}
