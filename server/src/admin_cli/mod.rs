//! `dynamo-server admin <addr> ...`: cluster administration without
//! redis-cli knowledge. A thin client of the `DYNAMO` commands (through the
//! `redis` crate) that prints aligned plain-text tables.
//!
//! Exit codes: 0 done, 1 the node could not be reached or refused (one line
//! on stderr), 2 bad usage.

mod client;
mod progress;
mod table;
mod views;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use client::Node;

const USAGE: &str = "\
Usage: dynamo-server admin [options] <host:port> <command> [args]

<host:port> is a node's client (Redis) port, e.g. 127.0.0.1:7001.

Commands:
  status                    this node's view: cluster summary and members
  members                   the member table only
  ring [--full]             partitions per node against their fair share;
                            --full also lists every partition's owner
  join <seed-host:peer-port>
                            make this node join the cluster of that node
                            (the seed's PEER port, client port + 10000)
  leave                     this node hands its partitions over and leaves
  remove <node-id>          drop a node that is gone for good
  weight <node-id> <w>      change a node's weight (share of partitions)
  plan join [w]             what a change would move, per node, without
  plan leave [node-id]      making it
  plan remove <node-id>
  plan weight <node-id> <w>

  A <node-id> may be shortened to any unique prefix of the id that
  'status' shows.

Options:
  --password <p>, -a <p>    authenticate with AUTH first
  --wait                    join/leave/remove/weight: follow the ring change
                            until it is done, then show the members
  --timeout <secs>          give up waiting after this long (default 600;
                            exit 1 on timeout)
  --full                    ring: list every partition
  -h, --help                this text

Exit status: 0 done, 1 the node could not be reached or refused, 2 usage.
";

/// A change of membership (`DYNAMO JOIN | LEAVE | REMOVE | WEIGHT`).
#[derive(Debug, Clone, PartialEq)]
enum Change {
    Join(String),
    Leave,
    Remove(String),
    Weight(String, u32),
}

/// `DYNAMO PLAN ...`.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    Join(u32),
    Leave(Option<String>),
    Remove(String),
    Weight(String, u32),
}

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Status,
    Members,
    Ring,
    Change(Change),
    Plan(Plan),
}

#[derive(Debug, Clone, PartialEq)]
struct Invocation {
    password: Option<String>,
    addr: String,
    command: Command,
    wait: bool,
    timeout: Duration,
    full: bool,
}

#[derive(Debug, PartialEq)]
enum Parsed {
    Help,
    Run(Invocation),
}

/// Runs the admin command line (arguments after `admin`).
pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(Parsed::Help) => {
            out(USAGE);
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(invocation)) => match execute(&invocation) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                note(&format!(
                    "dynamo-server admin: {}",
                    message.replace(['\r', '\n'], " ")
                ));
                ExitCode::from(1)
            }
        },
        Err(message) => {
            note(&format!("dynamo-server admin: {message}"));
            note("usage: dynamo-server admin [--password P] <host:port> <command> [args] (see --help)");
            ExitCode::from(2)
        }
    }
}

/// Writes to stdout, ignoring a closed pipe (`admin ... | head`).
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes one line to stderr.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut password = None;
    let mut wait = false;
    let mut timeout = None;
    let mut full = false;
    let mut positional: Vec<String> = Vec::new();
    let mut args = args.iter();
    let mut options_done = false;
    while let Some(arg) = args.next() {
        if options_done || !arg.starts_with('-') || arg == "-" {
            positional.push(arg.clone());
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--password" | "-a" => password = Some(value("a password")?),
            "--wait" => wait = true,
            "--full" => full = true,
            "--timeout" => {
                let text = value("a number of seconds")?;
                let secs = text.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("--timeout needs a positive number of seconds, not {text:?}")
                })?;
                timeout = Some(Duration::from_secs(secs));
            }
            "--" => options_done = true,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    let mut positional = positional.into_iter();
    let Some(addr) = positional.next() else {
        return Err("missing <host:port> and command".to_string());
    };
    if client::split_addr(&addr).is_none() {
        return Err(format!(
            "{addr:?} is not host:port (a node's client port, e.g. 127.0.0.1:7001)"
        ));
    }
    let Some(name) = positional.next() else {
        return Err("missing the command (status, ring, join, leave, remove, weight, plan)".into());
    };
    let rest: Vec<String> = positional.collect();
    let command = parse_command(&name, &rest)?;
    let changes = matches!(command, Command::Change(_));
    if (wait || timeout.is_some()) && !changes {
        return Err("--wait and --timeout go with join, leave, remove and weight".into());
    }
    if full && command != Command::Ring {
        return Err("--full goes with ring".into());
    }
    Ok(Parsed::Run(Invocation {
        password,
        addr,
        command,
        wait,
        timeout: timeout.unwrap_or(Duration::from_secs(600)),
        full,
    }))
}

