//! Full backups under load, with every compression and with encryption, restored and started.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pgmoneta_compress::{Algorithm, Compression, Side};
use pgmoneta_crypto::{Cipher, MasterKey};
use pgmoneta_storage::backup::BackupOptions;
use pgmoneta_storage::catalog::{list_backups, BackupSelector};
use pgmoneta_storage::restore::{restore, RestoreOptions};
use pgmoneta_storage::store::{EntryKind, LocalStore, Store, StoreEntry};
use pgmoneta_storage::verify::verify;
use pgmoneta_storage::StorageError;
use pgmoneta_testkit::Cluster;

use crate::{backup, label, pg_verifybackup, pgbench_state, run_pg_verifybackup, shared_dir, HookStore};

fn restore_and_start(
    cluster: &Cluster,
    store: &LocalStore,
    lbl: &str,
    key: Option<Arc<MasterKey>>,
    workers: usize,
) -> (Cluster, tempfile::TempDir) {
    let root = shared_dir("pgmoneta-restore-");
    let mut opts = RestoreOptions::new("primary", BackupSelector::Label(lbl.to_owned()), root.path());
    opts.workers = workers;
    opts.master_key = key;
    let report = restore(store, &opts).unwrap_or_else(|e| panic!("restore {lbl}: {e}"));
    assert!(report.data_dir.join("global/pg_control").exists());
    if let Some(tool) = pg_verifybackup(cluster) {
        let manifest = store.root().join(format!("primary/backup/{lbl}/data/backup_manifest"));
        run_pg_verifybackup(&tool, &report.data_dir, &manifest);
    }
    let restored = Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password())
        .unwrap_or_else(|e| panic!("starting PostgreSQL on the restore of {lbl}: {e}"));
    (restored, root)
}

/// pgbench runs while the files are being copied and stops, at a known point, before the backup
/// ends: the restored cluster must then hold exactly what the source holds afterwards, which
/// only WAL replay of the changes made during the copy can give.
#[test]
fn full_backup_under_load_restores_exactly() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(10).unwrap();
    cluster.pgbench_run(2, 200).unwrap();
    let repo = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, stopped) = (stop.clone(), stopped.clone());
        let conninfo = cluster.tcp_conninfo("postgres", cluster.superuser_password(), "dbname=postgres");
        let pgbench = cluster.install().client_program("pgbench");
        let run_as_postgres = unsafe_free_runner();
        std::thread::spawn(move || {
            let mut batches = 0;
            while !stop.load(Ordering::SeqCst) {
                let out = run_as_postgres(&pgbench, &["-n", "-c", "2", "-t", "50", &conninfo]);
                assert!(out, "pgbench failed");
                batches += 1;
            }
            stopped.store(true, Ordering::SeqCst);
            batches
        })
    };
    let accounts = cluster.query_scalar("SELECT pg_relation_filepath('pgbench_accounts')").unwrap();
    let hook_stop = stop.clone();
    let hook_stopped = stopped.clone();
    let store = Arc::new(HookStore {
        inner: Arc::new(LocalStore::new(repo.path())),
        created: AtomicUsize::new(0),
        // When pgbench_accounts (about 130 MB) starts to arrive: all of it is still to come, far
        // more than the pipeline buffers, so the server cannot end the backup while the hook
        // waits. At a file count instead, the last files could all be in flight already, and
        // the load's last commits would then fall after the backup's end.
        at: usize::MAX,
        at_path: Some(accounts.clone()),
        hook: Mutex::new(Some(Box::new(move || {
            // Mid-copy: stop the load and wait until its last transaction is done.
            hook_stop.store(true, Ordering::SeqCst);
            while !hook_stopped.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }))),
    });
    let mut opts = BackupOptions::new("primary", label(1));
    opts.compression = Compression::client(Algorithm::Zstd);
    opts.level = 3;
    opts.workers = 2;
    let key = Arc::new(MasterKey::from_bytes([42; 64]));
    opts.encryption = Some((Cipher::Aes256Gcm, key.clone()));
    let info = backup(&cluster, store.clone(), &opts);
    stop.store(true, Ordering::SeqCst);
    let batches = load.join().unwrap();
    assert!(store.hook.lock().unwrap().is_none(), "the hook never ran: no file {accounts} in the backup");
    assert!(batches >= 1, "no load ran during the backup");
    assert!(info.valid && info.end_lsn > info.start_lsn && info.compression == 18 && info.encryption == 1);
    let expected = pgbench_state(&cluster);

    // Verification re-hashes every file.
    let local = LocalStore::new(repo.path());
    let (failed, all) = verify(&local, "primary", &info.label, Some(&key), 2).unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(all.len() > 900, "{} files verified", all.len());

    let (restored, _root) = restore_and_start(&cluster, &local, &info.label, Some(key), 2);
    assert_eq!(pgbench_state(&restored), expected);
    // pgbench's own invariant holds too: every transaction moved the same delta everywhere.
    let sums = restored
        .query_scalar(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(delta) FROM pgbench_history) \
             AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(delta) FROM pgbench_history)",
        )
        .unwrap();
    assert_eq!(sums, "t");
}

