//! The Dynamo interface: DGET / DPUT / DDEL and `DYNAMO` administration.

use bytes::Bytes;
use cluster::{
    coordinator::{ClusterError, Write},
    version::{Context, Siblings},
};
use resp::{command::DynamoCmd, Reply};

use super::check_sizes;
use crate::state::ServerState;

type CommandResult = Result<Reply, ClusterError>;

/// DGET's reply shape: `[context, [value ...]]`, live siblings only.
fn siblings_reply(siblings: &Siblings, now: u64) -> Reply {
    let values = siblings
        .live(now)
        .filter_map(|v| v.value().cloned())
        .map(Reply::Bulk)
        .collect();
    Reply::Array(vec![
        Reply::Bulk(Context::of(siblings).encode()),
        Reply::Array(values),
    ])
}

fn decode_context(raw: &[u8]) -> Result<Context, ClusterError> {
    Context::decode(raw).map_err(|_| ClusterError::InvalidContext)
}

/// `DGET key`
pub async fn dget(state: &ServerState, key: &[u8], now: u64) -> CommandResult {
    Ok(siblings_reply(&state.coordinator.get(key).await?, now))
}

/// `DPUT key context value`
pub async fn dput(
    state: &ServerState,
    key: Bytes,
    context: &[u8],
    value: Bytes,
    now: u64,
) -> CommandResult {
    let context = decode_context(context)?;
    if let Err(reply) = check_sizes(state, &key, Some(&value)) {
        return Ok(reply);
    }
    state
        .coordinator
        .put(&key, Write::value(context.into_inner(), value, None), now)
        .await?;
    Ok(Reply::Ok)
}

/// `DDEL key context`
pub async fn ddel(state: &ServerState, key: Bytes, context: &[u8], now: u64) -> CommandResult {
    let context = decode_context(context)?;
    if let Err(reply) = check_sizes(state, &key, None) {
        return Ok(reply);
    }
    state
        .coordinator
        .put(&key, Write::tombstone(context.into_inner()), now)
        .await?;
    Ok(Reply::Int(1))
}

/// `DYNAMO STATUS | RING | MEMBERS | LOCALGET key | JOIN | LEAVE | REMOVE`
pub fn admin(state: &ServerState, cmd: DynamoCmd, now: u64) -> CommandResult {
    let config = state.config();
    let node = format!("{:016x}", state.coordinator.node_id());
    let address = format!("{}:{}", config.bind, config.port);
    let text = |s: &str| Reply::bulk(s.to_string());
    Ok(match cmd {
        DynamoCmd::LocalGet(key) => siblings_reply(&state.coordinator.local_get(&key)?, now),
        DynamoCmd::Status => Reply::Map(vec![
            (text("node_id"), text(&node)),
            (text("mode"), text("single-node")),
            (text("address"), text(&address)),
            (text("n"), Reply::Int(config.n as i64)),
            (text("r"), Reply::Int(config.r as i64)),
            (text("w"), Reply::Int(config.w as i64)),
            (text("members"), Reply::Int(1)),
            (text("keys"), Reply::Int(state.coordinator.stored_keys() as i64)),
            (text("transfers"), Reply::Array(Vec::new())),
        ]),
        // One node owns the whole ring: a single range, from position 0 to
        // the largest position, held by this node.
        DynamoCmd::Ring => Reply::Array(vec![Reply::Array(vec![
            Reply::Int(0),
            text("0"),
            text(&u64::MAX.to_string()),
            text(&node),
        ])]),
        DynamoCmd::Members => Reply::Array(vec![Reply::Array(vec![
            text(&node),
            text(&address),
            text("up"),
            text("self"),
        ])]),
        DynamoCmd::Join(_) | DynamoCmd::Leave | DynamoCmd::Remove(_) => Reply::err(
            "membership changes need the peer protocol, which this single-node version does not run yet",
        ),
    })
}
