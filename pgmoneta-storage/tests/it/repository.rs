//! Links, deletion with relinking, keep flags, annotations, retention, and interrupted backups.

use std::sync::Arc;

use pgmoneta_compress::{Algorithm, Compression};
use pgmoneta_core::config::Retention;
use pgmoneta_storage::backup::{take_backup, BackupOptions};
use pgmoneta_storage::catalog::{list_backups, load_info, BackupSelector};
use pgmoneta_storage::ops::{
    annotate, apply_retention, cleanup_incomplete, delete_backup, oldest_needed_wal, set_keep, Annotation,
};
use pgmoneta_storage::restore::{apply, plan as plan_restore, restore, RestoreOptions};
use pgmoneta_storage::retention::{plan, BackupSummary};
use pgmoneta_storage::store::{EntryKind, LocalStore, MemoryStore, Store};
use pgmoneta_storage::verify::verify;
use pgmoneta_storage::StorageError;
use pgmoneta_testkit::Cluster;

use crate::{backup, label, minor, pgbench_state, replication};

fn links_in(store: &dyn Store, dir: &str) -> usize {
    let mut n = 0;
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in store.list(&d).unwrap() {
            match e.kind {
                EntryKind::Dir => dirs.push(format!("{d}/{}", e.name)),
                EntryKind::Symlink if !d.ends_with("pg_tblspc") => n += 1,
                _ => {}
            }
        }
    }
    n
}

fn restore_and_compare(cluster: &Cluster, store: &dyn Store, lbl: &str, expected: &[(String, String)]) {
    let root = crate::shared_dir("pgmoneta-restore-");
    let mut opts = RestoreOptions::new("primary", BackupSelector::Label(lbl.to_owned()), root.path());
    opts.workers = 2;
    let report = restore(store, &opts).unwrap_or_else(|e| panic!("restore {lbl}: {e}"));
    let restored = Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password())
        .unwrap_or_else(|e| panic!("starting the restore of {lbl}: {e}"));
    assert_eq!(pgbench_state(&restored), expected, "restore of {lbl}");
}

fn verify_clean(store: &dyn Store, lbl: &str) {
    let (failed, all) = verify(store, "primary", lbl, None, 2).unwrap();
    assert!(failed.is_empty(), "{lbl}: {failed:?}");
    assert!(!all.is_empty());
}

/// Three backups share unchanged files through links; deleting the middle one, then the oldest,
/// moves the files the others need, and every remaining backup still verifies and restores.
#[test]
fn links_and_deletes_keep_every_backup_restorable() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(2).unwrap();
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let mut states = Vec::new();
    let mut labels = Vec::new();
    for i in 0..3 {
        if i > 0 {
            cluster.pgbench_run(1, 50).unwrap();
        }
        cluster.execute("CHECKPOINT").unwrap();
        states.push(pgbench_state(&cluster));
        let mut opts = BackupOptions::new("primary", label(100 + i));
        opts.compression = Compression::client(Algorithm::Lz4);
        opts.workers = 2;
        labels.push(backup(&cluster, store.clone(), &opts).label);
    }
    let infos: Vec<_> = labels.iter().map(|l| load_info(store.as_ref(), "primary", l).unwrap()).collect();
    for (i, l) in labels.iter().enumerate().skip(1) {
        let n = links_in(store.as_ref(), &format!("primary/backup/{l}"));
        assert!(n > 100, "backup {i} links only {n} files");
        assert!(infos[i].backup_size < infos[0].backup_size / 2, "backup {i} stores {} bytes", infos[i].backup_size);
        assert!(infos[i].elapsed.linking > 0.0);
        verify_clean(store.as_ref(), l);
    }
    // With linking off (the `link` setting), every file is stored again.
    let mut opts = BackupOptions::new("primary", label(110));
    opts.compression = Compression::client(Algorithm::Lz4);
    opts.link = false;
    let unlinked = backup(&cluster, store.clone(), &opts);
    assert_eq!(links_in(store.as_ref(), &format!("primary/backup/{}", unlinked.label)), 0);
    delete_backup(store.as_ref(), "primary", &unlinked.label, false).unwrap();

    // Annotations and the keep flag.
    annotate(store.as_ref(), "primary", &labels[1], &Annotation::Add("reason".into(), "before upgrade".into()))
        .unwrap();
    assert!(annotate(store.as_ref(), "primary", &labels[1], &Annotation::Add("reason".into(), "x".into())).is_err());
    let c =
        annotate(store.as_ref(), "primary", &labels[1], &Annotation::Update("reason".into(), "after".into())).unwrap();
    assert_eq!(c, "reason|after");
    assert!(annotate(store.as_ref(), "primary", &labels[1], &Annotation::Remove("nothing".into())).is_err());
    set_keep(store.as_ref(), "primary", &labels[1], true, false).unwrap();
    let err = delete_backup(store.as_ref(), "primary", &labels[1], false).unwrap_err();
    assert!(err.to_string().contains("retained"), "{err}");
    set_keep(store.as_ref(), "primary", &labels[1], false, false).unwrap();

    // Delete the middle backup, then the oldest: the newest keeps working.
    delete_backup(store.as_ref(), "primary", &labels[1], false).unwrap();
    verify_clean(store.as_ref(), &labels[0]);
    verify_clean(store.as_ref(), &labels[2]);
    restore_and_compare(&cluster, store.as_ref(), &labels[0], &states[0]);
    delete_backup(store.as_ref(), "primary", &labels[0], false).unwrap();
    verify_clean(store.as_ref(), &labels[2]);
    let survivor = load_info(store.as_ref(), "primary", &labels[2]).unwrap();
    assert!(survivor.backup_size > infos[2].backup_size, "the survivor's size counts the files it gained");
    assert_eq!(links_in(store.as_ref(), &format!("primary/backup/{}", labels[2])), 0);
    restore_and_compare(&cluster, store.as_ref(), &labels[2], &states[2]);
    let left: Vec<_> = list_backups(store.as_ref(), "primary").unwrap().into_iter().map(|b| b.label).collect();
    assert_eq!(left, [labels[2].clone()]);
}

