//! Restore a backup into a directory PostgreSQL can start on, and verify a backup.
//!
//! Files are decrypted and decompressed in parallel on `workers` threads, each written under a
//! temporary name, synced and renamed; `global/pg_control` is written last, so a data directory
//! with a `pg_control` is complete. Recovery settings are appended to `postgresql.auto.conf`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::unbounded;
use pgmoneta_compress::{Algorithm, CopyError, Decoder};
use pgmoneta_crypto::{Cipher, DecryptReader, HashAlgorithm, HashingReader, HashingWriter, MasterKey, AES_SUFFIX};

use crate::error::{Result, StorageError};
use crate::fsio;
use crate::info::{BackupInfo, BACKUP_INFO};
use crate::layout;
use crate::store::{join, EntryKind, LocalWriter, Store, StoreEntry, StoreWriter};

/// The backups of a server, oldest first, with their `backup.info`; directories without one
/// (a backup being written, or one interrupted by a crash) are left out.
///
/// # Errors
/// Storage failures, or a `backup.info` that does not parse.
pub fn list_backups(store: &dyn Store, server: &str) -> Result<Vec<BackupInfo>> {
    let mut out = Vec::new();
    for e in store.list(&layout::backups_dir(server))? {
        if e.kind != EntryKind::Dir {
            continue;
        }
        let path = join(&[&layout::backup_dir(server, &e.name), BACKUP_INFO]);
        if !store.exists(&path) {
            continue;
        }
        out.push(BackupInfo::parse(&crate::ops::read_text(store, &path)?, &path)?);
    }
    out.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(out)
}

/// Which backup to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupSelector {
    /// The oldest valid backup (or, with an LSN, time or timeline target, the newest one that
    /// can reach it).
    Oldest,
    /// The newest valid backup (or the newest one that can reach the target).
    Newest,
    /// A label.
    Label(String),
}

impl BackupSelector {
    /// `oldest`, `newest`/`latest`, or a label.
    pub fn parse(s: &str) -> BackupSelector {
        match s {
            "oldest" => BackupSelector::Oldest,
            "newest" | "latest" => BackupSelector::Newest,
            l => BackupSelector::Label(l.to_owned()),
        }
    }
}

/// Where recovery stops: upstream's position tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryTarget {
    /// `current`/`immediate`, `name=`, `xid=`, `lsn=`, `time=`: at most one.
    pub target: Option<TargetKind>,
    /// `inclusive=`.
    pub inclusive: Option<bool>,
    /// `timeline=`.
    pub timeline: Option<String>,
    /// `action=` (`pause`, `promote`, `shutdown`).
    pub action: Option<String>,
    /// `replica` (a standby) rather than `primary` (the default).
    pub replica: bool,
    /// Other `key=value` tokens, written as settings as they are.
    pub other: Vec<(String, String)>,
}

/// A recovery target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// Stop as soon as the backup is consistent.
    Immediate,
    /// A named restore point.
    Name(String),
    /// A transaction id.
    Xid(String),
    /// An LSN.
    Lsn(pgmoneta_core::Lsn),
    /// A time, as PostgreSQL reads it.
    Time(String),
}

