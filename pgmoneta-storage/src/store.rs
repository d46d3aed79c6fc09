//! The storage trait: where a repository's files live.
//!
//! A small synchronous interface over paths relative to the repository root (`<base_dir>`),
//! written with `/`. Files are write-once: [`Store::create`] returns a writer whose
//! [`StoreWriter::commit`] makes the file durable under its name; a writer dropped without a
//! commit leaves nothing. [`LocalStore`] keeps files on the local file system; [`MemoryStore`]
//! in memory, for tests, with fault injection.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Result, StorageError};
use crate::fsio;

/// A file being written; see [`Store::create`].
pub trait StoreWriter: Write + Send {
    /// Makes the file durable under its name. With `sync_dir` false the caller promises a
    /// [`Store::sync_dir`] of the parent later (one sync for many files).
    ///
    /// # Errors
    /// When the data cannot be made durable; nothing is left under the name then.
    fn commit(self: Box<Self>, sync_dir: bool) -> Result<u64>;

    /// A handle to read the file while it is being written: what reached it before the last
    /// `flush` can be read at its offset, by another thread, at its own pace. `None` where the
    /// bytes are not readable before the commit (the default).
    fn read_back(&mut self) -> Option<std::fs::File> {
        None
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreEntry {
    /// The name within the directory.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (files), 0 otherwise.
    pub size: u64,
}

/// The kind of a [`StoreEntry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// Where a repository's files live. Paths are relative to the repository root.
pub trait Store: Send + Sync + fmt::Debug {
    /// Starts writing a file; its parent directory must exist.
    ///
    /// # Errors
    /// When the file cannot be created.
    fn create(&self, path: &str) -> Result<Box<dyn StoreWriter>>;
    /// Starts writing a file directly under its name, in a directory that is not valid until
    /// later (a backup being written). [`StoreWriter::commit`] with `false` only completes the
    /// file; [`Store::sync_tree`] makes the whole directory durable at the end. Dropped without
    /// a commit, the file is removed.
    ///
    /// # Errors
    /// When the file cannot be created.
    fn create_unsynced(&self, path: &str) -> Result<Box<dyn StoreWriter>> {
        self.create(path)
    }
    /// Makes everything under `dir` durable.
    ///
    /// # Errors
    /// When a sync fails.
    fn sync_tree(&self, dir: &str) -> Result<()> {
        self.sync_dir(dir)
    }
    /// Opens a file for reading (through symbolic links).
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when it does not exist, I/O failures.
    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>>;
    /// The entries of a directory, sorted by name; empty when it does not exist.
    ///
    /// # Errors
    /// I/O failures.
    fn list(&self, dir: &str) -> Result<Vec<StoreEntry>>;
    /// Creates a directory and its parents (mode 0700), durably.
    ///
    /// # Errors
    /// I/O failures.
    fn create_dir(&self, path: &str) -> Result<()>;
    /// Removes a file, a symbolic link or a whole directory tree; nothing when it is absent.
    ///
    /// # Errors
    /// I/O failures.
    fn remove(&self, path: &str) -> Result<()>;
    /// Removes a file or a symbolic link without making the removal durable: the caller
    /// promises a [`Store::sync_dir`] of its directory later (one sync for many removals).
    ///
    /// # Errors
    /// I/O failures.
    fn remove_unsynced(&self, path: &str) -> Result<()> {
        self.remove(path)
    }
    /// Creates a symbolic link at `link` pointing to the repository path `target`.
    ///
    /// # Errors
    /// I/O failures.
    fn symlink(&self, target: &str, link: &str) -> Result<()>;
    /// Where a symbolic link points, as a repository path; `None` when `path` is not a link
    /// (or points outside the repository).
    ///
    /// # Errors
    /// I/O failures.
    fn read_link(&self, path: &str) -> Result<Option<String>>;
    /// Renames a file or link, replacing what is at `to`, durably.
    ///
    /// # Errors
    /// I/O failures.
    fn rename(&self, from: &str, to: &str) -> Result<()>;
    /// Renames a file or link, replacing what is at `to`, without making the change durable:
    /// the caller promises a [`Store::sync_dir`] of the directories involved later (one sync
    /// for many renames). A crash before that sync leaves either name's old or new entry.
    ///
    /// # Errors
    /// I/O failures.
    fn rename_unsynced(&self, from: &str, to: &str) -> Result<()> {
        self.rename(from, to)
    }
    /// Makes the entries created in a directory durable.
    ///
    /// # Errors
    /// I/O failures.
    fn sync_dir(&self, dir: &str) -> Result<()>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &str) -> bool;
    /// Whether this store itself holds `path`, not only a copy elsewhere it can read (see
    /// `remote::TieredStore`): links must point to files that are held.
    fn holds(&self, path: &str) -> bool {
        self.exists(path)
    }
    /// The local path of a repository path, for a store that has one.
    fn local_path(&self, path: &str) -> Option<PathBuf>;

    /// Reads a whole file.
    ///
    /// # Errors
    /// As [`Store::open`].
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open(path)?.read_to_end(&mut v).map_err(StorageError::io("reading", path))?;
        Ok(v)
    }

