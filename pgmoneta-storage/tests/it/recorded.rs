//! A base backup recorded earlier (here built in the test: a data directory and a tablespace as
//! `pg_basebackup -Ft` writes them) is fed to a [`Repository`] with no server at all: it is
//! stored, listed, verified and restored byte for byte; recordings that are cut short or lack
//! their `backup_label` are refused and leave nothing behind.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use pgmoneta_compress::{Algorithm, Compression};
use pgmoneta_core::{Lsn, PgVersion, TimelineId};
use pgmoneta_crypto::Cipher;
use pgmoneta_storage::backup::BackupOptions;
use pgmoneta_storage::catalog::BackupSelector;
use pgmoneta_storage::restore::RestoreOptions;
use pgmoneta_storage::store::LocalStore;
use pgmoneta_storage::tar::TarWriter;
use pgmoneta_storage::{Repository, StorageError};
use pgmoneta_wire::replication::ArchiveInfo;
use pgmoneta_wire::source::RecordedSource;

use crate::{label, test_key};

/// Bytes that differ from file to file and do not compress to nothing.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 {
                0
            } else {
                x as u8
            }
        })
        .collect()
}

/// The recorded data directory: path -> bytes (directories as `None`).
fn data_directory() -> BTreeMap<String, Option<Vec<u8>>> {
    let label = "START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n\
                 CHECKPOINT LOCATION: 0/3000080\n\
                 BACKUP METHOD: streamed\n\
                 BACKUP FROM: primary\n\
                 START TIME: 2026-12-06 10:10:10 UTC\n\
                 LABEL: pgmoneta_recorded\n\
                 START TIMELINE: 1\n";
    let mut files: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for dir in ["base", "base/1", "base/5", "global", "pg_wal", "pg_wal/archive_status", "pg_tblspc"] {
        files.insert(dir.into(), None);
    }
    files.insert("PG_VERSION".into(), Some(b"17\n".to_vec()));
    files.insert("backup_label".into(), Some(label.as_bytes().to_vec()));
    files.insert("postgresql.conf".into(), Some(b"shared_buffers = 16MB\n".to_vec()));
    files.insert("base/1/1259".into(), Some(content(1, 3 * 8192)));
    // Large enough to cross many chunks and the pipeline's own buffers.
    files.insert("base/5/16384".into(), Some(content(2, 3 << 20)));
    files.insert("base/5/16384_fsm".into(), Some(content(3, 24_576)));
    files.insert("base/5/16390".into(), Some(Vec::new()));
    files.insert("global/pg_control".into(), Some(content(4, 8192)));
    files
}

fn tablespace() -> BTreeMap<String, Option<Vec<u8>>> {
    let mut files = BTreeMap::new();
    files.insert("PG_17_202406281".into(), None);
    files.insert("PG_17_202406281/5".into(), None);
    files.insert("PG_17_202406281/5/16400".into(), Some(content(5, 40_000)));
    files
}

fn tar(files: &BTreeMap<String, Option<Vec<u8>>>, skip: &str) -> Vec<u8> {
    let mut t = TarWriter::new(Vec::new());
    for (path, data) in files {
        match data {
            _ if path == skip => {}
            None => t.append_dir(path, 0o700, 1_765_000_000).unwrap(),
            Some(d) => t.append_file(path, 0o600, 1_765_000_000, d.len() as u64, &d[..]).unwrap(),
        }
    }
    t.finish().unwrap()
}

fn recording(base: Vec<u8>, space: Vec<u8>) -> RecordedSource {
    let position = |lsn| (Lsn(lsn), TimelineId(1));
    RecordedSource::new(position(0x300_0028), position(0x300_0138))
        .archive(ArchiveInfo { name: "base.tar".into(), tablespace_oid: None, location: None }, Cursor::new(base))
        .archive(
            ArchiveInfo { name: "16385.tar".into(), tablespace_oid: Some(16385), location: Some("/srv/ts".into()) },
            Cursor::new(space),
        )
        // An odd size: tar headers and file data split across chunks.
        .chunk_size(7001)
}

fn options(n: u32) -> BackupOptions {
    let mut o = BackupOptions::new("primary", label(n));
    o.compression = Compression::client(Algorithm::Zstd);
    o.encryption = Some((Cipher::Aes256Gcm, test_key()));
    o.workers = 2;
    o
}

