//! Restore a backup into a directory PostgreSQL can start on, as a plan ([`plan`]: which
//! backup and chain, where, which recovery settings, every check made before anything is
//! written) then its application ([`apply`]); [`restore`] does both.
//!
//! Files are decrypted and decompressed in parallel on `workers` threads, each written under a
//! temporary name, synced and renamed; `global/pg_control` is written last, so a data directory
//! with a `pg_control` is complete. Recovery settings are appended to `postgresql.auto.conf`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use pgmoneta_compress::Algorithm;
use pgmoneta_crypto::{Cipher, MasterKey};

use crate::catalog::{BackupSelector, Catalog};
use crate::error::{Result, StorageError};
use crate::fsio;
use crate::info::BackupInfo;
use crate::layout;
use crate::store::{join, EntryKind, LocalWriter, Store, StoreEntry, StoreWriter};
use crate::stored::{decode_stored, decode_stored_as, form_in, storage_of, stored_form, stored_path, CrcWriter};
use crate::target::RecoveryTarget;

/// How to restore.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// The server's name.
    pub server: String,
    /// Which backup.
    pub backup: BackupSelector,
    /// Upstream's position string (empty: restore the backup as it is).
    pub position: String,
    /// The directory to restore into: the data directory becomes `<directory>/<server>-<label>`.
    pub directory: PathBuf,
    /// Worker threads.
    pub workers: usize,
    /// The master key, for encrypted backups.
    pub master_key: Option<Arc<MasterKey>>,
    /// The command PostgreSQL runs to fetch WAL (`%f`, `%p`), written as `restore_command`
    /// when a recovery target is given.
    pub restore_command: Option<String>,
    /// With a recovery target, also copy the archived WAL from the backup's first segment on
    /// (decrypted, decompressed) into `pg_wal`, as upstream does, so that recovery needs no
    /// access to the repository. Without a `restore_command`, `'false'` is written: PostgreSQL
    /// then reads `pg_wal` alone.
    pub copy_wal: bool,
    /// `primary_conninfo` for a `replica` restore.
    pub primary_conninfo: Option<String>,
    /// `primary_slot_name` for a `replica` restore.
    pub primary_slot: Option<String>,
    /// Replace what is already in the data directory (or a tablespace's directory) the restore
    /// writes; without it such a restore is refused and nothing is touched.
    pub force: bool,
}

