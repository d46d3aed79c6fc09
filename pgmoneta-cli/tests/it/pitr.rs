//! Point-in-time recovery: a backup, WAL streamed into the archive, and restores to every kind
//! of target, with `pgmoneta-cli archive-get` as PostgreSQL's `restore_command`. Each restored
//! server must hold exactly the rows written up to its target.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmoneta_compress::{Algorithm, Compression};
use pgmoneta_core::{BackupLabel, CivilDateTime, Lsn, WalFileKind, WalSegment, WalSegmentSize};
use pgmoneta_crypto::{Cipher, MasterKeyFile};
use pgmoneta_storage::backup::{take_backup, BackupOptions};
use pgmoneta_storage::catalog::BackupSelector;
use pgmoneta_storage::restore::{restore, RestoreOptions};
use pgmoneta_storage::store::LocalStore;
use pgmoneta_storage::wal::{stream_wal, StreamOptions, WalArchive, WalOptions};
use pgmoneta_testkit::Cluster;
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

const SEG: WalSegmentSize = WalSegmentSize::DEFAULT;

fn replication(cluster: &Cluster) -> PgConnection {
    let opts = ConnectOptions::new(cluster.host(), cluster.port(), cluster.replication_user())
        .password(cluster.replication_password())
        .replication(ReplicationMode::Physical)
        .ssl_mode(SslMode::Disable);
    PgConnection::connect(&opts).unwrap()
}

fn chown_postgres(path: &Path) {
    if nix::unistd::geteuid().is_root() {
        let ok = std::process::Command::new("chown").arg("-R").arg("postgres:postgres").arg(path).status().unwrap();
        assert!(ok.success());
    }
}

/// WAL streamed from `cluster`'s slot `pgmoneta` into `archive` on a thread of its own, until
/// the flag is set.
fn stream_into(
    cluster: &Cluster,
    archive: &WalArchive,
) -> (Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<pgmoneta_storage::Result<Lsn>>) {
    let stream = StreamOptions::new(Some("pgmoneta"));
    let stop = stream.stop.clone();
    let archive = archive.clone();
    let mut conn = replication(cluster);
    let version = cluster.version();
    (stop, std::thread::spawn(move || stream_wal(&mut conn, &archive, version, &stream)))
}

fn rows(cluster: &Cluster) -> String {
    cluster.query_scalar("SELECT coalesce(array_agg(x ORDER BY x)::text, '{}') FROM t").unwrap()
}

