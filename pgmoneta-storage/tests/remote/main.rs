//! Remote repositories against real servers on loopback: Garage (S3), Azurite (Azure Blob),
//! fake-gcs-server (Google Cloud Storage) and OpenSSH (SFTP),
//! with real PostgreSQL backups that are uploaded, read back, restored and started.

#[path = "../common/mod.rs"]
mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pgmoneta_compress::{Algorithm, Compression};
use pgmoneta_crypto::Cipher;
use pgmoneta_storage::backup::BackupOptions;
use pgmoneta_storage::catalog::{list_backups, BackupSelector};
use pgmoneta_storage::manifest::{BackupManifest, ManifestAlgorithm};
use pgmoneta_storage::ops::{apply_retention, delete_backup};
use pgmoneta_storage::remote::{
    drop_local_data, has_local_data, open, prune_wal, ship_wal, upload_backup, walk, AzureOptions, GcsOptions, Remote,
    RemoteSpec, RemoteTuning, S3Options, SftpOptions, TieredStore,
};
use pgmoneta_storage::restore::{restore, RestoreOptions};
use pgmoneta_storage::retention::RetentionPlan;
use pgmoneta_storage::store::{LocalStore, Store, StoreEntry};
use pgmoneta_storage::verify::verify;
use pgmoneta_testkit::{Azurite, Cluster, FakeGcs, Garage, SshServer};

use common::{backup, label, pgbench_state, shared_dir, test_key, HookStore, Streamer};

fn quick() -> RemoteTuning {
    RemoteTuning { max_retries: 2, retry_timeout: Duration::from_secs(3), part_size: 5 << 20, part_concurrency: 2 }
}

fn s3(garage: &Garage, prefix: &str) -> RemoteSpec {
    RemoteSpec::S3(S3Options {
        bucket: garage.bucket.clone(),
        region: garage.region().into(),
        access_key_id: Some(garage.key_id.clone()),
        secret_access_key: Some(garage.secret.clone()),
        base_dir: prefix.into(),
        endpoint: Some(garage.endpoint()),
        ..S3Options::default()
    })
}

fn sftp(server: &SshServer) -> RemoteSpec {
    RemoteSpec::Sftp(SftpOptions {
        host: "127.0.0.1".into(),
        port: server.port(),
        user: server.user.clone(),
        base_dir: server.scratch().display().to_string(),
        private_key_file: server.private_key(),
        public_key_file: Some(server.public_key()),
        ciphers: vec!["aes256-ctr".into(), "aes128-ctr".into()],
        known_hosts_file: None,
    })
}

fn restore_and_check(cluster: &Cluster, store: &dyn Store, lbl: &str, expected: &[(String, String)]) {
    let root = shared_dir("pgmoneta-remote-restore-");
    let mut opts = RestoreOptions::new("primary", BackupSelector::Label(lbl.to_owned()), root.path());
    opts.workers = 2;
    opts.master_key = Some(test_key());
    let report = restore(store, &opts).unwrap_or_else(|e| panic!("restore {lbl}: {e}"));
    let restored = Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password())
        .unwrap_or_else(|e| panic!("starting the restore of {lbl}: {e}"));
    assert_eq!(pgbench_state(&restored), expected, "restore of {lbl}");
}

fn remote_labels(remote: &Remote) -> Vec<String> {
    list_backups(remote.store.as_ref(), "primary").unwrap().into_iter().filter(|b| b.valid).map(|b| b.label).collect()
}

/// A pgbench cluster streaming its WAL into a local repository whose reads fall through to a
/// remote one. Fields drop in order: the streamer stops before the repository and the cluster go.
struct Bed {
    _streamer: Streamer,
    tiered: Arc<TieredStore>,
    local: Arc<LocalStore>,
    _repo: tempfile::TempDir,
    cluster: Cluster,
    /// The options of the first backup (zstd, AES-256-GCM, 2 workers).
    opts: BackupOptions,
}

