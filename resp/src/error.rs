//! The two kinds of errors a request can produce.

use thiserror::Error;

/// A framing error: the byte stream is not valid RESP or breaks a limit.
/// The server answers `-ERR Protocol error: ...` and closes the connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes are not a valid request.
    #[error("Protocol error: {0}")]
    Invalid(String),
    /// A bulk string declared longer than `proto-max-bulk-len`.
    #[error("Protocol error: invalid bulk length")]
    BulkTooLong,
    /// An array declared with more elements than allowed.
    #[error("Protocol error: invalid multibulk length")]
    MultibulkTooLong,
    /// An inline request line longer than allowed.
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    /// The socket failed.
    #[error("io error: {0}")]
    Io(String),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e.to_string())
    }
}

/// A command error: answered with an error reply, the connection stays open.
///
/// `Display` is the full reply text without the leading `-`, e.g.
/// `ERR syntax error`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// `ERR unknown command 'x', with args beginning with: ...`
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand {
        /// The command name as sent.
        name: String,
        /// The first arguments, quoted, as Redis shows them.
        args: String,
    },
    /// `ERR unknown subcommand 'x'. Try CMD HELP.`
    #[error("ERR unknown subcommand '{sub}'. Try {cmd} HELP.")]
    UnknownSubcommand {
        /// The container command, upper case.
        cmd: String,
        /// The subcommand as sent.
        sub: String,
    },
    /// Wrong number of arguments.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    /// Generic syntax error.
    #[error("ERR syntax error")]
    Syntax,
    /// An argument that should be an integer is not.
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// An argument that should be a float is not.
    #[error("ERR value is not a valid float")]
    NotFloat,
    /// A TTL that is zero, negative or overflows.
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(String),
    /// Any other error with its full text (including the `ERR`-style prefix).
    #[error("{0}")]
    Other(String),
}

impl CommandError {
    /// An `ERR <msg>` error.
    pub fn err(msg: impl std::fmt::Display) -> Self {
        CommandError::Other(format!("ERR {msg}"))
    }
}
