//! Black-box test harness for the `dynamo-server` binary.
//!
//! Every test starts its own server process on a fresh loopback address
//! (`127.0.0.X` with a free port), with its own temporary data directory,
//! and talks to it through real clients: the `redis` crate, raw TCP
//! sockets and, in `tests/tools.rs`, `redis-cli` and `redis-benchmark`.
//! The harness imports no crate of this workspace: it tests what a user gets.
//!
//! The binary is located through `DYNAMO_SERVER_BIN` if set, else
//! `target/release/dynamo-server`, else `target/debug/dynamo-server`
//! (build it first with `cargo build --release --bin dynamo-server`).
//!
//! CAVEATS: signals are sent through the `kill` command so that no libc
//! binding is needed; ports are picked by binding port 0 and dropping the
//! listener, so another process could in theory grab the port in between
//! (the random 127.0.0.X address makes that unlikely).

mod client;
mod cluster;
pub mod faults;
mod raw;
mod server;
mod tools;
mod workload;

pub use client::{assert_healthy, bulk, cmd, err_line, expect_err, now_ms, q, qerr, qv, status};
pub use cluster::{
    holds, holds_many, info_field, minimum_moves, moved, node_id, owners_of, owners_of_many,
    partition_counts, peer_addr, query_status, ring_balance, ring_owners, status_of, try_status_of,
    wait_for, Cluster, Status, CONVERGE_TIMEOUT,
};
pub use raw::{encode_command, RawConn, Reply};
pub use server::{
    binary, pick_address, run_to_exit, Server, EXIT_TIMEOUT, IO_TIMEOUT, READY_TIMEOUT,
};
pub use tools::run_tool;
pub use workload::{check_all_present, SetUnion, SetUnionReport};
