//! Interoperability with upstream pgmoneta, in the direction CI can check without building it:
//! a backup written by upstream pgmoneta 0.22 (PostgreSQL 15.18, zstd, AES-256-GCM) with the WAL
//! segment it needs and the master key it was encrypted with, kept in `fixtures/` as one tar of
//! 1 MB (the cluster keeps only its `postgres` database, to keep the fixture small).
//! This library lists it, verifies every file against upstream's `backup.manifest`, restores it,
//! and PostgreSQL 15 starts on the restore. (The other direction, upstream reading our backups,
//! was checked by hand against upstream built from source; see docs/backup-and-restore.md.)

#[path = "../common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgmoneta_crypto::MasterKeyFile;
use pgmoneta_storage::catalog::{list_backups, BackupSelector};
use pgmoneta_storage::restore::{restore, RestoreOptions};
use pgmoneta_storage::store::LocalStore;
use pgmoneta_storage::verify::verify;
use pgmoneta_testkit::{Cluster, PgInstall};

use common::shared_dir;

const LABEL: &str = "20261129004523";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstream/fixtures/upstream-0.22-pg15.tar.zst")
}

/// The fixture unpacked: `master.key` and `repo/primary/{backup,wal}`.
fn unpack() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("pgmoneta-upstream-").tempdir_in("/tmp").unwrap();
    let ok = Command::new("tar").arg("-I").arg("zstd").arg("-xf").arg(fixture()).arg("-C").arg(dir.path()).status();
    assert!(ok.is_ok_and(|s| s.success()), "unpacking {} (tar and zstd are needed)", fixture().display());
    // The key file's modes, as the master key's owner keeps them.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(dir.path().join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

#[test]
fn a_backup_written_by_upstream_lists_verifies_and_restores() {
    let dir = unpack();
    let key = MasterKeyFile::new(dir.path().join("master.key")).load().unwrap();
    let store = LocalStore::new(dir.path().join("repo"));

    let backups = list_backups(&store, "primary").unwrap();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let b = &backups[0];
    assert!(b.valid && b.label == LABEL, "{b:?}");

    let (failed, all) = verify(&store, "primary", LABEL, Some(&key), 2).unwrap();
    assert!(failed.is_empty(), "files upstream wrote fail verification: {failed:?}");
    assert!(all.len() > 370, "{} files verified", all.len());

    let out = shared_dir("pgmoneta-upstream-restore-");
    let mut opts = RestoreOptions::new("primary", BackupSelector::Label(LABEL.to_owned()), out.path());
    opts.workers = 2;
    opts.master_key = Some(std::sync::Arc::new(key));
    let report = restore(&store, &opts).unwrap();
    let install = PgInstall::at(Path::new("/usr/lib/postgresql/15/bin")).unwrap();
    let cluster = Cluster::start_on(install, &report.data_dir, "").unwrap();
    // The rows the table held when upstream took the backup: ids 1 to 2000, each noted by the
    // phase of the session that wrote it.
    let rows = cluster
        .query_scalar(
            "SELECT count(*) || ' ' || min(id) || ' ' || max(id) || ' ' || count(*) FILTER (WHERE note = \
             CASE WHEN id <= 1000 THEN 'row ' WHEN id <= 1500 THEN 'phase2 ' ELSE 'phase3 ' END || id) \
             FROM interop",
        )
        .unwrap();
    assert_eq!(rows, "2000 1 2000 2000");
}
