//! Data commands: each turns a typed [`Command`] into coordinator calls.
//!
//! Redis semantics are kept where Dynamo can keep them. Read-modify-write
//! commands (NX, XX, INCR, APPEND, ...) run through `Coordinator::update`:
//! atomic on one node, best effort (not isolated) once keys are replicated.

mod admin;
mod dynamo;
mod keys;
mod strings;

use bytes::Bytes;
use cluster::{
    coordinator::{ClusterError, Write},
    version::{Siblings, Version},
};
use resp::{command::Expiry, Command, Reply};

use crate::state::ServerState;

/// Executes a command that does not depend on the connection's state.
///
/// Every arm but GET and SET awaits a boxed future: an async fn's future is
/// as large as its largest arm, and each pipelined command's future is
/// moved into the batch that runs it, so a large one costs a copy of
/// kilobytes per request (see `tests::a_command_future_stays_small`).
pub async fn execute(state: &ServerState, command: Command, now: u64) -> Reply {
    let result = match command {
        Command::Ping(None) => Ok(Reply::Simple("PONG".into())),
        Command::Ping(Some(msg)) | Command::Echo(msg) => Ok(Reply::Bulk(msg)),
        Command::Time => Ok(admin::time(now)),
        Command::Info(sections) => Ok(admin::info(state, &sections)),
        Command::Config(cmd) => Ok(admin::config(state, cmd)),
        Command::Command(cmd) => Ok(admin::command(cmd)),
        Command::DbSize => Box::pin(state.coordinator.db_size())
            .await
            .map(|n| Reply::Int(n as i64)),
        Command::FlushAll => Box::pin(state.coordinator.flush_all())
            .await
            .map(|_| Reply::Ok),
        Command::Dynamo(cmd) => Box::pin(dynamo::admin(state, cmd, now)).await,
        Command::DGet(key) => Box::pin(dynamo::dget(state, &key, now)).await,
        Command::DPut {
            key,
            context,
            value,
        } => Box::pin(dynamo::dput(state, key, &context, value, now)).await,
        Command::DDel { key, context } => Box::pin(dynamo::ddel(state, key, &context, now)).await,
        Command::Get(key) => strings::get(state, &key, now).await,
        Command::Set(cmd) => strings::set(state, cmd, now).await,
        Command::GetDel(key) => Box::pin(strings::getdel(state, &key, now)).await,
        Command::GetEx { key, option } => Box::pin(strings::getex(state, &key, option, now)).await,
        Command::MGet(keys) => Box::pin(strings::mget(state, keys, now)).await,
        Command::MSet {
            pairs,
            only_if_none_exist,
        } => Box::pin(strings::mset(state, pairs, only_if_none_exist, now)).await,
        Command::Strlen(key) => Box::pin(strings::strlen(state, &key, now)).await,
        Command::Append { key, value } => Box::pin(strings::append(state, &key, value, now)).await,
        Command::GetRange { key, start, end } => {
            Box::pin(strings::getrange(state, &key, start, end, now)).await
        }
        Command::SetRange { key, offset, value } => {
            Box::pin(strings::setrange(state, &key, offset, value, now)).await
        }
        Command::IncrBy { key, delta } => Box::pin(strings::incr_by(state, &key, delta, now)).await,
        Command::IncrByFloat { key, delta } => {
            Box::pin(strings::incr_by_float(state, &key, delta, now)).await
        }
        Command::Del(keys) => Box::pin(keys::del(state, keys, now)).await,
        Command::Exists(keys) => Box::pin(keys::exists(state, keys, now)).await,
        Command::Type(key) => Box::pin(keys::key_type(state, &key, now)).await,
        Command::Expire(cmd) => Box::pin(keys::expire(state, cmd, now)).await,
        Command::Ttl { key, millis } => Box::pin(keys::ttl(state, &key, millis, now)).await,
        Command::ExpireTime { key, millis } => {
            Box::pin(keys::expiretime(state, &key, millis, now)).await
        }
        Command::Persist(key) => Box::pin(keys::persist(state, &key, now)).await,
        Command::Keys(pattern) => Box::pin(keys::keys(state, &pattern, now)).await,
        Command::Scan(cmd) => Box::pin(keys::scan(state, cmd, now)).await,
        Command::RandomKey => Box::pin(keys::randomkey(state, now)).await,
        // Connection and transaction commands are the session's.
        _ => Ok(Reply::err("command cannot run here")),
    };
    result.unwrap_or_else(|e| cluster_error(&e))
}

