//! The storage error type.

use std::io;
use std::path::PathBuf;

const ENOSPC: i32 = nix::errno::Errno::ENOSPC as i32;
const EDQUOT: i32 = nix::errno::Errno::EDQUOT as i32;

/// Result with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What went wrong in the repository. Every variant names the file or object involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("creating", "renaming", "syncing"...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A stored file is not what it should be: damaged, truncated, unparsable.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// What the server sent does not match its own backup manifest.
    #[error("backup manifest mismatch for {path}: {reason}")]
    ManifestMismatch {
        /// The file, relative to the data directory or tablespace.
        path: String,
        /// The difference.
        reason: String,
    },
    /// Something asked for does not exist (a backup, a server, a WAL segment).
    #[error("{0}")]
    NotFound(String),
    /// A request that cannot be carried out as given (a bad restore target, an invalid label).
    #[error("{0}")]
    Invalid(String),
    /// Not enough free space for a restore.
    #[error("not enough space in {}: {needed} bytes needed, {available} available", path.display())]
    NoSpace {
        /// The target directory.
        path: PathBuf,
        /// Bytes the restore needs.
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// A restore's target directory already holds files; a restore replaces nothing unless
    /// asked to.
    #[error(
        "{} already holds {entries} entries: a restore does not replace what is there (move it away, or ask for force)",
        path.display()
    )]
    NotEmpty {
        /// The directory.
        path: PathBuf,
        /// How many entries it holds.
        entries: usize,
    },
    /// A recovery target the chosen backup cannot reach; the message gives the range it can.
    #[error("{0}")]
    Unreachable(String),
    /// The PostgreSQL protocol failed.
    #[error(transparent)]
    Wire(#[from] pgmoneta_wire::WireError),
    /// A tar stream is malformed.
    #[error(transparent)]
    Tar(#[from] crate::tar::TarError),
    /// Encryption or decryption failed.
    #[error(transparent)]
    Crypto(#[from] pgmoneta_crypto::CryptoError),
    /// Compression or decompression failed.
    #[error(transparent)]
    Compress(#[from] pgmoneta_compress::CompressError),
    /// A backup already has an incremental child, and a chain does not branch.
    #[error("backup {parent} already has an incremental child, {child}")]
    AlreadyHasChild {
        /// The backup asked to build on.
        parent: String,
        /// Its child.
        child: String,
    },
    /// A remote repository refused or failed a request.
    #[error("{what}: {reason}")]
    Remote {
        /// The request and the object, `uploading s3://bucket/primary/backup/...`.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// The operation was stopped on request.
    #[error("cancelled")]
    Cancelled,
    /// The PostgreSQL server could not be reached, or refused what was asked of it before a
    /// backup started.
    #[error("server [{server}]: {what}: {source}")]
    Connection {
        /// The server's name.
        server: String,
        /// What was being done (`connecting`, `reading pg_tablespace`).
        what: &'static str,
        /// The protocol's error.
        source: pgmoneta_wire::WireError,
    },
    /// An incremental backup was asked for, and the server has no valid backup at all.
    #[error("server [{server}]: no valid backup to build an incremental backup on")]
    NothingToBuildOn {
        /// The server's name.
        server: String,
    },
    /// A backup with the keep flag, and the operation would delete it.
    #[error("backup {label} is retained; expunge it first or force the delete")]
    Retained {
        /// The backup.
        label: String,
    },
    /// Deleting a backup with an incremental child failed while its data was being rolled into
    /// the child (the backup is then kept, and so is the child).
    #[error("{source}")]
    RollUp {
        /// The backup being deleted.
        label: String,
        /// Its incremental child.
        child: String,
        /// What failed.
        source: Box<StorageError>,
    },
    /// A backup is whole and valid in the local repository, but its upload to a remote one
    /// failed: the partial remote copy was removed and the upload is pending.
    #[error(
        "backup {label} is valid locally but its upload to {engine} storage failed: {source}; the partial remote \
         copy was removed and the upload will be tried again"
    )]
    UploadPending {
        /// The backup.
        label: String,
        /// The remote engine (`s3`, `ssh`...).
        engine: &'static str,
        /// What failed.
        source: Box<StorageError>,
    },
}

impl StorageError {
    /// A source's error (`pgmoneta_wire::source`) as storage's: what storage's own sink
    /// failed with comes back as it was.
    pub(crate) fn from_source(e: pgmoneta_wire::WireError) -> StorageError {
        match e {
            pgmoneta_wire::WireError::Sink(inner) => match inner.downcast::<StorageError>() {
                Ok(e) => *e,
                Err(other) => StorageError::Invalid(other.to_string()),
            },
            // What the server lacks to be backed up this way (grants, a setup): the request
            // cannot be served, as any other invalid one.
            pgmoneta_wire::WireError::Unsupported(message) => StorageError::Invalid(message),
            e => e.into(),
        }
    }

    /// An I/O error constructor for `map_err`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }

    /// A corruption error.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt { path: path.into(), reason: reason.into() }
    }

    /// The connection or server error this is, when it is one.
    pub fn wire(&self) -> Option<&pgmoneta_wire::WireError> {
        match self {
            StorageError::Wire(e) | StorageError::Connection { source: e, .. } => Some(e),
            _ => None,
        }
    }

    /// Whether the file system ran out of space (or quota) for what was being written.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            StorageError::NoSpace { .. } => true,
            StorageError::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(code) if code == ENOSPC || code == EDQUOT)
                    || source.kind() == io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }

    /// Whether trying again may succeed: an interrupted connection or a transient I/O failure,
    /// not damage or a bad request.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            StorageError::Wire(e) | StorageError::Connection { source: e, .. } => e.is_retryable(),
            StorageError::UploadPending { .. } => true,
            StorageError::RollUp { source, .. } => source.is_retryable(),
            StorageError::Crypto(e) => e.is_retryable(),
            StorageError::Compress(e) => e.is_retryable(),
            _ => false,
        }
    }
}