fn weight(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("the weight must be a whole number from 0 up, not {text:?}"))
}

fn arity(
    name: &str,
    rest: &[String],
    allowed: std::ops::RangeInclusive<usize>,
    shape: &str,
) -> Result<(), String> {
    if allowed.contains(&rest.len()) {
        Ok(())
    } else {
        Err(format!("{name} takes {shape}"))
    }
}

fn parse_command(name: &str, rest: &[String]) -> Result<Command, String> {
    let arg = |i: usize| rest.get(i).cloned().unwrap_or_default();
    Ok(match name.to_ascii_lowercase().as_str() {
        "status" => {
            arity(name, rest, 0..=0, "no arguments")?;
            Command::Status
        }
        "members" => {
            arity(name, rest, 0..=0, "no arguments")?;
            Command::Members
        }
        "ring" => {
            arity(name, rest, 0..=0, "no arguments (but --full)")?;
            Command::Ring
        }
        "join" => {
            arity(name, rest, 1..=1, "the seed's <host:peer-port>")?;
            if client::split_addr(&arg(0)).is_none() {
                return Err(format!("join needs <host:peer-port>, not {:?}", arg(0)));
            }
            Command::Change(Change::Join(arg(0)))
        }
        "leave" => {
            arity(name, rest, 0..=0, "no arguments: it is run on the node that leaves")?;
            Command::Change(Change::Leave)
        }
        "remove" => {
            arity(name, rest, 1..=1, "<node-id>")?;
            Command::Change(Change::Remove(arg(0)))
        }
        "weight" => {
            arity(name, rest, 2..=2, "<node-id> <weight>")?;
            Command::Change(Change::Weight(arg(0), weight(&arg(1))?))
        }
        "plan" => {
            let what = rest.first().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
            let rest = rest.get(1..).unwrap_or_default();
            let arg = |i: usize| rest.get(i).cloned().unwrap_or_default();
            Command::Plan(match what.as_str() {
                "join" => {
                    arity("plan join", rest, 0..=1, "an optional weight")?;
                    Plan::Join(rest.first().map_or(Ok(1), |w| weight(w))?)
                }
                "leave" => {
                    arity("plan leave", rest, 0..=1, "an optional <node-id>")?;
                    Plan::Leave(rest.first().cloned())
                }
                "remove" => {
                    arity("plan remove", rest, 1..=1, "<node-id>")?;
                    Plan::Remove(arg(0))
                }
                "weight" => {
                    arity("plan weight", rest, 2..=2, "<node-id> <weight>")?;
                    Plan::Weight(arg(0), weight(&arg(1))?)
                }
                "" => return Err("plan needs join, leave, remove or weight".into()),
                other => {
                    return Err(format!(
                        "unknown plan {other:?}: use join, leave, remove or weight"
                    ))
                }
            })
        }
        _ => {
            return Err(format!(
                "unknown command {name:?}: use status, members, ring, join, leave, remove, weight or plan"
            ))
        }
    })
}