impl RestoreOptions {
    /// Options restoring `backup` of `server` into `directory`.
    pub fn new(server: &str, backup: BackupSelector, directory: impl Into<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            server: server.to_owned(),
            backup,
            position: String::new(),
            directory: directory.into(),
            workers: 1,
            master_key: None,
            restore_command: None,
            copy_wal: false,
            primary_conninfo: None,
            primary_slot: None,
            force: false,
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The backup restored.
    pub info: BackupInfo,
    /// The data directory written.
    pub data_dir: PathBuf,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// What was copied of the archived WAL (with a target and `copy_wal`).
    pub wal: Option<WalCopy>,
}

/// One file to restore.
struct FileJob {
    stored: String,
    target: PathBuf,
    /// The file's path in PostgreSQL's `backup_manifest`.
    manifest_path: String,
    /// How it is stored: compression, and whether it is encrypted.
    form: (Algorithm, bool),
    /// For an incremental file: its manifest path once combined and the versions to combine,
    /// newest first.
    combine: Option<(String, Vec<crate::incremental::ChainVersion>)>,
}

/// What PostgreSQL's `backup_manifest` of the backup in `backup_dir` says of the files the
/// jobs restore, by manifest path. Every file it lists must be among them (an incremental
/// file's job makes its combined form, which is not checked against the manifest). A backup
/// without the manifest gets no checks.
///
/// # Errors
/// [`StorageError::Corrupt`] for an unreadable manifest or a file it lists that the backup
/// does not have.
fn expected_files(
    store: &dyn Store,
    backup_dir: &str,
    jobs: &[FileJob],
) -> Result<BTreeMap<String, crate::manifest::PgManifestFile>> {
    let path = join(&[backup_dir, "data", "backup_manifest"]);
    let bytes = match store.read(&path) {
        Ok(b) => b,
        Err(StorageError::NotFound(_)) => {
            log::warn!("{path} does not exist: the restored files are not checked");
            return Ok(BTreeMap::new());
        }
        Err(e) => return Err(e),
    };
    let manifest = crate::manifest::PgManifest::parse(&bytes).map_err(|e| match e {
        StorageError::Corrupt { reason, .. } => StorageError::corrupt(&path, reason),
        other => other,
    })?;
    let restored: std::collections::BTreeSet<&str> = jobs.iter().map(|j| j.manifest_path.as_str()).collect();
    if let Some(missing) = manifest.files.iter().find(|f| !restored.contains(f.path.as_str())) {
        return Err(StorageError::corrupt(
            &path,
            format!("{} is listed but the backup has no such file", missing.path),
        ));
    }
    Ok(manifest.files.into_iter().map(|f| (f.path.clone(), f)).collect())
}

/// Starts a file of a data directory being restored. Most are written directly under their
/// names into the new directory, which counts only once complete (it is removed on failure),
/// and made durable by one sync of the whole tree rather than one per file: with tens of
/// thousands of relations, a sync per file is most of a restore's time. `pg_control`, written
/// last, goes under a temporary name and is synced on its own. Completed with
/// `StoreWriter::commit(false)`.
fn create_restored(target: &Path, last: bool) -> Result<Box<LocalWriter>> {
    Ok(Box::new(if last {
        LocalWriter::Atomic(fsio::AtomicFile::create(target)?)
    } else {
        LocalWriter::Direct(fsio::DirectFile::create(target)?)
    }))
}

/// Restores one file of a data directory, checking the restored bytes against PostgreSQL's
/// manifest when it lists the file: its size, and its checksum when this program computes that
/// algorithm. `last` for `pg_control` (see [`create_restored`]).
fn restore_checked(
    store: &dyn Store,
    job: &FileJob,
    expected: Option<&crate::manifest::PgManifestFile>,
    cipher: Option<Cipher>,
    key: Option<&MasterKey>,
    last: bool,
) -> Result<u64> {
    let check = expected.and_then(|e| crate::manifest::ManifestChecksum::new(&e.checksum_algorithm).ok());
    let mut raw = store.open(&job.stored)?;
    let mut out = create_restored(&job.target, last)?;
    let mut checked = CheckedWriter { inner: &mut out, check, bytes: 0 };
    decode_stored_as(&mut raw, &job.stored, job.form, cipher, key, &mut checked, &job.target)?;
    let CheckedWriter { check, bytes, .. } = checked;
    let Some(expected) = expected else {
        return out.commit(false);
    };
    let mismatch = if bytes != expected.size {
        Some(format!("restored to {bytes} bytes, backup_manifest says {}", expected.size))
    } else {
        check.map(|c| c.finish_hex()).filter(|sum| !sum.eq_ignore_ascii_case(&expected.checksum)).map(|sum| {
            format!(
                "restored bytes have {} {sum}, backup_manifest says {}",
                expected.checksum_algorithm, expected.checksum
            )
        })
    };
    if let Some(reason) = mismatch {
        // The file goes with `out`.
        return Err(StorageError::corrupt(&job.stored, reason));
    }
    out.commit(false)
}

/// Counts and checksums the bytes on their way to a restored file.
struct CheckedWriter<'a> {
    inner: &'a mut dyn Write,
    check: Option<crate::manifest::ManifestChecksum>,
    bytes: u64,
}

