//! Incremental backups: chains of a full backup and two incrementals restore to the source's
//! data at each backup, verify, and survive the deletion of any of their members.

use std::sync::Arc;

use pgmoneta_compress::{Algorithm, Compression, Side};
use pgmoneta_crypto::{Cipher, MasterKey};
use pgmoneta_storage::backup::BackupOptions;
use pgmoneta_storage::catalog::{list_backups, BackupSelector};
use pgmoneta_storage::info::{BackupInfo, BackupType};
use pgmoneta_storage::ops::{delete_backup_with, DeleteOptions};
use pgmoneta_storage::restore::{restore, RestoreOptions};
use pgmoneta_storage::store::{LocalStore, Store};
use pgmoneta_storage::verify::verify;
use pgmoneta_testkit::Cluster;

use pgmoneta_storage::sqlbackup::check_grants;

use crate::{label, pg_verifybackup, pgbench_state, shared_dir, take_incremental, Streamer};

type State = Vec<(String, String)>;

/// A repository with the cluster's WAL streaming into it, as the daemon keeps it.
fn repository(cluster: &Cluster) -> (tempfile::TempDir, Arc<LocalStore>, Streamer) {
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let wal = Streamer::start(cluster, repo.path());
    (repo, store, wal)
}

fn key() -> Arc<MasterKey> {
    crate::test_key()
}

/// Options of the `n`th backup of a chain: each stored differently, so that a chain mixes
/// compressions and encryption.
fn options(n: u32, parent: Option<&str>) -> BackupOptions {
    let mut opts = BackupOptions::new("primary", label(n));
    opts.workers = 2;
    match n % 3 {
        0 => {
            opts.compression = Compression::client(Algorithm::Zstd);
            opts.encryption = Some((Cipher::Aes256Gcm, key()));
        }
        // The first incremental is stored as the full backup is, without encryption, so that
        // their sizes compare.
        1 => opts.compression = Compression::client(Algorithm::Zstd),
        _ => {
            opts.compression = Compression::client(Algorithm::Gzip);
            opts.encryption = Some((Cipher::Aes128Gcm, key()));
        }
    }
    opts.parent = parent.map(str::to_owned);
    opts
}

/// Full backup, load, incremental, load with a truncation, a new table and a shrinking vacuum,
/// second incremental. Returns the three backups and the source's state at each.
fn chain(cluster: &Cluster, store: &Arc<LocalStore>, first: u32) -> Vec<(BackupInfo, State)> {
    let mut out = Vec::new();
    let full = take_incremental(cluster, store.clone(), &options(first, None));
    out.push((full, pgbench_state(cluster)));
    cluster.pgbench_run(2, 200).unwrap();
    let i1 = take_incremental(cluster, store.clone(), &options(first + 1, Some(&out[0].0.label)));
    out.push((i1, pgbench_state(cluster)));
    cluster.pgbench_run(2, 200).unwrap();
    cluster.execute("TRUNCATE pgbench_history").unwrap();
    cluster.execute("DELETE FROM pgbench_accounts WHERE aid > 400000").unwrap();
    cluster.execute("VACUUM pgbench_accounts").unwrap();
    cluster
        .execute(&format!("CREATE TABLE IF NOT EXISTS extra_{first} AS SELECT g FROM generate_series(1, 50000) g"))
        .unwrap();
    cluster.pgbench_run(1, 50).unwrap();
    let mut last = options(first + 2, Some(&out[1].0.label));
    if cluster.version().major() >= 15 {
        // Server-side compression configured: BASE_BACKUP asks for it; the SQL path of 15 and
        // 16 reads the files as they are and compresses them here.
        last.compression = Compression { algorithm: Algorithm::Gzip, side: Side::Server };
    }
    let i2 = take_incremental(cluster, store.clone(), &last);
    out.push((i2, pgbench_state(cluster)));
    out
}