/// A [`Bed`] for `remote` and its first backup: the pgbench tables' state then, and its label.
fn first_backup(remote: &Remote) -> (Bed, Vec<(String, String)>, String) {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(2).unwrap();
    let repo = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalStore::new(repo.path()));
    let tiered = Arc::new(TieredStore::new(local.clone()));
    tiered.set_remotes("primary", vec![remote.clone()]);
    let streamer = Streamer::start(&cluster, repo.path());
    cluster.execute("CHECKPOINT").unwrap();
    let state = pgbench_state(&cluster);
    let mut opts = BackupOptions::new("primary", label(1));
    opts.compression = Compression::client(Algorithm::Zstd);
    opts.encryption = Some((Cipher::Aes256Gcm, test_key()));
    opts.workers = 2;
    let first = backup(&cluster, tiered.clone(), &opts).label;
    (Bed { _streamer: streamer, tiered, local, _repo: repo, cluster, opts }, state, first)
}

/// The whole life of a remote copy: upload, WAL shipping, local data dropped and read back
/// through the remote (verify, restore, an incremental-free second backup), a restore straight
/// from the remote repository alone, delete and retention removing remote objects.
fn lifecycle(remote: Remote) {
    let (bed, first_state, first) = first_backup(&remote);
    let Bed { cluster, local, tiered, opts, .. } = &bed;
    let mut opts = opts.clone();

    // A backup, compressed and encrypted, uploaded; backup.info is there last.
    let report = upload_backup(local.as_ref(), remote.store.as_ref(), "primary", &first, 2, None).unwrap();
    assert!(report.files > 500 && report.bytes > 1 << 20, "{report:?}");
    assert_eq!(remote_labels(&remote), vec![first.clone()]);
    let objects = walk(remote.store.as_ref(), &format!("primary/backup/{first}")).unwrap();
    assert_eq!(objects.len(), report.files, "every uploaded file is listed");

    // WAL: every finished segment goes up, once.
    cluster.switch_wal().unwrap();
    cluster.switch_wal().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let shipped = ship_wal(local.as_ref(), remote.store.as_ref(), "primary", ".zstd").unwrap();
    assert!(shipped.files >= 2, "{shipped:?}");
    assert_eq!(ship_wal(local.as_ref(), remote.store.as_ref(), "primary", ".zstd").unwrap().files, 0);
    let local_wal: Vec<StoreEntry> =
        local.list("primary/wal").unwrap().into_iter().filter(|e| !e.name.ends_with(".partial")).collect();
    let remote_wal = remote.store.list("primary/wal").unwrap();
    for e in &local_wal {
        assert!(remote_wal.iter().any(|r| r.name == e.name && r.size == e.size), "{} not shipped", e.name);
    }

    // Without local storage: the data goes, the backup stays listed, and reads come from the
    // remote copy.
    drop_local_data(local.as_ref(), "primary", &first).unwrap();
    assert!(!has_local_data(local.as_ref(), "primary", &first));
    assert!(local.exists(&format!("primary/backup/{first}/backup.info")));
    assert_eq!(list_backups(tiered.as_ref(), "primary").unwrap().len(), 1);
    let (failed, all) = verify(tiered.as_ref(), "primary", &first, Some(test_key()).as_deref(), 2).unwrap();
    assert!(failed.is_empty() && all.len() > 500, "{failed:?}");
    restore_and_check(cluster, tiered.as_ref(), &first, &first_state);

    // A second backup cannot link into the dropped one: it stores every file itself. It uses
    // CRC32C for its manifest where the first used SHA-512: the remote copy keeps its
    // algorithm, and verify and restore from the remote honour it.
    cluster.pgbench_run(1, 100).unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let second_state = pgbench_state(cluster);
    opts.label = label(2);
    opts.manifest = ManifestAlgorithm::Crc32c;
    let second = backup(cluster, tiered.clone(), &opts).label;
    let linked = walk(local.as_ref(), &format!("primary/backup/{second}"))
        .unwrap()
        .iter()
        .filter(|(p, _)| local.read_link(p).ok().flatten().is_some() && !p.contains("pg_tblspc"))
        .count();
    assert_eq!(linked, 0, "no link into a backup whose data is remote");
    upload_backup(local.as_ref(), remote.store.as_ref(), "primary", &second, 2, None).unwrap();
    let uploaded = list_backups(remote.store.as_ref(), "primary").unwrap();
    let algorithms: Vec<(&str, ManifestAlgorithm)> = uploaded.iter().map(|b| (b.label.as_str(), b.manifest)).collect();
    assert_eq!(
        algorithms,
        vec![(first.as_str(), ManifestAlgorithm::Sha512), (second.as_str(), ManifestAlgorithm::Crc32c)],
        "each remote copy records its own manifest algorithm"
    );
    let path = format!("primary/backup/{second}/backup.manifest");
    let text = String::from_utf8(remote.store.read(&path).unwrap()).unwrap();
    let manifest = BackupManifest::parse(&text, &path).unwrap();
    assert_eq!(manifest.algorithm, ManifestAlgorithm::Crc32c, "the remote backup.manifest holds CRC32Cs");
    assert!(manifest.files.len() > 500, "{} files", manifest.files.len());

    // The remote repository alone (the local one lost): restore straight from it.
    let (failed, _) = verify(remote.store.as_ref(), "primary", &second, Some(test_key()).as_deref(), 2).unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    restore_and_check(cluster, remote.store.as_ref(), &second, &second_state);

    // Delete and retention remove the remote objects too.
    delete_backup(tiered.as_ref(), "primary", &first, false).unwrap();
    assert!(walk(remote.store.as_ref(), &format!("primary/backup/{first}")).unwrap().is_empty());
    assert_eq!(remote_labels(&remote), vec![second.clone()]);
    let plan = RetentionPlan { delete: vec![second.parse().unwrap()], ..RetentionPlan::default() };
    apply_retention(tiered.as_ref(), "primary", &plan).unwrap();
    assert!(walk(remote.store.as_ref(), "primary/backup").unwrap().is_empty());
    assert!(remote_labels(&remote).is_empty());

    // WAL pruning reaches the remote archive: what is older than the kept segment goes.
    let names: Vec<String> = remote.store.list("primary/wal").unwrap().into_iter().map(|e| e.name).collect();
    let segments: Vec<&String> = names.iter().filter(|n| !n.ends_with(".history")).collect();
    assert!(segments.len() >= 2, "{names:?}");
    let keep = &segments[segments.len() - 1][..24];
    let removed = prune_wal(remote.store.as_ref(), "primary", keep).unwrap();
    let left: Vec<String> = remote.store.list("primary/wal").unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(removed, names.len() - left.len());
    assert!(left.iter().all(|n| n.ends_with(".history") || n[8..24] >= keep[8..24]), "{left:?}");
    assert!(left.iter().any(|n| n.starts_with(keep)), "{left:?}");
}