/// The GETs of a pipelined batch, their quorum reads run together.
pub async fn get_many(state: &ServerState, keys: &[Bytes], now: u64) -> Vec<Reply> {
    strings::get_many(state, keys, now).await
}

/// The plain SETs of a pipelined batch, their replications run together.
pub async fn set_many(
    state: &ServerState,
    cmds: Vec<resp::command::SetCmd>,
    now: u64,
) -> Vec<Reply> {
    strings::set_many(state, cmds, now).await
}

/// The reply for a coordinator error.
pub fn cluster_error(error: &ClusterError) -> Reply {
    match error {
        ClusterError::Unavailable { .. } => Reply::Error(format!(
            "{error} (a write may still have reached the replicas that acknowledged)"
        )),
        other => Reply::err(other),
    }
}

/// The live winner's version: the value GET returns.
pub(crate) fn live_winner(siblings: &Siblings, now: u64) -> Option<&Version> {
    siblings.winner(now).filter(|v| !v.is_tombstone())
}

/// The write of a delete (`DEL`, `UNLINK`, `GETDEL`) given what its read
/// saw: a tombstone superseding the siblings seen, and whether a live value
/// was among them (the command's answer).
///
/// On one node the read is complete, so nothing live means nothing to write.
/// In a cluster a sloppy read (reads and writes that fell back to other nodes
/// during a partition) can miss an acknowledged write held outside its
/// quorum. The tombstone is then written anyway: it is newer than that write,
/// so once the two meet GET answers nil, and the write stays a sibling beside
/// it (SPEC: concurrent writes survive a delete) instead of reappearing as the
/// value after the heal.
pub(crate) fn delete_write(
    state: &ServerState,
    siblings: &Siblings,
    now: u64,
) -> (Option<Write>, bool) {
    let found = live_winner(siblings, now).is_some();
    let write = (found || state.coordinator.node().is_some())
        .then(|| Write::tombstone(siblings.context().clone()));
    (write, found)
}

/// The live winner's value.
pub(crate) fn live_value(siblings: &Siblings, now: u64) -> Option<Bytes> {
    live_winner(siblings, now).and_then(|v| v.value().cloned())
}

/// An expiry as absolute Unix milliseconds (saturating; 0 for times before
/// the epoch, which are in the past anyway).
pub(crate) fn absolute_ms(expiry: Expiry, now: u64) -> u64 {
    match expiry {
        Expiry::In(ms) => (now as i64).saturating_add(ms).max(0) as u64,
        Expiry::At(ms) => ms.max(0) as u64,
    }
}

/// Refuses keys and values over the configured limits.
pub(crate) fn check_sizes(
    state: &ServerState,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), Reply> {
    let max_key = state.max_key_bytes();
    if key.len() > max_key {
        return Err(Reply::err(format!("key too large (max {max_key} bytes)")));
    }
    check_value(state, value.map_or(0, <[u8]>::len))
}

/// Refuses a value length over `max-value-bytes`.
pub(crate) fn check_value(state: &ServerState, len: usize) -> Result<(), Reply> {
    let max_value = state.max_value_bytes();
    if len > max_value {
        return Err(Reply::err(format!(
            "value too large (max {max_value} bytes)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cluster_view::tests::single_node;

    #[test]
    fn a_command_future_stays_small() {
        let state = single_node();
        let get = execute(&state, Command::Get(Bytes::from_static(b"k")), 0);
        // Was 3104 bytes before the rare arms were boxed.
        assert!(
            std::mem::size_of_val(&get) <= 1024,
            "execute's future is {} bytes",
            std::mem::size_of_val(&get)
        );
    }
}