/// Unchanged files are linked as they arrive whatever the storage: stored as received, and
/// compressed and encrypted (where the stored bytes differ from one backup to the next, and a
/// link must carry the checksum of the bytes it reaches). Both verify and restore.
#[test]
fn files_linked_as_they_arrive_verify_and_restore_with_every_storage() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(1).unwrap();
    let key = crate::test_key();
    let storages = [
        (Compression::NONE, None),
        (Compression::client(Algorithm::Zstd), Some((pgmoneta_crypto::Cipher::Aes256Gcm, key.clone()))),
    ];
    for (i, (compression, encryption)) in storages.into_iter().enumerate() {
        let repo = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::new(repo.path()));
        let mut labels = Vec::new();
        for n in 0..2 {
            cluster.pgbench_run(1, 20).unwrap();
            cluster.execute("CHECKPOINT").unwrap();
            let mut opts = BackupOptions::new("primary", label(300 + 10 * i as u32 + n));
            opts.compression = compression;
            opts.encryption = encryption.clone();
            opts.workers = 2;
            labels.push(backup(&cluster, store.clone(), &opts).label);
        }
        let state = pgbench_state(&cluster);
        let n = links_in(store.as_ref(), &format!("primary/backup/{}", labels[1]));
        assert!(n > 100, "storage {i}: only {n} files linked");
        let (failed, all) = verify(store.as_ref(), "primary", &labels[1], Some(&key), 2).unwrap();
        assert!(failed.is_empty(), "storage {i}: {failed:?}");
        assert!(all.len() > 100);
        let root = crate::shared_dir("pgmoneta-restore-");
        let mut opts = RestoreOptions::new("primary", BackupSelector::Label(labels[1].clone()), root.path());
        opts.workers = 2;
        opts.master_key = Some(key.clone());
        // Planned first: the plan decides and checks without writing anything.
        let planned = plan_restore(store.as_ref(), &opts).unwrap();
        assert_eq!(planned.backup.label, labels[1]);
        assert!(planned.recovery.is_none() && planned.replaced.is_empty());
        assert!(planned.to_string().starts_with(&format!("backup {} into ", labels[1])), "{planned}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "storage {i}: planning wrote");
        // Someone's file in the way: refused, unless forced, and then the plan names it.
        std::fs::create_dir_all(&planned.data_dir).unwrap();
        std::fs::write(planned.data_dir.join("someone's file"), b"x").unwrap();
        let e = plan_restore(store.as_ref(), &opts).unwrap_err();
        assert!(matches!(e, StorageError::NotEmpty { entries: 1, .. }), "storage {i}: {e}");
        opts.force = true;
        let planned = plan_restore(store.as_ref(), &opts).unwrap();
        assert_eq!(planned.replaced, vec![(planned.data_dir.clone(), 1)]);
        assert!(planned.to_string().contains("replaces the 1 entries of"), "{planned}");
        let report = apply(store.as_ref(), &opts, &planned).unwrap();
        assert!(!report.data_dir.join("someone's file").exists());
        let restored = Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password())
            .unwrap_or_else(|e| panic!("storage {i}: starting the restore: {e}"));
        assert_eq!(pgbench_state(&restored), state, "storage {i}");
    }
}