impl Write for CheckedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(c) = &mut self.check {
            c.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Restores one stored file to `target` (temporary name, sync, rename). Returns bytes written.
fn restore_file(
    store: &dyn Store,
    stored: &str,
    form: (Algorithm, bool),
    target: &Path,
    cipher: Option<Cipher>,
    key: Option<&MasterKey>,
) -> Result<u64> {
    let mut raw = store.open(stored)?;
    let mut out = fsio::AtomicFile::create(target)?;
    let n = decode_stored_as(&mut raw, stored, form, cipher, key, &mut out, target)?;
    out.commit_with(false)?;
    Ok(n)
}

/// Restores the file a manifest path names (`base/1/1259`, `pg_tblspc/<oid>/...`) of a backup
/// to `target`.
///
/// # Errors
/// [`StorageError::NotFound`] when the backup does not hold it; as a restore otherwise.
pub fn restore_one(
    store: &dyn Store,
    server: &str,
    info: &BackupInfo,
    path: &str,
    target: &Path,
    key: Option<&MasterKey>,
) -> Result<u64> {
    let stored = stored_path(store, server, info, path)?;
    restore_stored(store, info, &stored, target, key)
}

/// Restores a stored file of a backup (its repository path, suffixes included) to `target`.
pub(crate) fn restore_stored(
    store: &dyn Store,
    info: &BackupInfo,
    stored: &str,
    target: &Path,
    key: Option<&MasterKey>,
) -> Result<u64> {
    let name = stored.rsplit('/').next().unwrap_or(stored);
    let (_, algorithm, encrypted) = form_in(name, storage_of(info));
    restore_file(store, stored, (algorithm, encrypted), target, Cipher::from_code(info.encryption), key)
}

/// Walks a stored tree, creating directories under `target` and collecting files.
fn walk(
    store: &dyn Store,
    stored_dir: &str,
    target: &Path,
    prefix: &str,
    storage: Option<(Algorithm, bool)>,
    jobs: &mut Vec<FileJob>,
) -> Result<()> {
    fsio::create_dir_all(target)?;
    for e in store.list(stored_dir)? {
        // Left by an interrupted write or roll-up: never part of the backup.
        if e.name.ends_with(fsio::TEMP_SUFFIX) {
            continue;
        }
        let stored = join(&[stored_dir, &e.name]);
        match e.kind {
            EntryKind::Dir => {
                walk(store, &stored, &target.join(&e.name), &format!("{prefix}{}/", e.name), storage, jobs)?;
            }
            // Tablespace links are made anew; other links lead to an older backup's file.
            EntryKind::Symlink if stored_dir.ends_with("/data/pg_tblspc") => {}
            EntryKind::File | EntryKind::Symlink => {
                let (plain, algorithm, encrypted) = form_in(&e.name, storage);
                jobs.push(FileJob {
                    stored,
                    target: target.join(plain),
                    manifest_path: format!("{prefix}{plain}"),
                    form: (algorithm, encrypted),
                    combine: None,
                });
            }
        }
    }
    Ok(())
}

/// Free bytes on the file system of `dir`, or of its nearest existing ancestor.
fn free_space(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|d| d.exists())?;
    let s = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// What a restore will do, decided and checked before anything is written ([`plan`]); its
/// `Display` is what an operator is shown. [`apply`] carries it out.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RestorePlan {
    /// The backup restored.
    pub backup: BackupInfo,
    /// Its chain: itself first, then each parent to the full backup (one entry for a full
    /// backup; more, and the files are combined).
    pub chain: Vec<BackupInfo>,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// The data directory written, `<directory>/<server>-<label>`.
    pub data_dir: PathBuf,
    /// Each tablespace's OID and the directory it is restored into.
    pub tablespaces: Vec<(String, PathBuf)>,
    /// The server's archived WAL, listed when a target needs it (the segments from the
    /// backup's on are copied into `pg_wal` when `copy_wal` is set).
    pub wal: Vec<StoreEntry>,
    /// Non-empty directories a forced restore replaces, with their number of entries.
    pub replaced: Vec<(PathBuf, usize)>,
    /// Bytes the restore needs on the target's file system.
    pub needed: u64,
    /// The recovery settings appended to `postgresql.auto.conf`, and the signal file written
    /// beside them; `None` for a plain restore.
    pub recovery: Option<(String, &'static str)>,
}

impl std::fmt::Display for RestorePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain: Vec<&str> = self.chain.iter().map(|b| b.label.as_str()).collect();
        writeln!(f, "backup {} into {}", self.backup.label, self.data_dir.display())?;
        if chain.len() > 1 {
            writeln!(f, "combined from the chain {}", chain.join(" <- "))?;
        }
        for (oid, dir) in &self.tablespaces {
            writeln!(f, "tablespace {oid} into {}", dir.display())?;
        }
        writeln!(f, "needs {} bytes", self.needed)?;
        for (dir, entries) in &self.replaced {
            writeln!(f, "replaces the {entries} entries of {}", dir.display())?;
        }
        match &self.recovery {
            None => writeln!(f, "no recovery settings"),
            Some((settings, signal)) => {
                writeln!(f, "{signal} and, in postgresql.auto.conf:")?;
                for line in settings.lines().filter(|l| !l.starts_with('#')) {
                    writeln!(f, "  {}", redact_password(line))?;
                }
                Ok(())
            }
        }
    }
}

