//! Operations on stored backups: linking unchanged files to the previous backup, deletion with
//! relinking, retain and expunge, annotations, and retention applied from a plan.
//!
//! Links always point at a real file (never at another link), so that a backup holds either a
//! file or a link one step from it. Deleting a backup moves each of its files that newer
//! backups link to into the oldest of them, in an order that keeps every other backup
//! restorable at each step: the other links are first pointed at the new home (through its
//! link, which still leads to the file), then the file is renamed over that link.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgmoneta_compress::Compression;
use pgmoneta_crypto::{Cipher, HashAlgorithm, MasterKey};

use crate::catalog::{list_backups, load_info, load_manifest, load_sums, read_text, stored_files, StoredFile};
use crate::error::{Result, StorageError};
use crate::info::{BackupInfo, BackupType, BACKUP_INFO};
use crate::layout;
use crate::manifest::{
    BackupManifest, ManifestAlgorithm, ManifestChecksum, Sha512Sums, BACKUP_MANIFEST, BACKUP_SHA512,
};
use crate::retention::RetentionPlan;
use crate::store::{join, EntryKind, Store};
use crate::stored::stored_form;

/// Files never linked and always copied to a hot standby: they are what a restored cluster is
/// configured and started from.
pub(crate) const NEVER_LINKED: [&str; 5] =
    ["global/pg_control", "postgresql.conf", "pg_hba.conf", "backup_label", "tablespace_map"];

/// Writes a backup's `backup.info` (atomically), then its entry in `backup.sha512`, as
/// upstream does. A crash between the two leaves a valid backup whose `backup.info` entry is
/// stale: verification then names `backup.info`.
///
/// # Errors
/// Storage failures.
pub fn save_info(store: &dyn Store, server: &str, info: &BackupInfo) -> Result<()> {
    let dir = layout::backup_dir(server, &info.label);
    let text = info.to_text();
    store.write(&join(&[&dir, BACKUP_INFO]), text.as_bytes())?;
    if let Some(mut sums) = load_sums(store, server, &info.label)? {
        sums.files.insert(
            BACKUP_INFO.to_owned(),
            pgmoneta_crypto::digest_hex(pgmoneta_crypto::HashAlgorithm::Sha512, text.as_bytes()),
        );
        store.write(&join(&[&dir, BACKUP_SHA512]), sums.to_text().as_bytes())?;
    }
    Ok(())
}

/// The directory of a repository path.
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// The repository path a stored file resolves to (following at most one link).
fn resolve(store: &dyn Store, path: &str) -> Result<String> {
    Ok(store.read_link(path)?.unwrap_or_else(|| path.to_owned()))
}

/// Whether a file of a data directory may be a link to another backup's: not the files a
/// restored cluster is configured and started from, nor the increments of an incremental
/// backup.
fn linkable(path: &str) -> bool {
    !NEVER_LINKED.contains(&path) && !path.rsplit('/').next().is_some_and(|n| n.starts_with("INCREMENTAL."))
}

/// The storage suffixes of a stored file's name (`.zstd.aes`, or empty).
fn storage_suffix(stored: &str) -> &str {
    let name = stored.rsplit('/').next().unwrap_or(stored);
    &name[stored_form(name).0.len()..]
}

/// What the unchanged files of a new backup link to: the newest older valid backup of the same
/// major version whose data the store holds, with its files' checksums and where they are
/// stored, read once for the whole backup.
#[derive(Debug)]
pub(crate) struct LinkBase {
    /// The backup linked to.
    pub(crate) previous: BackupInfo,
    /// Its files' plain checksums (in the new backup's algorithm), by manifest path.
    manifest: BackupManifest,
    /// Its stored files, by manifest path.
    files: BTreeMap<String, StoredFile>,
    /// Its stored files' SHA-512s (`backup.sha512`), relative to its directory.
    sums: Sha512Sums,
    /// Its directory with a trailing `/`.
    dir_prefix: String,
}