#[test]
fn restores_stop_exactly_at_each_recovery_target() {
    let cluster = Cluster::builder().setting("wal_keep_size", "1GB").start().unwrap();
    cluster.execute("SELECT pg_create_physical_replication_slot('pgmoneta', true)").unwrap();
    cluster.execute("CREATE TABLE t(x int)").unwrap();

    let top = tempfile::Builder::new().prefix("pgmoneta-pitr-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = top.path().join("repo");
    let key_file = MasterKeyFile::new(top.path().join("keys/master.key"));
    key_file.create("a master key for the test").unwrap();
    let key = Arc::new(key_file.load().unwrap());
    let conf = top.path().join("pgmoneta.conf");
    std::fs::write(
        &conf,
        format!(
            "[pgmoneta]\nhost = localhost\nmetrics = 0\nbase_dir = {}\nunix_socket_dir = /tmp\ncompression = zstd\nencryption = aes-256-gcm\n\n[primary]\nhost = 127.0.0.1\nport = {}\nuser = repl\nwal_slot = pgmoneta\n",
            base.display(),
            cluster.port()
        ),
    )
    .unwrap();

    // Stream WAL for the whole test.
    let mut wal_options = WalOptions::new(Algorithm::Zstd, 1);
    wal_options.encryption = Some((Cipher::Aes256Gcm, key.clone()));
    let archive = WalArchive::open(base.join("primary/wal"), SEG, wal_options).unwrap();
    let (stop, receiver) = stream_into(&cluster, &archive);

    let store = Arc::new(LocalStore::new(&base));
    let mut options =
        BackupOptions::new("primary", BackupLabel::new(CivilDateTime::new(2026, 11, 28, 12, 0, 0).unwrap()));
    options.compression = Compression::client(Algorithm::Zstd);
    options.level = 1;
    options.workers = 2;
    options.encryption = Some((Cipher::Aes256Gcm, key.clone()));
    let minor = cluster.query_scalar("SHOW server_version_num").unwrap().parse::<u32>().unwrap() % 10000;
    let info = take_backup(&mut replication(&cluster), cluster.version(), minor, store.clone(), &options).unwrap();

    // Rows at known positions after the backup.
    // Each row in a segment of its own, and segments after the last, so that a restore that
    // copies WAL into pg_wal has more archived than reaching any target needs.
    cluster.execute("CREATE TABLE filler(x int)").unwrap();
    let next_segment = || {
        cluster.execute("INSERT INTO filler VALUES (0)").unwrap();
        cluster.switch_wal().unwrap();
    };
    cluster.execute("INSERT INTO t VALUES (1)").unwrap();
    let after_1: Lsn = cluster.query_scalar("SELECT pg_current_wal_insert_lsn()").unwrap().parse().unwrap();
    next_segment();
    let xid_2 = cluster.query_scalar("INSERT INTO t VALUES (2); SELECT txid_current()").unwrap();
    next_segment();
    cluster.execute("INSERT INTO t VALUES (3)").unwrap();
    cluster.execute("SELECT pg_create_restore_point('before_four')").unwrap();
    next_segment();
    cluster.execute("INSERT INTO t VALUES (4)").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let time_after_4 = cluster.query_scalar("SELECT clock_timestamp()::text").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    next_segment();
    cluster.execute("INSERT INTO t VALUES (5)").unwrap();
    for _ in 0..4 {
        next_segment();
    }
    // The last segment switched: the one before where WAL is written now.
    let next: Lsn = cluster.query_scalar("SELECT pg_current_wal_insert_lsn()").unwrap().parse().unwrap();
    let needed = WalSegment::containing(pgmoneta_core::TimelineId(1), next, SEG);
    let (needed, end) = (WalSegment { number: needed.number - 1, ..needed }, next);
    // Wait until the archive holds it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = archive.entries().unwrap().iter().any(|e| {
            matches!(e.kind, WalFileKind::Segment(s) if s.number >= needed.number) && e.file_name.ends_with(".aes")
        });
        if have {
            break;
        }
        assert!(Instant::now() < deadline, "WAL up to {end} never reached the archive");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    receiver.join().unwrap().unwrap();
    chown_postgres(top.path());

    let exe = env!("CARGO_BIN_EXE_pgmoneta-cli");
    let restore_command =
        format!("{exe} archive-get -c {} --master-key {} primary %f %p", conf.display(), key_file.path().display());
    let cases = [
        ("immediate", "{}"),
        (&*format!("lsn={after_1}"), "{1}"),
        (&*format!("xid={xid_2}"), "{1,2}"),
        (&*format!("xid={xid_2},inclusive=off"), "{1}"),
        ("name=before_four", "{1,2,3}"),
        (&*format!("time={time_after_4}"), "{1,2,3,4}"),
    ];
    // Cases run with the WAL copied into pg_wal and no restore_command at all, as upstream
    // restores do: recovery must stop at the target from pg_wal alone, and the copy holds only
    // the segments up to one past where recovery stops.
    let copied = [
        ("immediate", "{}"),
        (&*format!("lsn={after_1}"), "{1}"),
        (&*format!("xid={xid_2},inclusive=off"), "{1}"),
        ("name=before_four", "{1,2,3}"),
        (&*format!("time={time_after_4}"), "{1,2,3,4}"),
    ];
    let cases = cases.iter().map(|(p, e)| (*p, *e, false)).chain(copied.iter().map(|(p, e)| (*p, *e, true)));
    for (position, expected, copy_wal) in cases {
        let root = tempfile::Builder::new().prefix("pgmoneta-pitr-restore-").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut ropts = RestoreOptions::new("primary", BackupSelector::Label(info.label.clone()), root.path());
        ropts.position = position.to_owned();
        ropts.master_key = Some(key.clone());
        ropts.workers = 2;
        if copy_wal {
            ropts.copy_wal = true;
        } else {
            ropts.restore_command = Some(restore_command.clone());
        }
        let report = restore(store.as_ref(), &ropts).unwrap_or_else(|e| panic!("{position}: {e}"));
        let restored = Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password())
            .unwrap_or_else(|e| panic!("{position}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while restored.query_scalar("SELECT pg_is_in_recovery()").unwrap() == "t" {
            assert!(Instant::now() < deadline, "{position}: recovery did not finish:\n{}", restored.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(rows(&restored), expected, "{position} (WAL copied: {copy_wal}):\n{}", restored.log());
        if copy_wal {
            let auto = std::fs::read_to_string(report.data_dir.join("postgresql.auto.conf")).unwrap();
            assert!(auto.contains("restore_command = 'false'"), "{auto}");
            let wal = report.wal.as_ref().unwrap();
            assert!(wal.stop.is_some(), "{position}: the stop was not found: {wal}");
            assert!(wal.files < wal.archive_files && wal.stored_bytes < wal.archive_bytes, "{position}: {wal}");
        }
    }
}

/// A target in the segment still being received: on a server that writes little, the minutes
/// before a mistake are in the archive's `.partial` only. A restore that copies WAL copies it
/// too (under the segment's name), and recovery stops at the target from `pg_wal` alone.
#[test]
fn a_target_in_the_segment_being_received_is_reached() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.execute("SELECT pg_create_physical_replication_slot('pgmoneta', true)").unwrap();
    cluster.execute("CREATE TABLE t(x int)").unwrap();
    let top = tempfile::Builder::new().prefix("pgmoneta-pitr-partial-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = top.path().join("repo");
    let archive = WalArchive::open(base.join("primary/wal"), SEG, WalOptions::new(Algorithm::Zstd, 1)).unwrap();
    let (stop, receiver) = stream_into(&cluster, &archive);
    let store = Arc::new(LocalStore::new(&base));
    let mut options =
        BackupOptions::new("primary", BackupLabel::new(CivilDateTime::new(2026, 12, 7, 12, 0, 0).unwrap()));
    options.compression = Compression::client(Algorithm::Zstd);
    let minor = cluster.query_scalar("SHOW server_version_num").unwrap().parse::<u32>().unwrap() % 10000;
    let info = take_backup(&mut replication(&cluster), cluster.version(), minor, store.clone(), &options).unwrap();

    // Two commits a second apart, after the backup and in the same segment, which never
    // completes during the test.
    cluster.execute("INSERT INTO t VALUES (1)").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let between = cluster.query_scalar("SELECT clock_timestamp()::text").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    cluster.execute("INSERT INTO t VALUES (2)").unwrap();
    let written: Lsn = cluster.query_scalar("SELECT pg_current_wal_flush_lsn()").unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let flushed = format!("SELECT coalesce(bool_and(flush_lsn >= '{written}'), false) FROM pg_stat_replication");
    while cluster.query_scalar(&flushed).unwrap() != "t" {
        assert!(Instant::now() < deadline, "the archive never received WAL up to {written}");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    receiver.join().unwrap().unwrap();
    let partial = WalSegment::containing(pgmoneta_core::TimelineId(1), written, SEG);
    let entries = archive.entries().unwrap();
    assert!(
        entries.iter().any(|e| matches!(e.kind, WalFileKind::Partial(s) if s == partial)),
        "the commits are not in a partial segment: {:?}",
        entries.iter().map(|e| &e.file_name).collect::<Vec<_>>()
    );
    chown_postgres(top.path());

    let root = tempfile::Builder::new().prefix("pgmoneta-pitr-restore-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut ropts = RestoreOptions::new("primary", BackupSelector::Label(info.label.clone()), root.path());
    ropts.position = format!("time={between}");
    ropts.workers = 2;
    ropts.copy_wal = true;
    let report = restore(store.as_ref(), &ropts).unwrap();
    let wal = report.wal.as_ref().unwrap();
    assert!(wal.stop.is_some(), "the stop was not found in the partial segment: {wal}");
    assert!(report.data_dir.join("pg_wal").join(partial.file_name(SEG)).is_file(), "{wal}");
    let restored =
        Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while restored.query_scalar("SELECT pg_is_in_recovery()").unwrap() == "t" {
        assert!(Instant::now() < deadline, "recovery did not finish:\n{}", restored.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(rows(&restored), "{1}", "{}", restored.log());
}
