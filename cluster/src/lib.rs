//! The Dynamo core: causality (dotted version vectors), pluggable storage
//! engines, the ring, membership, the peer protocol and the coordinator that
//! every client command goes through.
//!
//! This crate knows nothing of RESP; `server` turns Redis commands into
//! coordinator calls. Everything outside `runtime/` is plain data and state
//! machines: no sockets, no clocks of its own (the caller passes the time in),
//! so the logic is testable without sleeps.

pub mod coordinator;
mod dots;
pub mod handoff;
pub mod keyspace;
pub mod membership;
pub mod merkle;
pub mod replica;
pub mod ring;
pub mod runtime;
pub mod stats;
pub mod storage;
pub mod version;
pub mod wire;