    /// Writes a whole file durably.
    ///
    /// # Errors
    /// As [`Store::create`] and [`StoreWriter::commit`].
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        let mut w = self.create(path)?;
        w.write_all(data).map_err(StorageError::io("writing", path))?;
        w.commit(true).map(|_| ())
    }
}

/// Joins repository path parts with `/`.
pub fn join(parts: &[&str]) -> String {
    parts.iter().filter(|p| !p.is_empty()).map(|p| p.trim_matches('/')).collect::<Vec<_>>().join("/")
}

/// Files on the local file system under a root directory.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
    /// Write-back errors of the root's file system, watched from the first file written
    /// without a sync of its own (see [`fsio::WritebackWatch`]).
    watch: Arc<std::sync::OnceLock<Option<fsio::WritebackWatch>>>,
}

impl LocalStore {
    /// A store rooted at `root` (the `base_dir` setting).
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into(), watch: Arc::default() }
    }

    fn watch(&self) -> Option<&fsio::WritebackWatch> {
        self.watch.get_or_init(|| fsio::WritebackWatch::open(&self.root).ok()).as_ref()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }
}

/// A file being written by a [`LocalStore`] (or a restore): under a temporary name, or directly.
pub(crate) enum LocalWriter {
    Atomic(fsio::AtomicFile),
    Direct(fsio::DirectFile),
}

impl LocalWriter {
    fn inner(&mut self) -> &mut dyn Write {
        match self {
            LocalWriter::Atomic(f) => f,
            LocalWriter::Direct(f) => f,
        }
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner().write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.inner().write_vectored(bufs)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner().write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner().flush()
    }
}

impl StoreWriter for LocalWriter {
    fn commit(self: Box<Self>, sync: bool) -> Result<u64> {
        match *self {
            LocalWriter::Atomic(f) => f.commit_with(sync),
            LocalWriter::Direct(f) => f.finish(sync),
        }
    }

    fn read_back(&mut self) -> Option<std::fs::File> {
        match self {
            LocalWriter::Atomic(_) => None,
            LocalWriter::Direct(f) => f.read_back(),
        }
    }
}

impl Store for LocalStore {
    fn create(&self, path: &str) -> Result<Box<dyn StoreWriter>> {
        Ok(Box::new(LocalWriter::Atomic(fsio::AtomicFile::create(&self.path(path))?)))
    }

    fn create_unsynced(&self, path: &str) -> Result<Box<dyn StoreWriter>> {
        // Its write-back errors must reach the sync of the tree.
        self.watch();
        Ok(Box::new(LocalWriter::Direct(fsio::DirectFile::create(&self.path(path))?)))
    }

