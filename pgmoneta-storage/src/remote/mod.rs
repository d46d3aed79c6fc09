//! Remote repositories: S3 and S3-compatible object storage, Azure Blob, Google Cloud Storage
//! (feature `cloud`) and a directory on another machine over SSH/SFTP (feature `sftp`).
//!
//! A remote repository holds the same paths as the local one, under its own base directory
//! (`<base_dir>/<server>/backup/<label>/...`, `<base_dir>/<server>/wal/<segment>`), so any
//! [`Store`] function works on it. The local repository stays the primary copy:
//!
//! - [`upload_backup`] copies a finished backup, in parallel, `backup.info` last: a backup is
//!   valid remotely only when every object is there. A failed upload removes what it wrote.
//! - [`ship_wal`] copies the WAL files the remote lacks, oldest first.
//! - [`drop_local_data`] removes a backup's data files locally once it is uploaded, keeping
//!   `backup.info`, the manifests and the checksums (a repository without `local` storage).
//! - [`TieredStore`] reads a backup whose data files were dropped from the remote copy, so
//!   restore, verify, archive and incremental backups work the same on it; removing a backup
//!   or a WAL file through it removes the remote copies too.

#[cfg(feature = "cloud")]
pub mod object;
#[cfg(feature = "sftp")]
pub mod sftp;

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Result, StorageError};
use crate::fsio;
use crate::info::BACKUP_INFO;
use crate::layout;
use crate::store::{join, EntryKind, Store, StoreEntry, StoreWriter};

/// An S3 bucket.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// The region (`us-east-1`, or what an S3-compatible server expects, `garage` say).
    pub region: String,
    /// The access key; without it and the secret, the environment's credentials.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// The prefix of every object name.
    pub base_dir: String,
    /// A storage class, sent to AWS only (no custom endpoint).
    pub storage_class: Option<String>,
    /// A custom endpoint, `http://host:port` or `https://host:port`.
    pub endpoint: Option<String>,
    /// Virtual-host addressing (`<bucket>.<endpoint>`) for a custom endpoint; AWS always uses it.
    pub virtual_hosted: bool,
}

/// An Azure Blob container.
#[derive(Clone, Debug, Default)]
pub struct AzureOptions {
    /// The storage account.
    pub account: String,
    /// The container.
    pub container: String,
    /// The account's shared key; without it, the environment's credentials.
    pub shared_key: Option<String>,
    /// The prefix of every blob name.
    pub base_dir: String,
    /// A custom endpoint (Azurite: `http://127.0.0.1:10000/<account>`).
    pub endpoint: Option<String>,
}

/// A Google Cloud Storage bucket.
#[derive(Clone, Debug, Default)]
pub struct GcsOptions {
    /// The bucket.
    pub bucket: String,
    /// The prefix of every object name.
    pub base_dir: String,
    /// A service account key file; without it, the environment's credentials.
    pub credentials_file: Option<String>,
}

/// A directory on another machine, over SFTP with public key authentication.
#[derive(Clone, Debug, Default)]
pub struct SftpOptions {
    /// The host.
    pub host: String,
    /// The port (22 when 0).
    pub port: u16,
    /// The user.
    pub user: String,
    /// The repository's directory there.
    pub base_dir: String,
    /// The private key file.
    pub private_key_file: PathBuf,
    /// The public key file, when not next to the private key.
    pub public_key_file: Option<PathBuf>,
    /// Ciphers to offer, in order of preference (empty: the library's default).
    pub ciphers: Vec<String>,
    /// A `known_hosts` file the server's key must be in; without it the key is not checked.
    pub known_hosts_file: Option<PathBuf>,
}

/// Where a remote repository is.
#[derive(Clone, Debug)]
pub enum RemoteSpec {
    /// S3 or an S3-compatible server.
    S3(S3Options),
    /// Azure Blob storage.
    Azure(AzureOptions),
    /// Google Cloud Storage.
    Gcs(GcsOptions),
    /// SSH/SFTP.
    Sftp(SftpOptions),
}