impl LinkBase {
    /// The backup the files of `info` (a backup being written: its label, major version and
    /// storage) link to; `None` when there is none.
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) fn find(store: &dyn Store, server: &str, info: &BackupInfo) -> Result<Option<LinkBase>> {
        let backups = list_backups(store, server)?;
        let Some(previous) = backups.into_iter().rev().find(|b| {
            b.label < info.label
                && b.valid
                && b.major_version == info.major_version
                && store.holds(&layout::data_dir(server, &b.label))
        }) else {
            return Ok(None);
        };
        // Stored another way, no file can share its bytes: nothing to read. Checksummed
        // another way, no file's checksum can be compared: the first backup after a change of
        // the `manifest` setting is stored whole.
        if crate::stored::storage_of(&previous) != crate::stored::storage_of(info) || previous.manifest != info.manifest
        {
            return Ok(None);
        }
        Ok(Some(LinkBase {
            manifest: load_manifest(store, server, &previous.label)?,
            files: stored_files(store, server, &previous)?,
            sums: load_sums(store, server, &previous.label)?.unwrap_or_default(),
            dir_prefix: format!("{}/", layout::backup_dir(server, &previous.label)),
            previous,
        }))
    }

    /// The previous backup's plain SHA-512 of the file at manifest path `path` and its stored
    /// file, when a new file stored at `stored` could link to it (a linkable file, stored the
    /// same way: only then can they share bytes).
    pub(crate) fn candidate(&self, path: &str, stored: &str) -> Option<(&String, &StoredFile)> {
        if !linkable(path) {
            return None;
        }
        let old = self.files.get(path)?;
        if storage_suffix(&old.path) != storage_suffix(stored) {
            return None;
        }
        Some((self.manifest.files.get(path)?, old))
    }

    /// The SHA-512 of the stored bytes of `old`, as its backup recorded them.
    pub(crate) fn stored_sha512(&self, old: &StoredFile) -> Option<&String> {
        self.sums.files.get(old.path.strip_prefix(&self.dir_prefix)?)
    }

    /// The real file a link to `old` points at, when this store holds it.
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) fn target(&self, store: &dyn Store, old: &StoredFile) -> Result<Option<String>> {
        let target = if old.link { resolve(store, &old.path)? } else { old.path.clone() };
        Ok(store.holds(&target).then_some(target))
    }
}

/// What [`link_backup`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkReport {
    /// The backup linked to.
    pub previous: Option<String>,
    /// The linked files, relative to the backup directory (`data/base/1/1259.zstd`).
    pub linked: Vec<String>,
    /// Bytes no longer stored twice.
    pub saved: u64,
    /// The SHA-512 of the stored bytes each linked file now reaches, as the backup linked to
    /// recorded them, by the same paths as `linked`.
    pub stored_sha512: BTreeMap<String, String>,
}

/// Replaces each file of the backup `info` describes that is unchanged since the newest older
/// valid backup of the same major version (same checksum in the same algorithm, same storage
/// suffixes) with a link to that backup's file. `info` need not be saved yet: a new backup is
/// linked before its `backup.info` is written.
///
/// # Errors
/// Storage failures.
pub fn link_backup(store: &dyn Store, server: &str, info: &BackupInfo) -> Result<LinkReport> {
    match LinkBase::find(store, server, info)? {
        Some(base) => link_to(store, server, info, &base),
        None => Ok(LinkReport::default()),
    }
}