    fn sync_tree(&self, dir: &str) -> Result<()> {
        if let Some(w) = self.watch() {
            w.sync()?;
        }
        // The tree may be on another file system than the root.
        fsio::sync_tree(&self.path(dir))
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        let p = self.path(path);
        match std::fs::File::open(&p) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StorageError::NotFound(format!("{} does not exist", p.display())))
            }
            Err(e) => Err(StorageError::io("opening", p)(e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<StoreEntry>> {
        let p = self.path(dir);
        let rd = match std::fs::read_dir(&p) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io("listing", p)(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(StorageError::io("listing", &p))?;
            let meta = match std::fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                // Removed since the directory was read (a WAL segment just sealed): not listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("inspecting", entry.path())(e)),
            };
            let kind = if meta.file_type().is_symlink() {
                EntryKind::Symlink
            } else if meta.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            out.push(StoreEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind,
                size: if kind == EntryKind::File { meta.len() } else { 0 },
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        fsio::create_dir_all(&self.path(path))
    }

    fn remove(&self, path: &str) -> Result<()> {
        let p = self.path(path);
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::io("inspecting", p)(e)),
        };
        if meta.is_dir() {
            fsio::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p).map_err(StorageError::io("removing", &p))?;
            p.parent().map_or(Ok(()), fsio::sync_dir)
        }
    }

    fn remove_unsynced(&self, path: &str) -> Result<()> {
        let p = self.path(path);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // A directory: removed as a whole, durably.
            Err(_) if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) => self.remove(path),
            Err(e) => Err(StorageError::io("removing", p)(e)),
        }
    }

    fn symlink(&self, target: &str, link: &str) -> Result<()> {
        let l = self.path(link);
        std::os::unix::fs::symlink(self.path(target), &l).map_err(StorageError::io("creating symbolic link", l))
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        let p = self.path(path);
        match std::fs::read_link(&p) {
            Ok(target) => {
                let absolute =
                    if target.is_absolute() { target } else { p.parent().unwrap_or(&self.root).join(target) };
                Ok(absolute.strip_prefix(&self.root).ok().map(|r| r.to_string_lossy().into_owned()))
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput) => Ok(None),
            Err(e) => Err(StorageError::io("reading link", p)(e)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (self.path(from), self.path(to));
        std::fs::rename(&f, &t).map_err(StorageError::io("renaming", &f))?;
        if let Some(parent) = t.parent() {
            fsio::sync_dir(parent)?;
        }
        match (f.parent(), t.parent()) {
            (Some(a), Some(b)) if a != b => fsio::sync_dir(a),
            _ => Ok(()),
        }
    }

    fn rename_unsynced(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (self.path(from), self.path(to));
        std::fs::rename(&f, &t).map_err(StorageError::io("renaming", &f))
    }

    fn sync_dir(&self, dir: &str) -> Result<()> {
        fsio::sync_dir(&self.path(dir))
    }

    fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.path(path)).is_ok()
    }

    fn local_path(&self, path: &str) -> Option<PathBuf> {
        Some(self.path(path))
    }
}

#[derive(Debug, Clone)]
enum MemNode {
    File(Arc<Vec<u8>>),
    Dir,
    Symlink(String),
}

/// Files in memory, for tests. [`MemoryStore::fail_after_bytes`] makes writes fail once a number
/// of bytes has been written, to test that an interrupted operation leaves nothing valid.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    nodes: Arc<Mutex<BTreeMap<String, MemNode>>>,
    budget: Arc<AtomicI64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore { nodes: Arc::default(), budget: Arc::new(AtomicI64::new(i64::MAX)) }
    }

    /// Every write fails once `n` more bytes have been written in total.
    pub fn fail_after_bytes(&self, n: u64) {
        self.budget.store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// The paths of all files, sorted.
    pub fn files(&self) -> Vec<String> {
        let nodes = self.nodes.lock();
        nodes.iter().filter(|(_, n)| matches!(n, MemNode::File(_))).map(|(p, _)| p.clone()).collect()
    }

    fn norm(path: &str) -> String {
        path.trim_matches('/').to_owned()
    }

    fn resolve(&self, path: &str) -> Option<MemNode> {
        let nodes = self.nodes.lock();
        let mut p = Self::norm(path);
        for _ in 0..16 {
            match nodes.get(&p)? {
                MemNode::Symlink(t) => p = Self::norm(t),
                other => return Some(other.clone()),
            }
        }
        None
    }
}

struct MemWriter {
    store: MemoryStore,
    path: String,
    data: Vec<u8>,
}