fn execute(invocation: &Invocation) -> Result<(), String> {
    let mut node = Node::connect(&invocation.addr, invocation.password.as_deref())?;
    match &invocation.command {
        Command::Status => out(&views::status(&mut node)?),
        Command::Members => out(&views::members(&mut node)?),
        Command::Ring => out(&views::ring(&mut node, invocation.full)?),
        Command::Plan(plan) => out(&views::plan(&mut node, plan)?),
        Command::Change(change) => {
            let before = node.status()?;
            let (args, done) = match change {
                Change::Join(seed) => (
                    vec!["JOIN".to_string(), seed.clone()],
                    format!("joined the cluster through {seed}"),
                ),
                Change::Leave => (
                    vec!["LEAVE".to_string()],
                    format!(
                        "{} is leaving: its partitions move to the others",
                        before.get("node_id")
                    ),
                ),
                Change::Remove(id) => {
                    let id = views::resolve_id(&mut node, id)?;
                    let done = format!("{id} removed: its replicas are rebuilt on the others");
                    (vec!["REMOVE".to_string(), id], done)
                }
                Change::Weight(id, w) => {
                    let id = views::resolve_id(&mut node, id)?;
                    let done = format!("{id} now has weight {w}");
                    (vec!["WEIGHT".to_string(), id, w.to_string()], done)
                }
            };
            let mut parts = vec!["DYNAMO"];
            parts.extend(args.iter().map(String::as_str));
            node.query(&parts)?;
            out(&format!("OK: {done}\n"));
            if invocation.wait {
                let leaving = *change == Change::Leave;
                let joining = matches!(change, Change::Join(_));
                progress::wait(&mut node, &before, invocation.timeout, leaving, joining)?;
            } else {
                out(&format!(
                    "partitions move in the background: follow with 'dynamo-server admin {} status' (or pass --wait)\n",
                    invocation.addr
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Parsed, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn invocation(args: &[&str]) -> Invocation {
        match parsed(args) {
            Ok(Parsed::Run(i)) => i,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_commands_and_options_anywhere() {
        let i = invocation(&["127.0.0.1:7001", "status"]);
        assert_eq!(i.command, Command::Status);
        assert_eq!(i.password, None);
        let i = invocation(&[
            "--password",
            "pw",
            "h:1",
            "join",
            "10.0.0.1:17001",
            "--wait",
            "--timeout=5",
        ]);
        assert_eq!(
            i.command,
            Command::Change(Change::Join("10.0.0.1:17001".into()))
        );
        assert_eq!(i.password.as_deref(), Some("pw"));
        assert!(i.wait);
        assert_eq!(i.timeout, Duration::from_secs(5));
        let i = invocation(&["[::1]:7001", "plan", "weight", "ab", "3"]);
        assert_eq!(i.command, Command::Plan(Plan::Weight("ab".into(), 3)));
        assert_eq!(
            invocation(&["h:1", "plan", "JOIN"]).command,
            Command::Plan(Plan::Join(1))
        );
        assert_eq!(
            invocation(&["h:1", "ring", "--full"]).command,
            Command::Ring
        );
        assert_eq!(parsed(&["-h"]), Ok(Parsed::Help));
        assert_eq!(parsed(&["h:1", "status", "--help"]), Ok(Parsed::Help));
    }

    #[test]
    fn refuses_bad_usage() {
        for args in [
            &[][..],
            &["h:1"],
            &["nohost", "status"],
            &["h:99999", "status"],
            &["h:1", "frobnicate"],
            &["h:1", "status", "extra"],
            &["h:1", "join"],
            &["h:1", "join", "not-an-address"],
            &["h:1", "weight", "ab", "-1"],
            &["h:1", "weight", "ab"],
            &["h:1", "plan"],
            &["h:1", "plan", "dance"],
            &["h:1", "status", "--wait"],
            &["h:1", "status", "--full"],
            &["h:1", "leave", "--timeout", "0"],
            &["h:1", "status", "--password"],
            &["h:1", "status", "--colour"],
        ] {
            assert!(parsed(args).is_err(), "{args:?} was accepted");
        }
    }
}