#[test]
fn s3_lifecycle_on_garage() {
    let garage = Garage::start("pgmoneta").unwrap();
    lifecycle(open(&s3(&garage, "repo"), &quick()).unwrap());
}

#[test]
fn sftp_lifecycle_on_openssh() {
    let server = SshServer::start().unwrap();
    lifecycle(open(&sftp(&server), &quick()).unwrap());
}

fn azure(azurite: &Azurite) -> RemoteSpec {
    RemoteSpec::Azure(AzureOptions {
        account: Azurite::ACCOUNT.into(),
        container: azurite.container.clone(),
        shared_key: Some(Azurite::KEY.into()),
        base_dir: "repo".into(),
        endpoint: Some(azurite.endpoint()),
    })
}

#[test]
fn azure_lifecycle_on_azurite() {
    let azurite = Azurite::start("pgmoneta").unwrap();
    lifecycle(open(&azure(&azurite), &quick()).unwrap());
}

/// The server stops in the middle of an upload: the upload fails with an error naming the
/// object, no valid backup appears remotely, and once the server is back the next upload
/// replaces the partial copy with a whole one, which restores. Large files go up in parts.
fn upload_interrupted(remote: Remote, stop: Box<dyn FnOnce() + Send>, start_again: impl FnOnce()) {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(3).unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let state = pgbench_state(&cluster);
    let repo = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalStore::new(repo.path()));
    let mut opts = BackupOptions::new("primary", label(1));
    opts.compression = Compression::NONE;
    let lbl = backup(&cluster, local.clone(), &opts).label;

    let wire = HookStore {
        inner: remote.store.clone(),
        created: AtomicUsize::new(0),
        at: 200,
        at_path: None,
        hook: std::sync::Mutex::new(Some(stop)),
    };
    let err = upload_backup(local.as_ref(), &wire, "primary", &lbl, 2, None).unwrap_err();
    assert!(err.to_string().contains("primary/backup/"), "the error names the object: {err}");

    start_again();
    assert!(remote_labels(&remote).is_empty(), "no valid remote backup after a failed upload");
    let report = upload_backup(local.as_ref(), remote.store.as_ref(), "primary", &lbl, 2, None).unwrap();
    assert_eq!(remote_labels(&remote), vec![lbl.clone()]);
    // The relation files of pgbench_accounts (scale 3, ~40 MB) went up in 5 MiB parts.
    assert!(report.bytes > 40 << 20, "{report:?}");
    restore_and_check(&cluster, remote.store.as_ref(), &lbl, &state);
}