/// [`link_backup`] to the backup `base` describes.
///
/// # Errors
/// Storage failures.
pub(crate) fn link_to(store: &dyn Store, server: &str, info: &BackupInfo, base: &LinkBase) -> Result<LinkReport> {
    let label = info.label.as_str();
    let new_manifest = load_manifest(store, server, label)?;
    let new_files = stored_files(store, server, info)?;
    let dir_prefix = format!("{}/", layout::backup_dir(server, label));
    let mut report = LinkReport { previous: Some(base.previous.label.clone()), ..LinkReport::default() };
    // Directories whose entries changed: each made durable once, at the end.
    let mut touched: BTreeSet<&str> = BTreeSet::new();
    // What each unchanged file links to.
    let mut links: Vec<(String, &StoredFile)> = Vec::new();
    for (path, hash) in &new_manifest.files {
        let Some(new) = new_files.get(path).filter(|f| !f.link) else { continue };
        let Some(old) = base.candidate(path, &new.path).filter(|(h, _)| *h == hash).map(|(_, old)| old) else {
            continue;
        };
        if let Some(target) = base.target(store, old)? {
            if let Some(sha) = base.stored_sha512(old) {
                let rel = new.path.strip_prefix(&dir_prefix).unwrap_or(&new.path).to_owned();
                report.stored_sha512.insert(rel, sha.clone());
            }
            links.push((target, new));
        }
    }
    // Each link is made under a temporary name, then renamed over its file: the path always
    // resolves. All links first, then all renames: ext4 passes over inodes freed within the
    // last minute when it looks for a free one, so creating links while the renames free the
    // files' inodes would make each new link search past all the inodes freed before it.
    let mut made: Vec<(String, &StoredFile)> = Vec::with_capacity(links.len());
    for (target, new) in &links {
        let temp = format!("{}.link{}", new.path, crate::fsio::TEMP_SUFFIX);
        if let Err(e) = store.symlink(target, &temp) {
            for (temp, _) in &made {
                let _ = store.remove_unsynced(temp);
            }
            return Err(e);
        }
        made.push((temp, *new));
    }
    for (temp, new) in made {
        pgmoneta_core::crash::point("backup:linking");
        store.rename_unsynced(&temp, &new.path)?;
        touched.insert(parent_of(&new.path));
        report.linked.push(new.path.strip_prefix(&dir_prefix).unwrap_or(&new.path).to_owned());
        report.saved += new.size;
    }
    for dir in touched {
        store.sync_dir(dir)?;
    }
    Ok(report)
}

/// Bytes stored as real files (not links) by a backup.
fn stored_bytes(store: &dyn Store, dir: &str) -> Result<u64> {
    let mut total = 0;
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in store.list(&d)? {
            match e.kind {
                EntryKind::Dir => dirs.push(join(&[&d, &e.name])),
                EntryKind::File => total += e.size,
                EntryKind::Symlink => {}
            }
        }
    }
    Ok(total)
}

/// How to delete a backup.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeleteOptions {
    /// Delete a backup with the keep flag too.
    pub force: bool,
    /// The master key, to roll an encrypted backup into its child.
    pub master_key: Option<Arc<MasterKey>>,
    /// Where a roll-up may put a temporary file.
    pub workspace: PathBuf,
}

impl Default for DeleteOptions {
    fn default() -> DeleteOptions {
        DeleteOptions { force: false, master_key: None, workspace: std::env::temp_dir() }
    }
}

/// Deletes a backup (see [`delete_backup_with`]) without a master key.
///
/// # Errors
/// As [`delete_backup_with`].
pub fn delete_backup(store: &dyn Store, server: &str, label: &str, force: bool) -> Result<()> {
    delete_backup_with(store, server, label, &DeleteOptions { force, ..DeleteOptions::default() })
}

