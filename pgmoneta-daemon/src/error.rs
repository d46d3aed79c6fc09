//! What goes wrong in the daemon itself (outside the repository, whose errors are
//! [`StorageError`]): each variant names the file, server, slot or peer involved.

use std::io;
use std::path::PathBuf;

use pgmoneta_core::CoreError;
use pgmoneta_crypto::CryptoError;
use pgmoneta_storage::StorageError;
use pgmoneta_wire::WireError;

/// Result with [`DaemonError`].
pub type Result<T, E = DaemonError> = std::result::Result<T, E>;

/// A failure of the daemon's own work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A file the daemon keeps (the pidfile) could not be opened, locked or written.
    #[error("{}: {what}{source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was being done, with a separator (`"locking: "`), or empty.
        what: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// Another daemon holds the pidfile's lock.
    #[error("{}: pgmoneta is already running with pid {pid} (it holds the lock on this file)", path.display())]
    AlreadyRunning {
        /// The pidfile.
        path: PathBuf,
        /// What the file says (`unknown` when empty).
        pid: String,
    },
    /// The pidfile was replaced each time it was locked (daemons starting and stopping).
    #[error("{}: the pidfile kept being replaced while it was being locked", path.display())]
    PidfileReplaced {
        /// The pidfile.
        path: PathBuf,
    },
    /// A vault could not be read.
    #[error("{}: {source}", path.display())]
    Vault {
        /// The vault.
        path: PathBuf,
        /// What failed.
        source: CryptoError,
    },
    /// A password in a vault could not be decrypted.
    #[error("{}: user {user:?}: {source} (is this the master key the vault was written with?)", path.display())]
    VaultPassword {
        /// The vault.
        path: PathBuf,
        /// The user.
        user: String,
        /// What failed.
        source: CryptoError,
    },
    /// A vault with users and no master key to read them with.
    #[error("{}: the master key is needed to read it (pgmoneta-admin master-key)", path.display())]
    VaultNeedsKey {
        /// The vault.
        path: PathBuf,
    },
    /// The configuration could not be read or is not valid.
    #[error(transparent)]
    Config(#[from] CoreError),
    /// A server's user has no password in the users vault.
    #[error("user {user:?} of server [{server}] is not in the users vault")]
    NotInVault {
        /// The server.
        server: String,
        /// Its `user`.
        user: String,
    },
    /// Talking to a PostgreSQL server failed.
    #[error("server [{server}]: {what}: {source}")]
    Server {
        /// The server.
        server: String,
        /// What was being done (`connecting`, `SHOW wal_level`...).
        what: String,
        /// The protocol's error.
        source: WireError,
    },
    /// A server's replication slot cannot be used.
    #[error("replication slot {slot:?} {problem}")]
    Slot {
        /// The slot.
        slot: String,
        /// What is wrong with it, and what to do.
        problem: String,
    },
    /// Encryption is configured and no master key was loaded.
    #[error("encryption is on but no master key is loaded")]
    NoMasterKey,
    /// The WAL archive of a server could not be opened.
    #[error("server [{server}]: opening the WAL archive: {source}")]
    WalArchive {
        /// The server.
        server: String,
        /// What failed.
        source: StorageError,
    },
    /// A server reports a WAL segment size this program cannot use.
    #[error("server [{server}]: {source}")]
    SegmentSize {
        /// The server.
        server: String,
        /// Why.
        source: CoreError,
    },
    /// The repository failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A TLS certificate, key or CA file could not be used.
    #[error("{setting} {file}: {source}")]
    Tls {
        /// The setting naming the file (`tls_cert_file`...), with what went wrong.
        setting: String,
        /// The file.
        file: String,
        /// OpenSSL's error.
        source: openssl::error::ErrorStack,
    },
    /// A management client broke the protocol, or was refused.
    #[error("{0}")]
    Refused(String),
    /// A management or metrics connection failed.
    #[error("{what}: {source}")]
    Connection {
        /// What was being done (`reading`, `writing`, `TLS`).
        what: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// A management frame or message could not be decoded or encoded.
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl DaemonError {
    /// Whether trying again may succeed (a dropped or timed-out connection).
    pub fn is_retryable(&self) -> bool {
        match self {
            DaemonError::Server { source, .. } | DaemonError::Wire(source) => source.is_retryable(),
            DaemonError::Storage(e) | DaemonError::WalArchive { source: e, .. } => e.is_retryable(),
            DaemonError::Connection { source, .. } => {
                matches!(source.kind(), io::ErrorKind::Interrupted | io::ErrorKind::TimedOut)
            }
            _ => false,
        }
    }
}