/// Restores `lbl`, starts PostgreSQL on it and returns the pgbench state.
fn restored_state(cluster: &Cluster, store: &LocalStore, lbl: &str) -> State {
    let root = shared_dir("pgmoneta-incr-restore-");
    let mut opts = RestoreOptions::new("primary", BackupSelector::Label(lbl.to_owned()), root.path());
    opts.workers = 2;
    opts.master_key = Some(key());
    let report = restore(store, &opts).unwrap_or_else(|e| panic!("restore {lbl}: {e}"));
    assert!(report.data_dir.join("global/pg_control").exists());
    let label_text = std::fs::read_to_string(report.data_dir.join("backup_label")).unwrap();
    assert!(!label_text.contains("INCREMENTAL"), "{label_text}");
    let mut leftovers = Vec::new();
    for e in walk(&report.data_dir) {
        if e.file_name().is_some_and(|n| n.to_string_lossy().starts_with("INCREMENTAL.")) {
            leftovers.push(e);
        }
    }
    assert!(leftovers.is_empty(), "incremental files left in the restore: {leftovers:?}");
    if let Some(tool) = pg_verifybackup(cluster) {
        // A combined restore carries its own rewritten manifest.
        let info = pgmoneta_storage::catalog::load_info(store, "primary", lbl).unwrap();
        let manifest = if info.backup_type == BackupType::Incremental {
            report.data_dir.join("backup_manifest")
        } else {
            store.root().join(format!("primary/backup/{lbl}/data/backup_manifest"))
        };
        crate::run_pg_verifybackup(&tool, &report.data_dir, &manifest);
    }
    let restored = Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password())
        .unwrap_or_else(|e| panic!("starting PostgreSQL on the restore of {lbl}: {e}"));
    let state = pgbench_state(&restored);
    drop(restored);
    state
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn verify_clean(store: &LocalStore, lbl: &str) {
    let (failed, all) = verify(store, "primary", lbl, Some(&key()), 2).unwrap();
    assert!(failed.is_empty(), "backup {lbl}: {failed:?}");
    assert!(all.len() > 100, "backup {lbl}: only {} files verified", all.len());
}