/// Deletes a backup. A backup with an incremental child is first rolled up into it
/// ([`roll_up`]): the child then holds everything it needed from this backup, and every other
/// backup of the chain stays restorable. Files that newer backups link to move into the oldest
/// of them. A backup with the keep flag is refused unless `force`.
///
/// # Errors
/// No such backup, kept, a failed roll-up (the backup is then kept), storage failures.
pub fn delete_backup_with(store: &dyn Store, server: &str, label: &str, options: &DeleteOptions) -> Result<()> {
    let force = options.force;
    let mut backups = list_backups(store, server)?;
    let dir = layout::backup_dir(server, label);
    let Some(info) = backups.iter().find(|b| b.label == label) else {
        if store.exists(&dir) {
            // An incomplete backup (no backup.info): nothing can depend on it.
            return store.remove(&dir);
        }
        return Err(StorageError::NotFound(format!("no backup {label} of server {server}")));
    };
    if info.keep && !force {
        return Err(StorageError::Retained { label: label.to_owned() });
    }
    let children: Vec<&BackupInfo> =
        backups.iter().filter(|b| b.backup_type == BackupType::Incremental && b.parent == label).collect();
    if let Some(bad) = children.iter().find(|c| !c.valid) {
        return Err(StorageError::Invalid(format!(
            "backup {label} has an incremental child, {}, that is not valid (an interrupted roll-up leaves it so): \
             delete {} first",
            bad.label, bad.label
        )));
    }
    if let Some(child) = children.first() {
        roll_up(store, server, info, child, options.master_key.as_deref(), &options.workspace)?;
        // The child no longer needs this backup; should its deletion stop half-way, what is
        // left is no one's parent and no one's child.
        let mut left = info.clone();
        left.valid = false;
        left.parent = String::new();
        save_info(store, server, &left)?;
        backups = list_backups(store, server)?;
    }
    // From here on the delete is decided: should it stop half-way, the next start-up finishes
    // it (see [`cleanup_incomplete`]).
    store.write(&join(&[&dir, DELETING]), label.as_bytes())?;
    let prefix = format!("{dir}/");
    let mut gained: BTreeSet<String> = BTreeSet::new();
    let mut relinked: BTreeSet<String> = BTreeSet::new();
    // For each file of this backup, the links to it in newer backups, oldest first.
    let mut links: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Only backups whose data is here can hold links.
    for other in backups.iter().filter(|b| b.label != label && store.holds(&layout::data_dir(server, &b.label))) {
        for file in stored_files(store, server, other)?.into_values() {
            if !file.link {
                continue;
            }
            if let Some(target) = store.read_link(&file.path)? {
                if target.starts_with(&prefix) {
                    links.entry(target).or_default().push(file.path);
                }
            }
        }
    }
    // Each file's new home is the oldest backup linking to it. First every other link is
    // pointed at that home (still a link to the file, so every path resolves throughout), and
    // made durable; only then are the files moved over their homes, and that made durable.
    let moves: Vec<(String, String)> = links
        .into_iter()
        .map(|(file, mut referrers)| {
            referrers.sort();
            let home = referrers.remove(0);
            for other in &referrers {
                let temp = format!("{other}.link{}", crate::fsio::TEMP_SUFFIX);
                store.symlink(&home, &temp)?;
                store.rename_unsynced(&temp, other)?;
                relinked.insert(parent_of(other).to_owned());
            }
            Ok((file, home))
        })
        .collect::<Result<_>>()?;
    for dir in std::mem::take(&mut relinked) {
        store.sync_dir(&dir)?;
    }
    // Files are about to leave the backup: should the delete stop before its end, it is no
    // longer listed as valid.
    if !moves.is_empty() {
        if let Some(mut left) = backups.iter().find(|b| b.label == label).filter(|b| b.valid).cloned() {
            left.valid = false;
            save_info(store, server, &left)?;
        }
    }
    for (file, home) in &moves {
        pgmoneta_core::crash::point("delete:moving");
        store.rename_unsynced(file, home)?;
        relinked.insert(parent_of(file).to_owned());
        relinked.insert(parent_of(home).to_owned());
        let home_label = home.trim_start_matches(&layout::backups_dir(server)).trim_start_matches('/');
        if let Some(l) = home_label.split('/').next() {
            gained.insert(l.to_owned());
        }
    }
    for dir in relinked {
        store.sync_dir(&dir)?;
    }
    // The backup stops being listed before its files go.
    pgmoneta_core::crash::point("delete:before-remove");
    store.remove(&join(&[&dir, BACKUP_INFO]))?;
    store.remove(&dir)?;
    for l in gained {
        let mut i = load_info(store, server, &l)?;
        i.backup_size = stored_bytes(store, &layout::backup_dir(server, &l))?;
        save_info(store, server, &i)?;
    }
    Ok(())
}

