//! [`Repository`]: one repository (a local store, with each server's remote copies behind it)
//! and everything done to it. A program that backs up, lists, restores, verifies or deletes
//! goes through here; the modules below it are the parts.
//!
//! ```no_run
//! use std::sync::Arc;
//! use pgmoneta_storage::catalog::BackupSelector;
//! use pgmoneta_storage::restore::RestoreOptions;
//! use pgmoneta_storage::store::LocalStore;
//! use pgmoneta_storage::Repository;
//!
//! # fn main() -> pgmoneta_storage::Result<()> {
//! let repo = Repository::open(Arc::new(LocalStore::new("/var/lib/pgmoneta")), None);
//! for b in repo.catalog("primary")?.valid() {
//!     println!("{} {} bytes", b.label, b.backup_size);
//! }
//! let options = RestoreOptions::new("primary", BackupSelector::Newest, "/tmp/restore");
//! let plan = repo.plan_restore(&options)?;
//! println!("{plan}");
//! repo.apply_restore(&options, &plan)?;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use pgmoneta_core::config::Retention;
use pgmoneta_core::{BackupLabel, CivilDateTime, Clock, Lsn, PgVersion, WalSegment};
use pgmoneta_crypto::MasterKey;
use pgmoneta_wire::source::BackupSource;
use pgmoneta_wire::{ConnectOptions, PgConnection};

use crate::backup::{take_backup, take_backup_from, BackupOptions};
use crate::catalog::{load_info, load_manifest, BackupSelector, Catalog};
use crate::export::{archive, update_hot_standby, ArchiveOptions};
use crate::info::BackupInfo;
use crate::ops::{self, Annotation, DeleteOptions};
use crate::remote::{self, Remote, TieredStore, UploadReport};
use crate::restore::{RestoreOptions, RestorePlan, RestoreReport};
use crate::retention::{BackupSummary, RetentionPlan};
use crate::sqlbackup::{self, SqlBackupOptions};
use crate::store::Store;
use crate::target::RecoveryTarget;
use crate::verify::{verify_in, FileVerification};
use crate::wal::WalArchive;
use crate::{layout, Result, StorageError};

/// A PostgreSQL server to back up: how to reach it, and what it runs (as its checks found).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PgSource {
    /// The server's name.
    pub server: String,
    /// Connection settings for SQL (a database, no replication).
    pub sql: ConnectOptions,
    /// Connection settings for `BASE_BACKUP` (physical replication).
    pub replication: ConnectOptions,
    /// Its major version.
    pub version: PgVersion,
    /// Its minor version.
    pub minor: u32,
}

impl PgSource {
    /// A source from its two connection settings and version.
    pub fn new(server: &str, sql: ConnectOptions, replication: ConnectOptions, version: PgVersion, minor: u32) -> Self {
        PgSource { server: server.to_owned(), sql, replication, version, minor }
    }

    fn connect(&self, options: &ConnectOptions) -> Result<PgConnection> {
        PgConnection::connect(options).map_err(|source| StorageError::Connection {
            server: self.server.clone(),
            what: "connecting",
            source,
        })
    }

    /// Tablespace names by OID, from `pg_tablespace`.
    fn tablespace_names(&self) -> Result<BTreeMap<u32, String>> {
        let mut conn = self.connect(&self.sql)?;
        let rows = conn.query("SELECT oid, spcname FROM pg_tablespace").map_err(|source| StorageError::Connection {
            server: self.server.clone(),
            what: "reading pg_tablespace",
            source,
        })?;
        let _ = conn.close();
        let mut out = BTreeMap::new();
        for r in rows {
            if let (Ok(Some(oid)), Ok(Some(name))) = (r.parse::<u32>(0), r.get(1)) {
                out.insert(oid, name.to_owned());
            }
        }
        Ok(out)
    }
}

