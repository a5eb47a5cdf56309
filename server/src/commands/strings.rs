//! GET, SET and the other string commands.

use bytes::{Bytes, BytesMut};
use cluster::{
    coordinator::{ClusterError, Write},
    version::Siblings,
};
use resp::{
    command::{GetExOption, SetCmd, SetCondition},
    reply::format_double,
    Reply,
};

use super::{absolute_ms, check_sizes, check_value, delete_write, live_value, live_winner};
use crate::{state::ServerState, stats::ServerStats};

type CommandResult = Result<Reply, ClusterError>;

/// `GET key`
pub async fn get(state: &ServerState, key: &[u8], now: u64) -> CommandResult {
    let siblings = state.coordinator.get(key).await?;
    Ok(get_reply(state, &siblings, now))
}

/// The GETs of a pipelined batch, read together: one reply per key.
pub async fn get_many(state: &ServerState, keys: &[Bytes], now: u64) -> Vec<Reply> {
    state
        .coordinator
        .get_many(keys)
        .await
        .into_iter()
        .map(|read| match read {
            Ok(siblings) => get_reply(state, &siblings, now),
            Err(e) => super::cluster_error(&e),
        })
        .collect()
}

/// GET's reply for a key's siblings (and the keyspace hit or miss).
fn get_reply(state: &ServerState, siblings: &Siblings, now: u64) -> Reply {
    let value = live_value(siblings, now);
    let counter = if value.is_some() {
        &state.stats.keyspace_hits
    } else {
        &state.stats.keyspace_misses
    };
    ServerStats::bump(counter);
    Reply::bulk_or_nil(value)
}

/// A plain SET (no condition, GET or KEEPTTL) as a write, and its reply
/// once stored.
fn plain_write(cmd: SetCmd, now: u64) -> (Bytes, Write, Reply) {
    let expires_at = cmd.expiry.map(|e| absolute_ms(e, now));
    let mut write = Write::value(Default::default(), cmd.value, expires_at);
    // Needs no read: the coordinating owner supersedes what it holds.
    write.supersede_known = true;
    let reply = if cmd.reply_as_int {
        Reply::Int(1)
    } else {
        Reply::Ok
    };
    (cmd.key, write, reply)
}

/// The plain SETs of a pipelined batch, replicated together: one reply per
/// command.
pub async fn set_many(state: &ServerState, cmds: Vec<SetCmd>, now: u64) -> Vec<Reply> {
    let mut replies: Vec<Option<Reply>> = (0..cmds.len()).map(|_| None).collect();
    let mut writes = Vec::with_capacity(cmds.len());
    let mut pending = Vec::with_capacity(cmds.len());
    for (i, cmd) in cmds.into_iter().enumerate() {
        debug_assert!(cmd.is_plain());
        if let Err(reply) = check_sizes(state, &cmd.key, Some(&cmd.value)) {
            replies[i] = Some(reply);
            continue;
        }
        let (key, write, reply) = plain_write(cmd, now);
        writes.push((key, write));
        pending.push((i, reply));
    }
    let results = state.coordinator.put_many(writes, now).await;
    for ((i, reply), result) in pending.into_iter().zip(results) {
        replies[i] = Some(match result {
            Ok(_) => reply,
            Err(e) => super::cluster_error(&e),
        });
    }
    replies
        .into_iter()
        .map(|r| r.expect("every SET answered"))
        .collect()
}

/// `SET` and its forms (SETNX, SETEX, PSETEX, GETSET).
pub async fn set(state: &ServerState, cmd: SetCmd, now: u64) -> CommandResult {
    if let Err(reply) = check_sizes(state, &cmd.key, Some(&cmd.value)) {
        return Ok(reply);
    }
    if cmd.is_plain() {
        let (key, write, reply) = plain_write(cmd, now);
        state.coordinator.put(&key, write, now).await?;
        return Ok(reply);
    }
    let (applied, previous) = state
        .coordinator
        .update(&cmd.key, now, |siblings| {
            let current = live_winner(siblings, now);
            let previous = current.and_then(|v| v.value().cloned());
            let allowed = match cmd.condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => current.is_none(),
                SetCondition::IfPresent => current.is_some(),
            };
            if !allowed {
                return (None, (false, previous));
            }
            let expires_at = match (cmd.expiry, cmd.keep_ttl) {
                (Some(expiry), _) => Some(absolute_ms(expiry, now)),
                (None, true) => current.and_then(|v| v.expires_at_ms),
                (None, false) => None,
            };
            // A plain SET supersedes every version this node knows of.
            let write = Write::value(siblings.context().clone(), cmd.value.clone(), expires_at);
            (Some(write), (true, previous))
        })
        .await?;
    Ok(match (cmd.get, cmd.reply_as_int, applied) {
        (true, _, _) => Reply::bulk_or_nil(previous),
        (false, true, applied) => Reply::Int(i64::from(applied)),
        (false, false, true) => Reply::Ok,
        (false, false, false) => Reply::Nil,
    })
}