/// Retention deletes what its plan says, at once, and never a kept backup.
#[test]
fn retention_applies_its_plan() {
    let cluster = Cluster::builder().start().unwrap();
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let labels: Vec<String> = (0..4)
        .map(|i| {
            let mut opts = BackupOptions::new(
                "primary",
                pgmoneta_core::BackupLabel::new(
                    pgmoneta_core::CivilDateTime::new(2026, 11, 10 + 4 * i as u8, 9, 0, 0).unwrap(),
                ),
            );
            opts.compression = Compression::client(Algorithm::Zstd);
            backup(&cluster, store.clone(), &opts).label
        })
        .collect();
    set_keep(store.as_ref(), "primary", &labels[0], true, false).unwrap();
    let summaries: Vec<BackupSummary> = list_backups(store.as_ref(), "primary")
        .unwrap()
        .iter()
        .map(|b| BackupSummary { label: b.label.parse().unwrap(), valid: b.valid, keep: b.keep, parent: None })
        .collect();
    let now = pgmoneta_core::CivilDateTime::new(2026, 11, 28, 12, 0, 0).unwrap();
    // Seven days: the backups of the 10th, 14th and 18th expire; the 10th is kept by its flag.
    let p = plan(&summaries, &Retention { days: Some(7), weeks: None, months: None, years: None }, now);
    let deleted = apply_retention(store.as_ref(), "primary", &p).unwrap();
    assert_eq!(deleted, [labels[2].clone(), labels[1].clone()]);
    let left: Vec<_> = list_backups(store.as_ref(), "primary").unwrap().into_iter().map(|b| b.label).collect();
    assert_eq!(left, [labels[0].clone(), labels[3].clone()]);
    for l in &left {
        verify_clean(store.as_ref(), l);
    }
    let backups = list_backups(store.as_ref(), "primary").unwrap();
    assert_eq!(oldest_needed_wal(&backups), Some(backups[0].wal.as_str()));
}

/// A backup whose writes fail at any point leaves no valid backup and nothing behind, and the
/// next backup succeeds and restores.
#[test]
fn interrupted_backups_leave_nothing_valid() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(1).unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let expected = pgbench_state(&cluster);
    let store = Arc::new(MemoryStore::new());
    for (i, budget) in [0u64, 4 << 10, 300 << 10, 1 << 20, 2 << 20].into_iter().enumerate() {
        store.fail_after_bytes(budget);
        let mut opts = BackupOptions::new("primary", label(200 + i as u32));
        opts.compression = Compression::client(Algorithm::Gzip);
        opts.level = 1;
        opts.workers = 2;
        let mut conn = replication(&cluster);
        let r = take_backup(&mut conn, cluster.version(), minor(&cluster), store.clone(), &opts);
        assert!(r.is_err(), "a backup with a write failure after {budget} bytes succeeded");
        assert!(list_backups(store.as_ref(), "primary").unwrap().is_empty());
        assert!(!store.exists(&format!("primary/backup/{}", opts.label)), "the failed backup left files");
    }
    // What a crash leaves (a directory without backup.info) is not a backup, and start-up
    // cleanup removes it.
    store.fail_after_bytes(u64::MAX);
    store.create_dir("primary/backup/20261128101010/data/base").unwrap();
    store.write("primary/backup/20261128101010/data/base/1.gz", b"partial").unwrap();
    assert!(list_backups(store.as_ref(), "primary").unwrap().is_empty());
    assert_eq!(cleanup_incomplete(store.as_ref(), "primary").unwrap(), ["20261128101010"]);
    assert!(!store.exists("primary/backup/20261128101010"));
    let mut opts = BackupOptions::new("primary", label(299));
    opts.compression = Compression::client(Algorithm::Gzip);
    let info = backup(&cluster, store.clone(), &opts);
    assert_eq!(list_backups(store.as_ref(), "primary").unwrap().len(), 1);
    verify_clean(store.as_ref(), &info.label);
    restore_and_compare(&cluster, store.as_ref(), &info.label, &expected);
}

/// A backup cancelled inside its largest file, stored as received (its files hashed by reading
/// them back while they are written) or encrypted (hashed from memory): the backup ends as
/// cancelled, not with an error of the hashing it stopped, nothing is left, and the next backup
/// into the same repository is whole.
#[test]
fn a_cancelled_backup_leaves_nothing_and_the_next_is_whole() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(5).unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let expected = pgbench_state(&cluster);
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    for (i, encrypted) in [false, true].into_iter().enumerate() {
        let mut opts = BackupOptions::new("primary", label(400 + i as u32));
        opts.workers = 2;
        if encrypted {
            opts.encryption = Some((pgmoneta_crypto::Cipher::Aes256Gcm, crate::test_key()));
        }
        // 20 MB/s: the cancel lands inside pgbench_accounts (64 MB), whatever the machine.
        opts.max_rate_kb = Some(20_000);
        let (cancel, progress) = (opts.cancel.clone(), opts.progress.clone());
        let watcher = std::thread::spawn(move || {
            while progress.done.load(std::sync::atomic::Ordering::Relaxed) < 30 << 20 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut conn = replication(&cluster);
        let r = take_backup(&mut conn, cluster.version(), minor(&cluster), store.clone(), &opts);
        watcher.join().unwrap();
        assert!(
            matches!(r, Err(pgmoneta_storage::StorageError::Cancelled)),
            "a cancelled backup (encrypted: {encrypted}) ended with {:?}",
            r.map(|i| i.label)
        );
        assert!(list_backups(store.as_ref(), "primary").unwrap().is_empty());
        assert!(!store.exists(&format!("primary/backup/{}", opts.label)), "the cancelled backup left files");
    }

    let opts = BackupOptions::new("primary", label(402));
    let info = backup(&cluster, store.clone(), &opts);
    verify_clean(store.as_ref(), &info.label);
    restore_and_compare(&cluster, store.as_ref(), &info.label, &expected);
}