/// A closure running a client program as the `postgres` user when we are root.
fn unsafe_free_runner() -> impl Fn(&std::path::Path, &[&str]) -> bool + Send + 'static {
    move |program, args| {
        let mut cmd = if nix::unistd::geteuid().is_root() {
            let mut c = std::process::Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        cmd.args(args).output().map(|o| o.status.success()).unwrap_or(false)
    }
}

/// Every compression, server-side zstd included, with and without encryption: the stored files
/// carry the right suffixes (never twice), verify, restore, pass `pg_verifybackup` and start with
/// the source's data.
#[test]
fn every_compression_and_encryption_restores() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(1).unwrap();
    cluster.pgbench_run(1, 100).unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let expected = pgbench_state(&cluster);
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let key = Arc::new(MasterKey::from_bytes([7; 64]));
    let server_zstd = cluster
        .query_scalar("SELECT count(*) FROM pg_settings WHERE name = 'wal_compression' AND 'zstd' = ANY(enumvals)")
        .unwrap()
        == "1";
    let mut cases: Vec<(Compression, bool)> = vec![
        (Compression::NONE, false),
        (Compression::NONE, true),
        (Compression::client(Algorithm::Gzip), false),
        (Compression::client(Algorithm::Zstd), true),
        (Compression::client(Algorithm::Lz4), false),
        (Compression::client(Algorithm::Bzip2), true),
    ];
    if server_zstd {
        cases.push((Compression { algorithm: Algorithm::Zstd, side: Side::Server }, false));
    }
    for (i, (compression, encrypted)) in cases.into_iter().enumerate() {
        let mut opts = BackupOptions::new("primary", label(10 + i as u32));
        opts.compression = compression;
        opts.level = compression.algorithm.fastest_level();
        opts.workers = 2;
        if encrypted {
            opts.encryption = Some((Cipher::Aes256Gcm, key.clone()));
        }
        let info = backup(&cluster, store.clone(), &opts);
        let what = format!("{} encrypted={encrypted}", compression.config_name());
        assert_eq!(i32::from(info.compression), compression.code(), "{what}");
        // Suffixes: the algorithm's once, then .aes once; backup_label stays plain.
        let data = repo.path().join(format!("primary/backup/{}/data", info.label));
        let suffix = format!("{}{}", compression.algorithm.suffix(), if encrypted { ".aes" } else { "" });
        let pg_version = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<Vec<_>>();
        assert!(pg_version.contains(&format!("PG_VERSION{suffix}")), "{what}: {pg_version:?}");
        assert!(pg_version.contains(&"backup_label".to_owned()), "{what}: {pg_version:?}");
        for e in walk(&data) {
            assert!(!e.contains(".zstd.zstd") && !e.contains(".aes.aes") && !e.contains(".gz.gz"), "{what}: {e}");
        }
        let (failed, _) = verify(store.as_ref(), "primary", &info.label, Some(&key), 2).unwrap();
        assert!(failed.is_empty(), "{what}: {failed:?}");
        let (restored, _root) = restore_and_start(&cluster, &store, &info.label, Some(key.clone()), 2);
        assert_eq!(pgbench_state(&restored), expected, "{what}");
    }
    let listed = list_backups(store.as_ref(), "primary").unwrap();
    assert!(listed.len() >= 6 && listed.windows(2).all(|w| w[0].label < w[1].label));
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

