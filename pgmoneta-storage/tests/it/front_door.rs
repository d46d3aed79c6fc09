//! A program holding only a [`Repository`] backs up a server (full, then incremental), keeps a
//! hot standby, uploads to a remote copy, lists, verifies, restores (PostgreSQL started on the
//! result), annotates, deletes with a roll-up and applies retention, all through the front door.

use std::sync::Arc;

use pgmoneta_compress::{Algorithm, Compression};
use pgmoneta_core::config::Retention;
use pgmoneta_core::CivilDateTime;
use pgmoneta_crypto::Cipher;
use pgmoneta_storage::backup::BackupOptions;
use pgmoneta_storage::catalog::BackupSelector;
use pgmoneta_storage::export::HotStandbyOptions;
use pgmoneta_storage::info::BackupType;
use pgmoneta_storage::ops::{Annotation, DeleteOptions};
use pgmoneta_storage::remote::Remote;
use pgmoneta_storage::restore::RestoreOptions;
use pgmoneta_storage::sqlbackup::SqlBackupOptions;
use pgmoneta_storage::store::{LocalStore, MemoryStore};
use pgmoneta_storage::wal::{WalArchive, WalOptions};
use pgmoneta_storage::{PgSource, Repository, StorageError};
use pgmoneta_testkit::Cluster;
use pgmoneta_wire::{ConnectOptions, ReplicationMode, SslMode};

use crate::{grant_backup_functions, label, minor, pgbench_state, shared_dir, test_key, Streamer};

fn source(cluster: &Cluster) -> PgSource {
    let base = ConnectOptions::new(cluster.host(), cluster.port(), cluster.replication_user())
        .password(cluster.replication_password())
        .ssl_mode(SslMode::Disable);
    let sql = base.clone().database("postgres");
    let replication = base.replication(ReplicationMode::Physical);
    PgSource::new("primary", sql, replication, cluster.version(), minor(cluster))
}

fn restore_state(cluster: &Cluster, repo: &Repository, id: &str) -> Vec<(String, String)> {
    let dir = shared_dir("pgmoneta-front-restore-");
    let mut o = RestoreOptions::new("primary", BackupSelector::parse(id), dir.path());
    o.workers = 2;
    let plan = repo.plan_restore(&o).unwrap_or_else(|e| panic!("planning the restore of {id}: {e}"));
    assert!(plan.to_string().contains("primary"), "{plan}");
    let report = repo.apply_restore(&o, &plan).unwrap_or_else(|e| panic!("restoring {id}: {e}"));
    let restored = Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password())
        .unwrap_or_else(|e| panic!("starting PostgreSQL on the restore of {id}: {e}"));
    pgbench_state(&restored)
}