#[test]
fn s3_upload_interrupted_by_a_stopped_server() {
    let garage = Arc::new(Mutex::new(Garage::start("pgmoneta").unwrap()));
    let remote = open(&s3(&garage.lock(), ""), &quick()).unwrap();
    let g = garage.clone();
    upload_interrupted(remote, Box::new(move || g.lock().stop()), || garage.lock().start_again().unwrap());
}

#[test]
fn azure_upload_interrupted_by_a_stopped_server() {
    let azurite = Arc::new(Mutex::new(Azurite::start("pgmoneta").unwrap()));
    let remote = open(&azure(&azurite.lock()), &quick()).unwrap();
    let a = azurite.clone();
    upload_interrupted(remote, Box::new(move || a.lock().stop()), || azurite.lock().start_again().unwrap());
}

#[test]
fn sftp_upload_interrupted_by_a_stopped_server() {
    let server = Arc::new(Mutex::new(SshServer::start().unwrap()));
    let remote = open(&sftp(&server.lock()), &quick()).unwrap();
    let s = server.clone();
    upload_interrupted(remote, Box::new(move || s.lock().stop()), || server.lock().start_again().unwrap());
}

/// Virtual-host addressing of a custom endpoint (`<bucket>.<endpoint>`) reaches the same
/// bucket as path-style: what one writes, the other reads, lists and removes.
#[test]
fn s3_virtual_host_addressing_on_garage() {
    let garage = Garage::start("pgmoneta").unwrap();
    let host = format!("{}.s3.garage.localhost", garage.bucket);
    assert!(
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), garage.port())).is_ok(),
        "{host} does not resolve: add it to /etc/hosts as 127.0.0.1 (scripts/setup.sh does)"
    );
    let mut spec = s3(&garage, "vhost");
    if let RemoteSpec::S3(o) = &mut spec {
        o.endpoint = Some(garage.virtual_host_endpoint());
        o.virtual_hosted = true;
    }
    let vhost = open(&spec, &quick()).unwrap().store;
    let path = open(&s3(&garage, "vhost"), &quick()).unwrap().store;
    let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
    vhost.write("primary/wal/000000010000000000000001", &data).unwrap();
    path.write("primary/wal/000000010000000000000002", b"two").unwrap();
    let names =
        |s: &Arc<dyn Store>| s.list("primary/wal").unwrap().into_iter().map(|e| (e.name, e.size)).collect::<Vec<_>>();
    let expected =
        vec![("000000010000000000000001".to_owned(), data.len() as u64), ("000000010000000000000002".to_owned(), 3)];
    assert_eq!(names(&vhost), expected);
    assert_eq!(names(&path), expected);
    let back = path.read("primary/wal/000000010000000000000001").unwrap();
    assert!(back == data, "a multipart object written virtual-host style reads back path-style");
    vhost.remove("primary").unwrap();
    assert!(names(&path).is_empty());
}

/// Wrong credentials and a missing bucket are named as such.
#[test]
fn s3_errors_are_clear() {
    let garage = Garage::start("pgmoneta").unwrap();
    let mut wrong = s3(&garage, "");
    if let RemoteSpec::S3(o) = &mut wrong {
        o.secret_access_key = Some("0".repeat(64));
    }
    let store = open(&wrong, &quick()).unwrap().store;
    let err = store.write("x/y", b"data").unwrap_err().to_string();
    assert!(err.contains("access denied") && err.contains("x/y"), "{err}");

    let mut missing = s3(&garage, "");
    if let RemoteSpec::S3(o) = &mut missing {
        o.bucket = "no-such-bucket".into();
    }
    let store = open(&missing, &quick()).unwrap().store;
    let err = store.write("x/y", b"data").unwrap_err().to_string();
    assert!(err.contains("no-such-bucket"), "{err}");
}

fn gcs(fake: &FakeGcs) -> RemoteSpec {
    RemoteSpec::Gcs(GcsOptions {
        bucket: fake.bucket.clone(),
        base_dir: "repo".into(),
        credentials_file: Some(fake.credentials_file().unwrap().display().to_string()),
    })
}