/// Damage is found: verify names the file, restore refuses (and leaves nothing), a wrong master
/// key is an error.
#[test]
fn damage_and_wrong_keys_are_reported() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.execute("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g").unwrap();
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let key = Arc::new(MasterKey::from_bytes([1; 64]));
    let mut opts = BackupOptions::new("primary", label(30));
    opts.compression = Compression::client(Algorithm::Zstd);
    opts.level = 1;
    opts.encryption = Some((Cipher::Aes256Gcm, key.clone()));
    let info = backup(&cluster, store.clone(), &opts);
    let oid = cluster.query_scalar("SELECT pg_relation_filepath('t')").unwrap();
    let stored = repo.path().join(format!("primary/backup/{}/data/{oid}.zstd.aes", info.label));
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&stored, &bytes).unwrap();

    let (failed, all) = verify(store.as_ref(), "primary", &info.label, Some(&key), 1).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].path, oid);
    assert!(failed[0].error.as_deref().unwrap().contains("authentication failed"), "{failed:?}");
    // The files kept beside the data are checked as stored: backup.info among them.
    for name in ["backup.info", "backup.manifest", "data/backup_manifest"] {
        assert!(all.iter().any(|v| v.path == name), "{name} not verified");
    }
    let info_path = repo.path().join(format!("primary/backup/{}/backup.info", info.label));
    let text = std::fs::read_to_string(&info_path).unwrap();
    let changed = text.replacen("KEEP=0", "KEEP=1", 1);
    assert_ne!(text, changed);
    std::fs::write(&info_path, changed).unwrap();
    let (failed, _) = verify(store.as_ref(), "primary", &info.label, Some(&key), 1).unwrap();
    assert!(failed.iter().any(|v| v.path == "backup.info"), "{failed:?}");
    std::fs::write(&info_path, text).unwrap();

    let root = shared_dir("pgmoneta-restore-");
    let mut ropts = RestoreOptions::new("primary", BackupSelector::Newest, root.path());
    ropts.master_key = Some(key.clone());
    let err = restore(store.as_ref(), &ropts).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }) && err.to_string().contains(&oid), "{err}");
    assert!(std::fs::read_dir(root.path()).unwrap().next().is_none(), "a failed restore left files behind");

    let wrong = Arc::new(MasterKey::from_bytes([2; 64]));
    ropts.master_key = Some(wrong);
    let err = restore(store.as_ref(), &ropts).unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
    let listed: Vec<StoreEntry> = store.list(&format!("primary/backup/{}", info.label)).unwrap();
    assert!(listed.iter().any(|e| e.name == "backup.info" && e.kind == EntryKind::File));
}