/// What [`Repository::verify`] found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Verification {
    /// The files that failed.
    pub failed: Vec<FileVerification>,
    /// Every file checked.
    pub all: Vec<FileVerification>,
    /// The paths of the backup's manifest (the others checked are the repository's own
    /// files: `backup.info`, the manifest, the backup's WAL).
    pub manifest: BTreeSet<String>,
}

/// What [`Repository::apply_retention`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Backups deleted, oldest first.
    pub deleted: Vec<String>,
    /// WAL summaries removed.
    pub summaries_pruned: usize,
    /// The first WAL segment kept, when the WAL was pruned.
    pub wal_kept_from: Option<String>,
    /// WAL files removed from the local archive.
    pub wal_pruned: usize,
    /// WAL files removed per remote engine.
    pub remote_wal_pruned: Vec<(&'static str, Result<usize>)>,
}

/// One repository: its local store, the remote copies of each server's backups and WAL, and
/// the master key of encrypted backups.
#[derive(Debug)]
pub struct Repository {
    store: Arc<TieredStore>,
    local: Arc<dyn Store>,
    master_key: Option<Arc<MasterKey>>,
    /// Remote engines configured for a server that could not be opened.
    unopened: RwLock<HashMap<String, Vec<&'static str>>>,
    /// Whether backups keep their data locally once uploaded (`storage_engine` has `local`).
    keep_local: AtomicBool,
    /// Backups (server, label) valid here whose upload is still to be done.
    pending: Mutex<BTreeSet<(String, String)>>,
}

impl Repository {
    /// The repository in `local`, with no remote copies yet, keeping data locally.
    pub fn open(local: Arc<dyn Store>, master_key: Option<Arc<MasterKey>>) -> Repository {
        Repository {
            store: Arc::new(TieredStore::new(local.clone())),
            local,
            master_key,
            unopened: RwLock::new(HashMap::new()),
            keep_local: AtomicBool::new(true),
            pending: Mutex::new(BTreeSet::new()),
        }
    }

    /// The repository as one store: the local one, with the remote copies behind it.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The same, shared.
    pub fn shared_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The local store alone.
    pub fn local(&self) -> &dyn Store {
        &*self.local
    }

    /// The same repository without its remote copies: what it does changes the local store
    /// only (a node that mirrors another, whose remote copies are that node's to change).
    pub fn local_only(&self) -> Repository {
        Repository::open(self.local.clone(), self.master_key.clone())
    }

    /// The master key.
    pub fn master_key(&self) -> Option<&Arc<MasterKey>> {
        self.master_key.as_ref()
    }

    /// Sets the remote repositories of `server`, and the engines configured for it that could
    /// not be opened (a backup's upload then fails and stays pending).
    pub fn set_remotes(&self, server: &str, remotes: Vec<Remote>, unopened: Vec<&'static str>) {
        self.store.set_remotes(server, remotes);
        self.unopened.write().insert(server.to_owned(), unopened);
    }

    /// The remote repositories of `server`.
    pub fn remotes(&self, server: &str) -> Vec<Remote> {
        self.store.remotes(server)
    }

    /// Whether uploaded backups keep their data files locally.
    pub fn set_keep_local(&self, keep: bool) {
        self.keep_local.store(keep, Ordering::SeqCst);
    }

    /// The repository of `server`'s first S3 copy, else its first remote copy, alone: what
    /// it holds whatever the local one does. With the engine's name.
    pub fn remote_only(&self, server: &str) -> Option<(&'static str, Repository)> {
        let remotes = self.remotes(server);
        let r = remotes.iter().find(|r| r.engine == "s3").or(remotes.first())?;
        Some((r.engine, Repository::open(r.store.clone(), self.master_key.clone())))
    }

    // ---- the catalog ----

    /// The backups of `server`, oldest first.
    ///
    /// # Errors
    /// Storage failures.
    pub fn catalog(&self, server: &str) -> Result<Catalog> {
        Catalog::load(self.store(), server)
    }