#[test]
fn a_chain_restores_each_backup_exactly() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(5).unwrap();
    let (repo, store, _wal) = repository(&cluster);
    if !cluster.version().has_incremental_backup() {
        // Without the grants, the error names each one.
        let mut conn = crate::sql_connection(&cluster, cluster.replication_user(), cluster.replication_password());
        let e = check_grants(&mut conn, cluster.version()).unwrap_err().to_string();
        assert!(e.contains("GRANT EXECUTE ON FUNCTION pg_read_binary_file(text, bigint, bigint, boolean)"), "{e}");
        assert!(e.contains("GRANT EXECUTE ON FUNCTION pg_ls_dir(text, boolean, boolean)"), "{e}");
    }
    let backups = chain(&cluster, &store, 0);
    let (full, i1, i2) = (&backups[0].0, &backups[1].0, &backups[2].0);
    assert_eq!(full.backup_type, BackupType::Full);
    assert_eq!((i1.backup_type, i1.parent.as_str()), (BackupType::Incremental, full.label.as_str()));
    assert_eq!((i2.backup_type, i2.parent.as_str()), (BackupType::Incremental, i1.label.as_str()));
    let incremental_files = walk(&repo.path().join(format!("primary/backup/{}/data", i1.label)))
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("INCREMENTAL.")))
        .count();
    assert!(incremental_files > 10, "only {incremental_files} incremental files");
    eprintln!(
        "stored: full {} bytes, first incremental {} bytes ({:.1}%), second {} bytes; restore sizes {} / {} / {}",
        full.backup_size,
        i1.backup_size,
        100.0 * i1.backup_size as f64 / full.backup_size as f64,
        i2.backup_size,
        full.restore_size,
        i1.restore_size,
        i2.restore_size
    );
    assert!(i1.backup_size * 4 < full.backup_size, "incremental {} vs full {}", i1.backup_size, full.backup_size);
    // Without the WAL both carry in pg_wal, the data files alone.
    let data_bytes = |lbl: &str| -> (u64, u64) {
        let root = repo.path().join(format!("primary/backup/{lbl}/data"));
        let mut sizes = (0, 0);
        for p in walk(&root) {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_file() {
                if p.starts_with(root.join("pg_wal")) {
                    sizes.1 += meta.len();
                } else {
                    sizes.0 += meta.len();
                }
            }
        }
        sizes
    };
    let (full_data, full_wal) = data_bytes(&full.label);
    let (i1_data, i1_wal) = data_bytes(&i1.label);
    eprintln!(
        "data files: full {full_data} bytes, first incremental {i1_data} bytes ({:.1}%); pg_wal: {full_wal} / {i1_wal}",
        100.0 * i1_data as f64 / full_data as f64
    );
    // Before compression: the sizes PostgreSQL's manifests list.
    let plain = |lbl: &str| -> u64 {
        let bytes = std::fs::read(repo.path().join(format!("primary/backup/{lbl}/data/backup_manifest"))).unwrap();
        pgmoneta_storage::manifest::PgManifest::parse(&bytes).unwrap().files.iter().map(|f| f.size).sum()
    };
    let (full_plain, i1_plain) = (plain(&full.label), plain(&i1.label));
    eprintln!(
        "before compression: full {full_plain} bytes, first incremental {i1_plain} bytes ({:.1}%)",
        100.0 * i1_plain as f64 / full_plain as f64
    );
    assert!(i1_plain * 10 < full_plain, "incremental {i1_plain} bytes vs full {full_plain} before compression");
    assert!(i1.restore_size > full.restore_size / 2, "the incremental's restore size is its combined size");
    for (b, expected) in &backups {
        verify_clean(&store, &b.label);
        assert_eq!(&restored_state(&cluster, &store, &b.label), expected, "restore of {}", b.label);
    }
    // One child per backup: a chain does not branch.
    let version = cluster.version();
    let e = pgmoneta_storage::backup::check_parent(store.as_ref(), "primary", &full.label, version).unwrap_err();
    assert!(e.to_string().contains("already has an incremental child"), "{e}");
    let e = pgmoneta_storage::backup::check_parent(store.as_ref(), "primary", "20000101000000", version).unwrap_err();
    assert!(e.to_string().contains("20000101000000"), "{e}");

    // A chain with a member removed behind the repository's back: verify and restore say so.
    std::fs::remove_dir_all(repo.path().join(format!("primary/backup/{}", i1.label))).unwrap();
    let (failed, _) = verify(store.as_ref(), "primary", &i2.label, Some(&key()), 2).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].error.as_deref().unwrap_or("").contains(&i1.label), "{failed:?}");
    let root = shared_dir("pgmoneta-incr-restore-");
    let mut opts = RestoreOptions::new("primary", BackupSelector::Label(i2.label.clone()), root.path());
    opts.master_key = Some(key());
    let e = restore(store.as_ref(), &opts).unwrap_err().to_string();
    assert!(e.contains(&i1.label) && e.contains("missing"), "{e}");
}