/// Without encryption or compression nothing in the stored bytes says they are damaged: the
/// restore checks every file against PostgreSQL's `backup_manifest` (size and CRC32C) and
/// refuses a flipped byte or a missing file, naming it and leaving nothing behind.
#[test]
fn a_plain_backup_with_a_flipped_byte_or_a_missing_file_is_not_restored() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.execute("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g").unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    // A file of the data directory whose name ends like a compressed one: kept as it is.
    let notes = b"not gzip, whatever the name says";
    std::fs::write(cluster.data_dir().join("notes.gz"), notes).unwrap();
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let info = backup(&cluster, store.clone(), &BackupOptions::new("primary", label(31)));
    let oid = cluster.query_scalar("SELECT pg_relation_filepath('t')").unwrap();
    let stored = repo.path().join(format!("primary/backup/{}/data/{oid}", info.label));
    let original = std::fs::read(&stored).unwrap();
    let root = shared_dir("pgmoneta-restore-");
    let ropts = RestoreOptions::new("primary", BackupSelector::Newest, root.path());

    let mut bytes = original.clone();
    bytes[original.len() / 3] ^= 0x01;
    std::fs::write(&stored, &bytes).unwrap();
    let err = restore(store.as_ref(), &ropts).unwrap_err();
    assert!(
        matches!(err, StorageError::Corrupt { .. })
            && err.to_string().contains(&oid)
            && err.to_string().contains("CRC32C"),
        "{err}"
    );
    assert!(std::fs::read_dir(root.path()).unwrap().next().is_none(), "a failed restore left files behind");

    std::fs::remove_file(&stored).unwrap();
    let err = restore(store.as_ref(), &ropts).unwrap_err();
    assert!(
        matches!(err, StorageError::Corrupt { .. }) && err.to_string().contains(&format!("{oid} is listed")),
        "{err}"
    );
    assert!(std::fs::read_dir(root.path()).unwrap().next().is_none(), "a failed restore left files behind");

    std::fs::write(&stored, &original).unwrap();
    let report = restore(store.as_ref(), &ropts).unwrap();
    assert_eq!(std::fs::read(report.data_dir.join("notes.gz")).unwrap(), notes);
    let (failed, all) = verify(store.as_ref(), "primary", &info.label, None, 2).unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(all.iter().any(|v| v.path == "notes.gz"), "notes.gz not verified under its name");
    let restored =
        Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password()).unwrap();
    assert_eq!(restored.query_scalar("SELECT count(*) FROM t").unwrap(), "20000");
}

/// A restore into a file system without room for the backup is refused before anything is
/// written, naming the space needed and available. Needs root, to mount a small tmpfs (CI runs
/// as root); elsewhere it says so and checks nothing.
#[test]
fn a_restore_without_room_is_refused_before_writing() {
    let Some(small) = pgmoneta_testkit::SmallFs::mount(16, "the restore into a full file system") else {
        return;
    };
    let cluster = Cluster::builder().start().unwrap();
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let info = backup(&cluster, store.clone(), &BackupOptions::new("primary", label(40)));
    assert!(info.restore_size > 16 << 20, "restore size {}", info.restore_size);
    let opts = RestoreOptions::new("primary", BackupSelector::Newest, small.path());
    let err = restore(store.as_ref(), &opts).unwrap_err();
    match &err {
        StorageError::NoSpace { needed, available, .. } => {
            assert!(*needed >= info.restore_size && *available <= 16 << 20, "{err}");
        }
        other => panic!("expected NoSpace, got {other}"),
    }
    assert!(err.to_string().contains("not enough space"), "{err}");
    assert!(std::fs::read_dir(small.path()).unwrap().next().is_none(), "the refused restore wrote something");
}