/// What rolling one file up wrote.
struct Rolled {
    /// Manifest path before and after.
    old_path: String,
    new_path: String,
    /// Stored path before and after (the new one under its temporary name until renamed).
    old_stored: String,
    new_stored: String,
    temp: String,
    plain_hash: String,
    stored_sha512: String,
    size: u64,
    crc: u32,
}

/// Rolls backup `parent` into its incremental child, so that the child no longer needs it:
///
/// - when `parent` is a full backup, each `INCREMENTAL.*` file of the child is combined with
///   the parent's version into a plain file, and the child becomes a full backup;
/// - when `parent` is itself incremental, each is merged with the parent's version into one
///   incremental file relative to the parent's parent (plain when the parent held the file
///   whole), and the child's parent becomes the grandparent.
///
/// New files are written under temporary names first; then the child is marked not valid,
/// files are renamed into place, its manifests and checksums rewritten, and it is marked valid
/// with its new type and parent. A crash in that last step leaves the child not valid (and
/// the parent untouched), never a child that restores to wrong data. Returns the child's new
/// `backup.info`.
///
/// # Errors
/// A child that is not `parent`'s, a damaged or missing file in either, an encrypted backup
/// without the master key, storage failures. Temporary files are removed on failure.
pub fn roll_up(
    store: &dyn Store,
    server: &str,
    parent: &BackupInfo,
    child: &BackupInfo,
    key: Option<&MasterKey>,
    workspace: &Path,
) -> Result<BackupInfo> {
    use crate::incremental::{combine, incremental_path, plain_path, ChainVersion, CombineOutput};
    if child.backup_type != BackupType::Incremental || child.parent != parent.label {
        return Err(StorageError::Invalid(format!(
            "backup {} is not an incremental child of {}",
            child.label, parent.label
        )));
    }
    let becomes_full = parent.backup_type == BackupType::Full;
    let child_dir = layout::backup_dir(server, &child.label);
    let child_files = stored_files(store, server, child)?;
    let parent_files = stored_files(store, server, parent)?;
    let algorithm = Compression::from_code(i32::from(child.compression))
        .map_or(pgmoneta_compress::Algorithm::None, |c| c.algorithm);
    let encryption = match Cipher::from_code(child.encryption) {
        Some(cipher) => {
            let key = key.ok_or_else(|| {
                StorageError::Invalid(format!(
                    "backup {} is encrypted: rolling it up needs the master key",
                    child.label
                ))
            })?;
            Some((cipher, Arc::new(key.clone())))
        }
        None => None,
    };
    let mut rolled: Vec<Rolled> = Vec::new();
    let cleanup = |rolled: &[Rolled]| {
        for r in rolled {
            let _ = store.remove(&r.temp);
        }
    };
    for (path, StoredFile { path: stored, .. }) in &child_files {
        let Some(plain) = plain_path(path) else { continue };
        let parent_version = match (parent_files.get(&plain), parent_files.get(&incremental_path(&plain))) {
            (Some(f), _) => Some((f.path.clone(), false)),
            (None, Some(f)) => Some((f.path.clone(), true)),
            (None, None) => None,
        };
        let full = parent.backup_type == BackupType::Full || parent_version.as_ref().is_some_and(|v| !v.1);
        let versions = [
            ChainVersion {
                label: child.label.clone(),
                stored: Some(stored.clone()),
                incremental: true,
                cipher: Cipher::from_code(child.encryption),
            },
            ChainVersion {
                label: parent.label.clone(),
                incremental: parent_version.as_ref().is_some_and(|v| v.1),
                stored: parent_version.map(|v| v.0),
                cipher: Cipher::from_code(parent.encryption),
            },
        ];
        let (new_path, output) =
            if full { (plain.clone(), CombineOutput::Full) } else { (path.clone(), CombineOutput::Incremental) };
        let name = stored.rsplit('/').next().unwrap_or(stored);
        let suffix = &name[stored_form(name).0.len()..];
        let dir = stored.rsplit_once('/').map_or("", |(d, _)| d);
        let new_name = new_path.rsplit('/').next().unwrap_or(&new_path);
        let new_stored = join(&[dir, &format!("{new_name}{suffix}")]);
        let temp = format!("{new_stored}.rollup{}", crate::fsio::TEMP_SUFFIX);
        let result = (|| -> Result<Rolled> {
            // Left by an interrupted roll-up, if any.
            store.remove_unsynced(&temp)?;
            // Made durable all at once before the switch below, not one by one.
            let w = store.create_unsynced(&temp)?;
            let sealed = crate::stored::seal(w, algorithm, 0, encryption.as_ref(), &temp)?;
            // The child's algorithm: the rest of its backup.manifest stays as it is.
            let stored_plain = algorithm == pgmoneta_compress::Algorithm::None && encryption.is_none();
            let sha512 = stored_plain && child.manifest != ManifestAlgorithm::Sha512;
            let mut tee = crate::stored::CrcWriter::new(sealed, Some(child.manifest), sha512);
            combine(store, &plain, &versions, key, output, workspace, &mut tee)?;
            let crate::stored::CrcWriter { inner, manifest, sha, crc, bytes } = tee;
            let plain_hash = manifest.map(ManifestChecksum::finish_hex).unwrap_or_default();
            let plain_sha512 = sha.map(pgmoneta_crypto::Hasher::finish_hex);
            let (w, _, stored_sha512) =
                crate::stored::unseal(inner, plain_sha512.as_deref().unwrap_or(&plain_hash), &temp)?;
            w.commit(false)?;
            Ok(Rolled {
                old_path: path.clone(),
                new_path: new_path.clone(),
                old_stored: stored.clone(),
                new_stored: new_stored.clone(),
                temp: temp.clone(),
                plain_hash,
                stored_sha512,
                size: bytes,
                crc,
            })
        })();
        match result {
            Ok(r) => rolled.push(r),
            Err(e) => {
                let _ = store.remove(&temp);
                cleanup(&rolled);
                return Err(e);
            }
        }
    }
    // The new metadata, prepared before anything visible changes.
    let mut manifest = load_manifest(store, server, &child.label)?;
    let mut sums = load_sums(store, server, &child.label)?.unwrap_or_default();
    let pg_manifest_path = join(&[&child_dir, "data", "backup_manifest"]);
    let mut pg_manifest = crate::manifest::PgManifest::parse(&store.read(&pg_manifest_path)?)?;
    let prefix = format!("{child_dir}/");
    let relative = |p: &str| p.strip_prefix(&prefix).unwrap_or(p).to_owned();
    let position: std::collections::HashMap<String, usize> =
        pg_manifest.files.iter().enumerate().map(|(i, f)| (f.path.clone(), i)).collect();
    for r in &rolled {
        manifest.files.remove(&r.old_path);
        manifest.files.insert(r.new_path.clone(), r.plain_hash.clone());
        sums.files.remove(&relative(&r.old_stored));
        sums.files.insert(relative(&r.new_stored), r.stored_sha512.clone());
        if let Some(f) = position.get(&r.old_path).map(|&i| &mut pg_manifest.files[i]) {
            f.path = r.new_path.clone();
            f.size = r.size;
            f.checksum_algorithm = "CRC32C".into();
            f.checksum = pgmoneta_crypto::hex(&r.crc.to_le_bytes());
        }
    }
    // backup_label: no incremental lines for a full backup, the new parent's position otherwise.
    let label_path = join(&[&child_dir, "data", "backup_label"]);
    let old_label = read_text(store, &label_path)?;
    let grandparent = if becomes_full { None } else { Some(load_info(store, server, &parent.parent)?) };
    let mut new_label = String::new();
    for line in old_label.lines() {
        match (line.starts_with("INCREMENTAL FROM LSN: "), line.starts_with("INCREMENTAL FROM TLI: "), &grandparent) {
            (false, false, _) => new_label.push_str(line),
            (_, _, None) => continue,
            (true, _, Some(g)) => new_label.push_str(&format!("INCREMENTAL FROM LSN: {}", g.start_lsn)),
            (_, true, Some(g)) => new_label.push_str(&format!("INCREMENTAL FROM TLI: {}", g.start_timeline)),
        }
        new_label.push('\n');
    }
    manifest.files.insert("backup_label".to_owned(), child.manifest.digest_hex(new_label.as_bytes()));
    sums.files.insert(
        "data/backup_label".to_owned(),
        pgmoneta_crypto::digest_hex(HashAlgorithm::Sha512, new_label.as_bytes()),
    );
    if let Some(f) = pg_manifest.files.iter_mut().find(|f| f.path == "backup_label") {
        f.size = new_label.len() as u64;
        f.checksum_algorithm = "CRC32C".into();
        f.checksum = pgmoneta_crypto::hex(&pgmoneta_crypto::crc32c(new_label.as_bytes()).to_le_bytes());
    }
    pg_manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
    let pg_manifest_bytes = pg_manifest.to_bytes("1970-01-01 00:00:00 GMT");
    let manifest_text = manifest.to_text();
    sums.files.insert(
        BACKUP_MANIFEST.to_owned(),
        pgmoneta_crypto::digest_hex(HashAlgorithm::Sha512, manifest_text.as_bytes()),
    );
    sums.files.insert(
        "data/backup_manifest".to_owned(),
        pgmoneta_crypto::digest_hex(HashAlgorithm::Sha512, &pg_manifest_bytes),
    );
    // The new files durable before anything refers to them.
    store.sync_tree(&child_dir)?;
    // The switch: not valid while files change.
    let mut info = child.clone();
    info.valid = false;
    save_info(store, server, &info)?;
    let mut touched = BTreeSet::new();
    for r in &rolled {
        store.rename_unsynced(&r.temp, &r.new_stored)?;
        if r.old_stored != r.new_stored {
            store.remove_unsynced(&r.old_stored)?;
        }
        touched.insert(parent_of(&r.new_stored));
    }
    for dir in touched {
        store.sync_dir(dir)?;
    }
    store.write(&label_path, new_label.as_bytes())?;
    store.write(&join(&[&child_dir, BACKUP_MANIFEST]), manifest_text.as_bytes())?;
    store.write(&pg_manifest_path, &pg_manifest_bytes)?;
    store.write(&join(&[&child_dir, BACKUP_SHA512]), sums.to_text().as_bytes())?;
    info.valid = true;
    if becomes_full {
        info.backup_type = BackupType::Full;
        info.parent = String::new();
    } else {
        info.parent = parent.parent.clone();
    }
    info.backup_size = stored_bytes(store, &child_dir)?;
    save_info(store, server, &info)?;
    Ok(info)
}

