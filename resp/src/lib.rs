//! RESP only: request framing, typed command parsing and reply encoding.
//!
//! The idea: everything a Redis client puts on the wire becomes either a
//! [`Command`] (a typed value the server executes) or an error that says which
//! kind it is. Framing errors ([`FrameError`]) close the connection, as Redis
//! does for protocol errors; command errors ([`CommandError`]) become `-ERR`
//! replies and the connection stays open.
//!
//! How it works: [`RequestDecoder`] is a `tokio_util` codec that frames
//! requests with the `redis-protocol` crate (multibulk) or by lines (inline
//! commands) and enforces the size limits before any large buffer is built;
//! [`Command::parse`] turns the argument list into a typed command, checking
//! arity against the [`command::table`]; [`Reply`] is encoded for the
//! connection's protocol version (2 or 3).
//!
//! CAVEATS:
//! - Requests must be arrays of bulk strings (what every client sends);
//!   anything else is a protocol error, as in Redis.
//! - This crate knows nothing of storage or of the cluster.

pub mod args;
pub mod command;
pub mod decoder;
pub mod error;
pub mod glob;
mod inline;
pub mod reply;

pub use command::Command;
pub use decoder::{DecoderLimits, RequestDecoder};
pub use error::{CommandError, FrameError};
pub use reply::{Protocol, Reply};