    /// The backup `id` names (`oldest`, `newest`/`latest`, or a label), valid or not.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] naming the server and `id`; storage failures.
    pub fn find(&self, server: &str, id: &str) -> Result<BackupInfo> {
        let catalog = self.catalog(server)?;
        let found = catalog.find_any(&BackupSelector::parse(id)).cloned();
        found.ok_or_else(|| StorageError::NotFound(format!("server [{server}]: no backup {id:?}")))
    }

    /// The valid backup `selector` names that can reach `target`.
    ///
    /// # Errors
    /// None, or none that reaches the target; storage failures.
    pub fn select(&self, server: &str, selector: &BackupSelector, target: &RecoveryTarget) -> Result<BackupInfo> {
        self.catalog(server)?.select(selector, target).cloned()
    }

    /// One backup's `backup.info`.
    ///
    /// # Errors
    /// No such backup, an unreadable file.
    pub fn info(&self, server: &str, label: &str) -> Result<BackupInfo> {
        load_info(self.store(), server, label)
    }

    /// A label for a new backup of `server` from `clock`'s local time, waiting for the next
    /// second while one with that label exists.
    pub fn new_label(&self, server: &str, clock: &dyn Clock) -> BackupLabel {
        loop {
            let label = BackupLabel::new(clock.now().local());
            if !self.local.exists(&layout::backup_dir(server, &label.to_string())) {
                return label;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// The backup an incremental backup of `server` would build on, named by `id`.
    ///
    /// # Errors
    /// [`StorageError::NothingToBuildOn`] when the server has no valid backup,
    /// [`StorageError::NotFound`] when `id` names none, [`StorageError::AlreadyHasChild`]
    /// when it has an incremental child already.
    pub fn parent_for(&self, server: &str, id: &str) -> Result<BackupInfo> {
        let catalog = self.catalog(server)?;
        if catalog.valid().next().is_none() {
            return Err(StorageError::NothingToBuildOn { server: server.to_owned() });
        }
        let info = catalog
            .find(&BackupSelector::parse(id))
            .ok_or_else(|| StorageError::NotFound(format!("server [{server}]: no backup {id:?}")))?;
        if let Some(child) = catalog.child_of(&info.label) {
            return Err(StorageError::AlreadyHasChild { parent: info.label.clone(), child: child.label.clone() });
        }
        Ok(info.clone())
    }

    // ---- backup ----

    /// Takes a backup of `source` into the repository, full or (with `options.parent`)
    /// incremental: over `BASE_BACKUP`, or for an incremental backup of PostgreSQL 14 to 16
    /// through SQL with the changed blocks read from `wal` (the server's WAL archive). Then
    /// brings every hot standby of `options.hot_standbys` up to date (a failure there is
    /// logged, the backup stands) and uploads the backup to the server's remote copies.
    ///
    /// # Errors
    /// [`StorageError::Connection`] when the server cannot be reached; a failed backup (nothing
    /// of it is left); [`StorageError::UploadPending`] when the backup is valid locally and its
    /// upload failed (it is then pending, see [`Repository::retry_uploads`]).
    pub fn backup(&self, source: &PgSource, options: &BackupOptions, wal: &SqlBackupOptions) -> Result<BackupInfo> {
        let mut options = options.clone();
        if options.tablespace_names.is_empty() {
            options.tablespace_names = source.tablespace_names()?;
        }
        let store = self.shared_store();
        let info = if options.parent.is_some() && !source.version.has_incremental_backup() {
            let mut conn = source.connect(&source.sql)?;
            let mut sql = wal.clone();
            sql.master_key = sql.master_key.or_else(|| self.master_key.clone());
            let info = sqlbackup::take_incremental(&mut conn, source.version, source.minor, store, &options, &sql)?;
            let _ = conn.close();
            info
        } else {
            let mut conn = source.connect(&source.replication)?;
            let info = take_backup(&mut conn, source.version, source.minor, store, &options)?;
            let _ = conn.close();
            info
        };
        self.after_backup(&options, info)
    }

    /// Stores a base backup delivered by any [`BackupSource`] (archives recorded earlier, a
    /// source of the caller's own), then does what [`Repository::backup`] does after a backup:
    /// hot standbys, uploads. With `options.parent` the archives are an incremental backup on
    /// that backup. `version` and `minor` are the PostgreSQL version the archives come from.
    ///
    /// # Errors
    /// As [`take_backup_from`], and [`StorageError::UploadPending`].
    pub fn backup_from(
        &self,
        source: &mut dyn BackupSource,
        version: PgVersion,
        minor: u32,
        options: &BackupOptions,
    ) -> Result<BackupInfo> {
        let info = take_backup_from(source, version, minor, self.shared_store(), options)?;
        self.after_backup(options, info)
    }

    /// Hot standbys brought up to date (a failure is logged), then the uploads.
    fn after_backup(&self, options: &BackupOptions, info: BackupInfo) -> Result<BackupInfo> {
        let server = &options.server;
        for hs in &options.hot_standbys {
            let mut hs = hs.clone();
            hs.master_key = hs.master_key.or_else(|| self.master_key.clone());
            if let Err(e) = update_hot_standby(self.store(), &hs) {
                log::error!("server [{server}]: hot standby {}: {e}", hs.directory.display());
            }
        }
        self.upload(server, &info.label, options.workers, &options.cancel)?;
        Ok(info)
    }

    // ---- remote copies ----

    /// Uploads backup `label` of `server` to each of its remote copies, records the time each
    /// took in `backup.info` (uploaded again, last), and drops the local data files when data
    /// is not kept locally. A failure leaves the backup pending.
    ///
    /// # Errors
    /// [`StorageError::UploadPending`]: the first upload that failed (its partial copy is
    /// removed).
    pub fn upload(&self, server: &str, label: &str, workers: usize, cancel: &AtomicBool) -> Result<()> {
        match self.upload_now(server, label, workers, cancel) {
            Ok(()) => {
                self.pending.lock().remove(&(server.to_owned(), label.to_owned()));
                Ok(())
            }
            Err((engine, source)) => {
                self.pending.lock().insert((server.to_owned(), label.to_owned()));
                Err(StorageError::UploadPending { label: label.to_owned(), engine, source: Box::new(source) })
            }
        }
    }

    fn upload_now(
        &self,
        server: &str,
        label: &str,
        workers: usize,
        cancel: &AtomicBool,
    ) -> std::result::Result<(), (&'static str, StorageError)> {
        let remotes = self.remotes(server);
        if let Some(missing) = self.unopened.read().get(server).and_then(|u| u.first().copied()) {
            let e = StorageError::Invalid("the storage could not be opened (see the log at start-up or reload)".into());
            return Err((missing, e));
        }
        let Some(first) = remotes.first().map(|r| r.engine) else { return Ok(()) };
        let local = self.local();
        let mut info = load_info(local, server, label).map_err(|e| (first, e))?;
        for r in &remotes {
            let report = remote::upload_backup(local, r.store.as_ref(), server, label, workers, Some(cancel))
                .map_err(|e| (r.engine, e))?;
            log::info!(
                "server [{server}]: backup {label} uploaded to {} storage: {} files, {} bytes, {:.1} s",
                r.engine,
                report.files,
                report.bytes,
                report.elapsed
            );
            match r.engine {
                "s3" => info.elapsed.remote_s3 = report.elapsed,
                "azure" => info.elapsed.remote_azure = report.elapsed,
                "ssh" => info.elapsed.remote_ssh = report.elapsed,
                _ => {}
            }
        }
        ops::save_info(local, server, &info).map_err(|e| (first, e))?;
        let info_path = layout::backup_file(server, label, crate::info::BACKUP_INFO);
        for r in &remotes {
            remote::copy_file(local, r.store.as_ref(), &info_path).map_err(|e| (r.engine, e))?;
        }
        if !self.keep_local.load(Ordering::SeqCst) {
            remote::drop_local_data(local, server, label).map_err(|e| (first, e))?;
            log::info!("server [{server}]: backup {label}: local data files removed (storage_engine has no local)");
        }
        Ok(())
    }

    /// Backups of `server` waiting for their upload, oldest first.
    pub fn pending_uploads(&self, server: &str) -> Vec<String> {
        self.pending.lock().iter().filter(|(s, _)| s == server).map(|(_, l)| l.clone()).collect()
    }

    /// Whether any upload is pending.
    pub fn has_pending_uploads(&self) -> bool {
        !self.pending.lock().is_empty()
    }

    /// Finds the valid backups of `servers` with local data that some remote copy lacks (an
    /// upload that failed before a restart, or an engine added since), and marks them pending:
    /// one request per backup and remote.
    pub fn find_pending(&self, servers: &[&str]) {
        for server in servers {
            let remotes = self.remotes(server);
            if remotes.is_empty() {
                continue;
            }
            for b in crate::catalog::list_backups(self.local(), server).unwrap_or_default() {
                if !b.valid || self.is_remote_only(server, &b.label) {
                    continue;
                }
                let info = layout::backup_file(server, &b.label, crate::info::BACKUP_INFO);
                if remotes.iter().any(|r| !r.store.exists(&info)) {
                    self.pending.lock().insert(((*server).to_owned(), b.label.clone()));
                }
            }
        }
    }

    /// Tries the pending uploads again, oldest first. `begin(server)` is asked before each:
    /// it returns a guard held during the upload (the server's lock), or `None` to leave that
    /// backup for a later pass. Returns the uploads that failed, with why.
    pub fn retry_uploads<G>(
        &self,
        mut begin: impl FnMut(&str) -> Option<(G, usize)>,
        stop: &dyn Fn() -> bool,
    ) -> Vec<(String, String, StorageError)> {
        let pending: Vec<(String, String)> = self.pending.lock().iter().cloned().collect();
        let mut failed = Vec::new();
        for (server, label) in pending {
            if stop() {
                break;
            }
            let Some((_guard, workers)) = begin(&server) else { continue };
            let still = load_info(self.local(), &server, &label).is_ok_and(|b| b.valid);
            if !still || self.is_remote_only(&server, &label) {
                self.pending.lock().remove(&(server, label));
                continue;
            }
            let never = AtomicBool::new(false);
            match self.upload(&server, &label, workers, &never) {
                Ok(()) => log::info!("server [{server}]: backup {label} uploaded (it was pending)"),
                Err(e) => failed.push((server, label, e)),
            }
        }
        failed
    }

    /// Forgets the pending uploads of servers not in `servers` (after a reload removed them).
    pub fn forget_pending_except(&self, servers: &[&str]) {
        self.pending.lock().retain(|(s, _)| servers.contains(&s.as_str()));
    }

    /// Uploads `backup.info` (and `backup.sha512`) of a backup again after a change, to the
    /// remote copies that hold the backup; failures are logged (a later upload sends them).
    pub fn refresh_info(&self, server: &str, label: &str) {
        let info = layout::backup_file(server, label, crate::info::BACKUP_INFO);
        let sums = layout::backup_file(server, label, "backup.sha512");
        for r in self.remotes(server) {
            if !r.store.exists(&info) {
                continue;
            }
            for p in [&info, &sums] {
                if p == &sums && !self.local.exists(p) {
                    continue;
                }
                if let Err(e) = remote::copy_file(self.local(), r.store.as_ref(), p) {
                    let name = p.rsplit('/').next().unwrap_or(p);
                    log::error!("server [{server}]: backup {label}: updating {name} in {} storage: {e}", r.engine);
                }
            }
        }
    }

    /// Ships the sealed WAL files (`sealed_suffix`) of `server` to each remote copy; one
    /// result per engine.
    pub fn ship_wal(&self, server: &str, sealed_suffix: &str) -> Vec<(&'static str, Result<UploadReport>)> {
        self.remotes(server)
            .into_iter()
            .map(|r| (r.engine, remote::ship_wal(self.local(), r.store.as_ref(), server, sealed_suffix)))
            .collect()
    }

    /// Whether a backup's data is only in the remote copies.
    pub fn is_remote_only(&self, server: &str, label: &str) -> bool {
        !remote::has_local_data(self.local(), server, label)
    }

    /// Fetches the files of a backup kept only remotely back into the local repository (from
    /// the first remote copy that has it), so that it can be rewritten here.
    ///
    /// # Errors
    /// Download failures (what was fetched is removed), no remote copy holding it.
    pub fn materialize(&self, server: &str, label: &str, workers: usize) -> Result<()> {
        if !self.is_remote_only(server, label) {
            return Ok(());
        }
        let dir = layout::backup_dir(server, label);
        let local = self.local();
        for r in self.remotes(server) {
            let files: Vec<String> = remote::walk(r.store.as_ref(), &dir)?
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| !local.exists(p))
                .collect();
            if files.is_empty() {
                continue;
            }
            // Each directory once: a durable create syncs.
            let parents: BTreeSet<&str> = files.iter().filter_map(|p| p.rsplit_once('/')).map(|(d, _)| d).collect();
            for parent in parents {
                local.create_dir(parent)?;
            }
            let fetched =
                remote::copy_files(r.store.as_ref(), local, &files, workers, None).and_then(|_| local.sync_tree(&dir));
            if let Err(e) = fetched {
                // Half a download must not pass for local data: back to remote-only.
                if let Err(d) = remote::drop_local_data(local, server, label) {
                    log::error!("server [{server}]: backup {label}: removing a partial download: {d}");
                }
                return Err(StorageError::Remote {
                    what: format!("fetching backup {label} from {} storage", r.engine),
                    reason: e.to_string(),
                });
            }
            return Ok(());
        }
        Err(StorageError::NotFound(format!("backup {label} of server [{server}] is in no remote repository")))
    }

    // ---- restore, verify, archive ----

    /// Decides what restoring per `options` takes (chain, files, WAL, recovery settings);
    /// nothing is written. The plan prints as text (passwords left out).
    ///
    /// # Errors
    /// No such backup, an unreachable target, a target directory in the way.
    pub fn plan_restore(&self, options: &RestoreOptions) -> Result<RestorePlan> {
        crate::restore::plan(self.store(), &self.with_key(options))
    }

    /// Carries out a plan of [`Repository::plan_restore`].
    ///
    /// # Errors
    /// Storage and file system failures, damaged files, lack of space.
    pub fn apply_restore(&self, options: &RestoreOptions, plan: &RestorePlan) -> Result<RestoreReport> {
        crate::restore::apply(self.store(), &self.with_key(options), plan)
    }

    fn with_key(&self, options: &RestoreOptions) -> RestoreOptions {
        let mut o = options.clone();
        o.master_key = o.master_key.or_else(|| self.master_key.clone());
        o
    }

    /// Checks every file of backup `label` of `server` against its checksum.
    ///
    /// # Errors
    /// No such backup, its manifest missing or unreadable (damaged files are reported in the
    /// result).
    pub fn verify(&self, server: &str, label: &str, workers: usize) -> Result<Verification> {
        self.verify_in(&self.catalog(server)?, label, workers)
    }

    /// [`Repository::verify`] with the server's catalog already read, for a caller that
    /// verifies many backups.
    ///
    /// # Errors
    /// As [`Repository::verify`].
    pub fn verify_in(&self, catalog: &Catalog, label: &str, workers: usize) -> Result<Verification> {
        let key = self.master_key.as_deref();
        let (failed, all) = verify_in(self.store(), catalog, label, key, workers)?;
        let manifest = load_manifest(self.store(), catalog.server(), label)
            .map(|m| m.files.into_keys().collect())
            .unwrap_or_default();
        Ok(Verification { failed, all, manifest })
    }

    /// Writes a backup as one tar archive (see [`archive`]); returns the file written.
    ///
    /// # Errors
    /// As [`archive`].
    pub fn archive(&self, options: &ArchiveOptions) -> Result<PathBuf> {
        let mut o = options.clone();
        o.master_key = o.master_key.or_else(|| self.master_key.clone());
        archive(self.store(), &o)
    }

    // ---- changes ----

    /// Deletes backup `label` of `server`. A backup with an incremental child is rolled into
    /// it first (when either is kept only remotely, both are fetched first), and the rolled-up
    /// child replaces its remote copies.
    ///
    /// # Errors
    /// [`StorageError::NotFound`], [`StorageError::Retained`] (without `force`),
    /// [`StorageError::RollUp`] when the child could not take the backup's data (both are
    /// kept), storage failures.
    pub fn delete(&self, server: &str, label: &str, options: &DeleteOptions, workers: usize) -> Result<()> {
        // Read here, under the caller's lock: a backup built on this one may have completed
        // since the caller chose it.
        let child = self.catalog(server).ok().and_then(|c| c.child_of(label).map(|b| b.label.clone()));
        let roll = |child: &str, source: StorageError| StorageError::RollUp {
            label: label.to_owned(),
            child: child.to_owned(),
            source: Box::new(source),
        };
        let remote_roll_up =
            child.as_deref().is_some_and(|c| self.is_remote_only(server, c) || self.is_remote_only(server, label));
        if let (true, Some(c)) = (remote_roll_up, &child) {
            for l in [c.as_str(), label] {
                self.materialize(server, l, workers).map_err(|e| roll(c, e))?;
            }
        }
        let mut o = options.clone();
        o.master_key = o.master_key.or_else(|| self.master_key.clone());
        ops::delete_backup_with(self.store(), server, label, &o).map_err(|e| match (&child, e) {
            (_, e @ (StorageError::NotFound(_) | StorageError::Retained { .. })) => e,
            (Some(c), e) => roll(c, e),
            (None, e) => e,
        })?;
        // The child was rewritten: its remote copies are replaced (they would otherwise build
        // on a parent that is gone).
        let reupload = remote_roll_up || !self.remotes(server).is_empty();
        if let (true, Some(c)) = (reupload, &child) {
            let never = AtomicBool::new(false);
            self.upload(server, c, workers, &never)
                .map_err(|e| roll(c, StorageError::Invalid(format!("rolled-up backup {c}: {}", upload_reason(&e)))))?;
        }
        Ok(())
    }

    /// Sets or clears the keep flag of backup `label` (and with `cascade` of the backups it
    /// builds on); returns the labels changed. Remote copies get the new `backup.info`.
    ///
    /// # Errors
    /// No such backup, storage failures.
    pub fn set_keep(&self, server: &str, label: &str, keep: bool, cascade: bool) -> Result<Vec<String>> {
        let touched = ops::set_keep(self.store(), server, label, keep, cascade)?;
        for l in &touched {
            self.refresh_info(server, l);
        }
        Ok(touched)
    }

    /// Changes the comments of backup `label`; returns its `backup.info` after the change.
    /// Remote copies get the new `backup.info`.
    ///
    /// # Errors
    /// No such backup, a bad change (a key added twice, a key not there), storage failures.
    pub fn annotate(&self, server: &str, label: &str, change: &Annotation) -> Result<BackupInfo> {
        ops::annotate(self.store(), server, label, change)?;
        self.refresh_info(server, label);
        self.info(server, label)
    }

    /// What `policy` deletes among the backups of `server` at local time `now`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn plan_retention(&self, server: &str, policy: &Retention, now: CivilDateTime) -> Result<RetentionPlan> {
        let summaries: Vec<BackupSummary> = self
            .catalog(server)?
            .backups()
            .iter()
            .filter_map(|b| {
                Some(BackupSummary {
                    label: b.label.parse::<BackupLabel>().ok()?,
                    valid: b.valid,
                    keep: b.keep,
                    parent: b.parent.parse::<BackupLabel>().ok(),
                })
            })
            .collect();
        Ok(crate::retention::plan(&summaries, policy, now))
    }

    /// Deletes what `plan` deletes, then prunes what no remaining backup needs: WAL summaries
    /// ending before the oldest valid backup, and WAL before its first segment, locally (in
    /// `wal`, the server's archive) and in the remote copies. With no valid backup left
    /// nothing is pruned: the WAL is then the only copy of the server's history.
    ///
    /// # Errors
    /// The first deletion that failed (pruning failures are in the report).
    pub fn apply_retention(
        &self,
        server: &str,
        plan: &RetentionPlan,
        wal: Option<&WalArchive>,
    ) -> (Result<()>, RetentionReport) {
        let mut report = RetentionReport::default();
        let mut outcome = Ok(());
        for label in &plan.delete {
            let l = label.to_string();
            match ops::delete_backup(self.store(), server, &l, false) {
                Ok(()) => report.deleted.push(l),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let remaining = crate::catalog::list_backups(self.store(), server).unwrap_or_default();
        if let Some(oldest) = remaining.iter().filter(|b| b.valid).map(|b| b.start_lsn).min() {
            match crate::summary::prune_before(self.store(), server, oldest) {
                Ok(n) => report.summaries_pruned = n,
                Err(e) => log::error!("server [{server}]: pruning WAL summaries: {e}"),
            }
        }
        let first = ops::oldest_needed_wal(&remaining).map(str::to_owned);
        if let (Some(first), Some(wal)) = (first, wal) {
            if let Ok(keep) = WalSegment::parse(&first, wal.segment_size()) {
                match wal.prune_before(keep) {
                    Ok(n) => report.wal_pruned = n,
                    Err(e) => log::error!("server [{server}]: pruning WAL: {e}"),
                }
                for r in self.remotes(server) {
                    report.remote_wal_pruned.push((r.engine, remote::prune_wal(r.store.as_ref(), server, &first)));
                }
                report.wal_kept_from = Some(first);
            }
        }
        (outcome, report)
    }

    // ---- sizes ----

    /// Bytes `server` holds on the local disk: the stored bytes of its backups whose data is
    /// here (from their `backup.info`, so that no file is walked), and its WAL archive under
    /// `base_dir`.
    pub fn usage(&self, server: &str, base_dir: &Path) -> (u64, u64) {
        let backups = crate::catalog::list_backups(self.store(), server)
            .unwrap_or_default()
            .iter()
            .filter(|b| remote::has_local_data(self.local(), server, &b.label))
            .map(|b| b.backup_size)
            .sum();
        (backups, dir_size(&base_dir.join(layout::wal_dir(server))))
    }

    /// The WAL between the starts of consecutive backups, in whole segments: 0 for the first.
    pub fn wal_between(backups: &[BackupInfo], segment_size: u64) -> Vec<u64> {
        let seg = segment_size.max(1);
        let mut previous: Option<Lsn> = None;
        backups
            .iter()
            .map(|b| {
                let wal = previous.map_or(0, |p| b.start_lsn.0.saturating_sub(p.0) / seg * seg);
                previous = Some(b.start_lsn);
                wal
            })
            .collect()
    }
}

/// What failed inside an upload failure.
fn upload_reason(e: &StorageError) -> String {
    match e {
        StorageError::UploadPending { engine, source, .. } => format!("upload to {engine} storage: {source}"),
        other => other.to_string(),
    }
}

/// Bytes under `path` (files as stored, links not followed).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