/// Sets or clears the keep flag; with `cascade`, on the parents of an incremental backup too.
///
/// # Errors
/// No such backup, storage failures.
pub fn set_keep(store: &dyn Store, server: &str, label: &str, keep: bool, cascade: bool) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    let mut next = Some(label.to_owned());
    while let Some(l) = next.take() {
        let mut info = load_info(store, server, &l)?;
        info.keep = keep;
        save_info(store, server, &info)?;
        changed.push(l);
        if cascade && info.backup_type == BackupType::Incremental && !info.parent.is_empty() {
            next = Some(info.parent.clone());
        }
    }
    Ok(changed)
}

/// An annotation change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Annotation {
    /// Adds a key; an existing key is an error.
    Add(String, String),
    /// Replaces a key's value; a missing key is an error.
    Update(String, String),
    /// Removes a key; a missing key is an error.
    Remove(String),
}

/// Most bytes of comments a backup keeps.
pub const MAX_COMMENTS: usize = 2048;

/// Changes a backup's comments (`key|value` pairs). Returns the new comments.
///
/// # Errors
/// No such backup, a key that exists (add) or not (update, remove), a key or value with `|` or
/// `,`, comments longer than 2048 bytes.
pub fn annotate(store: &dyn Store, server: &str, label: &str, change: &Annotation) -> Result<String> {
    let mut info = load_info(store, server, label)?;
    let mut pairs = info.comment_pairs();
    let check = |s: &str| {
        if s.contains(['|', ',', '\n']) || s.is_empty() && !matches!(change, Annotation::Remove(_)) {
            Err(StorageError::Invalid(format!(
                "annotation {s:?}: keys and values cannot be empty or contain '|', ',' or newlines"
            )))
        } else {
            Ok(())
        }
    };
    match change {
        Annotation::Add(k, v) => {
            check(k)?;
            check(v)?;
            if pairs.iter().any(|(pk, _)| pk == k) {
                return Err(StorageError::Invalid(format!("backup {label} already has a comment {k}")));
            }
            pairs.push((k.clone(), v.clone()));
        }
        Annotation::Update(k, v) => {
            check(v)?;
            let slot = pairs
                .iter_mut()
                .find(|(pk, _)| pk == k)
                .ok_or_else(|| StorageError::NotFound(format!("backup {label} has no comment {k}")))?;
            slot.1 = v.clone();
        }
        Annotation::Remove(k) => {
            let before = pairs.len();
            pairs.retain(|(pk, _)| pk != k);
            if pairs.len() == before {
                return Err(StorageError::NotFound(format!("backup {label} has no comment {k}")));
            }
        }
    }
    let comments = pairs.iter().map(|(k, v)| format!("{k}|{v}")).collect::<Vec<_>>().join(",");
    if comments.len() > MAX_COMMENTS {
        return Err(StorageError::Invalid(format!("comments longer than {MAX_COMMENTS} bytes")));
    }
    info.comments = comments.clone();
    save_info(store, server, &info)?;
    Ok(comments)
}

