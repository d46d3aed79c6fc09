//! `archive` and hot standbys.

use std::io::Read;
use std::sync::Arc;

use pgmoneta_compress::{Algorithm, Compression, Decoder};
use pgmoneta_crypto::{Cipher, DecryptReader, MasterKey};
use pgmoneta_storage::backup::BackupOptions;
use pgmoneta_storage::catalog::BackupSelector;
use pgmoneta_storage::export::{archive, update_hot_standby, ArchiveOptions, HotStandbyOptions};
use pgmoneta_storage::store::LocalStore;
use pgmoneta_testkit::Cluster;

use crate::{backup, label, pgbench_state, shared_dir};

/// The archive is one tar file, compressed and encrypted like the backup; unpacked, it starts.
#[test]
fn archive_is_a_startable_tar() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(1).unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let expected = pgbench_state(&cluster);
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let key = Arc::new(MasterKey::from_bytes([3; 64]));
    let mut opts = BackupOptions::new("primary", label(400));
    opts.compression = Compression::client(Algorithm::Zstd);
    opts.encryption = Some((Cipher::Aes256Gcm, key.clone()));
    let info = backup(&cluster, store.clone(), &opts);

    let out = shared_dir("pgmoneta-archive-");
    let mut aopts = ArchiveOptions::new("primary", BackupSelector::Newest, out.path());
    aopts.master_key = Some(key.clone());
    let path = archive(store.as_ref(), &aopts).unwrap();
    assert_eq!(path.file_name().unwrap().to_str().unwrap(), format!("archive-primary-{}.tar.zstd.aes", info.label));
    let entries: Vec<_> = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries.len(), 1, "only the archive is left: {entries:?}");

    let dec = DecryptReader::new(&key, Cipher::Aes256Gcm, std::fs::File::open(&path).unwrap(), "archive");
    let mut tar = Vec::new();
    Decoder::from_reader(Algorithm::Zstd, dec).unwrap().read_to_end(&mut tar).unwrap();
    let unpack = shared_dir("pgmoneta-unpack-");
    let mut child = std::process::Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(unpack.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let data = unpack.path().join(format!("primary-{}", info.label));
    let restored = Cluster::start_on(cluster.install().clone(), &data, cluster.superuser_password()).unwrap();
    assert_eq!(pgbench_state(&restored), expected);
}

/// A hot standby is a full copy after the first backup, then only what changed.
#[test]
fn hot_standby_copies_only_what_changed() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(1).unwrap();
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let hs = shared_dir("pgmoneta-hs-");
    let mut options = HotStandbyOptions::new("primary", hs.path());
    options.workers = 2;
    let mut opts = BackupOptions::new("primary", label(500));
    opts.compression = Compression::client(Algorithm::Lz4);
    backup(&cluster, store.clone(), &opts);
    let full = update_hot_standby(store.as_ref(), &options).unwrap();
    assert!(full > 500, "first copy wrote {full} files");
    cluster.pgbench_run(1, 20).unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let expected = pgbench_state(&cluster);
    let mut opts = BackupOptions::new("primary", label(501));
    opts.compression = Compression::client(Algorithm::Lz4);
    backup(&cluster, store.clone(), &opts);
    let changed = update_hot_standby(store.as_ref(), &options).unwrap();
    assert!(changed < full / 5, "the update wrote {changed} of {full} files");
    let standby =
        Cluster::start_on(cluster.install().clone(), &hs.path().join("primary"), cluster.superuser_password()).unwrap();
    assert_eq!(pgbench_state(&standby), expected);
}