impl RemoteSpec {
    /// The engine's name as `storage_engine` spells it: `s3`, `azure`, `gcs` or `ssh`.
    pub fn engine(&self) -> &'static str {
        match self {
            RemoteSpec::S3(_) => "s3",
            RemoteSpec::Azure(_) => "azure",
            RemoteSpec::Gcs(_) => "gcs",
            RemoteSpec::Sftp(_) => "ssh",
        }
    }
}

/// How hard requests to a remote repository try.
#[derive(Clone, Debug)]
pub struct RemoteTuning {
    /// Retries of a failed request (transient errors only), with exponential backoff.
    pub max_retries: usize,
    /// No retry starts after this long from a request's first attempt.
    pub retry_timeout: Duration,
    /// Files larger than this are uploaded in parts of this size (at least 5 MiB for S3).
    pub part_size: usize,
    /// Parts of one file uploaded at once.
    pub part_concurrency: usize,
}

impl Default for RemoteTuning {
    fn default() -> RemoteTuning {
        RemoteTuning {
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            part_size: 8 << 20,
            part_concurrency: 2,
        }
    }
}

/// An open remote repository.
#[derive(Clone, Debug)]
pub struct Remote {
    /// The engine's name (`s3`, `azure`, `gcs`, `ssh`).
    pub engine: &'static str,
    /// The repository, as a store.
    pub store: Arc<dyn Store>,
}

/// Opens a remote repository. Nothing is sent yet: a wrong setting or credential shows at
/// the first request.
///
/// # Errors
/// Settings the client refuses, an engine this build leaves out.
#[cfg_attr(not(all(feature = "cloud", feature = "sftp")), allow(unreachable_code, unused_variables))]
pub fn open(spec: &RemoteSpec, tuning: &RemoteTuning) -> Result<Remote> {
    let engine = spec.engine();
    let store: Arc<dyn Store> = match spec {
        #[cfg(feature = "cloud")]
        RemoteSpec::S3(o) => Arc::new(object::SharedObjectRemote(Arc::new(object::ObjectStoreRemote::s3(o, tuning)?))),
        #[cfg(feature = "cloud")]
        RemoteSpec::Azure(o) => {
            Arc::new(object::SharedObjectRemote(Arc::new(object::ObjectStoreRemote::azure(o, tuning)?)))
        }
        #[cfg(feature = "cloud")]
        RemoteSpec::Gcs(o) => {
            Arc::new(object::SharedObjectRemote(Arc::new(object::ObjectStoreRemote::gcs(o, tuning)?)))
        }
        #[cfg(feature = "sftp")]
        RemoteSpec::Sftp(o) => Arc::new(sftp::SharedSftp::new(o.clone(), tuning.clone())),
        #[allow(unreachable_patterns)]
        _ => return Err(StorageError::Invalid(format!("storage engine {engine} is not in this build"))),
    };
    Ok(Remote { engine, store })
}

