//! pgmoneta-wire against real PostgreSQL servers (whichever the testkit finds;
//! `PGMONETA_TEST_PG_BIN` selects another major).

mod auth;
mod base_backup;
mod fuzz_seeds;
mod management;
mod streaming;
mod tar;
mod tls;
mod wal;

use pgmoneta_testkit::Cluster;
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

/// Options for the cluster's replication role over TCP, without TLS.
pub fn repl_opts(cluster: &Cluster) -> ConnectOptions {
    ConnectOptions::new(cluster.host(), cluster.port(), cluster.replication_user())
        .password(cluster.replication_password())
        .replication(ReplicationMode::Physical)
        .ssl_mode(SslMode::Disable)
}

/// Options for the superuser over TCP, without TLS.
pub fn superuser_opts(cluster: &Cluster) -> ConnectOptions {
    ConnectOptions::new(cluster.host(), cluster.port(), "postgres")
        .password(cluster.superuser_password())
        .database("postgres")
        .ssl_mode(SslMode::Disable)
}

/// Connects or fails the test with the options and the error.
pub fn connect(opts: &ConnectOptions) -> PgConnection {
    PgConnection::connect(opts).unwrap_or_else(|e| panic!("connecting with {opts:?}: {e}"))
}
