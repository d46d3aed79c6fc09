//! Connections to the configured PostgreSQL servers, and the checks that make a server valid.

use std::time::Duration;

use pgmoneta_core::config::ServerConfig;
use pgmoneta_core::PgVersion;
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

use crate::error::{DaemonError, Result};
use crate::state::{ServerFacts, Shared};

/// Connection options for `server`: its host, port and user, the user's password from the users
/// vault, and TLS from the server's `tls_*` keys.
///
/// # Errors
/// [`DaemonError::NotInVault`] when the user has no password in the vault.
pub fn connect_options(shared: &Shared, server: &ServerConfig, replication: bool) -> Result<ConnectOptions> {
    let user = server.user.clone().unwrap_or_default();
    let password = shared
        .users
        .read()
        .get(&user)
        .cloned()
        .ok_or_else(|| DaemonError::NotInVault { server: server.name.clone(), user: user.clone() })?;
    let timeout = Duration::from_secs(shared.config().main.blocking_timeout.0.max(1));
    let mut opts =
        ConnectOptions::new(server.host.as_deref().unwrap_or("localhost"), server.port.unwrap_or(5432), &user)
            .password(&password)
            .connect_timeout(Some(timeout));
    opts.application_name = Some(server.wal_slot.clone().unwrap_or_else(|| "pgmoneta".to_owned()));
    if replication {
        opts = opts.replication(ReplicationMode::Physical);
    } else {
        opts = opts.database("postgres").read_timeout(Some(Duration::from_secs(300)));
    }
    opts = match (&server.tls_ca_file, &server.tls_cert_file, &server.tls_key_file) {
        (Some(ca), _, _) => opts.ssl_mode(SslMode::VerifyCa).ssl_root_cert(ca),
        (None, Some(_), Some(_)) => opts.ssl_mode(SslMode::Require),
        _ => opts.ssl_mode(SslMode::Prefer),
    };
    if let (Some(cert), Some(key)) = (&server.tls_cert_file, &server.tls_key_file) {
        opts = opts.ssl_client_cert(cert, key);
    }
    Ok(opts)
}

/// Connects to `server`.
///
/// # Errors
/// [`DaemonError::Server`] naming the server and what failed.
pub fn connect(shared: &Shared, server: &ServerConfig, replication: bool) -> Result<PgConnection> {
    let opts = connect_options(shared, server, replication)?;
    PgConnection::connect(&opts).map_err(|source| DaemonError::Server {
        server: server.name.clone(),
        what: "connecting".into(),
        source,
    })
}

fn setting(conn: &mut PgConnection, name: &str) -> pgmoneta_wire::Result<String> {
    conn.show(name)
}

/// Runs every check on `server` (version, `wal_level`, checksums, segment size, `summarize_wal`
/// on 17+, the replication slot, created when `create_slot` is on) and reports what it found.
/// A problem that makes the server unusable is listed in `problems`.
pub fn check_server(shared: &Shared, server: &ServerConfig) -> ServerFacts {
    let mut facts = ServerFacts::default();
    let mut conn = match connect(shared, server, true) {
        Ok(c) => c,
        Err(e) => {
            facts.problems.push(e.to_string());
            return facts;
        }
    };
    match conn.server_version() {
        Ok((v, _)) => facts.version = Some(v),
        Err(e) => {
            facts.problems.push(format!("unsupported server version: {e}"));
            return facts;
        }
    }
    let version = facts.version.unwrap_or(PgVersion::V15);
    let num = conn
        .parameter("server_version_num")
        .map(str::to_owned)
        .or_else(|| setting(&mut conn, "server_version_num").ok());
    facts.minor = num.and_then(|n| n.trim().parse::<u32>().ok()).map_or(0, |n| n % 10000);
    facts.primary = conn.parameter("in_hot_standby").is_none_or(|v| v != "on");
    match setting(&mut conn, "wal_level") {
        Ok(level) if level == "replica" || level == "logical" => {}
        Ok(level) => facts.problems.push(format!("wal_level is {level}; it must be replica or logical")),
        Err(e) => facts.problems.push(format!("SHOW wal_level: {e}")),
    }
    facts.checksums = setting(&mut conn, "data_checksums").is_ok_and(|v| v == "on");
    match setting(&mut conn, "wal_segment_size") {
        Ok(v) => match parse_size(&v) {
            Some(bytes) => facts.segment_size = bytes,
            None => facts.problems.push(format!("wal_segment_size {v:?} is not understood")),
        },
        Err(e) => facts.problems.push(format!("SHOW wal_segment_size: {e}")),
    }
    if version >= PgVersion::V17 {
        facts.summarize_wal = setting(&mut conn, "summarize_wal").is_ok_and(|v| v == "on");
        if !facts.summarize_wal {
            // Full backups do not need it; PostgreSQL's incremental backups do.
            log::warn!("server [{}]: summarize_wal is off; incremental backups of it will fail", server.name);
        }
    }
    if let Some(cluster) = &shared.cluster {
        check_sender_timeout(server, &mut conn, cluster.timing.takeover);
    }
    let config = shared.config();
    let create = server.create_slot.unwrap_or(config.main.create_slot);
    if let Some(slot) = &server.wal_slot {
        if let Err(e) = check_slot(shared, server, &mut conn, version, slot, create) {
            facts.problems.push(e.to_string());
        }
    }
    let _ = conn.close();
    facts.valid = facts.problems.is_empty();
    if facts.valid {
        facts.extensions = extensions(shared, server).unwrap_or_else(|e| {
            log::debug!("server [{}]: listing extensions: {e}", server.name);
            Vec::new()
        });
    }
    facts
}

