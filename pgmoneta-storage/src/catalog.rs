//! The backup catalog: which backups a server has (from their `backup.info`), their metadata
//! files, and the one way to pick a backup by label, `oldest`, `newest` or recovery target and to
//! follow an incremental backup's chain to its full backup.

use std::collections::BTreeMap;

use crate::error::{Result, StorageError};
use crate::info::{BackupInfo, BackupType, BACKUP_INFO};
use crate::layout;
use crate::manifest::{BackupManifest, Sha512Sums, BACKUP_MANIFEST, BACKUP_SHA512};
use crate::store::{join, EntryKind, Store};
use crate::target::{RecoveryTarget, TargetKind};

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
        out.push(BackupInfo::parse(&read_text(store, &path)?, &path)?);
    }
    out.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(out)
}

/// Reads a backup's `backup.info`.
///
/// # Errors
/// [`StorageError::NotFound`] when there is no such backup.
pub fn load_info(store: &dyn Store, server: &str, label: &str) -> Result<BackupInfo> {
    let path = join(&[&layout::backup_dir(server, label), BACKUP_INFO]);
    if !store.exists(&path) {
        return Err(StorageError::NotFound(format!("no backup {label} of server {server}")));
    }
    BackupInfo::parse(&read_text(store, &path)?, &path)
}

/// A stored text file.
pub(crate) fn read_text(store: &dyn Store, path: &str) -> Result<String> {
    String::from_utf8(store.read(path)?).map_err(|_| StorageError::corrupt(path, "not UTF-8"))
}

/// A backup's `backup.manifest`.
///
/// # Errors
/// No such file, or one that does not parse.
pub fn load_manifest(store: &dyn Store, server: &str, label: &str) -> Result<BackupManifest> {
    let path = join(&[&layout::backup_dir(server, label), BACKUP_MANIFEST]);
    BackupManifest::parse(&read_text(store, &path)?, &path)
}

/// A backup's `backup.sha512`, when it has one.
pub(crate) fn load_sums(store: &dyn Store, server: &str, label: &str) -> Result<Option<Sha512Sums>> {
    let path = join(&[&layout::backup_dir(server, label), BACKUP_SHA512]);
    if !store.exists(&path) {
        return Ok(None);
    }
    Sha512Sums::parse(&read_text(store, &path)?, &path).map(Some)
}

/// One stored file of a backup, as [`stored_files`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredFile {
    /// Its repository path.
    pub(crate) path: String,
    /// Whether it is a link to another backup's file.
    pub(crate) link: bool,
    /// Its size as stored (0 for a link).
    pub(crate) size: u64,
}

/// Stored files of a backup: manifest path to stored file (relative to the repository), for
/// regular files and for links alike, from one listing per directory. Only the backup's own
/// suffix is taken off a name.
pub(crate) fn stored_files(store: &dyn Store, server: &str, info: &BackupInfo) -> Result<BTreeMap<String, StoredFile>> {
    let dir = layout::backup_dir(server, &info.label);
    let mut out = BTreeMap::new();
    let storage = crate::stored::storage_of(info);
    let mut roots = vec![(join(&[&dir, "data"]), String::new())];
    for t in &info.tablespaces {
        roots.push((join(&[&dir, &t.dir]), format!("pg_tblspc/{}/", t.oid)));
    }
    while let Some((d, prefix)) = roots.pop() {
        let in_tblspc = d.ends_with("/data/pg_tblspc");
        for e in store.list(&d)? {
            if e.name.ends_with(crate::fsio::TEMP_SUFFIX) {
                continue;
            }
            let stored = join(&[&d, &e.name]);
            match e.kind {
                EntryKind::Dir => roots.push((stored, format!("{prefix}{}/", e.name))),
                EntryKind::File | EntryKind::Symlink if !in_tblspc => {
                    let (plain, _, _) = crate::stored::form_in(&e.name, storage);
                    let file = StoredFile { path: stored, link: e.kind == EntryKind::Symlink, size: e.size };
                    out.insert(format!("{prefix}{plain}"), file);
                }
                EntryKind::File | EntryKind::Symlink => {}
            }
        }
    }
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

/// The backups of one server, oldest first, read once: every question of which backup a
/// command means is answered from it.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    server: String,
    backups: Vec<BackupInfo>,
}

impl Catalog {
    /// Reads the catalog of `server` (see [`list_backups`]).
    ///
    /// # Errors
    /// As [`list_backups`].
    pub fn load(store: &dyn Store, server: &str) -> Result<Catalog> {
        Ok(Catalog { server: server.to_owned(), backups: list_backups(store, server)? })
    }