/// Deleting the middle, the root or the newest backup of a chain leaves the others restorable,
/// with upstream's outcome. On one chain of four, one after the other: the middle one gone, its
/// child is rolled up onto its parent ([full, first, third on first]); the root gone, its child
/// becomes full and keeps its own child ([first now full, third on it]); the newest gone, the
/// rest is untouched ([first]). The backup each deletion rewrote is restored and checked.
#[test]
fn deleting_any_member_of_a_chain_keeps_the_rest_restorable() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(2).unwrap();
    let (_repo, store, _wal) = repository(&cluster);
    let mut backups = chain(&cluster, &store, 10);
    cluster.pgbench_run(2, 200).unwrap();
    let last = take_incremental(&cluster, store.clone(), &options(13, Some(&backups[2].0.label)));
    backups.push((last, pgbench_state(&cluster)));
    // (which one goes, by its place in the chain as it stands; which one to restore after)
    for (which, check) in [(2usize, 2usize), (0, 1), (1, 0)] {
        let doomed = backups[which].0.label.clone();
        let mut opts = DeleteOptions::default();
        opts.master_key = Some(key());
        delete_backup_with(store.as_ref(), "primary", &doomed, &opts)
            .unwrap_or_else(|e| panic!("deleting {doomed}: {e}"));
        backups.remove(which);
        let left = list_backups(store.as_ref(), "primary").unwrap();
        assert_eq!(
            left.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(),
            backups.iter().map(|(b, _)| b.label.as_str()).collect::<Vec<_>>(),
            "after deleting {doomed}"
        );
        assert_eq!(left[0].backup_type, BackupType::Full, "after deleting {doomed}");
        for pair in left.windows(2) {
            assert_eq!(pair[1].backup_type, BackupType::Incremental, "after deleting {doomed}");
            assert_eq!(pair[1].parent, pair[0].label, "after deleting {doomed}");
        }
        assert!(left.iter().all(|b| b.valid));
        assert!(!store.exists(&format!("primary/backup/{doomed}")));
        for (b, _) in &backups {
            verify_clean(&store, &b.label);
        }
        let (b, expected) = &backups[check];
        assert_eq!(
            &restored_state(&cluster, &store, &b.label),
            expected,
            "restore of {} after deleting {doomed}",
            b.label
        );
    }
}

