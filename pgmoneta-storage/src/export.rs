//! `archive` (a backup restored and written as one tar file, compressed and encrypted as the
//! backup is) and hot standbys (a plain copy of the newest backup kept up to date after each
//! backup, copying only what changed).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pgmoneta_compress::Compression;
use pgmoneta_crypto::{Cipher, MasterKey, AES_SUFFIX};

use crate::catalog::{load_info, load_manifest, BackupSelector, Catalog};
use crate::error::{Result, StorageError};
use crate::fsio;
use crate::layout;
use crate::ops::NEVER_LINKED;
use crate::restore::{restore, RestoreOptions};
use crate::store::{join, Store};
use crate::tar::TarWriter;

/// Options of [`archive`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ArchiveOptions {
    /// The server.
    pub server: String,
    /// The backup.
    pub backup: BackupSelector,
    /// Where the archive is written, as `archive-<server>-<label>.tar<suffixes>`.
    pub directory: PathBuf,
    /// Worker threads for the restore.
    pub workers: usize,
    /// The master key, for encrypted backups (the archive is encrypted with it too).
    pub master_key: Option<std::sync::Arc<MasterKey>>,
    /// Compression level for the archive.
    pub level: i32,
    /// Replace what is in the way of the restore the archive is made from (see
    /// [`RestoreOptions::force`]).
    pub force: bool,
}

impl ArchiveOptions {
    /// Options archiving `backup` of `server` into `directory`.
    pub fn new(server: &str, backup: BackupSelector, directory: impl Into<PathBuf>) -> ArchiveOptions {
        ArchiveOptions {
            server: server.to_owned(),
            backup,
            directory: directory.into(),
            workers: 1,
            master_key: None,
            level: 0,
            force: false,
        }
    }
}

fn tar_tree<W: Write>(tar: &mut TarWriter<W>, root: &Path, name: &str) -> Result<()> {
    let mut stack = vec![(root.to_owned(), PathBuf::from(name))];
    while let Some((dir, rel)) = stack.pop() {
        let meta = fs::metadata(&dir).map_err(StorageError::io("inspecting", &dir))?;
        tar.append_dir(&rel, meta.mode() & 0o7777, meta.mtime()).map_err(StorageError::io("archiving", &dir))?;
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(StorageError::io("listing", &dir))?
            .collect::<std::io::Result<_>>()
            .map_err(StorageError::io("listing", &dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let meta = fs::symlink_metadata(&path).map_err(StorageError::io("inspecting", &path))?;
            let rel = rel.join(e.file_name());
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).map_err(StorageError::io("reading link", &path))?;
                tar.append_symlink(&rel, target, meta.mtime()).map_err(StorageError::io("archiving", &path))?;
            } else if meta.is_dir() {
                stack.push((path, rel));
            } else {
                let f = File::open(&path).map_err(StorageError::io("opening", &path))?;
                tar.append_file(&rel, meta.mode() & 0o7777, meta.mtime(), meta.len(), f)
                    .map_err(StorageError::io("archiving", &path))?;
            }
        }
    }
    Ok(())
}

/// Restores a backup next to the archive, writes the tar (data directory and tablespaces, as
/// the restore lays them out) through the backup's compression and encryption, and removes the
/// restored copy. Returns the archive's path.
///
/// # Errors
/// As [`restore`], and I/O failures; a partial archive is never left under its name.
pub fn archive(store: &dyn Store, options: &ArchiveOptions) -> Result<PathBuf> {
    let mut ropts = RestoreOptions::new(&options.server, options.backup.clone(), &options.directory);
    ropts.workers = options.workers;
    ropts.master_key = options.master_key.clone();
    ropts.force = options.force;
    let report = restore(store, &ropts)?;
    let info = report.info;
    let compression = Compression::from_code(i32::from(info.compression)).unwrap_or(Compression::NONE);
    let cipher = Cipher::from_code(info.encryption);
    let mut name = format!("archive-{}-{}.tar{}", options.server, info.label, compression.algorithm.suffix());
    if cipher.is_some() {
        name.push_str(AES_SUFFIX);
    }
    let target = options.directory.join(&name);
    let data_name = format!("{}-{}", options.server, info.label);
    let mut trees = vec![(report.data_dir.clone(), data_name.clone())];
    for t in &info.tablespaces {
        let n = format!("{data_name}-{}", t.dir);
        trees.push((options.directory.join(&n), n));
    }
    let result = (|| -> Result<()> {
        let mut out = fsio::AtomicFile::create(&target)?;
        let encryption = match cipher {
            Some(c) => Some((
                c,
                options.master_key.as_deref().ok_or_else(|| {
                    StorageError::Invalid("the backup is encrypted and no master key was given".into())
                })?,
            )),
            None => None,
        };
        let level = options.level.max(compression.algorithm.fastest_level());
        fsio::write_sealed(&mut out, compression.algorithm, level, encryption, &target, &mut |w| {
            let mut tar = TarWriter::new(w);
            for (dir, n) in &trees {
                tar_tree(&mut tar, dir, n)?;
            }
            tar.finish().map(|_| ()).map_err(StorageError::io("writing", &target))
        })?;
        out.commit().map(|_| ())
    })();
    for (dir, _) in &trees {
        let _ = fsio::remove_dir_all(dir);
    }
    result.map(|()| target)
}