fn check_slot(
    shared: &Shared,
    server: &ServerConfig,
    repl: &mut PgConnection,
    version: PgVersion,
    slot: &str,
    create: bool,
) -> Result<()> {
    let failed = |what: String| {
        let server = server.name.clone();
        move |source| DaemonError::Server { server, what, source }
    };
    let kind = if version >= PgVersion::V15 {
        repl.read_replication_slot(slot).map_err(failed(format!("READ_REPLICATION_SLOT {slot}")))?.map(|s| s.slot_type)
    } else {
        let mut sql = connect(shared, server, false)?;
        let rows = sql
            .query(&format!(
                "SELECT slot_type FROM pg_replication_slots WHERE slot_name = '{}'",
                slot.replace('\'', "''")
            ))
            .map_err(failed("reading pg_replication_slots".into()))?;
        let _ = sql.close();
        rows.first().map(|r| r.get(0).ok().flatten().unwrap_or_default().to_owned())
    };
    match kind {
        Some(k) if k.is_empty() || k == "physical" => Ok(()),
        Some(k) => Err(DaemonError::Slot { slot: slot.to_owned(), problem: format!("is a {k} slot; a physical slot is needed") }),
        None if create => {
            repl.create_physical_slot(slot, version).map_err(failed(format!("creating replication slot {slot:?}")))?;
            log::info!("server [{}]: created replication slot {slot:?}", server.name);
            Ok(())
        }
        None => Err(DaemonError::Slot {
            slot: slot.to_owned(),
            problem: format!(
                "does not exist: create it (SELECT pg_create_physical_replication_slot('{slot}', true);) or set create_slot = on"
            ),
        }),
    }
}

/// Checks `server` again, records what was found in its state, and logs the result when it
/// changes or when `always_log` is set. Returns whether the server is valid.
pub fn recheck(shared: &Shared, state: &crate::state::ServerState, server: &ServerConfig, always_log: bool) -> bool {
    let facts = check_server(shared, server);
    let was_valid = state.facts.read().valid;
    if always_log || was_valid != facts.valid {
        if facts.valid {
            log::info!(
                "server [{}]: online (PostgreSQL {}.{})",
                server.name,
                facts.version.map_or(0, |v| v.major()),
                facts.minor
            );
        } else {
            log::error!("server [{}]: offline: {}", server.name, facts.problems.join("; "));
        }
    }
    let valid = facts.valid;
    *state.facts.write() = facts;
    valid
}

/// The extensions installed in the server's `postgres` database, with their comments.
fn extensions(shared: &Shared, server: &ServerConfig) -> Result<Vec<(String, String, String)>> {
    let mut conn = connect(shared, server, false)?;
    let rows = conn
        .query(
            "SELECT e.extname, e.extversion, coalesce(a.comment, '') FROM pg_extension e \
             LEFT JOIN pg_available_extensions a ON a.name = e.extname ORDER BY 1",
        )
        .map_err(|source| DaemonError::Server {
            server: server.name.clone(),
            what: "listing extensions".into(),
            source,
        })?;
    let _ = conn.close();
    Ok(rows
        .iter()
        .map(|r| {
            let col = |i| r.get(i).ok().flatten().unwrap_or_default().to_owned();
            (col(0), col(1), col(2))
        })
        .collect())
}

/// In a cluster, the server's `wal_sender_timeout` decides when a hung active node loses the
/// slot. Shorter than `cluster_takeover` and the server could give the slot to a peer before
/// the hung node's lease has run out by its own clock; zero and a hung node keeps the slot
/// until it dies. Both are said in the log; neither stops the server from being used.
fn check_sender_timeout(server: &ServerConfig, conn: &mut PgConnection, takeover: Duration) {
    let Some(timeout) = setting(conn, "wal_sender_timeout").ok().and_then(|v| parse_duration(&v)) else { return };
    let name = &server.name;
    if timeout.is_zero() {
        log::warn!(
            "server [{name}]: wal_sender_timeout is 0: a hung pgmoneta node keeps the slot, and no peer takes over, until it dies"
        );
    } else if timeout < takeover {
        log::warn!(
            "server [{name}]: wal_sender_timeout ({} ms) is shorter than cluster_takeover ({} ms): a paused node could \
             still write for a moment after a peer took the slot; set wal_sender_timeout to at least cluster_takeover",
            timeout.as_millis(),
            takeover.as_millis()
        );
    }
}

/// A setting as `SHOW` prints it: the leading number, and the unit after it (may be empty).
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    Some((t[..digits].parse().ok()?, t[digits..].trim()))
}

/// `60s`, `500ms`, `1min`, `1h`, `0` as `SHOW` prints a time setting (a bare number is in
/// milliseconds, the unit of `wal_sender_timeout`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (n, unit) = number_and_unit(text)?;
    let ms = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n * ms))
}

/// `16MB`, `1GB`, `16777216` (bytes) as `SHOW` prints them.
pub fn parse_size(text: &str) -> Option<u64> {
    let (n, unit) = number_and_unit(text)?;
    let unit = match unit {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return None,
    };
    Some(n * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_sizes() {
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("8kB"), Some(8192));
        assert_eq!(parse_size("16777216"), Some(16 << 20));
        assert_eq!(parse_size("16 parsecs"), None);
    }

    #[test]
    fn parses_show_times() {
        use std::time::Duration;
        assert_eq!(parse_duration("1min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("soon"), None);
    }
}
