//! pgmoneta-walfilter: a base backup replayed with filtered WAL comes up without the removed
//! transactions, and PostgreSQL replays the filtered WAL to its end.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use pgmoneta_core::{BackupLabel, CivilDateTime};
use pgmoneta_storage::backup::{take_backup, BackupOptions};
use pgmoneta_storage::catalog::BackupSelector;
use pgmoneta_storage::restore::{restore, RestoreOptions};
use pgmoneta_storage::store::LocalStore;
use pgmoneta_testkit::Cluster;
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[test]
fn filtered_wal_replays_without_the_deleting_transaction() {
    let source = Cluster::builder().start().unwrap();
    source.execute("CREATE TABLE f (id int PRIMARY KEY, v text)").unwrap();
    source.execute("INSERT INTO f SELECT g, 'row ' || g FROM generate_series(1, 1000) g").unwrap();
    source.execute("CHECKPOINT").unwrap();

    // A base backup (taken and restored with pgmoneta-storage), with the WAL it needs.
    let work = shared_dir("pgmoneta-walfilter-");
    let store = std::sync::Arc::new(LocalStore::new(work.path().join("repo")));
    let opts = ConnectOptions::new(source.host(), source.port(), source.replication_user())
        .password(source.replication_password())
        .replication(ReplicationMode::Physical)
        .ssl_mode(SslMode::Disable);
    let mut conn = PgConnection::connect(&opts).unwrap();
    let minor: u32 = source.query_scalar("SHOW server_version_num").unwrap().parse::<u32>().unwrap() % 10000;
    let label = BackupLabel::new(CivilDateTime::new(2026, 11, 28, 10, 0, 0).unwrap());
    let info =
        take_backup(&mut conn, source.version(), minor, store.clone(), &BackupOptions::new("primary", label)).unwrap();
    // The postgres user must reach the restored directory.
    let restore_dir = work.path().join("restore");
    std::fs::create_dir(&restore_dir).unwrap();
    std::fs::set_permissions(&restore_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let restored = restore(
        &*store,
        &RestoreOptions::new("primary", BackupSelector::Label(info.label.clone()), work.path().join("restore")),
    )
    .unwrap();
    let base = restored.data_dir.clone();
    let first = info.wal.clone();

    // Then: an insert, a delete (to be removed), another insert.
    source.execute("INSERT INTO f SELECT g, 'later ' || g FROM generate_series(1001, 1100) g").unwrap();
    let deleter: String = source
        .query_scalar("WITH d AS (DELETE FROM f WHERE id <= 100 RETURNING 1) SELECT txid_current()::text")
        .unwrap();
    source.execute("INSERT INTO f SELECT g, 'last ' || g FROM generate_series(1101, 1200) g").unwrap();
    // The segment holding the switch record is the last complete one.
    let last = source.switch_wal().unwrap();
    assert_eq!(source.query_scalar("SELECT count(*) FROM f").unwrap(), "1100");

    // The server's complete segments from the backup on.
    let src = work.path().join("wal-in");
    std::fs::create_dir(&src).unwrap();
    for e in std::fs::read_dir(source.data_dir().join("pg_wal")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 24 && name.as_str() >= first.as_str() && name.as_str() <= last.as_str() {
            std::fs::copy(e.path(), src.join(&name)).unwrap();
        }
    }
    let target = work.path().join("wal-out");
    let config = work.path().join("walfilter.yaml");
    std::fs::write(
        &config,
        format!("source_dir: {}\ntarget_dir: {}\nrules:\n  - operations: [DELETE]\n", src.display(), target.display()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgmoneta-walfilter")).arg(&config).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "walfilter: {}{}", report, String::from_utf8_lossy(&out.stderr));
    if !report.contains(&deleter) {
        let dbg = Command::new(env!("CARGO_BIN_EXE_pgmoneta-walinfo")).arg(&src).output().unwrap();
        eprintln!(
            "{}{}",
            String::from_utf8_lossy(&dbg.stdout).lines().take(30).collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&dbg.stderr)
        );
        eprintln!(
            "first {first} last {last}: {:?}",
            std::fs::read_dir(&src).unwrap().flatten().map(|e| e.file_name()).collect::<Vec<_>>()
        );
    }
    assert!(report.contains(&deleter), "the deleting transaction {deleter} was not removed: {report}");

    // walinfo hides the NOOP records: no Heap DELETE is left.
    let shown =
        Command::new(env!("CARGO_BIN_EXE_pgmoneta-walinfo")).args(["-r", "Heap"]).arg(&target).output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(!shown.contains("DELETE off"), "a DELETE survived the filter");
    assert!(shown.contains("INSERT"), "the inserts are gone too");

    // Replay the backup with the filtered WAL, to its end.
    for e in std::fs::read_dir(&target).unwrap().flatten() {
        std::fs::copy(e.path(), base.join("pg_wal").join(e.file_name())).unwrap();
    }
    std::fs::write(base.join("recovery.signal"), "").unwrap();
    let mut auto = std::fs::read_to_string(base.join("postgresql.auto.conf")).unwrap_or_default();
    auto.push_str("\nrestore_command = 'false'\nrecovery_target_action = 'promote'\n");
    std::fs::write(base.join("postgresql.auto.conf"), auto).unwrap();
    let copy = Cluster::start_on(source.install().clone(), &base, source.superuser_password()).unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while copy.query_scalar("SELECT pg_is_in_recovery()").unwrap() == "t" {
        assert!(Instant::now() < until, "recovery did not end:\n{}", copy.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every insert replayed; the deleted rows are back.
    assert_eq!(copy.query_scalar("SELECT count(*) FROM f").unwrap(), "1200", "{}", copy.log());
    assert_eq!(copy.query_scalar("SELECT count(*) FROM f WHERE id <= 100").unwrap(), "100");
    assert_eq!(copy.query_scalar("SELECT max(id) FROM f").unwrap(), "1200");
}

/// The command line as upstream's: no arguments prints the usage and succeeds; a missing YAML
/// file, an unknown option or a missing configuration file fail with a reason.
#[test]
fn the_command_line_answers_as_upstream_does() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_pgmoneta-walfilter")).args(args).output().unwrap();
    let bare = run(&[]);
    assert!(bare.status.success(), "{bare:?}");
    let usage = String::from_utf8_lossy(&bare.stdout);
    for needle in ["pgmoneta-walfilter", "Usage:", "yaml_config_file"] {
        assert!(usage.contains(needle), "{needle} missing from {bare:?}");
    }
    let version = run(&["-V"]);
    assert!(version.status.success() && String::from_utf8_lossy(&version.stdout).starts_with("pgmoneta-walfilter "));
    for (args, says) in [
        (&["-q"][..], "missing <yaml_config_file>"),
        (&["--bogus", "x.yaml"][..], "unknown option --bogus"),
        (&["/nonexistent/w.yaml"][..], "/nonexistent/w.yaml"),
        (&["w.yaml", "-c", "/nonexistent/pgmoneta.conf"][..], "/nonexistent/pgmoneta.conf"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}: {out:?}");
    }
}
