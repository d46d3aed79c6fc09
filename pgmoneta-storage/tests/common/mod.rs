//! Helpers shared by the integration test binaries.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

use pgmoneta_core::{BackupLabel, CivilDateTime, PgVersion};
use pgmoneta_storage::backup::{take_backup, BackupOptions};
use pgmoneta_storage::info::BackupInfo;
use pgmoneta_storage::store::{Store, StoreEntry, StoreWriter};
use pgmoneta_testkit::Cluster;
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

/// A replication connection to the cluster.
pub fn replication(cluster: &Cluster) -> PgConnection {
    replication_with(cluster, cluster.replication_password())
}

/// A replication connection with a given password (a server started on a restored directory
/// has its source's).
pub fn replication_with(cluster: &Cluster, password: &str) -> PgConnection {
    let opts = ConnectOptions::new(cluster.host(), cluster.port(), cluster.replication_user())
        .password(password)
        .replication(ReplicationMode::Physical)
        .ssl_mode(SslMode::Disable);
    PgConnection::connect(&opts).unwrap_or_else(|e| panic!("connecting: {e}"))
}

/// A label `n` seconds into 2026-11-28.
pub fn label(n: u32) -> BackupLabel {
    BackupLabel::new(CivilDateTime::new(2026, 11, 28, 10, (n / 60) as u8, (n % 60) as u8).unwrap())
}

/// The server's minor version.
pub fn minor(cluster: &Cluster) -> u32 {
    cluster.query_scalar("SHOW server_version_num").unwrap().parse::<u32>().unwrap() % 10000
}

/// Takes a backup of `cluster` into `store` with `options`.
pub fn backup(cluster: &Cluster, store: Arc<dyn Store>, options: &BackupOptions) -> BackupInfo {
    let mut conn = replication(cluster);
    take_backup(&mut conn, cluster.version(), minor(cluster), store, options)
        .unwrap_or_else(|e| panic!("backup {}: {e}", options.label))
}

/// Takes a backup of `cluster`; with a parent on PostgreSQL 14 to 16, through SQL as the
/// replication role (granted the functions it needs), with the WAL archive the store holds.
pub fn take_incremental(cluster: &Cluster, store: Arc<dyn Store>, options: &BackupOptions) -> BackupInfo {
    if options.parent.is_none() || cluster.version().has_incremental_backup() {
        return backup(cluster, store, options);
    }
    grant_backup_functions(cluster);
    let mut conn = sql_connection(cluster, cluster.replication_user(), cluster.replication_password());
    let mut sql = pgmoneta_storage::sqlbackup::SqlBackupOptions::default();
    sql.master_key = Some(test_key());
    pgmoneta_storage::sqlbackup::take_incremental(&mut conn, cluster.version(), minor(cluster), store, options, &sql)
        .unwrap_or_else(|e| panic!("incremental backup {}: {e}", options.label))
}

/// The master key of the tests' encrypted backups.
pub fn test_key() -> Arc<pgmoneta_crypto::MasterKey> {
    Arc::new(pgmoneta_crypto::MasterKey::from_bytes([9; 64]))
}

/// A normal connection to the `postgres` database.
pub fn sql_connection(cluster: &Cluster, user: &str, password: &str) -> PgConnection {
    let opts = ConnectOptions::new(cluster.host(), cluster.port(), user)
        .password(password)
        .database("postgres")
        .ssl_mode(SslMode::Disable);
    PgConnection::connect(&opts).unwrap_or_else(|e| panic!("connecting: {e}"))
}

/// Grants the replication role what incremental backups through SQL need.
pub fn grant_backup_functions(cluster: &Cluster) {
    for f in pgmoneta_storage::sqlbackup::required_functions(cluster.version()) {
        cluster.execute(&format!("GRANT EXECUTE ON FUNCTION {f} TO \"{}\"", cluster.replication_user())).unwrap();
    }
}

/// Streams the cluster's WAL into `<root>/primary/wal` until dropped, as the daemon does.
pub struct Streamer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<pgmoneta_storage::Result<pgmoneta_core::Lsn>>>,
}