    /// A catalog of the given backups (put in label order).
    pub fn from_backups(server: &str, mut backups: Vec<BackupInfo>) -> Catalog {
        backups.sort_by(|a, b| a.label.cmp(&b.label));
        Catalog { server: server.to_owned(), backups }
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Every backup, valid or not, oldest first.
    pub fn backups(&self) -> &[BackupInfo] {
        &self.backups
    }

    /// Every backup, oldest first, by value.
    pub fn into_backups(self) -> Vec<BackupInfo> {
        self.backups
    }

    /// The valid backups, oldest first.
    pub fn valid(&self) -> impl DoubleEndedIterator<Item = &BackupInfo> {
        self.backups.iter().filter(|b| b.valid)
    }

    /// The backup labelled `label`.
    pub fn get(&self, label: &str) -> Option<&BackupInfo> {
        self.backups.iter().find(|b| b.label == label)
    }

    /// A label names its backup whatever its state; `oldest` and `newest` mean the oldest and
    /// newest valid backups (what a backup can be restored from or built on).
    pub fn find(&self, selector: &BackupSelector) -> Option<&BackupInfo> {
        match selector {
            BackupSelector::Label(l) => self.get(l),
            BackupSelector::Oldest => self.valid().next(),
            BackupSelector::Newest => self.valid().next_back(),
        }
    }

    /// Like [`Catalog::find`], but `oldest` and `newest` count every backup, valid or not (what
    /// `info`, `delete`, `retain` and `annotate` mean by them).
    pub fn find_any(&self, selector: &BackupSelector) -> Option<&BackupInfo> {
        match selector {
            BackupSelector::Label(l) => self.get(l),
            BackupSelector::Oldest => self.backups.first(),
            BackupSelector::Newest => self.backups.last(),
        }
    }

    /// The incremental backup built on `label`, if there is one.
    pub fn child_of(&self, label: &str) -> Option<&BackupInfo> {
        self.backups.iter().find(|b| b.backup_type == BackupType::Incremental && b.parent == label)
    }

    /// The backup to restore for a selector and recovery target: a valid backup named by its
    /// label, or the oldest or newest valid one, or with an LSN, time or timeline target the
    /// newest valid one that can reach it.
    ///
    /// # Errors
    /// [`StorageError::Unreachable`] for an LSN before the end of every valid backup,
    /// [`StorageError::NotFound`] when no valid backup matches.
    pub fn select(&self, selector: &BackupSelector, target: &RecoveryTarget) -> Result<&BackupInfo> {
        let mut valid = self.valid();
        let found = match selector {
            BackupSelector::Label(l) => self.get(l).filter(|b| b.valid),
            _ => match &target.target {
                // The newest backup that ends before the target can reach it.
                Some(TargetKind::Lsn(lsn)) => valid.rfind(|b| b.end_lsn <= *lsn),
                // Labels are local times: the newest backup started at or before the target
                // time (`YYYY-MM-DD[ HH:MM[:SS]]`, missing parts read as zero).
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
                _ => self.find(selector),
            },
        };
        if found.is_none() && !matches!(selector, BackupSelector::Label(_)) {
            if let (Some(TargetKind::Lsn(lsn)), Some(oldest)) = (&target.target, self.valid().next()) {
                return Err(StorageError::Unreachable(format!(
                    "lsn={lsn} is before the end of every valid backup: the oldest, {}, ends at {}",
                    oldest.label, oldest.end_lsn
                )));
            }
        }
        found.ok_or_else(|| {
            StorageError::NotFound(format!("server {}: no valid backup matches {selector:?}", self.server))
        })
    }

    /// The chain of a backup: itself, then its parent, and so on to the full backup at the root.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when a parent is missing, [`StorageError::Invalid`] when one is
    /// not valid or the chain loops.
    pub fn chain(&self, info: &BackupInfo) -> Result<Vec<BackupInfo>> {
        let mut chain = vec![info.clone()];
        while chain.last().is_some_and(|b| b.backup_type == BackupType::Incremental) {
            let child = chain.last().expect("not empty");
            let parent = self.get(&child.parent).ok_or_else(|| {
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
            if chain.iter().any(|b| b.label == parent.label) || chain.len() > self.backups.len() {
                return Err(StorageError::Invalid(format!(
                    "the chain of backup {} loops at {}",
                    info.label, parent.label
                )));
            }
            chain.push(parent.clone());
        }
        Ok(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_selection() {
        let b = |label: &str, valid: bool, end: &str, tli: u32| BackupInfo {
            label: label.into(),
            valid,
            end_lsn: end.parse().unwrap(),
            start_timeline: tli,
            ..BackupInfo::default()
        };
        let catalog = Catalog::from_backups(
            "s",
            vec![
                b("20261101000000", true, "0/1000000", 1),
                b("20261110000000", true, "0/5000000", 1),
                b("20261115000000", false, "0/6000000", 2),
                b("20261120000000", true, "0/9000000", 2),
            ],
        );
        let pick = |sel: &str, pos: &str| {
            catalog.select(&BackupSelector::parse(sel), &RecoveryTarget::parse(pos).unwrap()).map(|i| i.label.clone())
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
}