#[test]
fn a_repository_does_everything_through_its_front_door() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(2).unwrap();
    grant_backup_functions(&cluster);
    let root = tempfile::tempdir().unwrap();
    let _wal = Streamer::start(&cluster, root.path());
    let repo = Repository::open(Arc::new(LocalStore::new(root.path())), Some(test_key()));
    // A remote copy that fails its first upload, then works.
    let remote = MemoryStore::new();
    remote.fail_after_bytes(10_000);
    repo.set_remotes("primary", vec![Remote { engine: "ssh", store: Arc::new(remote.clone()) }], vec![]);
    let hs = shared_dir("pgmoneta-front-hs-");
    let src = source(&cluster);

    // A full backup: whole locally, its upload pending.
    let mut o = BackupOptions::new("primary", label(0));
    o.compression = Compression::client(Algorithm::Zstd);
    o.encryption = Some((Cipher::Aes256Gcm, test_key()));
    o.workers = 2;
    o.hot_standbys = vec![HotStandbyOptions::new("primary", hs.path())];
    let e = repo.backup(&src, &o, &SqlBackupOptions::default()).unwrap_err();
    assert!(matches!(e, StorageError::UploadPending { .. }), "{e}");
    assert!(e.to_string().contains("upload to ssh storage"), "{e}");
    assert_eq!(repo.pending_uploads("primary"), [label(0).to_string()]);
    let full = repo.info("primary", &label(0).to_string()).unwrap();
    assert!(full.valid);
    assert!(hs.path().join("primary/global/pg_control").exists(), "the hot standby was not made");
    remote.fail_after_bytes(u64::MAX);
    let failed = repo.retry_uploads(|_| Some(((), 2)), &|| false);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(repo.pending_uploads("primary").is_empty());
    assert!(remote.files().iter().any(|f| f.ends_with("backup.info")));
    let at_full = pgbench_state(&cluster);

    // An incremental on it, through SQL on 14-16 and BASE_BACKUP on 17+.
    cluster.pgbench_run(2, 200).unwrap();
    cluster.switch_wal().unwrap();
    let parent = repo.parent_for("primary", "newest").unwrap();
    assert_eq!(parent.label, full.label);
    let mut o = BackupOptions::new("primary", label(1));
    o.compression = Compression::client(Algorithm::Lz4);
    o.workers = 2;
    o.parent = Some(parent.label.clone());
    let incr = repo.backup(&src, &o, &SqlBackupOptions::default()).unwrap();
    assert_eq!((incr.backup_type, incr.parent.as_str()), (BackupType::Incremental, full.label.as_str()));
    let at_incr = pgbench_state(&cluster);
    let e = repo.parent_for("primary", &full.label).unwrap_err();
    assert!(matches!(e, StorageError::AlreadyHasChild { .. }), "{e}");

    // The catalog, verification and restores.
    let catalog = repo.catalog("primary").unwrap();
    assert_eq!(catalog.backups().len(), 2);
    assert_eq!(repo.find("primary", "oldest").unwrap().label, full.label);
    assert!(matches!(repo.find("primary", "20200101000000"), Err(StorageError::NotFound(_))));
    for b in catalog.backups() {
        let v = repo.verify("primary", &b.label, 2).unwrap();
        assert!(v.failed.is_empty(), "{:?}", v.failed);
        assert!(v.all.len() > v.manifest.len() / 2 && !v.manifest.is_empty());
    }
    assert_eq!(restore_state(&cluster, &repo, &full.label), at_full);
    assert_eq!(restore_state(&cluster, &repo, "newest"), at_incr);
    // What the remote copy holds restores by itself.
    let (engine, remote_repo) = repo.remote_only("primary").unwrap();
    assert_eq!(engine, "ssh");
    assert_eq!(remote_repo.catalog("primary").unwrap().backups().len(), 2);

    // Annotations and the keep flag; a kept backup is not deleted.
    let after = repo.annotate("primary", &incr.label, &Annotation::Add("why".into(), "before upgrade".into())).unwrap();
    assert!(after.comments.contains("why|before upgrade"), "{}", after.comments);
    assert_eq!(repo.set_keep("primary", &incr.label, true, true).unwrap().len(), 2);
    let e = repo.delete("primary", &full.label, &DeleteOptions::default(), 2).unwrap_err();
    assert!(matches!(e, StorageError::Retained { .. }), "{e}");
    repo.set_keep("primary", &incr.label, false, true).unwrap();

    // Deleting the full backup rolls it into the incremental, which still restores.
    repo.delete("primary", &full.label, &DeleteOptions::default(), 2).unwrap();
    let left = repo.catalog("primary").unwrap();
    assert_eq!(left.backups().len(), 1);
    assert_eq!(left.backups()[0].backup_type, BackupType::Full);
    assert_eq!(restore_state(&cluster, &repo, "newest"), at_incr);
    // The remote copy holds the rolled-up backup, not the incremental of a parent now gone.
    let remote_left = remote_repo.catalog("primary").unwrap();
    assert_eq!(remote_left.backups().len(), 1);
    assert_eq!(remote_left.backups()[0].backup_type, BackupType::Full);
    assert_eq!(restore_state(&cluster, &remote_repo, "newest"), at_incr);

    // Retention of one day, a month on: the last backup goes, the WAL stays (nothing is
    // pruned when no backup remains).
    let wal = WalArchive::open(
        root.path().join("primary/wal"),
        pgmoneta_core::WalSegmentSize::DEFAULT,
        WalOptions::new(Algorithm::Zstd, 1),
    )
    .unwrap();
    let segments = wal.entries().unwrap().len();
    let policy = Retention { days: Some(1), weeks: None, months: None, years: None };
    let plan = repo.plan_retention("primary", &policy, CivilDateTime::new(2026, 12, 28, 0, 0, 0).unwrap()).unwrap();
    let (outcome, report) = repo.apply_retention("primary", &plan, Some(&wal));
    outcome.unwrap();
    assert_eq!(report.deleted, std::slice::from_ref(&incr.label));
    assert_eq!((report.wal_pruned, report.wal_kept_from), (0, None));
    assert!(wal.entries().unwrap().len() >= segments);
    assert!(repo.catalog("primary").unwrap().backups().is_empty());
    // The delete reached the remote copy too.
    assert!(!remote.files().iter().any(|f| f.contains(&incr.label)), "{:?}", remote.files());
}