/// `line` with the value of any `password=` in it hidden (a plan is shown and logged).
fn redact_password(line: &str) -> String {
    line.split(' ')
        .map(|word| match word.strip_prefix("password=") {
            Some(v) if !v.is_empty() => format!("password=******{}", if v.ends_with('\'') { "'" } else { "" }),
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decides a restore and checks it without writing anything: the backup (by selector and
/// target) and its chain, that the target is reachable with the archived WAL, that no
/// directory in the way holds files (unless forced), that the space is there, and the recovery
/// settings.
///
/// # Errors
/// No such backup, an unreachable target, a directory in the way, too little space, a target
/// without a way to fetch WAL.
pub fn plan(store: &dyn Store, options: &RestoreOptions) -> Result<RestorePlan> {
    let target = RecoveryTarget::parse(&options.position)?;
    let catalog = Catalog::load(store, &options.server)?;
    let backup = catalog.select(&options.backup, &target)?.clone();
    let chain = catalog.chain(&backup)?;
    let data_dir = options.directory.join(format!("{}-{}", options.server, backup.label));
    let wal = if target.target.is_some() || target.timeline.is_some() {
        store.list(&layout::wal_dir(&options.server))?
    } else {
        Vec::new()
    };
    crate::reach::Reach::of(&backup, &wal).check(&target)?;
    let tablespaces: Vec<(String, PathBuf)> =
        backup.tablespaces.iter().map(|t| (t.oid.clone(), tablespace_target(options, &backup, &t.dir))).collect();
    let mut replaced = Vec::new();
    for dir in std::iter::once(&data_dir).chain(tablespaces.iter().map(|(_, d)| d)) {
        let entries = match fs::read_dir(dir) {
            Ok(rd) => rd.count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StorageError::io("listing", dir)(e)),
        };
        if entries > 0 && !options.force {
            return Err(StorageError::NotEmpty { path: dir.clone(), entries });
        }
        if entries > 0 {
            replaced.push((dir.clone(), entries));
        }
    }
    let needed = backup.restore_size + options.workers.max(1) as u64 * backup.biggest_file;
    if let Some(available) = free_space(&options.directory) {
        if available < needed {
            return Err(StorageError::NoSpace { path: options.directory.clone(), needed, available });
        }
    }
    let recovery = recovery_settings(options, &target)?;
    Ok(RestorePlan { backup, chain, target, data_dir, tablespaces, wal, replaced, needed, recovery })
}

/// The recovery settings and signal file of a restore to `target`, if it needs any.
fn recovery_settings(options: &RestoreOptions, target: &RecoveryTarget) -> Result<Option<(String, &'static str)>> {
    let has_settings =
        target.target.is_some() || target.replica || !target.other.is_empty() || target.timeline.is_some();
    if !has_settings {
        return Ok(None);
    }
    let copied_wal = options.copy_wal && target.target.is_some();
    let command = match (&target.target, options.restore_command.as_deref()) {
        (None, _) => None,
        (Some(_), Some(c)) => Some(c),
        // PostgreSQL then reads the copied WAL from pg_wal alone.
        (Some(_), None) if copied_wal => Some("false"),
        (Some(_), None) if target.replica => None,
        (Some(_), None) => {
            return Err(StorageError::Invalid(
                "a recovery target needs a restore_command to fetch WAL from the repository".into(),
            ))
        }
    };
    let settings = target.settings(command, options.primary_conninfo.as_deref(), options.primary_slot.as_deref());
    Ok(Some((settings, if target.replica { "standby.signal" } else { "recovery.signal" })))
}

/// Carries out a plan made by [`plan`] with the same options.
///
/// # Errors
/// A damaged or truncated stored file, a wrong master key, I/O failures. A failed restore
/// removes what it wrote.
pub fn apply(store: &dyn Store, options: &RestoreOptions, plan: &RestorePlan) -> Result<RestoreReport> {
    for (dir, entries) in &plan.replaced {
        log::warn!("restore: replacing the {entries} entries of {} (forced)", dir.display());
    }
    fsio::create_dir_all(&options.directory)?;
    fsio::remove_dir_all(&plan.data_dir)?;
    let result = restore_into(store, options, plan);
    if result.is_err() {
        let _ = fsio::remove_dir_all(&plan.data_dir);
        for (_, dir) in &plan.tablespaces {
            let _ = fsio::remove_dir_all(dir);
        }
    }
    result
}

/// Restores a backup (see the module documentation): [`plan`], then [`apply`].
///
/// # Errors
/// As [`plan`] and [`apply`].
pub fn restore(store: &dyn Store, options: &RestoreOptions) -> Result<RestoreReport> {
    let plan = plan(store, options)?;
    apply(store, options, &plan)
}

fn tablespace_target(options: &RestoreOptions, info: &BackupInfo, dir: &str) -> PathBuf {
    options.directory.join(format!("{}-{}-{}", options.server, info.label, dir))
}

/// Turns the jobs of an incremental backup's `INCREMENTAL.*` files into combine jobs over the
/// chain.
fn plan_combines(store: &dyn Store, server: &str, chain: &[BackupInfo], jobs: &mut [FileJob]) -> Result<usize> {
    use crate::incremental::{incremental_path, plain_path, split_name, ChainVersion};
    let older = chain[1..]
        .iter()
        .map(|b| crate::catalog::stored_files(store, server, b).map(|files| (b, files)))
        .collect::<Result<Vec<_>>>()?;
    let mut count = 0;
    for j in jobs.iter_mut() {
        let name = j.target.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let (plain_name, incremental) = split_name(name);
        if !incremental {
            continue;
        }
        let plain = plain_path(&j.manifest_path).unwrap_or_else(|| j.manifest_path.clone());
        let mut versions = vec![ChainVersion {
            label: chain[0].label.clone(),
            stored: Some(j.stored.clone()),
            incremental: true,
            cipher: Cipher::from_code(chain[0].encryption),
        }];
        for (b, files) in &older {
            let cipher = Cipher::from_code(b.encryption);
            let found = match (files.get(&plain), files.get(&incremental_path(&plain))) {
                (Some(f), _) => Some((f.path.clone(), false)),
                (None, Some(f)) => Some((f.path.clone(), true)),
                (None, None) => None,
            };
            let full = found.as_ref().is_some_and(|f| !f.1);
            versions.push(ChainVersion {
                label: b.label.clone(),
                incremental: found.as_ref().is_some_and(|f| f.1),
                stored: found.map(|f| f.0),
                cipher,
            });
            if full {
                break;
            }
        }
        j.target = j.target.with_file_name(plain_name);
        j.combine = Some((plain, versions));
        count += 1;
    }
    Ok(count)
}

/// The `backup_label` of a combined backup: the newest backup's, without the lines that make
/// PostgreSQL refuse to start on an incremental backup.
pub(crate) fn combined_label(text: &str) -> String {
    text.lines().filter(|l| !l.starts_with("INCREMENTAL FROM ")).map(|l| format!("{l}\n")).collect()
}

fn restore_into(store: &dyn Store, options: &RestoreOptions, plan: &RestorePlan) -> Result<RestoreReport> {
    let chain = &plan.chain;
    let data_dir = plan.data_dir.as_path();
    let info = &chain[0];
    let backup_dir = layout::backup_dir(&options.server, &info.label);
    let mut jobs = Vec::new();
    let storage = storage_of(info);
    walk(store, &join(&[&backup_dir, "data"]), data_dir, "", storage, &mut jobs)?;
    // Files are written without a sync of their own: their file systems are watched for
    // write-back errors from before the first one, and synced once at the end.
    let mut watches = vec![fsio::WritebackWatch::open(data_dir)?];
    let mut links = Vec::new();
    for t in &info.tablespaces {
        let dest = tablespace_target(options, info, &t.dir);
        fsio::remove_dir_all(&dest)?;
        let prefix = format!("pg_tblspc/{}/", t.oid);
        walk(store, &join(&[&backup_dir, &t.dir]), &dest, &prefix, storage, &mut jobs)?;
        watches.push(fsio::WritebackWatch::open(&dest)?);
        links.push((t.oid.clone(), format!("../../{}-{}-{}", options.server, info.label, t.dir)));
    }
    // backup_manifest is for verification, not part of the data directory (a combined backup
    // gets a new one, below).
    jobs.retain(|j| j.target != data_dir.join("backup_manifest"));
    let combined = chain.len() > 1;
    if combined {
        plan_combines(store, &options.server, chain, &mut jobs)?;
    }
    let expected = expected_files(store, &backup_dir, &jobs)?;
    let results: Mutex<BTreeMap<String, (u64, u32)>> = Mutex::new(BTreeMap::new());
    let control = data_dir.join("global").join("pg_control");
    let (last, rest): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| j.target == control);
    let cipher = Cipher::from_code(info.encryption);
    let key = options.master_key.clone();
    let totals = Mutex::new((0usize, 0u64));
    crate::pool::for_each(rest, options.workers, None, |j: FileJob| {
        let n = match &j.combine {
            None => restore_checked(store, &j, expected.get(&j.manifest_path), cipher, key.as_deref(), false)?,
            Some((path, versions)) => {
                let (n, crc) = combine_file(store, path, versions, key.as_deref(), &options.directory, &j.target)?;
                results.lock().insert(path.clone(), (n, crc));
                n
            }
        };
        let mut t = totals.lock();
        t.0 += 1;
        t.1 += n;
        Ok(())
    })?;
    // A remote repository keeps no empty directories; PostgreSQL needs its own.
    for dir in DATA_DIRECTORY_LAYOUT {
        let path = data_dir.join(dir);
        if !path.exists() {
            fsio::create_dir_all(&path)?;
        }
    }
    let pg_tblspc = data_dir.join("pg_tblspc");
    for (oid, rel) in &links {
        let link = pg_tblspc.join(oid);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(rel, &link).map_err(StorageError::io("creating tablespace link", &link))?;
    }
    if combined {
        write_combined_metadata(store, &options.server, info, data_dir, &results.into_inner())?;
    }
    let mut wal_copy = None;
    if options.copy_wal && plan.target.target.is_some() {
        let copied = copy_archived_wal(store, options, info, &plan.target, &plan.wal, &data_dir.join("pg_wal"))?;
        log::info!("restore of {}: copied {copied}", info.label);
        wal_copy = Some(copied);
    }
    if let Some((settings, signal)) = &plan.recovery {
        let auto = data_dir.join("postgresql.auto.conf");
        let mut text = fs::read_to_string(&auto).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(settings);
        fsio::write_file(&auto, text.as_bytes())?;
        fsio::write_file(&data_dir.join(signal), b"")?;
    }
    // Every file and directory written so far made durable at once, before pg_control.
    for w in &watches {
        w.sync()?;
    }
    let mut totals = totals.into_inner();
    for j in last {
        totals.1 += restore_checked(store, &j, expected.get(&j.manifest_path), cipher, key.as_deref(), true)?;
        totals.0 += 1;
        if let Some(parent) = j.target.parent() {
            fsio::sync_dir(parent)?;
        }
    }
    fsio::set_mode(data_dir, 0o700)?;
    Ok(RestoreReport {
        info: info.clone(),
        data_dir: data_dir.to_owned(),
        files: totals.0,
        bytes: totals.1,
        wal: wal_copy,
    })
}

/// Combines one file of a chain into `target` (temporary name, sync, rename). Returns its size
/// and CRC32C.
fn combine_file(
    store: &dyn Store,
    path: &str,
    versions: &[crate::incremental::ChainVersion],
    key: Option<&MasterKey>,
    spill_dir: &Path,
    target: &Path,
) -> Result<(u64, u32)> {
    let out = create_restored(target, false)?;
    let mut w = CrcWriter::new(out, None, false);
    crate::incremental::combine(
        store,
        path,
        versions,
        key,
        crate::incremental::CombineOutput::Full,
        spill_dir,
        &mut w,
    )?;
    let CrcWriter { inner, crc, bytes, .. } = w;
    inner.commit(false)?;
    Ok((bytes, crc))
}

/// Rewrites `backup_label` and writes the `backup_manifest` of a combined data directory:
/// the newest backup's manifest with each incremental file replaced by its combined form.
fn write_combined_metadata(
    store: &dyn Store,
    server: &str,
    info: &BackupInfo,
    data_dir: &Path,
    combined: &BTreeMap<String, (u64, u32)>,
) -> Result<()> {
    let label_path = data_dir.join("backup_label");
    let label = fs::read_to_string(&label_path).map_err(StorageError::io("reading", &label_path))?;
    fsio::write_file(&label_path, combined_label(&label).as_bytes())?;
    let stored = join(&[&layout::backup_dir(server, &info.label), "data", "backup_manifest"]);
    let mut manifest = crate::manifest::PgManifest::parse(&store.read(&stored)?)?;
    for f in &mut manifest.files {
        if let Some(plain) = crate::incremental::plain_path(&f.path) {
            let &(size, crc) =
                combined.get(&plain).ok_or_else(|| StorageError::Invalid(format!("{plain} was not combined")))?;
            f.path = plain;
            f.size = size;
            f.checksum_algorithm = "CRC32C".into();
            f.checksum = pgmoneta_crypto::hex(&crc.to_le_bytes());
        } else if f.path == "backup_label" {
            let text = combined_label(&label);
            f.size = text.len() as u64;
            f.checksum_algorithm = "CRC32C".into();
            f.checksum = pgmoneta_crypto::hex(&pgmoneta_crypto::crc32c(text.as_bytes()).to_le_bytes());
        }
    }
    manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
    fsio::write_file(&data_dir.join("backup_manifest"), &manifest.to_bytes(&utc_now_text()))?;
    Ok(())
}

/// The directories of a data directory that may be empty, and that PostgreSQL expects (those
/// `BASE_BACKUP` sends even when their contents are left out, and `pg_wal/archive_status`).
const DATA_DIRECTORY_LAYOUT: &[&str] = &[
    "pg_commit_ts",
    "pg_dynshmem",
    "pg_logical/mappings",
    "pg_logical/snapshots",
    "pg_multixact/members",
    "pg_multixact/offsets",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_tblspc",
    "pg_twophase",
    "pg_wal/archive_status",
    "pg_xact",
];

/// The current time as a manifest writes it.
fn utc_now_text() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let t = pgmoneta_core::CivilDateTime::from_unix(secs as i64, 0);
    format!("{t} GMT")
}

/// What a restore copied of the archived WAL into `pg_wal`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalCopy {
    /// Files copied (segments and history files).
    pub files: usize,
    /// Their size as stored in the archive.
    pub stored_bytes: u64,
    /// The files a copy of everything would have taken (from the backup's first segment on).
    pub archive_files: usize,
    /// Their size as stored.
    pub archive_bytes: u64,
    /// The end of the record recovery stops at, when decoding found it: the copy ended with
    /// the segment after the one holding it, and PostgreSQL asks `restore_command` for any
    /// other.
    pub stop: Option<pgmoneta_core::Lsn>,
}