/// Every file under `dir` of `store`, recursively, with its size; links are listed as files.
///
/// # Errors
/// Listing failures.
pub fn walk(store: &dyn Store, dir: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.trim_matches('/').to_owned()];
    while let Some(d) = dirs.pop() {
        for e in store.list(&d)? {
            let path = join(&[&d, &e.name]);
            match e.kind {
                EntryKind::Dir => dirs.push(path),
                EntryKind::File | EntryKind::Symlink => out.push((path, e.size)),
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What an upload did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UploadReport {
    /// Files uploaded.
    pub files: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Seconds it took.
    pub elapsed: f64,
}

/// Copies one file from `from` to `to`, under the same path.
///
/// # Errors
/// Read or upload failures, naming the file.
pub fn copy_file(from: &dyn Store, to: &dyn Store, path: &str) -> Result<u64> {
    let mut src = from.open(path)?;
    let mut dst = to.create(path)?;
    io::copy(&mut src, &mut dst).map_err(StorageError::io("copying", path))?;
    dst.commit(false)
}

/// The files of a backup directory to copy: regular files and links to files. Links to
/// directories (a tablespace's `pg_tblspc/<oid>`) are left out; a restore makes them again.
fn backup_files(local: &dyn Store, dir: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in local.list(&d)? {
            let path = join(&[&d, &e.name]);
            if e.name.ends_with(fsio::TEMP_SUFFIX) {
                continue;
            }
            match e.kind {
                EntryKind::Dir => dirs.push(path),
                EntryKind::File => out.push(path),
                EntryKind::Symlink => {
                    let is_dir = local.local_path(&path).is_some_and(|p| p.is_dir());
                    if !is_dir {
                        out.push(path);
                    }
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies `paths` from `from` to `to` on `workers` threads; the first failure stops the rest.
///
/// # Errors
/// The first failure.
pub fn copy_files(
    from: &dyn Store,
    to: &dyn Store,
    paths: &[String],
    workers: usize,
    cancel: Option<&AtomicBool>,
) -> Result<UploadReport> {
    let started = Instant::now();
    let totals = Mutex::new((0usize, 0u64));
    crate::pool::for_each(paths.iter().collect(), workers, cancel, |path: &String| {
        let n = copy_file(from, to, path)?;
        pgmoneta_core::crash::point("upload:file");
        let mut t = totals.lock();
        t.0 += 1;
        t.1 += n;
        Ok(())
    })?;
    let (files, bytes) = totals.into_inner();
    Ok(UploadReport { files, bytes, elapsed: started.elapsed().as_secs_f64() })
}

/// Uploads backup `label` of `server` from the local repository to `remote`: whatever a
/// previous attempt left there is removed first, then every file goes up on `workers`
/// threads (links are uploaded as the files they point to), then the checksums and
/// `backup.info`, last. A failure removes what was uploaded.
///
/// # Errors
/// The first failure, after the cleanup.
pub fn upload_backup(
    local: &dyn Store,
    remote: &dyn Store,
    server: &str,
    label: &str,
    workers: usize,
    cancel: Option<&AtomicBool>,
) -> Result<UploadReport> {
    let dir = layout::backup_dir(server, label);
    let info = join(&[&dir, BACKUP_INFO]);
    if !local.exists(&info) {
        return Err(StorageError::NotFound(format!("backup {label} of server {server}: no {info}")));
    }
    let files = backup_files(local, &dir)?;
    let last_names = ["backup.sha512", "backup.manifest", BACKUP_INFO];
    let is_last = |p: &String| p.rsplit_once('/').is_some_and(|(d, n)| d == dir && last_names.contains(&n));
    let (mut last, first): (Vec<String>, Vec<String>) = files.into_iter().partition(is_last);
    last.sort_by_key(|p| last_names.iter().position(|n| p.ends_with(n)));
    let run = || -> Result<UploadReport> {
        // A copy already there stops being valid first; objects it has that this one lacks
        // (files a roll-up replaced) go before the new backup.info marks it valid again.
        remote.remove(&join(&[&dir, BACKUP_INFO]))?;
        // Each directory once, for stores that need one before its files (object stores
        // make nothing of it).
        let parents: std::collections::BTreeSet<&str> =
            first.iter().chain(last.iter()).filter_map(|p| p.rsplit_once('/')).map(|(d, _)| d).collect();
        for parent in parents {
            remote.create_dir(parent)?;
        }
        let mut report = copy_files(local, remote, &first, workers, cancel)?;
        let wanted: std::collections::HashSet<&String> = first.iter().chain(last.iter()).collect();
        for (stale, _) in walk(remote, &dir)? {
            if !wanted.contains(&stale) {
                remote.remove(&stale)?;
            }
        }
        for path in &last {
            report.bytes += copy_file(local, remote, path)?;
            report.files += 1;
        }
        Ok(report)
    };
    let started = Instant::now();
    match run() {
        Ok(mut report) => {
            report.elapsed = started.elapsed().as_secs_f64();
            Ok(report)
        }
        Err(e) => {
            if let Err(clean) = remote.remove(&dir) {
                log::warn!("backup {label}: removing the partial remote copy failed: {clean}");
            }
            Err(e)
        }
    }
}

/// Removes the data files of a backup that is safely uploaded from the local repository:
/// `data/` and the tablespace directories go; `backup.info`, `backup.manifest` and
/// `backup.sha512` stay, so the backup is still listed, and reads come from the remote copy
/// through a [`TieredStore`].
///
/// # Errors
/// Removal failures.
pub fn drop_local_data(local: &dyn Store, server: &str, label: &str) -> Result<()> {
    let dir = layout::backup_dir(server, label);
    for e in local.list(&dir)? {
        if e.kind == EntryKind::Dir || e.kind == EntryKind::Symlink {
            local.remove(&join(&[&dir, &e.name]))?;
        }
    }
    local.sync_dir(&dir)
}

/// Whether a backup's data files are in the local repository.
pub fn has_local_data(local: &dyn Store, server: &str, label: &str) -> bool {
    local.exists(&layout::data_dir(server, label))
}

/// Copies the finished WAL files of `server` (segments as stored, compressed or encrypted,
/// and history files) that `remote` lacks, oldest first; a file whose size differs there is
/// copied again. Files being written (`.partial`, temporary names) are left for later, and so
/// is a segment without `sealed_suffix` (the WAL archive's compression and encryption suffix,
/// empty when it stores segments plain) until the archive has sealed it.
///
/// # Errors
/// The first failure; files already copied stay copied.
pub fn ship_wal(local: &dyn Store, remote: &dyn Store, server: &str, sealed_suffix: &str) -> Result<UploadReport> {
    let started = Instant::now();
    let dir = layout::wal_dir(server);
    let there: HashMap<String, u64> = remote.list(&dir)?.into_iter().map(|e| (e.name, e.size)).collect();
    let mut report = UploadReport::default();
    for e in local.list(&dir)? {
        if e.kind != EntryKind::File || e.name.ends_with(".partial") || e.name.ends_with(fsio::TEMP_SUFFIX) {
            continue;
        }
        if there.get(&e.name) == Some(&e.size) {
            continue;
        }
        // A segment not sealed yet (compressed, encrypted) waits: only its final form goes.
        let is_segment =
            e.name.len() >= 24 && e.name.is_char_boundary(24) && e.name[..24].bytes().all(|b| b.is_ascii_hexdigit());
        if is_segment && !e.name[24..].contains(".backup") && e.name[24..] != *sealed_suffix {
            continue;
        }
        let path = join(&[&dir, &e.name]);
        match copy_file(local, remote, &path) {
            Ok(n) => {
                report.files += 1;
                report.bytes += n;
            }
            // Compressed or pruned since the listing.
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    report.elapsed = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Removes from `remote` the WAL files of `server` older than segment `keep` (a segment file
/// name): segments, `.partial` files and backup history files whose segment number is lower,
/// as the local archive's pruning does. Timeline history files stay.
///
/// # Errors
/// Listing or removal failures.
pub fn prune_wal(remote: &dyn Store, server: &str, keep: &str) -> Result<usize> {
    let Some(keep_number) = keep.get(8..24) else {
        return Err(StorageError::Invalid(format!("{keep:?} is not a WAL segment name")));
    };
    let dir = layout::wal_dir(server);
    let mut removed = 0;
    for e in remote.list(&dir)? {
        let Some(number) = e.name.get(8..24) else { continue };
        let is_segment = e.name.get(..24).is_some_and(|n| n.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_segment && !e.name.ends_with(".history") && number < keep_number {
            remote.remove(&join(&[&dir, &e.name]))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The local repository first, then the remote copies: writes go to the local repository;
/// the files of a backup whose data was dropped locally ([`drop_local_data`]) are read from
/// the first remote that has them. Removing a whole backup or a WAL file removes it remotely
/// as well.
#[derive(Debug)]
pub struct TieredStore {
    local: Arc<dyn Store>,
    remotes: parking_lot::RwLock<HashMap<String, Vec<Remote>>>,
}

impl TieredStore {
    /// A store over `local`, with no remotes yet.
    pub fn new(local: Arc<dyn Store>) -> TieredStore {
        TieredStore { local, remotes: parking_lot::RwLock::new(HashMap::new()) }
    }

    /// Sets the remote repositories of `server` (replacing earlier ones).
    pub fn set_remotes(&self, server: &str, remotes: Vec<Remote>) {
        self.remotes.write().insert(server.to_owned(), remotes);
    }

    /// The remote repositories of `server`.
    pub fn remotes(&self, server: &str) -> Vec<Remote> {
        self.remotes.read().get(server).cloned().unwrap_or_default()
    }

    /// The local repository.
    pub fn local(&self) -> &dyn Store {
        &*self.local
    }

    fn parts(path: &str) -> Vec<&str> {
        path.split('/').filter(|p| !p.is_empty()).collect()
    }

    /// The remotes to read `path` from when the local repository lacks it: inside a backup
    /// whose data is not local, or a WAL file.
    fn fallback(&self, path: &str) -> Vec<Remote> {
        let parts = TieredStore::parts(path);
        match parts.as_slice() {
            [server, "backup", label, ..] if !has_local_data(self.local(), server, label) => self.remotes(server),
            _ => Vec::new(),
        }
    }

    /// The remotes a removal of `path` applies to: a whole backup, a WAL file. Files inside a
    /// backup (a roll-up rewriting it) are not: the remote copy is replaced by a new upload.
    fn removal(&self, path: &str) -> Vec<Remote> {
        let parts = TieredStore::parts(path);
        match parts.as_slice() {
            [server, "backup", _] | [server, "wal", _] => self.remotes(server),
            _ => Vec::new(),
        }
    }
}

impl Store for TieredStore {
    fn create(&self, path: &str) -> Result<Box<dyn StoreWriter>> {
        self.local.create(path)
    }

    fn create_unsynced(&self, path: &str) -> Result<Box<dyn StoreWriter>> {
        self.local.create_unsynced(path)
    }

    fn sync_tree(&self, dir: &str) -> Result<()> {
        self.local.sync_tree(dir)
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        match self.local.open(path) {
            Err(StorageError::NotFound(local)) => {
                for r in self.fallback(path) {
                    match r.store.open(path) {
                        Err(StorageError::NotFound(_)) => continue,
                        other => return other,
                    }
                }
                Err(StorageError::NotFound(local))
            }
            other => other,
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<StoreEntry>> {
        let mut entries = self.local.list(dir)?;
        let parts = TieredStore::parts(dir);
        if let [server, "backup", label, ..] = parts.as_slice() {
            if !has_local_data(self.local(), server, label) {
                let mut seen: std::collections::HashSet<String> = entries.iter().map(|e| e.name.clone()).collect();
                for r in self.remotes(server) {
                    for e in r.store.list(dir)? {
                        if seen.insert(e.name.clone()) {
                            entries.push(e);
                        }
                    }
                }
                entries.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
        Ok(entries)
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        self.local.create_dir(path)
    }

    fn remove(&self, path: &str) -> Result<()> {
        self.local.remove(path)?;
        for r in self.removal(path) {
            r.store.remove(path)?;
        }
        Ok(())
    }

    fn remove_unsynced(&self, path: &str) -> Result<()> {
        self.local.remove_unsynced(path)?;
        for r in self.removal(path) {
            r.store.remove(path)?;
        }
        Ok(())
    }

    fn symlink(&self, target: &str, link: &str) -> Result<()> {
        self.local.symlink(target, link)
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        self.local.read_link(path)
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.local.rename(from, to)
    }

    fn rename_unsynced(&self, from: &str, to: &str) -> Result<()> {
        self.local.rename_unsynced(from, to)
    }

    fn sync_dir(&self, dir: &str) -> Result<()> {
        self.local.sync_dir(dir)
    }

    fn exists(&self, path: &str) -> bool {
        self.local.exists(path) || self.fallback(path).iter().any(|r| r.store.exists(path))
    }

    fn holds(&self, path: &str) -> bool {
        self.local.exists(path)
    }

    fn local_path(&self, path: &str) -> Option<PathBuf> {
        self.local.local_path(path)
    }
}
