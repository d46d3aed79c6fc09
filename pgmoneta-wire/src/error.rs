//! Errors of the wire crate.

use std::fmt;
use std::io;

use pgmoneta_core::Lsn;

/// The fields of an `ErrorResponse` or `NoticeResponse`, as PostgreSQL sent them.
///
/// See <https://www.postgresql.org/docs/current/protocol-error-fields.html>.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// Every field as `(type byte, value)`, in the order received.
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    /// The value of field `code` (`b'M'` for the message...).
    pub fn field(&self, code: u8) -> Option<&str> {
        self.fields.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_str())
    }

    /// Severity, localized (`S`): `ERROR`, `FATAL`, `PANIC`, `WARNING`, `NOTICE`...
    pub fn severity(&self) -> &str {
        self.field(b'S').unwrap_or("")
    }

    /// Severity, never localized (`V`, PostgreSQL 9.6+).
    pub fn severity_nonlocalized(&self) -> Option<&str> {
        self.field(b'V')
    }

    /// SQLSTATE code (`C`), like `28P01`.
    pub fn code(&self) -> &str {
        self.field(b'C').unwrap_or("")
    }

    /// Primary message (`M`).
    pub fn message(&self) -> &str {
        self.field(b'M').unwrap_or("")
    }

    /// Detail (`D`).
    pub fn detail(&self) -> Option<&str> {
        self.field(b'D')
    }

    /// Hint (`H`).
    pub fn hint(&self) -> Option<&str> {
        self.field(b'H')
    }

    /// Cursor position in the query (`P`).
    pub fn position(&self) -> Option<&str> {
        self.field(b'P')
    }

    /// Context (`W`).
    pub fn context(&self) -> Option<&str> {
        self.field(b'W')
    }

    /// Server source file, line and routine (`F`, `L`, `R`).
    pub fn source_location(&self) -> Option<(&str, &str, &str)> {
        Some((self.field(b'F')?, self.field(b'L')?, self.field(b'R')?))
    }
}

impl fmt::Display for ErrorFields {
    /// `FATAL 28P01: password authentication failed for user "x"`, then detail and hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity_nonlocalized().unwrap_or(self.severity()), self.code(), self.message())?;
        if let Some(d) = self.detail() {
            write!(f, " (detail: {d})")?;
        }
        if let Some(h) = self.hint() {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// What a backup's receiver ([`crate::source::ArchiveSink`], [`crate::source::WalSink`])
/// fails with: its own error, boxed, so that the code driving the source can take it back out
/// with `downcast` (see [`WireError::Sink`]).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of `pgmoneta-wire`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Bytes that do not form a valid message.
    #[error("malformed {what} message (type {tag}) at byte {offset}: {reason}")]
    Malformed {
        /// The kind of message being decoded (`backend`, `frontend`, `replication`...).
        what: &'static str,
        /// The message type byte, printed as a character.
        tag: Tag,
        /// Offset of the problem from the start of the stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A message longer than its type allows; refused before buffering it.
    #[error("{what} message (type {tag}) at byte {offset} declares {len} bytes, more than the {max} allowed")]
    TooLong {
        /// The kind of message.
        what: &'static str,
        /// The message type byte.
        tag: Tag,
        /// Offset of the message from the start of the stream.
        offset: u64,
        /// The declared length.
        len: u64,
        /// The limit for this type.
        max: u64,
    },
    /// A WAL record or page that cannot be decoded.
    #[error("invalid WAL at {lsn}: {reason}")]
    InvalidWal {
        /// Where the problem is.
        lsn: Lsn,
        /// What is wrong.
        reason: String,
    },
    /// The server reported an error.
    #[error("server error: {0}")]
    Server(ErrorFields),
    /// Authentication could not be carried out (an unsupported method, a SCRAM exchange that
    /// does not verify).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// TLS could not be set up or verified.
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer sent something valid but unexpected at this point of the conversation.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A method was called on a connection that cannot serve it.
    #[error("{0}")]
    Usage(String),
    /// The connection failed or was closed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done (`connecting to 127.0.0.1:5432`, `reading`...).
        op: String,
        /// The cause.
        source: io::Error,
    },
    /// No answer within the configured time.
    #[error("timed out {0}")]
    Timeout(String),
    /// The server cannot be backed up the way that was asked: a grant the role lacks, a setup
    /// the source does not handle.
    #[error("{0}")]
    Unsupported(String),
    /// A management frame or payload that cannot be read (upstream's BAD_PAYLOAD).
    #[error("bad management payload: {0}")]
    Management(String),
    /// What a backup's receiver ([`crate::source::ArchiveSink`]) failed with, as it gave it:
    /// `downcast` takes the receiver's own error back out.
    #[error("{0}")]
    Sink(SinkError),
    /// A WAL stream with a lease ([`crate::source::StreamOptions::lease`]) heard nothing from
    /// the server for longer than the lease: the server may have given the slot to another
    /// consumer since, so nothing more was written.
    #[error("the server was silent for {silent_ms} ms, longer than the {lease_ms} ms lease; nothing more is written")]
    LeaseExpired {
        /// How long the server was silent.
        silent_ms: u64,
        /// The lease.
        lease_ms: u64,
    },
}

impl WireError {
    /// Whether the same operation may succeed if tried again: broken or timed-out connections,
    /// and server errors of the classes that mean "not now" (too many connections, shutting
    /// down, starting up, serialization failures).
    pub fn is_retryable(&self) -> bool {
        match self {
            WireError::Io { .. } | WireError::Timeout(_) => true,
            WireError::Server(fields) => {
                let code = fields.code();
                code.starts_with("08") // connection exception
                    || code.starts_with("57P") // admin/crash shutdown, cannot connect now
                    || code == "53300" // too many connections
                    || code == "40001" // serialization failure
            }
            _ => false,
        }
    }

    /// Whether the server refused a replication slot because another connection is using it
    /// (SQLSTATE 55006, object in use).
    pub fn is_slot_busy(&self) -> bool {
        self.server_error().is_some_and(|f| f.code() == "55006")
    }

    /// The server's error fields, when this is a server error.
    pub fn server_error(&self) -> Option<&ErrorFields> {
        match self {
            WireError::Server(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> WireError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => WireError::Timeout(op.into()),
            _ => WireError::Io { op: op.into(), source },
        }
    }
}

/// A message type byte, displayed as `'R'` (or `0x00` when not printable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag(pub u8);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", self.0 as char)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = WireError> = std::result::Result<T, E>;