fn assert_restored(dir: &Path, files: &BTreeMap<String, Option<Vec<u8>>>, what: &str) {
    for (path, data) in files {
        let p = dir.join(path);
        match data {
            None => assert!(p.is_dir(), "{what}: directory {path} missing"),
            Some(d) => {
                let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{what}: {path}: {e}"));
                assert!(got == *d, "{what}: {path} differs ({} bytes, expected {})", got.len(), d.len());
            }
        }
    }
}

#[test]
fn a_recorded_backup_is_stored_verified_and_restored_with_no_server() {
    let root = tempfile::tempdir().unwrap();
    let repo = Repository::open(Arc::new(LocalStore::new(root.path())), Some(test_key()));
    let (data, space) = (data_directory(), tablespace());
    let mut source = recording(tar(&data, ""), tar(&space, ""));
    let info = repo.backup_from(&mut source, PgVersion::V17, 2, &options(0)).unwrap();
    assert!(info.valid);
    assert_eq!(
        (info.start_lsn, info.end_lsn, info.checkpoint_lsn),
        (Lsn(0x300_0028), Lsn(0x300_0138), Lsn(0x300_0080))
    );
    assert_eq!((info.wal.as_str(), info.major_version, info.minor_version), ("000000010000000000000003", 17, 2));
    assert_eq!(info.tablespaces.len(), 1);
    assert_eq!(info.tablespaces[0].path, "/srv/ts");
    let plain: u64 = data.values().chain(space.values()).flatten().map(|d| d.len() as u64).sum();
    assert!(info.backup_size > 0 && info.backup_size < plain, "{} stored of {plain}", info.backup_size);

    let catalog = repo.catalog("primary").unwrap();
    assert_eq!(catalog.backups().len(), 1);
    let v = repo.verify("primary", &info.label, 2).unwrap();
    assert!(v.failed.is_empty(), "{:?}", v.failed);
    // The manifest written from the files received lists each of them.
    let files = data.iter().chain(space.iter()).filter(|(_, d)| d.is_some()).count();
    assert_eq!(v.manifest.len(), files, "{:?}", v.manifest);

    let out = tempfile::tempdir().unwrap();
    let o = RestoreOptions::new("primary", BackupSelector::parse("newest"), out.path());
    let plan = repo.plan_restore(&o).unwrap();
    let report = repo.apply_restore(&o, &plan).unwrap();
    assert_restored(&report.data_dir, &data, "data directory");
    let ts = out.path().join(format!("primary-{}-{}", info.label, info.tablespaces[0].dir));
    assert_restored(&ts, &space, "tablespace");
    let link = std::fs::read_link(report.data_dir.join("pg_tblspc/16385")).unwrap();
    assert!(report.data_dir.join("pg_tblspc").join(&link).join("PG_17_202406281/5/16400").is_file(), "{link:?}");
}

#[test]
fn a_recording_cut_short_or_without_its_label_is_refused_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let repo = Repository::open(Arc::new(LocalStore::new(root.path())), Some(test_key()));
    let (data, space) = (data_directory(), tablespace());

    // Cut in the middle of a file: the tar parser names what is wrong.
    let mut cut = tar(&data, "");
    cut.truncate(cut.len() / 2);
    let e = repo.backup_from(&mut recording(cut, tar(&space, "")), PgVersion::V17, 2, &options(0)).unwrap_err();
    assert!(matches!(e, StorageError::Tar(_)), "{e:?}");

    // Whole, but without backup_label: not a base backup.
    let e = repo
        .backup_from(&mut recording(tar(&data, "backup_label"), tar(&space, "")), PgVersion::V17, 2, &options(1))
        .unwrap_err();
    assert!(e.to_string().contains("backup_label"), "{e}");

    assert!(repo.catalog("primary").unwrap().backups().is_empty());
    let left: Vec<_> = std::fs::read_dir(root.path().join("primary/backup"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");

    // The repository takes the whole recording afterwards.
    let info =
        repo.backup_from(&mut recording(tar(&data, ""), tar(&space, "")), PgVersion::V17, 2, &options(2)).unwrap();
    assert!(info.valid);
}