/// Deletes what a retention plan deletes, children first. Returns the labels deleted; stops at
/// the first failure.
///
/// # Errors
/// The first deletion that fails.
pub fn apply_retention(store: &dyn Store, server: &str, plan: &RetentionPlan) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    for label in &plan.delete {
        let l = label.to_string();
        delete_backup(store, server, &l, false)?;
        deleted.push(l);
    }
    Ok(deleted)
}

/// Removes what interrupted operations left: backup directories without `backup.info` (a
/// crash before the backup completed), and backups whose delete was decided but did not finish
/// (a [`DELETING`] file), whose delete is finished. Run it at start-up, before anything else
/// touches the repository. Returns the labels removed.
///
/// # Errors
/// Storage failures.
pub fn cleanup_incomplete(store: &dyn Store, server: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for e in store.list(&layout::backups_dir(server))? {
        let dir = layout::backup_dir(server, &e.name);
        if e.kind != EntryKind::Dir {
            continue;
        }
        if !store.exists(&join(&[&dir, BACKUP_INFO])) {
            store.remove(&dir)?;
            removed.push(e.name);
        } else if store.exists(&join(&[&dir, DELETING])) {
            // A delete that stopped half-way: finished, so that no backup is left with some of
            // its files moved away.
            log::warn!("server [{server}]: finishing the interrupted delete of backup {}", e.name);
            delete_backup_with(store, server, &e.name, &DeleteOptions { force: true, ..DeleteOptions::default() })?;
            removed.push(e.name);
        }
    }
    Ok(removed)
}

/// The file a decided delete leaves in the backup's directory until it is done.
pub const DELETING: &str = ".deleting";

/// The first WAL segment the oldest valid backup needs: pruning keeps it and everything after.
pub fn oldest_needed_wal(backups: &[BackupInfo]) -> Option<&str> {
    backups.iter().filter(|b| b.valid && !b.wal.is_empty()).min_by(|a, b| a.label.cmp(&b.label)).map(|b| b.wal.as_str())
}