/// A damaged summary, a WAL segment missing from the archive (14 to 16) or a damaged parent
/// manifest (17+) fails the incremental backup with an error naming it, and leaves no backup.
#[test]
fn damaged_inputs_fail_the_incremental_loudly() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(1).unwrap();
    let (repo, store, _wal) = repository(&cluster);
    let full = take_incremental(&cluster, store.clone(), &options(0, None));
    cluster.pgbench_run(1, 100).unwrap();
    let attempt = |n: u32| -> String {
        let opts = options(n, Some(&full.label));
        let result = if cluster.version().has_incremental_backup() {
            let mut conn = crate::replication(&cluster);
            pgmoneta_storage::backup::take_backup(&mut conn, cluster.version(), 0, store.clone(), &opts)
        } else {
            crate::grant_backup_functions(&cluster);
            let mut conn = crate::sql_connection(&cluster, cluster.replication_user(), cluster.replication_password());
            let mut sql = pgmoneta_storage::sqlbackup::SqlBackupOptions::default();
            sql.wait = std::time::Duration::from_secs(5);
            sql.master_key = Some(key());
            pgmoneta_storage::sqlbackup::take_incremental(&mut conn, cluster.version(), 0, store.clone(), &opts, &sql)
        };
        let e = result.map(|i| i.label).expect_err("the incremental backup succeeded").to_string();
        let left: Vec<_> = list_backups(store.as_ref(), "primary").unwrap().into_iter().map(|b| b.label).collect();
        assert_eq!(left, vec![full.label.clone()], "after: {e}");
        assert!(!store.exists(&format!("primary/backup/{}", label(n))), "a failed backup left its directory");
        e
    };
    if cluster.version().has_incremental_backup() {
        let path = repo.path().join(format!("primary/backup/{}/data/backup_manifest", full.label));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(6).position(|w| w == b"\"Size\"").unwrap();
        bytes[at + 9] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let e = attempt(1);
        assert!(e.to_lowercase().contains("manifest"), "{e}");
        return;
    }
    // A first incremental leaves a summary of the changes since the full backup; it is then
    // deleted, and the summary damaged.
    let i1 = take_incremental(&cluster, store.clone(), &options(1, Some(&full.label)));
    pgmoneta_storage::ops::delete_backup(store.as_ref(), "primary", &i1.label, false).unwrap();
    let summaries: Vec<_> =
        std::fs::read_dir(repo.path().join("primary/summary")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let mut bytes = std::fs::read(&summaries[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&summaries[0], &bytes).unwrap();
    cluster.pgbench_run(1, 100).unwrap();
    let e = attempt(2);
    let name = summaries[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(e.contains(&name) && e.contains("checksum"), "{e}");

    // Without the summary, a WAL segment of the range missing from the archive.
    std::fs::remove_file(&summaries[0]).unwrap();
    let wal = repo.path().join("primary/wal");
    let first = &full.wal;
    let victim = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(first.as_str()) && !n.contains("partial"))
        .unwrap();
    std::fs::remove_file(wal.join(&victim)).unwrap();
    let e = attempt(3);
    assert!(e.contains(first.as_str()) && e.contains("not in the archive"), "{e}");
}

/// A hot standby follows a chain: each incremental backup is applied in place to the copy of
/// its parent, and PostgreSQL starts on the copy with the source's data.
#[test]
fn a_hot_standby_follows_incremental_backups_in_place() {
    use pgmoneta_storage::export::{update_hot_standby, HotStandbyOptions};
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(2).unwrap();
    let (_repo, store, _wal) = repository(&cluster);
    let hs = shared_dir("pgmoneta-incr-hs-");
    let mut hs_options = HotStandbyOptions::new("primary", hs.path());
    hs_options.master_key = Some(key());
    let full = take_incremental(&cluster, store.clone(), &options(0, None));
    let copied = update_hot_standby(store.as_ref(), &hs_options).unwrap();
    let mut parent = full.label;
    for n in 1..3 {
        cluster.pgbench_run(2, 100).unwrap();
        let i = take_incremental(&cluster, store.clone(), &options(n, Some(&parent)));
        let written = update_hot_standby(store.as_ref(), &hs_options).unwrap();
        assert!(written < copied, "incremental {n} rewrote {written} of {copied} files");
        parent = i.label;
    }
    let expected = pgbench_state(&cluster);
    let data = hs.path().join("primary");
    let label_text = std::fs::read_to_string(data.join("backup_label")).unwrap();
    assert!(label_text.contains(&format!("pgmoneta_{parent}")) && !label_text.contains("INCREMENTAL"), "{label_text}");
    let standby = Cluster::start_on(cluster.install().clone(), &data, cluster.superuser_password()).unwrap();
    assert_eq!(pgbench_state(&standby), expected);
}

/// A database moved to another tablespace and back between two backups has its files copied
/// whole by the server, with no block references in the WAL: the incremental backup must copy
/// them whole too, or the restore would hold the parent's stale rows.
#[test]
fn a_database_moved_between_tablespaces_is_copied_whole() {
    let cluster = Cluster::builder().start().unwrap();
    let location = crate::tablespace_location();
    cluster.execute("CREATE DATABASE moved").unwrap();
    cluster.query_in("moved", "CREATE TABLE m AS SELECT g FROM generate_series(1, 20000) g").unwrap();
    let (_repo, store, _wal) = repository(&cluster);
    let full = take_incremental(&cluster, store.clone(), &options(0, None));
    cluster.execute(&format!("CREATE TABLESPACE away LOCATION '{}'", location.path().display())).unwrap();
    cluster.execute("ALTER DATABASE moved SET TABLESPACE away").unwrap();
    cluster.query_in("moved", "UPDATE m SET g = g * 3").unwrap();
    cluster.execute("ALTER DATABASE moved SET TABLESPACE pg_default").unwrap();
    cluster.execute("DROP TABLESPACE away").unwrap();
    // Read only after the backup: reading sets hint bits, which with checksums logs every
    // page, and the backup would then copy them for that reason alone.
    let i1 = take_incremental(&cluster, store.clone(), &options(1, Some(&full.label)));
    let expected = cluster.query_in("moved", "SELECT sum(g) FROM m").unwrap();
    let root = shared_dir("pgmoneta-incr-restore-");
    let mut opts = RestoreOptions::new("primary", BackupSelector::Label(i1.label.clone()), root.path());
    opts.master_key = Some(key());
    let report = restore(store.as_ref(), &opts).unwrap();
    let restored =
        Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password()).unwrap();
    assert_eq!(restored.query_in("moved", "SELECT sum(g) FROM m").unwrap(), expected);
}

