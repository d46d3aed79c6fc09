//! Errors of the core crate, and the error policy of the workspace.
//!
//! Policy, shared by every crate:
//! - each library has one `#[non_exhaustive]` error enum whose variants carry structured fields
//!   (the offending input, a path, a line, a byte offset or an LSN), never a bare `io::Error`;
//! - every error enum answers [`is_retryable`](CoreError::is_retryable): `true` only when the same
//!   operation may succeed if simply tried again (a dropped connection, a busy resource), `false`
//!   for bad input or configuration, which an operator has to fix;
//! - libraries never panic on input; binaries add context with `anyhow` and map errors to exit
//!   codes in `main`.

use std::path::PathBuf;

use crate::config::Diagnostic;

/// Errors of `pgmoneta-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Text that is not an LSN of the form `X/X`.
    #[error(
        "invalid LSN {input:?}: expected two hexadecimal numbers of up to 8 digits separated by '/', like 16/B374D848"
    )]
    InvalidLsn {
        /// The rejected text.
        input: String,
    },
    /// Text that is not a timeline id.
    #[error("invalid timeline {input:?}: expected a positive decimal number")]
    InvalidTimeline {
        /// The rejected text.
        input: String,
    },
    /// A WAL segment size that PostgreSQL cannot have.
    #[error("invalid WAL segment size {bytes} bytes: must be a power of two from 1 MB to 1 GB")]
    InvalidSegmentSize {
        /// The rejected size.
        bytes: u64,
    },
    /// A file name that is not one of the names found in `pg_wal`.
    #[error("invalid WAL file name {name:?}: {why}")]
    InvalidWalFileName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `server_version_num` that is not a number.
    #[error("invalid server_version_num {input:?}: expected a number like 150004")]
    InvalidVersionNum {
        /// The rejected text.
        input: String,
    },
    /// A version string (`server_version`, `postgres --version`) without a leading major number.
    #[error("invalid PostgreSQL version {input:?}: expected it to start with the major version, like 15.4")]
    InvalidVersion {
        /// The rejected text.
        input: String,
    },
    /// A PostgreSQL major version this project does not support.
    #[error("PostgreSQL {major} is not supported: supported versions are 14 to 18")]
    UnsupportedVersion {
        /// The major version found.
        major: u32,
    },
    /// Text that is not a backup label.
    #[error("invalid backup label {input:?}: {why}")]
    InvalidLabel {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A configuration file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A configuration with errors; every problem found is listed, one per line.
    #[error("{}", diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    InvalidConfig {
        /// The problems, errors and warnings, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

impl CoreError {
    /// Whether trying the same operation again may succeed. Only failed reads qualify, and only
    /// those the operating system reports as transient.
    pub fn is_retryable(&self) -> bool {
        match self {
            CoreError::ReadConfig { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}
