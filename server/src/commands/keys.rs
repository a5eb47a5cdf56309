//! Generic key commands: deletion, expiry and iteration.

use bytes::Bytes;
use cluster::coordinator::{ClusterError, Write};
use resp::{
    command::{ExpireCmd, ExpireCondition, ScanCmd},
    glob, Reply,
};

use super::{absolute_ms, delete_write, live_value, live_winner};
use crate::state::ServerState;

type CommandResult = Result<Reply, ClusterError>;

/// `DEL key [key ...]`: a causal tombstone per key (see [`delete_write`]);
/// counts the keys that had a live value.
pub async fn del(state: &ServerState, keys: Vec<Bytes>, now: u64) -> CommandResult {
    let mut removed = 0;
    for key in keys {
        let deleted = state
            .coordinator
            .update(&key, now, |siblings| delete_write(state, siblings, now))
            .await?;
        removed += i64::from(deleted);
    }
    Ok(Reply::Int(removed))
}

/// `EXISTS key [key ...]`: counts repeated keys each time, as Redis does.
pub async fn exists(state: &ServerState, keys: Vec<Bytes>, now: u64) -> CommandResult {
    let mut found = 0;
    for key in keys {
        found += i64::from(live_value(&state.coordinator.get(&key).await?, now).is_some());
    }
    Ok(Reply::Int(found))
}

/// `TYPE key`: every value is a string.
pub async fn key_type(state: &ServerState, key: &[u8], now: u64) -> CommandResult {
    let exists = live_value(&state.coordinator.get(key).await?, now).is_some();
    Ok(Reply::Simple(if exists { "string" } else { "none" }.into()))
}

/// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`: rewrites the value with the
/// new expiry, or deletes it when the expiry is already past.
pub async fn expire(state: &ServerState, cmd: ExpireCmd, now: u64) -> CommandResult {
    let at = absolute_ms(cmd.expiry, now);
    let applied = state
        .coordinator
        .update(&cmd.key, now, |siblings| {
            let Some(current) = live_winner(siblings, now) else {
                return (None, false);
            };
            let allowed = match (cmd.condition, current.expires_at_ms) {
                (ExpireCondition::Always, _) => true,
                (ExpireCondition::IfNoExpiry, old) => old.is_none(),
                (ExpireCondition::IfExpiry, old) => old.is_some(),
                (ExpireCondition::IfGreater, old) => old.is_some_and(|old| at > old),
                (ExpireCondition::IfLess, old) => old.is_none_or(|old| at < old),
            };
            if !allowed {
                return (None, false);
            }
            let context = siblings.context().clone();
            let write = if at <= now {
                Write::tombstone(context)
            } else {
                Write::value(
                    context,
                    current.value().cloned().unwrap_or_default(),
                    Some(at),
                )
            };
            (Some(write), true)
        })
        .await?;
    Ok(Reply::Int(i64::from(applied)))
}

/// `TTL` / `PTTL`: -2 without a value, -1 without an expiry.
pub async fn ttl(state: &ServerState, key: &[u8], millis: bool, now: u64) -> CommandResult {
    let siblings = state.coordinator.get(key).await?;
    Ok(Reply::Int(match live_winner(&siblings, now) {
        None => -2,
        Some(v) => match v.expires_at_ms {
            None => -1,
            Some(at) if millis => (at - now) as i64,
            Some(at) => ((at - now + 500) / 1000) as i64,
        },
    }))
}

/// `EXPIRETIME` / `PEXPIRETIME`
pub async fn expiretime(state: &ServerState, key: &[u8], millis: bool, now: u64) -> CommandResult {
    let siblings = state.coordinator.get(key).await?;
    Ok(Reply::Int(match live_winner(&siblings, now) {
        None => -2,
        Some(v) => match v.expires_at_ms {
            None => -1,
            Some(at) if millis => at as i64,
            Some(at) => (at / 1000) as i64,
        },
    }))
}

/// `PERSIST key`
pub async fn persist(state: &ServerState, key: &[u8], now: u64) -> CommandResult {
    let changed = state
        .coordinator
        .update(key, now, |siblings| match live_winner(siblings, now) {
            Some(v) if v.expires_at_ms.is_some() => {
                let value = v.value().cloned().unwrap_or_default();
                (
                    Some(Write::value(siblings.context().clone(), value, None)),
                    true,
                )
            }
            _ => (None, false),
        })
        .await?;
    Ok(Reply::Int(i64::from(changed)))
}

/// `KEYS pattern`: every live key that matches (on a cluster, the keys of
/// every node, each judged on the merge of the replicas' states).
pub async fn keys(state: &ServerState, pattern: &[u8], now: u64) -> CommandResult {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (batch, next) = state.coordinator.cluster_scan(cursor, 1024).await?;
        for (key, siblings) in batch {
            if live_value(&siblings, now).is_some() && glob::matches(pattern, &key) {
                out.push(Reply::Bulk(key));
            }
        }
        if next == 0 {
            return Ok(Reply::Array(out));
        }
        cursor = next;
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`; the cursor is a
/// ring position, so iteration survives writes between calls.
pub async fn scan(state: &ServerState, cmd: ScanCmd, now: u64) -> CommandResult {
    let (batch, next) = state
        .coordinator
        .cluster_scan(cmd.cursor, cmd.count)
        .await?;
    let wants_strings = cmd.type_filter.as_deref().is_none_or(|t| t == "string");
    let keys = batch
        .into_iter()
        .filter(|(key, siblings)| {
            wants_strings
                && live_value(siblings, now).is_some()
                && cmd.pattern.as_deref().is_none_or(|p| glob::matches(p, key))
        })
        .map(|(key, _)| Reply::Bulk(key))
        .collect();
    Ok(Reply::Array(vec![
        Reply::bulk(next.to_string()),
        Reply::Array(keys),
    ]))
}

/// `RANDOMKEY`: the first live key at or after a random ring position.
pub async fn randomkey(state: &ServerState, now: u64) -> CommandResult {
    let start = fastrand::u64(..);
    for cursor in [start, 0] {
        let mut cursor = cursor;
        // Bounded: at most a few batches from each starting point.
        for _ in 0..8 {
            let (batch, next) = state.coordinator.cluster_scan(cursor, 64).await?;
            if let Some((key, _)) = batch
                .into_iter()
                .find(|(_, s)| live_value(s, now).is_some())
            {
                return Ok(Reply::Bulk(key));
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(Reply::Nil)
}
