//! Throwaway, real PostgreSQL clusters for tests, benchmarks and demos.
//!
//! [`Cluster::builder`] runs `initdb` into a fresh directory under the system temporary directory,
//! configures it the way pgmoneta needs (data checksums, `wal_level = replica`, SCRAM
//! authentication over TCP, a replication role, `summarize_wal = on` from PostgreSQL 17), starts it
//! on a free port with a private Unix socket directory, and stops and removes it on `Drop`, also
//! when a test panics. Parallel tests, in one process or several, never share a port or directory.
//!
//! PostgreSQL refuses to run as root; when the tests run as root, the server and its tools run as
//! the `postgres` operating system user.
//!
//! Server binaries come from `PGMONETA_TEST_PG_BIN` when set, else the newest
//! `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`. Client tools (`psql`, `pgbench`) are
//! taken from the same directory when present there, else from the newest installed PostgreSQL.
//!
//! ```no_run
//! use pgmoneta_testkit::Cluster;
//!
//! let cluster = Cluster::builder().start()?;
//! cluster.execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")?;
//! assert_eq!(cluster.query_scalar("SELECT count(*) FROM t")?, "1000");
//! # Ok::<(), pgmoneta_testkit::TestkitError>(())
//! ```

mod browser;
mod cluster;
pub mod corpus;
mod fixtures;
mod install;
mod port;
mod process;
mod proxy;
mod remote;
mod smallfs;
mod tls;

pub use browser::{browser_binaries, Browser, Element};
pub use cluster::{cleanup_stale, Cluster, ClusterBuilder, REPLICATION_USER, SUPERUSER};
pub use fixtures::fuzz_seeds;
pub use install::PgInstall;
pub use proxy::CutProxy;
pub use remote::{azurite_binary, fake_gcs_binary, garage_binary, Azurite, FakeGcs, Garage, SshServer};
pub use smallfs::SmallFs;
pub use tls::{IssuedCert, TestCa};

use std::path::PathBuf;

/// Whether the tests run under continuous integration (`CI=true`), where every prerequisite
/// must be there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A test's prerequisite: `found` when it is there. When it is not, under CI the test fails
/// naming `what` is missing; elsewhere it prints what it skips (`skipped`) and gets `None`.
///
/// # Panics
/// Under CI, when `found` is `None`.
pub fn require<T>(found: Option<T>, what: &str, skipped: &str) -> Option<T> {
    if found.is_some() {
        return found;
    }
    if in_ci() {
        panic!("missing prerequisite under CI: {what}");
    }
    eprintln!("SKIPPED {skipped}: {what} is missing");
    None
}

/// What went wrong while preparing or driving a cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No usable PostgreSQL installation.
    #[error("no PostgreSQL server binaries found: {0}")]
    NoInstall(String),
    /// A program exited with an error.
    #[error("{command} failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it printed (standard error, then standard output), and the end of the server log
        /// when the server was involved.
        output: String,
    },
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No free TCP port could be reserved.
    #[error("no free TCP port found for a test cluster")]
    NoPort,
}

impl TestkitError {
    /// Whether trying again may help (a port taken between reservation and start-up).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TestkitError::Command { output, .. } if output.contains("could not bind") || output.contains("Address already in use"))
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, TestkitError>;