impl Write for MemWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.store.budget.fetch_sub(buf.len() as i64, Ordering::SeqCst);
        if left < buf.len() as i64 {
            return Err(io::Error::other("injected write failure"));
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StoreWriter for MemWriter {
    fn commit(self: Box<Self>, _sync_dir: bool) -> Result<u64> {
        if self.store.budget.load(Ordering::SeqCst) < 0 {
            return Err(StorageError::io("committing", &self.path)(io::Error::other("injected write failure")));
        }
        let n = self.data.len() as u64;
        self.store.nodes.lock().insert(self.path, MemNode::File(Arc::new(self.data)));
        Ok(n)
    }
}

impl Store for MemoryStore {
    fn create(&self, path: &str) -> Result<Box<dyn StoreWriter>> {
        let path = Self::norm(path);
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        if !parent.is_empty() && !matches!(self.resolve(parent), Some(MemNode::Dir)) {
            return Err(StorageError::NotFound(format!("directory {parent} does not exist")));
        }
        Ok(Box::new(MemWriter { store: self.clone(), path, data: Vec::new() }))
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        match self.resolve(path) {
            Some(MemNode::File(data)) => Ok(Box::new(io::Cursor::new(data.as_ref().clone()))),
            _ => Err(StorageError::NotFound(format!("{path} does not exist"))),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<StoreEntry>> {
        let dir = Self::norm(dir);
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let nodes = self.nodes.lock();
        // The paths under `dir` sort together, right after the prefix.
        Ok(nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter_map(|(p, n)| {
                let rest = p.strip_prefix(&prefix)?;
                (!rest.is_empty() && !rest.contains('/')).then(|| StoreEntry {
                    name: rest.to_owned(),
                    kind: match n {
                        MemNode::File(_) => EntryKind::File,
                        MemNode::Dir => EntryKind::Dir,
                        MemNode::Symlink(_) => EntryKind::Symlink,
                    },
                    size: match n {
                        MemNode::File(d) => d.len() as u64,
                        _ => 0,
                    },
                })
            })
            .collect())
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        let path = Self::norm(path);
        let mut nodes = self.nodes.lock();
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            nodes.entry(at.clone()).or_insert(MemNode::Dir);
        }
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<()> {
        let path = Self::norm(path);
        let prefix = format!("{path}/");
        self.nodes.lock().retain(|p, _| *p != path && !p.starts_with(&prefix));
        Ok(())
    }

    fn symlink(&self, target: &str, link: &str) -> Result<()> {
        self.nodes.lock().insert(Self::norm(link), MemNode::Symlink(Self::norm(target)));
        Ok(())
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        Ok(match self.nodes.lock().get(&Self::norm(path)) {
            Some(MemNode::Symlink(t)) => Some(t.clone()),
            _ => None,
        })
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut nodes = self.nodes.lock();
        let node =
            nodes.remove(&Self::norm(from)).ok_or_else(|| StorageError::NotFound(format!("{from} does not exist")))?;
        nodes.insert(Self::norm(to), node);
        Ok(())
    }

    fn sync_dir(&self, _dir: &str) -> Result<()> {
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        self.nodes.lock().contains_key(&Self::norm(path))
    }

    fn local_path(&self, _path: &str) -> Option<PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn Store) {
        store.create_dir("srv/backup/1/data").unwrap();
        store.write("srv/backup/1/data/a", b"hello").unwrap();
        assert_eq!(store.read("srv/backup/1/data/a").unwrap(), b"hello");
        let mut w = store.create("srv/backup/1/data/b").unwrap();
        w.write_all(b"never committed").unwrap();
        drop(w);
        assert!(!store.exists("srv/backup/1/data/b"));
        let names: Vec<_> = store.list("srv/backup/1/data").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a"]);
        store.symlink("srv/backup/1/data/a", "srv/backup/1/data/c").unwrap();
        assert_eq!(store.read("srv/backup/1/data/c").unwrap(), b"hello");
        assert_eq!(store.read_link("srv/backup/1/data/c").unwrap().as_deref(), Some("srv/backup/1/data/a"));
        assert_eq!(store.read_link("srv/backup/1/data/a").unwrap(), None);
        store.write("srv/backup/1/data/d", b"moved").unwrap();
        store.rename("srv/backup/1/data/d", "srv/backup/1/data/c").unwrap();
        assert_eq!(store.read("srv/backup/1/data/c").unwrap(), b"moved");
        assert_eq!(store.read_link("srv/backup/1/data/c").unwrap(), None);
        assert!(!store.exists("srv/backup/1/data/d"));
        assert!(matches!(store.open("srv/nothing"), Err(StorageError::NotFound(_))));
        assert!(store.list("srv/nothing").unwrap().is_empty());
        store.remove("srv/backup/1").unwrap();
        assert!(!store.exists("srv/backup/1/data/a"));
        assert!(store.exists("srv/backup"));
    }

    #[test]
    fn local_and_memory_stores_behave_alike() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&LocalStore::new(dir.path()));
        exercise(&MemoryStore::new());
    }

    #[test]
    fn local_store_uses_private_modes_and_leaves_no_temporary_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        s.create_dir("a/b").unwrap();
        s.write("a/b/f", b"x").unwrap();
        let mode = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("a"), 0o700);
        assert_eq!(mode("a/b"), 0o700);
        assert_eq!(mode("a/b/f"), 0o600);
        let mut w = s.create("a/b/g").unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path().join("a/b")).unwrap().count(), 1);
    }

    #[test]
    fn memory_store_injects_failures() {
        let s = MemoryStore::new();
        s.create_dir("d").unwrap();
        s.fail_after_bytes(10);
        let mut w = s.create("d/f").unwrap();
        assert!(w.write_all(&[0; 8]).is_ok());
        assert!(w.write_all(&[0; 8]).is_err());
        assert!(w.commit(true).is_err());
        assert!(!s.exists("d/f"));
    }
}
