//! SLOWLOG: the slowest recent commands, as Redis keeps them, plus the
//! replicas each one waited on.
//!
//! An entry is Redis's six fields (id, start time, microseconds, arguments,
//! client address, client name) and a seventh this server adds: one line per
//! replica the command asked, slowest first, `<node-id> <micros>us <outcome>`
//! (`ok`, `failed`, or `no-answer` when the command was answered without
//! it). Clients that read six fields (redis-py, redis-cli) ignore it.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
        Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use cluster::runtime::trace::ReplicaCall;
use resp::{command::SlowlogCmd, Reply};

use crate::{state::now_ms, stats::ClientEntry};

/// Arguments kept per entry (Redis's limit); the last says how many more.
const MAX_ARGS: usize = 32;
/// Bytes kept per argument (Redis's limit).
const MAX_ARG_BYTES: usize = 128;

/// One slow command.
#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    at_secs: u64,
    micros: u64,
    args: Vec<Bytes>,
    client_addr: std::net::SocketAddr,
    client_name: String,
    /// Slowest first; formatted only when read (logging must stay cheap:
    /// under overload every command may be slow).
    replicas: Vec<ReplicaCall>,
}

/// The slow log: a bounded queue, newest first.
#[derive(Debug)]
pub struct SlowLog {
    threshold_us: AtomicI64,
    max_len: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<Entry>>,
}

impl SlowLog {
    /// An empty log with Redis's options.
    pub fn new(threshold_us: i64, max_len: usize) -> SlowLog {
        SlowLog {
            threshold_us: AtomicI64::new(threshold_us),
            max_len: AtomicUsize::new(max_len),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// Applies `slowlog-log-slower-than` and `slowlog-max-len`.
    pub fn configure(&self, threshold_us: i64, max_len: usize) {
        self.threshold_us.store(threshold_us, Ordering::Relaxed);
        self.max_len.store(max_len, Ordering::Relaxed);
        let mut entries = self.lock();
        entries.truncate(max_len);
    }

    /// Whether commands are being logged at all (a negative threshold turns
    /// the log off, and with it the per-replica timing).
    pub fn enabled(&self) -> bool {
        self.threshold_us.load(Ordering::Relaxed) >= 0
    }

    /// Logs the command if it took at least the threshold.
    pub fn consider(
        &self,
        request: &[Bytes],
        elapsed: Duration,
        client: &ClientEntry,
        calls: &[ReplicaCall],
    ) {
        let threshold = self.threshold_us.load(Ordering::Relaxed);
        let micros = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        if threshold < 0 || micros < threshold as u64 {
            return;
        }
        // Their arguments hold passwords.
        let name = request.first().map_or(&[][..], |n| &n[..]);
        if name.eq_ignore_ascii_case(b"auth") || name.eq_ignore_ascii_case(b"hello") {
            return;
        }
        let mut replicas = calls.to_vec();
        replicas.sort_by_key(|c| std::cmp::Reverse(c.elapsed));
        let entry = Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            at_secs: now_ms() / 1000,
            micros,
            args: truncated_args(request),
            client_addr: client.addr,
            client_name: client.names().name,
            replicas,
        };
        let max_len = self.max_len.load(Ordering::Relaxed);
        let mut entries = self.lock();
        entries.push_front(entry);
        entries.truncate(max_len);
    }

    /// `SLOWLOG GET | LEN | RESET | HELP`
    pub fn command(&self, cmd: SlowlogCmd) -> Reply {
        match cmd {
            SlowlogCmd::Get(count) => {
                let entries = self.lock();
                let count = count.unwrap_or(entries.len());
                Reply::Array(entries.iter().take(count).map(entry_reply).collect())
            }
            SlowlogCmd::Len => Reply::Int(self.lock().len() as i64),
            SlowlogCmd::Reset => {
                self.lock().clear();
                Reply::Ok
            }
            SlowlogCmd::Help => Reply::Array(
                [
                    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "GET [<count>]",
                    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                    "    Entries are made of: id, timestamp, time in microseconds, arguments array,",
                    "    client IP and port, client name, and the replicas the command asked",
                    "    (node id, microseconds, outcome), slowest first.",
                    "LEN",
                    "    Return the length of the slowlog.",
                    "RESET",
                    "    Reset the slowlog.",
                    "HELP",
                    "    Print this help.",
                ]
                .into_iter()
                .map(|line| Reply::Simple(line.into()))
                .collect(),
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn entry_reply(entry: &Entry) -> Reply {
    Reply::Array(vec![
        Reply::Int(entry.id as i64),
        Reply::Int(entry.at_secs as i64),
        Reply::Int(entry.micros as i64),
        Reply::Array(entry.args.iter().cloned().map(Reply::Bulk).collect()),
        Reply::bulk(entry.client_addr.to_string()),
        Reply::bulk(entry.client_name.clone()),
        Reply::Array(
            entry
                .replicas
                .iter()
                .map(|c| {
                    Reply::bulk(format!(
                        "{:016x} {}us {}",
                        c.node,
                        c.elapsed.as_micros(),
                        c.outcome.name()
                    ))
                })
                .collect(),
        ),
    ])
}

/// Redis's truncation: at most 32 arguments, the last one saying how many
/// were left out, and at most 128 bytes of each.
fn truncated_args(request: &[Bytes]) -> Vec<Bytes> {
    let keep = if request.len() > MAX_ARGS {
        MAX_ARGS - 1
    } else {
        request.len()
    };
    let mut args: Vec<Bytes> = request[..keep]
        .iter()
        .map(|arg| {
            if arg.len() > MAX_ARG_BYTES {
                let mut text = arg[..MAX_ARG_BYTES].to_vec();
                text.extend_from_slice(
                    format!("... ({} more bytes)", arg.len() - MAX_ARG_BYTES).as_bytes(),
                );
                Bytes::from(text)
            } else {
                arg.clone()
            }
        })
        .collect();
    if request.len() > keep {
        args.push(Bytes::from(format!(
            "... ({} more arguments)",
            request.len() - keep
        )));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_requests_are_cut_as_redis_does() {
        let many: Vec<Bytes> = (0..40).map(|i| Bytes::from(format!("a{i}"))).collect();
        let args = truncated_args(&many);
        assert_eq!(args.len(), 32);
        assert_eq!(args[31], Bytes::from("... (9 more arguments)"));
        let long = vec![Bytes::from("SET"), Bytes::from(vec![b'x'; 200])];
        let args = truncated_args(&long);
        assert_eq!(args[1].len(), 128 + "... (72 more bytes)".len());
        assert!(args[1].ends_with(b"... (72 more bytes)"));
    }
}