/// Google Cloud Storage on fake-gcs-server. The emulator serves the XML API's reads, listings
/// and deletes but refuses its uploads (it takes uploads through the JSON API only), so the
/// repository is written the JSON way, object for object as `upload_backup` names them; then
/// everything but uploading runs through the GCS client: list, verify and restore of a backup
/// whose data is only there (PostgreSQL started on it), a restore from the bucket alone,
/// delete, retention's WAL pruning. The refused upload itself checks the failure path: an
/// error naming the object, and nothing valid left behind.
#[test]
fn gcs_on_fake_gcs_server() {
    let fake = FakeGcs::start("pgmoneta").unwrap();
    let remote = open(&gcs(&fake), &quick()).unwrap();
    let (bed, state, lbl) = first_backup(&remote);
    let Bed { cluster, local, tiered, .. } = &bed;
    cluster.switch_wal().unwrap();
    cluster.switch_wal().unwrap();
    std::thread::sleep(Duration::from_secs(2));

    let err = upload_backup(local.as_ref(), remote.store.as_ref(), "primary", &lbl, 2, None).unwrap_err();
    assert!(err.to_string().contains("gs://pgmoneta/repo/primary/backup/"), "the error names the object: {err}");
    assert!(walk(remote.store.as_ref(), "primary").unwrap().is_empty(), "the failed upload left objects");

    // The repository, written through the JSON API: data first, backup.info last.
    let dir = format!("primary/backup/{lbl}");
    let files = walk(local.as_ref(), &dir).unwrap();
    let last = ["backup.sha512", "backup.manifest", "backup.info"];
    let mut order = files.clone();
    order.sort_by_key(|(p, _)| last.iter().position(|n| *p == format!("{dir}/{n}")));
    let wal: Vec<String> = local
        .list("primary/wal")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.ends_with(".history") || n.get(24..) == Some(".zstd"))
        .collect();
    assert!(wal.len() >= 2, "{wal:?}");
    let seeded: Vec<String> =
        wal.iter().map(|n| format!("primary/wal/{n}")).chain(order.iter().map(|(p, _)| p.clone())).collect();
    for path in &seeded {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut local.open(path).unwrap(), &mut data).unwrap();
        fake.put_object(&format!("repo/{path}"), &data).unwrap();
    }
    assert_eq!(remote_labels(&remote), vec![lbl.clone()]);
    let listed = walk(remote.store.as_ref(), &dir).unwrap();
    assert!(listed == files, "names and sizes listed back as written: {} of {}", listed.len(), files.len());

    // The local data goes; verify and restore read the bucket.
    drop_local_data(local.as_ref(), "primary", &lbl).unwrap();
    let (failed, all) = verify(tiered.as_ref(), "primary", &lbl, Some(test_key()).as_deref(), 2).unwrap();
    assert!(failed.is_empty() && all.len() > 500, "{failed:?}");
    restore_and_check(cluster, tiered.as_ref(), &lbl, &state);
    // The bucket alone, WAL included.
    restore_and_check(cluster, remote.store.as_ref(), &lbl, &state);

    // A stored file damaged in the bucket is named by verify.
    let (victim, _) = files.iter().find(|(p, s)| p.contains("/data/base/") && *s > 1000).unwrap().clone();
    fake.put_object(&format!("repo/{victim}"), b"not what was stored").unwrap();
    let (failed, _) = verify(tiered.as_ref(), "primary", &lbl, Some(test_key()).as_deref(), 2).unwrap();
    assert!(failed.iter().any(|f| victim.contains(&format!("/data/{}.", f.path))), "{victim} not reported: {failed:?}");

    // Delete reaches the bucket; so does WAL pruning.
    delete_backup(tiered.as_ref(), "primary", &lbl, false).unwrap();
    assert!(walk(remote.store.as_ref(), "primary/backup").unwrap().is_empty());
    assert!(remote_labels(&remote).is_empty());
    let names: Vec<String> = remote.store.list("primary/wal").unwrap().into_iter().map(|e| e.name).collect();
    let segments: Vec<&String> = names.iter().filter(|n| !n.ends_with(".history")).collect();
    let keep = &segments[segments.len() - 1][..24];
    let removed = prune_wal(remote.store.as_ref(), "primary", keep).unwrap();
    let left: Vec<String> = remote.store.list("primary/wal").unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(removed, names.len() - left.len());
    assert!(removed >= 1 && left.iter().any(|n| n.starts_with(keep)), "{left:?}");
}