/// `GETDEL key`
pub async fn getdel(state: &ServerState, key: &[u8], now: u64) -> CommandResult {
    let value = state
        .coordinator
        .update(key, now, |siblings| {
            let value = live_value(siblings, now);
            (delete_write(state, siblings, now).0, value)
        })
        .await?;
    Ok(Reply::bulk_or_nil(value))
}

/// `GETEX key [EX|PX|EXAT|PXAT|PERSIST]`
pub async fn getex(
    state: &ServerState,
    key: &[u8],
    option: GetExOption,
    now: u64,
) -> CommandResult {
    let value = state
        .coordinator
        .update(key, now, |siblings| {
            let Some(current) = live_winner(siblings, now) else {
                return (None, None);
            };
            let value = current.value().cloned();
            let context = siblings.context().clone();
            let write = match option {
                GetExOption::Keep => None,
                GetExOption::Persist if current.expires_at_ms.is_none() => None,
                GetExOption::Persist => value.clone().map(|v| Write::value(context, v, None)),
                GetExOption::Set(expiry) => {
                    let at = absolute_ms(expiry, now);
                    if at <= now {
                        Some(Write::tombstone(context))
                    } else {
                        value.clone().map(|v| Write::value(context, v, Some(at)))
                    }
                }
            };
            (write, value)
        })
        .await?;
    Ok(Reply::bulk_or_nil(value))
}

/// `MGET key [key ...]`
pub async fn mget(state: &ServerState, keys: Vec<Bytes>, now: u64) -> CommandResult {
    let mut values = Vec::with_capacity(keys.len());
    for read in state.coordinator.get_many(&keys).await {
        values.push(get_reply(state, &read?, now));
    }
    Ok(Reply::Array(values))
}

/// `MSET` / `MSETNX`: per key, not atomic across keys.
pub async fn mset(
    state: &ServerState,
    pairs: Vec<(Bytes, Bytes)>,
    only_if_none_exist: bool,
    now: u64,
) -> CommandResult {
    for (key, value) in &pairs {
        if let Err(reply) = check_sizes(state, key, Some(value)) {
            return Ok(reply);
        }
    }
    if only_if_none_exist {
        let keys: Vec<Bytes> = pairs.iter().map(|(key, _)| key.clone()).collect();
        for read in state.coordinator.get_many(&keys).await {
            if live_value(&read?, now).is_some() {
                return Ok(Reply::Int(0));
            }
        }
    }
    let writes = pairs
        .into_iter()
        .map(|(key, value)| {
            let (key, write, _) = plain_write(SetCmd::plain(key, value), now);
            (key, write)
        })
        .collect();
    for written in state.coordinator.put_many(writes, now).await {
        written?;
    }
    Ok(if only_if_none_exist {
        Reply::Int(1)
    } else {
        Reply::Ok
    })
}

/// `STRLEN key`
pub async fn strlen(state: &ServerState, key: &[u8], now: u64) -> CommandResult {
    let siblings = state.coordinator.get(key).await?;
    Ok(Reply::Int(
        live_value(&siblings, now).map_or(0, |v| v.len() as i64),
    ))
}

/// `GETRANGE key start end` with Redis's index rules.
pub async fn getrange(
    state: &ServerState,
    key: &[u8],
    start: i64,
    end: i64,
    now: u64,
) -> CommandResult {
    let value = live_value(&state.coordinator.get(key).await?, now).unwrap_or_default();
    let len = value.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return Ok(Reply::bulk(Bytes::new()));
    }
    let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (clamp(start), clamp(end).min(len - 1));
    if start > end || start >= len {
        return Ok(Reply::bulk(Bytes::new()));
    }
    Ok(Reply::Bulk(value.slice(start as usize..=end as usize)))
}