/// Each backup keeps the `manifest` algorithm it was taken with: backups of one algorithm link
/// to each other, a change of algorithm stores the next backup whole, a backup stored as
/// received still gets SHA-512s in `backup.sha512`, and an incremental whose parent used
/// another algorithm keeps its own through the roll-up that deleting that parent makes.
#[test]
fn each_backup_keeps_its_manifest_algorithm_through_links_and_roll_ups() {
    use pgmoneta_storage::manifest::ManifestAlgorithm::{self, Crc32c, Sha256};
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(2).unwrap();
    let (repo, store, _wal) = repository(&cluster);
    let zstd = Compression::client(Algorithm::Zstd);
    let take = |n: u32, manifest: ManifestAlgorithm, compression: Compression, parent: Option<&str>| {
        let mut o = BackupOptions::new("primary", label(n));
        o.workers = 2;
        o.compression = compression;
        o.manifest = manifest;
        o.parent = parent.map(str::to_owned);
        let info = take_incremental(&cluster, store.clone(), &o);
        assert_eq!(info.manifest, manifest);
        info
    };
    let links = |info: &BackupInfo| {
        walk(&repo.path().join(format!("primary/backup/{}/data", info.label))).iter().filter(|p| p.is_symlink()).count()
    };
    let a = take(40, Crc32c, zstd, None);
    let b = take(41, Crc32c, zstd, None);
    assert!(links(&b) > 100, "only {} files of the second CRC32C backup linked to the first", links(&b));
    let c = take(42, Sha256, zstd, None);
    assert_eq!(links(&c), 0, "a SHA-256 backup linked to a CRC32C one");
    let d = take(43, Sha256, Compression::NONE, None);
    let sums = std::fs::read_to_string(repo.path().join(format!("primary/backup/{}/backup.sha512", d.label))).unwrap();
    let control =
        std::fs::read(repo.path().join(format!("primary/backup/{}/data/global/pg_control", d.label))).unwrap();
    let line = format!(
        "{} *./data/global/pg_control",
        pgmoneta_crypto::digest_hex(pgmoneta_crypto::HashAlgorithm::Sha512, &control)
    );
    assert!(sums.lines().any(|l| l == line), "backup.sha512 of a plain SHA-256 backup lacks {line}");
    cluster.pgbench_run(2, 100).unwrap();
    let e = take(44, Crc32c, zstd, Some(&d.label));
    let expected = pgbench_state(&cluster);
    for info in [&a, &b, &c, &d, &e] {
        let text = std::fs::read_to_string(repo.path().join(format!("primary/backup/{}/backup.manifest", info.label)))
            .unwrap();
        assert!(text.lines().all(|l| l.rsplit_once(',').unwrap().1.len() == info.manifest.hex_len()), "{}", info.label);
        verify_clean(&store, &info.label);
    }
    // The parent goes: the CRC32C incremental is rolled up over the SHA-256 full backup.
    let mut opts = DeleteOptions::default();
    opts.master_key = Some(key());
    delete_backup_with(store.as_ref(), "primary", &d.label, &opts).unwrap();
    let rolled = pgmoneta_storage::catalog::load_info(store.as_ref(), "primary", &e.label).unwrap();
    assert_eq!((rolled.backup_type, rolled.manifest), (BackupType::Full, Crc32c));
    verify_clean(&store, &e.label);
    assert_eq!(restored_state(&cluster, &store, &e.label), expected);
}