/// Options of [`update_hot_standby`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HotStandbyOptions {
    /// The server.
    pub server: String,
    /// The hot standby directory; the copy is `<directory>/<server>`.
    pub directory: PathBuf,
    /// Tablespace targets by OID or original path; others go to their original path + `hs`.
    pub tablespace_map: BTreeMap<String, PathBuf>,
    /// The master key, for encrypted backups.
    pub master_key: Option<std::sync::Arc<MasterKey>>,
    /// Worker threads.
    pub workers: usize,
    /// `hot_standby_overrides`: a directory whose files are copied over the copy after every
    /// update (`standby.signal`, a `postgresql.auto.conf` for the standby...). A directory that
    /// does not exist is no overrides, as upstream treats it.
    pub overrides: Option<PathBuf>,
}

impl HotStandbyOptions {
    /// Options keeping `<directory>/<server>` up to date.
    pub fn new(server: &str, directory: impl Into<PathBuf>) -> HotStandbyOptions {
        HotStandbyOptions {
            server: server.to_owned(),
            directory: directory.into(),
            tablespace_map: BTreeMap::new(),
            master_key: None,
            workers: 1,
            overrides: None,
        }
    }
}

/// Brings `<directory>/<server>` up to date with the newest valid backup: when it holds the
/// previous backup, only files whose SHA-512 changed, files added and files removed are
/// handled (and pg_control, the configuration and `backup_label` always copied); otherwise it
/// is replaced by a full copy. Returns the number of files written.
///
/// # Errors
/// No valid backup, storage and I/O failures.
pub fn update_hot_standby(store: &dyn Store, options: &HotStandbyOptions) -> Result<usize> {
    let catalog = Catalog::load(store, &options.server)?;
    let newest = catalog
        .find(&BackupSelector::Newest)
        .ok_or_else(|| StorageError::NotFound(format!("no valid backup of {}", options.server)))?;
    let dest = options.directory.join(&options.server);
    let marker = options.directory.join(format!(".{}.label", options.server));
    let previous = fs::read_to_string(&marker).ok().map(|s| s.trim().to_owned());
    let previous = previous.filter(|p| dest.is_dir() && catalog.valid().any(|b| &b.label == p) && p != &newest.label);
    // An incremental backup updates the copy in place only when the copy holds its parent.
    let previous =
        previous.filter(|p| newest.backup_type != crate::info::BackupType::Incremental || *p == newest.parent);
    // Until the update completes, the copy is no backup's: a failure leads to a full copy.
    let _ = fs::remove_file(&marker);
    let written = match previous {
        Some(prev) => incremental_update(store, options, &prev, &newest.label, &dest)?,
        None => {
            // A full copy, through a restore into the hot standby directory.
            let mut ropts =
                RestoreOptions::new(&options.server, BackupSelector::Label(newest.label.clone()), &options.directory);
            ropts.workers = options.workers;
            ropts.master_key = options.master_key.clone();
            let report = restore(store, &ropts)?;
            fsio::remove_dir_all(&dest)?;
            fs::rename(&report.data_dir, &dest).map_err(StorageError::io("renaming", &report.data_dir))?;
            remap_tablespaces(options, newest, &dest)?;
            report.files
        }
    };
    let overridden = match options.overrides.as_deref().filter(|o| o.is_dir()) {
        Some(dir) => copy_overrides(dir, &dest)?,
        None => 0,
    };
    fsio::write_file(&marker, newest.label.as_bytes())?;
    Ok(written + overridden)
}

/// Copies every file under `from` to the same relative path under `to`, replacing what is
/// there (each file through a temporary name); returns the number of files copied.
fn copy_overrides(from: &Path, to: &Path) -> Result<usize> {
    let mut copied = 0;
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let src_dir = from.join(&rel);
        fsio::create_dir_all(&to.join(&rel))?;
        for entry in fs::read_dir(&src_dir).map_err(StorageError::io("reading", &src_dir))? {
            let entry = entry.map_err(StorageError::io("reading", &src_dir))?;
            let name = rel.join(entry.file_name());
            let kind = entry.file_type().map_err(StorageError::io("reading", &entry.path()))?;
            if kind.is_dir() {
                dirs.push(name);
            } else {
                let data = fs::read(entry.path()).map_err(StorageError::io("reading", &entry.path()))?;
                fsio::write_file(&to.join(&name), &data)?;
                copied += 1;
            }
        }
    }
    Ok(copied)
}