impl RecoveryTarget {
    /// Parses upstream's comma-separated position string.
    ///
    /// # Errors
    /// [`StorageError::Invalid`] for two targets, an unknown bare word, a bad LSN or flag.
    pub fn parse(position: &str) -> Result<RecoveryTarget> {
        let mut t = RecoveryTarget::default();
        let bad = |m: String| StorageError::Invalid(format!("restore position {position:?}: {m}"));
        for token in position.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = match token.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
                None => (token, None),
            };
            let target = match (k, v) {
                ("current" | "immediate", None) => Some(TargetKind::Immediate),
                ("name", Some(v)) => Some(TargetKind::Name(v)),
                ("xid", Some(v)) => {
                    v.parse::<u64>().map_err(|_| bad(format!("xid {v:?} is not a transaction id")))?;
                    Some(TargetKind::Xid(v))
                }
                ("lsn", Some(v)) => Some(TargetKind::Lsn(v.parse().map_err(|e| bad(format!("lsn: {e}")))?)),
                ("time", Some(v)) => Some(TargetKind::Time(v)),
                // A bare `inclusive`, as upstream accepts it.
                ("inclusive", None) => {
                    t.inclusive = Some(true);
                    None
                }
                ("inclusive", Some(v)) => {
                    t.inclusive = Some(match v.as_str() {
                        "on" | "true" | "yes" | "1" => true,
                        "off" | "false" | "no" | "0" => false,
                        _ => return Err(bad(format!("inclusive={v} is not on or off"))),
                    });
                    None
                }
                ("timeline", Some(v)) => {
                    t.timeline = Some(v);
                    None
                }
                ("action", Some(v)) => {
                    if !matches!(v.as_str(), "pause" | "promote" | "shutdown") {
                        return Err(bad(format!("action={v}: expected pause, promote or shutdown")));
                    }
                    t.action = Some(v);
                    None
                }
                ("primary", None) => {
                    t.replica = false;
                    None
                }
                ("replica", None) => {
                    t.replica = true;
                    None
                }
                (k, Some(v)) => {
                    t.other.push((k.to_owned(), v));
                    None
                }
                (k, None) => return Err(bad(format!("unknown word {k:?}"))),
            };
            if let Some(target) = target {
                if t.target.is_some() {
                    return Err(bad("more than one recovery target".into()));
                }
                t.target = Some(target);
            }
        }
        Ok(t)
    }

    /// The settings recovery needs, `key = 'value'` lines. `restore_command` fetches WAL from
    /// the repository (required by PostgreSQL for targeted recovery).
    pub fn settings(
        &self,
        restore_command: Option<&str>,
        primary_conninfo: Option<&str>,
        slot: Option<&str>,
    ) -> String {
        let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
        let mut s = String::from("# Written by pgmoneta restore\n");
        if let Some(c) = restore_command {
            s += &format!("restore_command = {}\n", quote(c));
        }
        match &self.target {
            Some(TargetKind::Immediate) => s += "recovery_target = 'immediate'\n",
            Some(TargetKind::Name(n)) => s += &format!("recovery_target_name = {}\n", quote(n)),
            Some(TargetKind::Xid(x)) => s += &format!("recovery_target_xid = {}\n", quote(x)),
            Some(TargetKind::Lsn(l)) => s += &format!("recovery_target_lsn = '{l}'\n"),
            Some(TargetKind::Time(t)) => s += &format!("recovery_target_time = {}\n", quote(t)),
            None => {}
        }
        if let Some(i) = self.inclusive {
            s += &format!("recovery_target_inclusive = {}\n", if i { "on" } else { "off" });
        }
        if let Some(tl) = &self.timeline {
            s += &format!("recovery_target_timeline = {}\n", quote(tl));
        }
        if self.target.is_some() {
            // Upstream's default is pause; a primary restore should come up usable.
            let action = self.action.as_deref().unwrap_or(if self.replica { "pause" } else { "promote" });
            s += &format!("recovery_target_action = '{action}'\n");
        }
        if self.replica {
            if let Some(c) = primary_conninfo {
                s += &format!("primary_conninfo = {}\n", quote(c));
            }
            if let Some(slot) = slot {
                s += &format!("primary_slot_name = {}\n", quote(slot));
            }
        }
        for (k, v) in &self.other {
            s += &format!("{k} = {}\n", quote(v));
        }
        s
    }
}

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
}

