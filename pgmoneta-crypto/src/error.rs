//! Errors of the crypto crate.

use std::io;
use std::path::PathBuf;

/// What can go wrong encrypting, decrypting, or handling keys and vaults.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Reading or writing failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Decryption failed: the data was encrypted with another key or cipher, or is damaged or
    /// truncated. Nothing decrypted was kept.
    #[error("cannot decrypt {what}: {reason}")]
    Decrypt {
        /// The data (a file name, "vault entry for user x", "buffer").
        what: String,
        /// Why (wrong key or damaged data; too short...).
        reason: String,
    },
    /// A key file or vault with the wrong owner-only permissions.
    #[error("{} has mode {actual:04o}, but must be {expected:04o} (run: chmod {expected:o} {})", path.display(), path.display())]
    Permissions {
        /// The file or directory.
        path: PathBuf,
        /// The mode it must have.
        expected: u32,
        /// The mode it has.
        actual: u32,
    },
    /// A master key or vault file that is not in the expected format.
    #[error("{}{}: {detail}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Format {
        /// The file.
        path: PathBuf,
        /// The line, when the problem is on one.
        line: Option<usize>,
        /// What is wrong.
        detail: String,
    },
    /// A request that cannot be carried out (a user that exists already, a vault that is full,
    /// a key that is too short).
    #[error("{0}")]
    Invalid(String),
    /// OpenSSL failed.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

impl CryptoError {
    /// Whether trying again may help: only interrupted or timed-out I/O.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CryptoError::Io { source, .. } if matches!(source.kind(), io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock))
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, CryptoError>;

pub(crate) fn io_err(op: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> CryptoError {
    let path = path.to_owned();
    move |source| CryptoError::Io { op, path, source }
}