/// Moves the restored tablespaces to their hot standby locations and points the links there.
fn remap_tablespaces(options: &HotStandbyOptions, info: &crate::info::BackupInfo, dest: &Path) -> Result<()> {
    for t in &info.tablespaces {
        let restored = options.directory.join(format!("{}-{}-{}", options.server, info.label, t.dir));
        let target = options
            .tablespace_map
            .get(&t.oid)
            .or_else(|| options.tablespace_map.get(&t.path))
            .cloned()
            .unwrap_or_else(|| PathBuf::from(format!("{}hs", t.path)));
        fsio::remove_dir_all(&target)?;
        if let Some(parent) = target.parent() {
            fsio::create_dir_all(parent)?;
        }
        fs::rename(&restored, &target).map_err(StorageError::io("moving the tablespace to", &target))?;
        let link = dest.join("pg_tblspc").join(&t.oid);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).map_err(StorageError::io("creating tablespace link", &link))?;
    }
    Ok(())
}

fn incremental_update(
    store: &dyn Store,
    options: &HotStandbyOptions,
    prev: &str,
    newest: &str,
    dest: &Path,
) -> Result<usize> {
    let (old, new) = (load_manifest(store, &options.server, prev)?, load_manifest(store, &options.server, newest)?);
    let info = load_info(store, &options.server, newest)?;
    // Where each file is stored, from one listing per directory.
    let files = crate::catalog::stored_files(store, &options.server, &info)?;
    let stored_path = |path: &str| {
        files
            .get(path)
            .map(|f| f.path.as_str())
            .ok_or_else(|| StorageError::NotFound(format!("backup {newest} holds no {path}")))
    };
    let mut written = 0;
    for (path, hash) in &new.files {
        if let Some(plain) = crate::incremental::plain_path(path) {
            // The copy holds the parent: the increment applies in place.
            let stored = stored_path(path)?;
            let target = dest.join(&plain);
            crate::incremental::apply_in_place(
                store,
                stored,
                Cipher::from_code(info.encryption),
                options.master_key.as_deref(),
                &target,
            )?;
            written += 1;
            continue;
        }
        if old.files.get(path) == Some(hash) && !NEVER_LINKED.contains(&path.as_str()) {
            continue;
        }
        let target = dest.join(path);
        if let Some(parent) = target.parent() {
            fsio::create_dir_all(parent)?;
        }
        crate::restore::restore_stored(store, &info, stored_path(path)?, &target, options.master_key.as_deref())?;
        written += 1;
    }
    // The WAL the new backup needs replaces the old backup's (the manifests do not list WAL).
    let wal = dest.join("pg_wal");
    for e in fs::read_dir(&wal).map_err(StorageError::io("listing", &wal))? {
        let e = e.map_err(StorageError::io("listing", &wal))?;
        if e.file_type().map_err(StorageError::io("inspecting", e.path()))?.is_file() {
            fs::remove_file(e.path()).map_err(StorageError::io("removing", e.path()))?;
        }
    }
    let stored_wal = join(&[&layout::backup_dir(&options.server, newest), "data", "pg_wal"]);
    for e in store.list(&stored_wal)? {
        if e.kind == crate::store::EntryKind::Dir {
            continue;
        }
        let plain = crate::stored::stored_form(&e.name).0;
        let target = dest.join("pg_wal").join(plain);
        crate::restore::restore_stored(
            store,
            &info,
            &join(&[&stored_wal, &e.name]),
            &target,
            options.master_key.as_deref(),
        )?;
        written += 1;
    }
    // A plain data directory: no incremental lines in its backup_label.
    let label_path = dest.join("backup_label");
    if let Ok(text) = fs::read_to_string(&label_path) {
        if text.contains("INCREMENTAL FROM") {
            fsio::write_file(&label_path, crate::restore::combined_label(&text).as_bytes())?;
        }
    }
    // Files of the old backup that the new one no longer has, both named as plain files.
    let plain = |p: &String| crate::incremental::plain_path(p).unwrap_or_else(|| p.clone());
    let new_plain: std::collections::BTreeSet<String> = new.files.keys().map(plain).collect();
    let gone: Vec<String> = old.files.keys().map(plain).filter(|p| !new_plain.contains(p)).collect();
    for path in &gone {
        let target = dest.join(path);
        match fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("removing", &target)(e)),
        }
    }
    Ok(written)
}