/// Picks the backup for a selector and target.
///
/// # Errors
/// [`StorageError::NotFound`] when no valid backup matches.
pub fn select_backup(backups: &[BackupInfo], selector: &BackupSelector, target: &RecoveryTarget) -> Result<BackupInfo> {
    let mut valid = backups.iter().filter(|b| b.valid);
    let found = match selector {
        BackupSelector::Label(l) => backups.iter().find(|b| &b.label == l).filter(|b| b.valid),
        _ => match &target.target {
            // The newest backup that ends before the target can reach it.
            Some(TargetKind::Lsn(lsn)) => valid.rfind(|b| b.end_lsn <= *lsn),
            // Labels are local times: the newest backup started at or before the target time
            // (`YYYY-MM-DD[ HH:MM[:SS]]`, missing parts read as zero).
            Some(TargetKind::Time(t)) => {
                let mut digits: String = t.chars().filter(char::is_ascii_digit).take(14).collect();
                while digits.len() < 14 {
                    digits.push('0');
                }
                valid.rfind(|b| b.label <= digits)
            }
            // A timeline alone: the newest backup that started on it.
            None if target.timeline.as_deref().is_some_and(|t| t.parse::<u32>().is_ok()) => {
                let tli: u32 = target.timeline.as_deref().and_then(|t| t.parse().ok()).unwrap_or(0);
                valid.rfind(|b| b.start_timeline == tli)
            }
            _ if matches!(selector, BackupSelector::Oldest) => backups.iter().find(|b| b.valid),
            _ => valid.next_back(),
        },
    };
    if found.is_none() && !matches!(selector, BackupSelector::Label(_)) {
        if let (Some(TargetKind::Lsn(lsn)), Some(oldest)) = (&target.target, backups.iter().find(|b| b.valid)) {
            return Err(StorageError::Unreachable(format!(
                "lsn={lsn} is before the end of every valid backup: the oldest, {}, ends at {}",
                oldest.label, oldest.end_lsn
            )));
        }
    }
    found.cloned().ok_or_else(|| StorageError::NotFound(format!("no valid backup matches {selector:?}")))
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

/// The chain of a backup: itself, then its parent, and so on to the full backup at the root.
///
/// # Errors
/// [`StorageError::NotFound`] when a parent is missing, [`StorageError::Invalid`] when one is
/// not valid or the chain loops.
pub fn chain_of(backups: &[BackupInfo], info: &BackupInfo) -> Result<Vec<BackupInfo>> {
    let mut chain = vec![info.clone()];
    while chain.last().is_some_and(|b| b.backup_type == crate::info::BackupType::Incremental) {
        let child = chain.last().expect("not empty");
        let parent = backups.iter().find(|b| b.label == child.parent).ok_or_else(|| {
            StorageError::NotFound(format!(
                "incremental backup {} builds on backup {:?}, which is missing",
                child.label, child.parent
            ))
        })?;
        if !parent.valid {
            return Err(StorageError::Invalid(format!(
                "incremental backup {} builds on backup {}, which is not valid",
                child.label, parent.label
            )));
        }
        if chain.iter().any(|b| b.label == parent.label) || chain.len() > backups.len() {
            return Err(StorageError::Invalid(format!("the chain of backup {} loops at {}", info.label, parent.label)));
        }
        chain.push(parent.clone());
    }
    Ok(chain)
}

/// Plain bytes on their way to a file: their count, CRC32C (for a rewritten manifest) and,
/// when asked, SHA-512 (for `backup.manifest`).
pub(crate) struct CrcWriter<W> {
    pub(crate) inner: W,
    pub(crate) crc: u32,
    pub(crate) bytes: u64,
    pub(crate) sha: Option<pgmoneta_crypto::Hasher>,
}

impl<W> CrcWriter<W> {
    pub(crate) fn new(inner: W, sha512: bool) -> CrcWriter<W> {
        let sha = sha512.then(|| pgmoneta_crypto::Hasher::new(HashAlgorithm::Sha512));
        CrcWriter { inner, crc: 0, bytes: 0, sha }
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = pgmoneta_crypto::crc32c_append(self.crc, &buf[..n]);
        if let Some(h) = &mut self.sha {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The plain name of a stored file and how it is stored: `(name, compression, encrypted)`.
pub fn stored_form(name: &str) -> (&str, Algorithm, bool) {
    let (rest, encrypted) = match name.strip_suffix(AES_SUFFIX) {
        Some(r) => (r, true),
        None => (name, false),
    };
    for a in Algorithm::COMPRESSING {
        if let Some(plain) = rest.strip_suffix(a.suffix()) {
            return (plain, a, encrypted);
        }
    }
    (rest, Algorithm::None, encrypted)
}

/// Like [`stored_form`], for a file of a backup whose files are stored with `algorithm` and,
/// when `encrypted`, encryption: only that whole suffix is taken off, so a file of the data
/// directory that is itself named `*.gz` (say) keeps its name and its bytes.
pub fn stored_form_for(name: &str, algorithm: Algorithm, encrypted: bool) -> (&str, Algorithm, bool) {
    let suffix = format!("{}{}", algorithm.suffix(), if encrypted { AES_SUFFIX } else { "" });
    match name.strip_suffix(suffix.as_str()) {
        Some(plain) if !suffix.is_empty() && !plain.is_empty() => (plain, algorithm, encrypted),
        _ => (name, Algorithm::None, false),
    }
}

/// How the files of `info` are stored: its compression algorithm and whether they are
/// encrypted; `None` for a compression code this program does not know (names decide then).
pub(crate) fn storage_of(info: &BackupInfo) -> Option<(Algorithm, bool)> {
    let compression = pgmoneta_compress::Compression::from_code(i32::from(info.compression)).ok()?;
    Some((compression.algorithm, info.encryption != 0))
}

/// The plain name and stored form of `name` in a backup stored as `storage` (see
/// [`storage_of`]).
pub(crate) fn form_in(name: &str, storage: Option<(Algorithm, bool)>) -> (&str, Algorithm, bool) {
    match storage {
        Some((algorithm, encrypted)) => stored_form_for(name, algorithm, encrypted),
        None => stored_form(name),
    }
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

/// Decrypts (when the name ends in `.aes`) and decompresses (by the name's suffix) the stored
/// bytes `raw` of `stored` into `out`, reading `raw` to its end. Returns the bytes written.
/// Nothing written is authenticated before this returns `Ok`: write into a temporary file.
///
/// # Errors
/// [`StorageError::Corrupt`] naming `stored` for damaged or truncated data and for a wrong key
/// (said as such: the tag is checked even when decompression fails first); a write failure
/// names `target`.
pub fn decode_stored(
    raw: &mut dyn Read,
    stored: &str,
    cipher: Option<Cipher>,
    key: Option<&MasterKey>,
    out: &mut dyn Write,
    target: &Path,
) -> Result<u64> {
    let name = stored.rsplit('/').next().unwrap_or(stored);
    let (_, algorithm, encrypted) = stored_form(name);
    decode_stored_as(raw, stored, (algorithm, encrypted), cipher, key, out, target)
}

/// [`decode_stored`] with the stored form given (compression, encrypted) rather than read
/// from the name.
///
/// # Errors
/// As [`decode_stored`].
pub fn decode_stored_as(
    raw: &mut dyn Read,
    stored: &str,
    (algorithm, encrypted): (Algorithm, bool),
    cipher: Option<Cipher>,
    key: Option<&MasterKey>,
    out: &mut dyn Write,
    target: &Path,
) -> Result<u64> {
    let result = if encrypted {
        let key =
            key.ok_or_else(|| StorageError::Invalid(format!("{stored} is encrypted and no master key was given")))?;
        let mut dec = DecryptReader::new(key, cipher.unwrap_or(Cipher::Aes256Gcm), raw, stored);
        let copied = Decoder::new(algorithm, BufReader::with_capacity(256 << 10, &mut dec))
            .map_err(CopyError::Decode)
            .and_then(|mut d| d.copy_to(out));
        match copied {
            // A decoding error on unauthenticated data: the tag says whether the key is wrong.
            Err(CopyError::Decode(e)) => Err(CopyError::Decode(dec.verify_rest().err().unwrap_or(e))),
            Err(e) => Err(e),
            Ok(n) => dec.verify_rest().map(|()| n).map_err(CopyError::Decode),
        }
    } else {
        Decoder::new(algorithm, BufReader::with_capacity(256 << 10, &mut *raw))
            .map_err(CopyError::Decode)
            .and_then(|mut d| d.copy_to(out))
            .and_then(|n| std::io::copy(raw, &mut std::io::sink()).map(|_| n).map_err(CopyError::Decode))
    };
    match result {
        Ok(n) => Ok(n),
        Err(CopyError::Decode(e)) => Err(StorageError::corrupt(stored, e.to_string())),
        Err(CopyError::Write(e)) => Err(StorageError::io("writing", target)(e)),
    }
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

/// Where a backup stores the file a manifest path names, suffixes included.
///
/// # Errors
/// [`StorageError::NotFound`] when the backup does not hold it.
pub(crate) fn stored_path(store: &dyn Store, server: &str, info: &BackupInfo, path: &str) -> Result<String> {
    let dir = layout::backup_dir(server, &info.label);
    let stored_parent = match path.strip_prefix("pg_tblspc/") {
        Some(rest) => {
            let (oid, inner) = rest.split_once('/').unwrap_or((rest, ""));
            let t = info
                .tablespaces
                .iter()
                .find(|t| t.oid == oid)
                .ok_or_else(|| StorageError::NotFound(format!("backup {} has no tablespace {oid}", info.label)))?;
            join(&[&dir, &t.dir, inner])
        }
        None => join(&[&dir, "data", path]),
    };
    let (parent, name) = stored_parent.rsplit_once('/').unwrap_or(("", &stored_parent));
    store
        .list(parent)?
        .into_iter()
        .find(|e| form_in(&e.name, storage_of(info)).0 == name)
        .map(|e| join(&[parent, &e.name]))
        .ok_or_else(|| StorageError::NotFound(format!("backup {} holds no {path}", info.label)))
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

fn free_space(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Restores a backup (see the module documentation).
///
/// # Errors
/// No such backup, not enough space, a damaged or truncated stored file, a wrong master key,
/// I/O failures. A failed restore removes what it wrote.
pub fn restore(store: &dyn Store, options: &RestoreOptions) -> Result<RestoreReport> {
    let target = RecoveryTarget::parse(&options.position)?;
    let backups = list_backups(store, &options.server)?;
    let info = select_backup(&backups, &options.backup, &target)?;
    let chain = chain_of(&backups, &info)?;
    let data_dir = options.directory.join(format!("{}-{}", options.server, info.label));
    // Refused before anything is written: a target this backup cannot reach, a directory
    // in the way, too little space.
    let wal = if target.target.is_some() || target.timeline.is_some() {
        store.list(&layout::wal_dir(&options.server))?
    } else {
        Vec::new()
    };
    crate::reach::Reach::of(&info, &wal).check(&target)?;
    let mut in_the_way = vec![data_dir.clone()];
    in_the_way.extend(info.tablespaces.iter().map(|t| tablespace_target(options, &info, &t.dir)));
    for dir in &in_the_way {
        let entries = match fs::read_dir(dir) {
            Ok(rd) => rd.count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StorageError::io("listing", dir)(e)),
        };
        if entries > 0 && !options.force {
            return Err(StorageError::NotEmpty { path: dir.clone(), entries });
        }
        if entries > 0 {
            log::warn!("restore: replacing the {entries} entries of {} (forced)", dir.display());
        }
    }
    fsio::create_dir_all(&options.directory)?;
    let needed = info.restore_size + options.workers.max(1) as u64 * info.biggest_file;
    if let Some(available) = free_space(&options.directory) {
        if available < needed {
            return Err(StorageError::NoSpace { path: options.directory.clone(), needed, available });
        }
    }
    fsio::remove_dir_all(&data_dir)?;
    let result = restore_into(store, options, &chain, &target, &data_dir, &wal);
    if result.is_err() {
        let _ = fsio::remove_dir_all(&data_dir);
        for t in &info.tablespaces {
            let _ = fsio::remove_dir_all(&tablespace_target(options, &info, &t.dir));
        }
    }
    result
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
        .map(|b| crate::ops::stored_files(store, server, b).map(|files| (b, files)))
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

fn restore_into(
    store: &dyn Store,
    options: &RestoreOptions,
    chain: &[BackupInfo],
    target: &RecoveryTarget,
    data_dir: &Path,
    wal: &[StoreEntry],
) -> Result<RestoreReport> {
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
    let errors: Mutex<Option<StorageError>> = Mutex::new(None);
    let (tx, rx) = unbounded::<FileJob>();
    for j in rest {
        let _ = tx.send(j);
    }
    drop(tx);
    std::thread::scope(|s| {
        for _ in 0..options.workers.max(1) {
            s.spawn(|| {
                for j in rx.iter() {
                    if errors.lock().expect("not poisoned").is_some() {
                        return;
                    }
                    let done = match &j.combine {
                        None => {
                            restore_checked(store, &j, expected.get(&j.manifest_path), cipher, key.as_deref(), false)
                        }
                        Some((path, versions)) => {
                            combine_file(store, path, versions, key.as_deref(), &options.directory, &j.target).map(
                                |(n, crc)| {
                                    results.lock().expect("not poisoned").insert(path.clone(), (n, crc));
                                    n
                                },
                            )
                        }
                    };
                    match done {
                        Ok(n) => {
                            let mut t = totals.lock().expect("not poisoned");
                            t.0 += 1;
                            t.1 += n;
                        }
                        Err(e) => {
                            errors.lock().expect("not poisoned").get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = errors.into_inner().expect("not poisoned") {
        return Err(e);
    }
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
        write_combined_metadata(store, &options.server, info, data_dir, &results.into_inner().expect("not poisoned"))?;
    }
    let copied_wal = options.copy_wal && target.target.is_some();
    if copied_wal {
        copy_archived_wal(store, options, info, wal, &data_dir.join("pg_wal"))?;
    }
    // Recovery settings.
    let has_settings =
        target.target.is_some() || target.replica || !target.other.is_empty() || target.timeline.is_some();
    if has_settings {
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
        let auto = data_dir.join("postgresql.auto.conf");
        let mut text = fs::read_to_string(&auto).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&settings);
        fsio::write_file(&auto, text.as_bytes())?;
        let signal = if target.replica { "standby.signal" } else { "recovery.signal" };
        fsio::write_file(&data_dir.join(signal), b"")?;
    }
    // Every file and directory written so far made durable at once, before pg_control.
    for w in &watches {
        w.sync()?;
    }
    let mut totals = totals.into_inner().expect("not poisoned");
    for j in last {
        totals.1 += restore_checked(store, &j, expected.get(&j.manifest_path), cipher, key.as_deref(), true)?;
        totals.0 += 1;
        if let Some(parent) = j.target.parent() {
            fsio::sync_dir(parent)?;
        }
    }
    fsio::set_mode(data_dir, 0o700)?;
    Ok(RestoreReport { info: info.clone(), data_dir: data_dir.to_owned(), files: totals.0, bytes: totals.1 })
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
    let mut w = CrcWriter::new(out, false);
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

/// Copies the archived WAL a recovery from `info` may need into `pg_wal`: every segment from
/// the backup's first one on, on its timeline and later ones, and every history file.
fn copy_archived_wal(
    store: &dyn Store,
    options: &RestoreOptions,
    info: &BackupInfo,
    wal: &[StoreEntry],
    pg_wal: &Path,
) -> Result<usize> {
    let stored_dir = layout::wal_dir(&options.server);
    fsio::create_dir_all(pg_wal)?;
    let first = info.wal.get(8..).unwrap_or_default().to_owned();
    let timeline = info.wal.get(..8).unwrap_or_default().to_owned();
    let cipher = Cipher::from_code(info.encryption);
    let mut copied = 0;
    for e in wal {
        if e.kind != EntryKind::File || e.name.ends_with(fsio::TEMP_SUFFIX) {
            continue;
        }
        let (plain, _, _) = stored_form(&e.name);
        let is_segment = plain.len() == 24 && plain.bytes().all(|b| b.is_ascii_hexdigit());
        let wanted = if is_segment {
            // Names compare as numbers: fixed width, upper-case hex.
            plain[8..] >= *first.as_str() && plain[..8] >= *timeline.as_str()
        } else {
            plain.ends_with(".history")
        };
        if !wanted {
            continue;
        }
        let mut raw = store.open(&join(&[&stored_dir, &e.name]))?;
        let target = pg_wal.join(plain);
        let mut out = fsio::AtomicFile::create(&target)?;
        decode_stored(
            &mut raw,
            &join(&[&stored_dir, &e.name]),
            cipher,
            options.master_key.as_deref(),
            &mut out,
            &target,
        )?;
        out.commit_with(false)?;
        copied += 1;
    }
    fsio::sync_dir(pg_wal)?;
    Ok(copied)
}

/// The result of verifying one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileVerification {
    /// The path, as in the manifest.
    pub path: String,
    /// The SHA-512 `backup.manifest` records.
    pub expected: String,
    /// The SHA-512 of the restored bytes (empty when the file could not be read).
    pub computed: String,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Verifies a backup without writing anything, on `workers` threads:
///
/// - every file `backup.manifest` lists is decrypted and decompressed and its SHA-512 compared
///   (a file that does not decrypt or decompress is reported as such);
/// - every file `backup.sha512` lists is compared as stored (compressed, encrypted), which
///   covers `backup.info`, `backup.manifest` and the backup's WAL.
///
/// Returns the failed files and all files; paths are those of the manifest for data files and
/// relative to the backup directory otherwise.
///
/// # Errors
/// No such backup, or its `backup.manifest` missing or unreadable. Damaged files are reported
/// in the result, not as errors.
pub fn verify(
    store: &dyn Store,
    server: &str,
    label: &str,
    master_key: Option<&MasterKey>,
    workers: usize,
) -> Result<(Vec<FileVerification>, Vec<FileVerification>)> {
    verify_in(store, server, &list_backups(store, server)?, label, master_key, workers)
}

/// [`verify`] with the server's backups already listed ([`list_backups`]), for a caller that
/// verifies many of them.
///
/// # Errors
/// As [`verify`].
pub fn verify_in(
    store: &dyn Store,
    server: &str,
    backups: &[BackupInfo],
    label: &str,
    master_key: Option<&MasterKey>,
    workers: usize,
) -> Result<(Vec<FileVerification>, Vec<FileVerification>)> {
    let info = backups
        .iter()
        .find(|b| b.label == label)
        .ok_or_else(|| StorageError::NotFound(format!("no backup {label} of {server}")))?;
    let dir = layout::backup_dir(server, label);
    let manifest = crate::ops::load_manifest(store, server, label)?;
    let sums = crate::ops::load_sums(store, server, label)?.unwrap_or_default();
    // Where each manifest path is stored.
    let stored: BTreeMap<String, String> =
        crate::ops::stored_files(store, server, info)?.into_iter().map(|(p, f)| (p, f.path)).collect();
    let dir_prefix = format!("{dir}/");
    let relative = |st: &str| st.strip_prefix(&dir_prefix).unwrap_or(st).to_owned();
    // Stored files checked through the manifest pass; the others are hashed as stored.
    let covered: std::collections::BTreeSet<String> =
        manifest.files.keys().filter_map(|p| stored.get(p)).map(|st| relative(st)).collect();
    let cipher = Cipher::from_code(info.encryption);
    let storage = storage_of(info);
    let all = Mutex::new(Vec::new());
    enum Check {
        Plain(String, String),
        Stored(String, String),
    }
    let (tx, rx) = unbounded::<Check>();
    for (p, h) in &manifest.files {
        let _ = tx.send(Check::Plain(p.clone(), h.clone()));
    }
    for (p, h) in &sums.files {
        if !covered.contains(p) {
            let _ = tx.send(Check::Stored(p.clone(), h.clone()));
        }
    }
    drop(tx);
    let result = |path: String, expected: String, outcome: Result<String>| match outcome {
        Ok(h) if h == expected => FileVerification { path, expected, computed: h, error: None },
        Ok(h) => FileVerification { path, expected, computed: h, error: Some("checksum mismatch".into()) },
        Err(e) => FileVerification { path, expected, computed: String::new(), error: Some(e.to_string()) },
    };
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                for check in rx.iter() {
                    let v = match check {
                        Check::Plain(path, expected) => match stored.get(&path) {
                            None => FileVerification {
                                path,
                                expected,
                                computed: String::new(),
                                error: Some("missing".into()),
                            },
                            Some(st) => match hash_stored(store, st, storage, cipher, master_key) {
                                Ok((plain, raw)) => {
                                    let stored_expected = sums.files.get(&relative(st));
                                    let mut v = result(path, expected, Ok(plain));
                                    if v.error.is_none() && stored_expected.is_some_and(|e| *e != raw) {
                                        v.error = Some(format!("{} does not match backup.sha512", relative(st)));
                                    }
                                    v
                                }
                                Err(e) => result(path, expected, Err(e)),
                            },
                        },
                        Check::Stored(path, expected) => {
                            let outcome = hash_raw(store, &join(&[&dir, &path]));
                            result(path, expected, outcome)
                        }
                    };
                    all.lock().expect("not poisoned").push(v);
                }
            });
        }
    });
    let mut all = all.into_inner().expect("not poisoned");
    // An incremental backup is only restorable with its whole chain.
    if let Err(e) = chain_of(backups, info) {
        all.push(FileVerification {
            path: crate::info::BACKUP_INFO.to_owned(),
            expected: String::new(),
            computed: String::new(),
            error: Some(e.to_string()),
        });
    }
    all.sort_by(|a, b| a.path.cmp(&b.path));
    let failed = all.iter().filter(|v| v.error.is_some()).cloned().collect();
    Ok((failed, all))
}

/// The SHA-512 of a stored file's bytes as they are.
fn hash_raw(store: &dyn Store, stored: &str) -> Result<String> {
    let mut raw = HashingReader::new(store.open(stored)?, HashAlgorithm::Sha512);
    std::io::copy(&mut raw, &mut std::io::sink()).map_err(StorageError::io("reading", stored))?;
    Ok(raw.finish_hex().1)
}

/// The SHA-512 of a stored file's plain contents and of its stored bytes, in one streaming pass.
fn hash_stored(
    store: &dyn Store,
    stored: &str,
    storage: Option<(Algorithm, bool)>,
    cipher: Option<Cipher>,
    key: Option<&MasterKey>,
) -> Result<(String, String)> {
    let mut raw = HashingReader::new(store.open(stored)?, HashAlgorithm::Sha512);
    let mut sink = HashingWriter::new(std::io::sink(), HashAlgorithm::Sha512);
    let name = stored.rsplit('/').next().unwrap_or(stored);
    let (_, algorithm, encrypted) = form_in(name, storage);
    decode_stored_as(&mut raw, stored, (algorithm, encrypted), cipher, key, &mut sink, Path::new(stored))?;
    Ok((sink.finish_hex().1, raw.finish_hex().1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_like_upstream() {
        let t = RecoveryTarget::parse("lsn=0/3000060,inclusive=off,timeline=current,action=promote").unwrap();
        assert_eq!(t.target, Some(TargetKind::Lsn("0/3000060".parse().unwrap())));
        assert_eq!(t.inclusive, Some(false));
        let s = t.settings(Some("cmd %f %p"), None, None);
        assert!(s.contains("restore_command = 'cmd %f %p'\n"), "{s}");
        assert!(s.contains("recovery_target_lsn = '0/3000060'\n") && s.contains("recovery_target_inclusive = off\n"));
        assert!(s.contains("recovery_target_action = 'promote'\n"));
        let t = RecoveryTarget::parse("name=before it's gone,replica").unwrap();
        assert!(t.replica);
        let s = t.settings(Some("c"), Some("host=h port=5432"), Some("slot"));
        assert!(s.contains("recovery_target_name = 'before it''s gone'\n"), "{s}");
        assert!(s.contains("primary_slot_name = 'slot'\n"));
        assert_eq!(RecoveryTarget::parse("current").unwrap().target, Some(TargetKind::Immediate));
        for bad in ["lsn=0/1,xid=5", "xid=abc", "lsn=zz", "inclusive=maybe", "frobnicate", "action=explode"] {
            assert!(RecoveryTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backup_selection() {
        let b = |label: &str, valid: bool, end: &str, tli: u32| BackupInfo {
            label: label.into(),
            valid,
            end_lsn: end.parse().unwrap(),
            start_timeline: tli,
            ..BackupInfo::default()
        };
        let all = [
            b("20261101000000", true, "0/1000000", 1),
            b("20261110000000", true, "0/5000000", 1),
            b("20261115000000", false, "0/6000000", 2),
            b("20261120000000", true, "0/9000000", 2),
        ];
        let pick = |sel: &str, pos: &str| {
            select_backup(&all, &BackupSelector::parse(sel), &RecoveryTarget::parse(pos).unwrap()).map(|i| i.label)
        };
        assert_eq!(pick("oldest", "").unwrap(), "20261101000000");
        assert_eq!(pick("newest", "").unwrap(), "20261120000000");
        assert_eq!(pick("latest", "").unwrap(), "20261120000000");
        assert_eq!(pick("newest", "lsn=0/6000000").unwrap(), "20261110000000");
        assert_eq!(pick("newest", "time=2026-11-15 12:00:00").unwrap(), "20261110000000");
        assert_eq!(pick("newest", "time=2026-11-20").unwrap(), "20261120000000");
        assert_eq!(pick("newest", "timeline=1").unwrap(), "20261110000000");
        assert_eq!(pick("20261101000000", "lsn=0/9000000").unwrap(), "20261101000000");
        assert!(pick("20261115000000", "").is_err(), "an invalid backup is never restored");
        assert!(pick("newest", "lsn=0/100").is_err());
        assert!(pick("newest", "timeline=3").is_err());
    }

    #[test]
    fn stored_names() {
        assert_eq!(stored_form("16384.zstd.aes"), ("16384", Algorithm::Zstd, true));
        assert_eq!(stored_form("PG_VERSION.gz"), ("PG_VERSION", Algorithm::Gzip, false));
        assert_eq!(stored_form("backup_label"), ("backup_label", Algorithm::None, false));
        assert_eq!(stored_form("x.bz2"), ("x", Algorithm::Bzip2, false));
    }
}