impl Streamer {
    /// Starts streaming and waits until the stream runs.
    pub fn start(cluster: &Cluster, root: &Path) -> Streamer {
        use pgmoneta_storage::wal::{stream_wal, StreamOptions, WalArchive, WalOptions};
        let archive = WalArchive::open(
            root.join("primary/wal"),
            pgmoneta_core::WalSegmentSize::DEFAULT,
            WalOptions::new(pgmoneta_compress::Algorithm::Zstd, 1),
        )
        .unwrap();
        let options = StreamOptions::new(None);
        let stop = options.stop.clone();
        let progress = options.progress.clone();
        let mut conn = replication(cluster);
        let version = cluster.version();
        let handle = std::thread::spawn(move || stream_wal(&mut conn, &archive, version, &options));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while progress.timeline.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline && !handle.is_finished(), "streaming did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Streamer { stop, handle: Some(handle) }
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A checksum of every pgbench table's contents, and its row count, for comparing clusters.
pub fn pgbench_state(cluster: &Cluster) -> Vec<(String, String)> {
    [
        "pgbench_accounts ORDER BY aid",
        "pgbench_branches ORDER BY bid",
        "pgbench_tellers ORDER BY tid",
        "pgbench_history ORDER BY tid, bid, aid, delta, mtime",
    ]
    .iter()
    .map(|t| {
        let (table, order) = t.split_once(' ').unwrap();
        let sql =
            format!("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' {order})), '') FROM {table} x");
        (table.to_owned(), cluster.query_scalar(&sql).unwrap())
    })
    .collect()
}

/// `pg_verifybackup` of the cluster's major (another version's cannot read every manifest: 17
/// writes version 2): a prerequisite, which under CI must be there.
pub fn pg_verifybackup(cluster: &Cluster) -> Option<PathBuf> {
    let major = cluster.version().major();
    pgmoneta_testkit::require(
        cluster.install().same_major_program("pg_verifybackup"),
        &format!("pg_verifybackup of PostgreSQL {major} (scripts/setup.sh installs it)"),
        "the check of the restore with pg_verifybackup",
    )
}

/// Runs `pg_verifybackup` on a restored directory with the manifest kept in the repository.
pub fn run_pg_verifybackup(tool: &Path, data_dir: &Path, manifest: &Path) {
    let out = Command::new(tool).arg("-m").arg(manifest).arg(data_dir).output().unwrap();
    assert!(
        out.status.success(),
        "pg_verifybackup failed on {}:\n{}{}",
        data_dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The version's name for messages.
pub fn version_name(v: PgVersion) -> String {
    format!("PostgreSQL {}", v.major())
}

/// A directory for a tablespace, owned by the `postgres` user when the tests run as root.
pub fn tablespace_location() -> tempfile::TempDir {
    let location = tempfile::Builder::new().prefix("pgmoneta-ts-").tempdir_in("/tmp").unwrap();
    if nix::unistd::geteuid().is_root() {
        let ok = Command::new("chown").arg("postgres:postgres").arg(location.path()).status().unwrap();
        assert!(ok.success());
    }
    location
}

/// A directory under /tmp that the `postgres` user can enter, for restored clusters.
pub fn shared_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A store that runs a hook (once) when the `n`th file is created, or the file of a data
/// directory's path: a point in the middle of the backup's file copy.
pub struct HookStore {
    /// The store written to.
    pub inner: std::sync::Arc<dyn Store>,
    /// Files created so far.
    pub created: AtomicUsize,
    /// The file whose creation runs the hook.
    pub at: usize,
    /// Or the stored file of this path in the data directory (`base/5/16384`), whatever its
    /// suffixes.
    pub at_path: Option<String>,
    /// The hook.
    #[allow(clippy::type_complexity)]
    pub hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for HookStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookStore").field("inner", &self.inner).field("at", &self.at).finish_non_exhaustive()
    }
}

impl Store for HookStore {
    fn create(&self, path: &str) -> pgmoneta_storage::Result<Box<dyn StoreWriter>> {
        let nth = self.created.fetch_add(1, Ordering::SeqCst) + 1;
        let named = self.at_path.as_deref().is_some_and(|want| {
            path.split_once("/data/").is_some_and(|(_, rest)| rest.split('.').next() == Some(want))
        });
        if nth == self.at || named {
            if let Some(h) = self.hook.lock().unwrap().take() {
                h();
            }
        }
        self.inner.create(path)
    }
    fn open(&self, path: &str) -> pgmoneta_storage::Result<Box<dyn Read + Send>> {
        self.inner.open(path)
    }
    fn list(&self, dir: &str) -> pgmoneta_storage::Result<Vec<StoreEntry>> {
        self.inner.list(dir)
    }
    fn create_dir(&self, path: &str) -> pgmoneta_storage::Result<()> {
        self.inner.create_dir(path)
    }
    fn remove(&self, path: &str) -> pgmoneta_storage::Result<()> {
        self.inner.remove(path)
    }
    fn remove_unsynced(&self, path: &str) -> pgmoneta_storage::Result<()> {
        self.inner.remove_unsynced(path)
    }
    fn symlink(&self, target: &str, link: &str) -> pgmoneta_storage::Result<()> {
        self.inner.symlink(target, link)
    }
    fn read_link(&self, path: &str) -> pgmoneta_storage::Result<Option<String>> {
        self.inner.read_link(path)
    }
    fn rename(&self, from: &str, to: &str) -> pgmoneta_storage::Result<()> {
        self.inner.rename(from, to)
    }
    fn rename_unsynced(&self, from: &str, to: &str) -> pgmoneta_storage::Result<()> {
        self.inner.rename_unsynced(from, to)
    }
    fn sync_dir(&self, dir: &str) -> pgmoneta_storage::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn exists(&self, path: &str) -> bool {
        self.inner.exists(path)
    }
    fn local_path(&self, path: &str) -> Option<PathBuf> {
        self.inner.local_path(path)
    }
}

/// What a [`CountingStore`] was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Directory listings.
    pub lists: u64,
    /// Entries those listings returned.
    pub listed: u64,
    /// Every other call (create, open, exists, read_link, symlink, rename, remove, sync...).
    pub calls: u64,
}

impl StoreCounts {
    /// The work a store did: entries listed plus calls.
    pub fn work(&self) -> u64 {
        self.listed + self.lists + self.calls
    }
}

/// A store that counts the calls made to it and the entries its listings return: an operation
/// whose work grows faster than the number of files it handles shows up as a count per file
/// that grows with the repository, whatever the machine's speed.
#[derive(Debug)]
pub struct CountingStore {
    /// The store counted.
    pub inner: std::sync::Arc<dyn Store>,
    lists: std::sync::atomic::AtomicU64,
    listed: std::sync::atomic::AtomicU64,
    calls: std::sync::atomic::AtomicU64,
}

impl CountingStore {
    /// Counts what is asked of `inner`.
    pub fn new(inner: std::sync::Arc<dyn Store>) -> CountingStore {
        CountingStore { inner, lists: Default::default(), listed: Default::default(), calls: Default::default() }
    }

    /// The counts so far, and starts again from zero.
    pub fn take(&self) -> StoreCounts {
        StoreCounts {
            lists: self.lists.swap(0, Ordering::SeqCst),
            listed: self.listed.swap(0, Ordering::SeqCst),
            calls: self.calls.swap(0, Ordering::SeqCst),
        }
    }

    fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

impl Store for CountingStore {
    fn create(&self, path: &str) -> pgmoneta_storage::Result<Box<dyn StoreWriter>> {
        self.call();
        self.inner.create(path)
    }
    fn create_unsynced(&self, path: &str) -> pgmoneta_storage::Result<Box<dyn StoreWriter>> {
        self.call();
        self.inner.create_unsynced(path)
    }
    fn sync_tree(&self, dir: &str) -> pgmoneta_storage::Result<()> {
        self.call();
        self.inner.sync_tree(dir)
    }
    fn open(&self, path: &str) -> pgmoneta_storage::Result<Box<dyn Read + Send>> {
        self.call();
        self.inner.open(path)
    }
    fn list(&self, dir: &str) -> pgmoneta_storage::Result<Vec<StoreEntry>> {
        let entries = self.inner.list(dir)?;
        self.lists.fetch_add(1, Ordering::Relaxed);
        self.listed.fetch_add(entries.len() as u64, Ordering::Relaxed);
        Ok(entries)
    }
    fn create_dir(&self, path: &str) -> pgmoneta_storage::Result<()> {
        self.call();
        self.inner.create_dir(path)
    }
    fn remove(&self, path: &str) -> pgmoneta_storage::Result<()> {
        self.call();
        self.inner.remove(path)
    }
    fn remove_unsynced(&self, path: &str) -> pgmoneta_storage::Result<()> {
        self.call();
        self.inner.remove_unsynced(path)
    }
    fn symlink(&self, target: &str, link: &str) -> pgmoneta_storage::Result<()> {
        self.call();
        self.inner.symlink(target, link)
    }
    fn read_link(&self, path: &str) -> pgmoneta_storage::Result<Option<String>> {
        self.call();
        self.inner.read_link(path)
    }
    fn rename(&self, from: &str, to: &str) -> pgmoneta_storage::Result<()> {
        self.call();
        self.inner.rename(from, to)
    }
    fn rename_unsynced(&self, from: &str, to: &str) -> pgmoneta_storage::Result<()> {
        self.call();
        self.inner.rename_unsynced(from, to)
    }
    fn sync_dir(&self, dir: &str) -> pgmoneta_storage::Result<()> {
        self.call();
        self.inner.sync_dir(dir)
    }
    fn exists(&self, path: &str) -> bool {
        self.call();
        self.inner.exists(path)
    }
    fn holds(&self, path: &str) -> bool {
        self.call();
        self.inner.holds(path)
    }
    fn local_path(&self, path: &str) -> Option<PathBuf> {
        self.inner.local_path(path)
    }
}
