//! Parsers for connection, server and cluster administration commands.

use bytes::Bytes;

use super::Command;
use crate::{args::Args, error::CommandError};

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hello {
    /// Requested protocol version, if given.
    pub protover: Option<i64>,
    /// `AUTH username password`.
    pub auth: Option<(Bytes, Bytes)>,
    /// `SETNAME clientname`.
    pub setname: Option<Bytes>,
}

/// `CLIENT` subcommands.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientCmd {
    /// `CLIENT ID`
    Id,
    /// `CLIENT SETNAME name`
    SetName(Bytes),
    /// `CLIENT GETNAME`
    GetName,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`
    SetInfo { attribute: String, value: Bytes },
    /// `CLIENT INFO`
    Info,
    /// `CLIENT LIST`
    List,
    /// `CLIENT HELP`
    Help,
}

/// `COMMAND` subcommands.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandCmd {
    /// `COMMAND`: info on every command.
    All,
    /// `COMMAND COUNT`
    Count,
    /// `COMMAND LIST`
    List,
    /// `COMMAND INFO [name ...]`
    Info(Vec<String>),
    /// `COMMAND DOCS [name ...]`
    Docs(Vec<String>),
}

/// `CONFIG` subcommands.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigCmd {
    /// `CONFIG GET pattern [pattern ...]`
    Get(Vec<Bytes>),
    /// `CONFIG SET name value [name value ...]`
    Set(Vec<(String, String)>),
    /// `CONFIG RESETSTAT`
    ResetStat,
}

/// `SLOWLOG` subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowlogCmd {
    /// `SLOWLOG GET [count]`: the newest `count` entries (10 by default,
    /// every entry for a negative count).
    Get(Option<usize>),
    /// `SLOWLOG LEN`
    Len,
    /// `SLOWLOG RESET`
    Reset,
    /// `SLOWLOG HELP`
    Help,
}

/// `DYNAMO` subcommands.
#[derive(Debug, Clone, PartialEq)]
pub enum DynamoCmd {
    /// `DYNAMO STATUS`: this node's view of the cluster and its work.
    Status,
    /// `DYNAMO RING`: partitions and their owners.
    Ring,
    /// `DYNAMO MEMBERS`: the members this node knows.
    Members,
    /// `DYNAMO LOCALGET key`: this node's own stored versions.
    LocalGet(Bytes),
    /// `DYNAMO JOIN host:peer-port`
    Join(String),
    /// `DYNAMO LEAVE`
    Leave,
    /// `DYNAMO REMOVE node-id`
    Remove(String),
    /// `DYNAMO WEIGHT node-id weight`
    Weight(String, u32),
    /// `DYNAMO OWNERS key`: the key's replicas in the ring reads use.
    Owners(Bytes),
    /// `DYNAMO PLAN ...`: what a change would move, without making it.
    Plan(PlanCmd),
}

/// The change `DYNAMO PLAN` previews.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanCmd {
    /// `PLAN JOIN [weight]`: one more node (default weight 1).
    Join(u32),
    /// `PLAN LEAVE [node-id]`: this node (or that one) leaves.
    Leave(Option<String>),
    /// `PLAN REMOVE node-id`
    Remove(String),
    /// `PLAN WEIGHT node-id weight`
    Weight(String, u32),
}

fn weight_arg(args: &mut Args) -> Result<u32, CommandError> {
    let w = args.int()?;
    u32::try_from(w)
        .ok()
        .filter(|w| *w <= 1_000_000)
        .ok_or_else(|| {
            CommandError::Other("ERR weight must be an integer from 0 to 1000000".into())
        })
}

fn parse_plan(args: &mut Args) -> Result<PlanCmd, CommandError> {
    let sub = args.keyword()?;
    Ok(match sub.as_str() {
        "JOIN" => match args.remaining() {
            0 => PlanCmd::Join(1),
            _ => PlanCmd::Join(weight_arg(args)?),
        },
        "LEAVE" => match args.remaining() {
            0 => PlanCmd::Leave(None),
            _ => PlanCmd::Leave(Some(args.string()?)),
        },
        "REMOVE" => PlanCmd::Remove(args.string()?),
        "WEIGHT" => {
            let id = args.string()?;
            PlanCmd::Weight(id, weight_arg(args)?)
        }
        other => return Err(unknown_sub("DYNAMO PLAN", other)),
    })
}

pub(super) fn parse_hello(args: &mut Args) -> Result<Hello, CommandError> {
    let mut hello = Hello::default();
    if args.remaining() == 0 {
        return Ok(hello);
    }
    hello.protover = Some(args.int().map_err(|_| {
        CommandError::Other("ERR Protocol version is not an integer or out of range".into())
    })?);
    while args.remaining() > 0 {
        let option = args.string()?;
        match option.to_ascii_uppercase().as_str() {
            "AUTH" if args.remaining() >= 2 => hello.auth = Some((args.bytes()?, args.bytes()?)),
            "SETNAME" if args.remaining() >= 1 => hello.setname = Some(args.bytes()?),
            _ => {
                return Err(CommandError::err(format!(
                    "Syntax error in HELLO option '{option}'"
                )))
            }
        }
    }
    Ok(hello)
}

pub(super) fn parse_auth(args: &mut Args) -> Result<Command, CommandError> {
    match args.remaining() {
        1 => Ok(Command::Auth {
            username: None,
            password: args.bytes()?,
        }),
        2 => Ok(Command::Auth {
            username: Some(args.bytes()?),
            password: args.bytes()?,
        }),
        _ => Err(CommandError::Syntax),
    }
}

pub(super) fn parse_flush(args: &mut Args) -> Result<Command, CommandError> {
    if args.remaining() > 0 && !matches!(args.keyword()?.as_str(), "ASYNC" | "SYNC") {
        return Err(CommandError::Syntax);
    }
    Ok(Command::FlushAll)
}

/// `SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]`: every write is already
/// on disk (or flushed on the way out), so the save options change nothing.
pub(super) fn parse_shutdown(args: &mut Args) -> Result<Command, CommandError> {
    let mut abort = false;
    while args.remaining() > 0 {
        match args.keyword()?.as_str() {
            "NOSAVE" | "SAVE" | "NOW" | "FORCE" => {}
            "ABORT" => abort = true,
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(Command::Shutdown { abort })
}

pub(super) fn parse_slowlog(args: &mut Args) -> Result<SlowlogCmd, CommandError> {
    let sub = args.keyword()?;
    match sub.as_str() {
        "GET" => match args.next_opt() {
            None => Ok(SlowlogCmd::Get(Some(10))),
            Some(raw) => match crate::args::parse_int(&raw)? {
                n if n < -1 => Err(CommandError::err(
                    "count should be greater than or equal to -1",
                )),
                -1 => Ok(SlowlogCmd::Get(None)),
                n => Ok(SlowlogCmd::Get(Some(n as usize))),
            },
        },
        "LEN" => sub_arity(args, "SLOWLOG", &sub, 0).map(|_| SlowlogCmd::Len),
        "RESET" => sub_arity(args, "SLOWLOG", &sub, 0).map(|_| SlowlogCmd::Reset),
        "HELP" => Ok(SlowlogCmd::Help),
        other => Err(unknown_sub("SLOWLOG", other)),
    }
}

fn unknown_sub(cmd: &str, sub: &str) -> CommandError {
    CommandError::UnknownSubcommand {
        cmd: cmd.to_string(),
        sub: sub.to_string(),
    }
}

fn sub_arity(args: &Args, cmd: &str, sub: &str, expected: usize) -> Result<(), CommandError> {
    if args.remaining() == expected {
        Ok(())
    } else {
        Err(CommandError::WrongArity(format!(
            "{}|{}",
            cmd.to_lowercase(),
            sub.to_lowercase()
        )))
    }
}

pub(super) fn parse_client(args: &mut Args) -> Result<ClientCmd, CommandError> {
    let sub = args.keyword()?;
    let no_args = |cmd: ClientCmd| sub_arity(args, "client", &sub, 0).map(|_| cmd);
    let cmd = match sub.as_str() {
        "ID" => no_args(ClientCmd::Id)?,
        "GETNAME" => no_args(ClientCmd::GetName)?,
        "INFO" => no_args(ClientCmd::Info)?,
        "HELP" => no_args(ClientCmd::Help)?,
        "LIST" => {
            args.rest();
            ClientCmd::List
        }
        "SETNAME" => {
            sub_arity(args, "client", &sub, 1)?;
            ClientCmd::SetName(args.bytes()?)
        }
        "SETINFO" => {
            sub_arity(args, "client", &sub, 2)?;
            let attribute = args.keyword()?;
            if attribute != "LIB-NAME" && attribute != "LIB-VER" {
                return Err(CommandError::err(format!(
                    "Unrecognized option '{attribute}'"
                )));
            }
            ClientCmd::SetInfo {
                attribute,
                value: args.bytes()?,
            }
        }
        other => return Err(unknown_sub("CLIENT", other)),
    };
    args.finish()?;
    Ok(cmd)
}

pub(super) fn parse_command(args: &mut Args) -> Result<CommandCmd, CommandError> {
    if args.remaining() == 0 {
        return Ok(CommandCmd::All);
    }
    let names = |args: &mut Args| {
        args.rest()
            .iter()
            .map(|n| String::from_utf8_lossy(n).to_lowercase())
            .collect()
    };
    match args.keyword()?.as_str() {
        "COUNT" if args.remaining() == 0 => Ok(CommandCmd::Count),
        "COUNT" => Err(CommandError::WrongArity("command|count".into())),
        "LIST" => {
            args.rest();
            Ok(CommandCmd::List)
        }
        "INFO" => Ok(CommandCmd::Info(names(args))),
        "DOCS" => Ok(CommandCmd::Docs(names(args))),
        other => Err(unknown_sub("COMMAND", other)),
    }
}

pub(super) fn parse_config(args: &mut Args) -> Result<ConfigCmd, CommandError> {
    let sub = args.keyword()?;
    match sub.as_str() {
        "GET" if args.remaining() > 0 => Ok(ConfigCmd::Get(args.rest())),
        "SET" if args.remaining() >= 2 && args.remaining().is_multiple_of(2) => {
            let mut pairs = Vec::new();
            while args.remaining() > 0 {
                pairs.push((args.string()?.to_lowercase(), args.string()?));
            }
            Ok(ConfigCmd::Set(pairs))
        }
        "GET" | "SET" => Err(CommandError::WrongArity(format!(
            "config|{}",
            sub.to_lowercase()
        ))),
        "RESETSTAT" => Ok(ConfigCmd::ResetStat),
        other => Err(unknown_sub("CONFIG", other)),
    }
}

pub(super) fn parse_dynamo(args: &mut Args) -> Result<DynamoCmd, CommandError> {
    let sub = args.keyword()?;
    let cmd = match sub.as_str() {
        "STATUS" => DynamoCmd::Status,
        "RING" => DynamoCmd::Ring,
        "MEMBERS" => DynamoCmd::Members,
        "LEAVE" => DynamoCmd::Leave,
        "LOCALGET" => {
            sub_arity(args, "dynamo", &sub, 1)?;
            DynamoCmd::LocalGet(args.bytes()?)
        }
        "JOIN" => {
            sub_arity(args, "dynamo", &sub, 1)?;
            DynamoCmd::Join(args.string()?)
        }
        "REMOVE" => {
            sub_arity(args, "dynamo", &sub, 1)?;
            DynamoCmd::Remove(args.string()?)
        }
        "WEIGHT" => {
            sub_arity(args, "dynamo", &sub, 2)?;
            let id = args.string()?;
            DynamoCmd::Weight(id, weight_arg(args)?)
        }
        "OWNERS" => {
            sub_arity(args, "dynamo", &sub, 1)?;
            DynamoCmd::Owners(args.bytes()?)
        }
        "PLAN" => {
            if args.remaining() == 0 {
                return Err(CommandError::WrongArity("dynamo|plan".into()));
            }
            DynamoCmd::Plan(parse_plan(args)?)
        }
        other => return Err(unknown_sub("DYNAMO", other)),
    };
    args.finish()?;
    Ok(cmd)
}