impl std::fmt::Display for WalCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} WAL files ({} bytes stored) of the {} ({} bytes) archived from the backup on",
            self.files, self.stored_bytes, self.archive_files, self.archive_bytes
        )?;
        match self.stop {
            Some(stop) => write!(f, "; recovery stops at the record ending at {stop}"),
            None => write!(f, "; all of them"),
        }
    }
}

/// Passes what it writes on, and shows it to a [`StopFinder`](crate::walstop::StopFinder).
struct Tee<'a, 'w> {
    out: &'w mut dyn Write,
    finder: Option<(&'a mut crate::walstop::StopFinder, pgmoneta_core::Lsn)>,
}

impl Write for Tee<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some((finder, start)) = self.finder.as_mut() {
            finder.feed(*start, &buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Copies the archived WAL a recovery from `info` to `target` needs into `pg_wal`: every
/// history file, and the segments from the backup's first one on, on its timeline and later
/// ones. With a target on the backup's own timeline, the segments are decoded as they are
/// copied and the copy ends one segment after the record recovery stops at
/// ([`crate::walstop`]); PostgreSQL asks `restore_command` for anything further.
fn copy_archived_wal(
    store: &dyn Store,
    options: &RestoreOptions,
    info: &BackupInfo,
    target: &RecoveryTarget,
    wal: &[StoreEntry],
    pg_wal: &Path,
) -> Result<WalCopy> {
    use pgmoneta_core::{Lsn, WalFileKind};
    let stored_dir = layout::wal_dir(&options.server);
    fsio::create_dir_all(pg_wal)?;
    let size = crate::reach::segment_size_of(info);
    let first = pgmoneta_core::WalSegment::parse(&info.wal, size).map(|s| s.number).unwrap_or(0);
    let backup_tli = info.start_timeline.max(1);
    let mut histories = Vec::new();
    let mut segments = Vec::new();
    let mut partials = Vec::new();
    for e in wal {
        if e.kind != EntryKind::File || e.name.ends_with(fsio::TEMP_SUFFIX) {
            continue;
        }
        match WalFileKind::parse(stored_form(&e.name).0, size) {
            Ok(WalFileKind::Segment(s)) if s.number >= first && s.timeline.0 >= backup_tli => segments.push((s, e)),
            Ok(WalFileKind::Partial(s)) if s.number >= first && s.timeline.0 == backup_tli => partials.push((s, e)),
            Ok(WalFileKind::History(t)) => histories.push((t.0, e)),
            _ => {}
        }
    }
    segments.sort_by_key(|(s, _)| (s.number, s.timeline.0));
    // Decoding follows one timeline: with a later one in the archive, everything is copied.
    let one_timeline =
        histories.iter().all(|(t, _)| *t <= backup_tli) && segments.iter().all(|(s, _)| s.timeline.0 == backup_tli);
    // The segment being received, right after the complete ones: it holds the newest WAL, the
    // minutes before a mistake on a server that writes little. Only on a single timeline (after
    // a switch, the old timeline's last segment stays partial for good) and for a primary (a
    // replica streams the rest).
    let next = segments.last().map_or(first, |(s, _)| s.number + 1);
    let partial = partials.into_iter().find(|(s, _)| s.number == next).filter(|_| one_timeline && !target.replica);
    let mut report = WalCopy {
        archive_files: histories.len() + segments.len() + usize::from(partial.is_some()),
        archive_bytes: histories
            .iter()
            .map(|(_, e)| e.size)
            .chain(segments.iter().map(|(_, e)| e.size))
            .chain(partial.iter().map(|(_, e)| e.size))
            .sum(),
        ..WalCopy::default()
    };
    let mut finder = match &target.target {
        Some(kind) if one_timeline && !target.replica => {
            crate::walstop::StopFinder::new(kind, info.start_lsn, info.end_lsn, size)
        }
        _ => None,
    };
    let cipher = Cipher::from_code(info.encryption);
    let mut copy = |e: &StoreEntry, plain: &str, finder: Option<(&mut crate::walstop::StopFinder, Lsn)>| {
        let path = join(&[&stored_dir, &e.name]);
        let mut raw = store.open(&path)?;
        let dest = pg_wal.join(plain);
        let mut out = fsio::AtomicFile::create(&dest)?;
        let mut tee = Tee { out: &mut out, finder };
        decode_stored(&mut raw, &path, cipher, options.master_key.as_deref(), &mut tee, &dest)?;
        out.commit_with(false)?;
        report.files += 1;
        report.stored_bytes += e.size;
        Ok::<(), StorageError>(())
    };
    for (_, e) in &histories {
        copy(e, stored_form(&e.name).0, None)?;
    }
    let complete = segments.iter().map(|(s, e)| (*s, *e, stored_form(&e.name).0.to_owned(), false));
    // The partial segment goes into pg_wal under its complete name: PostgreSQL reads it up to its
    // last whole record, as it would a segment cut short by a crash.
    let received = partial.map(|(s, e)| (s, e, s.file_name(size), true));
    for (s, e, plain, is_partial) in complete.chain(received) {
        if finder.as_ref().and_then(|f| f.last_segment()).is_some_and(|last| s.number > last) {
            break;
        }
        let start = Lsn(s.number * size.bytes());
        let watching = finder.as_mut().is_some_and(|f| f.expects(start) && f.found().is_none());
        let watch = finder.as_mut().filter(|_| watching).map(|f| (f, start));
        match copy(e, &plain, watch) {
            // Completed (renamed and sealed) since the listing: what it holds is no longer under
            // that name, and recovery asks restore_command for the segment.
            Err(StorageError::NotFound(what)) if is_partial => {
                log::warn!("restore: {what}: the segment completed while the restore listed the archive; not copied");
                break;
            }
            other => other?,
        }
        if finder.as_ref().is_some_and(|f| f.lost()) {
            finder = None;
        }
    }
    fsio::sync_dir(pg_wal)?;
    report.stop = finder.and_then(|f| f.found());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_never_shows_a_password() {
        let line = "primary_conninfo = 'host=h port=5432 user=repl password=s3cret application_name=x'";
        assert_eq!(
            redact_password(line),
            "primary_conninfo = 'host=h port=5432 user=repl password=****** application_name=x'"
        );
        assert_eq!(
            redact_password("primary_conninfo = 'user=u password=pw'"),
            "primary_conninfo = 'user=u password=******'"
        );
        assert_eq!(redact_password("recovery_target_lsn = '0/3000000'"), "recovery_target_lsn = '0/3000000'");
    }
}