/// A tablespace is stored as `tblspc_<name>`, linked from `pg_tblspc/<oid>` in the backup, and
/// restored next to the data directory with a relative link; the restored server reads it.
#[test]
fn tablespaces_are_backed_up_and_restored() {
    let cluster = Cluster::builder().start().unwrap();
    let location = crate::tablespace_location();
    cluster.execute(&format!("CREATE TABLESPACE fast LOCATION '{}'", location.path().display())).unwrap();
    cluster
        .execute("CREATE TABLE spaced TABLESPACE fast AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g")
        .unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let expected =
        cluster.query_scalar("SELECT count(*) || ':' || md5(string_agg(h, ',' ORDER BY g)) FROM spaced").unwrap();
    let oid = cluster.query_scalar("SELECT oid FROM pg_tablespace WHERE spcname = 'fast'").unwrap();
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let mut opts = BackupOptions::new("primary", label(60));
    opts.compression = Compression::client(Algorithm::Zstd);
    opts.tablespace_names.insert(oid.parse().unwrap(), "fast".to_owned());
    let info = backup(&cluster, store.clone(), &opts);
    assert_eq!(info.tablespaces.len(), 1, "{:?}", info.tablespaces);
    assert_eq!(info.tablespaces[0].dir, "tblspc_fast");
    assert_eq!(info.tablespaces[0].oid, oid);
    assert_eq!(info.tablespaces[0].path, location.path().display().to_string());
    let text = info.to_text();
    assert!(text.contains("TABLESPACE1=tblspc_fast\n") && text.contains(&format!("TABLESPACE_OID1={oid}\n")));
    let backup_dir = repo.path().join(format!("primary/backup/{}", info.label));
    let link = std::fs::read_link(backup_dir.join(format!("data/pg_tblspc/{oid}"))).unwrap();
    assert_eq!(link, backup_dir.join("tblspc_fast"));
    let (failed, _) = verify(store.as_ref(), "primary", &info.label, None, 2).unwrap();
    assert!(failed.is_empty(), "{failed:?}");

    let root = shared_dir("pgmoneta-restore-");
    let report = restore(store.as_ref(), &RestoreOptions::new("primary", BackupSelector::Newest, root.path())).unwrap();
    let restored_link = std::fs::read_link(report.data_dir.join(format!("pg_tblspc/{oid}"))).unwrap();
    assert_eq!(restored_link, PathBuf::from(format!("../../primary-{}-tblspc_fast", info.label)));
    if nix::unistd::geteuid().is_root() {
        let ok =
            std::process::Command::new("chown").arg("-R").arg("postgres:postgres").arg(root.path()).status().unwrap();
        assert!(ok.success());
    }
    let restored =
        Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password()).unwrap();
    let got =
        restored.query_scalar("SELECT count(*) || ':' || md5(string_agg(h, ',' ORDER BY g)) FROM spaced").unwrap();
    assert_eq!(got, expected);
    let location_seen =
        restored.query_scalar("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'fast'").unwrap();
    assert!(location_seen.contains(&format!("primary-{}-tblspc_fast", info.label)), "{location_seen}");
}

/// Every `.zstd` file of a backup, its WAL and a relation longer than 16 MB included, is one
/// frame that holds all of the file: decoding only the first frame, as upstream pgmoneta's
/// reader does, gives what decoding the whole file gives.
#[test]
fn every_zstd_file_of_a_backup_is_one_frame() {
    use std::io::Read;
    let cluster = Cluster::builder().start().unwrap();
    cluster
        .execute(
            "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g + 1)::text) AS h FROM generate_series(1, 300000) g",
        )
        .unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let mut opts = BackupOptions::new("primary", label(61));
    opts.compression = Compression::client(Algorithm::Zstd);
    let info = backup(&cluster, store.clone(), &opts);
    let mut dirs = vec![repo.path().join(format!("primary/backup/{}", info.label))];
    let (mut files, mut long, mut wal) = (0, 0, 0);
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "zstd") {
                continue;
            }
            let packed = std::fs::read(&path).unwrap();
            assert_eq!(
                zstd::zstd_safe::find_frame_compressed_size(&packed),
                Ok(packed.len()),
                "{} is not one zstd frame",
                path.display()
            );
            let mut first = Vec::new();
            zstd::stream::read::Decoder::new(&packed[..]).unwrap().single_frame().read_to_end(&mut first).unwrap();
            let whole = pgmoneta_compress::decompress(Algorithm::Zstd, &packed, 1 << 30).unwrap();
            assert!(
                first == whole,
                "{}: the first frame holds {} of {} bytes",
                path.display(),
                first.len(),
                whole.len()
            );
            files += 1;
            long += usize::from(whole.len() > 16 << 20);
            wal += usize::from(path.to_string_lossy().contains("pg_wal/"));
        }
    }
    assert!(files > 500, "only {files} .zstd files");
    assert!(long >= 1, "no file longer than 16 MB: the table is too small to test the streamed frame");
    assert!(wal >= 1, "no WAL segment in the backup");
}