/// A read-modify-write of a key's value that keeps its expiry. `change`
/// gets the current value (if any) and returns the new value or an error
/// reply; the command answers with `reply(new value)`.
async fn modify_value(
    state: &ServerState,
    key: &[u8],
    now: u64,
    change: impl FnOnce(Option<&Bytes>) -> Result<Bytes, Reply> + Send,
    reply: impl FnOnce(&Bytes) -> Reply + Send,
) -> CommandResult {
    if let Err(reply) = check_sizes(state, key, None) {
        return Ok(reply);
    }
    let max_value = state.max_value_bytes();
    state
        .coordinator
        .update(key, now, |siblings: &Siblings| {
            let current = live_winner(siblings, now);
            let expires_at = current.and_then(|v| v.expires_at_ms);
            match change(current.and_then(|v| v.value())) {
                Ok(new) if new.len() > max_value => (
                    None,
                    Reply::err(format!("value too large (max {max_value} bytes)")),
                ),
                Ok(new) => {
                    let answer = reply(&new);
                    (
                        Some(Write::value(siblings.context().clone(), new, expires_at)),
                        answer,
                    )
                }
                Err(error) => (None, error),
            }
        })
        .await
}

/// `APPEND key value`
pub async fn append(state: &ServerState, key: &[u8], suffix: Bytes, now: u64) -> CommandResult {
    modify_value(
        state,
        key,
        now,
        |current| {
            let mut out = BytesMut::from(current.map_or(&b""[..], |v| &v[..]));
            out.extend_from_slice(&suffix);
            Ok(out.freeze())
        },
        |new| Reply::Int(new.len() as i64),
    )
    .await
}

/// `SETRANGE key offset value`
pub async fn setrange(
    state: &ServerState,
    key: &[u8],
    offset: i64,
    patch: Bytes,
    now: u64,
) -> CommandResult {
    if offset < 0 {
        return Ok(Reply::err("offset is out of range"));
    }
    let end = (offset as u64).saturating_add(patch.len() as u64);
    if let Err(reply) = check_value(state, usize::try_from(end).unwrap_or(usize::MAX)) {
        return Ok(reply);
    }
    if patch.is_empty() {
        return strlen(state, key, now).await;
    }
    modify_value(
        state,
        key,
        now,
        |current| {
            let mut out = current.map_or_else(Vec::new, |v| v.to_vec());
            let offset = offset as usize;
            if out.len() < offset + patch.len() {
                out.resize(offset + patch.len(), 0);
            }
            out[offset..offset + patch.len()].copy_from_slice(&patch);
            Ok(Bytes::from(out))
        },
        |new| Reply::Int(new.len() as i64),
    )
    .await
}

/// `INCR`, `DECR`, `INCRBY`, `DECRBY`
pub async fn incr_by(state: &ServerState, key: &[u8], delta: i64, now: u64) -> CommandResult {
    modify_value(
        state,
        key,
        now,
        |current| {
            let base = match current {
                None => 0,
                Some(raw) => resp::args::parse_int(raw)
                    .map_err(|_| Reply::err("value is not an integer or out of range"))?,
            };
            let next = base
                .checked_add(delta)
                .ok_or_else(|| Reply::err("increment or decrement would overflow"))?;
            Ok(Bytes::from(next.to_string()))
        },
        |new| {
            Reply::Int(
                std::str::from_utf8(new)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default(),
            )
        },
    )
    .await
}

/// `INCRBYFLOAT key increment`
pub async fn incr_by_float(state: &ServerState, key: &[u8], delta: f64, now: u64) -> CommandResult {
    modify_value(
        state,
        key,
        now,
        |current| {
            let base = match current {
                None => 0.0,
                Some(raw) => resp::args::parse_float(raw)
                    .map_err(|_| Reply::err("value is not a valid float"))?,
            };
            let next = base + delta;
            if !next.is_finite() {
                return Err(Reply::err("increment would produce NaN or Infinity"));
            }
            Ok(Bytes::from(format_double(next)))
        },
        |new| Reply::Bulk(new.clone()),
    )
    .await
}
