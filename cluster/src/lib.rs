//! The Dynamo core: causality (dotted version vectors), pluggable storage
//! engines, and the coordinator that every client command goes through.
//!
//! This crate knows nothing of RESP; `server` turns Redis commands into
//! coordinator calls. It uses no sockets and no clocks of its own: the caller
//! passes the wall-clock time in, so the logic is testable without sleeps.

pub mod coordinator;
pub mod keyspace;
pub mod storage;
pub mod version;
