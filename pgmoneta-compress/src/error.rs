//! Errors of the compression crate.

use std::io;
use std::path::PathBuf;

use crate::Algorithm;

/// What can go wrong compressing or decompressing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// Reading or writing failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file (empty for in-memory data).
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The compressed data is damaged or not what it claims to be.
    #[error("corrupt {algorithm} data{}: {detail}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Corrupt {
        /// The algorithm being decoded.
        algorithm: Algorithm,
        /// The file, when known.
        path: Option<PathBuf>,
        /// What the decoder said.
        detail: String,
    },
    /// A file's name and contents disagree.
    #[error("{} is named as {named} data but its contents {found}", path.display())]
    SuffixMismatch {
        /// The file.
        path: PathBuf,
        /// The algorithm its suffix names.
        named: Algorithm,
        /// What its first bytes show.
        found: String,
    },
    /// A file name without a known compression suffix.
    #[error("{} has no compression suffix (.gz, .zstd, .lz4, .bz2)", path.display())]
    UnknownSuffix {
        /// The file.
        path: PathBuf,
    },
    /// Decompressed data larger than the caller allowed.
    #[error("decompressed data exceeds the limit of {limit} bytes")]
    OutputLimit {
        /// The limit.
        limit: u64,
    },
    /// An integer code or name that is no compression upstream knows.
    #[error("unknown compression {0}")]
    Unknown(String),
}

impl CompressError {
    /// Whether trying again may help: only interrupted or timed-out I/O.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CompressError::Io { source, .. } if matches!(source.kind(), io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock))
    }

    /// Turns an error of a decoder's `Read` into a [`CompressError`].
    pub(crate) fn from_read(e: io::Error, algorithm: Algorithm, path: Option<&std::path::Path>) -> CompressError {
        match e.kind() {
            io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::Other => {
                CompressError::Corrupt { algorithm, path: path.map(Into::into), detail: e.to_string() }
            }
            _ => CompressError::Io { op: "reading", path: path.map(Into::into).unwrap_or_default(), source: e },
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, CompressError>;
